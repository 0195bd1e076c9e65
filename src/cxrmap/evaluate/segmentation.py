"""Pixel-level segmentation metrics, accumulated batch by batch (paper Sec. III-A, Eq. 8-13, Table I).

Foreground (infected) pixels are the positive class, background pixels the negative class. Counts at the
threshold (0.5) give sensitivity, specificity, precision, F1, F2 and accuracy; a fixed-bin histogram of
the probabilities of positive and negative pixels gives the AUC and the precision-recall curve over the
threshold (Fig. 6) in memory that does not grow with the data (exact up to the bin width).
"""

from __future__ import annotations

import numpy as np

from cxrmap.core.errors import DataError
from cxrmap.evaluate.metrics import METRICS, ConfusionCounter, binary_metrics, confidence_interval

BINS = 1000
"""Histogram bins over [0, 1]: thresholds of the curves are multiples of 1/BINS."""


def interval_sizes(tp: int, fp: int, tn: int, fn: int) -> dict[str, int]:
    """The ``N`` of Eq. 13 for each metric: the population its proportion is taken over.

    Sensitivity is a share of the positives (TP + FN), specificity of the negatives (TN + FP); the other
    metrics are taken over all samples, as the paper's intervals (Tables I and III) are.
    """
    total = tp + fp + tn + fn
    sizes = dict.fromkeys(METRICS, total)
    sizes.update(sensitivity=tp + fn, specificity=tn + fp, auc=total)
    return sizes


def metrics_with_intervals(
    tp: int, fp: int, tn: int, fn: int, auc: float | None = None, z: float = 1.96
) -> dict:
    """Eq. 8-12 from the counts, each with its Eq. 13 half-width.

    Returns:
        ``{name: value, name + "_ci": half-width, ...}`` for each of :data:`METRICS` (fractions), ``auc``
        and ``auc_ci`` when ``auc`` is given, and the counts ``tp, fp, tn, fn``.

    Example:
        >>> m = metrics_with_intervals(tp=8, fp=2, tn=88, fn=2)
        >>> round(m["sensitivity"], 3), round(m["precision"], 3)
        (0.8, 0.8)
    """
    values = {k: float(v) for k, v in binary_metrics(tp, fp, tn, fn).items() if k in METRICS}
    if auc is not None:
        values["auc"] = float(auc)
    sizes = interval_sizes(tp, fp, tn, fn)
    out: dict = {}
    for name, value in values.items():
        out[name] = value
        n = sizes[name]
        out[f"{name}_ci"] = float(confidence_interval(value, n)) if n and np.isfinite(value) else float("nan")
    out.update(tp=int(tp), fp=int(fp), tn=int(tn), fn=int(fn))
    return out


def histogram_auc(pos_hist: np.ndarray, neg_hist: np.ndarray) -> float:
    """ROC AUC from the histograms of the positives' and negatives' scores (NaN if a class is empty).

    Scores in one bin are treated as ties (each tie counts one half), which is the exact AUC of the scores
    rounded down to the bin; it differs from the exact AUC only through pairs that share a bin.
    """
    pos = np.asarray(pos_hist, np.float64)
    neg = np.asarray(neg_hist, np.float64)
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    negatives_below = np.cumsum(neg) - neg  # negatives in lower bins
    return float((pos * (negatives_below + 0.5 * neg)).sum() / (n_pos * n_neg))


def pr_curve(pos_hist: np.ndarray, neg_hist: np.ndarray) -> dict[str, np.ndarray]:
    """Precision and recall of "probability >= t" for t = 0, 1/BINS, ..., 1 (Fig. 6).

    Returns:
        ``{"threshold", "precision", "recall", "tp", "fp"}`` arrays; precision is 1 where nothing is
        predicted positive.
    """
    pos = np.asarray(pos_hist, np.int64)
    neg = np.asarray(neg_hist, np.int64)
    bins = len(pos)
    tp = np.concatenate([np.cumsum(pos[::-1])[::-1], [0]])  # tp[i]: positives in bins >= i
    fp = np.concatenate([np.cumsum(neg[::-1])[::-1], [0]])
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
        recall = tp / max(int(pos.sum()), 1)
    return {
        "threshold": np.arange(bins + 1) / bins,
        "precision": precision,
        "recall": recall,
        "tp": tp,
        "fp": fp,
    }


