"""Synthetic chest radiographs with exact infection and lung masks: the embedded default data set.

No real data set can be downloaded here, so every test, demo and benchmark runs on phantoms (DESIGN.md
sec. 4). Each phantom is a frontal chest radiograph drawn from a random anatomy (two lung fields, heart
and mediastinum, spine, clavicles, posterior and anterior ribs, diaphragm domes, soft tissue, lung
vessels), exposed through a film curve with per-image exposure, contrast, gamma, noise, rotation and
shift, and labelled with the side markers real films carry.

- COVID-19 cases carry ground-glass opacities: soft-edged, low-contrast (the ribs stay visible), mostly
  bilateral, peripheral and lower-zone, from focal patches to diffuse involvement of both lungs. The
  infection mask is the region the opacity covers, inside the lungs.
- Control group I is normal; control group II carries look-alike findings (:data:`FINDINGS`) with the
  same density range but another shape or place, as the paper's group II does (Sec. II-A).
- A tunable *source shortcut*: COVID-19 and control images can come from two differently-behaving
  sources (collimation border, marker style, exposure), as QaTa-COV19's came from different hospitals.
  A classifier can cheat on it; a network segmenting infection masks cannot.

The output follows the QaTa-COV19 layout the readers accept (paper Sec. II-A), plus a lung mask for every
image under ``Lung-masks/`` and ``phantom-metadata.csv`` (image, finding, source).

Example:
    >>> from cxrmap.data.phantom.shapes import generate
    >>> root = generate("phantom", n_covid=20, n_control=20, size=128, progress=False)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import functools
import io
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from cxrmap.core.errors import DataError
from cxrmap.core.progress import track
from cxrmap.data.readers import find_layouts

FINDINGS = ("consolidation", "effusion", "edema", "nodule", "cardiomegaly", "atelectasis")
"""Control group II findings, in the order they are dealt out."""

SOURCES = ("phantom-A", "phantom-B")
"""Source of COVID-19 images under a full shortcut, and of control images."""

KINDS = ("covid", "normal", *FINDINGS)
MIN_SIZE = 64
_DENSITY_RANGE = (-0.6, 2.2)  # densities the film curve tells apart
_LEVELS = 4096
TEST_SHARE = 0.23
"""Share of group II images in ChestX-ray14's fixed Test folder (the rest go to Train)."""

COVID_DIR = "QaTa-COV19-v1"
GROUP1_DIR = "Control_Group/Control_Group_I"
GROUP2_DIR = "Control_Group/Control_Group_II/CHESTXRAY-14"
LUNG_DIR = "Lung-masks"
METADATA = "phantom-metadata.csv"
_TOP_LEVEL = (COVID_DIR, "Control_Group", LUNG_DIR, METADATA)


@dataclass(frozen=True)
class Case:
    """One image of a phantom data set: what it shows, where it goes, and the seed it is drawn from.

    Attributes:
        kind: ``covid``, ``normal`` or one of :data:`FINDINGS` (the metadata's ``finding``).
        image: image path relative to the data set root (forward slashes).
        mask: infection mask path relative to the root, empty for controls (they have none).
        source: ``phantom-A`` or ``phantom-B``.
        seed: entropy of the image's own random generator: (seed, stream, index), stream 0 for COVID-19
            images and 1 for controls, so image ``i`` is the same whatever the number of images.
    """

    kind: str
    image: str
    mask: str
    source: str
    seed: tuple[int, int, int]

    @property
    def lung_mask(self) -> str:
        """Lung mask path relative to the root: ``Lung-masks/`` + the image's relative path."""
        return f"{LUNG_DIR}/{self.image}"

    def rng(self) -> np.random.Generator:
        """The image's own random generator, from which :func:`render_case` draws everything."""
        return np.random.default_rng([*self.seed, 0])


def _check_options(
    n_covid: int, n_control: int, size: int, seed: int, shortcut: float, group2_share: float
) -> None:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be a non-negative whole number, got {seed!r}")
    for name, value in (("n_covid", n_covid), ("n_control", n_control)):
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise DataError(
                f"{name} must be a non-negative whole number of images, got {value!r}; use 0 for none"
            )
    if n_covid + n_control == 0:
        raise DataError("n_covid and n_control are both 0: ask for at least one image (e.g. --n-covid 20)")
    if not isinstance(size, (int, np.integer)) or size < MIN_SIZE:
        raise DataError(
            f"size must be a whole number of pixels >= {MIN_SIZE}, got {size!r}; try 256 (the paper's is 224)"
        )
    for name, value in (("shortcut", shortcut), ("group2_share", group2_share)):
        if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise DataError(
                f"{name} must be a number in [0, 1], got {value!r}; 0 turns it off, 1 is the most"
            )


def _steps(index: int, share: float, phase: float = 0.0) -> bool:
    """True where ``floor(i * share + phase)`` steps up: an exact share, the same for any longer list."""
    return math.floor((index + 1) * share + phase + 1e-9) > math.floor(index * share + phase + 1e-9)


