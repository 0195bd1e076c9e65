"""The whole study in one call: data, cross-validation, infection maps, activation maps, report.

:func:`run_study` is what ``cxrmap run`` does. On the built-in phantom it reproduces, at CPU scale, the
paper's pipeline (Fig. 2): train the segmentation network in stratified k-fold cross-validation
(Sec. III-B), evaluate segmentation and detection with 95% intervals (Tables I, III, IV, Eq. 13), paint
infection maps (Sec. II-D), train classification networks and compare their Grad-CAM maps with the
infection maps (Sec. III-C, Fig. 7), and write one folder with ``report.html``, ``summary.json`` and
``model.pt`` (the checkpoint ``cxrmap predict`` and ``cxrmap serve`` use by default).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from cxrmap.core import progress as progress_output
from cxrmap.core.errors import DataError
from cxrmap.core.fileio import json_safe, write_text_atomic
from cxrmap.core.images import save_png
from cxrmap.data.cache import build_cache
from cxrmap.data.io import read_image, read_mask
from cxrmap.data.phantom import generate
from cxrmap.data.readers import index_dataset
from cxrmap.data.splits import fold_indices
from cxrmap.evaluate.evaluation import VALIDATED
from cxrmap.evaluate.metrics import binary_metrics
from cxrmap.evaluate.tables import describe
from cxrmap.explain import (
    GradCAMExplainer,
    comparison_grid,
    covid_probability,
    format_localisation,
    localisation_table,
    train_classifier,
)
from cxrmap.models.checkpoint import load_model, update_meta
from cxrmap.models.segmentation import title
from cxrmap.predict.inference import predict_probabilities
from cxrmap.predict.predictor import Predictor
from cxrmap.report import ReportData, build_card, environment_info, write_report
from cxrmap.study.cv import ModelSpec, run_cv
from cxrmap.train.presets import classifier_config, get_preset

GALLERY_COVID = 6
GALLERY_CONTROL = 2
GRID_ROWS = 4
CLASSIFIERS = {"quick": ("densenet121",), "paper": ("chexnet", "densenet121", "inception_v3", "resnet50")}
"""Encoders whose classifiers are compared by default (the paper compares all four, Sec. III-C)."""


@dataclass
class StudyOptions:
    """What ``cxrmap run`` does.

    Attributes:
        out: the run folder.
        data: a dataset root (any layout ``cxrmap index`` reads); None makes the phantom.
        phantom: the phantom's kind without ``data``: ``ct`` (rendered from a real chest CT,
            :mod:`cxrmap.data.phantom.ct`; the default) or ``shapes`` (drawn in 2D: faster, and easier).
        preset: ``quick`` (2-core CPU, minutes) or ``paper`` (Sec. III-A, GPU).
        arch, encoder: the segmentation network (the paper's leading model: U-Net + DenseNet-121).
        weights: initial encoder weights; None for the preset's default (random for ``quick``, ImageNet or
            CheXNet for ``paper``).
        folds, epochs, size: cross-validation folds, training epochs, input side; None for the preset's.
        classifiers: encoders of the classification networks compared by Grad-CAM; None for the preset's.
        seed: seed of the phantom, the folds and the training.
        validation_share: training images set aside to choose a detection rule beside the paper's; None
            for the preset's (:class:`~cxrmap.train.presets.TrainConfig`).
        n_covid, n_control, shortcut: the phantom's size and source shortcut (ignored with ``data``).
        device: ``cpu``, ``cuda``...; None picks the GPU if there is one.
        backend: inference backend of the evaluation passes and the maps
            (:data:`~cxrmap.predict.backends.BACKENDS` or ``auto``).
        progress: show progress bars.
    """

    out: Path
    data: Path | None = None
    phantom: str = "ct"
    preset: str = "quick"
    arch: str = "unet"
    encoder: str = "densenet121"
    weights: str | None = None
    folds: int | None = None
    epochs: int | None = None
    size: int | None = None
    classifiers: tuple[str, ...] | None = None
    seed: int = 0
    validation_share: float | None = None
    n_covid: int | None = None
    n_control: int | None = None
    shortcut: float = 0.5
    device: str | None = None
    backend: str = "torch"
    progress: bool = True


@dataclass
class StudyResult:
    """Where a study's results are, and its headline figures (``summary.json``)."""

    out: Path
    report: Path
    summary_path: Path
    model: Path
    summary: dict = field(default_factory=dict)


