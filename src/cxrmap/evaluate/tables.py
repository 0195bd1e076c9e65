"""Result tables laid out like the paper's: Table I (segmentation), III (detection), IV (confusion).

Each table is written as Markdown (values in %, with the 95% interval of Eq. 13 in percentage points:
``84.00 ± 0.015``) and as CSV (fractions, one ``<metric>_ci`` column beside each metric).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from cxrmap.core.fileio import write_text_atomic
from cxrmap.models.segmentation import title

COLUMNS = ("sensitivity", "specificity", "precision", "f1", "f2", "accuracy", "auc")
"""Columns of Tables I and III (Table III adds here the ROC AUC of the max-probability score)."""
TITLES = {
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "precision": "Precision",
    "f1": "F1-Score",
    "f2": "F2-Score",
    "accuracy": "Accuracy",
    "auc": "AUC",
}
KEY_COLUMNS = ("model", "encoder", "encoder_layers")


def describe(model_config: dict) -> dict[str, str]:
    """The row labels of a model: ``model`` (U-Net...), ``encoder`` (DenseNet-121...), ``encoder_layers``.

    ``encoder_layers`` is ``frozen`` or ``not frozen`` (the paper's check and cross marks), with the
    initial weights added where they are not the encoder's default (e.g. ``not frozen, random init``).
    """
    arch, encoder = model_config.get("arch", ""), model_config.get("encoder", "")
    layers = "frozen" if model_config.get("freeze_encoder") else "not frozen"
    if not model_config.get("weights"):
        layers += ", random init"
    return {
        "model": title(arch),
        "encoder": title(encoder),
        "encoder_layers": layers,
    }


def metric_table(rows: list[dict], columns: tuple[str, ...]) -> pd.DataFrame:
    """One row per model: labels, then each metric (fraction) and its ``_ci`` half-width.

    Args:
        rows: dicts with the :data:`KEY_COLUMNS` labels and ``metrics`` (``{name: v, name_ci: h}``); a
            ``rule`` (Table III's detection rule) is kept as a column after the labels.
        columns: metric names, in order.
    """
    records = []
    for row in rows:
        record = {k: row.get(k, "") for k in KEY_COLUMNS}
        if "rule" in row:
            record["rule"] = row["rule"]
        for name in columns:
            record[name] = row["metrics"].get(name, float("nan"))
            record[f"{name}_ci"] = row["metrics"].get(f"{name}_ci", float("nan"))
        if "folds" in row:
            record["folds"] = row["folds"]
        records.append(record)
    return pd.DataFrame.from_records(records)


def format_value(value: float, ci: float) -> str:
    """``"84.00 ± 0.015"``: the value in % (2 decimals), the interval in percentage points (2 digits)."""
    if not np.isfinite(value):
        return "-"
    if not np.isfinite(ci):
        return f"{100 * value:.2f}"
    return f"{100 * value:.2f} ± {100 * ci:.2g}"


def to_markdown(table: pd.DataFrame, columns: tuple[str, ...], title: str) -> str:
    """A Markdown rendering of :func:`metric_table`'s output under ``title`` (values in %)."""
    keys = (*KEY_COLUMNS, "rule") if "rule" in table else KEY_COLUMNS
    labels = ["Model", "Encoder", "Encoder layers", "Detection rule"][: len(keys)]
    header = [*labels, *(TITLES.get(c, c) for c in columns)]
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for record in table.to_dict("records"):
        cells = [str(record[k]) for k in keys]
        cells += [format_value(record[c], record[f"{c}_ci"]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def confusion_markdown(matrices: dict[str, np.ndarray], title: str) -> str:
    """Table IV: one cumulative confusion matrix per model (rows: ground truth, columns: predicted)."""
    lines = [f"**{title}**", ""]
    for name, matrix in matrices.items():
        m = np.asarray(matrix, np.int64)
        lines += [
            f"*{name}*",
            "",
            "| Ground truth \\ Predicted | Control | COVID-19 |",
            "|---|---|---|",
            f"| Control | {m[0, 0]} | {m[0, 1]} |",
            f"| COVID-19 | {m[1, 0]} | {m[1, 1]} |",
            "",
        ]
    return "\n".join(lines)


def confusion_frame(matrices: dict[str, np.ndarray]) -> pd.DataFrame:
    """Table IV as CSV rows: ``model, tn, fp, fn, tp`` (COVID-19 positive)."""
    rows = [
        {"model": name, "tn": int(m[0][0]), "fp": int(m[0][1]), "fn": int(m[1][0]), "tp": int(m[1][1])}
        for name, m in matrices.items()
    ]
    return pd.DataFrame(rows, columns=["model", "tn", "fp", "fn", "tp"])


def write_table(stem: str | os.PathLike, markdown: str, frame: pd.DataFrame) -> tuple[Path, Path]:
    """Write ``stem.md`` and ``stem.csv`` atomically; returns their paths."""
    stem = Path(stem)
    md, csv = stem.with_suffix(".md"), stem.with_suffix(".csv")
    write_text_atomic(md, markdown)
    write_text_atomic(csv, frame.to_csv(index=False, float_format="%.8g"))
    return md, csv


def beside_paper(ours: float, paper: float | None, kind: str = "percent", ci: float = float("nan")) -> str:
    """One cell of a table beside the paper's: ``ours / paper (difference)``.

    ``kind`` ``percent``: ``ours`` a fraction (with its Eq. 13 interval ``ci``), ``paper`` in % as printed,
    the difference in percentage points (``84.10 ± 0.5 / 84.00 (+0.10)``); ``count``: whole numbers
    (``2,361 / 2,361 (+0)``); ``ms``: milliseconds (``31.2 / 2.58 (x12.09)``, the ratio). A missing side
    shows ``-``.
    """
    if kind == "percent":
        mine = format_value(ours, ci) if ours is not None else "-"
        if paper is None:
            return mine
        if ours is None or not np.isfinite(ours):
            return f"{mine} / {paper:.2f}"
        return f"{mine} / {paper:.2f} ({100 * ours - paper:+.2f})"
    if kind == "count":
        mine = f"{int(ours):,}" if ours is not None else "-"
        if paper is None:
            return mine
        return f"{mine} / {int(paper):,}" + (f" ({int(ours) - int(paper):+,})" if ours is not None else "")
    if kind == "ms":
        mine = f"{ours:.3g}" if ours is not None and np.isfinite(ours) else "-"
        if paper is None:
            return mine
        ratio = f" (x{ours / paper:.2f})" if ours is not None and np.isfinite(ours) else ""
        return f"{mine} / {paper:.2f}{ratio}"
    raise ValueError(f"unknown kind {kind!r}")


def markdown_table(title: str, header: list[str], rows: list[list], notes: list[str] = ()) -> str:
    """A Markdown pipe table under a bold ``title``, with ``notes`` as lines below it."""
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join([*lines, "", *notes]).rstrip() + "\n"