def _source(seed: int, stream: int, index: int, covid: bool, shortcut: float) -> str:
    """Draw the image's source: tied to the label with probability ``shortcut``, else a fair coin."""
    tie, coin = np.random.default_rng([seed, stream, index, 1]).random(2)
    if tie < shortcut:
        return SOURCES[0] if covid else SOURCES[1]
    return SOURCES[int(coin < 0.5)]


def plan(
    n_covid: int, n_control: int, seed: int = 0, shortcut: float = 0.5, group2_share: float = 0.5
) -> list[Case]:
    """List the images of a phantom data set without drawing them.

    Control ``j`` is in group II where ``floor(j * group2_share)`` steps up, so the group II share is exact
    and a longer list only appends; group II images deal out :data:`FINDINGS` in turn and go to
    ChestX-ray14's ``Test`` folder at the share :data:`TEST_SHARE` (else ``Train``).

    Raises:
        DataError: a negative count or seed, a share or shortcut outside [0, 1].
    """
    _check_options(n_covid, n_control, MIN_SIZE, seed, shortcut, group2_share)
    cases = []
    for i in range(n_covid):
        name = f"covid_{i + 1}.png"
        cases.append(
            Case(
                "covid",
                f"{COVID_DIR}/Images/{name}",
                f"{COVID_DIR}/Ground-truths/mask_{name}",
                _source(seed, 0, i, True, shortcut),
                (seed, 0, i),
            )
        )
    n_group1 = n_group2 = 0
    for j in range(n_control):
        if _steps(j, group2_share):
            kind = FINDINGS[n_group2 % len(FINDINGS)]
            split = "Test" if _steps(n_group2, TEST_SHARE, 0.5) else "Train"
            n_group2 += 1
            image = f"{GROUP2_DIR}/{split}/{kind}_{n_group2}.png"
        else:
            kind = "normal"
            n_group1 += 1
            image = f"{GROUP1_DIR}/normal_{n_group1}.png"
        cases.append(Case(kind, image, "", _source(seed, 1, j, False, shortcut), (seed, 1, j)))
    return cases


# ----------------------------------------------------------------------------------------------------
# Drawing. Coordinates: x in (-1, 1) from the image's left (the patient's right) to its right, y in (0, 1)
# from top to bottom; a pixel spans 2/S in x and 1/S in y, so y distances are doubled where shapes must be
# round. Densities are in soft-tissue units (about 1 for the full trunk); a film curve maps them to grey
# levels. Smooth parts are drawn at half resolution and resized once; only the masks, the film curve and
# the noise work at full resolution.


@functools.lru_cache(maxsize=8)
def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    centres = (np.arange(n, dtype=np.float32) + 0.5) / n
    x, y = np.meshgrid(centres * 2 - 1, centres)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _noise(rng: np.random.Generator, cells: int, n: int) -> np.ndarray:
    """Smooth noise of unit scale with about ``cells`` features across, as an (n, n) float32 array."""
    return cv2.resize(
        rng.standard_normal((cells, cells), dtype=np.float32), (n, n), interpolation=cv2.INTER_CUBIC
    )


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)


@functools.lru_cache(maxsize=4)
def _noise_bank(size: int) -> np.ndarray:
    """Fixed white noise twice the image size; each image takes a window at a random offset."""
    bank = np.random.default_rng(size).standard_normal((2 * size, 2 * size), dtype=np.float32)
    bank.setflags(write=False)
    return bank


def _resize(image: np.ndarray, n: int) -> np.ndarray:
    return cv2.resize(image, (n, n), interpolation=cv2.INTER_LINEAR)


@dataclass(frozen=True)
class _Anatomy:
    """Random shape of one chest; per-side pairs start with the image's left (the patient's right)."""

    cx: float  # midline
    width: tuple[float, float]  # lateral lung border
    apex: tuple[float, float]  # top of each lung
    apex_x: tuple[float, float]  # lateral position of the apex
    apex_curve: float
    dome: tuple[float, float]  # top of each diaphragm dome
    dome_x: float  # lateral position of the domes
    angle: tuple[float, float]  # height of the costophrenic angles
    medial: float  # half-width of the mediastinum between the lungs
    heart: tuple[float, float, float, float, float]  # centre x (from the midline), centre y, half-axes, tilt
    body: float  # half-width of the trunk
    neck: float  # height of the shoulders
    aorta: float  # bulge of the aortic knob

    @classmethod
    def draw(cls, rng: np.random.Generator) -> _Anatomy:
        u = rng.uniform
        width, apex, angle = u(0.64, 0.82), u(0.09, 0.19), u(0.74, 0.9)
        dome = angle - u(0.09, 0.16)
        return cls(
            cx=u(-0.03, 0.03),
            width=(width + u(-0.03, 0.03), width + u(-0.03, 0.03)),
            apex=(apex + u(-0.015, 0.015), apex + u(-0.015, 0.015)),
            apex_x=(u(0.26, 0.36), u(0.26, 0.36)),
            apex_curve=u(1.3, 2.4),
            dome=(dome - u(0.0, 0.04), dome + u(-0.01, 0.02)),
            dome_x=u(0.3, 0.45),
            angle=(angle, angle + u(-0.01, 0.03)),
            medial=u(0.06, 0.1),
            heart=(u(0.1, 0.17), dome + u(-0.06, 0.0), u(0.27, 0.34), u(0.13, 0.17), u(0.1, 0.4)),
            body=u(0.95, 1.25),
            neck=u(0.0, 0.08),
            aorta=u(0.02, 0.06),
        )

    def hilum(self, side: int) -> tuple[float, float]:
        """Centre of the hilum of one side, where the vessels enter the lung."""
        return (
            self.cx + (-1, 1)[side] * (self.medial + 0.1),
            0.5 * (self.apex[side] + self.dome[side]) + 0.03,
        )


