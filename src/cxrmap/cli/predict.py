"""``cxrmap predict``: infection maps, COVID-19 detection and severity for a set of radiographs."""

from __future__ import annotations

import csv
import hashlib
import os
import re
from pathlib import Path

import typer

from cxrmap.core.errors import DataError
from cxrmap.predict.maps import DISPLAY_FLOOR

PREDICTIONS_CSV = "predictions.csv"
SKIPPED_CSV = "skipped.csv"
MAPS_DIR = "maps"


def output_names(paths: list[Path]) -> list[str]:
    """File-system-safe, unique (also case-insensitively) names for the maps of ``paths``, without suffix.

    A name is the image's file stem reduced to letters, digits, ``.``, ``_`` and ``-``; stems shared by
    several inputs (e.g. ``a/1.png`` and ``b/1.png``) get a short hash of the full path appended.
    """
    stems = [re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem).strip("._-") or "image" for path in paths]
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem.lower()] = counts.get(stem.lower(), 0) + 1
    names: list[str] = []
    taken: set[str] = set()
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


def register(app: typer.Typer) -> None:
    """Add ``cxrmap predict`` to ``app``."""

    @app.command("predict")
    def predict(
        images: list[Path] = typer.Argument(
            ..., help="PNG, JPEG or DICOM files, or folders searched recursively.", show_default=False
        ),
        out: Path = typer.Option(..., "--out", "-o", help="Folder for the maps and predictions.csv."),
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
        device: str = typer.Option("cpu", "--device", help="Torch device: cpu, cuda, cuda:1, ..."),
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
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    ) -> None:
        """Infection map, COVID-19 detection and severity for each image (paper Sec. II-D).

        Writes OUT/maps/<name>.png (the jet-coloured probability map translucent on the radiograph),
        OUT/colorbar.png (its legend), OUT/predictions.csv (one row per image: covid, score, infected
        share of the image, of the lungs and of each lung zone; empty where the model cannot tell) and
        OUT/skipped.csv (files that could not be read, with the reason).
        """
        from tqdm import tqdm

        from cxrmap.core.fileio import atomic_write
        from cxrmap.core.images import save_png
        from cxrmap.data.io import read_image
        from cxrmap.data.readers import index_files
        from cxrmap.predict.maps import colorbar
        from cxrmap.predict.predictor import FIELDS, Predictor, latest_model

        model_path = model if model is not None else latest_model(Path.cwd())
        predictor = Predictor.from_checkpoint(
            model_path, device=device, batch_size=batch_size, threshold=threshold, backend=backend
        )
        found = index_files(images, recursive=True)
        files, skipped = found.images, [(Path(path), reason) for path, reason in found.skipped]
        if not files:
            raise DataError(
                f"no readable images (PNG, JPEG, DICOM) in {', '.join(map(str, images))}; "
                f"{len(skipped)} file(s) skipped. Pass image files or folders that contain them."
            )
        jobs = list(zip(files, output_names(files), strict=True))
        maps_dir = out / MAPS_DIR
        maps_dir.mkdir(parents=True, exist_ok=True)
        for stale in (PREDICTIONS_CSV, SKIPPED_CSV):
            (out / stale).unlink(missing_ok=True)
        save_png(out / "colorbar.png", colorbar())

        partial = out / f"{PREDICTIONS_CSV}.partial"
        columns = ["path", "map", *FIELDS]
        n_done = n_covid = 0
        with (
            open(partial, "w", newline="", encoding="utf-8") as handle,
            tqdm(total=len(files), unit="image", disable=not progress, desc="predict") as bar,
        ):
            writer = csv.writer(handle)
            writer.writerow(columns)
            for start in range(0, len(jobs), batch_size):
                batch = []
                for path, name in jobs[start : start + batch_size]:
                    try:
                        batch.append((path, name, read_image(path)))
                    except (DataError, OSError) as error:
                        skipped.append((path, str(error)))
                for (path, name, cxr), prediction in zip(
                    batch, predictor.predict([cxr for _, _, cxr in batch]), strict=True
                ):
                    save_png(maps_dir / f"{name}.png", prediction.map(cxr, floor=floor))
                    row = {"path": str(path), "map": f"{MAPS_DIR}/{name}.png", **prediction.to_dict()}
                    writer.writerow([_csv_value(row[column]) for column in columns])
                    n_done += 1
                    n_covid += bool(prediction.covid)
                handle.flush()
                bar.update(len(jobs[start : start + batch_size]))
            os.fsync(handle.fileno())
        os.replace(partial, out / PREDICTIONS_CSV)
        with atomic_write(out / SKIPPED_CSV, "w") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "reason"])
            writer.writerows((str(path), reason) for path, reason in skipped)

        typer.echo(
            f"{n_done} image(s): {n_covid} COVID-19, {n_done - n_covid} not "
            f"(threshold {predictor.threshold:g}); maps in {maps_dir}, predictions in {out / PREDICTIONS_CSV}"
        )
        if skipped:
            typer.echo(f"{len(skipped)} file(s) skipped (unreadable), listed in {out / SKIPPED_CSV}")