def default_weights(encoder: str, preset: str) -> str | None:
    """The paper's transfer learning (Sec. II-C): ImageNet weights, CheXNet's own for CheXNet.

    The ``quick`` preset starts from random weights: it must run offline and on any machine.
    """
    if preset != "paper":
        return None
    return "chexnet" if encoder == "chexnet" else "imagenet"


def classifier_encoders(options: StudyOptions) -> tuple[str, ...]:
    """The encoders of the classifiers the study compares (``options.classifiers`` or the preset's)."""
    return options.classifiers or CLASSIFIERS.get(options.preset, CLASSIFIERS["quick"])


def prepare_data(options: StudyOptions, config, say: Callable[[str], None]):
    """Index ``options.data``, or write (once) and index the phantom; returns ``(manifest, description)``."""

    if options.data is not None:
        result = index_dataset(options.data, progress=options.progress)
        for path, reason in result.skipped[:10]:
            say(f"  skipped {path}: {reason}")
        if len(result.skipped) > 10:
            say(f"  ... and {len(result.skipped) - 10} more skipped files")
        return result.manifest, {"kind": "real", "root": str(Path(options.data).resolve())}
    params = {
        "n_covid": options.n_covid or config.phantom_covid or 120,
        "n_control": options.n_control or config.phantom_control or 240,
        "size": 256,
        "seed": options.seed,
        "shortcut": options.shortcut,
    }
    described = {**params, "phantom": options.phantom}
    root = options.out / "data"
    stamp = root / "phantom-params.json"
    if not (stamp.is_file() and json.loads(stamp.read_text()) == described):
        generate(root, kind=options.phantom, progress=options.progress, **params)
        stamp.write_text(json.dumps(described))
    manifest = index_dataset(root, progress=False).manifest
    return manifest, {"kind": "phantom", "root": str(root.resolve()), **described}


