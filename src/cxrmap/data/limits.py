"""Size limits for untrusted images: the decompression-bomb guard every reader applies.

The pixel limit is :data:`DEFAULT_MAX_PIXELS`, overridden by the environment variable
``CXRMAP_MAX_PIXELS`` or per call with ``max_pixels=``. Readers check the size a header declares, before
any pixel is decoded.
"""

from __future__ import annotations

import os

from cxrmap.core.errors import DataError, TooLargeError

DEFAULT_MAX_PIXELS = 100_000_000
"""Largest image (width x height) read by default: 100 megapixels, ten times a large detector."""


def max_pixel_limit(max_pixels: int | None = None) -> int:
    """The pixel limit in force: ``max_pixels`` if given, else ``$CXRMAP_MAX_PIXELS``, else the default.

    Raises:
        DataError: ``CXRMAP_MAX_PIXELS`` is set but is not a positive integer.
    """
    if max_pixels is not None:
        return int(max_pixels)
    text = os.environ.get("CXRMAP_MAX_PIXELS", "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise DataError(
            f"CXRMAP_MAX_PIXELS={text!r} is not a positive integer; unset it or give e.g. 200000000"
        )
    return value


def check_pixel_count(width: int, height: int, name: str, max_pixels: int | None = None) -> None:
    """Refuse a declared size above the pixel limit (decompression-bomb guard).

    Raises:
        TooLargeError: ``width * height`` exceeds :func:`max_pixel_limit` (code ``too_many_pixels``).
    """
    limit = max_pixel_limit(max_pixels)
    if width * height > limit:
        raise TooLargeError(
            f"{name} declares {width} x {height} = {width * height:,} pixels, more than the limit of "
            f"{limit:,} (a guard against decompression bombs); if the image is genuine, raise the limit "
            "with the environment variable CXRMAP_MAX_PIXELS",
            code="too_many_pixels",
        )
