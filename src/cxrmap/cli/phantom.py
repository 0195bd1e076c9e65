"""``cxrmap phantom``: write a synthetic chest X-ray data set with exact masks (DESIGN.md sec. 4)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the ``phantom`` command to ``app``."""

    @app.command("phantom")
    def phantom(
        out: Path = typer.Argument(..., help="Folder to write the data set into (created if missing)."),
        n_covid: int = typer.Option(
            300, "--n-covid", help="Number of COVID-19 images (with infection masks)."
        ),
        n_control: int = typer.Option(300, "--n-control", help="Number of control images (groups I and II)."),
        size: int = typer.Option(256, "--size", help="Side of the square images in pixels (>= 64)."),
        seed: int = typer.Option(0, "--seed", help="Seed: the same seed writes the same bytes."),
        shortcut: float = typer.Option(
            0.5, "--shortcut", help="0..1: how strongly the image source follows the label (0 = independent)."
        ),
        group2_share: float = typer.Option(
            0.5,
            "--group2-share",
            help="Share of controls in group II (look-alike findings); the rest are normal.",
        ),
        progress: bool = typer.Option(True, "--progress/--quiet", help="Show a progress bar."),
        kind: str = typer.Option(
            "shapes", "--kind", help="shapes: drawn 2D anatomy; ct: rendered from a real chest CT."
        ),
    ) -> None:
        """Write phantom chest X-rays in the QaTa-COV19 layout, with infection and lung masks."""
        import pandas as pd

        from cxrmap.data.phantom import generate
        from cxrmap.data.phantom.shapes import METADATA

        root = generate(
            out,
            kind=kind,
            n_covid=n_covid,
            n_control=n_control,
            size=size,
            seed=seed,
            shortcut=shortcut,
            group2_share=group2_share,
            progress=progress,
        )
        meta = pd.read_csv(root / METADATA, dtype=str)
        findings = Counter(meta["finding"])
        group2 = {k: v for k, v in sorted(findings.items()) if k not in ("covid", "normal")}
        typer.echo(f"wrote {len(meta)} phantom images of {size}x{size} px to {root} (seed {seed})")
        typer.echo(f"  COVID-19: {findings.get('covid', 0)} with infection masks (QaTa-COV19-v1/)")
        typer.echo(f"  control group I (normal): {findings.get('normal', 0)}")
        typer.echo(
            f"  control group II: {sum(group2.values())} " + ", ".join(f"{k} {v}" for k, v in group2.items())
        )
        sources = Counter(zip(meta["finding"] == "covid", meta["source"], strict=True))
        typer.echo(
            f"  sources (shortcut {shortcut}): COVID-19 "
            + ", ".join(f"{s} {sources[(True, s)]}" for s in sorted(set(meta["source"])))
            + "; control "
            + ", ".join(f"{s} {sources[(False, s)]}" for s in sorted(set(meta["source"])))
        )
        typer.echo(f"  lung masks under Lung-masks/, metadata in {METADATA}")
