"""Image-level COVID-19 detection metrics (paper Sec. II-D and III-A, Table III, Table IV).

An image is detected as COVID-19 when its infection probability reaches the threshold at any pixel
(:func:`cxrmap.predict.detect.is_covid`); its score is the maximum pixel probability
(:func:`cxrmap.predict.detect.image_score`), from which the ROC curve and its AUC follow. COVID-19 is the
positive class, the control group the negative class.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from cxrmap.core.errors import DataError
from cxrmap.evaluate.metrics import ConfusionCounter
from cxrmap.evaluate.segmentation import metrics_with_intervals


class DetectionAccumulator:
    """Per-image scores and labels, gathered batch by batch.

    Args:
        threshold: an image is COVID-19 where its score is at least this (0.5 in the paper).

    Example:
        >>> acc = DetectionAccumulator()
        >>> acc.update(np.array([0.9, 0.3, 0.6]), np.array([1, 1, 0]))
        >>> acc.confusion().tolist()
        [[0, 1], [1, 1]]
    """

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = float(threshold)
        self.scores: list[float] = []
        self.labels: list[int] = []
        self.indices: list[int] = []

    def update(self, scores, labels, indices=None) -> None:
        """Add images: their scores (max probability), labels (1 COVID-19, 0 control) and cache rows."""
        scores = np.asarray(scores, np.float64).reshape(-1)
        labels = np.asarray(labels).astype(np.int64).reshape(-1)
        if len(scores) != len(labels):
            raise DataError(f"{len(scores)} scores but {len(labels)} labels; expected one label per image")
        self.scores.extend(scores.tolist())
        self.labels.extend(labels.tolist())
        indices = np.full(len(scores), -1) if indices is None else np.asarray(indices).reshape(-1)
        self.indices.extend(int(i) for i in indices)

    def counts(self) -> tuple[int, int, int, int]:
        """``(tp, fp, tn, fn)`` at the threshold."""
        counter = ConfusionCounter(self.threshold)
        counter.update(np.asarray(self.scores, np.float64), np.asarray(self.labels, np.float64))
        return counter.tp, counter.fp, counter.tn, counter.fn

    def confusion(self) -> np.ndarray:
        """2 x 2 confusion matrix, rows the truth (control, COVID-19), columns the prediction (Table IV)."""
        tp, fp, tn, fn = self.counts()
        return np.array([[tn, fp], [fn, tp]], np.int64)

    def auc(self) -> float:
        """ROC AUC of the scores (NaN where only one class is present)."""

        if len(set(self.labels)) < 2:
            return float("nan")
        return float(roc_auc_score(self.labels, self.scores))

    def metrics(self) -> dict:
        """Eq. 8-12 and the ROC AUC with their Eq. 13 intervals (``n`` = images), counts, ``images``."""
        out = metrics_with_intervals(*self.counts(), auc=self.auc())
        out["images"] = len(self.scores)
        return out

    def merge(self, other: DetectionAccumulator) -> DetectionAccumulator:
        """Append another accumulator's images (another fold); returns self."""
        self.scores.extend(other.scores)
        self.labels.extend(other.labels)
        self.indices.extend(other.indices)
        return self


def roc_curve(labels, scores) -> dict[str, np.ndarray]:
    """ROC curve of image scores: ``{"threshold", "fpr", "tpr"}`` (scikit-learn's ``roc_curve``)."""

    fpr, tpr, thresholds = sk_roc_curve(np.asarray(labels), np.asarray(scores), drop_intermediate=False)
    return {"threshold": np.clip(thresholds, 0.0, 1.0), "fpr": fpr, "tpr": tpr}
