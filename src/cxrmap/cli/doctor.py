"""``cxrmap doctor``: what this machine has, and the paths cxrmap takes on it."""

from __future__ import annotations

import sys
from pathlib import Path

import typer


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def register(app: typer.Typer) -> None:
    """Add ``cxrmap doctor`` to ``app``."""

    @app.command("doctor")
    def doctor(
        model: Path | None = typer.Option(
            None, "--model", "-m", help="Checkpoint: also measure and print backend auto's choice for it."
        ),
        device: str = typer.Option("auto", "--device", help="Device to plan for: auto, cpu, cuda, ..."),
    ) -> None:
        """Print the machine (CPU, features, cores, memory, GPUs, installed backends) and cxrmap's choices.

        With --model, runs the parity gate of every backend on that checkpoint once (cached per machine)
        and prints each backend's figures and auto's choice.
        """
        import torch

        from cxrmap.core.runtime import (
            default_threads,
            machine,
            native_cpu_bf16,
            resolve_amp,
            resolve_channels_last,
            resolve_device,
        )
        from cxrmap.predict.backends import backend_versions

        info = machine()
        features = set(info.features)
        lines = [
            "machine",
            f"  cpu            {info.cpu}",
            "  features       "
            + ", ".join(
                f"{label} {_yes(name in features)}"
                for label, name in (
                    ("avx2", "avx2"),
                    ("avx512", "avx512f"),
                    ("avx512_bf16", "avx512_bf16"),
                    ("amx", "amx_bf16"),
                )
            ),
            f"  cores          {info.physical_cores} physical, {info.logical_cores} logical",
            f"  memory         {'unknown' if info.memory_gib is None else f'{info.memory_gib:g} GiB'}",
            f"  gpus           {', '.join(info.gpus) or 'none'}",
            "backends",
        ]
        for name, version in backend_versions().items():
            lines.append(f"  {name:<14} {version or 'not installed'}")
        chosen = resolve_device(device)
        amp = resolve_amp("auto", chosen)
        why = (
            "GPU"
            if chosen.type == "cuda"
            else "native bf16 on this CPU"
            if native_cpu_bf16()
            else "no native bf16"
        )
        layout = "on" if resolve_channels_last(chosen) else "off"
        lines += [
            "paths",
            f"  device         {chosen}",
            f"  amp (auto)     {'off' if amp is None else str(amp).removeprefix('torch.')} ({why})",
            f"  channels_last  {layout} "
            f"({'GPU' if chosen.type == 'cuda' else 'no steady gain measured on CPUs'})",
            f"  threads        {default_threads()} (physical cores; torch uses {torch.get_num_threads()})",
        ]
        if model is None:
            lines.append("  backend auto   give --model CKPT to measure")
            typer.echo("\n".join(lines))
            return
        typer.echo("\n".join(lines))
        from cxrmap.models.checkpoint import load_model
        from cxrmap.predict.backends import select_backend

        network, meta = load_model(model)
        backend, results = select_backend(network, meta, device=chosen, progress=sys.stderr.isatty())
        for result in results:
            if result.ms_per_image is None:
                figures = result.reason
            else:
                figures = (
                    f"{result.ms_per_image:.1f} ms/image, pixel F1 {result.f1_delta:+.2f} points, "
                    f"same decision {100 * result.agreement:.1f}%"
                    + ("" if result.passed else f"; refused: {result.reason}")
                )
            typer.echo(f"  {result.backend:<14} {figures}")
        typer.echo(f"  backend auto   {backend.name}")
