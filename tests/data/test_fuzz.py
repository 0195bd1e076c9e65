"""Fuzzing the parsers of untrusted files: images (data.io), DICOM headers and LUTs (data.dicom), manifests.

Every input either gives a correct result or a :class:`~cxrmap.core.errors.CxrmapError` with a message;
any other exception is a bug. ~100 examples each in the normal run; the ``slow`` variants try 1000.
"""

from __future__ import annotations

import io as stdio
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cxrmap.core.errors import CxrmapError
from cxrmap.data import io
from cxrmap.data.dicom import read_dicom
from cxrmap.data.manifest import COLUMNS, read_manifest

QUICK = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LONG = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_PIXELS = 4_000_000  # small, so that a header declaring a huge image is refused, not decoded


def _refused_or_image(decode, *args, shape=None, **kwargs):
    """Run a decoder: a CxrmapError with a message, or a uint8 (H, W) array (of ``shape`` if given)."""
    try:
        image = decode(*args, **kwargs)
    except CxrmapError as error:
        assert str(error).strip()
        return None
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 2
    if shape is not None:
        assert image.shape == shape
    return image


# ------------------------------------------------------------------------------------------ images


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


@st.composite
def image_files(draw):
    """PNG/JPEG bytes: encoded images, possibly truncated or with bytes flipped; PNG headers of any size."""
    kind = draw(st.sampled_from(["encoded", "declared", "junk"]))
    if kind == "junk":
        return draw(st.binary(max_size=2048)), None
    if kind == "declared":
        width, height = draw(st.integers(0, 2**31 - 1)), draw(st.integers(0, 2**31 - 1))
        depth, colour = draw(st.sampled_from([1, 2, 4, 8, 16])), draw(st.sampled_from([0, 2, 3, 4, 6]))
        header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
        body = zlib.compress(draw(st.binary(max_size=512)))
        return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", body) + _chunk(
            b"IEND", b""
        ), None
    height, width = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    mode = draw(st.sampled_from(["L", "RGB", "I;16"]))
    fmt = "JPEG" if mode != "I;16" and draw(st.booleans()) else "PNG"
    seed = draw(st.integers(0, 2**16))
    values = np.random.default_rng(seed).integers(0, 65536 if mode == "I;16" else 256, (height, width))
    array = values.astype(np.uint16 if mode == "I;16" else np.uint8)
    picture = Image.fromarray(array) if mode != "RGB" else Image.fromarray(np.stack([array] * 3, -1))
    buffer = stdio.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = draw(st.integers(0, 9))
    picture.save(buffer, format=fmt, exif=exif)
    data = bytearray(buffer.getvalue())
    damage = draw(st.sampled_from(["none", "truncate", "flip"]))
    if damage == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "flip":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
    expected = None
    if damage == "none":
        expected = (width, height) if exif[0x0112] in (5, 6, 7, 8) else (height, width)
    return bytes(data), expected


def _check_image_file(case) -> None:
    data, shape = case
    _refused_or_image(io.decode_image, data, "fuzz", max_pixels=MAX_PIXELS, shape=shape)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.png"
        path.write_bytes(data)
        _refused_or_image(io.read_image, path, max_pixels=MAX_PIXELS, shape=shape)
        try:
            info = io.check_image(path, max_pixels=MAX_PIXELS)
        except CxrmapError as error:
            assert str(error).strip()
        else:
            if shape is not None:
                assert (info.height, info.width) == shape


@QUICK
@given(image_files())
def test_fuzz_image_files(case):
    _check_image_file(case)


@pytest.mark.slow
@LONG
@given(image_files())
def test_fuzz_image_files_long(case):
    _check_image_file(case)


# ------------------------------------------------------------------------------------------- DICOM

_PHOTOMETRIC = ["MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR", "YBR_FULL", "", "monochrome2 "]


