"""Images as bytes, in one place: the PNG codec, ``data:`` URIs and content hashes.

Every PNG the project writes or sends (maps, masks, report figures, API answers) goes through
:func:`encode_png`, so the same array always gives the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from cxrmap.core.errors import DataError
from cxrmap.core.fileio import write_bytes_atomic

FAST_PNG = 3
"""zlib level for PNGs sent at once (API answers, pages): about as small as level 6, several times faster."""


def encode_png(image: np.ndarray, compress_level: int = 6) -> bytes:
    """Encode a uint8 (H, W) gray or (H, W, 3) RGB array as PNG bytes.

    Raises:
        DataError: ``image`` is not a uint8 gray or RGB array.
    """
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4)))
    ):
        got = (
            f"{image.dtype} array of shape {image.shape}"
            if isinstance(image, np.ndarray)
            else type(image).__name__
        )
        raise DataError(f"a PNG is made from a uint8 (H, W, 3) RGB or (H, W) gray array; got {got}.")
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def save_png(path: str | os.PathLike, image: np.ndarray, compress_level: int = 6) -> None:
    """Write ``image`` (see :func:`encode_png`) as a PNG file, atomically (complete or absent)."""
    write_bytes_atomic(path, encode_png(image, compress_level))


MIME_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
}
"""Media types of the image files pages and reports embed, by suffix."""


def data_uri(data: bytes, mime: str = "image/png") -> str:
    """A ``data:<mime>;base64,...`` URI holding ``data`` (a page or report that needs no other file)."""
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's content as hex, read in 1 MiB blocks (bounded memory)."""
    digest = hashlib.sha256()
    with open(Path(path), "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()
