"""Upload checks before decoding: the format by content, the declared size, the DICOM header check."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cxrmap.core.errors import DataError, MalformedRequestError, TooLargeError, UnsupportedFormatError
from cxrmap.serving.http.uploads import check_upload, declared_image
from tests.helpers.images import png_declaring, write_dicom


def encoded(array: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


GRAY = (np.arange(30 * 20) % 256).astype(np.uint8).reshape(30, 20)


def test_formats_are_told_by_content():
    assert check_upload(encoded(GRAY, "PNG"), 10_000) == ("png", (20, 30))
    assert check_upload(encoded(GRAY, "JPEG"), 10_000) == ("jpeg", (20, 30))
    assert check_upload(encoded(GRAY, "JPEG", progressive=True), 10_000) == ("jpeg", (20, 30))
    rgb = np.stack([GRAY] * 3, axis=-1)
    assert declared_image(encoded(rgb, "PNG")) == ("png", (20, 30))


def test_dicom_is_checked_by_its_header(tmp_path):
    data = write_dicom(tmp_path / "a", GRAY.astype(np.uint16) * 16).read_bytes()
    assert check_upload(data, 10_000) == ("dicom", (20, 30))
    colour = write_dicom(tmp_path / "b", np.stack([GRAY] * 3, axis=-1), photometric="RGB").read_bytes()
    with pytest.raises(DataError) as refused:
        check_upload(colour, 10_000)
    assert refused.value.code == "dicom_refused"
    assert "MONOCHROME" in str(refused.value) and "Doe" not in str(refused.value)


def test_other_formats_are_unsupported_whatever_their_name():
    for data in (b"GIF89a" + b"\0" * 200, b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"\0" * 300):
        with pytest.raises(UnsupportedFormatError, match="PNG, JPEG or DICOM"):
            check_upload(data, 10_000)
    with pytest.raises(MalformedRequestError) as empty:
        check_upload(b"", 10_000)
    assert empty.value.code == "empty_upload"


def test_damaged_headers_are_unreadable_not_unsupported():
    png = encoded(GRAY, "PNG")
    corrupt = bytearray(png)
    corrupt[20] ^= 0xFF  # a byte of the declared height: the IHDR checksum fails
    jpeg = encoded(GRAY, "JPEG")
    for data, kind in ((png[:20], "PNG"), (bytes(corrupt), "PNG"), (jpeg[:30], "JPEG")):
        with pytest.raises(DataError) as refused:
            check_upload(data, 10_000)
        assert not isinstance(refused.value, UnsupportedFormatError)
        assert refused.value.code == "unreadable_image"
        assert f"starts like a {kind} image" in str(refused.value)


def test_declared_size_over_the_limit_is_refused_before_decoding(tmp_path):
    bomb = png_declaring(tmp_path / "bomb.png", 8000, 6000).read_bytes()
    assert len(bomb) < 200 and declared_image(bomb) == ("png", (8000, 6000))
    with pytest.raises(TooLargeError) as refused:
        check_upload(bomb, 1_000_000)
    assert refused.value.code == "too_many_pixels"
    assert str(refused.value).startswith("The image declares 8000 x 6000 = 48,000,000 pixels")
    assert "1,000,000" in str(refused.value)
    huge = png_declaring(tmp_path / "huge.png", 60000, 60000).read_bytes()  # beyond what Pillow opens
    with pytest.raises(TooLargeError) as refused:
        check_upload(huge, 1_000_000)
    assert refused.value.code == "too_many_pixels"
