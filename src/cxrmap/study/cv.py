"""k-fold cross-validation of any list of architecture x encoder x frozen settings (paper Sec. III-B).

Every model is trained on k-1 folds and evaluated on the held-out one (stratified folds, 80/20 with k=5,
Table II), in its own folder ``OUT/<model>/fold-<k>/``. A fold that finished holds ``done.json`` (its
figures, its pixel histograms and per-image scores) and is skipped the next time; a fold cut off holds
``last.pt`` and is resumed where it stopped. The figures are then averaged over the folds (Tables I and
III), the confusion matrices summed (Table IV), the pixel precision-recall curves (Fig. 6) and the ROC of
the out-of-fold image scores drawn: see :func:`cxrmap.evaluate.evaluation.write_results`. The out-of-fold
scores are kept (``scores.csv``) and broken down by the manifest's group, finding and source
(``detection_subgroups``, :mod:`cxrmap.evaluate.subgroups`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cxrmap.core import progress as progress_output
from cxrmap.core.errors import DataError, ModelError
from cxrmap.core.fileio import json_safe, write_text_atomic
from cxrmap.core.runtime import resolve_device
from cxrmap.data.cache import build_cache
from cxrmap.data.manifest import read_manifest, write_manifest
from cxrmap.data.splits import assign_folds, fold_indices, validation_split
from cxrmap.evaluate.evaluation import Evaluation, evaluate_model, summarise, write_results
from cxrmap.evaluate.subgroups import write_subgroups
from cxrmap.models.checkpoint import load_model, update_meta
from cxrmap.predict.backends import CALIBRATION_IMAGES, make_backend
from cxrmap.train.loop import FINAL, LAST, train
from cxrmap.train.presets import TrainConfig, get_preset

DONE = "done.json"
SUBGROUPS = "detection_subgroups"


@dataclass(frozen=True)
class ModelSpec:
    """One model setting to cross-validate.

    Attributes:
        arch: ``unet``, ``unetplusplus`` or ``dla``.
        encoder: ``densenet121``, ``chexnet``, ``inception_v3``, ``resnet50``...
        weights: initial encoder weights (``imagenet``, ``chexnet``, a file), ``None`` for random.
        freeze_encoder: keep the encoder's weights fixed (Tables I and III: frozen / not frozen).
    """

    arch: str
    encoder: str
    weights: str | None = None
    freeze_encoder: bool = False

    @property
    def name(self) -> str:
        """Folder and table name, e.g. ``unet-densenet121`` or ``unet-densenet121-imagenet-frozen``."""
        parts = [self.arch, self.encoder]
        if self.weights:
            parts.append(Path(self.weights).stem if os.sep in self.weights else self.weights)
        if self.freeze_encoder:
            parts.append("frozen")
        return "-".join(parts)


def model_specs(archs, encoders, frozen: str = "no", weights: str | None = None) -> list[ModelSpec]:
    """Every arch x encoder x frozen combination.

    Args:
        archs, encoders: names (lists, or comma-separated strings).
        frozen: ``no`` (train the encoder), ``yes`` (freeze it) or ``both``.
        weights: initial encoder weights of every model.

    Raises:
        ModelError: ``frozen`` is not one of the three, or a list is empty.
    """
    split = [a for a in (archs.split(",") if isinstance(archs, str) else archs) if a]
    encoders = [e for e in (encoders.split(",") if isinstance(encoders, str) else encoders) if e]
    options = {"no": (False,), "yes": (True,), "both": (True, False)}
    if frozen not in options:
        raise ModelError(f"frozen must be 'no', 'yes' or 'both', got {frozen!r}")
    if not split or not encoders:
        raise ModelError(
            "give at least one architecture and one encoder (e.g. --archs unet --encoders densenet121)"
        )
    if weights is None and frozen != "no":
        warnings.warn(
            "a frozen encoder keeps its initial weights, here random ones: give weights (imagenet, "
            "chexnet or a file) for the paper's frozen setting",
            stacklevel=2,
        )
    return [
        ModelSpec(a.strip(), e.strip(), weights, f) for a in split for e in encoders for f in options[frozen]
    ]


@dataclass
class CVResult:
    """What a cross-validation produced.

    Attributes:
        out_dir: the output folder.
        manifest: the manifest with the folds used (cache rows order).
        fold_metrics: model name -> per-fold figures (``segmentation``, ``segmentation_covid``,
            ``detection``).
        summary: model name -> figures averaged over folds with Eq. 13 intervals (:func:`summarise`).
        confusion: model name -> cumulative 2 x 2 confusion matrix (Table IV).
        model_paths: model name -> each fold's ``model.pt``.
        scores: out-of-fold image scores: ``model, fold, index, image_path, label, score``.
        files: result files (tables, curves) by role.
        configs: model name -> the model config (arch, encoder, weights, freeze_encoder).
    """

    out_dir: Path
    manifest: pd.DataFrame
    fold_metrics: dict[str, list[dict]] = field(default_factory=dict)
    summary: dict[str, dict] = field(default_factory=dict)
    confusion: dict[str, np.ndarray] = field(default_factory=dict)
    model_paths: dict[str, list[Path]] = field(default_factory=dict)
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    files: dict[str, Path] = field(default_factory=dict)
    configs: dict[str, dict] = field(default_factory=dict)


def _with_folds(manifest: pd.DataFrame, k: int, seed: int) -> pd.DataFrame:
    """``manifest`` with its own folds if it has exactly ``0..k-1`` on every row, else newly assigned ones."""

    present = set(manifest["fold"].astype(str))
    if present == {str(i) for i in range(k)}:
        return manifest
    return assign_folds(manifest, k=k, seed=seed)


def scores_frame(evaluation: Evaluation, manifest: pd.DataFrame, **columns) -> pd.DataFrame:
    """Per-image detection scores with the image paths and ``columns`` (e.g. model, fold) prepended."""
    index = np.asarray(evaluation.detection.indices, np.int64)
    frame = pd.DataFrame(
        {
            "index": index,
            "image_path": manifest["image_path"].to_numpy()[index] if len(index) else [],
            "label": evaluation.detection.labels,
            "score": evaluation.detection.scores,
        }
    )
    for position, (key, value) in enumerate(columns.items()):
        frame.insert(position, key, value)
    return frame


def train_and_evaluate(
    config: TrainConfig,
    cache,
    train_idx,
    test_idx,
    out_dir: Path,
    resume: bool | None = None,
    progress: bool = True,
    device: str | None = None,
    extra: dict | None = None,
    backend: str = "torch",
):
    """Train on ``train_idx``, reload the final model and evaluate it on ``test_idx``.

    With ``config.validation_share`` > 0 that share of ``train_idx`` is set aside (stratified) and not
    trained on; the detection rule it favours (:meth:`Evaluation.choose_rule`) is applied to the test images
    beside the paper's (``detection_validated``). The held-out figures (and ``extra``) are written into the
    checkpoint's metadata, so the model file says how good it is. The evaluation passes run on the inference
    ``backend`` (:func:`~cxrmap.predict.backends.make_backend`; int8 calibrated on training images). Without
    test rows the evaluation is ``None``. ``resume``: continue from ``last.pt`` (``None``: when there is
    one).

    Returns:
        ``(TrainResult, Evaluation | None)``.
    """
    share = config.validation_share if len(test_idx) else 0.0  # the rule is for scoring test rows
    try:
        fit_idx, val_idx = validation_split(cache.manifest, train_idx, share, config.seed)
    except DataError as error:  # too few images of a class: the paper's rule alone, on all of them
        warnings.warn(f"{error}; no validated detection rule for {out_dir}", stacklevel=2)
        fit_idx, val_idx = validation_split(cache.manifest, train_idx, 0.0)
    result = train(
        config,
        cache,
        fit_idx,
        None,
        out_dir,
        resume=(Path(out_dir) / LAST).is_file() if resume is None else resume,
        progress=progress,
        device=device,
    )
    if not len(test_idx):
        return result, None
    device = resolve_device(device)
    model, meta = load_model(result.model_path, device=device)
    calibration = np.asarray(cache.images[fit_idx[:CALIBRATION_IMAGES]]) if backend == "onnx-int8" else None
    runner = make_backend(backend, model, meta, device, amp=config.amp, calibration=calibration)
    evaluate = functools.partial(evaluate_model, runner, cache, threshold=config.threshold)
    evaluation = evaluate(test_idx, progress=progress)
    if len(val_idx):
        evaluation.rule = evaluate(val_idx, progress=False).choose_rule()
    update_meta(result.model_path, metrics={**(extra or {}), **evaluation.metrics()})
    return result, evaluation


def fold_done(fold_dir: Path) -> bool:
    """The fold in ``fold_dir`` finished (``done.json`` and ``model.pt``): :func:`run_fold` skips it."""
    return (fold_dir / DONE).is_file() and (fold_dir / FINAL).is_file()


def run_fold(
    config: TrainConfig,
    cache,
    fold: int,
    fold_dir: Path,
    progress: bool = True,
    device: str | None = None,
    backend: str = "torch",
) -> tuple[Evaluation, Path]:
    """Train on every fold but ``fold`` and evaluate on ``fold``; skip what ``done.json`` says is done.

    Returns:
        ``(evaluation, model path)``.
    """
    done = fold_dir / DONE
    if fold_done(fold_dir):
        return Evaluation.from_dict(json.loads(done.read_text())["evaluation"]), fold_dir / FINAL
    train_idx, test_idx = fold_indices(cache.manifest, fold)
    result, evaluation = train_and_evaluate(
        config,
        cache,
        train_idx,
        test_idx,
        fold_dir,
        progress=progress,
        device=device,
        extra={"fold": fold},
        backend=backend,
    )
    metrics = evaluation.metrics()
    record = {"fold": fold, "seconds": result.seconds, "metrics": metrics, "evaluation": evaluation.to_dict()}
    write_text_atomic(done, json.dumps(json_safe(record)))
    return evaluation, result.model_path


def run_cv(
    manifest,
    configs,
    preset: str | TrainConfig = "quick",
    out_dir: str | os.PathLike = "runs/cv",
    folds: int | None = None,
    progress: bool = True,
    device: str | None = None,
    backend: str = "torch",
) -> CVResult:
    """Cross-validate every model of ``configs`` over ``folds`` folds and write the combined tables.

    Args:
        manifest: a manifest DataFrame or the path of its CSV. Its ``fold`` column is used when it holds
            exactly ``0..folds-1``; otherwise stratified folds are assigned (seed of the preset).
        configs: :class:`ModelSpec` items (or dicts with their fields).
        preset: ``quick``, ``paper`` or a :class:`~cxrmap.train.presets.TrainConfig`; each model's arch,
            encoder, weights and freezing replace the preset's.
        out_dir: output folder (one sub-folder per model and fold, tables at the top).
        folds: number of folds; default the preset's.
        progress: show progress bars.
        device: ``cpu``, ``cuda``...; ``None`` takes the GPU if there is one.
        backend: the inference backend of the evaluation passes (:data:`~cxrmap.predict.backends.BACKENDS`
            or ``auto``).

    Progress shows the fold and, inside a :func:`cxrmap.core.progress.plan`, the ETA of the whole run.

    Returns:
        The :class:`CVResult`.

    Example:
        >>> specs = model_specs("unet", "densenet121")  # doctest: +SKIP
        >>> result = run_cv("manifest.csv", specs, "quick", "runs/cv")  # doctest: +SKIP
        >>> result.summary["unet-densenet121"]["segmentation"]["f1"]  # doctest: +SKIP
    """

    with progress_output.plan():
        return _run_cv(manifest, configs, preset, Path(out_dir), folds, progress, device, backend)


def _run_cv(
    manifest, configs, preset, out_dir: Path, folds, progress: bool, device, backend: str
) -> CVResult:
    base = get_preset(preset) if isinstance(preset, str) else preset
    k = int(folds or base.folds)
    base = base.replace(folds=k)
    frame = read_manifest(manifest) if isinstance(manifest, (str, os.PathLike)) else manifest
    frame = _with_folds(frame, k, base.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(frame, out_dir / "manifest.csv")
    specs = [c if isinstance(c, ModelSpec) else ModelSpec(**c) for c in configs]
    to_run = sum(not fold_done(out_dir / s.name / f"fold-{f}") for s in specs for f in range(k))
    progress_output.expect("train", to_run * base.epochs)
    progress_output.expect("evaluate", to_run)
    cache = build_cache(frame, base.size, progress=progress)
    result = CVResult(out_dir, cache.manifest)
    evaluations: dict[str, tuple[dict, list[Evaluation]]] = {}
    scores = []
    for spec in specs:
        config = dataclasses.replace(
            base,
            arch=spec.arch,
            encoder=spec.encoder,
            weights=spec.weights,
            freeze_encoder=spec.freeze_encoder,
        )
        model_config = {
            "arch": spec.arch,
            "encoder": spec.encoder,
            "weights": spec.weights,
            "freeze_encoder": spec.freeze_encoder,
        }
        fold_evaluations, paths = [], []
        for fold in range(k):
            facts = {"model": spec.name} if len(specs) > 1 else {}
            with progress_output.context(**facts, fold=f"{fold + 1}/{k}"):
                evaluation, path = run_fold(
                    config, cache, fold, out_dir / spec.name / f"fold-{fold}", progress, device, backend
                )
            fold_evaluations.append(evaluation)
            paths.append(path)
            scores.append(scores_frame(evaluation, cache.manifest, model=spec.name, fold=fold))
        evaluations[spec.name] = (model_config, fold_evaluations)
        result.configs[spec.name] = model_config
        result.model_paths[spec.name] = paths
        result.fold_metrics[spec.name] = [e.metrics() for e in fold_evaluations]
        result.summary[spec.name] = summarise(fold_evaluations)
        result.confusion[spec.name] = sum(e.detection.confusion() for e in fold_evaluations)
    result.files = write_results(out_dir, evaluations)
    result.scores = pd.concat(scores, ignore_index=True) if scores else pd.DataFrame()
    result.files["scores"] = out_dir / "scores.csv"
    write_text_atomic(result.files["scores"], result.scores.to_csv(index=False, float_format="%.6g"))
    result.files.update(write_subgroups(result.scores, cache.manifest, out_dir / SUBGROUPS, base.threshold))
    return result