def _gallery(
    model_path: Path, manifest, test_idx: np.ndarray, out: Path, seed: int, backend: str
) -> list[tuple[str, Path]]:
    """Infection maps of held-out images beside their radiograph and ground truth (paper Fig. 5)."""

    rng = np.random.default_rng(seed)
    labels = manifest["label"].to_numpy()[test_idx]
    covid = test_idx[labels == "covid"]
    control = test_idx[labels == "control"]
    chosen = np.concatenate(
        [
            rng.choice(covid, min(GALLERY_COVID, len(covid)), replace=False),
            rng.choice(control, min(GALLERY_CONTROL, len(control)), replace=False),
        ]
    )
    rows = manifest.iloc[chosen]
    images = [read_image(path) for path in rows["image_path"]]
    predictions = Predictor.from_checkpoint(model_path, backend=backend).predict(images)
    gallery = []
    for (_, row), image, prediction in zip(rows.iterrows(), images, predictions, strict=True):
        truth = np.repeat(image[..., None], 3, axis=2)
        if row["mask_path"]:
            mask = read_mask(row["mask_path"]).astype(np.uint8)
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(truth, contours, -1, (0, 255, 0), max(1, image.shape[0] // 128))
        gap = np.full((image.shape[0], 4, 3), 255, np.uint8)
        panel = np.concatenate([truth, gap, prediction.map(image)], axis=1)
        name = Path(row["image_path"]).stem
        path = out / "maps" / f"{name}.png"
        save_png(path, panel)
        verdict = "COVID-19" if prediction.covid else "no COVID-19"
        gallery.append(
            (
                f"{name} ({row['label']}): ground truth | infection map, {verdict}, "
                f"score {prediction.score:.2f}",
                path,
            )
        )
    return gallery


def _detection_figures(is_covid: np.ndarray, predicted: np.ndarray) -> dict:
    """Sensitivity, specificity... (Eq. 8-12) of image-level decisions."""

    tp = int((is_covid & predicted).sum())
    fp = int((~is_covid & predicted).sum())
    tn = int((~is_covid & ~predicted).sum())
    fn = int((is_covid & ~predicted).sum())
    return binary_metrics(tp, fp, tn, fn)


def compare_activation_maps(options, config, model_path: Path, cache, say) -> dict:
    """Classifiers and their Grad-CAM maps against the infection maps (Sec. III-C, Fig. 7), measured."""

    train_idx, test_idx = fold_indices(cache.manifest, 0)
    labels = cache.manifest["label"].to_numpy()
    covid_test = test_idx[(labels[test_idx] == "covid") & cache.has_mask[test_idx]]
    model, _ = load_model(model_path)
    segmentation = predict_probabilities(model, cache.images[covid_test], device=options.device or "cpu")
    seg_name = f"{title(options.arch)} {title(options.encoder)} infection map"
    maps = {seg_name: segmentation[:, 0]}
    activation, classifier_rows = {}, []
    encoders = classifier_encoders(options)
    for encoder in encoders:
        say(f"  classifier {title(encoder)} ...")
        classifier, result = train_classifier(
            encoder,
            cache,
            train_idx,
            config,
            out_dir=options.out / "classifiers",
            progress=options.progress,
            weights=default_weights(encoder, options.preset) if options.weights is None else options.weights,
            device=options.device,
        )
        scores = covid_probability(classifier, cache.images[test_idx], input_size=result.config.input_size)
        figures = _detection_figures(labels[test_idx] == "covid", scores >= 0.5)
        classifier_rows.append({"classifier": title(encoder), **figures, "seconds": result.seconds})
        with GradCAMExplainer(classifier, input_size=result.config.input_size) as explainer:
            cams = explainer.explain(cache.images[covid_test], progress=options.progress)
        activation[f"{title(encoder)} Grad-CAM"] = cams
        maps[f"{title(encoder)} Grad-CAM"] = cams
    table = localisation_table(maps, cache.masks[covid_test], cache.lungs[covid_test])
    rows = covid_test[:GRID_ROWS]
    grid = comparison_grid(
        cache.images[rows],
        cache.masks[rows],
        {name: cams[:GRID_ROWS] for name, cams in activation.items()},
        {seg_name: segmentation[:GRID_ROWS, 0]},
        options.out / "fig7_activation_vs_infection.png",
    )
    return {
        "table": table,
        "formatted": format_localisation(table),
        "grid": grid,
        "classifiers": classifier_rows,
    }


def run_study(options: StudyOptions, say: Callable[[str], None] = print) -> StudyResult:
    """Run the whole study into ``options.out`` (see the module docstring); resumes a cut-off run.

    Progress lines carry the ETA of the whole study: its plan counts the folds x epochs still to train
    and the classifiers still to come (:mod:`cxrmap.core.progress`).

    Example:
        >>> result = run_study(StudyOptions(out=Path("runs/demo")))  # doctest: +SKIP
        >>> result.summary["segmentation"]["f1"]  # doctest: +SKIP
    """
    with progress_output.plan():
        return _study(options, say)


def _study(options: StudyOptions, say: Callable[[str], None]) -> StudyResult:
    started = time.perf_counter()
    timings: dict[str, float] = {}
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    options.out = out
    weights = (
        options.weights if options.weights is not None else default_weights(options.encoder, options.preset)
    )
    config = get_preset(
        options.preset,
        seed=options.seed,
        folds=options.folds,
        epochs=options.epochs,
        size=options.size,
        validation_share=options.validation_share,
    )

    say(f"[1/5] data -> {out / 'data' if options.data is None else options.data}")
    step = time.perf_counter()
    manifest, data = prepare_data(options, config, say)
    covid_rows = manifest[manifest["label"] == "covid"]
    if covid_rows.empty or (covid_rows["mask_path"] == "").all():
        raise DataError(
            "the data set has no COVID-19 images with infection masks; the study needs them to train and "
            "evaluate segmentation (see `cxrmap index ROOT` for what was found)"
        )
    data.update(
        images=len(manifest), covid=len(covid_rows), control=int((manifest["label"] == "control").sum())
    )
    classifiers = len(classifier_encoders(options))
    progress_output.expect("classifier", classifiers * classifier_config(config).epochs, like="train")
    progress_output.expect("Grad-CAM", classifiers, like="evaluate")
    timings["data"] = time.perf_counter() - step

    say(
        f"[2/5] {config.folds}-fold cross-validation of {options.arch} + {options.encoder} ({options.preset})"
    )
    step = time.perf_counter()
    spec = ModelSpec(options.arch, options.encoder, weights, False)
    cv = run_cv(
        manifest,
        [spec],
        config,
        out / "cv",
        progress=options.progress,
        device=options.device,
        backend=options.backend,
    )
    timings["cross-validation"] = time.perf_counter() - step
    summary = cv.summary[spec.name]

    say("[3/5] infection maps of held-out images")
    step = time.perf_counter()
    model_path = out / "model.pt"
    trained_on = (
        f"{data['kind']} data: {data['images']} images ({data['covid']} COVID-19), "
        f"folds 1-{config.folds - 1} of {config.folds}"
    )
    shutil.copyfile(cv.model_paths[spec.name][0], model_path.with_suffix(".tmp"))
    os.replace(model_path.with_suffix(".tmp"), model_path)
    update_meta(
        model_path,
        data={"kind": data["kind"], "description": trained_on},
        metrics={"cross_validated": summary, "folds": config.folds},
    )
    cache = build_cache(cv.manifest, config.size, progress=False)

    _, test_idx = fold_indices(cache.manifest, 0)
    gallery = _gallery(model_path, cache.manifest, test_idx, out, options.seed, options.backend)
    timings["infection maps"] = time.perf_counter() - step

    say("[4/5] classifiers and their activation maps (Grad-CAM) against the infection maps")
    step = time.perf_counter()
    comparison = compare_activation_maps(options, config, cv.model_paths[spec.name][0], cache, say)
    timings["activation maps"] = time.perf_counter() - step

    say("[5/5] report")
    wall = time.perf_counter() - started
    timings["total"] = wall
    summary_data = {
        "segmentation": summary["segmentation"],
        "segmentation_covid": summary["segmentation_covid"],
        "detection": summary["detection"],
        **({VALIDATED: summary[VALIDATED]} if VALIDATED in summary else {}),
        "localisation": comparison["table"].to_dict(orient="records"),
        "classifiers": comparison["classifiers"],
        "model": describe(
            {"arch": options.arch, "encoder": options.encoder, "weights": weights, "freeze_encoder": False}
        ),
        "preset": options.preset,
        "folds": config.folds,
        "data": data,
        "wall_seconds": wall,
        "timings": timings,
        "files": {"report": "report.html", "model": "model.pt", "cross_validation": "cv/"},
    }

    summary_path = out / "summary.json"
    notes = [
        f"Data: {trained_on.split(':')[0]} ({data['images']} images: {data['covid']} COVID-19, "
        f"{data['control']} controls).",
        f"Segmentation network: {options.arch} + {options.encoder}, preset {options.preset}, "
        f"{config.size}x{config.size} inputs, {config.epochs} epochs, weights: {weights or 'random'}.",
    ]
    if data["kind"] == "phantom":
        notes.append(
            "Trained and evaluated on synthetic phantoms: these figures show the method works, "
            "not how it performs on patients."
        )
    subgroups = "subgroups" in cv.files
    subgroup_plot = ("Detection by subgroup: share called COVID-19", cv.files.get("subgroups_plot"))
    tables = {
        "Table I: segmentation": cv.files["segmentation"],
        "Table I (COVID-19 test images only)": cv.files["segmentation_covid"],
        "Table III: detection": cv.files["detection"],
        "Table IV: confusion matrix": cv.files["confusion"],
        **({"Detection by subgroup (out-of-fold)": cv.files["subgroups"]} if subgroups else {}),
        "Localisation of the infection: infection map vs activation maps (COVID-19 test images)": comparison[
            "formatted"
        ],
        "Classifiers: COVID-19 detection on the same test fold": pd.DataFrame(comparison["classifiers"]),
    }
    figures = [
        ("Fig. 6: pixel precision-recall over the threshold", cv.files["pr_curve"]),
        ("Detection ROC (out-of-fold image scores)", cv.files["roc_curve"]),
        *([subgroup_plot] if subgroups else []),
        ("Fig. 7: radiograph, ground truth, activation maps and infection map", comparison["grid"]),
    ]
    if subgroups:
        summary_data["detection_by_subgroup"] = pd.read_csv(cv.files["subgroups_csv"]).to_dict("records")
    report = write_report(
        out,
        ReportData(
            title=f"cxrmap run: {options.arch} + {options.encoder} on {data['kind']} data",
            config={"options": {k: str(v) for k, v in asdict(options).items()}, "training": config.to_dict()},
            environment=environment_info(),
            tables=tables,
            figures=figures,
            gallery=gallery,
            timings=timings,
            notes=notes,
            card=build_card(load_model(model_path)[1]),
        ),
    )
    summary_data["wall_seconds"] = time.perf_counter() - started
    write_text_atomic(summary_path, json.dumps(json_safe(summary_data), indent=1))
    return StudyResult(out, report, summary_path, model_path, summary_data)
