"""``cxrmap predict``: infection maps, COVID-19 detection and severity for a set of radiographs."""

from __future__ import annotations

import csv
import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import typer

from cxrmap.cli.options import device_option, out_folder_option, quiet_option
from cxrmap.core.errors import DataError
from cxrmap.predict.maps import DISPLAY_FLOOR, DISPLAY_SIDE, display_shape

PREDICTIONS_CSV = "predictions.csv"
SKIPPED_CSV = "skipped.csv"
MAPS_DIR = "maps"
STAGING = ".predict-partial"
MAP_PNG_LEVEL = 1
"""zlib level of the maps written: a film's grain defeats deflate, so higher levels cost 1.6x (level 3) to
6x (level 6) the time of level 1 on a 1024 px map for files only 7-16% smaller."""


def output_names(paths: list[Path], taken: set[str] | None = None) -> list[str]:
    """File-system-safe, unique (also case-insensitively) names for the maps of ``paths``, without suffix.

    A name is the image's file stem reduced to letters, digits, ``.``, ``_`` and ``-``; stems shared by
    several inputs (e.g. ``a/1.png`` and ``b/1.png``) get a short hash of the full path appended. Names in
    ``taken`` (lower-case; maps an earlier run wrote) are not given again.
    """
    stems = [re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem).strip("._-") or "image" for path in paths]
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem.lower()] = counts.get(stem.lower(), 0) + 1
    names: list[str] = []
    taken = set(taken or ())
    for path, stem in zip(paths, stems, strict=True):
        name = stem
        if counts[stem.lower()] > 1:
            name = f"{stem}-{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
        unique, suffix = name, 1
        while unique.lower() in taken:
            suffix += 1
            unique = f"{name}-{suffix}"
        taken.add(unique.lower())
        names.append(unique)
    return names


def _csv_value(value: object) -> object:
    """Empty for unavailable figures, 6 significant digits for floats, the value otherwise."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def _read_rows(path: Path, columns: list[str]) -> list[dict[str, str]]:
    """The complete rows of a predictions CSV (a row cut short by an interrupted write is dropped)."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return []
        if header != columns:
            raise DataError(
                f"{path} is not a predictions table of this cxrmap (columns {header[:4]}...); "
                "give another --out folder, or move the file away to start afresh"
            )
        return [dict(zip(columns, row, strict=True)) for row in reader if len(row) == len(columns)]


def _skipped_message(skipped: list[tuple[Path, str]], shown: int = 3) -> str:
    lines = "; ".join(f"{path}: {reason}" for path, reason in skipped[:shown])
    more = f"; and {len(skipped) - shown} more" if len(skipped) > shown else ""
    return f"{lines}{more}"


def _part(staging: Path, rank: int) -> Path:
    """The staged table of process ``rank``: its finished rows, one at a time, pointing at its maps."""
    return staging / f"part-{rank}.csv"


def _staged_rows(staging: Path, columns: list[str]) -> list[dict[str, str]]:
    """The finished rows of every process's staged table (those whose map was written), one per image."""
    rows: dict[str, dict[str, str]] = {}
    for part in sorted(staging.glob("part-*.csv")):
        for row in _read_rows(part, columns):
            if (staging / row["map"]).is_file():
                rows.setdefault(row["path"], row)
    return list(rows.values())


@dataclass
class _Plan:
    """What a run has to do, decided once (by rank 0) and given to every process."""

    jobs: list[tuple[Path, str]]  # (image, map name) still to predict, over all processes
    found: int  # image files in the input
    error: str = ""  # why there is nothing to do (rank 0 also writes skipped.csv)


def run_predict(
    images: list[Path],
    out: Path,
    *,
    model: Path | None,
    batch_size: int = 8,
    threshold: float | None = None,
    device: str | None = "cpu",
    backend: str = "torch",
    floor: float = DISPLAY_FLOOR,
    map_side: int = DISPLAY_SIDE,
    workers: int | None = None,
    progress: bool = True,
) -> tuple[int, int]:
    """Predict every readable image of ``images`` into ``out`` (see ``cxrmap predict --help``).

    Files stream through ``workers`` decoding processes (:mod:`cxrmap.predict.stream`; default
    :func:`~cxrmap.predict.stream.default_workers`, 0: in this process) while this one runs the network in
    batches, draws each map at ``map_side`` (:func:`~cxrmap.predict.maps.display_shape`; 0: full size) and
    writes it. New results are written into ``OUT/.predict-partial`` (``part-<rank>.csv`` and ``maps/``)
    and moved into place at the end: nothing in ``out`` is deleted, an interrupted run leaves the
    previous results as they were, and running again resumes: images already in ``OUT/predictions.csv``
    (or finished by the interrupted run) are skipped. Under ``torchrun`` each process predicts every
    ``world_size``-th file and rank 0 merges the parts.

    Returns:
        ``(images predicted now, rows in predictions.csv)`` (in rank 0; other ranks: their own count, 0).

    Raises:
        DataError: ``out`` is a file, or no input could be read (the reasons are in ``OUT/skipped.csv``).
    """
    from cxrmap.core import distributed

    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file; give a folder for the maps and predictions.csv")
    display_shape((1, 1), map_side)  # a bad --map-side is refused before any work
    context = distributed.setup(device)
    try:
        return _run(images, out, context, model, batch_size, threshold, backend, floor, map_side, workers,
                    progress)  # fmt: skip
    finally:
        distributed.teardown(context)


