"""The paper's whole study by one command: Tables I-VIII and Figs. 6-7, each beside the paper's figures.

:func:`reproduce` is what ``cxrmap reproduce`` does (Sec. III-A, III-B):

- Group I (Tables I-IV, Figs. 6-7): COVID-19 images and control Group I, stratified k-fold
  cross-validation of every architecture x encoder x frozen setting: the job grid of
  :mod:`cxrmap.study.grid` (one job per setting and fold), run here, on Ray or in static shards.
- Group II (Tables V-VII, Sec. III-B-2): COVID-19 and control Group II; ChestX-ray14's official split
  kept, the other images split at its ratio; the leading model (U-Net, DenseNet-121, not frozen) trained
  once and tested, its detection broken down by class.
- Table VIII: parameter counts (:func:`cxrmap.models.params.table_viii`) and the inference time per
  image measured on this machine.

Each table is written as ``OUT/tables/<name>.md`` and ``.csv``, our figures beside the paper's
(:mod:`cxrmap.study.paper_tables`) with the difference, and gathered in ``OUT/report.html``. A finished job
is never run again, a cut-off one resumes from its checkpoint; the trained tables are written once every
job of the grid is done (by whichever run finds it so).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from cxrmap.core.errors import DataError
from cxrmap.core.fileio import json_safe, write_json_atomic
from cxrmap.core.runtime import resolve_device
from cxrmap.data.augment import balanced_counts
from cxrmap.data.cache import build_cache
from cxrmap.data.manifest import read_manifest, write_manifest
from cxrmap.data.readers import index_dataset
from cxrmap.data.splits import (
    GROUP_II_CLASSES,
    apply_official_lists,
    assign_folds,
    find_official_lists,
    group2_classes,
    group2_split,
)
from cxrmap.evaluate.curves import write_pr_curves
from cxrmap.evaluate.evaluation import Evaluation
from cxrmap.evaluate.segmentation import pr_curve
from cxrmap.evaluate.subgroups import SUBGROUP_COLUMNS, write_subgroups
from cxrmap.evaluate.tables import (
    TITLES,
    beside_paper,
    describe,
    markdown_table,
    write_table,
)
from cxrmap.models.encoders import ENCODERS
from cxrmap.models.params import FOOTNOTES, table_viii
from cxrmap.models.segmentation import ARCHS, create_model, title
from cxrmap.report import ReportData, environment_info, write_report
from cxrmap.study import paper_tables as paper
from cxrmap.study.cv import DONE, ModelSpec, run_cv, scores_frame
from cxrmap.study.grid import Job, run_job, run_jobs, select_shard
from cxrmap.study.run import StudyOptions, compare_activation_maps, default_weights
from cxrmap.train.presets import TrainConfig, get_preset

TABLES = tuple(f"table{i}" for i in range(1, 9))
FIGURES = ("fig6", "fig7")
GROUP_TARGETS = {
    "group-i": ("table1", "table2", "table3", "table4", "fig6", "fig7"),
    "group-ii": ("table5", "table6", "table7"),
    "all": TABLES + FIGURES,
}
TARGETS = TABLES + FIGURES + tuple(GROUP_TARGETS)
"""What ``cxrmap reproduce`` accepts: a table, a figure, a group of experiments or ``all``."""
GROUP_I = frozenset(GROUP_TARGETS["group-i"])
GROUP_II = frozenset(GROUP_TARGETS["group-ii"])
TRAINED_I = frozenset({"table1", "table3", "table4", "fig6", "fig7"})
TRAINED_II = frozenset({"table6", "table7"})
GRIDS = {"paper": (ARCHS, ENCODERS, "both"), "quick": (ARCHS, ("densenet121",), "no")}
"""Default grid per preset: the paper's 3 x 4 x 2 settings (Tables I, III), or one encoder not frozen."""
FROZEN = {"no": (False,), "yes": (True,), "both": (True, False)}


