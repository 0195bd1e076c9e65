"""Severity of COVID-19 infection: the infected share of the lungs, overall and per lung zone.

The paper (Sec. I, Sec. IV) notes that infection maps allow "an elegant severity grading"; this module
measures it the way radiological scores do (e.g. the six-zone Brixia-style split): each lung is divided
into upper, middle and lower thirds of its own vertical extent, and each zone reports the share of its
pixels that are infected.

Side convention (radiological): in a standard PA/AP radiograph the patient faces the viewer, so the
patient's **right** lung is on the **image's left** (small column indices) and the patient's left lung on
the image's right. Every ``right``/``left`` name here is the patient's side.

Separating the lungs: the lung mask's connected components are found; when two large fields are present,
the midline lies between them; when the fields touch (one component), the midline is the narrowest
column of the lung profile in the central part of the mask; when only one field is present (the other
missing or not segmented), it is one lung, assigned to a side by where it lies in the image, and the
other lung's zones are ``None``.
"""

from __future__ import annotations

import cv2
import numpy as np

from cxrmap.core.errors import DataError

LUNGS = ("right", "left")
"""The patient's lungs (right = image left in a PA/AP view)."""

LEVELS = ("upper", "middle", "lower")
"""Thirds of each lung's vertical extent, top to bottom."""

ZONES = tuple(f"{lung}_{level}" for lung in LUNGS for level in LEVELS)
"""The six lung zones: right_upper, right_middle, right_lower, left_upper, left_middle, left_lower."""

REGIONS = ZONES + LUNGS + LEVELS
"""Every region :func:`severity` reports a share for: the six zones, then the two lungs, then the levels."""

_SECOND_FIELD = 0.1
"""A component counts as a second lung field if it has at least this share of the largest one's area."""

_VALLEY = 0.5
"""Touching fields: the profile's narrowest central column is below this share of both sides' peaks."""


