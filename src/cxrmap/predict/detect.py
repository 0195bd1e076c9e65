"""COVID-19 detection from infection probability maps (paper Sec. II-D).

A radiograph is classified as COVID-19 when the segmentation network's prediction reaches the threshold
(0.5 in the paper) at any pixel: ``Ŷ >= 0.5`` somewhere. The image's score is therefore its maximum
pixel probability, and ``is_covid(prob, t) == (image_score(prob) >= t)``.

Beyond the paper, a :class:`DetectionRule` may also ask for a minimum infected area: COVID-19 when at least
``k`` pixels reach the threshold, i.e. when the ``k``-th largest probability does (:func:`area_scores`), so a
single bright pixel on a control no longer decides. Its parameters are chosen on validation images, never
on the test fold (:func:`cxrmap.evaluate.detection.choose_rule`); the paper's rule is ``k = 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cxrmap.core.errors import DataError

DEFAULT_THRESHOLD = 0.5
"""The paper's detection (and segmentation) threshold."""
MIN_AREAS = (0.0, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02)
"""Minimum infected areas (shares of the image) a validated rule may choose from; 0 is one pixel."""


def _as_maps(prob: np.ndarray) -> np.ndarray:
    """Check ``prob`` is a non-empty (H, W) map or (N, H, W) batch of finite numbers; return it as ndarray."""
    prob = np.asarray(prob)
    if prob.ndim not in (2, 3) or prob.size == 0:
        raise DataError(
            f"expected a probability map (H, W) or a batch of maps (N, H, W); got shape {prob.shape}."
        )
    if not (np.issubdtype(prob.dtype, np.floating) or np.issubdtype(prob.dtype, np.bool_)):
        raise DataError(f"expected probabilities as floats in [0, 1]; got dtype {prob.dtype}.")
    if not np.isfinite(prob).all():
        raise DataError("the probability map contains NaN or infinite values; expected values in [0, 1].")
    return prob


def image_score(prob: np.ndarray) -> float | np.ndarray:
    """The image-level COVID-19 score: the maximum pixel probability.

    Args:
        prob: probabilities, (H, W) for one image or (N, H, W) for a batch.

    Returns:
        A float for one map, a float array (N,) for a batch.

    Example:
        >>> image_score(np.array([[0.1, 0.7], [0.2, 0.0]]))
        0.7
    """
    prob = _as_maps(prob)
    if prob.ndim == 2:
        return float(prob.max())
    return prob.reshape(len(prob), -1).max(axis=1).astype(np.float64)


def is_covid(prob: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> bool | np.ndarray:
    """COVID-19 if the probability reaches ``threshold`` at any pixel (paper Sec. II-D).

    Args:
        prob: probabilities, (H, W) for one image or (N, H, W) for a batch.
        threshold: decision threshold in (0, 1]; the paper uses 0.5.

    Returns:
        A bool for one map, a bool array (N,) for a batch.

    Example:
        >>> is_covid(np.array([[0.1, 0.5]])), is_covid(np.array([[0.1, 0.4999]]))
        (True, False)
    """
    if not 0.0 < threshold <= 1.0:
        raise DataError(f"the detection threshold must lie in (0, 1]; got {threshold}.")
    return image_score(prob) >= threshold


def min_pixels(min_area: float, pixels: int) -> int:
    """The number of pixels a minimum infected area (a share of the image's ``pixels``) asks for, >= 1."""
    return max(1, math.ceil(min_area * pixels - 1e-9))


def area_scores(prob: np.ndarray, min_areas: tuple[float, ...] = MIN_AREAS) -> np.ndarray:
    """Per image, the largest threshold that ``min_pixels(area)`` pixels reach, for each of ``min_areas``.

    The score for area 0 is :func:`image_score` (the maximum); an image holds ``area`` of infected pixels
    at threshold ``t`` exactly when its score for ``area`` is at least ``t``.

    Returns:
        float64 array ``(N, len(min_areas))`` for a batch ``(N, H, W)``, ``(len(min_areas),)`` for one map.

    Example:
        >>> area_scores(np.array([[0.9, 0.6], [0.2, 0.1]]), (0.0, 0.5)).tolist()
        [0.9, 0.6]
    """
    prob = _as_maps(prob)
    flat = prob.reshape(1 if prob.ndim == 2 else len(prob), -1)
    pixels = flat.shape[1]
    ks = [min(min_pixels(area, pixels), pixels) for area in min_areas]
    deepest = max(ks)
    top = -np.sort(-np.partition(flat, pixels - deepest, axis=1)[:, pixels - deepest :], axis=1)
    scores = top[:, [k - 1 for k in ks]].astype(np.float64)
    return scores[0] if prob.ndim == 2 else scores


@dataclass(frozen=True)
class DetectionRule:
    """COVID-19 when at least ``min_area`` of the image (one pixel for 0) reaches ``threshold``.

    ``DetectionRule()`` is the paper's rule (any pixel >= 0.5, Sec. II-D).
    """

    threshold: float = DEFAULT_THRESHOLD
    min_area: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise DataError(f"the detection threshold must lie in (0, 1]; got {self.threshold}.")
        if not 0.0 <= self.min_area < 1.0:
            raise DataError(
                f"the minimum infected area is a share of the image in [0, 1); got {self.min_area}."
            )

    def scores(self, prob: np.ndarray) -> float | np.ndarray:
        """The images' scores under this rule (the maximum probability for ``min_area`` 0)."""
        scores = area_scores(prob, (self.min_area,))
        return float(scores[0]) if scores.ndim == 1 else scores[:, 0]

    def decide(self, prob: np.ndarray) -> bool | np.ndarray:
        """COVID-19 or not, for one map ``(H, W)`` or a batch ``(N, H, W)``."""
        return self.scores(prob) >= self.threshold