@dataclass
class ReproduceOptions:
    """What ``cxrmap reproduce`` does.

    Attributes:
        out: the study folder.
        data: the dataset root (any layout ``cxrmap index`` reads; Table VIII alone needs none).
        targets: names of :data:`TARGETS`.
        preset: ``paper`` (Sec. III-A) or ``quick`` (CPU-sized).
        archs, encoders, frozen: the Group-I grid (``frozen``: ``no``, ``yes`` or ``both``); None for the
            preset's (:data:`GRIDS`).
        weights: initial encoder weights of every model; None for the paper's (ImageNet, CheXNet's own)
            with ``paper``, random with ``quick``.
        folds, epochs, size, batch_size: None for the preset's.
        classifiers: encoders whose Grad-CAM maps Fig. 7 compares; None for the preset's.
        seed: seed of the folds, the Group-II split and the training.
        shard: ``(i, n)``: run only shard ``i`` of ``n`` of the job grid.
        engine: ``local`` or ``ray``; gpus_per_job (None: 1 where CUDA is there, else 0), max_retries and
            ray_address go to Ray.
        timing_runs, timing_warmup: Table VIII's timed and warm-up forward passes per model.
        device: ``cpu``, ``cuda``...; None takes the GPU if there is one.
        progress: show progress bars.
    """

    out: Path
    data: Path | None = None
    targets: tuple[str, ...] = ("all",)
    preset: str = "quick"
    archs: tuple[str, ...] | None = None
    encoders: tuple[str, ...] | None = None
    frozen: str | None = None
    weights: str | None = None
    folds: int | None = None
    epochs: int | None = None
    size: int | None = None
    batch_size: int | None = None
    classifiers: tuple[str, ...] | None = None
    seed: int = 0
    shard: tuple[int, int] | None = None
    engine: str = "local"
    gpus_per_job: float | None = None
    max_retries: int = 3
    ray_address: str | None = None
    timing_runs: int = 20
    timing_warmup: int = 5
    device: str | None = None
    progress: bool = True


@dataclass
class ReproduceResult:
    """Where the study's results are.

    Attributes:
        out: the study folder.
        report: ``report.html``.
        files: table or figure name -> its Markdown or PNG file.
        jobs: names of the grid's jobs; pending: those not done yet (tables wait for them).
    """

    out: Path
    report: Path
    files: dict[str, Path] = field(default_factory=dict)
    jobs: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)


def resolve_targets(names) -> tuple[str, ...]:
    """The tables and figures the ``names`` stand for, in the paper's order.

    Raises:
        DataError: an unknown name.
    """
    chosen: set[str] = set()
    for name in names:
        key = str(name).strip().lower()
        if key not in TARGETS:
            raise DataError(f"unknown target {name!r}; choose from {', '.join(TARGETS)}")
        chosen.update(GROUP_TARGETS.get(key, (key,)))
    return tuple(t for t in TABLES + FIGURES if t in chosen)


def grid_specs(options: ReproduceOptions) -> tuple[list[ModelSpec], ModelSpec]:
    """The Group-I grid's model settings and the leading model (Sec. III-B-2)."""
    archs, encoders, frozen = GRIDS.get(options.preset, GRIDS["quick"])
    frozen = options.frozen or frozen
    if frozen not in FROZEN:
        raise DataError(f"frozen must be 'no', 'yes' or 'both', got {frozen!r}")

    def weights(encoder: str) -> str | None:
        return options.weights or default_weights(encoder, options.preset)

    specs = [
        ModelSpec(arch, encoder, weights(encoder), is_frozen)
        for arch in options.archs or archs
        for encoder in options.encoders or encoders
        for is_frozen in FROZEN[frozen]
    ]
    arch, encoder, is_frozen = paper.LEADING
    return specs, ModelSpec(arch, encoder, weights(encoder), is_frozen)


# ------------------------------------------------------------------------------------------------ data


def group_i_manifest(manifest: pd.DataFrame) -> pd.DataFrame:
    """COVID-19 and control Group-I rows (Sec. III-B-1).

    Raises:
        DataError: no COVID-19 image with a mask, or no Group-I control.
    """
    frame = manifest[manifest["group"].isin(["covid", "I"])].reset_index(drop=True)
    covid = frame["label"] == "covid"
    if not (covid & (frame["mask_path"] != "")).any() or covid.all():
        raise DataError(
            "Group I needs COVID-19 images with infection masks and control Group-I images "
            "(Control_Group/Control_Group_I); see `cxrmap index ROOT` for what was found"
        )
    return frame