@st.composite
def dicom_files(draw):
    """DICOM bytes with random headers (size, bits, photometric, rescale, window, VOI LUT) and pixel data."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian

    rows, columns = draw(st.integers(0, 48)), draw(st.integers(0, 48))
    allocated = draw(st.sampled_from([8, 16]))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"  # fixed: the file's length is drawn on
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = rows, columns
    ds.PhotometricInterpretation = draw(st.sampled_from(_PHOTOMETRIC))
    ds.SamplesPerPixel = draw(st.sampled_from([1, 1, 1, 3]))
    ds.BitsAllocated = allocated
    ds.BitsStored = draw(st.integers(0, allocated + 4))
    ds.HighBit = max(int(ds.BitsStored) - 1, 0)
    ds.PixelRepresentation = draw(st.sampled_from([0, 1]))
    if draw(st.booleans()):
        ds.NumberOfFrames = draw(st.integers(0, 3))
    if draw(st.booleans()):
        ds.RescaleSlope = draw(st.sampled_from([0, 1, -1, 0.5, 2, 1e-9, 1e9]))
        ds.RescaleIntercept = draw(st.sampled_from([0, -1024, 1024, 1e12]))
    if draw(st.booleans()):
        ds.WindowCenter = draw(st.sampled_from([0, 40, 2048, -500, 1e10]))
        ds.WindowWidth = draw(st.sampled_from([0, 1, 2, 400, 4096, -10, 1e10]))
    if draw(st.booleans()):
        item = Dataset()
        entries, first = draw(st.integers(0, 70000)) % 65536, draw(st.integers(0, 65535))
        bits = draw(st.sampled_from([0, 1, 8, 10, 12, 16, 17, 32]))
        if draw(st.integers(0, 9)):
            item.add_new(0x00283002, "US", [entries, first, bits])
        words = draw(st.sampled_from([entries, (entries + 1) // 2, entries + 1, 0, 3]))
        lut = np.random.default_rng(words).integers(0, 65536, words).astype("<u2")
        if draw(st.integers(0, 9)):
            vr = draw(st.sampled_from(["OW", "US"]))
            item.add_new(0x00283006, vr, lut.tobytes() if vr == "OW" else lut.tolist())
        ds.VOILUTSequence = Sequence([item])
    size = rows * columns * (allocated // 8)
    length = draw(st.sampled_from([size, size, 0, max(size - 1, 0), size + 2, size // 2]))
    pixels = np.random.default_rng(length).integers(0, 256, length, dtype=np.uint8).tobytes()
    if draw(st.integers(0, 9)):
        ds.PixelData = pixels + (b"\0" if len(pixels) % 2 else b"")
    buffer = stdio.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    if draw(st.integers(0, 4)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data


def _check_dicom(data: bytes) -> None:
    _refused_or_image(read_dicom, data, name="fuzz.dcm", max_pixels=MAX_PIXELS)
    _refused_or_image(io.decode_image, data, "fuzz.dcm", max_pixels=MAX_PIXELS)


@QUICK
@given(dicom_files())
def test_fuzz_dicom_headers_and_luts(data):
    _check_dicom(data)


@pytest.mark.slow
@LONG
@given(dicom_files())
def test_fuzz_dicom_headers_and_luts_long(data):
    _check_dicom(data)


# ---------------------------------------------------------------------------------------- manifests

_CELLS = st.one_of(st.sampled_from([*COLUMNS, "covid", "control", "I", "II", ""]), st.text(max_size=12))
_CSV_TEXT = st.lists(st.lists(_CELLS, max_size=10), max_size=8).map(
    lambda rows: "\n".join(",".join(row) for row in rows)
)


@st.composite
def manifest_files(draw):
    kind = draw(st.sampled_from(["bytes", "text", "csv"]))
    if kind == "bytes":
        return draw(st.binary(max_size=1024))
    text = draw(st.text(max_size=400)) if kind == "text" else draw(_CSV_TEXT)
    return text.encode("utf-8", errors="surrogatepass")


def _check_manifest(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "manifest.csv"
        path.write_bytes(data)
        try:
            frame = read_manifest(path)
        except CxrmapError as error:
            assert str(error).strip()
            return
    assert list(frame.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert frame["label"].isin(["covid", "control"]).all() and (frame["image_path"] != "").all()


@QUICK
@given(manifest_files())
def test_fuzz_manifests(data):
    _check_manifest(data)


@pytest.mark.slow
@LONG
@given(manifest_files())
def test_fuzz_manifests_long(data):
    _check_manifest(data)