def _as_mask(mask: np.ndarray, name: str) -> np.ndarray:
    """Return ``mask`` as a 2-D bool array; accept bool or integer {0, 1} arrays, else raise DataError."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise DataError(f"the {name} mask must be a 2-D (H, W) array; got shape {mask.shape}.")
    if mask.dtype == np.bool_:
        return mask
    if np.issubdtype(mask.dtype, np.integer) and mask.size and mask.min() >= 0 and mask.max() <= 1:
        return mask.astype(bool)
    raise DataError(
        f"the {name} mask must be boolean (or integers 0/1); got {mask.dtype} with values "
        f"{mask.min() if mask.size else '-'}..{mask.max() if mask.size else '-'}. "
        "Threshold it first, e.g. mask > 127 for a {0, 255} PNG (cxrmap.data.io.read_mask does this)."
    )


def _midline(lungs: np.ndarray, labels: np.ndarray, stats: np.ndarray, centroids: np.ndarray) -> float | None:
    """The column separating the two lung fields, or None when the mask holds a single lung field."""

    areas = stats[:, cv2.CC_STAT_AREA]
    order = np.argsort(-areas[1:]) + 1  # component labels, largest first
    if len(order) >= 2 and areas[order[1]] >= _SECOND_FIELD * areas[order[0]]:
        first, second = sorted(order[:2], key=lambda c: stats[c, cv2.CC_STAT_LEFT])
        first_right = stats[first, cv2.CC_STAT_LEFT] + stats[first, cv2.CC_STAT_WIDTH] - 1
        second_left = stats[second, cv2.CC_STAT_LEFT]
        if first_right < second_left:
            return (first_right + second_left) / 2.0
        return float(centroids[first, 0] + centroids[second, 0]) / 2.0
    main = labels == order[0]
    profile = main.sum(axis=0)
    xs = np.nonzero(profile)[0]
    x0, x1 = int(xs[0]), int(xs[-1])
    lo, hi = x0 + int(0.3 * (x1 - x0)), x0 + int(np.ceil(0.7 * (x1 - x0)))
    band = profile[lo : hi + 1]
    minima = np.flatnonzero(band == band.min())
    valley = lo + int(minima[len(minima) // 2])
    deep = band.min() < _VALLEY * min(profile[: valley + 1].max(), profile[valley:].max())
    centre = lungs.shape[1] / 2.0
    cols = np.nonzero(main)[1]
    straddles = min((cols < centre).mean(), (cols >= centre).mean()) >= 0.25
    return float(valley) if deep or straddles else None


def split_lungs(lungs: np.ndarray) -> dict[str, np.ndarray]:
    """Split a lung mask into the patient's right and left lung fields.

    Args:
        lungs: lung mask, bool (H, W), not empty.

    Returns:
        ``{"right": bool (H, W), "left": bool (H, W)}``; a lung not present is all False. The patient's
        right lung is on the image's left (radiological convention).
    """

    lungs = _as_mask(lungs, "lung")
    if not lungs.any():
        raise DataError("the lung mask is empty; there are no lungs to split.")
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(lungs.astype(np.uint8), connectivity=8)
    midline = _midline(lungs, labels, stats, centroids)
    if midline is None:  # one lung field: its side is where it lies in the image
        on_image_left = np.nonzero(lungs)[1].mean() < lungs.shape[1] / 2.0
        return {"right": lungs & on_image_left, "left": lungs & (not on_image_left)}
    right = np.zeros_like(lungs)
    columns = np.arange(lungs.shape[1])[None, :]
    for component in range(1, count):
        pixels = labels == component
        share_right = (pixels & (columns < midline)).sum() / stats[component, cv2.CC_STAT_AREA]
        if 0.15 < share_right < 0.85:  # fields that touch: cut at the midline
            right |= pixels & (columns < midline)
        elif share_right >= 0.85:
            right |= pixels
    return {"right": right, "left": lungs & ~right}


def lung_zones(lungs: np.ndarray) -> dict[str, np.ndarray | None]:
    """The six lung zones: each lung split into thirds of its own vertical extent.

    Row ``r`` of a lung spanning rows ``top..bottom`` (height ``h``) is in third ``floor(3 (r - top) / h)``
    (0 upper, 1 middle, 2 lower).

    Returns:
        ``{zone: bool (H, W)}`` for the names in :data:`ZONES`; ``None`` for the zones of a missing lung.
    """
    zones: dict[str, np.ndarray | None] = {}
    rows = np.arange(np.shape(lungs)[0])[:, None]
    for side, mask in split_lungs(lungs).items():
        present = np.nonzero(mask.any(axis=1))[0]
        if present.size == 0:
            zones.update({f"{side}_{level}": None for level in LEVELS})
            continue
        top, height = present[0], present[-1] - present[0] + 1
        third = np.minimum(2, (3 * (rows - top)) // height)
        for index, level in enumerate(LEVELS):
            zones[f"{side}_{level}"] = mask & (third == index)
    return zones


def severity(infection: np.ndarray, lungs: np.ndarray) -> dict:
    """Infected share of the image, of the lungs, and of each lung zone.

    Infection outside the lungs counts for the image's share only; every lung-relative share is
    ``|infection AND region| / |region|``.

    Args:
        infection: infection mask, bool (H, W) (e.g. the prediction thresholded at 0.5).
        lungs: lung mask, bool (H, W), same shape.

    Returns:
        A dict with ``image_share`` (infected share of all pixels), ``lung_share`` (of the lung pixels),
        one entry per name in :data:`REGIONS` (six zones, ``right``/``left``, ``upper``/``middle``/``lower``;
        ``None`` where the region is absent), ``lung_pixels``, ``infected_lung_pixels`` and ``note``
        (empty, or why some regions are ``None``). Shares are fractions in [0, 1].

    Raises:
        DataError: shapes differ, masks are not boolean, or the lung mask is empty (no lungs, no share).

    Example:
        >>> lungs = np.zeros((6, 8), bool); lungs[:, 1:3] = lungs[:, 5:7] = True
        >>> infection = np.zeros((6, 8), bool); infection[3:, 1:3] = True  # image left = patient's right
        >>> result = severity(infection, lungs)
        >>> result["lung_share"], result["right_middle"], result["right_lower"], result["left"]
        (0.25, 0.5, 1.0, 0.0)
    """
    infection = _as_mask(infection, "infection")
    lungs = _as_mask(lungs, "lung")
    if infection.shape != lungs.shape:
        raise DataError(
            f"the infection mask has shape {infection.shape} but the lung mask has shape {lungs.shape}; "
            "they must describe the same image."
        )
    if not lungs.any():
        raise DataError(
            "the lung mask is empty, so the infected share of the lungs is undefined; "
            "check the lung segmentation of this image."
        )
    zones = lung_zones(lungs)
    regions: dict[str, np.ndarray | None] = dict(zones)
    for side in LUNGS:
        parts = [zones[f"{side}_{level}"] for level in LEVELS]
        regions[side] = None if parts[0] is None else parts[0] | parts[1] | parts[2]
    for level in LEVELS:
        parts = [zones[f"{side}_{level}"] for side in LUNGS if zones[f"{side}_{level}"] is not None]
        regions[level] = np.logical_or.reduce(parts)
    infected_lungs = infection & lungs
    result: dict = {
        "image_share": float(infection.mean()),
        "lung_share": float(infected_lungs.sum() / lungs.sum()),
    }
    for name in REGIONS:
        region = regions[name]
        present = region is not None and region.any()
        result[name] = float((infection & region).sum() / region.sum()) if present else None
    missing = [side for side in LUNGS if regions[side] is None]
    result["lung_pixels"] = int(lungs.sum())
    result["infected_lung_pixels"] = int(infected_lungs.sum())
    result["note"] = (
        f"one lung field found; the patient's {missing[0]} lung is not in the lung mask" if missing else ""
    )
    return result
