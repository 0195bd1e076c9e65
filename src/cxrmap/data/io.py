"""Reading radiographs and masks from PNG, JPEG and DICOM into numpy arrays.

Every reader returns the same thing whatever the file format: a uint8 grayscale array ``(H, W)`` for an
image and a boolean array ``(H, W)`` for a mask. Damaged, truncated, colour-DICOM or absurdly large
files raise :class:`~cxrmap.core.errors.DataError` naming the file and what to do, never a bare traceback.

The pixel limit (decompression-bomb guard) is :data:`DEFAULT_MAX_PIXELS`, overridden by the environment
variable ``CXRMAP_MAX_PIXELS`` or per call with ``max_pixels=``. The declared size is checked from the
header, before any pixel is decoded.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cxrmap.core.errors import DataError, TooLargeError
from cxrmap.data.dicom import check_dicom_header, read_dicom
from cxrmap.data.limits import check_pixel_count

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
"""File name endings read as radiographs (DICOM files without an ending are recognised by content)."""

DICOM_SUFFIXES = (".dcm", ".dicom")
_PIL_FORMATS = ("PNG", "JPEG")  # multi-picture JPEGs (MPO) open through JPEG
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)
_EXIF_ORIENTATION = 0x0112
_EXIF_TRANSPOSED = (5, 6, 7, 8)  # orientations that swap width and height


@dataclass(frozen=True)
class ImageInfo:
    """What a file's header declares: its size and format (``PNG``, ``JPEG`` or ``DICOM``)."""

    width: int
    height: int
    format: str


