"""The run report: one self-contained HTML page with a run's configuration, tables, curves and maps.

A run (``cxrmap run``) fills a :class:`ReportData` and calls :func:`write_report`, which writes
``report.html`` into the run's folder. By default every image is embedded as a base64 ``data:`` URI, so
the single file opens from disk (or from an e-mail) with no network and nothing beside it; with
``embed=False`` images are linked relative to the page and copied into ``figures/`` when they lie outside
the folder. Styles are inline; there is no script and no external asset.

Tables can be given as pandas DataFrames, Markdown pipe tables, CSV text, or paths to ``.csv`` / ``.md``
files (e.g. the tables of :mod:`cxrmap.evaluate.evaluation`, laid out like the paper's Tables I, III, IV).
"""

from __future__ import annotations

import html
import io
import json
import os
import platform
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata, resources
from pathlib import Path
from string import Template
from typing import Any

import pandas as pd

from cxrmap import __version__
from cxrmap.core.citation import PAPER
from cxrmap.core.errors import DataError
from cxrmap.core.fileio import write_text_atomic
from cxrmap.core.images import MIME_TYPES, data_uri
from cxrmap.report.card import ModelCard

REPORT_NAME = "report.html"
DISCLAIMER = (
    "cxrmap is a research implementation of Degerli et al. (2021). It is not a medical device and has not "
    "been clinically validated: do not use its maps, scores or detections to diagnose or treat anyone. "
    "Figures measured on synthetic phantoms say how the code behaves, not how it would perform on patients."
)

Table = pd.DataFrame | str | os.PathLike


