"""Evaluation of a segmentation network: pixel-level segmentation and image-level detection (Sec. III-A).

Segmentation is evaluated over the pixels of **all** test images of both classes, as the paper does
(Table I: foreground pixels are the positives, background pixels the negatives; a control image's pixels
are all negatives, so false alarms on controls count against specificity and precision). The figures over
the COVID-19 test images alone are reported beside them (``segmentation_covid``). Images whose infection
mask is unknown (COVID-19 rows without a mask) count for detection only.

Detection is evaluated per image (Table III): COVID-19 when any pixel reaches the threshold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxrmap.core.fileio import json_safe, write_text_atomic
from cxrmap.core.progress import track
from cxrmap.evaluate.curves import write_pr_curves, write_roc_curves
from cxrmap.evaluate.detection import DetectionAccumulator, roc_curve
from cxrmap.evaluate.metrics import confidence_interval
from cxrmap.evaluate.segmentation import METRICS, PixelAccumulator, interval_sizes, pr_curve
from cxrmap.evaluate.tables import (
    COLUMNS,
    confusion_frame,
    confusion_markdown,
    describe,
    metric_table,
    to_markdown,
    write_table,
)
from cxrmap.predict.detect import image_score
from cxrmap.predict.inference import predict_probabilities


@dataclass
class Evaluation:
    """Accumulated evaluation of one model on one set of images (a test fold, a split).

    Attributes:
        pixels: pixel counts over all images with a known mask (both classes): the paper's Table I.
        pixels_covid: the same over the COVID-19 images only.
        detection: per-image scores and labels (Table III, Table IV, ROC).
    """

    threshold: float = 0.5
    pixels: PixelAccumulator = field(default=None)
    pixels_covid: PixelAccumulator = field(default=None)
    detection: DetectionAccumulator = field(default=None)

    def __post_init__(self) -> None:
        self.pixels = self.pixels or PixelAccumulator(self.threshold)
        self.pixels_covid = self.pixels_covid or PixelAccumulator(self.threshold)
        self.detection = self.detection or DetectionAccumulator(self.threshold)

    def update(
        self,
        infection_prob: np.ndarray,
        masks: np.ndarray,
        has_mask: np.ndarray,
        labels: np.ndarray,
        indices=None,
    ) -> None:
        """Add a batch: infection probabilities (N, H, W), masks (N, H, W), mask known (N,), labels (N,)."""

        has_mask = np.asarray(has_mask, bool)
        labels = np.asarray(labels).astype(np.int64)
        if has_mask.any():
            self.pixels.update(infection_prob[has_mask], masks[has_mask])
        covid = has_mask & (labels == 1)
        if covid.any():
            self.pixels_covid.update(infection_prob[covid], masks[covid])
        if len(labels):
            self.detection.update(image_score(infection_prob), labels, indices)

    def merge(self, other: Evaluation) -> Evaluation:
        """Add another evaluation (another fold) into this one; returns self."""
        self.pixels.merge(other.pixels)
        self.pixels_covid.merge(other.pixels_covid)
        self.detection.merge(other.detection)
        return self

    def metrics(self) -> dict:
        """``{"segmentation": ..., "segmentation_covid": ..., "detection": ...}`` (fractions, Eq. 8-13)."""
        return {
            "segmentation": self.pixels.metrics(),
            "segmentation_covid": self.pixels_covid.metrics(),
            "detection": self.detection.metrics(),
        }

    def to_dict(self) -> dict:
        """JSON-safe state: pixel histograms and per-image scores (see :meth:`from_dict`)."""
        return {
            "threshold": self.threshold,
            "pixels": self.pixels.to_dict(),
            "pixels_covid": self.pixels_covid.to_dict(),
            "detection": {
                "scores": self.detection.scores,
                "labels": self.detection.labels,
                "indices": self.detection.indices,
            },
        }

    @classmethod
    def from_dict(cls, data: dict) -> Evaluation:
        """Rebuild an evaluation from :meth:`to_dict`'s output."""
        detection = DetectionAccumulator(data["threshold"])
        detection.update(
            data["detection"]["scores"], data["detection"]["labels"], data["detection"]["indices"]
        )
        return cls(
            data["threshold"],
            PixelAccumulator.from_dict(data["pixels"]),
            PixelAccumulator.from_dict(data["pixels_covid"]),
            detection,
        )


