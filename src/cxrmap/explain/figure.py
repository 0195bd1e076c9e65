"""The infection-vs-activation figure (paper Fig. 7): one row per radiograph, one column per map.

Columns, left to right: the radiograph, its ground-truth infection mask (white on black, as in the
paper), each classifier's Grad-CAM activation map, then each segmentation model's infection map. Both kinds
of map are painted with :func:`cxrmap.predict.maps.infection_map` (jet hue and saturation over the
radiograph's gray value), so one colour means one value in every column.

The figure's size is exact: ``columns * cell_px`` wide and ``header_px + rows * cell_px`` high (the header
band holds the column titles, wrapped on two lines), see :func:`grid_size`.
"""

from __future__ import annotations

import io
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cxrmap.core.errors import DataError
from cxrmap.core.fileio import write_bytes_atomic
from cxrmap.predict.maps import infection_map

DPI = 100
PAD_PX = 1
"""White margin around each panel, in pixels."""


def grid_size(rows: int, columns: int, cell_px: int = 160, header_px: int = 40) -> tuple[int, int]:
    """``(width, height)`` in pixels of a :func:`comparison_grid` PNG with ``rows`` x ``columns`` cells."""
    return columns * cell_px, header_px + rows * cell_px


def _fit(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A 2-D map resized (bilinear) to ``shape`` as float64, clipped to [0, 1]."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise DataError(f"each map must be 2-D (H, W), got shape {image.shape}")
    if image.shape != shape:
        import cv2

        image = cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.clip(np.nan_to_num(image), 0.0, 1.0)


def comparison_grid(
    cxrs: Sequence[np.ndarray] | np.ndarray,
    gts: Sequence[np.ndarray] | np.ndarray,
    activation_maps: Mapping[str, Sequence[np.ndarray] | np.ndarray],
    infection_maps: Mapping[str, Sequence[np.ndarray] | np.ndarray],
    path: str | os.PathLike,
    row_labels: Sequence[str] | None = None,
    cell_px: int = 160,
    header_px: int = 40,
) -> Path:
    """Draw the Fig. 7-style comparison of activation and infection maps and save it as PNG.

    Args:
        cxrs: ``N`` uint8 radiographs ``H x W``.
        gts: ``N`` ground-truth infection masks (bool or {0, 1}), any size (resized to the radiograph).
        activation_maps: classifier name -> ``N`` Grad-CAM maps in [0, 1] (e.g. "DenseNet-121 Grad-CAM").
        infection_maps: model name -> ``N`` infection probability maps in [0, 1].
        path: the PNG to write (atomically).
        row_labels: optional text drawn in the corner of each row's radiograph (e.g. the file name).
        cell_px: side of one cell in pixels.
        header_px: height of the column-title band in pixels.

    Returns:
        ``path``. The PNG is :func:`grid_size` ``(N, 2 + len(activation_maps) + len(infection_maps))``.

    Raises:
        DataError: no images, counts that differ between the inputs, or maps that are not 2-D.
    """

    n = len(cxrs)
    if n == 0:
        raise DataError("comparison_grid needs at least one radiograph")
    columns = [("CXR", None), ("Ground truth", None)]
    columns += [(name, maps) for name, maps in activation_maps.items()]
    columns += [(name, maps) for name, maps in infection_maps.items()]
    for name, maps in [("gts", gts), ("row_labels", row_labels), *columns[2:]]:
        if maps is not None and len(maps) != n:
            raise DataError(f"{name!r} has {len(maps)} entries for {n} radiographs; pass one per radiograph")
    if cell_px < 16 or header_px < 0:
        raise DataError(f"cell_px must be at least 16 and header_px non-negative, got {cell_px}, {header_px}")
    width, height = grid_size(n, len(columns), cell_px, header_px)
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    canvas = FigureCanvasAgg(figure)
    font = max(6, min(11, cell_px // 16))
    per_line = max(4, int(cell_px / (0.6 * font * DPI / 72)))  # characters that fit in one cell
    for c, (title, _) in enumerate(columns):
        if header_px:
            lines = textwrap.wrap(title, per_line, max_lines=2, placeholder="…", break_on_hyphens=False) or [
                ""
            ]
            figure.text(
                (c + 0.5) / len(columns),
                1 - header_px / 2 / height,
                "\n".join(lines),
                ha="center",
                va="center",
                fontsize=font,
                linespacing=1.1,
            )
    for r in range(n):
        cxr = np.asarray(cxrs[r])
        if cxr.dtype != np.uint8 or cxr.ndim != 2:
            raise DataError(f"radiograph {r} must be uint8 H x W, got {cxr.dtype} {cxr.shape}")
        panels = [np.repeat(cxr[..., None], 3, axis=2)]
        gt = _fit(np.asarray(gts[r]).astype(np.float64), cxr.shape) >= 0.5
        panels.append(np.repeat((gt * 255).astype(np.uint8)[..., None], 3, axis=2))
        panels += [infection_map(cxr, _fit(maps[r], cxr.shape)) for _, maps in columns[2:]]
        bottom = (height - header_px - (r + 1) * cell_px) / height
        for c, panel in enumerate(panels):
            axes = figure.add_axes(
                (
                    (c * cell_px + PAD_PX) / width,
                    bottom + PAD_PX / height,
                    (cell_px - 2 * PAD_PX) / width,
                    (cell_px - 2 * PAD_PX) / height,
                )
            )
            axes.imshow(panel, interpolation="bilinear", aspect="auto")
            axes.set_axis_off()
            if c == 0 and row_labels is not None:
                axes.text(
                    0.03,
                    0.97,
                    str(row_labels[r]),
                    transform=axes.transAxes,
                    ha="left",
                    va="top",
                    fontsize=max(5, font - 2),
                    color="yellow",
                )
    buffer = io.BytesIO()
    canvas.print_png(buffer)
    write_bytes_atomic(path, buffer.getvalue())
    return Path(path)
