"""``cxrmap train``, ``cxrmap evaluate``, ``cxrmap cv``: training, evaluation and cross-validation.

``cxrmap train`` runs in one process or under ``torchrun`` (``torchrun --nproc_per_node 4 -m cxrmap
train ...``): every process trains its share, only rank 0 writes and evaluates.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from cxrmap.cli.options import (
    arch_option,
    backend_option,
    device_option,
    encoder_option,
    manifest_option,
    out_folder_option,
    quiet_option,
    size_option,
    validation_share_option,
    workers_option,
)
from cxrmap.core.errors import DataError
from cxrmap.train.presets import preset_defaults, preset_help


def _indices(manifest, fold: int | None, split: str | None, folds: int, seed: int):
    """``(manifest, train rows, test rows)``: a fold's parts, a split's, or (neither given) everything."""
    import numpy as np

    from cxrmap.data.splits import assign_folds, fold_indices, split_indices

    if fold is not None and split is not None:
        raise DataError("give --fold K or --split NAME, not both")
    if fold is not None:
        if not (manifest["fold"].astype(str) != "").all():
            manifest = assign_folds(manifest, k=folds, seed=seed)
        train_idx, test_idx = fold_indices(manifest, fold)
        return manifest, train_idx, test_idx
    if split is not None:
        test_idx = split_indices(manifest, split)
        rest = np.setdiff1d(np.arange(len(manifest)), test_idx)
        return manifest, rest, test_idx
    return manifest, np.arange(len(manifest)), np.zeros(0, np.int64)


def _refuse_unreadable(cache, manifest_path: Path, skip_missing: bool) -> None:
    """Refuse training on a cache that left out rows it could not read, unless ``skip_missing``."""
    if cache.skipped and not skip_missing:
        first = "; ".join(f"{path}: {reason}" for path, reason in list(cache.skipped)[:3])
        raise DataError(
            f"manifest {manifest_path}: {len(cache.skipped)} image(s) cannot be read ({first}); "
            "fix or remove them and index the data again with `cxrmap index`, or pass --skip-missing"
        )


def _print_tables(paths: dict, console) -> None:
    for role in ("segmentation", "detection", "confusion", "subgroups"):
        if role in paths:
            console.print(Path(paths[role]).read_text())


def run_train(
    manifest_path: Path,
    out: Path,
    *,
    arch: str,
    encoder: str,
    weights: str | None,
    freeze_encoder: bool,
    preset: str,
    fold: int | None,
    split: str | None,
    epochs: int | None,
    batch_size: int | None,
    size: int | None,
    lr: float | None,
    amp: str | None,
    workers: int | None,
    device: str | None,
    resume: bool,
    progress: bool,
    skip_missing: bool = False,
    validation_share: float | None = None,
):
    """Train one model (see ``cxrmap train --help``); evaluate it on the held-out rows when there are some.

    Returns:
        The :class:`~cxrmap.train.loop.TrainResult`.
    """
    import dataclasses

    from rich.console import Console

    from cxrmap.data.cache import build_cache
    from cxrmap.data.manifest import read_manifest, require_images
    from cxrmap.evaluate.evaluation import write_results
    from cxrmap.study.cv import train_and_evaluate
    from cxrmap.train import get_preset

    config = get_preset(
        preset,
        arch=arch,
        encoder=encoder,
        epochs=epochs,
        batch_size=batch_size,
        size=size,
        lr=lr,
        amp=amp,
        workers=workers,
        freeze_encoder=freeze_encoder,
        validation_share=validation_share,
    )
    config = dataclasses.replace(config, weights=weights)
    main = int(os.environ.get("RANK", "0")) == 0
    manifest = require_images(read_manifest(manifest_path), manifest_path, skip_missing=skip_missing)
    cache = build_cache(manifest, config.size, progress=progress and main)
    _refuse_unreadable(cache, manifest_path, skip_missing)
    _, train_idx, test_idx = _indices(cache.manifest, fold, split, config.folds, config.seed)
    console = Console()
    result, evaluation = train_and_evaluate(
        config, cache, train_idx, test_idx, out, resume=resume, progress=progress, device=device
    )
    if not main:
        return result
    console.print(
        f"[green]trained[/green] {result.model_path} ({len(result.history)} epochs, {result.seconds:.0f} s)"
    )
    if evaluation is not None:
        paths = write_results(out / "evaluation", {f"{arch}-{encoder}": (result.meta.model, [evaluation])})
        _print_tables(paths, console)
    return result


def run_evaluate(
    model_path: Path,
    manifest_path: Path,
    out: Path,
    *,
    fold: int | None,
    split: str | None,
    batch_size: int,
    device: str | None,
    progress: bool,
    backend: str = "torch",
):
    """Evaluate a checkpoint (see ``cxrmap evaluate --help``).

    Returns:
        The :class:`~cxrmap.evaluate.evaluation.Evaluation`.
    """
    import numpy as np
    from rich.console import Console

    from cxrmap.core.fileio import write_text_atomic
    from cxrmap.core.runtime import resolve_device
    from cxrmap.data.cache import build_cache
    from cxrmap.data.manifest import read_manifest
    from cxrmap.evaluate.evaluation import evaluate_model, write_results
    from cxrmap.evaluate.subgroups import write_subgroups
    from cxrmap.models.checkpoint import load_model
    from cxrmap.predict.backends import make_backend
    from cxrmap.study.cv import SUBGROUPS, scores_frame

    model, meta = load_model(model_path, device=resolve_device(device))
    runner = model if backend == "torch" else make_backend(backend, model, meta, resolve_device(device))
    config = meta.provenance.config
    cache = build_cache(read_manifest(manifest_path), meta.input_size, progress=progress)
    if fold is None and split is None:
        test_idx = np.arange(len(cache))
    else:
        folds, seed = int(config.get("folds", 5)), int(config.get("seed", 0))
        _, _, test_idx = _indices(cache.manifest, fold, split, folds, seed)
    evaluation = evaluate_model(
        runner,
        cache,
        test_idx,
        threshold=meta.threshold,
        batch_size=batch_size,
        device=resolve_device(device),
        progress=progress,
    )
    name = f"{meta.arch}-{meta.encoder}"
    paths = write_results(out, {name: (meta.model, [evaluation])})
    scores = scores_frame(evaluation, cache.manifest, model=name)
    write_text_atomic(out / "scores.csv", scores.to_csv(index=False))
    paths.update(write_subgroups(scores, cache.manifest, out / SUBGROUPS, evaluation.threshold))
    _print_tables(paths, Console())
    return evaluation


def register(app: typer.Typer) -> None:
    """Add ``cxrmap train``, ``cxrmap evaluate`` and ``cxrmap cv`` to ``app``."""

    @app.command("train")
    def train_command(
        manifest: Path = manifest_option(),
        out: Path = out_folder_option("Output folder: last.pt, model.pt, history.csv, logs."),
        arch: str = arch_option(),
        encoder: str = encoder_option(),
        weights: str = typer.Option(None, help="Initial encoder weights: imagenet, chexnet or a file."),
        freeze_encoder: bool = typer.Option(
            False, "--freeze-encoder", help="Keep the encoder's weights fixed."
        ),
        preset: str = typer.Option("quick", help=f"{preset_help()}."),
        fold: int = typer.Option(None, help="Hold out this fold (trained on the others, evaluated on it)."),
        split: str = typer.Option(None, help="Hold out the rows of this split (e.g. test)."),
        epochs: int = typer.Option(
            None, help=f"Override the preset's number of epochs ({preset_defaults('epochs')})."
        ),
        batch_size: int = typer.Option(
            None,
            help=f"Override the preset's batch size over all processes ({preset_defaults('batch_size')}).",
        ),
        size: int = size_option(
            f"Override the preset's image size, a multiple of 32 ({preset_defaults('size')})."
        ),
        lr: float = typer.Option(
            None, help=f"Override the preset's learning rate ({preset_defaults('lr')})."
        ),
        amp: str = typer.Option(None, help="Mixed precision: auto, bf16, fp16 (GPU) or off."),
        validation_share: float = validation_share_option(),
        workers: int = workers_option(),
        device: str = device_option(),
        resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pt where it stopped."),
        skip_missing: bool = typer.Option(
            False, "--skip-missing", help="Train on the rows whose image exists (default: refuse missing)."
        ),
        quiet: bool = quiet_option(),
    ) -> None:
        """Train a segmentation network (one process, or many under torchrun)."""
        run_train(
            manifest,
            out,
            arch=arch,
            encoder=encoder,
            weights=weights,
            freeze_encoder=freeze_encoder,
            preset=preset,
            fold=fold,
            split=split,
            epochs=epochs,
            batch_size=batch_size,
            size=size,
            lr=lr,
            amp=amp,
            workers=workers,
            device=device,
            resume=resume,
            progress=not quiet,
            skip_missing=skip_missing,
            validation_share=validation_share,
        )

    @app.command("evaluate")
    def evaluate_command(
        model: Path = typer.Option(..., "--model", "-m", help="Checkpoint (model.pt) to evaluate."),
        manifest: Path = manifest_option(),
        out: Path = out_folder_option("Output folder for tables, curves and scores."),
        fold: int = typer.Option(None, help="Evaluate on this fold's rows."),
        split: str = typer.Option(None, help="Evaluate on this split's rows (e.g. test)."),
        batch_size: int = typer.Option(16, min=1, help="Images per forward pass."),
        device: str = device_option(),
        backend: str = backend_option(),
        quiet: bool = quiet_option(),
    ) -> None:
        """Evaluate a trained model: pixel segmentation and image detection metrics (Tables I, III, IV)."""
        run_evaluate(
            model,
            manifest,
            out,
            fold=fold,
            split=split,
            batch_size=batch_size,
            device=device,
            progress=not quiet,
            backend=backend,
        )

    @app.command("cv")
    def cv_command(
        manifest: Path = manifest_option(),
        out: Path = out_folder_option("Output folder (one sub-folder per model and fold)."),
        archs: str = arch_option(option="--archs"),
        encoders: str = encoder_option(option="--encoders", help="Comma-separated encoders."),
        frozen: str = typer.Option("no", help="Encoder frozen: no, yes or both."),
        weights: str = typer.Option(None, help="Initial encoder weights: imagenet, chexnet or a file."),
        folds: int = typer.Option(
            None, min=2, help=f"Number of folds (default: the preset's, {preset_defaults('folds')})."
        ),
        preset: str = typer.Option("quick", help=f"{preset_help()}."),
        epochs: int = typer.Option(
            None, help=f"Override the preset's number of epochs ({preset_defaults('epochs')})."
        ),
        batch_size: int = typer.Option(
            None, help=f"Override the preset's batch size ({preset_defaults('batch_size')})."
        ),
        size: int = size_option(
            f"Override the preset's image size, a multiple of 32 ({preset_defaults('size')})."
        ),
        lr: float = typer.Option(
            None, help=f"Override the preset's learning rate ({preset_defaults('lr')})."
        ),
        validation_share: float = validation_share_option(),
        device: str = device_option(),
        backend: str = backend_option(),
        quiet: bool = quiet_option(),
    ) -> None:
        """Cross-validate models over k folds; finished folds are skipped, cut-off ones resumed."""
        from rich.console import Console

        from cxrmap.study.cv import model_specs, run_cv
        from cxrmap.train import get_preset

        config = get_preset(
            preset, epochs=epochs, batch_size=batch_size, size=size, lr=lr, validation_share=validation_share
        )
        result = run_cv(
            manifest,
            model_specs(archs, encoders, frozen, weights),
            config,
            out,
            folds,
            progress=not quiet,
            device=device,
            backend=backend,
        )
        _print_tables(result.files, Console())
