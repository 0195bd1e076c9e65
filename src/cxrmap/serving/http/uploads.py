"""Checks of an uploaded image before any pixel is decoded: format, declared size, DICOM header.

The format is told by the file's content, never by its name or declared content type: PNG and JPEG by
Pillow's header-only open (:func:`cxrmap.data.io.image_header`), DICOM (``DICM`` at byte 128) by the
header check of :func:`cxrmap.data.dicom.check_dicom_header`, which refuses anything but a single-frame
monochrome radiograph. The size a header declares is compared with the server's pixel limit before
decoding (decompression bombs declare huge sizes in a few hundred bytes).
"""

from __future__ import annotations

from cxrmap.core.errors import (
    DataError,
    MalformedRequestError,
    TooLargeError,
    UnsupportedFormatError,
)
from cxrmap.data.io import image_header

ALLOWED_FORMATS = ("png", "jpeg", "dicom")

_SIGNATURES = {"png": b"\x89PNG\r\n\x1a\n", "jpeg": b"\xff\xd8\xff"}
"""First bytes of a PNG and a JPEG file: a file that starts so but whose header Pillow cannot read is a
damaged image (422), not a file of another format (415)."""

_NO_LIMIT = 2**62
_NAME = "the uploaded file"


def declared_image(data: bytes) -> tuple[str, tuple[int, int]]:
    """The format (one of :data:`ALLOWED_FORMATS`) and (width, height) that ``data``'s header declares.

    Raises:
        MalformedRequestError: ``data`` is empty (code ``empty_upload``).
        UnsupportedFormatError: not a PNG, JPEG or DICOM file.
        DataError: a PNG/JPEG whose header is damaged or cut short (``unreadable_image``), a DICOM the
            header check refuses (``dicom_refused``; the reason names at most the attribute at fault,
            never a tag's value of the patient).
        TooLargeError: a size so large that Pillow refuses to open it (``too_many_pixels``).
    """
    if not data:
        raise MalformedRequestError(
            "The uploaded file is empty: choose a chest X-ray image file.", code="empty_upload"
        )
    try:
        info = image_header(data, _NAME, max_pixels=_NO_LIMIT)  # the caller applies its own limit
    except TooLargeError:
        raise TooLargeError(
            "The image declares more pixels than can be opened safely; downscale it (a chest X-ray needs no "
            "more than a few thousand pixels a side).",
            code="too_many_pixels",
        ) from None
    except DataError as error:
        if data[128:132] == b"DICM":
            raise DataError(
                f"The DICOM file was refused before its pixels were read: {error}.", code="dicom_refused"
            ) from None
        for kind, signature in _SIGNATURES.items():
            if data.startswith(signature):
                raise DataError(
                    f"The file starts like a {kind.upper()} image but its header is damaged or cut short "
                    "(a length or checksum is wrong). Re-export it and retry.",
                    code="unreadable_image",
                ) from None
        raise UnsupportedFormatError(
            "The file is not a PNG, JPEG or DICOM image (checked by its content, not its name). "
            "Export the radiograph as PNG, JPEG or DICOM (Part 10, with the 'DICM' preamble)."
        ) from None
    kind = info.format.lower()
    if info.width <= 0 or info.height <= 0:
        raise DataError(
            f"The {info.format} header declares an empty image ({info.width} x {info.height}); re-export it.",
            code="unreadable_image",
        )
    return kind, (info.width, info.height)


def check_upload(data: bytes, max_pixels: int) -> tuple[str, tuple[int, int]]:
    """Vet an uploaded image before decoding it: :func:`declared_image`, then the pixel limit.

    Args:
        data: the whole upload (already bounded by the body-size middleware).
        max_pixels: the largest width x height accepted.

    Returns:
        (format, (width, height)) with format one of :data:`ALLOWED_FORMATS`.

    Raises:
        the errors of :func:`declared_image`, and TooLargeError (``too_many_pixels``) over ``max_pixels``.
    """
    kind, (width, height) = declared_image(data)
    if width * height > max_pixels:
        raise TooLargeError(
            f"The image declares {width} x {height} = {width * height:,} pixels, over the server's limit of "
            f"{max_pixels:,}. Downscale it (a chest X-ray needs no more than a few thousand pixels a side).",
            code="too_many_pixels",
        )
    return kind, (width, height)