@dataclass
class ReportData:
    """Everything one report shows; every field may stay empty (its section is then left out).

    Attributes:
        title: page title, e.g. "cxrmap run: U-Net DenseNet-121 on the phantom".
        config: the run's configuration (nested values are shown as JSON).
        environment: software and hardware, usually :func:`environment_info`.
        tables: caption -> table (DataFrame, Markdown, CSV text or a .csv/.md path), shown in order.
        figures: ``(caption, png_path)`` of plots: PR and ROC curves, the Fig. 7-style grid...
        gallery: ``(caption, png_path)`` of infection maps with their ground truth, shown as a grid.
        timings: step -> seconds (float) or a ready text.
        notes: free sentences shown at the top (what the data is, warnings, how to reproduce).
        card: the model card of the run's model (:func:`cxrmap.report.card.build_card`), shown first.
    """

    title: str = "cxrmap report"
    config: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, Table] = field(default_factory=dict)
    figures: list[tuple[str, str | os.PathLike]] = field(default_factory=list)
    gallery: list[tuple[str, str | os.PathLike]] = field(default_factory=list)
    timings: dict[str, float | str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    card: ModelCard | None = None


def _version(package: str) -> str:
    """Installed version of ``package`` or "not installed"."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where readable, else what :mod:`platform` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_info() -> dict[str, str]:
    """Software and hardware of this run: versions, CPU, GPU, date and the command line.

    Returns:
        Ordered dict of text values (keys: date, command, python, platform, cxrmap, torch, torchvision,
        segmentation-models-pytorch, timm, grad-cam, numpy, cpu, cpu_count, gpu, cuda).
    """

    info = {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(shlex.quote(arg) for arg in [Path(sys.argv[0]).name, *sys.argv[1:]]),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cxrmap": __version__,
    }
    for package in ("torch", "torchvision", "segmentation-models-pytorch", "timm", "grad-cam", "numpy"):
        info[package] = _version(package)
    info["cpu"] = _cpu_name()
    info["cpu_count"] = str(os.cpu_count())
    try:
        import torch

        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["gpu"] = ", ".join(gpus) if gpus else "none"
        info["cuda"] = str(torch.version.cuda) if gpus else "not used"
    except Exception as error:  # a broken driver must not stop the report
        info["gpu"] = f"unknown ({type(error).__name__})"
        info["cuda"] = "unknown"
    return info


def _pipe_table(lines: list[str]) -> pd.DataFrame:
    """Consecutive Markdown pipe-table lines (header, ``---`` separator, rows) as a DataFrame of strings."""
    rows = []
    for line in lines:
        split = re.split(r"(?<!\\)\|", line.strip().strip("|"))  # an escaped \| stays in its cell
        cells = [cell.strip().replace("\\|", "|") for cell in split]
        if not all(cell and set(cell) <= set(":- ") for cell in cells):
            rows.append(cells)
    if not rows:
        return pd.DataFrame()
    width = len(rows[0])
    return pd.DataFrame([(row + [""] * width)[:width] for row in rows[1:]], columns=rows[0])


def markdown_blocks(text: str) -> list[str | pd.DataFrame]:
    """Split Markdown into its pipe tables (DataFrames) and the text lines around them (strings).

    Example:
        >>> [type(b).__name__ for b in markdown_blocks("**Table I**\\n| a |\\n|---|\\n| 1 |")]
        ['str', 'DataFrame']
    """
    blocks: list[str | pd.DataFrame] = []
    table: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.strip().startswith("|"):
            table.append(line)
            continue
        if table:
            blocks.append(_pipe_table(table))
            table = []
        if line.strip():
            blocks.append(line.strip())
    return blocks


def _read_table_blocks(value: Table) -> list[str | pd.DataFrame]:
    """Text and tables of a table argument (DataFrame, Markdown or CSV text, .csv/.md path)."""
    if isinstance(value, pd.DataFrame):
        return [value]
    if isinstance(value, os.PathLike) or (
        isinstance(value, str) and "\n" not in value and value.endswith((".csv", ".md"))
    ):
        path = Path(value)
        if not path.is_file():
            raise DataError(
                f"table file {path} does not exist; pass an existing .csv or .md file or a DataFrame"
            )
        value = path.read_text(encoding="utf-8")
        if path.suffix == ".csv":
            return [pd.read_csv(io.StringIO(value), dtype=str, keep_default_na=False)]
    if not isinstance(value, str):
        raise DataError(
            f"a table must be a DataFrame, Markdown or CSV text or a file path, got {type(value)}"
        )
    if any(line.strip().startswith("|") for line in value.splitlines()):
        return markdown_blocks(value)
    try:
        return [pd.read_csv(io.StringIO(value), dtype=str, keep_default_na=False)]
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise DataError(
            f"could not read a table from the text given (expected Markdown or CSV): {error}"
        ) from error


def as_table(value: Table) -> pd.DataFrame:
    """A table given as DataFrame, Markdown pipe table, CSV text or ``.csv``/``.md`` file path, as DataFrame.

    Raises:
        DataError: a missing path, text that is neither Markdown nor CSV, or Markdown with no table or
            several tables (render those with :func:`write_report`, which shows each).
    """
    tables = [block for block in _read_table_blocks(value) if isinstance(block, pd.DataFrame)]
    if len(tables) != 1:
        raise DataError(f"expected one table, found {len(tables)} in the Markdown text given")
    return tables[0]


def _inline_markdown(text: str) -> str:
    """Escape ``text`` and turn ``**bold**`` and ``*italic*`` into HTML."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"\*(.+?)\*", r"<em>\1</em>", text)


def _table_section(value: Table) -> str:
    """HTML of a table argument: each table, with the Markdown text lines around it as paragraphs."""
    return "\n".join(
        _table_html(block) if isinstance(block, pd.DataFrame) else f"<p>{_inline_markdown(block)}</p>"
        for block in _read_table_blocks(value)
    )


def _format_cell(value: Any) -> str:
    """Floats with four significant digits; everything else as text."""
    if isinstance(value, float):
        return "–" if value != value else f"{value:.4g}"
    return str(value)


def _table_html(frame: pd.DataFrame) -> str:
    """A DataFrame as an HTML table (escaped); the index is shown unless it is the default 0..n-1."""
    show_index = not isinstance(frame.index, pd.RangeIndex) or frame.index.name is not None
    body = frame.to_html(
        index=show_index,
        border=0,
        escape=True,
        na_rep="–",
        float_format=lambda v: f"{v:.4g}",
        justify="center",
    )
    return f'<div class="table-wrap">{body}</div>'


def _kv_table(values: dict[str, Any]) -> str:
    """A two-column key/value table; nested values are shown as JSON."""
    rows = []
    for key, value in values.items():
        text = (
            json.dumps(value, default=str) if isinstance(value, (dict, list, tuple)) else _format_cell(value)
        )
        rows.append(f"<tr><td>{html.escape(str(key))}</td><td>{html.escape(text)}</td></tr>")
    return f'<div class="table-wrap"><table class="kv"><tbody>{"".join(rows)}</tbody></table></div>'


def format_seconds(seconds: float) -> str:
    """``3725.0`` -> ``"1 h 2 min 5 s"``, ``12.34`` -> ``"12.3 s"``, ``0.0123`` -> ``"12.3 ms"``."""
    if seconds < 1:
        return f"{seconds * 1000:.3g} ms"
    if seconds < 60:
        return f"{seconds:.3g} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return " ".join(f"{v} {u}" for v, u in ((hours, "h"), (minutes, "min"), (secs, "s")) if v or u == "s")


class _Images:
    """Turns figure paths into ``<img>`` sources: data URIs, or links relative to the report folder."""

    def __init__(self, out_dir: Path, embed: bool) -> None:
        self.out_dir = out_dir
        self.embed = embed
        self.copied: dict[Path, str] = {}

    def figure(self, caption: str, path: str | os.PathLike) -> str:
        """One ``<figure>`` with its caption, or a visible note when the image is missing."""
        path = Path(path)
        caption_html = f"<figcaption>{html.escape(caption)}</figcaption>"
        if not path.is_file():
            missing = html.escape(str(path))
            return f'<figure><p class="missing">image not found: {missing}</p>{caption_html}</figure>'
        src = html.escape(self.source(path), quote=True)
        alt = html.escape(caption, quote=True)
        return f'<figure><img src="{src}" alt="{alt}" loading="lazy">{caption_html}</figure>'

    def source(self, path: Path) -> str:
        """The ``src`` of ``path``: a base64 data URI, or a relative link (copying the file in if needed)."""
        mime = MIME_TYPES.get(path.suffix.lower())
        if mime is None:
            raise DataError(f"cannot show {path} in the report: use one of {', '.join(sorted(MIME_TYPES))}")
        if self.embed:
            return data_uri(path.read_bytes(), mime)
        resolved = path.resolve()
        try:
            return resolved.relative_to(self.out_dir.resolve()).as_posix()
        except ValueError:
            pass
        if resolved not in self.copied:
            target = self.out_dir / "figures" / f"{len(self.copied):03d}-{path.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(resolved, target)
            self.copied[resolved] = target.relative_to(self.out_dir).as_posix()
        return self.copied[resolved]


def _anchor(text: str) -> str:
    """An id made of the lower-case letters and digits of ``text``."""
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-") or "section"


def render_report(data: ReportData, out_dir: str | os.PathLike, embed: bool = True) -> str:
    """The report page as HTML text (see :func:`write_report`)."""
    images = _Images(Path(out_dir), embed)
    sections: list[tuple[str, str]] = []
    if data.card is not None:
        sections.append(("Model card", data.card.html()))
    if data.notes:
        items = "".join(f"<li>{html.escape(note)}</li>" for note in data.notes)
        sections.append(("Notes", f'<ul class="notes">{items}</ul>'))
    for caption, table in data.tables.items():
        sections.append((caption, _table_section(table)))
    for caption, path in data.figures:
        sections.append((caption, images.figure(caption, path)))
    if data.gallery:
        cards = "".join(images.figure(caption, path) for caption, path in data.gallery)
        sections.append(("Infection maps", f'<div class="gallery">{cards}</div>'))
    if data.timings:
        timings = {
            k: format_seconds(v) if isinstance(v, (int, float)) else v for k, v in data.timings.items()
        }
        sections.append(("Timings", _kv_table(timings)))
    if data.config:
        sections.append(("Configuration", _kv_table(data.config)))
    if data.environment:
        sections.append(("Environment", _kv_table(data.environment)))
    body, nav, used = [], [], set()
    for heading, content in sections:
        anchor = _anchor(heading)
        while anchor in used:
            anchor += "-"
        used.add(anchor)
        nav.append(f'<a href="#{anchor}">{html.escape(heading)}</a>')
        body.append(f'<section id="{anchor}"><h2>{html.escape(heading)}</h2>\n{content}\n</section>')
    template = Template(resources.files("cxrmap.report").joinpath("templates/report.html").read_text("utf-8"))
    date = data.environment.get("date") or datetime.now().astimezone().isoformat(timespec="seconds")
    return template.substitute(
        title=html.escape(data.title),
        subtitle=html.escape(f"cxrmap {__version__} · {date}"),
        nav="".join(nav),
        disclaimer=html.escape(DISCLAIMER),
        body="\n".join(body),
        version=html.escape(__version__),
        date=html.escape(str(date)),
        citation=html.escape(PAPER.text),  # no link: the page holds no outside address
    )


def write_report(out_dir: str | os.PathLike, data: ReportData, embed: bool = True) -> Path:
    """Write ``out_dir/report.html``: a self-contained page of ``data`` (atomic; the folder is created).

    Sections, in order: the model card, notes, each table, each figure, the gallery of infection maps,
    timings, configuration, environment; a research-use-only notice heads the page.

    Args:
        out_dir: the run's folder.
        data: what to show.
        embed: embed images as base64 data URIs (one file that opens anywhere); False links them relative
            to the page, copying images from outside ``out_dir`` into ``out_dir/figures/``.

    Returns:
        The path of ``report.html``.

    Example:
        >>> write_report("runs/demo", ReportData(title="demo", notes=["phantom data"]))  # doctest: +SKIP
        PosixPath('runs/demo/report.html')
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / REPORT_NAME
    write_text_atomic(path, render_report(data, out_dir, embed))
    return path
