"""Infection maps: the network's probability map painted translucently onto the radiograph.

Paper Sec. II-D and Fig. 5: the prediction Ŷ (per-pixel infection probability in [0, 1]) goes through the
jet colour scale to an RGB image Ŷ_RGB; the infection map is the HSV image whose hue and saturation are
those of Ŷ_RGB and whose value is that of the radiograph X, converted back to RGB. Pixels with zero
probability are not painted, so the infection shows translucent on the lungs.

Colour scale: matplotlib's ``"jet"`` (the classic MATLAB definition, 256 levels), read once as a lookup
table. A trained network never outputs exactly 0, so "zero probability" means below a display floor,
:data:`DISPLAY_FLOOR` = 0.01: one percent is practically zero, it lies inside jet's first three levels
(all the same dark blue, indistinguishable from 0), and it keeps the sigmoid's faint background noise
(typically 1e-4 to 1e-2) from tinting the whole film blue.
"""

from __future__ import annotations

import functools

import cv2
import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colorbar import ColorbarBase
from matplotlib.colors import Normalize, hsv_to_rgb, rgb_to_hsv
from matplotlib.figure import Figure

from cxrmap.core.errors import DataError

DISPLAY_FLOOR = 0.01
"""Probabilities below this are shown as the plain radiograph ("zero probability", paper Sec. II-D)."""

JET_LEVELS = 256
"""Number of colours in the jet lookup table (matplotlib's default for ``"jet"``)."""


DISPLAY_SIDE = 1024
"""Longest side, in pixels, of the maps drawn for viewing (a screen's height; films are 2-8 Mpx)."""


def display_shape(shape: tuple[int, int], side: int = DISPLAY_SIDE) -> tuple[int, int]:
    """The (height, width) a map of an image of ``shape`` is drawn at: longest side at most ``side``.

    The aspect ratio is kept; images already that small, and ``side`` 0, keep their own size.

    Example:
        >>> display_shape((3000, 2000)), display_shape((500, 400)), display_shape((3000, 2000), side=0)
        ((1024, 683), (500, 400), (3000, 2000))
    """
    height, width = int(shape[0]), int(shape[1])
    if side < 0:
        raise DataError(f"the display side must be 0 (full size) or a positive number of pixels; got {side}.")
    longest = max(height, width)
    if side == 0 or longest <= side:
        return height, width
    scale = side / longest
    return max(1, round(height * scale)), max(1, round(width * scale))


def display_image(cxr: np.ndarray, side: int = DISPLAY_SIDE) -> np.ndarray:
    """The radiograph at :func:`display_shape` (area interpolation), the canvas its map is drawn on."""
    height, width = display_shape(cxr.shape, side)
    if (height, width) == cxr.shape:
        return cxr
    return cv2.resize(cxr, (width, height), interpolation=cv2.INTER_AREA)


@functools.lru_cache(maxsize=1)
def _jet_hue_saturation() -> np.ndarray:
    """Hue and saturation of each of jet's 256 colours, float64 (256, 2), both in [0, 1]."""

    rgb = matplotlib.colormaps["jet"].resampled(JET_LEVELS)(np.arange(JET_LEVELS))[:, :3]
    return rgb_to_hsv(rgb)[:, :2]


def jet_index(prob: np.ndarray) -> np.ndarray:
    """Index of each probability's colour in the 256-level jet table (as matplotlib maps floats).

    Shape: any -> same, int64 in [0, 255].
    """
    values = np.asarray(prob)
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    # scaling by 256, a power of two, is exact in any float precision: no need to widen float32 maps
    return np.clip((values * JET_LEVELS).astype(np.int64), 0, JET_LEVELS - 1)


def _check_inputs(cxr: np.ndarray, prob: np.ndarray) -> None:
    """Raise :class:`DataError` unless ``cxr`` is uint8 HxW and ``prob`` a finite float HxW in [0, 1]."""
    if not isinstance(cxr, np.ndarray) or cxr.dtype != np.uint8 or cxr.ndim != 2:
        got = f"{cxr.dtype} array of shape {cxr.shape}" if isinstance(cxr, np.ndarray) else type(cxr).__name__
        raise DataError(
            f"the radiograph must be a 2-D uint8 grayscale array (H, W); got {got}. "
            "Read it with cxrmap.data.io.read_image, which returns exactly that."
        )
    if not isinstance(prob, np.ndarray) or not np.issubdtype(prob.dtype, np.floating):
        got = f"{prob.dtype} array" if isinstance(prob, np.ndarray) else type(prob).__name__
        raise DataError(
            f"the probability map must be a float array with values in [0, 1]; got {got}. "
            "Pass the network's sigmoid output (e.g. Prediction.prob), not a thresholded mask."
        )
    if prob.shape != cxr.shape:
        raise DataError(
            f"the probability map has shape {prob.shape} but the radiograph has shape {cxr.shape}; "
            "resize the probabilities to the radiograph's size first (Predictor does this)."
        )
    if prob.size and not np.isfinite(prob).all():
        raise DataError("the probability map contains NaN or infinite values; expected values in [0, 1].")
    if prob.size and (prob.min() < 0.0 or prob.max() > 1.0):
        raise DataError(
            f"the probability map must lie in [0, 1]; got values from {prob.min():.4g} to {prob.max():.4g}. "
            "Apply a sigmoid to logits before drawing a map."
        )


