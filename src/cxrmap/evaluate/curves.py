"""Curves over the decision threshold: pixel precision-recall (paper Fig. 6) and detection ROC.

Each figure is written twice: a PNG (matplotlib, Agg backend) and a CSV of the plotted points, so the
numbers can be re-plotted or compared without the image.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cxrmap.core.fileio import write_bytes_atomic, write_text_atomic


def new_figure(size: tuple[float, float] = (5.5, 5), panels: int = 1):
    """A matplotlib figure and its axes (an array of ``panels`` side by side if more than one), Agg."""

    matplotlib.use("Agg", force=False)

    return plt.subplots(1, panels, figsize=size, dpi=120)


def save_figure(fig, png: Path) -> None:
    """Write ``fig`` to ``png`` atomically and close it."""

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    write_bytes_atomic(png, buffer.getvalue())


def write_pr_curves(
    curves: dict[str, dict], png: str | os.PathLike, csv: str | os.PathLike, marker: float = 0.5
) -> tuple[Path, Path]:
    """Plot pixel precision against recall over the threshold, one line per model (Fig. 6).

    Args:
        curves: model name -> :func:`cxrmap.evaluate.segmentation.pr_curve` output.
        png, csv: output paths.
        marker: the threshold marked with a dot on each curve (the paper's 0.5).

    Returns:
        ``(png, csv)`` paths.
    """
    fig, ax = new_figure()
    frames = []
    for name, curve in curves.items():
        threshold, precision, recall = (np.asarray(curve[k]) for k in ("threshold", "precision", "recall"))
        keep = (curve["tp"] + curve["fp"]) > 0  # thresholds above every score predict nothing: no point
        ax.plot(recall[keep], precision[keep], label=name, linewidth=1.5)
        at = int(np.argmin(np.abs(threshold - marker)))
        ax.plot(recall[at], precision[at], "o", color=ax.lines[-1].get_color(), markersize=4)
        frames.append(
            pd.DataFrame({"model": name, "threshold": threshold, "precision": precision, "recall": recall})
        )
    ax.set(
        xlabel="Recall (sensitivity)",
        ylabel="Precision",
        xlim=(0, 1.01),
        ylim=(0, 1.01),
        title=f"Infected-pixel precision-recall (dot: threshold {marker:g})",
    )
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(loc="lower left", fontsize=8)
    png, csv = Path(png), Path(csv)
    save_figure(fig, png)
    table = (
        pd.concat(frames) if frames else pd.DataFrame(columns=["model", "threshold", "precision", "recall"])
    )
    write_text_atomic(csv, table.to_csv(index=False, float_format="%.6g"))
    return png, csv


def write_roc_curves(
    curves: dict[str, dict], png: str | os.PathLike, csv: str | os.PathLike
) -> tuple[Path, Path]:
    """Plot the detection ROC (true against false positive rate), one line per model, AUC in the legend.

    Args:
        curves: model name -> :func:`cxrmap.evaluate.detection.roc_curve` output plus ``auc``.
        png, csv: output paths.

    Returns:
        ``(png, csv)`` paths.
    """
    fig, ax = new_figure()
    frames = []
    for name, curve in curves.items():
        ax.plot(curve["fpr"], curve["tpr"], label=f"{name} (AUC {curve['auc']:.4f})", linewidth=1.5)
        frames.append(
            pd.DataFrame(
                {"model": name, "threshold": curve["threshold"], "fpr": curve["fpr"], "tpr": curve["tpr"]}
            )
        )
    ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=1)
    ax.set(
        xlabel="False positive rate (1 - specificity)",
        ylabel="True positive rate (sensitivity)",
        xlim=(-0.01, 1),
        ylim=(0, 1.01),
        title="COVID-19 detection ROC (score: max pixel probability)",
    )
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(loc="lower right", fontsize=8)
    png, csv = Path(png), Path(csv)
    save_figure(fig, png)
    table = pd.concat(frames) if frames else pd.DataFrame(columns=["model", "threshold", "fpr", "tpr"])
    write_text_atomic(csv, table.to_csv(index=False, float_format="%.6g"))
    return png, csv