class PixelAccumulator:
    """Confusion counts at a threshold and probability histograms of the positive and negative pixels.

    Args:
        threshold: a pixel is predicted infected where its probability is at least this (0.5 in the paper).
        bins: histogram bins over [0, 1].

    Example:
        >>> acc = PixelAccumulator()
        >>> acc.update(np.array([[[0.9, 0.2], [0.6, 0.1]]]), np.array([[[1, 0], [0, 0]]]))
        >>> acc.counts()
        (1, 1, 2, 0)
    """

    def __init__(self, threshold: float = 0.5, bins: int = BINS) -> None:
        self.counter = ConfusionCounter(threshold)
        self.bins = int(bins)
        self.pos_hist = np.zeros(self.bins, np.int64)
        self.neg_hist = np.zeros(self.bins, np.int64)
        self.images = 0

    @property
    def threshold(self) -> float:
        """The decision threshold of the counts."""
        return self.counter.threshold

    def update(self, prob: np.ndarray, mask: np.ndarray) -> None:
        """Add images: ``prob`` float (N, H, W) in [0, 1] and their masks (N, H, W), nonzero = infected."""
        prob = np.asarray(prob)
        mask = np.asarray(mask).astype(bool)
        if prob.shape != mask.shape:
            raise DataError(f"probabilities {prob.shape} and masks {mask.shape} must have the same shape")
        self.counter.update(prob, mask)
        index = np.clip((prob.astype(np.float64) * self.bins).astype(np.int64), 0, self.bins - 1)
        self.pos_hist += np.bincount(index[mask], minlength=self.bins)
        self.neg_hist += np.bincount(index[~mask], minlength=self.bins)
        self.images += 1 if prob.ndim == 2 else len(prob)

    def counts(self) -> tuple[int, int, int, int]:
        """``(tp, fp, tn, fn)`` at the threshold."""
        c = self.counter
        return c.tp, c.fp, c.tn, c.fn

    def auc(self) -> float:
        """Pixel ROC AUC from the histograms (:func:`histogram_auc`)."""
        return histogram_auc(self.pos_hist, self.neg_hist)

    def metrics(self) -> dict:
        """Eq. 8-12 and the AUC with their Eq. 13 intervals (``n`` = pixels), plus counts and ``images``."""
        out = metrics_with_intervals(*self.counts(), auc=self.auc())
        out["images"] = self.images
        return out

    def merge(self, other: PixelAccumulator) -> PixelAccumulator:
        """Add another accumulator's counts (another fold) into this one; returns self."""
        if other.bins != self.bins:
            raise DataError(f"cannot merge pixel histograms of {other.bins} and {self.bins} bins")
        self.counter.merge(other.counter)
        self.pos_hist += other.pos_hist
        self.neg_hist += other.neg_hist
        self.images += other.images
        return self

    def to_dict(self) -> dict:
        """JSON-safe state (see :meth:`from_dict`)."""
        return {
            "threshold": self.threshold,
            "bins": self.bins,
            **self.counter.counts(),
            "images": self.images,
            "pos_hist": self.pos_hist.tolist(),
            "neg_hist": self.neg_hist.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> PixelAccumulator:
        """Rebuild an accumulator from :meth:`to_dict`'s output."""
        acc = cls(data["threshold"], data["bins"])
        c = acc.counter
        c.tp, c.fp, c.tn, c.fn = (int(data[k]) for k in ("tp", "fp", "tn", "fn"))
        acc.images = int(data["images"])
        acc.pos_hist = np.asarray(data["pos_hist"], np.int64)
        acc.neg_hist = np.asarray(data["neg_hist"], np.int64)
        return acc