def evaluate_model(
    model,
    cache,
    indices,
    threshold: float = 0.5,
    batch_size: int = 16,
    device="cpu",
    amp: bool | str = False,
    progress: bool = True,
    chunk: int = 64,
) -> Evaluation:
    """Run ``model`` on the cache rows ``indices`` and accumulate segmentation and detection figures.

    Probabilities are computed ``chunk`` images at a time
    (:func:`cxrmap.predict.inference.predict_probabilities`), so memory does not grow with the number of
    images. Channel 0 of the output is the infection map.

    Args:
        model: a segmentation network.
        cache: the :class:`~cxrmap.data.cache.ImageCache` holding the images and masks.
        indices: cache rows to evaluate (e.g. a fold's test part).
        threshold: pixel and detection threshold (0.5 in the paper).
        batch_size, device, amp: as :func:`~cxrmap.predict.inference.predict_probabilities`.
        progress: show a progress bar.
        chunk: images read from the cache per step.

    Returns:
        The :class:`Evaluation`.
    """

    indices = np.asarray(indices, np.int64).reshape(-1)
    labels = (cache.manifest["label"].to_numpy() == "covid").astype(np.int64)
    evaluation = Evaluation(threshold)
    bar = track(stage="evaluate", total=len(indices), enabled=progress)
    for start in range(0, len(indices), chunk):
        rows = np.sort(indices[start : start + chunk])
        prob = predict_probabilities(model, cache.images[rows], batch_size=batch_size, device=device, amp=amp)
        evaluation.update(prob[:, 0], np.asarray(cache.masks[rows]), cache.has_mask[rows], labels[rows], rows)
        bar.update(len(rows))
    bar.close()
    return evaluation


TASKS = ("segmentation", "segmentation_covid", "detection")


def summarise(evaluations: list[Evaluation]) -> dict:
    """Average per-fold figures over folds (Tables I and III), with Eq. 13 intervals over all folds' counts.

    Each metric is computed per fold and averaged (folds where it is undefined are left out); its interval
    takes ``n`` from the counts summed over the folds (:func:`~cxrmap.evaluate.segmentation.interval_sizes`),
    as the paper's tables do.

    Returns:
        ``{task: {metric: mean, metric_ci: half-width, tp, fp, tn, fn, folds, images}}`` for each of
        :data:`TASKS` (counts and images summed over the folds).
    """

    per_fold = [evaluation.metrics() for evaluation in evaluations]
    summary = {}
    for task in TASKS:
        counts = [sum(int(m[task][k]) for m in per_fold) for k in ("tp", "fp", "tn", "fn")]
        sizes = interval_sizes(*counts)
        values: dict = {}
        for name in (*METRICS, "auc"):
            folds = [m[task][name] for m in per_fold if np.isfinite(m[task][name])]
            mean = float(np.mean(folds)) if folds else float("nan")
            values[name] = mean
            n = sizes[name]
            values[f"{name}_ci"] = float(confidence_interval(mean, n)) if folds and n else float("nan")
        values.update(dict(zip(("tp", "fp", "tn", "fn"), counts, strict=True)), folds=len(per_fold))
        values["images"] = sum(int(m[task]["images"]) for m in per_fold)
        summary[task] = values
    return summary