def infection_map(
    cxr: np.ndarray, prob: np.ndarray, floor: float = DISPLAY_FLOOR, opacity: float = 1.0
) -> np.ndarray:
    """Paint the infection probability map onto the radiograph (paper Sec. II-D, Fig. 5).

    Each pixel with ``prob >= floor`` takes the hue and saturation of ``jet(prob)`` and the value (gray
    level) of the radiograph, converted from HSV back to RGB; pixels below ``floor`` show the plain
    radiograph. ``opacity`` blends the painted map with the plain radiograph (1 = the paper's map,
    0 = the radiograph alone).

    Args:
        cxr: the radiograph, uint8 gray levels.
        prob: infection probabilities in [0, 1], same shape as ``cxr``.
        floor: display floor; probabilities below it count as zero (default :data:`DISPLAY_FLOOR`).
        opacity: weight of the painted map against the plain radiograph, in [0, 1].

    Returns:
        The infection map, RGB uint8.

    Shape:
        cxr (H, W), prob (H, W) -> (H, W, 3).

    Example:
        >>> cxr = np.full((2, 2), 200, np.uint8)
        >>> infection_map(cxr, np.array([[0.0, 1.0], [0.0, 0.0]]))[0, 1].tolist()  # jet's dark red
        [200, 0, 0]
    """

    _check_inputs(cxr, prob)
    if not 0.0 <= floor <= 1.0:
        raise DataError(f"the display floor must lie in [0, 1]; got {floor}.")
    if not 0.0 <= opacity <= 1.0:
        raise DataError(f"the opacity must lie in [0, 1]; got {opacity}.")
    level = jet_index(prob).astype(np.intp)
    level[prob < floor] = JET_LEVELS  # the table's last row: the plain radiograph
    return _painted_table(float(opacity))[level, cxr]


@functools.lru_cache(maxsize=4)
def _painted_table(opacity: float) -> np.ndarray:
    """Every pixel colour the map can take, uint8 (257, 256, 3): row = jet level, column = gray level.

    Row ``l < 256`` holds the HSV-to-RGB colour with jet level ``l``'s hue and saturation and the gray
    level as value (blended with the gray by ``1 - opacity``); row 256 holds the plain gray. Looking a
    pixel up gives the same bytes as converting it, at a fraction of the cost on films of many megapixels.
    """
    gray = np.arange(256, dtype=np.float64)
    hsv = np.empty((JET_LEVELS, 256, 3), dtype=np.float64)
    hsv[..., :2] = _jet_hue_saturation()[:, None, :]
    hsv[..., 2] = gray[None, :] / 255.0
    painted = hsv_to_rgb(hsv) * 255.0
    plain = np.repeat(gray[None, :, None], 3, axis=2)
    painted = opacity * painted + (1.0 - opacity) * plain
    table = np.concatenate([painted, plain], axis=0)
    return np.clip(np.rint(table), 0, 255).astype(np.uint8)


def colorbar(height: int = 256, width: int = 96, label: str = "infection probability") -> np.ndarray:
    """Draw the legend of the infection map: the jet scale from 0 (bottom) to 1 (top) with ticks.

    Args:
        height: image height in pixels (at least 64).
        width: image width in pixels (at least 48).
        label: text written along the bar; empty for none.

    Returns:
        RGB uint8 image (height, width, 3) on a white background.
    """

    if height < 64 or width < 48:
        raise DataError(f"a colour bar needs at least 64x48 pixels (height x width); got {height}x{width}.")
    dpi = 100
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_axes((0.1, 0.04, 0.18, 0.92))
    bar = ColorbarBase(
        axes, cmap=matplotlib.colormaps["jet"], norm=Normalize(0.0, 1.0), orientation="vertical"
    )
    bar.set_ticks([0.0, 0.25, 0.5, 0.75, 1.0])
    bar.ax.tick_params(labelsize=max(5, min(9, height // 30)))
    if label:
        bar.set_label(label, fontsize=max(5, min(9, height // 30)))
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    return np.ascontiguousarray(rgb[:height, :width])
