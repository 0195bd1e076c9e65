"""DICOM radiographs to uint8 grayscale, the way a viewer would display them.

The display pipeline of DICOM PS3.3 C.11 / C.8.11.3, on pydicom's implementation:

1. modality LUT (Rescale Slope/Intercept or a Modality LUT Sequence),
   :func:`pydicom.pixels.apply_modality_lut`;
2. VOI LUT Sequence (first view, applied here: :func:`voi_lut_table` reads 8-bit entries stored one per
   16-bit word or two per word, which pydicom's ``apply_voi`` indexes wrongly), else Window Center/Width,
   :func:`pydicom.pixels.apply_windowing`;
3. the output range of that step (the VOI LUT's bit depth, the windowing range, or with no VOI the
   range of Bits Stored after the modality LUT) scaled linearly to 0..255;
4. MONOCHROME1 (white = low values) inverted so that bone is bright, as in MONOCHROME2.

Only grayscale images (MONOCHROME1/MONOCHROME2, one sample per pixel, one frame) are accepted. Error
messages name the file and at most the attribute at fault, never patient data.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pydicom
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_windowing

from cxrmap.core.errors import DataError
from cxrmap.data.limits import check_pixel_count

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")

DicomSource = str | os.PathLike | bytes | BinaryIO
_HEADER_ERRORS = (
    OSError, EOFError, ValueError, KeyError, TypeError, IndexError, OverflowError, AttributeError,
    struct.error, BytesLengthException,
)  # fmt: skip
"""What pydicom raises on a damaged or truncated file (it parses lazily, so also on first access)."""


@dataclass(frozen=True)
class DicomInfo:
    """The header facts the readers need: size, photometric interpretation, bits stored."""

    rows: int
    columns: int
    photometric: str
    bits_stored: int


def _name_of(source: DicomSource, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return "the uploaded DICOM file"


def _dcmread(source: DicomSource, name: str, stop_before_pixels: bool):

    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise DataError(f"{path} does not exist or is not a file; check the path")
    try:
        return pydicom.dcmread(source, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError:
        raise DataError(
            f"{name} is not a DICOM file (no 'DICM' marker at byte 128); give a DICOM Part 10 file, "
            "or a PNG/JPEG image"
        ) from None
    except _HEADER_ERRORS as error:
        raise DataError(
            f"cannot read the DICOM header of {name} ({type(error).__name__}); the file is damaged or "
            "truncated, export it again"
        ) from None


def _check_dataset(ds, name: str, max_pixels: int | None) -> DicomInfo:
    """Refuse anything that is not a single-frame grayscale image within the pixel limit."""
    try:
        return _check_attributes(ds, name, max_pixels)
    except _HEADER_ERRORS as error:
        raise DataError(
            f"cannot read the DICOM header of {name} ({type(error).__name__}); the file is damaged or "
            "truncated, export it again"
        ) from None


def _check_attributes(ds, name: str, max_pixels: int | None) -> DicomInfo:
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if not photometric:
        raise DataError(
            f"{name} has no PhotometricInterpretation (0028,0004): it is not an image DICOM "
            "(a report or a presentation state?); give the radiograph itself"
        )
    if photometric not in MONOCHROME:
        raise DataError(
            f"{name} has PhotometricInterpretation {photometric[:16]!r}; only grayscale radiographs "
            "(MONOCHROME1 or MONOCHROME2) can be read. Export the image as grayscale DICOM or PNG"
        )
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples != 1:
        raise DataError(
            f"{name} has {samples} samples per pixel; a grayscale radiograph has 1. Export it as grayscale"
        )
    rows, columns = ds.get("Rows"), ds.get("Columns")
    if not rows or not columns:
        raise DataError(f"{name} lacks Rows/Columns (0028,0010/0011): it holds no image; give the radiograph")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise DataError(
            f"{name} holds {frames} frames; a chest radiograph has one. "
            "Export the frame to use as its own file"
        )
    check_pixel_count(int(columns), int(rows), name, max_pixels)
    bits_stored = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 0)
    if not 1 <= bits_stored <= 32:
        raise DataError(
            f"{name} has no valid BitsStored/BitsAllocated (0028,0101/0100); the header is damaged"
        )
    return DicomInfo(rows=int(rows), columns=int(columns), photometric=photometric, bits_stored=bits_stored)


def check_dicom_header(
    source: DicomSource, *, name: str | None = None, max_pixels: int | None = None
) -> DicomInfo:
    """Read only the header (no pixel data) and check that the file is a grayscale radiograph.

    Cheap enough to run on every upload or every file of a dataset before decoding anything.

    Args:
        source: a path, the file's bytes, or a binary file object.
        name: how to call the file in errors (default: its path).
        max_pixels: pixel limit (default: :func:`cxrmap.data.limits.max_pixel_limit`).

    Raises:
        DataError: not DICOM, damaged, colour/palette (names the PhotometricInterpretation), multi-frame,
            or larger than the pixel limit.
    """
    name = _name_of(source, name)
    return _check_dataset(_dcmread(source, name, stop_before_pixels=True), name, max_pixels)


def _modality_range(ds) -> tuple[float, float]:
    """Values of the lowest and highest stored value after the modality LUT (pydicom's convention)."""
    lut = ds.get("ModalityLUTSequence")
    if lut:
        return 0.0, float(2 ** int(lut[0].LUTDescriptor[2]) - 1)
    bits = int(ds.get("BitsStored") or ds.BitsAllocated)
    if int(ds.get("PixelRepresentation", 0)) == 0:
        low, high = 0.0, float(2**bits - 1)
    else:
        low, high = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        low, high = low * slope + intercept, high * slope + intercept
    return low, high


def _window_output_range(ds) -> tuple[float, float]:
    """The range :func:`pydicom.pixels.apply_windowing` maps into (the modality output range)."""
    low, high = _modality_range(ds)
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        return low, high  # windowing maps below-window to `low` even when the slope is negative
    return min(low, high), max(low, high)


def _lut_words(item, ds) -> np.ndarray:
    """LUT Data (0028,3006) as 16-bit words, whether stored as US values or OW bytes."""
    element = item["LUTData"]
    if element.VR == "OW" or isinstance(element.value, (bytes, bytearray)):
        raw = bytes(element.value or b"")
        little = getattr(ds, "is_little_endian", None)
        little = True if little is None else little
        return np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<u2" if little else ">u2").astype(np.int64)
    value = element.value
    values = [value] if isinstance(value, int) else list(value or [])
    return np.asarray(values, dtype=np.int64).reshape(-1)


def voi_lut_table(item, ds, name: str = "the DICOM file") -> tuple[np.ndarray, int, int]:
    """The first VOI LUT of a VOI LUT Sequence item: ``(entries, first input value, bits per entry)``.

    PS3.3 C.11.2.1.1: the LUT Descriptor gives the number of entries (0 = 65536), the first stored value
    mapped, and the bits per entry. 16-bit entries take one word each. 8-bit entries come either one per
    word or two per word (low byte first); the data's length against the number of entries tells which.

    Raises:
        DataError: a descriptor or data that fits neither way.
    """
    descriptor = item.get("LUTDescriptor")
    if descriptor is None or "LUTData" not in item or len(descriptor) != 3:
        raise DataError(
            f"{name} has a VOI LUT Sequence without a 3-value LUT Descriptor and LUT Data (0028,3002/3006); "
            "the header is damaged, export the image again"
        )
    entries, first, bits = (int(value) for value in descriptor)
    entries = entries or 65536
    if int(ds.get("PixelRepresentation", 0) or 0) == 1 and first >= 32768:
        first -= 65536  # the first mapped value is signed for signed pixel data
    if not 8 <= bits <= 16:
        raise DataError(
            f"{name} declares {bits} bits per VOI LUT entry; DICOM allows 8 to 16. The header is damaged"
        )
    words = _lut_words(item, ds)
    if len(words) == entries:
        table = words if bits > 8 else words & 0xFF
    elif bits == 8 and len(words) == (entries + 1) // 2:
        table = words.astype("<u2").view(np.uint8)[:entries].astype(np.int64)
    else:
        packed = f" or {(entries + 1) // 2} (two 8-bit entries per word)" if bits == 8 else ""
        raise DataError(
            f"{name} has a VOI LUT of {entries} entries of {bits} bits but {len(words)} 16-bit words of LUT "
            f"Data; expected {entries} (one entry per word){packed}. The header is damaged, export it again"
        )
    return table, first, bits


def _apply_voi(values: np.ndarray, ds, name: str) -> tuple[np.ndarray, float, float]:
    """The VOI step: its output and that output's range (step 2 of the module docstring)."""
    sequence = ds.get("VOILUTSequence")
    if sequence:
        table, first, bits = voi_lut_table(sequence[0], ds, name)
        index = np.clip(np.rint(np.asarray(values, dtype=np.float64)) - first, 0, len(table) - 1)
        return table[index.astype(np.int64)], 0.0, float(2**bits - 1)
    low, high = _window_output_range(ds)
    return apply_windowing(values, ds, index=0), low, high


def read_dicom(source: DicomSource, *, name: str | None = None, max_pixels: int | None = None) -> np.ndarray:
    """Decode a grayscale DICOM radiograph to uint8, as displayed (see the module docstring).

    Args:
        source: a path, the file's bytes, or a binary file object.
        name: how to call the file in errors (default: its path).
        max_pixels: pixel limit (default: :func:`cxrmap.data.limits.max_pixel_limit`).

    Returns:
        Array ``(Rows, Columns)`` uint8, bright = dense (bone), whatever the photometric interpretation.

    Raises:
        DataError: as :func:`check_dicom_header`, plus undecodable or truncated pixel data.

    Example:
        >>> image = read_dicom("chest.dcm")  # doctest: +SKIP
        >>> image.dtype, image.ndim
        (dtype('uint8'), 2)
    """

    name = _name_of(source, name)
    ds = _dcmread(source, name, stop_before_pixels=False)
    info = _check_dataset(ds, name, max_pixels)
    if "PixelData" not in ds:
        raise DataError(f"{name} has no pixel data; give a DICOM that contains the radiograph")
    try:
        stored = ds.pixel_array
    except (NotImplementedError, RuntimeError, ImportError):
        syntax = ds.file_meta.get("TransferSyntaxUID")
        syntax_name = getattr(syntax, "name", str(syntax))
        raise DataError(
            f"cannot decode the pixel data of {name} (compressed as {syntax_name}); install the pydicom "
            "decoders (`pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg`) or export it as PNG"
        ) from None
    except _HEADER_ERRORS as error:
        raise DataError(
            f"cannot decode the pixel data of {name} ({type(error).__name__}: {str(error)[:120]}); "
            "the file is truncated or damaged, export it again"
        ) from None
    if stored.shape != (info.rows, info.columns):
        raise DataError(
            f"{name} decodes to shape {stored.shape}, expected ({info.rows}, {info.columns}); "
            "the file is damaged, export it again"
        )
    try:
        values, low, high = _apply_voi(apply_modality_lut(stored, ds), ds, name)
    except (NotImplementedError, *_HEADER_ERRORS) as error:
        raise DataError(
            f"{name} has an unusable modality or VOI LUT / window ({str(error)[:160]}); "
            "fix the window attributes or export the image as PNG"
        ) from None
    span = high - low
    if span == 0:
        raise DataError(f"{name} declares an empty output range (bits stored / LUT); the header is damaged")
    scaled = (np.asarray(values, dtype=np.float64) - low) * (255.0 / span)
    image = np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)
    if info.photometric == "MONOCHROME1":
        image = 255 - image
    return image
