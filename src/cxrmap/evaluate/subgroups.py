"""Detection by subgroup: which kinds of image the detector calls COVID-19.

Table IV counts the errors; this table says where they fall. For every value of the manifest's ``group``
(paper Sec. II-A: ``I`` normal controls, ``II`` other findings), ``finding`` and ``source`` columns, and
each label, it gives the images and the share called COVID-19 (any pixel >= the threshold, Sec. II-D): the
sensitivity on COVID-19 rows, the false-positive rate (1 - specificity) on control rows, each with the 95%
interval of Eq. 13. A subgroup far from the rest of its label is where to look: look-alike findings that
the network takes for COVID-19, or a source whose films it has tied to the label (a shortcut).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from cxrmap.core.errors import DataError
from cxrmap.evaluate.curves import new_figure, save_figure
from cxrmap.evaluate.metrics import confidence_interval
from cxrmap.evaluate.tables import format_value, write_table

SUBGROUP_COLUMNS = ("group", "finding", "source")
"""Manifest columns broken down, where they tell images of one label apart."""
FRAME_COLUMNS = ("model", "column", "value", "label", "images", "called_covid", "share", "share_ci")
LABEL_NAMES = {1: "COVID-19", 0: "control"}


def detection_by_subgroup(
    scores: pd.DataFrame,
    manifest: pd.DataFrame,
    threshold: float = 0.5,
    columns: tuple[str, ...] = SUBGROUP_COLUMNS,
) -> pd.DataFrame:
    """The share of each subgroup's images called COVID-19, with its 95% interval (Eq. 13).

    A column is broken down within a label only where that label's images carry at least two different
    non-empty values (a column that only repeats the label, or one source for all, adds nothing to
    Table III). Images with an empty value are left out of that column's rows.

    Args:
        scores: per-image scores: ``index`` (manifest row), ``label`` (1 COVID-19, 0 control), ``score``
            (max pixel probability), and ``model`` where several models were evaluated
            (:attr:`cxrmap.study.cv.CVResult.scores`).
        manifest: the manifest whose rows ``index`` points into.
        threshold: an image with a score at or above it is called COVID-19.
        columns: manifest columns to break down.

    Returns:
        One row per model, column, value and label: :data:`FRAME_COLUMNS` (``share`` and ``share_ci`` as
        fractions); empty when no column tells images apart.

    Raises:
        DataError: ``scores`` lacks a needed column or points past the manifest.
    """
    missing = [c for c in ("index", "label", "score") if c not in scores.columns]
    if missing:
        raise DataError(f"the scores table has no {', '.join(missing)} column (expected index, label, score)")
    index = scores["index"].to_numpy(np.int64)
    if len(index) and (index.min() < 0 or index.max() >= len(manifest)):
        raise DataError(
            f"the scores point at manifest rows up to {index.max()}, but the manifest has {len(manifest)}; "
            "pass the manifest the scores were computed on"
        )
    frame = pd.DataFrame(
        {
            "model": scores["model"].to_numpy() if "model" in scores.columns else "",
            "label": scores["label"].to_numpy(np.int64),
            "called": scores["score"].to_numpy(np.float64) >= threshold,
        }
    )
    rows = []
    for column in (c for c in columns if c in manifest.columns):
        frame["value"] = manifest[column].astype(str).to_numpy()[index]
        known = frame[frame["value"] != ""]
        distinct = known.groupby("label")["value"].nunique()
        for (model, value, label), images in known.groupby(["model", "value", "label"], sort=True):
            if distinct[label] < 2:
                continue
            share = float(images["called"].mean())
            rows.append(
                {
                    "model": model,
                    "column": column,
                    "value": value,
                    "label": LABEL_NAMES.get(int(label), str(label)),
                    "images": len(images),
                    "called_covid": int(images["called"].sum()),
                    "share": share,
                    "share_ci": confidence_interval(share, len(images)),
                }
            )
    return pd.DataFrame(rows, columns=list(FRAME_COLUMNS))


def subgroup_markdown(table: pd.DataFrame, title: str) -> str:
    """:func:`detection_by_subgroup`'s table as Markdown under ``title`` (shares in %)."""
    lines = [
        f"**{title}**",
        "",
        "| Model | Subgroup | Label | Images | Called COVID-19 | Share (%) |",
        "|---|---|---|---|---|---|",
    ]
    for row in table.to_dict("records"):
        share = format_value(row["share"], row["share_ci"])
        lines.append(
            f"| {row['model']} | {row['column']}: {row['value']} | {row['label']} | {row['images']} "
            f"| {row['called_covid']} | {share} |"
        )
    return "\n".join(lines) + "\n"


def plot_subgroups(table: pd.DataFrame, png: str | os.PathLike) -> Path:
    """Bars of the share called COVID-19 per subgroup with their 95% intervals, one panel per model."""

    models = list(dict.fromkeys(table["model"]))
    height = max(int((table["model"] == model).sum()) for model in models)
    fig, axes = new_figure((6.5 * len(models), 1.2 + 0.28 * height), panels=len(models))
    colours = {"COVID-19": "#c0392b", "control": "#2471a3"}
    for ax, model in zip(np.atleast_1d(axes), models, strict=True):
        rows = table[table["model"] == model].iloc[::-1]
        y = np.arange(len(rows))
        ax.barh(
            y,
            100 * rows["share"],
            xerr=100 * rows["share_ci"].fillna(0),
            color=[colours.get(label, "grey") for label in rows["label"]],
            error_kw={"elinewidth": 1, "capsize": 2},
        )
        names = [f"{r.column}: {r.value} ({r.label}, n={r.images})" for r in rows.itertuples(index=False)]
        ax.set_yticks(y, names, fontsize=8)
        ax.set(xlim=(0, 105), xlabel="Called COVID-19 (%)", title=model or "Detection by subgroup")
        ax.grid(axis="x", alpha=0.3)
    save_figure(fig, Path(png))
    return Path(png)


def write_subgroups(
    scores: pd.DataFrame,
    manifest: pd.DataFrame,
    stem: str | os.PathLike,
    threshold: float = 0.5,
    columns: tuple[str, ...] = SUBGROUP_COLUMNS,
) -> dict[str, Path]:
    """Write ``stem.md``, ``stem.csv`` and ``stem.png``; nothing (an empty dict) where no column applies."""
    table = detection_by_subgroup(scores, manifest, threshold, columns)
    if table.empty:
        return {}
    title = (
        f"Detection by subgroup: share called COVID-19 (score >= {threshold:g}); sensitivity on COVID-19 "
        "rows, false-positive rate on control rows"
    )
    stem = Path(stem)
    markdown, csv = write_table(stem, subgroup_markdown(table, title), table)
    plot = plot_subgroups(table, stem.with_suffix(".png"))
    return {"subgroups": markdown, "subgroups_csv": csv, "subgroups_plot": plot}
