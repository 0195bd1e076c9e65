"""Evaluation of a segmentation network: pixel-level segmentation and image-level detection (Sec. III-A).

Segmentation is evaluated over the pixels of **all** test images of both classes, as the paper does
(Table I: foreground pixels are the positives, background pixels the negatives; a control image's pixels
are all negatives, so false alarms on controls count against specificity and precision). The figures over
the COVID-19 test images alone are reported beside them (``segmentation_covid``). Images whose infection
mask is unknown (COVID-19 rows without a mask) count for detection only.

Detection is evaluated per image (Table III): COVID-19 when any pixel reaches the threshold. Each image's
:func:`~cxrmap.predict.detect.area_scores` are kept too, so that a rule chosen on validation images
(:func:`~cxrmap.evaluate.detection.choose_rule`) can be applied to the test images afterwards
(``detection_validated``, beside the paper's rule).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cxrmap.core.fileio import json_safe, write_text_atomic
from cxrmap.core.progress import track
from cxrmap.evaluate.curves import write_pr_curves, write_roc_curves
from cxrmap.evaluate.detection import DetectionAccumulator, choose_rule, roc_curve
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
from cxrmap.predict.backends import Backend
from cxrmap.predict.detect import MIN_AREAS, DetectionRule, area_scores
from cxrmap.predict.inference import predict_probabilities


@dataclass
class Evaluation:
    """Accumulated evaluation of one model on one set of images (a test fold, a split).

    Attributes:
        pixels: pixel counts over all images with a known mask (both classes): the paper's Table I.
        pixels_covid: the same over the COVID-19 images only.
        detection: per-image scores and labels (Table III, Table IV, ROC).
        areas: per image (in ``detection``'s order), its area scores for each of :data:`MIN_AREAS`.
        rule: a detection rule chosen on validation images (:meth:`choose_rule`), or None.
    """

    threshold: float = 0.5
    pixels: PixelAccumulator = field(default=None)
    pixels_covid: PixelAccumulator = field(default=None)
    detection: DetectionAccumulator = field(default=None)
    areas: list[list[float]] = field(default_factory=list)
    rule: DetectionRule | None = None

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
            areas = area_scores(infection_prob)
            self.detection.update(areas[:, 0], labels, indices)
            self.areas.extend(areas.tolist())

    def merge(self, other: Evaluation) -> Evaluation:
        """Add another evaluation (another fold) into this one; returns self."""
        self.pixels.merge(other.pixels)
        self.pixels_covid.merge(other.pixels_covid)
        self.detection.merge(other.detection)
        self.areas.extend(other.areas)
        return self

    def choose_rule(self) -> DetectionRule:
        """The detection rule that these (validation) images favour (:func:`choose_rule`)."""
        return choose_rule(self.areas, self.detection.labels)

    def validated(self) -> DetectionAccumulator:
        """Image scores and decisions under :attr:`rule` (raises ``ValueError`` without one)."""
        if self.rule is None:
            raise ValueError("this evaluation has no validated detection rule")
        column = MIN_AREAS.index(self.rule.min_area)
        accumulator = DetectionAccumulator(self.rule.threshold)
        scores = np.asarray(self.areas, np.float64).reshape(len(self.areas), -1)[:, column]
        accumulator.update(scores, self.detection.labels, self.detection.indices)
        return accumulator

    def metrics(self) -> dict:
        """``{"segmentation": ..., "segmentation_covid": ..., "detection": ...}`` (fractions, Eq. 8-13),
        and ``detection_validated`` (with the rule's ``threshold`` and ``min_area``) where there is a rule."""
        metrics = {
            "segmentation": self.pixels.metrics(),
            "segmentation_covid": self.pixels_covid.metrics(),
            "detection": self.detection.metrics(),
        }
        if self.rule is not None:
            metrics["detection_validated"] = {**self.validated().metrics(), **asdict(self.rule)}
        return metrics

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
                "areas": self.areas,
            },
            "rule": None if self.rule is None else asdict(self.rule),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Evaluation:
        """Rebuild an evaluation from :meth:`to_dict`'s output."""
        detection = DetectionAccumulator(data["threshold"])
        detection.update(
            data["detection"]["scores"], data["detection"]["labels"], data["detection"]["indices"]
        )
        rule = data.get("rule")
        return cls(
            data["threshold"],
            PixelAccumulator.from_dict(data["pixels"]),
            PixelAccumulator.from_dict(data["pixels_covid"]),
            detection,
            areas=[list(row) for row in data["detection"].get("areas", [])],
            rule=None if rule is None else DetectionRule(**rule),
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
        model: a segmentation network, or an inference backend running one
            (:func:`cxrmap.predict.backends.make_backend`: ONNX Runtime, int8...).
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
        images = cache.images[rows]
        prob = (
            model.probabilities(images)
            if isinstance(model, Backend)
            else predict_probabilities(model, images, batch_size=batch_size, device=device, amp=amp)
        )
        evaluation.update(prob[:, 0], np.asarray(cache.masks[rows]), cache.has_mask[rows], labels[rows], rows)
        bar.update(len(rows))
    bar.close()
    return evaluation


TASKS = ("segmentation", "segmentation_covid", "detection")
VALIDATED = "detection_validated"
"""Detection under the rule chosen on validation images (present where every fold has one)."""


def summarise(evaluations: list[Evaluation]) -> dict:
    """Average per-fold figures over folds (Tables I and III), with Eq. 13 intervals over all folds' counts.

    Each metric is computed per fold and averaged (folds where it is undefined are left out); its interval
    takes ``n`` from the counts summed over the folds (:func:`~cxrmap.evaluate.segmentation.interval_sizes`),
    as the paper's tables do.

    Returns:
        ``{task: {metric: mean, metric_ci: half-width, tp, fp, tn, fn, folds, images}}`` for each of
        :data:`TASKS` (counts and images summed over the folds); :data:`VALIDATED` too, with each fold's
        ``rules`` (threshold, min_area), where every fold has a validated rule.
    """

    per_fold = [evaluation.metrics() for evaluation in evaluations]
    validated = bool(evaluations) and all(e.rule is not None for e in evaluations)
    summary = {}
    for task in (*TASKS, VALIDATED) if validated else TASKS:
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
    if validated:
        summary[VALIDATED]["rules"] = [asdict(e.rule) for e in evaluations]
    return summary


def rule_label(rules: list[dict] | None) -> str:
    """Table III's name of a detection rule: the paper's, or the validated one with each fold's setting."""
    if not rules:
        return "paper: any pixel >= 0.5"
    settings = ", ".join(
        f"{r['threshold']:.3g}" + (f" & >= {100 * r['min_area']:g}% of the image" if r["min_area"] else "")
        for r in rules
    )
    return f"chosen on validation images (per fold: {settings})"


def write_results(out_dir, results: dict[str, tuple[dict, list[Evaluation]]]) -> dict[str, Path]:
    """Write the tables and curves of one or more models' evaluations (one per fold) into ``out_dir``.

    Files: ``table1_segmentation`` (pixels of all test images, as the paper),
    ``table1_segmentation_covid`` (COVID-19 test images only), ``table3_detection``, ``table4_confusion``
    (cumulative over folds), each as ``.md`` and ``.csv`` (Table III: a row for the paper's rule and,
    where the folds chose one on validation images, a row for that rule);
    ``fig6_precision_recall.{png,csv}`` (pixel precision-recall over the threshold, all folds' pixels);
    ``roc_detection.{png,csv}`` (out-of-fold image scores); ``summary.json``.

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
        rows["detection"][-1]["rule"] = rule_label(None)
        if VALIDATED in summary:
            rule = rule_label(summary[VALIDATED]["rules"])
            rows["detection"].append(
                {
                    **describe(model_config),
                    "metrics": summary[VALIDATED],
                    "folds": len(evaluations),
                    "rule": rule,
                }
            )
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