def write_results(out_dir, results: dict[str, tuple[dict, list[Evaluation]]]) -> dict[str, Path]:
    """Write the tables and curves of one or more models' evaluations (one per fold) into ``out_dir``.

    Files: ``table1_segmentation`` (pixels of all test images, as the paper), ``table1_segmentation_covid``
    (COVID-19 test images only), ``table3_detection``, ``table4_confusion`` (cumulative over folds), each as
    ``.md`` and ``.csv``; ``fig6_precision_recall.{png,csv}`` (pixel precision-recall over the threshold,
    all folds' pixels); ``roc_detection.{png,csv}`` (out-of-fold image scores); ``summary.json``.

    Args:
        out_dir: destination folder.
        results: model name -> (model config, list of per-fold :class:`Evaluation`).

    Returns:
        File role -> path.
    """

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict]] = {task: [] for task in TASKS}
    pr, roc, confusion, summaries = {}, {}, {}, {}
    for name, (model_config, evaluations) in results.items():
        summary = summaries[name] = summarise(evaluations)
        for task in TASKS:
            rows[task].append({**describe(model_config), "metrics": summary[task], "folds": len(evaluations)})
        merged = Evaluation(evaluations[0].threshold)
        for evaluation in evaluations:
            merged.merge(evaluation)
        pr[name] = pr_curve(merged.pixels.pos_hist, merged.pixels.neg_hist)
        confusion[name] = merged.detection.confusion()
        if len(set(merged.detection.labels)) == 2:
            roc[name] = {
                **roc_curve(merged.detection.labels, merged.detection.scores),
                "auc": merged.detection.auc(),
            }
    folds = max((len(e) for _, e in results.values()), default=0)
    over = f"averaged over {folds} folds" if folds > 1 else "on the test set"
    titles = {
        "segmentation": f"Table I: infected region segmentation (%), pixels of all test images, {over}",
        "segmentation_covid": f"Table I (COVID-19 test images only): segmentation (%), {over}",
        "detection": f"Table III: COVID-19 detection (%), {over}",
    }
    stems = {
        "segmentation": "table1_segmentation",
        "segmentation_covid": "table1_segmentation_covid",
        "detection": "table3_detection",
    }
    paths: dict[str, Path] = {}
    for task in TASKS:
        table = metric_table(rows[task], COLUMNS)
        paths[task], _ = write_table(out_dir / stems[task], to_markdown(table, COLUMNS, titles[task]), table)
    title = "Table IV: cumulative confusion matrices of COVID-19 detection (sum over the folds' test sets)"
    paths["confusion"], _ = write_table(
        out_dir / "table4_confusion", confusion_markdown(confusion, title), confusion_frame(confusion)
    )
    paths["pr_curve"], _ = write_pr_curves(
        pr, out_dir / "fig6_precision_recall.png", out_dir / "fig6_precision_recall.csv"
    )
    paths["roc_curve"], _ = write_roc_curves(
        roc, out_dir / "roc_detection.png", out_dir / "roc_detection.csv"
    )
    paths["summary"] = out_dir / "summary.json"
    write_text_atomic(paths["summary"], json.dumps(json_safe(summaries), indent=1))
    return paths


def validation(cache, rows, threshold: float = 0.5, amp: bool | str = False):
    """The per-epoch validation of :func:`cxrmap.train.loop.train` on the cache ``rows``.

    Returns a callable ``(model, device) -> dict`` giving the pixel ``f1``, ``sensitivity``,
    ``specificity``, ``precision`` and the image-level ``detection_sensitivity`` and
    ``detection_specificity`` (paper Eq. 8-12) at ``threshold``.
    """
    rows = np.asarray(rows, np.int64)

    def figures(model, device) -> dict[str, float]:
        metrics = evaluate_model(
            model, cache, rows, threshold=threshold, device=device, amp=amp, progress=False
        ).metrics()
        seg, det = metrics["segmentation"], metrics["detection"]
        scores = {k: float(seg[k]) for k in ("f1", "sensitivity", "specificity", "precision")}
        scores.update(
            detection_sensitivity=float(det["sensitivity"]), detection_specificity=float(det["specificity"])
        )
        return scores

    return figures
