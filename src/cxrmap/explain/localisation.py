"""How well a map localises the infection: measured comparison of activation and infection maps.

The paper shows (Sec. III-C, Fig. 7) that Grad-CAM maps of classifiers miss the infection and often light
up regions outside the lungs, while infection maps follow the ground truth. Here the comparison is
measured, for any non-negative map (Grad-CAM maps or segmentation probabilities alike), on COVID-19
images with a ground-truth infection mask:

- **infection energy share**: ``sum(map * infection) / sum(map)``, the share of the map's total value
  that falls inside the ground-truth infection mask (1 = all of it);
- **lung energy share**: ``sum(map * lungs) / sum(map)``, the share inside the lung fields (images
  without a lung mask are left out of this column);
- **pointing game** (Zhang et al., "Top-down neural attention by excitation backprop", ECCV 2016): a hit
  when the map's maximum (``np.argmax``: the first maximal pixel in row-major order) lies inside the
  infection mask or within ``tolerance`` pixels of it (Euclidean distance to the nearest mask pixel;
  ``tolerance=0``, the default, asks for the pixel itself; Zhang et al. used 15 pixels on full-size
  images, a few pixels suit 224 x 224 inputs).

A map that is zero everywhere (a Grad-CAM map whose ReLU removed everything) has no energy and points
nowhere: it scores 0 in both shares and a miss, and is counted in the table's ``empty_maps`` column.
Images whose infection mask is empty are skipped (nothing to localise). Maps of another size than the
masks are resized to the masks' size (bilinear) first.

Each column is a mean over images with a 95% interval: ``1.96 * std / sqrt(n)`` (normal approximation of
the mean) for the shares, and paper Eq. 13, ``1.96 * sqrt(p (1 - p) / n)``, for the pointing hit rate.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from cxrmap.core.errors import DataError
from cxrmap.evaluate.metrics import confidence_interval

Z_95 = 1.96
"""z of a two-sided 95% interval."""

COLUMNS = (
    "method",
    "images",
    "empty_maps",
    "infection_energy",
    "infection_energy_ci",
    "lung_energy",
    "lung_energy_ci",
    "lung_images",
    "pointing_hit",
    "pointing_hit_ci",
)
"""Columns of :func:`localisation_table`; shares and rates are fractions in [0, 1]."""


def _resized(saliency: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``saliency`` as float64 at ``shape`` (bilinear when the size differs), checked finite and >= 0."""
    saliency = np.asarray(saliency, dtype=np.float64)
    if saliency.ndim != 2:
        raise DataError(f"a map must be a 2-D array (H, W), got shape {saliency.shape}")
    if saliency.shape != shape:
        import cv2

        saliency = cv2.resize(saliency, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    if not np.isfinite(saliency).all():
        raise DataError("a map contains NaN or infinite values; expected finite values >= 0")
    if saliency.min() < 0:
        raise DataError(
            f"a map has negative values (minimum {saliency.min():.4g}); localisation scores need "
            "non-negative maps such as probabilities or Grad-CAM maps after their ReLU (Eq. 15)"
        )
    return saliency


def pointing_hit(saliency: np.ndarray, infection: np.ndarray, tolerance: float = 0.0) -> bool:
    """Whether the map's maximum lies in ``infection`` or within ``tolerance`` pixels of it.

    Shape: saliency and infection ``(H, W)`` (same shape). An all-zero map is a miss.
    """
    infection = np.asarray(infection, dtype=bool)
    if not saliency.any() or not infection.any():
        return False
    y, x = np.unravel_index(int(np.argmax(saliency)), saliency.shape)
    if infection[y, x]:
        return True
    if tolerance <= 0:
        return False
    r = int(np.floor(tolerance))
    y0, x0 = max(0, y - r), max(0, x - r)
    window = infection[y0 : y + r + 1, x0 : x + r + 1]
    yy, xx = np.nonzero(window)
    return bool((((yy + y0 - y) ** 2 + (xx + x0 - x) ** 2) <= tolerance**2).any())


def localisation_scores(
    saliency: np.ndarray,
    infection: np.ndarray,
    lungs: np.ndarray | None = None,
    tolerance: float = 0.0,
) -> dict[str, float]:
    """Localisation scores of one map against one image's ground truth.

    Args:
        saliency: non-negative map ``(h, w)`` (probabilities or a Grad-CAM map), resized to the masks' size.
        infection: ground-truth infection mask ``(H, W)`` (bool or {0, 1}).
        lungs: lung mask ``(H, W)`` or None (or empty) when unknown.
        tolerance: pointing-game tolerance in pixels (see the module docstring).

    Returns:
        ``{"infection_energy", "lung_energy" (NaN without lungs), "pointing_hit" (0.0 or 1.0),
        "empty" (1.0 for an all-zero map)}``.

    Example:
        >>> mask = np.zeros((4, 4), bool); mask[:2] = True
        >>> localisation_scores(np.ones((4, 4)), mask)["infection_energy"]
        0.5
    """
    infection = np.asarray(infection).astype(bool)
    saliency = _resized(saliency, infection.shape)
    if lungs is not None:
        lungs = np.asarray(lungs).astype(bool)
        if lungs.shape != infection.shape:
            raise DataError(
                f"lung mask shape {lungs.shape} differs from infection mask shape {infection.shape}"
            )
    total = saliency.sum()
    empty = total <= 0
    scores = {
        "infection_energy": 0.0 if empty else float(saliency[infection].sum() / total),
        "lung_energy": float("nan"),
        "pointing_hit": float(pointing_hit(saliency, infection, tolerance)),
        "empty": float(empty),
    }
    if lungs is not None and lungs.any():
        scores["lung_energy"] = 0.0 if empty else float(saliency[lungs].sum() / total)
    return scores


def _mean_ci(values: np.ndarray) -> tuple[float, float]:
    """Mean and 95% half-width ``1.96 * std / sqrt(n)`` of ``values`` (NaN when empty, 0 for one value)."""
    if len(values) == 0:
        return float("nan"), float("nan")
    if len(values) == 1:
        return float(values[0]), 0.0
    return float(values.mean()), float(Z_95 * values.std(ddof=1) / np.sqrt(len(values)))


def localisation_table(
    maps: Mapping[str, np.ndarray],
    infection_masks: np.ndarray,
    lung_masks: np.ndarray | None = None,
    tolerance: float = 0.0,
) -> pd.DataFrame:
    """Localisation of the infection by each method's maps, one row per method.

    Args:
        maps: method name -> maps ``N x h x w`` (Grad-CAM maps or infection probabilities), in the order of
            the masks; ``h x w`` may differ from the masks' size.
        infection_masks: ground-truth infection masks ``N x H x W`` of COVID-19 test images.
        lung_masks: lung masks ``N x H x W`` (an all-zero mask = unknown), or None.
        tolerance: pointing-game tolerance in pixels.

    Returns:
        DataFrame with :data:`COLUMNS`: ``images`` scored (infection mask not empty), ``empty_maps``,
        each share and the pointing hit rate with its 95% half-width ``*_ci``, ``lung_images``.

    Raises:
        DataError: counts or shapes that disagree, negative maps, or no image with an infection mask.

    Example:
        >>> masks = np.zeros((1, 4, 4), bool); masks[0, :2] = True
        >>> localisation_table({"ideal": masks.astype(float)}, masks)["infection_energy"].item()
        1.0
    """
    infection_masks = np.asarray(infection_masks).astype(bool)
    if infection_masks.ndim != 3:
        raise DataError(f"infection_masks must be N x H x W, got shape {infection_masks.shape}")
    n = len(infection_masks)
    if lung_masks is not None:
        lung_masks = np.asarray(lung_masks).astype(bool)
        if lung_masks.shape != infection_masks.shape:
            raise DataError(
                f"lung_masks have shape {lung_masks.shape} but infection_masks {infection_masks.shape}; "
                "pass both for the same images at the same size"
            )
    keep = np.flatnonzero(infection_masks.reshape(n, -1).any(axis=1))
    if len(keep) == 0:
        raise DataError(
            f"none of the {n} infection masks has a positive pixel; localisation is measured on COVID-19 "
            "images with ground-truth infection masks"
        )
    rows = []
    for method, method_maps in maps.items():
        if len(method_maps) != n:
            raise DataError(
                f"method {method!r} has {len(method_maps)} maps for {n} masks; pass one map per mask"
            )
        scores = pd.DataFrame(
            [
                localisation_scores(
                    method_maps[i],
                    infection_masks[i],
                    None if lung_masks is None else lung_masks[i],
                    tolerance,
                )
                for i in keep
            ]
        )
        infection, infection_ci = _mean_ci(scores["infection_energy"].to_numpy())
        lung_values = scores["lung_energy"].dropna().to_numpy()
        lung, lung_ci = _mean_ci(lung_values)
        hit = float(scores["pointing_hit"].mean())
        rows.append(
            {
                "method": method,
                "images": len(keep),
                "empty_maps": int(scores["empty"].sum()),
                "infection_energy": infection,
                "infection_energy_ci": infection_ci,
                "lung_energy": lung,
                "lung_energy_ci": lung_ci,
                "lung_images": len(lung_values),
                "pointing_hit": hit,
                "pointing_hit_ci": float(confidence_interval(hit, len(keep))),
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def format_localisation(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`localisation_table` for reading: percentages as ``"mean ± half-width"``, one column per score.

    Example:
        >>> row = dict.fromkeys(COLUMNS, 0) | {"method": "U-Net", "infection_energy": 0.5}
        >>> shown = format_localisation(pd.DataFrame([row | {"infection_energy_ci": 0.1}]))
        >>> shown["Infection energy (%)"].item()
        '50.0 ± 10.0'
    """

    def pct(score: str) -> list[str]:
        pairs = zip(table[score], table[f"{score}_ci"], strict=True)
        return ["–" if m != m else f"{100 * m:.1f} ± {100 * c:.1f}" for m, c in pairs]

    return pd.DataFrame(
        {
            "Method": table["method"],
            "Images": table["images"],
            "Infection energy (%)": pct("infection_energy"),
            "Lung energy (%)": pct("lung_energy"),
            "Pointing game (%)": pct("pointing_hit"),
            "Empty maps": table["empty_maps"],
        }
    )
