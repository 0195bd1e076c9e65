"""``cxrmap phantom``: write a synthetic chest X-ray data set with exact masks (DESIGN.md sec. 4)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer

from cxrmap.cli.options import check_memory, check_out_folder, out_folder_option, quiet_option
from cxrmap.core.errors import OptionError

BYTES_PER_PIXEL = 400
"""Memory one phantom image takes while it is drawn, per pixel (its float64 fields, noise and masks)."""


def check_phantom_size(size: int) -> int:
    """Refuse ``--size`` values whose drawing would not fit in this machine's memory (before allocating)."""
    check_memory(
        BYTES_PER_PIXEL * size * size,
        f"a {size}x{size} phantom image",
        "give a smaller --size (256 is the default, the paper's networks take 224)",
    )
    return size


def register(app: typer.Typer) -> None:
    """Add the ``phantom`` command to ``app``."""

    @app.command("phantom")
    def phantom(
        folder: Path | None = typer.Argument(
            None,
            help="Folder to write the data set into (created if missing); or give it as --out.",
            callback=lambda value: check_out_folder(value, "OUT"),
            show_default=False,
        ),
        out: Path | None = out_folder_option("Folder to write the data set into (same as OUT).", None),
        n_covid: int = typer.Option(
            300, "--n-covid", help="Number of COVID-19 images (with infection masks)."
        ),
        n_control: int = typer.Option(300, "--n-control", help="Number of control images (groups I and II)."),
        size: int = typer.Option(
            256, "--size", help="Side of the square images in pixels (>= 64).", callback=check_phantom_size
        ),
        seed: int = typer.Option(0, "--seed", help="Seed: the same seed writes the same bytes."),
        shortcut: float = typer.Option(
            0.5, "--shortcut", help="0..1: how strongly the image source follows the label (0 = independent)."
        ),
        group2_share: float = typer.Option(
            0.5,
            "--group2-share",
            help="Share of controls in group II (look-alike findings); the rest are normal.",
        ),
        quiet: bool = quiet_option(),
        kind: str = typer.Option(
            "shapes", "--kind", help="shapes: drawn 2D anatomy; ct: rendered from a real chest CT."
        ),
    ) -> None:
        """Write phantom chest X-rays in the QaTa-COV19 layout, with infection and lung masks."""
        import pandas as pd

        from cxrmap.data.phantom import generate
        from cxrmap.data.phantom.shapes import METADATA

        if (folder is None) == (out is None) and folder != out:
            raise OptionError("give the output folder once: as OUT or as --out, not both or neither")
        out = out or folder
        root = generate(
            out,
            kind=kind,
            n_covid=n_covid,
            n_control=n_control,
            size=size,
            seed=seed,
            shortcut=shortcut,
            group2_share=group2_share,
            progress=not quiet,
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
