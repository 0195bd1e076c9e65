"""COVID-19 detection from infection probability maps (paper Sec. II-D).

A radiograph is classified as COVID-19 when the segmentation network's prediction reaches the threshold
(0.5 in the paper) at any pixel: ``Ŷ >= 0.5`` somewhere. The image's score is therefore its maximum
pixel probability, and ``is_covid(prob, t) == (image_score(prob) >= t)``.
"""

from __future__ import annotations

import numpy as np

from cxrmap.core.errors import DataError

DEFAULT_THRESHOLD = 0.5
"""The paper's detection (and segmentation) threshold."""


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
