"""``cxrmap run``: the whole study, end to end (:mod:`cxrmap.study.run`)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from cxrmap.cli.options import (
    arch_option,
    backend_option,
    check_phantom_kind,
    device_option,
    encoder_option,
    out_folder_option,
    quiet_option,
    size_option,
    validation_share_option,
)
from cxrmap.train.presets import preset_defaults, preset_help


def register(app: typer.Typer) -> None:
    """Add ``run`` to ``app``."""

    @app.command("run")
    def run(
        out: Path = out_folder_option("Run folder (default: runs/<date-time>).", None),
        data: Path = typer.Option(
            None, "--data", help="Dataset root in any layout `cxrmap index` reads (default: the phantom)."
        ),
        phantom: str = typer.Option(
            "ct",
            "--phantom",
            callback=check_phantom_kind,
            help="Without --data, the phantom: ct (radiographs rendered from a real chest CT) or shapes "
            "(drawn in 2D: faster to make and easier to learn).",
        ),
        preset: str = typer.Option("quick", help=f"{preset_help()}."),
        arch: str = arch_option(),
        encoder: str = encoder_option(),
        weights: str = typer.Option(
            None, help="Initial encoder weights: imagenet, chexnet or a file (default: the preset's)."
        ),
        folds: int = typer.Option(
            None, min=2, help=f"Cross-validation folds (default: the preset's, {preset_defaults('folds')})."
        ),
        epochs: int = typer.Option(
            None, min=1, help=f"Training epochs (default: the preset's, {preset_defaults('epochs')})."
        ),
        size: int = size_option(
            f"Input side in pixels, a multiple of 32 (default: the preset's, {preset_defaults('size')})."
        ),
        classifiers: str = encoder_option(
            None,
            "--classifiers",
            "Comma-separated encoders whose Grad-CAM maps are compared (default: the preset's).",
        ),
        validation_share: float = validation_share_option(),
        seed: int = typer.Option(0, min=0, help="Seed of the phantom, the folds and the training."),
        n_covid: int = typer.Option(None, min=4, help="Phantom COVID-19 images (default: the preset's)."),
        n_control: int = typer.Option(None, min=4, help="Phantom control images (default: the preset's)."),
        shortcut: float = typer.Option(
            0.5, min=0.0, max=1.0, help="Phantom source shortcut (0 off): what a classifier can cheat on."
        ),
        device: str = device_option(),
        backend: str = backend_option(),
        quiet: bool = quiet_option(),
    ) -> None:
        """Make or index the data, cross-validate, render infection maps, compare activation maps, report.

        With no options: the phantom data set, the quick preset, U-Net + DenseNet-121, a few minutes on a
        CPU. The run folder gets report.html, summary.json and model.pt (what `cxrmap predict` and
        `cxrmap serve` use by default). Running again with the same --out resumes a cut-off run.
        """
        from rich.console import Console

        from cxrmap.evaluate.evaluation import VALIDATED
        from cxrmap.study.run import StudyOptions, run_study

        console = Console(stderr=True, soft_wrap=True)  # a log file gets whole lines
        run_dir = out or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
        options = StudyOptions(
            out=run_dir,
            data=data,
            phantom=phantom,
            preset=preset,
            arch=arch,
            encoder=encoder,
            weights=weights,
            folds=folds,
            epochs=epochs,
            size=size,
            classifiers=tuple(c.strip() for c in classifiers.split(",") if c.strip())
            if classifiers
            else None,
            seed=seed,
            validation_share=validation_share,
            n_covid=n_covid,
            n_control=n_control,
            shortcut=shortcut,
            device=device,
            backend=backend,
            progress=not quiet,
        )
        result = run_study(options, say=console.print)
        summary = result.summary
        seg, det = summary["segmentation"], summary["detection"]
        console.print(
            f"\n[bold]pixel F1[/] {seg['f1']:.3f}   "
            f"[bold]detection sensitivity[/] {det['sensitivity']:.3f}   "
            f"[bold]specificity[/] {det['specificity']:.3f}   ({summary['folds']} folds, held-out images)"
        )
        if VALIDATED in summary:
            valid = summary[VALIDATED]
            console.print(
                f"detection with the rule chosen on validation images: sensitivity "
                f"{valid['sensitivity']:.3f}, specificity {valid['specificity']:.3f}"
            )
        console.print(f"wall time {summary['wall_seconds']:.0f} s")
        console.print(f"report: [bold]{result.report.resolve()}[/]")
        typer.echo(str(result.report.resolve()))