def group_ii_manifest(manifest: pd.DataFrame, root, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """COVID-19 and control Group-II rows with the fixed split as folds (Sec. III-B-2), and notes.

    ChestX-ray14 keeps its official split (``train_val_list.txt`` / ``test_list.txt`` where found, else
    its Train/Test folders); the other images are split at its ratio (:func:`group2_split`). The split is
    written as two folds, ``0`` the test set and ``1`` the training set, so that one
    :func:`cxrmap.study.cv.run_fold` of fold 0 trains and tests it.

    Raises:
        DataError: no Group-II control, or nothing to take the ratio from.
    """
    frame = manifest[manifest["group"].isin(["covid", "II"])].reset_index(drop=True)
    if not (frame["group"] == "II").any():
        raise DataError(
            "Group II needs control Group-II images (Control_Group/Control_Group_II with CHESTXRAY-14/"
            "{Train,Test}); see `cxrmap index ROOT` for what was found"
        )
    lists = find_official_lists(frame, root)
    notes = []
    if lists:
        frame = apply_official_lists(frame, lists)
        notes.append(f"ChestX-ray14 split from its official lists in {lists['test'].parent}.")
    else:
        notes.append("ChestX-ray14 split from its Train/Test folders (no official list files found).")
    frame = group2_split(frame, seed=seed)
    frame = frame[frame["split"].isin(["train", "test"])].reset_index(drop=True)
    frame["fold"] = np.where(frame["split"] == "test", "0", "1")
    return frame, notes


def _stable_manifest(path: Path, frame: pd.DataFrame, prepare: Callable) -> pd.DataFrame:
    """The study's manifest at ``path``: written once by ``prepare(frame)``, then read back (resume, shards).

    Raises:
        DataError: ``path`` holds a manifest of other images (the data changed under the same folder).
    """
    if path.is_file():
        kept = read_manifest(path)
        if set(kept["image_path"]) != set(frame["image_path"]):
            raise DataError(
                f"{path} was written for other images than the data holds now; reproduce into a new --out "
                "folder (or delete this one) to start over"
            )
        return kept
    write_manifest(prepare(frame), path)
    return read_manifest(path)


def table2_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Table II per fold: COVID-19 and Group-I samples, training, augmented training and test counts.

    COVID-19 training images are augmented up to the Group-I training images
    (:func:`cxrmap.data.augment.balanced_counts`); controls are not augmented.
    """
    rows = []
    folds = sorted({f for f in frame["fold"] if f}, key=int)
    for fold in folds:
        test = frame["fold"] == fold
        counts = {}
        for cls, rows_of in (("covid", frame["label"] == "covid"), ("I", frame["group"] == "I")):
            counts[cls] = (int(rows_of.sum()), int((rows_of & ~test).sum()), int((rows_of & test).sum()))
        augmented = dict(
            zip(("covid", "I"), balanced_counts(counts["covid"][1], counts["I"][1]), strict=True)
        )
        for cls, (samples, training, tested) in counts.items():
            rows.append(
                {
                    "fold": int(fold),
                    "class": cls,
                    "samples": samples,
                    "training": training,
                    "augmented": augmented[cls],
                    "test": tested,
                }
            )
    return pd.DataFrame(rows, columns=["fold", "class", "samples", "training", "augmented", "test"])


def table5_counts(frame: pd.DataFrame, targets: dict[str, int] = paper.GROUP_II_TARGETS) -> pd.DataFrame:
    """Table V: per Group-II class, training, augmented training (to the paper's ``targets``) and test counts.

    A class with a target is augmented up to it (never shrunk, an empty class stays empty); ChestX-ray14
    and any other class are not augmented.
    """
    classes = group2_classes(frame).to_numpy()
    present = [c for c in (*GROUP_II_CLASSES, "other") if (classes == c).any()]
    rows = []
    for cls in present:
        chosen = classes == cls
        training = int((chosen & (frame["split"] == "train").to_numpy()).sum())
        tested = int((chosen & (frame["split"] == "test").to_numpy()).sum())
        augmented = max(training, targets[cls]) if cls in targets and training else training
        rows.append({"class": cls, "training": training, "augmented": augmented, "test": tested})
    return pd.DataFrame(rows, columns=["class", "training", "augmented", "test"])


# ---------------------------------------------------------------------------------------------- tables

CLASS_NAMES = {
    "covid": "COVID-19",
    "I": "Group-I",
    "bacterial": "Bacterial Pneumonia",
    "chestxray14": "ChestX-ray14",
    "viral": "Viral Pneumonia",
    "other": "Other controls",
}


def _with_diff(record: dict, name: str, ours, reference, scale: float = 1.0) -> None:
    """CSV columns ``name``, ``name_paper`` and ``name_diff`` (``reference`` divided by ``scale``)."""
    record[name] = ours
    record[f"{name}_paper"] = None if reference is None else reference / scale
    record[f"{name}_diff"] = None if reference is None or ours is None else ours - reference / scale


def table2(counts: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """Table II's Markdown and CSV: our per-fold counts beside the paper's."""
    header = ["Data", "Fold", "Number of Samples", "Training Samples", "Augmented Training", "Test Samples"]
    lines, records = [], []
    columns = ("samples", "training", "augmented", "test")
    for row in counts.to_dict("records"):
        reference = paper.TABLE_II.get(row["class"])
        cells = [CLASS_NAMES[row["class"]], row["fold"] + 1]
        record = {"fold": row["fold"], "class": row["class"]}
        for position, column in enumerate(columns):
            cells.append(beside_paper(row[column], reference[position] if reference else None, "count"))
            _with_diff(record, column, row[column], reference[position] if reference else None)
        lines.append(cells)
        records.append(record)
    title = "Table II: samples per fold of Group I before and after augmentation (ours / paper (difference))"
    return markdown_table(title, header, lines), pd.DataFrame(records)


def table5(counts: pd.DataFrame, notes: list[str]) -> tuple[str, pd.DataFrame]:
    """Table V's Markdown and CSV: our Group-II counts beside the paper's, with a total row."""
    header = ["Data", "Training Samples", "Augmented Training", "Test Samples"]
    columns = ("training", "augmented", "test")
    lines, records = [], []
    total = dict.fromkeys(columns, 0)
    for row in counts.to_dict("records"):
        reference = paper.TABLE_V.get(row["class"])
        cells, record = [CLASS_NAMES[row["class"]]], {"class": row["class"]}
        for position, column in enumerate(columns):
            total[column] += row[column]
            cells.append(beside_paper(row[column], reference[position] if reference else None, "count"))
            _with_diff(record, column, row[column], reference[position] if reference else None)
        lines.append(cells)
        records.append(record)
    paper_total = [sum(values[i] for values in paper.TABLE_V.values()) for i in range(3)]
    lines.append(["Total", *(beside_paper(total[c], paper_total[i], "count") for i, c in enumerate(columns))])
    title = "Table V: Group-II samples of the fixed split before and after augmentation (ours / paper)"
    return markdown_table(title, header, lines, notes), pd.DataFrame(records)


def metric_comparison(
    summaries: dict[str, dict], configs: dict[str, dict], task: str, reference: dict, columns, title: str
) -> tuple[str, pd.DataFrame]:
    """Table I or III: each model's averaged figures beside the paper's row of the same setting."""
    header = ["Model", "Encoder", "Encoder Layers", *(TITLES[c] for c in columns)]
    lines, records = [], []
    for name, summary in summaries.items():
        config = configs[name]
        labels = describe(config)
        row = reference.get((config["arch"], config["encoder"], bool(config["freeze_encoder"])))
        values = summary[task]
        record = {"name": name, **labels}
        cells = [labels["model"], labels["encoder"], labels["encoder_layers"]]
        for position, column in enumerate(columns):
            ref = row[position] if row else None
            cells.append(beside_paper(values[column], ref, ci=values.get(f"{column}_ci", float("nan"))))
            _with_diff(record, column, values[column], ref, scale=100.0)
            record[f"{column}_ci"] = values.get(f"{column}_ci")
        lines.append(cells)
        records.append(record)
    notes = ["Cells: ours ± 95% interval (Eq. 13) / the paper's (difference in percentage points), in %."]
    return markdown_table(title, header, lines, notes), pd.DataFrame(records)


def confusion_comparison(
    matrices: dict[str, np.ndarray],
    references: dict[str, tuple | None],
    title: str,
    group: str,
    labels: dict[str, str] | None = None,
) -> tuple[str, pd.DataFrame]:
    """Tables IV and VII: cumulative confusion matrices, each cell ours / the paper's.

    ``labels``: model name -> the caption over its matrix (default the name).
    """
    labels = labels or {}
    lines, records = [f"**{title}**", ""], []
    for name, matrix in matrices.items():
        caption = labels.get(name, name)
        m = np.asarray(matrix, np.int64)
        ours = (int(m[0, 0]), int(m[0, 1]), int(m[1, 0]), int(m[1, 1]))
        ref = references.get(name)
        cell = [beside_paper(v, ref[i] if ref else None, "count") for i, v in enumerate(ours)]
        lines += [
            f"*{caption}*",
            "",
            "| Ground truth \\ Predicted | " + group + " | COVID-19 |",
            "|---|---|---|",
            f"| {group} | {cell[0]} | {cell[1]} |",
            f"| COVID-19 | {cell[2]} | {cell[3]} |",
            "",
        ]
        record = {"model": name}
        for position, key in enumerate(("tn", "fp", "fn", "tp")):
            _with_diff(record, key, ours[position], ref[position] if ref else None)
        records.append(record)
    return "\n".join(lines), pd.DataFrame(records)


def table6(evaluation: Evaluation, name: str) -> tuple[str, pd.DataFrame]:
    """Table VI: the leading model's Group-II segmentation and detection beside the paper's."""
    metrics = evaluation.metrics()
    header = ["Performance Metrics", "Infected Region Segmentation", "Detection"]
    lines, records = [], []
    for position, column in enumerate(paper.DETECTION_COLUMNS):
        cells, record = [TITLES[column]], {"metric": column}
        for task in ("segmentation", "detection"):
            value, ci = metrics[task][column], metrics[task].get(f"{column}_ci", float("nan"))
            ref = paper.TABLE_VI[task][position]
            cells.append(beside_paper(value, ref, ci=ci))
            _with_diff(record, task, value, ref, scale=100.0)
        lines.append(cells)
        records.append(record)
    title = f"Table VI: {name} on the Group-II test set (%; ours / paper (difference in points))"
    return markdown_table(title, header, lines), pd.DataFrame(records)


def display_name(arch: str, encoder: str) -> str:
    """``U-Net DenseNet-121``."""
    return f"{title(arch)} {title(encoder)}"


# -------------------------------------------------------------------------------------------- Table VIII


def machine_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model from /proc/cpuinfo with the threads torch uses."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{environment_info()['cpu']} ({torch.get_num_threads()} threads)"


def inference_ms(arch: str, encoder: str, size: int, device: torch.device, warmup: int, runs: int) -> float:
    """Median milliseconds of one forward pass of a batch of 1 (torch eager, after ``warmup`` passes)."""
    model = create_model(arch, encoder).to(device).eval()
    image = torch.rand(1, 3, size, size, device=device)
    times = []
    with torch.inference_mode():
        for step in range(warmup + runs):
            started = time.perf_counter()
            model(image)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if step >= warmup:
                times.append(time.perf_counter() - started)
    return 1000.0 * float(np.median(times))


def table8(options: ReproduceOptions, config: TrainConfig, folder: Path) -> tuple[str, pd.DataFrame]:
    """Table VIII: parameter counts and our ms per image beside the paper's (2080 Ti).

    A frozen and a not frozen encoder run the same network at inference: one timing serves both rows.
    Timings are kept in ``folder/timing.json`` per machine and input size, so a resumed study reuses them.
    """
    archs, encoders, frozen = GRIDS.get(options.preset, GRIDS["quick"])
    archs, encoders = options.archs or archs, options.encoders or encoders
    rows = table_viii(
        list(archs), list(encoders), FROZEN[options.frozen or frozen], progress=options.progress
    )
    device = resolve_device(options.device)
    machine = machine_name(device)
    stamp = folder / "timing.json"
    kept = json.loads(stamp.read_text()) if stamp.is_file() else {}
    if kept.get("machine") != machine or kept.get("size") != config.size:
        kept = {"machine": machine, "size": config.size, "ms": {}}
    pairs = sorted({(row["arch"], row["encoder"]) for row in rows})
    for arch, encoder in tqdm(pairs, desc="Table VIII timing", unit="model", disable=not options.progress):
        key = f"{arch}/{encoder}"
        if key not in kept["ms"]:
            kept["ms"][key] = inference_ms(
                arch, encoder, config.size, device, options.timing_warmup, options.timing_runs
            )
            write_json_atomic(stamp, kept)
    header = ["Model", "Encoder", "Encoder Layers", "Trainable", "Non-trainable", "Time (ms)", "Note"]
    lines, records = [], []
    for row in rows:
        labels = describe({**row, "freeze_encoder": row["frozen"], "weights": "any"})
        ms = kept["ms"][f"{row['arch']}/{row['encoder']}"]
        lines.append(
            [
                labels["model"],
                labels["encoder"],
                labels["encoder_layers"],
                beside_paper(row["trainable"], row["paper_trainable"], "count"),
                beside_paper(row["non_trainable"], row["paper_non_trainable"], "count"),
                beside_paper(ms, row["paper_ms"], "ms"),
                row["note"],
            ]
        )
        records.append({**row, "ms": ms, "machine": machine, "size": config.size, "device": device.type})
    title = (
        f"Table VIII: parameters and inference time per image, batch 1, {config.size}x{config.size}, torch "
        f"eager on {machine} (ours / paper on {paper.PAPER_MS_DEVICE})"
    )
    notes = [f"{key} {text}." for key, text in FOOTNOTES.items()]
    notes.append("Time: ours / the paper's (ratio ours:paper); the same network times both frozen rows.")
    return markdown_table(title, header, lines, notes), pd.DataFrame(records)


# ----------------------------------------------------------------------------------------------- figures


def _fold_evaluations(folder: Path) -> list[Evaluation]:
    """The evaluations kept in ``folder/fold-*/done.json``, in fold order."""
    done = sorted(folder.glob(f"fold-*/{DONE}"), key=lambda p: int(p.parent.name.split("-")[1]))
    return [Evaluation.from_dict(json.loads(path.read_text())["evaluation"]) for path in done]


def fig6(cv, cv_dir: Path, out: Path) -> tuple[Path, list[str]]:
    """Fig. 6: pixel precision-recall curves of the leading not frozen model of each architecture.

    Leading: the highest averaged pixel F1 (Table I) among the architecture's not frozen settings; where an
    architecture has only frozen settings, the best of those.
    """
    best: dict[str, tuple[bool, float, str]] = {}
    for name, config in cv.configs.items():
        rank = (
            not config["freeze_encoder"],
            float(np.nan_to_num(cv.summary[name]["segmentation"]["f1"])),
            name,
        )
        if config["arch"] not in best or rank > best[config["arch"]]:
            best[config["arch"]] = rank
    curves = {}
    for arch in sorted(best, key=lambda a: ARCHS.index(a) if a in ARCHS else len(ARCHS)):
        name = best[arch][2]
        merged = None
        for evaluation in _fold_evaluations(cv_dir / name):
            merged = evaluation if merged is None else merged.merge(evaluation)
        config = cv.configs[name]
        label = display_name(config["arch"], config["encoder"])
        curves[label + (" (frozen)" if config["freeze_encoder"] else "")] = pr_curve(
            merged.pixels.pos_hist, merged.pixels.neg_hist
        )
    png, _ = write_pr_curves(curves, out / "fig6_precision_recall.png", out / "fig6_precision_recall.csv")
    return png, list(curves)


def fig7(
    options: ReproduceOptions, config: TrainConfig, cv, leading: ModelSpec, folder: Path, say
) -> tuple[Path, pd.DataFrame]:
    """Fig. 7: Grad-CAM maps of classifiers beside the leading model's infection maps (Sec. III-C).

    The classifiers train on the leading model's fold-0 training part and are measured on its test part
    (:mod:`cxrmap.explain.localisation`), as ``cxrmap run`` does; kept in ``folder/done.json``.
    """
    done = folder / DONE
    if done.is_file():
        record = json.loads(done.read_text())
        return Path(record["grid"]), pd.DataFrame(record["localisation"])
    cache = build_cache(cv.manifest, config.size, progress=False)
    study = StudyOptions(
        out=folder,
        preset=options.preset,
        arch=leading.arch,
        encoder=leading.encoder,
        weights=options.weights,
        classifiers=options.classifiers,
        seed=options.seed,
        device=options.device,
        progress=options.progress,
    )
    comparison = compare_activation_maps(study, config, cv.model_paths[leading.name][0], cache, say)
    table = comparison["formatted"]
    record = {
        "grid": str(comparison["grid"]),
        "localisation": table.to_dict("records"),
        "classifiers": comparison["classifiers"],
    }
    write_json_atomic(done, json_safe(record))
    return Path(comparison["grid"]), table


# ------------------------------------------------------------------------------------------------ study


def _jobs(specs, folds: int, root: Path, manifest: Path, config: TrainConfig, options) -> list[Job]:
    return [
        Job(
            f"{root.parent.name}/{spec.name}/fold-{fold}",
            spec,
            fold,
            root / spec.name / f"fold-{fold}",
            manifest,
            config.to_dict(),
            options.device,
            options.progress,
        )
        for spec in specs
        for fold in range(folds)
    ]


def reproduce(options: ReproduceOptions, say: Callable[[str], None] = print) -> ReproduceResult:
    """Run the study's ``options.targets`` into ``options.out`` (see the module docstring); resumes.

    Raises:
        DataError: an unknown target, no ``data`` where a target needs it, data without the groups a
            target needs, or a study folder written for other data.

    Example:
        >>> options = ReproduceOptions(Path("runs/paper"), Path("QaTa-COV19"), ("table1",))  # doctest: +SKIP
        >>> reproduce(options).files["table1"]  # doctest: +SKIP
    """
    started = time.perf_counter()
    targets = set(resolve_targets(options.targets))
    out = Path(options.out)
    tables_dir = out / "tables"
    config = get_preset(
        options.preset,
        seed=options.seed,
        folds=options.folds,
        epochs=options.epochs,
        size=options.size,
        batch_size=options.batch_size,
    )
    specs, leading = grid_specs(options)
    notes = [
        f"Preset {options.preset}: {config.size}x{config.size} inputs, {config.epochs} epochs, batch "
        f"{config.batch_size}, {config.folds} folds (the paper: 224x224, 50 epochs, batch 32, 5 folds)."
    ]
    manifest = None
    if targets - {"table8"}:
        if options.data is None:
            raise DataError(
                "every target but table8 needs the data: give --data ROOT (e.g. QaTa-COV19 with its "
                "Control_Group, or a tree from `cxrmap phantom`)"
            )
        say(f"indexing {options.data}")
        manifest = index_dataset(options.data, progress=options.progress).manifest
    jobs: list[Job] = []
    group_i = group_ii = None
    split_notes: list[str] = []
    if targets & GROUP_I:
        path = out / "group-i" / "manifest.csv"
        group_i = _stable_manifest(
            path, group_i_manifest(manifest), lambda f: assign_folds(f, config.folds, config.seed)
        )
        # Fig. 7 alone needs only the leading model; it joins any grid that lacks it
        specs = specs if targets & (TRAINED_I - {"fig7"}) else []
        if "fig7" in targets and leading not in specs:
            specs.append(leading)
        if targets & TRAINED_I:
            jobs += _jobs(specs, config.folds, out / "group-i" / "cv", path, config, options)
    if targets & GROUP_II:
        path = out / "group-ii" / "manifest.csv"
        split, split_notes = group_ii_manifest(manifest, options.data, config.seed)
        group_ii = _stable_manifest(path, split, lambda f: f)
        notes += split_notes
        if targets & TRAINED_II:
            jobs.append(
                Job(
                    f"group-ii/{leading.name}",
                    leading,
                    0,
                    out / "group-ii" / leading.name,
                    path,
                    config.to_dict(),
                    options.device,
                    options.progress,
                )
            )
    mine = select_shard(jobs, *options.shard) if options.shard else jobs
    say(f"{len(jobs)} training jobs, {sum(job.done for job in jobs)} done; this run takes {len(mine)}")
    gpus = options.gpus_per_job
    if gpus is None:
        gpus = 1.0 if torch.cuda.is_available() else 0.0
    run_jobs(
        mine,
        run_job,
        engine=options.engine,
        gpus_per_job=gpus,
        max_retries=options.max_retries,
        address=options.ray_address,
        progress=options.progress,
    )
    pending = [job.name for job in jobs if not job.done]
    result = ReproduceResult(out, out / "report.html", jobs=[job.name for job in jobs], pending=pending)
    if pending:
        say(
            f"{len(pending)} job(s) of the grid are not done (other shards?); the tables are written by the "
            "run that finds every job done"
        )
        if options.shard:
            return result

    tables: dict[str, Path] = {}
    figures: list[tuple[str, Path]] = []

    def write(name: str, caption: str, content: tuple[str, pd.DataFrame]) -> None:
        md, _ = write_table(tables_dir / name, *content)
        tables[caption] = md
        result.files[name] = md

    if "table2" in targets:
        write("table2", "Table II: Group-I samples per fold", table2(table2_counts(group_i)))
    cv = None
    if targets & TRAINED_I and not any(name.startswith("group-i/") for name in pending):
        say("Group I: collecting the cross-validation")
        cv_dir = out / "group-i" / "cv"
        cv = run_cv(group_i, specs, config, cv_dir, progress=options.progress, device=options.device)
        title = f"averaged over {config.folds} folds"
        if "table1" in targets:
            write(
                "table1",
                "Table I: infected region segmentation",
                metric_comparison(
                    cv.summary,
                    cv.configs,
                    "segmentation",
                    paper.TABLE_I,
                    paper.SEGMENTATION_COLUMNS,
                    f"Table I: infected region segmentation (%), pixels of the Group-I test folds, {title}",
                ),
            )
        if "table3" in targets:
            write(
                "table3",
                "Table III: COVID-19 detection",
                metric_comparison(
                    cv.summary,
                    cv.configs,
                    "detection",
                    paper.TABLE_III,
                    paper.DETECTION_COLUMNS,
                    f"Table III: COVID-19 detection (%) on the Group-I test folds, {title}",
                ),
            )
        if "table4" in targets:
            references = {
                name: paper.TABLE_IV.get((c["arch"], c["encoder"])) if not c["freeze_encoder"] else None
                for name, c in cv.configs.items()
            }
            write(
                "table4",
                "Table IV: Group-I confusion matrices",
                confusion_comparison(
                    cv.confusion,
                    references,
                    "Table IV: cumulative confusion matrices over the Group-I test folds (ours / paper)",
                    "Group-I",
                    {
                        name: "{model} {encoder} ({encoder_layers})".format(**describe(c))
                        for name, c in cv.configs.items()
                    },
                ),
            )
        if "fig6" in targets:
            png, models = fig6(cv, cv_dir, out / "figures")
            figures.append((f"Fig. 6: pixel precision-recall curves ({', '.join(models)})", png))
            result.files["fig6"] = png
        if "fig7" in targets:
            say("Fig. 7: classifiers and their activation maps against the infection maps")
            grid, localisation = fig7(options, config, cv, leading, out / "fig7", say)
            figures.append(("Fig. 7: radiographs, ground truth, activation maps and infection maps", grid))
            md, _ = write_table(
                tables_dir / "fig7_localisation",
                markdown_table(
                    "Fig. 7 measured: localisation of the infection, infection map vs activation maps "
                    "(the paper shows the figure only)",
                    list(localisation.columns),
                    localisation.astype(str).to_numpy().tolist(),
                ),
                localisation,
            )
            tables["Fig. 7: localisation of the infection"] = md
            result.files["fig7"] = grid
    if "table5" in targets:
        write("table5", "Table V: Group-II samples", table5(table5_counts(group_ii), split_notes))
    if targets & TRAINED_II and f"group-ii/{leading.name}" not in pending:
        folder = out / "group-ii" / leading.name
        evaluation = Evaluation.from_dict(json.loads((folder / DONE).read_text())["evaluation"])
        name = display_name(leading.arch, leading.encoder)
        if "table6" in targets:
            write("table6", "Table VI: Group-II segmentation and detection", table6(evaluation, name))
        if "table7" in targets:
            matrix = {name: evaluation.detection.confusion()}
            write(
                "table7",
                "Table VII: Group-II confusion matrix",
                confusion_comparison(
                    matrix,
                    {name: paper.TABLE_VII},
                    "Table VII: confusion matrix on the Group-II test set (ours / paper)",
                    "Group-II",
                ),
            )
            cache = build_cache(group_ii, config.size, progress=False)
            scores = scores_frame(evaluation, cache.manifest, model=name)
            classes = cache.manifest.assign(**{"class": group2_classes(cache.manifest).to_numpy()})
            found = write_subgroups(
                scores,
                classes,
                tables_dir / "table7_subgroups",
                config.threshold,
                ("class", *SUBGROUP_COLUMNS),
            )
            if found:
                tables["Group-II detection by class and subgroup"] = found["subgroups"]
                figures.append(("Group-II detection by class and subgroup (plot)", found["subgroups_plot"]))
        notes.append(
            "Group II here balances COVID-19 up to the controls of the training set (the training loop's "
            "balancing); Table V gives the paper's augmentation targets."
        )
    if "table8" in targets:
        write("table8", "Table VIII: parameters and inference time", table8(options, config, out / "table8"))

    result.report = write_report(
        out,
        ReportData(
            title=f"cxrmap reproduce: Degerli et al. (2021), preset {options.preset}",
            config={
                "options": {k: str(v) for k, v in asdict(options).items()},
                "training": config.to_dict(),
                "grid": [spec.name for spec in specs],
            },
            environment=environment_info(),
            tables={caption: tables[caption] for caption in sorted(tables, key=_paper_order)},
            figures=figures,
            timings={"total": time.perf_counter() - started},
            notes=notes,
        ),
    )
    return result


def _paper_order(caption: str) -> tuple[int, str]:
    """Captions sorted as the paper numbers its tables (Roman numerals), Fig. 7's table last."""
    numerals = ("I:", "II:", "III:", "IV:", "V:", "VI:", "VII:", "VIII:")
    word = caption.split(" ")[1] if caption.startswith("Table ") else ""
    return (numerals.index(word) if word in numerals else len(numerals), caption)
