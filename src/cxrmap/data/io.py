"""Reading radiographs and masks from PNG, JPEG and DICOM into numpy arrays."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a radiograph as a uint8 grayscale array (H, W)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("L"), dtype=np.uint8)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a mask as a boolean array (H, W), foreground where the value is above 127."""
    with Image.open(path) as image:
        return np.asarray(image.convert("L")) > 127
