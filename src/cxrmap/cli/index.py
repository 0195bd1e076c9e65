"""``cxrmap index``: build the manifest of a dataset folder (or a plain image/mask folder pair)."""

from __future__ import annotations

from pathlib import Path

import typer

from cxrmap.cli.options import check_folds, quiet_option
from cxrmap.core.errors import DataError

SHOWN = 20
"""Skipped files and warnings printed before "... and N more" (``--show-all`` prints every one)."""


def run_index(
    root: Path | None,
    out: Path,
    *,
    folds: int = 5,
    seed: int = 0,
    images: Path | None = None,
    masks: Path | None = None,
    lung_masks: Path | None = None,
    label: str = "covid",
    group: str | None = None,
    source: str = "folder",
    check_masks: bool = True,
    max_pixels: int | None = None,
    progress: bool = True,
    show_all: bool = False,
):
    """Index ``root`` (or the ``images``/``masks`` pair), assign folds, write ``out`` atomically, summarise.

    Returns:
        The :class:`cxrmap.data.readers.IndexResult`, its manifest carrying the folds.

    Raises:
        DataError: bad arguments, no dataset found, or no usable image (``out`` is then left untouched).
    """
    from rich.console import Console

    from cxrmap.data import readers
    from cxrmap.data.manifest import write_manifest

    if (root is None) == (images is None):
        raise DataError(
            "give either a dataset folder ROOT or --images DIR (with --masks DIR), not both or neither"
        )
    if images is None and (masks is not None or lung_masks is not None):
        raise DataError("--masks and --lung-masks go with --images DIR (a plain folder pair), not with ROOT")
    if out.is_dir():
        raise DataError(
            f"--out {out} is a folder; give the manifest's file name, e.g. {out / 'manifest.csv'}"
        )
    options = {"progress": progress, "check_masks": check_masks, "max_pixels": max_pixels}
    if root is not None:
        result = readers.index_dataset(root, **options)
    else:
        result = readers.index_folder_pair(
            images, masks, label, group=group, source=source, lung_masks=lung_masks, **options
        )
    notes = []
    if folds and not result.manifest.empty:
        notes.append(_assign_folds(result, folds, seed))
    console = Console()
    print_summary(result, console, show_all=show_all, notes=notes)
    if result.manifest.empty:
        raise DataError(
            "no usable image was found, so no manifest was written; the skipped files are listed above "
            "with the reason for each"
        )
    write_manifest(result.manifest, out)
    console.print(f"[green]wrote[/green] {out} ({len(result.manifest)} images)")
    return result


def _assign_folds(result, folds: int, seed: int) -> str:
    """Write stratified folds into ``result.manifest``; a dataset too small for them keeps empty folds."""
    try:
        from cxrmap.data.splits import assign_folds
    except ImportError:
        return "folds not assigned: cxrmap.data.splits is not available"
    try:
        result.manifest = assign_folds(result.manifest, k=folds, seed=seed)
    except DataError as error:
        return f"[yellow]folds not assigned[/yellow]: {error}"
    return f"{folds} stratified folds assigned (seed {seed})"


def print_summary(result, console, *, show_all: bool = False, notes: list[str] | None = None) -> None:
    """Print counts per source/label/group/split (with infection and lung masks), skipped files, warnings."""
    from rich.markup import escape
    from rich.table import Table

    manifest = result.manifest
    table = Table(title="cxrmap index", show_lines=False)
    for column in ("source", "label", "group", "split"):
        table.add_column(column)
    for column in ("images", "infection masks", "lung masks"):
        table.add_column(column, justify="right")
    if not manifest.empty:
        counted = manifest.assign(
            has_mask=manifest["mask_path"] != "", has_lung=manifest["lung_mask_path"] != ""
        ).groupby(["source", "label", "group", "split"], sort=True)
        for (source, label, group, split), rows in counted:
            table.add_row(
                escape(source), label, group, split or "-", str(len(rows)),
                str(int(rows["has_mask"].sum())), str(int(rows["has_lung"].sum())),
            )  # fmt: skip
    table.add_section()
    table.add_row(
        "total", "", "", "", str(len(manifest)),
        str(int((manifest["mask_path"] != "").sum())), str(int((manifest["lung_mask_path"] != "").sum())),
    )  # fmt: skip
    console.print(table)
    labels = manifest["label"].value_counts().to_dict()
    console.print(
        f"{labels.get('covid', 0)} COVID-19, {labels.get('control', 0)} control images; "
        f"layouts: {', '.join(sorted({name for name, _ in result.layouts})) or 'none'}"
    )
    for note in notes or []:
        console.print(note)
    _print_list(console, "skipped", [f"{path}: {reason}" for path, reason in result.skipped], show_all, "red")
    _print_list(console, "warnings", result.warnings, show_all, "yellow")


def _print_list(console, title: str, lines: list[str], show_all: bool, colour: str) -> None:
    from rich.markup import escape

    if not lines:
        return
    console.print(f"[{colour}]{title} ({len(lines)}):[/{colour}]")
    shown = lines if show_all else lines[:SHOWN]
    for line in shown:
        console.print(f"  {escape(line)}", soft_wrap=True)
    if len(shown) < len(lines):
        console.print(f"  ... and {len(lines) - len(shown)} more (--show-all lists them)")


def register(app: typer.Typer) -> None:
    """Add ``cxrmap index`` to ``app``."""

    @app.command("index")
    def index_command(
        root: Path | None = typer.Argument(
            None, help="dataset folder (QaTa-COV19, COVID-QU-Ex, a phantom, ...); layouts are found inside it"
        ),
        out: Path = typer.Option(..., "--out", "-o", help="manifest CSV to write (replaced atomically)"),
        folds: int = typer.Option(
            5,
            help="stratified cross-validation folds to assign (0: none)",
            callback=lambda value: check_folds(value, allow_none=True),
        ),
        seed: int = typer.Option(0, help="seed of the fold assignment"),
        images: Path | None = typer.Option(
            None, "--images", help="a plain folder of images, instead of ROOT"
        ),
        masks: Path | None = typer.Option(
            None, "--masks", help="with --images: masks named X.png or mask_X.png"
        ),
        lung_masks: Path | None = typer.Option(
            None, "--lung-masks", help="with --images: lung masks named X.png"
        ),
        label: str = typer.Option("covid", help="with --images: label of every image (covid or control)"),
        group: str | None = typer.Option(None, help="with --images: covid, I or II (default from the label)"),
        source: str = typer.Option("folder", help="with --images: source written into every row"),
        check_masks: bool = typer.Option(
            True, "--check-masks/--no-check-masks", help="decode masks to check values (slower, safer)"
        ),
        max_pixels: int | None = typer.Option(
            None, help="largest image accepted, in pixels (default 100 million)"
        ),
        show_all: bool = typer.Option(False, "--show-all", help="list every skipped file and warning"),
        quiet: bool = quiet_option(),
    ) -> None:
        """Index a dataset into a manifest CSV: one row per usable image, with masks, labels and folds.

        Recognised layouts: QaTa-COV19 v1/v2, Control_Group_I/II (ChestX-ray14, pediatric pneumonia),
        COVID-QU-Ex infection data, and the phantom (`cxrmap phantom`). Files that cannot be used are
        listed with the reason; an existing manifest is only replaced once the new one is complete.
        """
        run_index(
            root, out, folds=folds, seed=seed, images=images, masks=masks, lung_masks=lung_masks,
            label=label, group=group, source=source, check_masks=check_masks, max_pixels=max_pixels,
            progress=not quiet, show_all=show_all,
        )  # fmt: skip
