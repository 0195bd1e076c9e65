"""Mask files and mask uploads: storage under random names, RLE/PNG decoding with checks, overlays, Dice.

Every mask the server keeps is a binary 8-bit PNG (0/255) at its radiograph's own size, stored under
``DIR/masks/<kind>/<random>.png`` (the name says nothing of where the mask came from), written atomically.
Masks are re-encoded the same way whatever their origin before they are sent, so that no byte of a
response tells a doctor's mask from a network's.
"""

from __future__ import annotations

import base64
import binascii
import io
import secrets
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from cxrmap.core.errors import CxrmapError, DataError
from cxrmap.core.fileio import write_bytes_atomic
from cxrmap.core.images import FAST_PNG, encode_png
from cxrmap.data.io import read_mask
from cxrmap.serving.http.uploads import declared_image

MASK_DIR = "masks"
TINT = np.array([255, 64, 32], np.float32)
"""Overlay colour of a candidate's region (red-orange), blended at :data:`TINT_ALPHA`, opaque outline."""
TINT_ALPHA = 0.35


class MaskError(DataError):
    """An uploaded mask that cannot be used: wrong size, not binary, undecodable (message says which)."""


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient 2|A n B| / (|A| + |B|) of two boolean masks; 1.0 when both are empty.

    Example:
        >>> dice(np.array([1, 1, 0], bool), np.array([1, 0, 0], bool))
        0.6666666666666666
    """
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def mask_png(mask: np.ndarray) -> bytes:
    """A boolean (H, W) mask as an 8-bit grey PNG with values 0 and 255 (no metadata)."""

    return encode_png(np.where(np.asarray(mask, bool), 255, 0).astype(np.uint8), FAST_PNG)


def save_mask(project_dir: str | Path, kind: str, mask: np.ndarray) -> str:
    """Write ``mask`` atomically to ``DIR/masks/<kind>/<random>.png``; return the path relative to ``DIR``."""
    relative = f"{MASK_DIR}/{kind}/{secrets.token_hex(12)}.png"
    write_bytes_atomic(Path(project_dir) / relative, mask_png(mask))
    return relative


def load_mask(project_dir: str | Path, relative: str) -> np.ndarray:
    """The boolean mask stored at ``DIR/relative``."""

    return read_mask(Path(project_dir) / relative)


def encode_rle(mask: np.ndarray) -> list[int]:
    """Row-major run lengths of ``mask``, alternating background/foreground, starting with background.

    Example:
        >>> encode_rle(np.array([[0, 1, 1], [1, 0, 0]], bool))
        [1, 3, 2]
    """
    flat = np.asarray(mask, bool).ravel()
    if not flat.size:
        return []
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    return [0, *counts] if flat[0] else counts


def decode_rle(counts: list[int], width: int, height: int) -> np.ndarray:
    """The (height, width) boolean mask of :func:`encode_rle`'s run lengths.

    The counts are checked as Python integers before any array is made (a sum that wraps in 64 bits
    would make ``np.repeat`` write past its buffer): each a whole number from 0 to ``width * height``, at
    most ``width * height + 1`` of them, their running total never above ``width * height`` and their
    sum exactly that.

    Raises:
        MaskError: a negative, too large or non-integer count, too many counts, or counts that do not
            sum to ``width * height``.
    """
    pixels = width * height
    if not isinstance(counts, list) or not all(
        isinstance(c, int) and not isinstance(c, bool) for c in counts
    ):
        raise MaskError("mask.counts must be a list of whole numbers (run lengths)")
    if len(counts) > pixels + 1:
        raise MaskError(
            f"mask.counts holds {len(counts):,} run lengths but a {width} x {height} mask has at most "
            f"{pixels + 1:,} (a leading 0, then one per pixel)"
        )
    if any(count < 0 for count in counts):
        raise MaskError("mask.counts holds a negative run length")
    total = 0
    for count in counts:
        total += count
        if total > pixels:
            raise MaskError(
                f"mask.counts sum to more than the {width} x {height} = {pixels:,} pixels of the mask; "
                "send one run length per run over the whole image, row by row"
            )
    if total != pixels:
        raise MaskError(
            f"mask.counts sum to {total} pixels but the mask is {width} x {height} = "
            f"{pixels} pixels; send one run length per run over the whole image, row by row"
        )
    runs = np.arange(len(counts)) % 2 == 1
    return np.repeat(runs, np.asarray(counts, np.int64)).reshape(height, width)


def decode_png_mask(data: bytes, max_pixels: int) -> np.ndarray:
    """A binary PNG upload (grey or 1-bit, values 0/255 or 0/1) as a boolean mask.

    Raises:
        MaskError: not a PNG, too many pixels, not single-channel, or values other than the two levels.
    """

    try:
        kind, (width, height) = declared_image(data)
    except CxrmapError as error:
        raise MaskError(f"the drawn mask is not a readable PNG: {error}") from None
    if kind != "png":
        raise MaskError("the drawn mask must be a PNG (or RLE)")
    if width * height > max_pixels:
        raise MaskError(
            f"the drawn mask declares {width} x {height} pixels, over the limit of {max_pixels:,}"
        )
    try:
        with Image.open(io.BytesIO(data)) as image:
            mode = image.mode
            if mode not in ("1", "L"):
                raise MaskError(f"the drawn mask must be a grey (L) or 1-bit PNG, this one is {mode}")
            array = np.asarray(image.convert("L"))
    except MaskError:
        raise
    except Exception:
        raise MaskError("the drawn mask PNG could not be decoded; re-encode it") from None
    values = set(np.unique(array).tolist())
    if not values <= {0, 255} and not values <= {0, 1}:
        raise MaskError(
            f"the drawn mask is not binary: it holds the values {sorted(values)[:6]}; use only 0 and 255"
        )
    return array > 0


def decode_mask_upload(body: dict, width: int, height: int, max_pixels: int) -> np.ndarray:
    """The drawn mask of a submission (``{"format": "rle"|"png", ...}``), checked against the image size.

    Raises:
        MaskError: an unknown format, a size that differs from the radiograph's, or bad content.
    """
    if not isinstance(body, dict):
        raise MaskError('mask must be an object {"format": "rle" | "png", ...}')
    kind = body.get("format")
    if kind == "rle":
        w, h = body.get("width"), body.get("height")
        if (w, h) != (width, height):
            raise MaskError(f"the drawn mask is {w} x {h} but the radiograph is {width} x {height}")
        return decode_rle(body.get("counts"), width, height)
    if kind == "png":
        data = body.get("data")
        if not isinstance(data, str):
            raise MaskError("mask.data must be the base64 text of a PNG file")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise MaskError("mask.data is not valid base64") from None
        mask = decode_png_mask(raw, max_pixels)
        if mask.shape != (height, width):
            raise MaskError(
                f"the drawn mask is {mask.shape[1]} x {mask.shape[0]} but the radiograph is "
                f"{width} x {height}"
            )
        return mask
    raise MaskError(f'mask.format must be "rle" or "png", got {kind!r}')


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The radiograph (uint8 H x W) in RGB with ``mask`` tinted and outlined; uint8 H x W x 3."""

    mask = np.asarray(mask, bool)
    rgb = np.repeat(image[..., None].astype(np.float32), 3, axis=2)
    rgb[mask] = (1 - TINT_ALPHA) * rgb[mask] + TINT_ALPHA * TINT
    side = max(1, round(max(image.shape) / 256))
    kernel = np.ones((2 * side + 1, 2 * side + 1), np.uint8)
    edge = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_GRADIENT, kernel).astype(bool)
    rgb[edge] = TINT
    return np.clip(rgb, 0, 255).astype(np.uint8)
