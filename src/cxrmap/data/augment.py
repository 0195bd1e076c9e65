"""Class balancing by augmentation, paper Sec. III-B.

The COVID-19 class is smaller than the control class, so in each training fold its images are repeated,
randomly shifted (up to 10% of width and height) and rotated (within 10 degrees), until there are as many
as controls; Keras' ``ImageDataGenerator`` with ``fill_mode="nearest"`` did this in the paper (Table II:
2361 COVID-19 training images become 10035, as many as the 10035 controls).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def random_affine(
    shape: tuple[int, int], rng: np.random.Generator, max_shift: float = 0.1, max_degrees: float = 10
) -> np.ndarray:
    """A random 2x3 affine matrix: rotation about the centre and a shift, as Keras' ImageDataGenerator.

    Args:
        shape: ``(H, W)`` of the image.
        rng: the random generator (two or three uniform draws: angle, shift x, shift y).
        max_shift: largest shift as a fraction of width (x) and height (y).
        max_degrees: largest rotation angle, in degrees, either way.

    Returns:
        ``(2, 3)`` float64 matrix for ``cv2.warpAffine`` (output pixel ``p`` takes input at ``M^-1 p``).
    """

    height, width = shape[:2]
    angle = rng.uniform(-max_degrees, max_degrees)
    shift_x, shift_y = rng.uniform(-max_shift, max_shift, size=2) * (width, height)
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle, 1.0)
    matrix[:, 2] += (shift_x, shift_y)
    return matrix


def shift_rotate(
    image: np.ndarray,
    masks: Sequence[np.ndarray],
    rng: np.random.Generator,
    max_shift: float = 0.1,
    max_degrees: float = 10,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Shift and rotate an image and its masks by the same random transform (paper Sec. III-B).

    One matrix from :func:`random_affine` is applied with ``cv2.warpAffine`` to the image (bilinear) and to
    each mask (nearest neighbour, so masks keep their values); uncovered borders repeat the edge pixels
    (``BORDER_REPLICATE``, Keras' ``fill_mode="nearest"``).

    Args:
        image: ``(H, W)`` uint8 or float32 radiograph.
        masks: ``(H, W)`` masks (uint8, bool or float32), each transformed like the image.
        rng: the random generator; the same state gives the same transform.
        max_shift: largest shift as a fraction of width and height (0.1 in the paper).
        max_degrees: largest rotation in degrees (10 in the paper).

    Returns:
        ``(image, masks)`` transformed, with their input shapes and dtypes.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> image, (mask,) = shift_rotate(np.zeros((64, 64), np.uint8), [np.ones((64, 64), bool)], rng)
        >>> image.shape, mask.dtype.name, bool(mask.all())
        ((64, 64), 'bool', True)
    """

    height, width = image.shape[:2]
    matrix = random_affine((height, width), rng, max_shift, max_degrees)

    def warp(array: np.ndarray, interpolation: int) -> np.ndarray:
        source = np.ascontiguousarray(array.view(np.uint8) if array.dtype == np.bool_ else array)
        out = cv2.warpAffine(
            source, matrix, (width, height), flags=interpolation, borderMode=cv2.BORDER_REPLICATE
        )
        return out.view(np.bool_) if array.dtype == np.bool_ else out

    return warp(image, cv2.INTER_LINEAR), [warp(mask, cv2.INTER_NEAREST) for mask in masks]


def balanced_counts(n_covid: int, n_control: int) -> tuple[int, int]:
    """Class sizes after balancing: COVID-19 images augmented up to the number of controls (Table II).

    The COVID-19 class is never shrunk, and an empty class cannot be augmented.

    Example:
        >>> balanced_counts(2361, 10035)
        (10035, 10035)
    """
    if n_covid == 0:
        return 0, n_control
    return max(n_covid, n_control), n_control


def _is_covid(labels: Sequence) -> np.ndarray:
    """Boolean array: True where a label is ``"covid"`` (or a true integer/bool)."""
    array = np.asarray(labels)
    if array.dtype.kind in "biu":
        return array.astype(bool)
    return array.astype(str) == "covid"


def balanced_plan(labels: Sequence, rng: np.random.Generator) -> np.ndarray:
    """Row positions of one balanced epoch: every row once, then the COVID-19 repeats.

    The first ``len(labels)`` entries are ``0 .. len(labels)-1`` (every control and every COVID-19 image
    once); after them come the repeats that bring the COVID-19 count to :func:`balanced_counts`. Repeats
    are spread evenly: each COVID-19 image repeats ``extra // n_covid`` times and ``extra % n_covid`` of
    them, drawn with ``rng``, once more. Entries from position ``len(labels)`` on are the ones to augment.

    Args:
        labels: ``"covid"``/``"control"`` strings, or 1/0 integers.
        rng: the random generator choosing which images take the remainder.

    Returns:
        int64 array of positions into ``labels``.
    """
    covid = np.flatnonzero(_is_covid(labels))
    n_covid, n_control = len(covid), len(labels) - len(covid)
    extra = balanced_counts(n_covid, n_control)[0] - n_covid
    repeats = np.repeat(covid, extra // n_covid) if extra else np.empty(0, np.int64)
    remainder = np.sort(rng.choice(covid, extra % n_covid, replace=False)) if extra else repeats
    return np.concatenate([np.arange(len(labels)), repeats, remainder]).astype(np.int64)