def _lung_field(anatomy: _Anatomy, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signed margins (x units, > 0 inside) of the lungs (heart cut out) and of the heart on the grid."""
    a = anatomy
    hx, hy, hw, hh, tilt = a.heart
    cos, sin = math.cos(tilt), math.sin(tilt)
    du, dv = x - (a.cx + hx), y - hy
    heart = (1.0 - np.sqrt(((du * cos + dv * sin) / hw) ** 2 + ((dv * cos - du * sin) / hh) ** 2)) * hw
    lungs = None
    for side, sign in enumerate((-1.0, 1.0)):
        ax = (x - a.cx) * sign
        medial = a.medial + (a.aorta * np.exp(-(((y - 0.3) / 0.05) ** 2)) if sign > 0 else 0.0)
        curve = (a.angle[side] - a.dome[side]) / (a.width[side] - a.dome_x) ** 2
        margin = np.minimum(
            np.minimum(2 * (y - a.apex[side] - a.apex_curve * (ax - a.apex_x[side]) ** 2), ax - medial),
            np.minimum(
                a.width[side] - 0.35 * (y - a.angle[side] + 0.08) ** 2 - ax,
                2 * (a.dome[side] + curve * (ax - a.dome_x) ** 2 * np.where(ax < a.dome_x, 0.25, 1.0) - y),
            ),
        )
        lungs = margin if lungs is None else np.maximum(lungs, margin)
    return np.minimum(lungs, -heart), heart


def _vessels(rng: np.random.Generator, anatomy: _Anatomy, n: int) -> np.ndarray:
    """Branching lung vessels from the hila, curving, tapering and fading outwards (float32, 0..1)."""
    scale = n / 128
    draws = iter(rng.random(1500).tolist())
    segments = []
    for side in (0, 1):
        hilum_x, hilum_y = anatomy.hilum(side)
        stack = []
        for k in range(6):
            spread = -1.5 + 3.0 * k / 5 + (next(draws) - 0.5) * 0.4  # from up-and-out to down-and-out
            stack.append((hilum_x, hilum_y, spread if side else math.pi - spread, 1.7, 170.0, 0))
        while stack and len(segments) < 80 * (side + 1):
            px, py, angle, width, value, depth = stack.pop()
            while value > 40:
                step = 0.05 + 0.04 * next(draws)
                angle += (next(draws) - 0.5) * 0.6
                qx, qy = px + math.cos(angle) * step, py + math.sin(angle) * step * 0.5
                start, end = (int((px + 1) * 0.5 * n), int(py * n)), (int((qx + 1) * 0.5 * n), int(qy * n))
                segments.append((int(value), start, end, max(1, round(width * scale))))
                px, py, width, value = qx, qy, width * 0.9, value * 0.92
                if depth < 3 and next(draws) < 0.45:
                    turn = (0.4 + 0.4 * next(draws)) * (1 if next(draws) < 0.5 else -1)
                    stack.append((px, py, angle + turn, width * 0.8, value * 0.85, depth + 1))
    canvas = np.zeros((n, n), dtype=np.uint8)
    for value, start, end, thickness in sorted(segments):  # brighter (larger) vessels drawn last, on top
        cv2.line(canvas, start, end, value, thickness, cv2.LINE_AA)
    return _blur(canvas.astype(np.float32) * (1 / 255), 0.5 * scale)


def _bones(rng: np.random.Generator, anatomy: _Anatomy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Ribs (posterior and anterior), clavicles and spine as a density map."""
    a = anatomy
    u = rng.uniform
    ax = np.abs(x - a.cx)
    top = min(a.apex) - 0.04
    wall = max(a.width)
    cage = _smoothstep((wall + 0.09 - ax) / 0.06) * _smoothstep((max(a.angle) + 0.06 - y) / 0.06)
    cage *= _smoothstep((ax - 0.04) / 0.08)
    # Posterior ribs: from the spine up and out to a peak, then down along the lateral chest wall.
    spacing = u(0.075, 0.095)
    course = u(0.5, 0.9) * (ax - u(0.3, 0.42)) ** 2 + u(1.2, 2.0) * np.maximum(ax - 0.6 * wall, 0.0) ** 2
    phase = (y - top - course) / spacing
    phase = phase * (1.0 - 0.02 * phase)  # ribs spread apart lower down
    wave = np.cos(phase * (2 * math.pi))
    posterior = (0.8 * _smoothstep((wave - 0.3) / 0.3) + 0.35 * np.exp(-(((wave - 0.4) / 0.15) ** 2))) * cage
    posterior *= phase > -0.3
    # Anterior ribs: fainter, running down and in from the lateral wall.
    phase = (y - top - 0.45 * (wall - ax)) / (spacing * 1.2)
    anterior = (
        _smoothstep((np.cos(phase * (2 * math.pi)) - 0.35) / 0.3) * cage * _smoothstep((ax - 0.15) / 0.1)
    )
    # Clavicles: from the sternal notch up and out to the shoulders.
    centre = top + u(-0.02, 0.03) + 0.04 - 0.17 * ax + 0.12 * ax**2
    clavicle = _smoothstep(1.0 - np.abs(y - centre) / u(0.016, 0.024)) * _smoothstep((ax - 0.06) / 0.05)
    clavicle *= _smoothstep((0.8 - ax) / 0.1)
    # Spine: vertebral bodies with darker disc spaces, pedicles as brighter ovals either side.
    period = u(0.05, 0.065)
    cycle = np.cos((y / period) * (2 * math.pi))
    spine = _smoothstep((0.085 - ax) / 0.03) * (0.85 + 0.15 * cycle)
    spine += 0.15 * np.exp(-(((ax - 0.06) / 0.015) ** 2)) * _smoothstep(cycle * 2)
    return u(0.06, 0.09) * posterior + 0.03 * anterior + 0.16 * clavicle + 0.1 * spine


def _covid_field(
    rng: np.random.Generator, anatomy: _Anatomy, edge: np.ndarray, x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """Extent of ground-glass opacities (> 0.5 inside): patches and bands, peripheral and lower-zone.

    A focal case has one to three patches; a multifocal case more, with bands along the lateral chest wall;
    a diffuse case bands on both sides wide enough to take most of both lungs (paper Fig. 1's range).
    """
    n = x.shape[0]
    regime = rng.random()
    if regime < 0.25:  # focal
        count, sigma, bands = int(rng.integers(1, 4)), (0.06, 0.1), (0.0, 0.0)
    elif regime < 0.65:  # multifocal
        count, sigma, bands = int(rng.integers(2, 5)), (0.06, 0.12), (0.1, 0.2)
    else:  # diffuse
        count, sigma, bands = int(rng.integers(3, 7)), (0.1, 0.18), (0.25, 0.6)
    ax = np.abs(x - anatomy.cx)
    top, bottom = min(anatomy.apex), max(anatomy.angle)
    lower = np.clip((y - top) / (bottom - top), 0.0, 1.0)
    lateral = _smoothstep((ax - anatomy.medial - 0.08) / 0.25)
    right = x > anatomy.cx
    sides = (
        (True, True)
        if regime >= 0.65 or rng.random() < 0.75
        else ((True, False), (False, True))[rng.random() < 0.5]
    )
    chosen = np.where(right, sides[1], sides[0])
    weight = (edge > 0.9) * chosen * (0.15 + lateral) ** 2 * (0.2 + lower) ** 1.5
    flat = weight.ravel().astype(np.float64)
    centres = rng.choice(flat.size, size=count, p=flat / flat.sum())
    field = np.zeros_like(x)
    for centre in centres.tolist():
        sx, sy, turn, height = rng.uniform(
            (sigma[0], sigma[0], 0.0, 0.7), (sigma[1], sigma[1], math.pi, 1.2)
        ).tolist()
        dx, dy = x - x.flat[centre], (y - y.flat[centre]) * 2.0
        du, dv = dx * math.cos(turn) + dy * math.sin(turn), dy * math.cos(turn) - dx * math.sin(turn)
        field += height * np.exp(-0.5 * ((du / sx) ** 2 + (dv / sy) ** 2))
    if bands[1] > 0:  # bands along the lateral wall, thickest low down
        inside = cv2.distanceTransform((edge > 0.5).view(np.uint8), cv2.DIST_L2, 3) * (2.0 / n)
        reach = np.where(right, rng.uniform(*bands), rng.uniform(*bands)) * (0.3 + lower)
        height = np.where(right, sides[1] * rng.uniform(0.6, 1.3), sides[0] * rng.uniform(0.6, 1.3))
        field += height * lateral * np.exp(-inside / reach)
    return field * np.exp(0.5 * _noise(rng, 10, n))


def _adjust_anatomy(rng: np.random.Generator, anatomy: _Anatomy, kind: str) -> _Anatomy:
    """Shape changes a finding brings: a big heart (cardiomegaly, some edema), volume loss (atelectasis)."""
    hx, hy, hw, hh, tilt = anatomy.heart
    if kind == "cardiomegaly" or (kind == "edema" and rng.random() < 0.5):
        grow = rng.uniform(1.3, 1.55) if kind == "cardiomegaly" else rng.uniform(1.1, 1.25)
        return replace(anatomy, heart=(hx + 0.03 * grow, hy, hw * grow, hh * (1 + (grow - 1) * 0.5), tilt))
    if kind == "atelectasis":
        side, loss = int(rng.integers(0, 2)), rng.uniform(0.03, 0.07)
        dome, angle = list(anatomy.dome), list(anatomy.angle)
        dome[side] -= loss
        angle[side] -= loss
        return replace(anatomy, dome=tuple(dome), angle=tuple(angle))
    return anatomy


def _mimic_opacity(
    rng: np.random.Generator,
    kind: str,
    anatomy: _Anatomy,
    edge: np.ndarray,
    vessels: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
) -> np.ndarray | None:
    """Density of a control group II finding: COVID-19's density range, another shape, place or sign.

    ``vessels`` is the density the lung vessels add to the chest: a consolidation takes them out of sight.
    """
    a = anatomy
    n = x.shape[0]
    side = int(rng.integers(0, 2))
    ax = (x - a.cx) * (-1.0, 1.0)[side]
    here = ax > 0
    span = a.dome[side] - a.apex[side]
    texture = 1.0 + 0.12 * _noise(rng, 16, n)
    if kind == "consolidation":  # lobar: homogeneous, one sharp border along a fissure
        # Unlike ground glass, it hides the vessels and shows air bronchograms: lucent branching airways.
        fissure = a.apex[side] + rng.uniform(0.35, 0.55) * span
        lobe = int(rng.integers(0, 3))
        if lobe == 0:  # upper lobe, bounded below by the horizontal fissure
            region = _smoothstep((fissure + 0.04 * ax - y) * 120)
        elif lobe == 1:  # lower lobe, bounded above by the oblique fissure
            region = _smoothstep((y - fissure - 0.1 + 0.15 * ax) * 120) * _smoothstep((ax - 0.15) * 10)
        else:  # middle lobe or lingula: below the fissure, medial, fading laterally
            region = _smoothstep((y - fissure) * 120) * _smoothstep((0.55 - ax) / 0.15)
        region = region * here * edge
        bronchi = rng.uniform(0.1, 0.16) * _vessels(rng, a, n)
        return (rng.uniform(0.16, 0.3) * texture - vessels - bronchi) * region
    if kind == "effusion":  # basal meniscus rising laterally, hiding the costophrenic angle and the dome
        level = a.angle[side] - rng.uniform(0.08, 0.3)
        surface = level + 0.12 * np.clip(1 - np.abs(ax) / a.width[side], 0, 1) ** 2
        region = _smoothstep((y - surface) / 0.05)
        if rng.random() < 0.7:
            region *= here
        return rng.uniform(0.22, 0.4) * region * _blur(edge, n / 128) * texture
    if kind == "edema":  # perihilar bat wings fading to the periphery: the opposite of COVID-19
        wings = np.zeros_like(x)
        for s in (0, 1):
            hilum_x, hilum_y = a.hilum(s)
            wings += np.exp(-(((x - hilum_x) / 0.28) ** 2) - ((y - hilum_y) / 0.16) ** 2)
        return rng.uniform(0.14, 0.26) * wings * edge * texture
    if kind == "nodule":  # round, well-defined nodules, or one mass
        count = int(rng.integers(1, 5))
        density = np.zeros_like(x)
        for point in rng.choice(np.flatnonzero(edge.ravel() > 0.9), size=count).tolist():
            radius = rng.uniform(0.05, 0.1) if count == 1 else rng.uniform(0.018, 0.045)
            distance = np.sqrt((x - x.flat[point]) ** 2 + (2 * (y - y.flat[point])) ** 2)
            density += rng.uniform(0.2, 0.4) * _smoothstep((radius - distance) / (0.3 * radius))
        return density * edge
    if kind == "atelectasis":  # a plate-like band, or a wedge toward the hilum, on the side that lost volume
        if rng.random() < 0.6:
            line = a.dome[side] - rng.uniform(0.05, 0.2) + rng.uniform(-0.08, 0.08) * ax
            start = rng.uniform(0.15, 0.35)
            region = _smoothstep(1 - np.abs(y - line) / rng.uniform(0.012, 0.025))
            region *= _smoothstep((ax - start) / 0.04) * _smoothstep(
                (start + rng.uniform(0.2, 0.35) - ax) / 0.04
            )
            return rng.uniform(0.25, 0.4) * region * here * edge
        hilum_x, hilum_y = a.medial + 0.08, 0.5 * (a.apex[side] + a.dome[side])
        bearing = np.arctan2(y - hilum_y, (ax - hilum_x) * 0.5)
        reach = np.sqrt((ax - hilum_x) ** 2 + (2 * (y - hilum_y)) ** 2)
        region = _smoothstep((rng.uniform(0.2, 0.35) - np.abs(bearing - rng.uniform(0.4, 1.0))) / 0.1)
        region *= _smoothstep((rng.uniform(0.35, 0.6) - reach) / 0.05) * _smoothstep(reach / 0.1)
        return rng.uniform(0.16, 0.3) * region * here * edge * texture
    return None  # normal, or cardiomegaly: the big heart drawn by _adjust_anatomy is the finding


def style(rng: np.random.Generator, image: np.ndarray, source: str) -> None:
    """Burn in what a source does to every film: collimation or film edge, side markers (in place)."""
    size = image.shape[0]
    scale = size / 256
    font, line = cv2.FONT_HERSHEY_SIMPLEX, cv2.LINE_AA
    bright = int(rng.integers(215, 256))
    thick = max(1, round(1.3 * scale))
    if source == SOURCES[0]:  # portable A-P: dark collimation at the sides, "A-P" and "R" top left
        image[:, : max(2, round(size * rng.uniform(0.03, 0.06)))] = int(rng.integers(0, 25))
        image[:, size - max(2, round(size * rng.uniform(0.03, 0.06))) :] = int(rng.integers(0, 25))
        if rng.random() < 0.5:
            image[: max(2, round(size * rng.uniform(0.02, 0.05)))] = int(rng.integers(0, 25))
        cv2.putText(
            image, "A-P", (round(14 * scale), round(20 * scale)), font, 0.5 * scale, bright, thick, line
        )
        cv2.putText(
            image, "R", (round(14 * scale), round(44 * scale)), font, 0.6 * scale, bright, thick, line
        )
    else:  # department P-A: a bright film edge top and bottom, a boxed side marker top right
        image[: max(2, round(size * rng.uniform(0.012, 0.03)))] = int(rng.integers(190, 250))
        image[size - max(2, round(size * rng.uniform(0.012, 0.03))) :] = int(rng.integers(190, 250))
        left, top = round(size - 30 * scale), round(16 * scale)
        corner = (left + round(16 * scale), top + round(20 * scale))
        cv2.rectangle(
            image, (left - round(4 * scale), top - round(3 * scale)), corner, bright, max(1, round(scale))
        )
        letter = "L" if rng.random() < 0.5 else "R"
        cv2.putText(image, letter, (left, top + round(16 * scale)), font, 0.55 * scale, bright, thick, line)


def _chest(
    rng: np.random.Generator, anatomy: _Anatomy, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Density of a chest without findings, at ``n`` x ``n``.

    Returns:
        (density, lung margin (> 0 inside the lungs), soft lung mask ``edge`` in [0, 1], the vessels'
        share of the density, warped x, warped y).
    """
    a = anatomy
    x, y = _grid(n)
    # A smooth random warp bends every shape a little further than its parameters do.
    xw = x + 0.025 * _noise(rng, 4, n)
    yw = y + 0.02 * _noise(rng, 4, n)
    lung_margin, heart_margin = _lung_field(a, xw, yw)
    edge = _smoothstep(lung_margin * (n / 3) + 0.5)
    coarse = cv2.resize(edge, (n // 4, n // 4), interpolation=cv2.INTER_AREA)
    depth = np.clip(_resize(_blur(coarse, n / 48), n) * 1.6, 0.0, 1.0)  # air thickness, most mid-lung

    bx = np.abs(x - a.cx)
    half = 0.22 + (a.body - 0.22) * _smoothstep((y - a.neck) / 0.14)  # trunk half-width: neck, shoulders
    trunk = _smoothstep((half - bx) / 0.06)
    thickness = np.sqrt(np.clip(1 - (bx / (half + 0.25)) ** 2, 0, 1))
    density = trunk * (0.55 + 0.45 * thickness + 0.05 * _noise(rng, 6, n))
    density += 0.12 * _smoothstep((yw - min(a.dome) + 0.02) / 0.12) * trunk  # liver and spleen
    density += 0.04 * _smoothstep(heart_margin * (n / 6) + 0.5)
    trachea = _smoothstep((0.035 - bx) / 0.02) * _smoothstep((a.hilum(0)[1] - 0.08 - y) / 0.05)
    density -= 0.12 * trachea
    if rng.random() < 0.35:  # breast shadows over the lower zones
        low = _smoothstep((y - max(a.dome) + 0.25) / 0.1)
        for sign in (-1.0, 1.0):
            d = np.sqrt(((x - a.cx - sign * 0.5) / 0.38) ** 2 + ((y - max(a.angle)) / 0.22) ** 2)
            density += rng.uniform(0.06, 0.14) * _smoothstep((1 - d) / 0.4) * low
    if rng.random() < 0.4:  # gastric bubble under the left dome
        gx, gy = a.cx + rng.uniform(0.25, 0.45), a.dome[1] + rng.uniform(0.06, 0.1)
        bubble = ((x - gx) / rng.uniform(0.1, 0.16)) ** 2 + ((y - gy) / rng.uniform(0.025, 0.04)) ** 2
        density -= rng.uniform(0.08, 0.18) * _smoothstep(1 - bubble) * (y < gy + 0.01)
    density += _bones(rng, a, xw, yw)
    for side in (0, 1):  # hilar shadows
        hx, hy = a.hilum(side)
        density += 0.06 * np.exp(-(((x - hx) / 0.08) ** 2) - ((y - hy) / 0.06) ** 2)
    density -= 0.5 * edge * (0.5 + 0.5 * depth)  # the air in the lungs
    vessels = edge * rng.uniform(0.25, 0.35) * _vessels(rng, a, n)
    density += vessels + edge * 0.03 * _noise(rng, 40, n)
    heel = rng.uniform(0, 2 * math.pi)  # uneven exposure across the film (anode heel, scatter grid)
    density += rng.uniform(0.0, 0.1) * (x * math.cos(heel) + (2 * y - 1) * math.sin(heel))
    return density, lung_margin, edge, vessels, xw, yw


def _expose(rng: np.random.Generator, density: np.ndarray, source: str) -> np.ndarray:
    """Film: quantum noise, then the characteristic curve (sigmoid, gamma, gain, offset) as a lookup table."""
    size = density.shape[0]
    top, left = rng.integers(0, size, 2).tolist()
    density = density + _noise_bank(size)[top : top + size, left : left + size] * rng.uniform(0.01, 0.025)
    levels = np.linspace(_DENSITY_RANGE[0], _DENSITY_RANGE[1], _LEVELS, dtype=np.float32)
    centre = rng.uniform(0.56, 0.84) + (0.03 if source == SOURCES[0] else 0.0)
    film = 1.0 / (1.0 + np.exp((centre - levels) / rng.uniform(0.24, 0.34)))
    film = film ** rng.uniform(0.75, 1.3) * rng.uniform(0.85, 1.2) + rng.uniform(-0.12, 0.1)
    curve = np.clip(film * 255.0 + 0.5, 0, 255).astype(np.uint8)
    step = (_LEVELS - 1) / (_DENSITY_RANGE[1] - _DENSITY_RANGE[0])
    return curve[np.clip((density - _DENSITY_RANGE[0]) * step, 0, _LEVELS - 1).astype(np.uint16)]


def render_case(
    rng: np.random.Generator, size: int, kind: str, source: str = SOURCES[1]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one phantom radiograph (DESIGN.md sec. 4).

    Args:
        rng: the image's own generator: everything random about the image comes from it.
        size: side of the square image in pixels (>= 64).
        kind: ``covid``, ``normal`` or one of :data:`FINDINGS`.
        source: ``phantom-A`` or ``phantom-B``: collimation, markers and exposure of the film.

    Returns:
        (image uint8 (S, S), infection mask bool (S, S), lung mask bool (S, S)); the infection mask is empty
        unless ``kind`` is ``covid`` and then lies inside the lung mask.

    Raises:
        DataError: an unknown kind or source, or a size below 64.

    Example:
        >>> image, infection, lung = render_case(np.random.default_rng(0), 128, "covid")
        >>> image.shape, bool(infection.any()), bool((infection & ~lung).any())
        ((128, 128), True, False)
    """
    if kind not in KINDS or source not in SOURCES:
        raise DataError(f"unknown phantom kind {kind!r} or source {source!r}; expected {KINDS} and {SOURCES}")
    if size < MIN_SIZE:
        raise DataError(f"phantom size must be >= {MIN_SIZE} pixels, got {size}")
    n = size // 2  # smooth parts are drawn at half resolution
    anatomy = _adjust_anatomy(rng, _Anatomy.draw(rng), kind)
    density, lung_margin, edge, vessels, xw, yw = _chest(rng, anatomy, n)
    infection_field = None
    if kind == "covid":
        x, y = _grid(n)
        field = _covid_field(rng, anatomy, edge, x, y)
        threshold, least, inside = 0.5, int(0.02 * n * n), field[lung_margin > 0]
        if np.count_nonzero(inside > threshold) < least < inside.size:  # never a trace: >= 2 % of the image
            threshold = float(np.partition(inside, inside.size - least)[inside.size - least])
        cover = _smoothstep((field - threshold) / (0.8 * threshold) + 0.5)
        texture = 0.8 + 0.2 * _noise(rng, 24, n) + 0.1 * np.clip(field / threshold - 1, 0, 2)
        density += rng.uniform(0.12, 0.27) * cover * edge * texture
        infection_field = field - threshold
    else:
        mimic = _mimic_opacity(rng, kind, anatomy, edge, vessels, xw, yw)
        if mimic is not None:
            density += mimic

    # Pose: rotation, scale and shift of the whole film; the masks follow from the same moved fields.
    turn = cv2.getRotationMatrix2D((n / 2, n / 2), rng.uniform(-5, 5), rng.uniform(0.95, 1.07))
    turn[:, 2] += rng.uniform(-0.035, 0.035, 2) * n

    def pose(field: np.ndarray) -> np.ndarray:
        moved = cv2.warpAffine(field, turn, (n, n), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        return _resize(moved, size)

    lung = pose(lung_margin) > 0
    infection = lung & (pose(infection_field) > 0) if infection_field is not None else np.zeros_like(lung)
    image = _expose(rng, pose(density), source)
    style(rng, image, source)
    return image, infection, lung


# ----------------------------------------------------------------------------------------------------
# Writing the data set.


def _png(array: np.ndarray) -> bytes:
    """Encode an 8-bit grayscale array as PNG: deterministic bytes (no time stamp), fast RLE coding."""
    options = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    ok, encoded = cv2.imencode(".png", array, [*options, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP])
    if not ok:  # pragma: no cover - cv2 encodes any 2-D uint8 array
        raise DataError(f"could not encode a {array.shape} {array.dtype} array as PNG")
    return encoded.tobytes()


def _metadata(cases: list[Case], extras: list[dict[str, object]]) -> str:
    """The metadata CSV: image, finding, source, then the columns a renderer adds (in its order)."""
    columns = list(dict.fromkeys(name for extra in extras for name in extra))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(("image", "finding", "source", *columns))
    for case, extra in zip(cases, extras, strict=True):
        writer.writerow((case.image, case.kind, case.source, *(extra.get(name, "") for name in columns)))
    return text.getvalue()


def _refuse_real_data(out: Path) -> None:
    """Refuse ``out`` when it holds a data set the readers recognise, other than a phantom written here."""
    phantom = (out / METADATA).is_file()
    previous = [name for name in _TOP_LEVEL if (out / name).exists()]
    if previous and not phantom:
        raise DataError(
            f"{out} already holds {', '.join(previous)} but no {METADATA}: it looks like a real data set; "
            "write the phantom into an empty folder"
        )
    if not out.is_dir():
        return
    layouts, notes = find_layouts(out)
    foreign = [
        f"{name} in {folder}"
        for name, folder in layouts
        if not (phantom and folder != out and folder.relative_to(out).parts[0] in _TOP_LEVEL)
    ]
    if foreign or notes:
        raise DataError(
            f"{out} holds a real data set ({'; '.join(foreign + notes)[:300]}); the phantom is written only "
            "into an empty folder or over an earlier phantom. Give another folder"
        )


def generate(
    out: str | os.PathLike,
    n_covid: int = 300,
    n_control: int = 300,
    size: int = 256,
    seed: int = 0,
    shortcut: float = 0.5,
    group2_share: float = 0.5,
    progress: bool = True,
) -> Path:
    """Write a phantom data set in the QaTa-COV19 layout under ``out`` (DESIGN.md sec. 4).

    Layout::

        out/QaTa-COV19-v1/Images/covid_N.png, out/QaTa-COV19-v1/Ground-truths/mask_covid_N.png
        out/Control_Group/Control_Group_I/normal_N.png
        out/Control_Group/Control_Group_II/CHESTXRAY-14/{Train,Test}/<finding>_N.png
        out/Lung-masks/<the image's relative path>
        out/phantom-metadata.csv  (image, finding, source)

    Images are 8-bit grayscale PNG, masks 8-bit PNG in {0, 255}. Image ``i`` of each group depends only on
    ``(seed, i)``: the same seed gives the same bytes, and more images only add files. The files are written
    into ``out/.phantom-partial`` and moved into place at the end, so an interrupted run leaves no half data
    set; a data set this function wrote before in ``out`` is replaced.

    Args:
        out: folder to write into (created if missing).
        n_covid: number of COVID-19 images (with infection masks).
        n_control: number of control images, groups I and II.
        size: side of the square images in pixels (>= 64).
        seed: seed of the whole data set (non-negative).
        shortcut: in [0, 1]: probability that an image's source follows its label (COVID-19 from
            ``phantom-A``, controls from ``phantom-B``); otherwise the source is a fair coin. 0 = no shortcut.
        group2_share: share of the controls in group II (look-alike findings), the rest in group I (normal).
        progress: show a progress bar.

    Returns:
        ``out`` as a :class:`~pathlib.Path`.

    Raises:
        DataError: bad options, or ``out`` holds a data set in a layout the readers recognise (QaTa-COV19,
            COVID-QU-Ex, control groups) that is not a phantom.
    """
    _check_options(n_covid, n_control, size, seed, shortcut, group2_share)
    cases = plan(n_covid, n_control, seed, shortcut, group2_share)
    return write_dataset(
        out, cases, lambda case: (*render_case(case.rng(), size, case.kind, case.source), {}), progress
    )


Renderer = Callable[[Case], tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, object]]]
"""Draws one case: (image uint8, infection mask bool, lung mask bool, extra metadata columns)."""


def write_dataset(out: str | os.PathLike, cases: list[Case], render: Renderer, progress: bool = True) -> Path:
    """Write ``cases`` drawn by ``render`` in the QaTa-COV19 layout under ``out``, as :func:`generate` does.

    Raises:
        DataError: ``out`` is a file, or holds folders of the QaTa-COV19 layout that are not a phantom.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} is a file; give a folder to write the phantom data set into")
    _refuse_real_data(out)
    staging = out / ".phantom-partial"
    shutil.rmtree(staging, ignore_errors=True)
    for path in (
        {case.image for case in cases} | {case.mask for case in cases} | {case.lung_mask for case in cases}
    ):
        if path:
            (staging / path).parent.mkdir(parents=True, exist_ok=True)
    extras = []
    for case in track(cases, stage="phantom", enabled=progress):
        image, infection, lung, extra = render(case)
        extras.append(extra)
        (staging / case.image).write_bytes(_png(image))
        (staging / case.lung_mask).write_bytes(_png(lung.view(np.uint8) * np.uint8(255)))
        if case.mask:
            (staging / case.mask).write_bytes(_png(infection.view(np.uint8) * np.uint8(255)))
    (staging / METADATA).write_text(_metadata(cases, extras), encoding="utf-8")
    for name in _TOP_LEVEL:  # the metadata last: its presence marks a complete data set
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        if (staging / name).exists():
            os.replace(staging / name, target)
    staging.rmdir()
    return out