def _run(images, out, context, model, batch_size, threshold, backend, floor, map_side, workers, progress):
    """:func:`run_predict` in one of ``context.world_size`` processes."""
    import numpy as np

    from cxrmap.core import distributed
    from cxrmap.core.fileio import atomic_write
    from cxrmap.core.images import save_png
    from cxrmap.core.progress import track
    from cxrmap.data.readers import index_files
    from cxrmap.predict.maps import colorbar
    from cxrmap.predict.predictor import FIELDS, Predictor, latest_model
    from cxrmap.predict.stream import default_workers, stream

    columns = ["path", "map", *FIELDS]
    staging = out / STAGING
    plan, previous, skipped = None, [], []
    if context.is_main:
        try:
            previous = _read_rows(out / PREDICTIONS_CSV, columns)
            resumed = _staged_rows(staging, columns)
            done = {row["path"] for row in previous + resumed}
            found = index_files(images, recursive=True)
            skipped = [(Path(path), reason) for path, reason in found.skipped]
            files = [path for path in found.images if str(path) not in done]
            taken = {Path(row["map"]).stem.lower() for row in previous + resumed}
            plan = _Plan(list(zip(files, output_names(files, taken), strict=True)), len(found.images))
        except DataError as error:
            plan = _Plan([], 0, str(error))
        if not plan.error and not plan.found:
            plan.error = (
                f"no readable images (PNG, JPEG, DICOM) in {', '.join(map(str, images))}: {len(skipped)} "
                f"file(s) skipped ({_skipped_message(skipped)}); all are listed in {out / SKIPPED_CSV}. "
                "Pass image files or folders that contain them"
            )
            _write_skipped(out, skipped, atomic_write)
    plan = distributed.broadcast_object(plan, context)
    if plan.error:
        if context.is_main:
            raise DataError(plan.error)
        return 0, 0
    model_path = model if model is not None else latest_model(Path.cwd())
    predictor = Predictor.from_checkpoint(
        model_path, device=str(context.device), batch_size=batch_size, threshold=threshold, backend=backend
    )
    mine = plan.jobs[context.rank :: context.world_size]
    part = _part(staging, context.rank)
    (staging / MAPS_DIR).mkdir(parents=True, exist_ok=True)
    kept = [row for row in _read_rows(part, columns) if (staging / row["map"]).is_file()]
    with atomic_write(part, "w") as handle:  # this process's finished rows, without a row cut short
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows([row[column] for column in columns] for row in kept)
    failed: list[tuple[int, Path, str]] = []
    n_done = 0
    workers = default_workers(context.world_size) if workers is None else workers
    with (
        open(part, "a", newline="", encoding="utf-8") as handle,
        track(stage="predict", total=len(mine), enabled=progress and context.is_main) as bar,
    ):
        writer = csv.writer(handle)
        for films in stream([path for path, _ in mine], predictor.input_size, map_side, batch_size, workers):
            good = [film for film in films if not film.error]
            failed += [(film.index, film.path, film.error) for film in films if film.error]
            predictions = (
                predictor.predict_inputs(
                    np.stack([film.input for film in good]), [film.display.shape for film in good]
                )
                if good
                else []
            )
            for film, prediction in zip(good, predictions, strict=True):
                name = mine[film.index][1]
                save_png(
                    staging / MAPS_DIR / f"{name}.png",
                    prediction.map(film.display, floor=floor),
                    compress_level=MAP_PNG_LEVEL,
                )
                row = {"path": str(film.path), "map": f"{MAPS_DIR}/{name}.png", **prediction.to_dict()}
                writer.writerow([_csv_value(row[column]) for column in columns])
                n_done += 1
            handle.flush()
            bar.update(len(films))
        os.fsync(handle.fileno())
    counts = distributed.gather_object((n_done, failed), context)  # every process has finished here
    if not context.is_main:
        return n_done, 0
    n_done = sum(count for count, _ in counts)
    skipped += [(path, reason) for _, path, reason in sorted(f for _, fails in counts for f in fails)]
    seen = {row["path"] for row in previous}
    new_rows = [row for row in _staged_rows(staging, columns) if row["path"] not in seen]
    if not new_rows and plan.jobs and len(plan.jobs) == plan.found:  # nothing of this input was readable
        _write_skipped(out, skipped, atomic_write)
        shutil.rmtree(staging)
        raise DataError(
            f"none of the {plan.found} image file(s) could be decoded ({_skipped_message(skipped)}); "
            f"all are listed in {out / SKIPPED_CSV}"
        )
    save_png(staging / "colorbar.png", colorbar())
    (out / MAPS_DIR).mkdir(exist_ok=True)
    for row in new_rows:  # the maps first, then the table that points at them
        os.replace(staging / row["map"], out / row["map"])
    os.replace(staging / "colorbar.png", out / "colorbar.png")
    with atomic_write(out / PREDICTIONS_CSV, "w") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows([row[column] for column in columns] for row in previous + new_rows)
    _write_skipped(out, skipped, atomic_write)
    shutil.rmtree(staging)
    rows = previous + new_rows
    n_covid = sum(row["covid"] == "True" for row in rows)
    again = f", {len(rows) - n_done} predicted before" if len(rows) > n_done else ""
    typer.echo(
        f"{n_done} image(s){again}: {n_covid} COVID-19, {len(rows) - n_covid} not "
        f"(threshold {predictor.threshold:g}); maps in {out / MAPS_DIR}, "
        f"predictions in {out / PREDICTIONS_CSV}"
    )
    if skipped:
        typer.echo(
            f"{len(skipped)} file(s) skipped (unreadable), listed with the reason in {out / SKIPPED_CSV}"
        )
    return n_done, len(rows)


