"""Image-level COVID-19 detection metrics (paper Sec. II-D and III-A, Table III, Table IV).

An image is detected as COVID-19 when its infection probability reaches the threshold at any pixel
(:func:`cxrmap.predict.detect.is_covid`); its score is the maximum pixel probability
(:func:`cxrmap.predict.detect.image_score`), from which the ROC curve and its AUC follow. COVID-19 is the
positive class, the control group the negative class.

:func:`choose_rule` picks a :class:`~cxrmap.predict.detect.DetectionRule` (threshold and minimum infected
area) on validation images; its figures on the test fold are reported beside the paper's rule.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from cxrmap.core.errors import DataError
from cxrmap.evaluate.metrics import ConfusionCounter
from cxrmap.evaluate.segmentation import metrics_with_intervals
from cxrmap.predict.detect import DEFAULT_THRESHOLD, MIN_AREAS, DetectionRule


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


def choose_rule(areas, labels, min_areas: tuple[float, ...] = MIN_AREAS) -> DetectionRule:
    """The rule with the highest Youden index (sensitivity + specificity - 1) on validation images.

    Args:
        areas: the images' :func:`~cxrmap.predict.detect.area_scores` ``(N, len(min_areas))``.
        labels: 1 COVID-19, 0 control, one per image; both classes must be present.

    Thresholds are taken midway between neighbouring scores; ties go to the smaller area, then to the
    threshold nearest the paper's 0.5.

    Raises:
        DataError: the validation images hold one class only, or the shapes disagree.

    Example:
        >>> choose_rule(np.array([[0.9, 0.8], [0.7, 0.1], [0.3, 0.0]]), [1, 0, 0], (0.0, 0.1))
        DetectionRule(threshold=0.8, min_area=0.0)
    """
    areas = np.asarray(areas, np.float64).reshape(len(labels), -1)
    labels = np.asarray(labels).astype(bool)
    if areas.shape[1] != len(min_areas):
        raise DataError(f"{areas.shape[1]} area scores per image, but {len(min_areas)} minimum areas")
    if labels.all() or not labels.any():
        raise DataError(
            "choosing a detection rule needs validation images of both classes (COVID-19 and control); "
            "give a larger validation share or more images"
        )
    best, best_key = DetectionRule(), None
    for column, area in enumerate(min_areas):
        values = np.unique(areas[:, column])
        for threshold in np.clip((values[1:] + values[:-1]) / 2 if len(values) > 1 else values, 1e-6, 1.0):
            predicted = areas[:, column] >= threshold
            youden = predicted[labels].mean() + (~predicted[~labels]).mean() - 1
            key = (round(youden, 12), -area, -abs(threshold - DEFAULT_THRESHOLD))
            if best_key is None or key > best_key:
                best, best_key = DetectionRule(float(threshold), float(area)), key
    return best
