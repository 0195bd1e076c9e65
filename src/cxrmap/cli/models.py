"""``cxrmap models``: the networks' parameter counts beside the paper's Table VIII."""

from __future__ import annotations

import typer

from cxrmap.cli.options import check_names, quiet_option
from cxrmap.core.errors import CxrmapError

_COLUMNS = (
    ("arch", "Model"),
    ("encoder", "Encoder"),
    ("frozen", "Frozen"),
    ("trainable", "Trainable"),
    ("paper_trainable", "Paper"),
    ("trainable_diff", "Δ"),
    ("non_trainable", "Non-trainable"),
    ("paper_non_trainable", "Paper"),
    ("non_trainable_diff", "Δ"),
    ("paper_ms", "Paper ms"),
    ("note", "Note"),
)


def _count(value: int | None) -> str:
    """12059345 -> '12.06M', 85632 -> '85.63K' (Table VIII's style)."""
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    return f"{value / 1e3:.2f}K"


def _cell(key: str, value) -> str:
    """Human-readable text of one table cell."""
    from cxrmap.models.segmentation import title

    if value is None:
        return "-"
    if key in ("arch", "encoder"):
        return title(value)
    if key == "frozen":
        return "yes" if value else "no"
    if key.endswith("_diff"):
        return f"{round(value, 3) + 0.0:+.1%}"
    if key in ("trainable", "non_trainable", "paper_trainable", "paper_non_trainable"):
        return _count(value)
    if key == "paper_ms":
        return f"{value:.2f}"
    return str(value)


def footnotes(rows: list[dict]) -> list[str]:
    """The footnotes the rows' notes refer to."""
    from cxrmap.models.params import FOOTNOTES

    return [f"{mark} {text}" for mark, text in FOOTNOTES.items() if any(mark in row["note"] for row in rows)]


def format_markdown(rows: list[dict]) -> str:
    """The rows as a Markdown table, footnotes below."""
    lines = ["| " + " | ".join(title for _, title in _COLUMNS) + " |"]
    lines.append("|" + "|".join(" --- " for _ in _COLUMNS) + "|")
    for row in rows:
        lines.append("| " + " | ".join(_cell(key, row[key]) for key, _ in _COLUMNS) + " |")
    notes = footnotes(rows)
    return "\n".join(lines + ([""] + notes if notes else []))


def format_csv(rows: list[dict]) -> str:
    """The rows as CSV with raw numbers (counts as integers, differences as fractions)."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[key for key, _ in _COLUMNS], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if row[key] is None else row[key] for key, _ in _COLUMNS})
    return buffer.getvalue()


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""

    @app.command("models")
    def models(
        arch: list[str] = typer.Option(
            None,
            "--arch",
            help="Only these architectures (unet, unetplusplus, dla).",
            callback=lambda value: check_names(value or None, "arch", "--arch"),
        ),
        encoder: list[str] = typer.Option(
            None,
            "--encoder",
            help="Only these encoders (densenet121, chexnet, inception_v3, resnet50, or any smp name).",
            callback=lambda value: check_names(value or None, "encoder", "--encoder"),
        ),
        markdown: bool = typer.Option(False, "--markdown", help="Print a Markdown table."),
        csv: bool = typer.Option(False, "--csv", help="Print CSV (raw numbers)."),
        quiet: bool = quiet_option(),
    ) -> None:
        """Table VIII: trainable and non-trainable parameters of every model, ours beside the paper's.

        Counted as Keras counts them (BatchNorm moving mean/variance are non-trainable), on models built
        without memory (meta device). 'Paper ms' is the paper's inference time per image (RTX 2080 Ti).
        """
        from cxrmap.models.params import table_viii

        if markdown and csv:
            raise CxrmapError("choose one of --markdown and --csv")
        rows = table_viii(archs=arch or None, encoders=encoder or None, progress=not quiet)
        if csv:
            typer.echo(format_csv(rows), nl=False)
        elif markdown:
            typer.echo(format_markdown(rows))
        else:
            import sys

            from rich.console import Console
            from rich.table import Table

            table = Table(title="Table VIII: parameters (trainable, non-trainable) -- ours vs. the paper")
            for key, title in _COLUMNS:
                table.add_column(title, justify="left" if key in ("arch", "encoder", "note") else "right")
            for row in rows:
                table.add_row(*(_cell(key, row[key]) for key, _ in _COLUMNS))
            console = Console(width=None if sys.stdout.isatty() else 160)
            console.print(table)
            for note in footnotes(rows):
                console.print(note)