def is_dicom(path: str | os.PathLike) -> bool:
    """True for a ``.dcm``/``.dicom`` file or any file with the ``DICM`` marker at byte 128."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _require_file(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path} does not exist; check the path (and quoting of spaces/parentheses)")
    if not path.is_file():
        raise DataError(f"{path} is not a file; give an image file (PNG, JPEG or DICOM)")


def _open_pil(source: str | os.PathLike | io.BytesIO, name: str, max_pixels: int | None) -> Image.Image:
    """Open lazily (header only) with Pillow, limited to PNG/JPEG, and enforce the pixel limit."""
    try:
        with warnings.catch_warnings():
            # Pillow warns from ~89 Mpx; our own limit below decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source, formats=_PIL_FORMATS)
    except Image.DecompressionBombError as error:
        raise TooLargeError(
            f"{name} declares an image too large to decode safely ({error}); if it is genuine, "
            "downscale it (or raise CXRMAP_MAX_PIXELS and PIL.Image.MAX_IMAGE_PIXELS)",
            code="too_many_pixels",
        ) from None
    except UnidentifiedImageError:
        raise DataError(
            f"{name} is not a PNG, JPEG or DICOM image, or its header is damaged; "
            "re-export it as PNG (8- or 16-bit grayscale)"
        ) from None
    except _DECODE_ERRORS as error:
        raise DataError(f"cannot read {name}: {error}; the file looks damaged, re-export it") from None
    try:
        check_pixel_count(*image.size, name, max_pixels)
    except DataError:
        image.close()
        raise
    return image


def _to_uint8(image: Image.Image) -> np.ndarray:
    """Grayscale uint8 from any Pillow mode; 16-bit data scaled by 255/65535 (the PNG full range)."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
        return ((values * 255 + 32767) // 65535).astype(np.uint8)
    if image.mode != "L":
        image = image.convert("L")
    return np.array(image, dtype=np.uint8)


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1..8) of a JPEG or PNG, 1 where absent or unreadable.

    Reads only what the header parsing has seen (a PNG's eXIf chunk after its pixels counts once loaded).
    """
    try:
        exif = Image.Exif()
        raw = image.info.get("exif")
        if raw:
            exif.load(raw)
        value = exif.get(_EXIF_ORIENTATION, 1)
    except _DECODE_ERRORS + (KeyError, TypeError, IndexError):
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _decode_pil(source: str | os.PathLike | io.BytesIO, name: str, max_pixels: int | None) -> np.ndarray:
    """Decode a PNG/JPEG, turned upright by its EXIF orientation as a viewer shows it."""
    with _open_pil(source, name, max_pixels) as image:
        try:
            image.load()
            orientation = _orientation(image)
            if orientation != 1:
                image = ImageOps.exif_transpose(image)
        except _DECODE_ERRORS as error:
            raise DataError(
                f"cannot decode {name}: {error}; the file is truncated or damaged, copy or export it again"
            ) from None
        return _to_uint8(image)


def check_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> ImageInfo:
    """Check a file cheaply without decoding its pixels: format, declared size, pixel limit, integrity.

    PNG chunks are read and their checksums verified (so truncation is caught); JPEG and DICOM are
    checked from their headers. A DICOM must be grayscale (see :func:`cxrmap.data.dicom.check_dicom_header`).

    Raises:
        DataError: the file is missing, not an image, damaged, too large or a colour DICOM.
    """
    path = Path(path)
    _require_file(path)
    if is_dicom(path):
        info = check_dicom_header(path, max_pixels=max_pixels)
        return ImageInfo(width=info.columns, height=info.rows, format="DICOM")
    with _open_pil(path, str(path), max_pixels) as image:
        width, height = image.size
        if _orientation(image) in _EXIF_TRANSPOSED:
            width, height = height, width
        kind = "JPEG" if image.format == "MPO" else str(image.format)
        try:
            image.verify()
        except _DECODE_ERRORS as error:
            raise DataError(f"{path} is damaged or truncated ({error}); copy or export it again") from None
    return ImageInfo(width=width, height=height, format=kind)


def read_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> np.ndarray:
    """Read a radiograph as a uint8 grayscale array.

    PNG and JPEG are turned upright by their EXIF orientation; in colour they are converted to grayscale
    (luma); 16-bit PNG is scaled to 0..255;
    DICOM goes through :func:`cxrmap.data.dicom.read_dicom` (modality LUT, VOI LUT/window, MONOCHROME1
    inversion).

    Args:
        path: a ``.png``, ``.jpg``/``.jpeg`` or DICOM file (``.dcm``, or any file with the DICOM marker).
        max_pixels: pixel limit for this call (default: :func:`max_pixel_limit`).

    Returns:
        Array of shape ``(H, W)``, dtype uint8.

    Raises:
        DataError: missing, unreadable, truncated, too large, or colour DICOM.
    """
    path = Path(path)
    _require_file(path)
    if is_dicom(path):
        return read_dicom(path, max_pixels=max_pixels)
    return _decode_pil(path, str(path), max_pixels)


def image_header(data: bytes, name: str = "uploaded image", *, max_pixels: int | None = None) -> ImageInfo:
    """What the bytes of a PNG, JPEG or DICOM file declare (format, size), read from the header alone.

    Nothing is decoded: PNG and JPEG are opened lazily by Pillow (the PNG chunks before the image data are
    checksummed), DICOM goes through :func:`cxrmap.data.dicom.check_dicom_header`. ``name`` is only used in
    error messages.

    Raises:
        DataError: not a PNG, JPEG or DICOM file, a damaged or cut header, a colour DICOM.
        TooLargeError: the declared size is over the pixel limit.
    """
    if data[128:132] == b"DICM":
        info = check_dicom_header(data, name=name, max_pixels=max_pixels)
        return ImageInfo(width=info.columns, height=info.rows, format="DICOM")
    with _open_pil(io.BytesIO(data), name, max_pixels) as image:
        kind = "JPEG" if image.format == "MPO" else str(image.format)
        return ImageInfo(width=image.size[0], height=image.size[1], format=kind)


def decode_image(data: bytes, name: str = "uploaded image", *, max_pixels: int | None = None) -> np.ndarray:
    """Like :func:`read_image`, for the bytes of a PNG, JPEG or DICOM file (e.g. an upload).

    ``name`` is only used in error messages.
    """
    if data[128:132] == b"DICM":
        return read_dicom(data, name=name, max_pixels=max_pixels)
    return _decode_pil(io.BytesIO(data), name, max_pixels)


def read_mask(path: str | os.PathLike, *, max_pixels: int | None = None) -> np.ndarray:
    """Read a mask as a boolean array (H, W): foreground where the value is above 127.

    A mask whose only values are 0 and 1 (a common export) is read with 1 as foreground, rather than
    silently as empty.

    Raises:
        DataError: as :func:`read_image`.
    """
    return binarise_mask(read_image(path, max_pixels=max_pixels))


def binarise_mask(values: np.ndarray) -> np.ndarray:
    """Foreground of a uint8 mask: ``values > 127``, or ``values == 1`` when the mask holds only 0 and 1."""
    if values.max(initial=0) == 1:
        return values == 1
    return values > 127