def _write_skipped(out: Path, skipped: list[tuple[Path, str]], atomic_write) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / SKIPPED_CSV, "w") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "reason"])
        writer.writerows((str(path), reason) for path, reason in skipped)


def register(app: typer.Typer) -> None:
    """Add ``cxrmap predict`` to ``app``."""

    @app.command("predict")
    def predict(
        images: list[Path] = typer.Argument(
            ..., help="PNG, JPEG or DICOM files, or folders searched recursively.", show_default=False
        ),
        out: Path = out_folder_option("Folder for the maps and predictions.csv (created if missing)."),
        model: Path | None = typer.Option(
            None, "--model", "-m", help="Checkpoint (model.pt). Default: the newest runs/*/model.pt here."
        ),
        batch_size: int = typer.Option(8, "--batch-size", min=1, help="Images per forward pass."),
        threshold: float | None = typer.Option(
            None,
            "--threshold",
            min=0.0,
            max=1.0,
            help="Detection threshold. Default: the checkpoint's (0.5).",
        ),
        device: str = device_option("cpu"),
        backend: str = typer.Option(
            "torch",
            "--backend",
            help="Inference backend: torch, onnx, onnx-int8, torch-bf16, torch-compile, or auto "
            "(the fastest that passes the parity gate here). A .onnx --model always runs in ONNX Runtime.",
        ),
        floor: float = typer.Option(
            DISPLAY_FLOOR,
            "--floor",
            min=0.0,
            max=1.0,
            help="Probabilities below this show the plain radiograph.",
        ),
        map_side: int = typer.Option(
            DISPLAY_SIDE,
            "--map-side",
            min=0,
            help="Longest side of the maps in pixels (the radiograph downsized for viewing); 0: full size.",
        ),
        workers: int | None = typer.Option(
            None,
            "--workers",
            min=0,
            help="Processes decoding the files while the network runs; 0: decode in this one. "
            "Default: the physical cores less one, or 0 on 2 cores or fewer (the network takes both).",
            show_default=False,
        ),
        quiet: bool = quiet_option(),
    ) -> None:
        """Infection map, COVID-19 detection and severity for each image (paper Sec. II-D).

        Writes OUT/maps/<name>.png (the jet-coloured probability map translucent on the radiograph),
        OUT/colorbar.png (its legend), OUT/predictions.csv (one row per image: covid, score, infected
        share of the image, of the lungs and of each lung zone; empty where the model cannot tell) and
        OUT/skipped.csv (files that could not be read, with the reason). Nothing in OUT is deleted: new
        results are moved into place at the end, and a run cut off is resumed by running it again.
        Files are decoded in --workers processes while the network runs; under
        `torchrun --nproc_per_node N -m cxrmap predict ...` each process takes its share of the files.
        """
        run_predict(
            images,
            out,
            model=model,
            batch_size=batch_size,
            threshold=threshold,
            device=device,
            backend=backend,
            floor=floor,
            map_side=map_side,
            workers=workers,
            progress=not quiet,
        )
