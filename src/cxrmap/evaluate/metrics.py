"""Evaluation metrics of the paper (Sec. III-A, Eq. 8-13), from confusion-matrix counts.

Pixel level (segmentation): positives are infected pixels. Image level (detection): positives are
COVID-19 images. Either way the counts come from :class:`ConfusionCounter`, which accumulates them batch
by batch (exact integers, no overflow for billions of pixels) and merges across folds.

Undefined values: a ratio whose denominator is zero (e.g. precision when nothing was predicted
positive, sensitivity on a set without positives) is ``float('nan')``, never a made-up 0 or 1. The
F-scores are computed from the counts, ``(1 + b^2) TP / ((1 + b^2) TP + b^2 FN + FP)`` (equal to Eq. 12
wherever precision and sensitivity exist), so they are 0, not nan, when there are positives but none
was found.

Example:
    >>> m = binary_metrics(tp=8, fp=2, tn=85, fn=5)
    >>> round(m["sensitivity"], 4), round(m["precision"], 4)
    (0.6154, 0.8)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cxrmap.core.errors import DataError

METRICS = ("sensitivity", "specificity", "precision", "f1", "f2", "accuracy")
"""Keys of :func:`binary_metrics`, in the order of the paper's tables."""


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def _fbeta_counts(tp: int, fp: int, fn: int, beta: float) -> float:
    b2 = beta * beta
    return _ratio((1 + b2) * tp, (1 + b2) * tp + b2 * fn + fp)


def fbeta(precision: float, recall: float, beta: float) -> float:
    """F-score of Eq. 12: ``(1 + b^2) P R / (b^2 P + R)``.

    ``beta = 1`` is the harmonic mean of precision and recall (F1), ``beta = 2`` weighs recall (sensitivity)
    more (F2). Returns nan when either input is nan, 0.0 when both are 0.
    """
    if math.isnan(precision) or math.isnan(recall):
        return float("nan")
    b2 = beta * beta
    denominator = b2 * precision + recall
    return (1 + b2) * precision * recall / denominator if denominator else 0.0


def binary_metrics(tp: int, fp: int, tn: int, fn: int) -> dict[str, float]:
    """Sensitivity, specificity, precision, F1, F2 and accuracy (Eq. 8-12) as fractions.

    Args:
        tp, fp, tn, fn: confusion-matrix counts (non-negative).

    Returns:
        dict with the keys of :data:`METRICS`; nan where a denominator is zero (see the module notes).

    Raises:
        DataError: a negative count.
    """
    counts = {"tp": tp, "fp": fp, "tn": tn, "fn": fn}
    bad = {k: v for k, v in counts.items() if v < 0}
    if bad:
        raise DataError(f"confusion counts must be non-negative, got {bad}")
    tp, fp, tn, fn = (int(v) for v in (tp, fp, tn, fn))
    return {
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "precision": _ratio(tp, tp + fp),
        "f1": _fbeta_counts(tp, fp, fn, 1.0),
        "f2": _fbeta_counts(tp, fp, fn, 2.0),
        "accuracy": _ratio(tp + tn, tp + tn + fp + fn),
    }


def confidence_interval(value: float, n: int, z: float = 1.96) -> float:
    """Half-width of the confidence interval of a metric (Eq. 13): ``z * sqrt(value (1 - value) / n)``.

    Args:
        value: the metric as a fraction in ``[0, 1]``.
        n: the number of samples it was computed on (pixels or images).
        z: 1.96 for 95%.

    Returns:
        the half-width (a fraction, like ``value``); nan when ``value`` is nan or ``n`` is 0.

    Raises:
        DataError: ``value`` outside ``[0, 1]`` or negative ``n``.
    """
    if n < 0:
        raise DataError(f"the number of samples must be >= 0, got {n}")
    if math.isnan(value) or n == 0:
        return float("nan")
    if not 0.0 <= value <= 1.0:
        raise DataError(
            f"a confidence interval needs a fraction in [0, 1], got {value} (percent? divide by 100)"
        )
    return z * math.sqrt(value * (1.0 - value) / n)


def _as_numpy(x: Any) -> np.ndarray:
    """A numpy view of a numpy array or (CPU/GPU, grad or not) torch tensor."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


class ConfusionCounter:
    """Accumulates TP, FP, TN, FN of thresholded probabilities against binary targets.

    A prediction is positive where ``prob >= threshold`` (the paper's rule, Sec. II-D); a target is
    positive where it is ``> 0.5`` (bool, {0, 1} or {0, 255}/255 masks alike). Counts are Python
    integers: exact for any number of pixels.

    Args:
        threshold: decision threshold on the probabilities (0.5 in the paper).

    Example:
        >>> counter = ConfusionCounter()
        >>> counter.update(np.array([0.9, 0.2, 0.6, 0.1]), np.array([1, 1, 0, 0]))
        >>> (counter.tp, counter.fp, counter.tn, counter.fn)
        (1, 1, 1, 1)
    """

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = float(threshold)
        self.tp = self.fp = self.tn = self.fn = 0

    def __repr__(self) -> str:
        return (
            f"ConfusionCounter(threshold={self.threshold}, tp={self.tp}, fp={self.fp}, tn={self.tn}, "
            f"fn={self.fn})"
        )

    @property
    def total(self) -> int:
        """Number of counted elements (pixels or images)."""
        return self.tp + self.fp + self.tn + self.fn

    def update(self, prob: Any, target: Any) -> None:
        """Add one batch: probabilities and targets of the same shape (torch tensors or numpy arrays).

        Raises:
            DataError: the shapes differ.
        """
        if hasattr(prob, "detach") and hasattr(target, "detach"):
            if tuple(prob.shape) != tuple(target.shape):
                raise DataError(
                    f"prob and target shapes differ: {tuple(prob.shape)} vs {tuple(target.shape)}"
                )
            predicted = prob.detach() >= self.threshold
            actual = target.detach().to(predicted.device) > 0.5
            tp = int((predicted & actual).sum())
            positives = int(predicted.sum())
            actual_positives = int(actual.sum())
            total = predicted.numel()
        else:
            prob, target = _as_numpy(prob), _as_numpy(target)
            if prob.shape != target.shape:
                raise DataError(f"prob and target shapes differ: {prob.shape} vs {target.shape}")
            predicted = prob >= self.threshold
            actual = target > 0.5
            tp = int(np.count_nonzero(predicted & actual))
            positives = int(np.count_nonzero(predicted))
            actual_positives = int(np.count_nonzero(actual))
            total = int(predicted.size)
        self.tp += tp
        self.fp += positives - tp
        self.fn += actual_positives - tp
        self.tn += total - positives - actual_positives + tp

    def merge(self, other: ConfusionCounter) -> ConfusionCounter:
        """Add ``other``'s counts to this counter (e.g. folds into an overall figure); returns self.

        Raises:
            DataError: the thresholds differ.
        """
        if other.threshold != self.threshold:
            raise DataError(
                f"cannot merge counts at threshold {other.threshold} into threshold {self.threshold}"
            )
        self.tp += other.tp
        self.fp += other.fp
        self.tn += other.tn
        self.fn += other.fn
        return self

    def counts(self) -> dict[str, int]:
        """``{"tp", "fp", "tn", "fn"}``."""
        return {"tp": self.tp, "fp": self.fp, "tn": self.tn, "fn": self.fn}

    def metrics(self) -> dict[str, float]:
        """:func:`binary_metrics` of the accumulated counts."""
        return binary_metrics(self.tp, self.fp, self.tn, self.fn)
