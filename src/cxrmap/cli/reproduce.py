"""``cxrmap reproduce``: the paper's tables and figures beside its own (:mod:`cxrmap.study.reproduce`)."""

from __future__ import annotations

from pathlib import Path

import typer


def _names(text: str | None) -> tuple[str, ...] | None:
    return tuple(part.strip() for part in text.split(",") if part.strip()) if text else None


def register(app: typer.Typer) -> None:
    """Add ``reproduce`` to ``app``."""

    @app.command("reproduce")
    def reproduce(
        targets: list[str] = typer.Argument(
            ..., help="table1 .. table8, fig6, fig7, group-i, group-ii or all (several allowed)."
        ),
        data: Path = typer.Option(
            None, "--data", help="Dataset root (QaTa-COV19 layout; a `cxrmap phantom`)."
        ),
        out: Path = typer.Option(
            Path("runs/reproduce"), "--out", help="Study folder (resumed if it exists)."
        ),
        preset: str = typer.Option("quick", help="paper (Sec. III-A; GPUs) or quick (CPU-sized)."),
        archs: str = typer.Option(
            None, help="Comma-separated architectures (default: unet,unetplusplus,dla)."
        ),
        encoders: str = typer.Option(None, help="Comma-separated encoders (default: the preset's)."),
        frozen: str = typer.Option(None, help="Encoder frozen: no, yes or both (default: the preset's)."),
        weights: str = typer.Option(
            None, help="Initial encoder weights of every model (default: the preset's)."
        ),
        folds: int = typer.Option(None, min=2, help="Cross-validation folds (default: the preset's)."),
        epochs: int = typer.Option(None, min=1, help="Training epochs (default: the preset's)."),
        size: int = typer.Option(None, min=32, help="Input side in pixels (default: the preset's)."),
        batch_size: int = typer.Option(None, min=1, help="Images per step (default: the preset's)."),
        classifiers: str = typer.Option(None, help="Comma-separated encoders compared in Fig. 7."),
        seed: int = typer.Option(0, min=0, help="Seed of the folds, the Group-II split and the training."),
        shard: str = typer.Option(
            None,
            help="Run shard i/n of the job grid only (SLURM: $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT).",
        ),
        engine: str = typer.Option("local", help="local (one job after the other) or ray (the ray extra)."),
        gpus_per_job: float = typer.Option(
            None, min=0.0, help="GPUs per Ray task (default: 1 with CUDA, else 0)."
        ),
        max_retries: int = typer.Option(3, min=0, help="Ray retries of a job whose worker died."),
        ray_address: str = typer.Option(None, help="Ray cluster address (default: start a local one)."),
        timing_runs: int = typer.Option(20, min=1, help="Timed forward passes per model (Table VIII)."),
        device: str = typer.Option(None, help="cpu, cuda, cuda:1... (default: a GPU if there is one)."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    ) -> None:
        """Reproduce the paper's Tables I-VIII and Figs. 6-7, each beside the paper's own figures.

        Writes OUT/tables/<table>.{md,csv} and OUT/report.html. Finished trainings are never repeated and
        cut-off ones resume, so running the same command again continues an interrupted study.
        """
        from rich.console import Console

        from cxrmap.study.grid import parse_shard
        from cxrmap.study.reproduce import ReproduceOptions
        from cxrmap.study.reproduce import reproduce as run

        console = Console(stderr=True)
        options = ReproduceOptions(
            out=out,
            data=data,
            targets=tuple(targets),
            preset=preset,
            archs=_names(archs),
            encoders=_names(encoders),
            frozen=frozen,
            weights=weights,
            folds=folds,
            epochs=epochs,
            size=size,
            batch_size=batch_size,
            classifiers=_names(classifiers),
            seed=seed,
            shard=parse_shard(shard) if shard else None,
            engine=engine,
            gpus_per_job=gpus_per_job,
            max_retries=max_retries,
            ray_address=ray_address,
            timing_runs=timing_runs,
            timing_warmup=min(5, timing_runs),
            device=device,
            progress=not quiet,
        )
        result = run(options, say=console.print)
        for name, path in result.files.items():
            console.print(f"{name}: {path}")
        if result.pending:
            console.print(
                f"[yellow]{len(result.pending)} job(s) not done yet[/]: {', '.join(result.pending[:5])}"
            )
        typer.echo(str(result.report.resolve()) if result.report.is_file() else str(out.resolve()))
