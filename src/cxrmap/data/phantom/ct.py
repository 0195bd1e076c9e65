"""Chest radiographs rendered from a real chest CT, with findings inserted in 3D (DESIGN.md sec. 4).

The 2D phantom (:mod:`cxrmap.data.phantom.shapes`) draws anatomy; this one projects it: one chest CT
(:mod:`cxrmap.data.phantom.ctvolume`) becomes a population by a random pose, habitus, depth of inspiration
and exposure per image, and findings are written into its lung lobes in 3D before the projection:

- COVID-19: ground-glass opacities (a modest HU increase, with or without consolidation), multifocal,
  mostly bilateral, peripheral, posterior and lower-zone, from one small focus to most of both lungs.
- Control group II (:data:`~cxrmap.data.phantom.shapes.FINDINGS`): lobar consolidation, pleural effusion
  (fluid layering at the bases, its level higher laterally: the meniscus), perihilar edema, atelectasis
  (a collapsed band of a lower lobe and the hemidiaphragm pulled up), nodules or a mass, cardiomegaly
  (the heart enlarged by a warp); group I is the CT as it is.

Ground truth is exact: the infection mask is where the rays' path length through the lesion exceeds
:data:`LESION_MM`, the lung mask where the lobes take most of the ray (:data:`LUNG_SHARE`). Sources,
the shortcut, the data set layout and the metadata are those of the 2D phantom (``plan``, ``style`` and
``write_dataset`` of :mod:`cxrmap.data.phantom.shapes`).

Geometry (a P-A film): the source behind the patient, the detector against the chest, source-to-image
distance :data:`SID_MM` (about 180 cm). Rays are exact cone-beam lines through the posed patient; each
meets the CT's coronal slabs (8.4 mm) once and reads them bilinearly, so one image is one batched
2D resampling of the slabs (:func:`project`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from cxrmap.core.errors import DataError
from cxrmap.data.phantom.ctvolume import LOBES, Volume, load_volume
from cxrmap.data.phantom.shapes import (
    KINDS,
    MIN_SIZE,
    SOURCES,
    Case,
    _check_options,
    plan,
    style,
    write_dataset,
)

SID_MM = 1800.0
"""Source-to-image distance of a P-A chest film."""
MU_WATER = 0.02
"""Attenuation of water per mm at the beam's effective energy (about 70 keV)."""
LESION_MM = 5.0
"""Path length through the lesion (mm) above which a pixel is in the infection mask."""
LUNG_MM = 40.0
LUNG_SHARE = 0.7
"""A pixel is in the lung mask where its ray crosses more than :data:`LUNG_MM` of lobes, and more lobe (mm)
than ``LUNG_SHARE`` times its soft tissue (water-equivalent mm): the lung fields as they show on the film,
without the lung behind the heart and below the domes."""
RENDER_MAX = 160
"""Largest side the rays are traced at; larger images are resampled from it (the CT's voxels are 2.1 mm)."""
FOV_MM = 345.0
"""Mean side of the film at the detector."""


@dataclass(frozen=True)
class Film:
    """One rendered radiograph and what it was made of.

    Attributes:
        image: uint8 (S, S), the film with its source's markers.
        infection: bool (S, S), path length through the COVID-19 lesion > :data:`LESION_MM`.
        lung: bool (S, S), the lung fields: path length through the lobes > :data:`LUNG_MM` and
            > :data:`LUNG_SHARE` times the soft tissue's.
        lesion_mm: float32 (S, S), the path length through the lesion (zero for controls).
        finding: float32 (S, S), the line integral the finding adds (attenuation, unitless).
        meta: the pose, habitus, exposure and extent, for the metadata CSV.
    """

    image: np.ndarray
    infection: np.ndarray
    lung: np.ndarray
    lesion_mm: np.ndarray
    finding: np.ndarray
    meta: dict[str, object]


# ----------------------------------------------------------------------------------------------------
# Geometry.


@dataclass(frozen=True)
class Pose:
    """Where the patient stands and how the film is framed (angles in degrees, lengths in mm).

    ``yaw`` turns the patient about the vertical axis (a rotated film), ``tilt`` leans the chest forward
    (lordotic when negative), ``roll`` turns it in the film's plane; ``scale`` stretches the patient
    (x, y, z: habitus), ``inspiration`` stretches the chest below the apices (deep breath > 1); ``fov``
    is the film's side at the detector, ``shift`` moves the patient across the film, ``gap`` is the
    distance from the chest wall to the detector.
    """

    yaw: float = 0.0
    tilt: float = 0.0
    roll: float = 0.0
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    inspiration: float = 1.0
    fov: float = FOV_MM
    shift: tuple[float, float] = (0.0, 0.0)
    gap: float = 25.0
    sid: float = SID_MM

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Pose:
        u = rng.uniform
        return cls(
            yaw=u(-10, 10),
            tilt=u(-6, 6),
            roll=u(-4, 4),
            scale=(u(0.9, 1.12), u(0.85, 1.2), u(0.92, 1.08)),
            inspiration=u(0.9, 1.08),
            fov=FOV_MM * u(0.92, 1.1),
            shift=(u(-15, 15), u(-15, 15)),
            gap=u(10, 50),
            sid=SID_MM + u(-50, 50),
        )

    def rotation(self) -> np.ndarray:
        """Patient to world rotation: yaw about z, then tilt about x, then roll about y."""
        a, b, c = (math.radians(v) for v in (self.yaw, self.tilt, self.roll))
        yaw = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
        tilt = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
        roll = np.array([[math.cos(c), 0, math.sin(c)], [0, 1, 0], [-math.sin(c), 0, math.cos(c)]])
        return roll @ tilt @ yaw


def _centre(volume: Volume) -> np.ndarray:
    """The point of the patient on the central ray: mid-lungs in x and z, the heart's depth."""
    (rx0, _, rz0, rz1), (_, lx1, lz0, lz1) = volume.lungs
    return np.array([(rx0 + lx1) / 2, volume.heart[1], (min(rz0, lz0) + max(rz1, lz1)) / 2])


def _rays(volume: Volume, pose: Pose, n: int, fields: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each detector pixel's ray meets each slab, as grid_sample coordinates, and its length per slab.

    The patient (volume point ``q``) stands at ``R S (q - c) + t`` in the world, ``c`` the central point,
    ``S`` the habitus scale, ``R`` the rotation; the detector is the plane ``y = front + gap`` (world),
    pixel ``(u, v)`` at ``(u, y_d, v)``, the source at ``(0, y_d - sid, 0)``. Both ends are mapped back
    into the volume, and the line between them meets slab ``j`` (``y = y_j``) at
    ``s + (y_j - s_y) / (p_y - s_y) * (p - s)``; the world length of the ray inside a slab is
    ``dy * |P - S| / (p_y - s_y)``. ``fields`` then deform the patient (:func:`_warp`).

    Returns:
        (grid (Y, n, n, 2): (x, z) of the crossing with every slab in grid_sample's (-1, 1), top row
        first; step (n, n): ray length in mm per slab).
    """
    c = _centre(volume)
    inverse = np.diag(1.0 / np.array(pose.scale)) @ pose.rotation().T
    y_d = (volume.extent[3] - c[1]) * pose.scale[1] + pose.gap
    shift = np.array([pose.shift[0], 0.0, pose.shift[1]])
    source = c + inverse @ (np.array([0.0, y_d - pose.sid, 0.0]) - shift)
    side = (np.arange(n, dtype=np.float64) + 0.5) / n * pose.fov - pose.fov / 2
    u, v = np.meshgrid(side, -side)  # columns to the patient's left, rows from the top down
    pixel = c + (np.stack([u, np.full_like(u, y_d), v], axis=-1) - shift) @ inverse.T  # (n, n, 3)
    ray = pixel - source
    dy = (volume.extent[3] - volume.extent[2]) / volume.slabs.shape[0]
    length = np.linalg.norm(np.stack([u, np.full_like(u, pose.sid), v], -1), axis=-1)
    step = torch.from_numpy((dy * length / ray[..., 1]).astype(np.float32))
    # x and z are affine in the slab's depth y_j: x = a + y_j b (likewise z), a and b per pixel.
    bx, bz = ray[..., 0] / ray[..., 1], ray[..., 2] / ray[..., 1]
    ax, az = source[0] - source[1] * bx, source[2] - source[1] * bz
    apex = max(volume.lungs[0][3], volume.lungs[1][3])
    for kind, params in fields:
        if kind == "smooth":  # a 2D field at the heart's depth plus one per 100 mm of depth
            base, slope = (np.asarray(f, dtype=np.float64) for f in params)
            ax, az = (
                ax + base[0] - volume.heart[1] / 100 * slope[0],
                az + base[1] - volume.heart[1] / 100 * slope[1],
            )
            bx, bz = bx + slope[0] / 100, bz + slope[1] / 100
    # Inspiration: the chest read stretched about the apices (z' = apex + (z - apex) / k).
    az, bz = apex + (az - apex) / pose.inspiration, bz / pose.inspiration
    x0, x1, _, _, z0, z1 = volume.extent
    ax, bx = (ax - x0) * (2.0 / (x1 - x0)) - 1.0, bx * (2.0 / (x1 - x0))
    az, bz = (z1 - az) * (2.0 / (z1 - z0)) - 1.0, -bz * (2.0 / (z1 - z0))
    y = torch.from_numpy(volume.centres("y").astype(np.float32)).view(-1, 1, 1, 1)
    a = torch.from_numpy(np.stack([ax, az], -1).astype(np.float32))
    b = torch.from_numpy(np.stack([bx, bz], -1).astype(np.float32))
    grid = torch.addcmul(a, y, b)  # (Y, n, n, 2)
    for kind, params in fields:
        if kind != "smooth":
            _warp(grid, volume, kind, params)
    return grid, step


def _warp(grid: torch.Tensor, volume: Volume, kind: str, params: tuple) -> None:
    """A local deformation of the patient, as where each ray crossing reads the CT (``grid`` in place).

    ``heart``: radial enlargement about the heart by ``grow``; ``lift``: the hemidiaphragm of one side
    (lateral lung border ``side_x``) pulled up by ``height`` mm.
    """
    x0, x1, _, _, z0, z1 = volume.extent
    kx, kz = (x1 - x0) / 2.0, (z1 - z0) / 2.0
    x = (grid[..., 0] + 1.0) * kx + x0
    z = z1 - (grid[..., 1] + 1.0) * kz
    y = torch.from_numpy(volume.centres("y").astype(np.float32)).view(-1, 1, 1)
    if kind == "heart":
        (grow,) = params
        hx, hy, hz = volume.heart
        dx, dz = x - hx, z - hz
        r = torch.sqrt(dx * dx + dz * dz + (y - hy) ** 2) / (1.5 * volume.heart_radius)
        weight = torch.clamp((2.2 - r) / 1.2, 0.0, 1.0)
        shrink = (1.0 - 1.0 / grow) * weight * weight * (3 - 2 * weight)
        grid[..., 0] -= dx * shrink / kx
        grid[..., 1] += dz * shrink / kz
    elif kind == "lift":
        side_x, height = params
        across = torch.clamp(1.0 - (x - side_x).abs() / 110.0, 0.0, 1.0)
        below = torch.clamp(1.0 - (z - volume.lungs[0][2]) / 120.0, 0.0, 1.0)
        grid[..., 1] += height * across * below / kz  # reading lower: the dome shows higher


def project(slabs: torch.Tensor, grid: torch.Tensor, step: torch.Tensor, border: bool = True) -> np.ndarray:
    """Line integrals (channel-wise sums of slab values times ray length): (C, n, n) float32.

    ``slabs`` is (Y, C, Z, X), ``grid`` (Y, n, n, 2); outside the CT the nearest voxel is read
    (``border``: the body continues) or zero (findings).
    """
    sampled = F.grid_sample(
        slabs, grid, mode="bilinear", padding_mode="border" if border else "zeros", align_corners=False
    )
    return (sampled.sum(dim=0) * step).numpy()


# ----------------------------------------------------------------------------------------------------
# Findings, written into the half-resolution lung volume: (added attenuation, lesion share) per voxel.


def _smooth_noise(
    rng: np.random.Generator, cells: tuple[int, int, int], shape: tuple[int, ...]
) -> np.ndarray:
    """Smooth noise of unit scale with about ``cells`` features along (y, z, x), at ``shape``."""
    coarse = torch.from_numpy(rng.standard_normal(cells).astype(np.float32))[None, None]
    return F.interpolate(coarse, size=shape, mode="trilinear", align_corners=False)[0, 0].numpy()


def _coordinates(volume: Volume) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, z, x = (volume.centres(a, fine=True) for a in ("y", "z", "x"))
    return y[:, None, None], z[None, :, None], x[None, None, :]


def _soft(mask: np.ndarray) -> np.ndarray:
    """A 0/1 region with its edges softened over about one voxel."""
    tensor = torch.from_numpy(mask.astype(np.float32))[None, None]
    return F.avg_pool3d(tensor, 3, 1, 1, count_include_pad=False)[0, 0].numpy()


def _covid(rng: np.random.Generator, volume: Volume) -> tuple[np.ndarray, np.ndarray, dict]:
    """Ground-glass opacities, perhaps with consolidation: peripheral, posterior, lower-zone, multifocal."""
    air, depth = volume.fine[:, 0], volume.fine[:, 1]
    lung = volume.lobes > 0
    y, z, x = _coordinates(volume)
    z_low = min(volume.lungs[0][2], volume.lungs[1][2])
    z_high = max(volume.lungs[0][3], volume.lungs[1][3])
    y_low, y_high = volume.extent[2], volume.extent[3]
    foci = int(rng.integers(3, 9))
    field = _smooth_noise(rng, (foci, foci + 2, foci + 2), lung.shape)
    lateral = np.abs(x - volume.carina[0]) / (0.5 * (volume.lungs[1][1] - volume.lungs[0][0]))
    field = field + rng.uniform(0.8, 1.6) * np.exp(-depth / rng.uniform(15, 30)) * np.clip(lateral, 0.2, 1)
    field = field + rng.uniform(0.3, 0.8) * lateral  # peripheral: under the lateral and posterior walls
    field = field * 0.7 + rng.uniform(0.8, 1.4) * (z_high - z) / (z_high - z_low)  # lower zones
    field = field + rng.uniform(0.0, 0.6) * (y_high - y) / (y_high - y_low)  # posterior
    side = np.isin(volume.lobes, (1, 2, 3))  # the patient's right lung
    extent = float(np.exp(rng.uniform(math.log(0.01), math.log(0.45))))  # share of the lungs' volume
    if rng.random() < 0.15:  # one-sided now and then
        field = np.where(side == (rng.random() < 0.5), field, field.min() - 1.0)
        extent /= 2
    inside = field[lung]
    threshold = np.quantile(inside, 1.0 - extent)
    core = _soft(lung & (field > threshold)) * lung
    grade = np.clip((field - threshold) / (np.quantile(inside, 0.999) - threshold + 1e-6), 0, 1)
    ggo = rng.uniform(0.25, 0.45)  # share of the air replaced: about +200 to +380 HU
    consolidation = rng.uniform(0.45, 0.8) if rng.random() < 0.6 else 0.0
    texture = 0.85 + 0.15 * _smooth_noise(rng, (12, 16, 16), lung.shape)
    added = air * core * texture * (ggo + consolidation * np.clip((grade - 0.2) / 0.3, 0, 1))
    return added, core, {"extent": round(extent, 4), "consolidation": round(consolidation, 3)}


def _mimic(rng: np.random.Generator, volume: Volume, kind: str) -> tuple[np.ndarray, list, dict]:
    """Added attenuation and warps of a control group II finding (no infection mask)."""
    air, depth = volume.fine[:, 0], volume.fine[:, 1]
    lobes = volume.lobes
    lung = lobes > 0
    y, z, x = _coordinates(volume)
    texture = 0.85 + 0.15 * _smooth_noise(rng, (10, 14, 14), lung.shape)
    right = int(rng.random() < 0.5)  # the side a one-sided finding takes
    sides = ((1, 2, 3), (4, 5))
    if kind == "consolidation":  # lobar or segmental: part of one lobe, air largely replaced
        lobe = int(rng.integers(1, len(LOBES) + 1))
        field = _smooth_noise(rng, (4, 5, 5), lung.shape)
        region = (lobes == lobe) & (field > np.quantile(field[lobes == lobe], rng.uniform(0.2, 0.6)))
        return air * _soft(region) * texture * rng.uniform(0.4, 0.65), [], {"lobe": LOBES[lobe - 1]}
    if kind == "effusion":  # fluid at the bases, its level higher laterally (the meniscus)
        added = np.zeros_like(air)
        both = rng.random() < 0.4
        for index, labels in enumerate(sides):
            if not both and index != right:
                continue
            x0, x1, z0, _ = volume.lungs[index]
            lateral = (x1 - x if index == 0 else x - x0) / (x1 - x0)  # 0 medial, 1 lateral
            level = z0 + rng.uniform(45, 95) + rng.uniform(20, 50) * np.clip(lateral, 0, 1) ** 2
            added += air * _soft(np.isin(lobes, labels) & (z < level)) * rng.uniform(0.55, 0.8)
        return added, [], {"sides": "both" if both else ("right", "left")[right]}
    if kind == "edema":  # bilateral perihilar haze fading to the periphery
        cx, cy, cz = volume.carina
        reach = rng.uniform(45, 75)
        distance = np.sqrt((x - cx) ** 2 + (y - cy) ** 2 + ((z - cz + 25) / 1.3) ** 2)
        haze = np.exp(-((distance / reach) ** 2)) * np.clip(1.0 - np.abs(x - cx) / 130.0, 0, 1)
        return air * haze * texture * rng.uniform(0.2, 0.4), [], {"reach": round(reach, 1)}
    if kind == "nodule":  # round, well-defined nodules, or one mass
        count = int(rng.integers(1, 5))
        added = np.zeros_like(air)
        for _ in range(count):
            radius = rng.uniform(15, 28) if count == 1 else rng.uniform(5, 12)
            candidates = np.argwhere(depth > radius)
            if not len(candidates):
                continue
            j, k, i = candidates[rng.integers(len(candidates))]
            distance = np.sqrt((x - x[0, 0, i]) ** 2 + (y - y[j, 0, 0]) ** 2 + (z - z[0, k, 0]) ** 2)
            added += np.clip((radius - distance) / 3.0 + 0.5, 0, 1) * air * rng.uniform(0.6, 0.9)
        return np.minimum(added, air), [], {"count": count}
    if kind == "atelectasis":  # a collapsed band of a lower lobe, the hemidiaphragm pulled up
        lobe = (3, 5)[right]
        x0, x1, z0, _ = volume.lungs[right]
        line = z0 + rng.uniform(25, 60) + rng.uniform(-0.15, 0.15) * (x - (x0 + x1) / 2)
        band = (lobes == lobe) & (np.abs(z - line) < rng.uniform(6, 14))
        lift = ("lift", ((x0, x1)[right], rng.uniform(10, 25)))
        return air * _soft(band) * rng.uniform(0.6, 0.85), [lift], {"side": ("right", "left")[right]}
    if kind == "cardiomegaly":
        grow = rng.uniform(1.25, 1.5)
        return np.zeros_like(air), [("heart", (grow,))], {"heart_scale": round(grow, 3)}
    return np.zeros_like(air), [], {}


# ----------------------------------------------------------------------------------------------------
# Exposure.


def _detector(rng: np.random.Generator, line: np.ndarray, body: np.ndarray, source: str) -> np.ndarray:
    """Film from line integrals (uint8): scatter, quantum noise, log transform, window, the unsharp masking
    digital radiographs are shown with, gamma and contrast curve, blur of the detector."""
    size = line.shape[0]
    primary = np.exp(-line)
    scatter = rng.uniform(0.1, 0.5) * cv2.GaussianBlur(primary, (0, 0), size / 12) * body
    photons = rng.uniform(5e4, 2e5)
    counts = primary + scatter
    counts = counts + rng.standard_normal(counts.shape).astype(np.float32) * np.sqrt(counts / photons)
    density = -np.log(np.maximum(counts, 1e-5))
    inside = density[body > 0.5] if (body > 0.5).any() else density
    low, high = np.quantile(inside, (rng.uniform(0.005, 0.03), rng.uniform(0.985, 0.999)))
    low -= rng.uniform(0.25, 0.55) + (0.05 if source == SOURCES[0] else 0.0)
    film = np.clip((density - low) / (high - low), 0.0, 1.0).astype(np.float32)
    film += rng.uniform(0.3, 0.8) * (film - cv2.GaussianBlur(film, (0, 0), rng.uniform(size / 50, size / 20)))
    film = np.clip(film, 0.0, 1.0) ** rng.uniform(0.55, 0.95)
    film = 1.0 / (1.0 + np.exp(-(film - rng.uniform(0.4, 0.6)) * rng.uniform(3.0, 5.0)))
    film = (film - film.min()) / max(film.max() - film.min(), 1e-6)
    film = cv2.GaussianBlur(film.astype(np.float32), (0, 0), rng.uniform(0.6, 1.3) * size / 256)
    return np.clip(film * rng.uniform(225, 255) + 0.5, 0, 255).astype(np.uint8)


def _resize(image: np.ndarray, size: int, smooth: bool = False) -> np.ndarray:
    """To ``size`` x ``size``: cubic for detail, linear for ``smooth`` maps (no overshoot, same support)."""
    if image.shape[-1] == size:
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR if smooth else cv2.INTER_CUBIC)


def draw(
    rng: np.random.Generator, size: int, kind: str, source: str = SOURCES[1], lesion: bool = True
) -> Film:
    """Render one radiograph from the CT (DESIGN.md sec. 4).

    Args:
        rng: the image's own generator: everything random about the image comes from it.
        size: side of the square image in pixels (>= 64).
        kind: ``covid``, ``normal`` or one of :data:`~cxrmap.data.phantom.shapes.FINDINGS`.
        source: ``phantom-A`` or ``phantom-B``: markers, collimation and exposure of the film.
        lesion: False renders the same film (same draws) with the finding left out.

    Raises:
        DataError: an unknown kind or source, a size below 64, or the CT files missing.
    """
    if kind not in KINDS or source not in SOURCES:
        raise DataError(f"unknown phantom kind {kind!r} or source {source!r}; expected {KINDS} and {SOURCES}")
    if size < MIN_SIZE:
        raise DataError(f"phantom size must be >= {MIN_SIZE} pixels, got {size}")
    volume = load_volume()
    n = min(size, RENDER_MAX)
    pose = Pose.draw(rng)
    # Body habitus: a smooth 3D displacement (mm: at the heart's depth, and per 100 mm of depth).
    coarse = rng.standard_normal((2, 2, 4, 4)) * rng.uniform(2.0, 6.0)
    if kind == "covid":
        added, occupancy, meta = _covid(rng, volume)
        warps = []
    else:
        added, warps, meta = _mimic(rng, volume, kind)
        occupancy = None

    def smooth(m: int) -> tuple:
        return (
            "smooth",
            tuple(
                np.stack([cv2.resize(c, (m, m), interpolation=cv2.INTER_CUBIC) for c in f]) for f in coarse
            ),
        )

    grid, step = _rays(volume, pose, n, [smooth(n), *warps])
    soft, bone, lung = project(torch.from_numpy(volume.slabs), grid, step)
    half = max(n // 2, 32)  # findings are smooth: traced at half resolution
    grid_half, step_half = _rays(volume, pose, half, [smooth(half), *warps])
    channels = [added] + ([occupancy] if occupancy is not None else [])
    fine_in = torch.from_numpy(np.stack(channels, axis=1).astype(np.float32))
    findings = project(fine_in, grid_half, step_half, border=False)
    finding = (
        _resize(findings[0], size, smooth=True) * MU_WATER if lesion else np.zeros((size, size), np.float32)
    )
    lesion_mm = (
        _resize(findings[1], size, smooth=True)
        if occupancy is not None
        else np.zeros((size, size), np.float32)
    )

    ratio = rng.uniform(2.2, 3.6)  # bone to soft tissue
    soft = _resize(soft, size)
    line = MU_WATER * (soft + ratio * _resize(bone, size))
    body = np.clip(soft / 60.0, 0.0, 1.0)
    fat = rng.uniform(0.0, 40.0) * (
        0.5 + 0.5 * cv2.resize(rng.random((3, 3)).astype(np.float32), (size, size))
    )
    line = line + MU_WATER * fat * body + finding
    image = _detector(rng, line.astype(np.float32), body, source)
    style(rng, image, source)
    meta = {
        "yaw": round(pose.yaw, 2),
        "tilt": round(pose.tilt, 2),
        "roll": round(pose.roll, 2),
        "fov_mm": round(pose.fov, 1),
        "inspiration": round(pose.inspiration, 3),
        "bone_ratio": round(ratio, 3),
        **meta,
    }
    infection = lesion_mm > LESION_MM  # the lesion lies in the lobes; its soft edge may stray a voxel out
    lung = _resize(lung, size, smooth=True)
    lung_mask = (lung > LUNG_MM) & (lung > LUNG_SHARE * soft)
    return Film(image, infection & lung_mask, lung_mask, lesion_mm, finding, meta)


def render_case(
    rng: np.random.Generator, size: int, kind: str, source: str = SOURCES[1]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, infection mask, lung mask) of :func:`draw`, as the 2D phantom's ``render_case``."""
    film = draw(rng, size, kind, source)
    return film.image, film.infection, film.lung


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
    """Write a CT phantom data set in the QaTa-COV19 layout, as :func:`~cxrmap.data.phantom.shapes.generate`.

    The metadata adds each film's pose, bone ratio and finding parameters (``extent``: the share of the
    lungs' volume the COVID-19 lesion takes). Images are rendered with one torch thread (more are slower
    for operations this small), restored afterwards.

    Raises:
        DataError: bad options, ``out`` holds a real data set, or the CT files are missing.
    """
    _check_options(n_covid, n_control, size, seed, shortcut, group2_share)
    load_volume()  # the one-time setup, or the missing-files error, before any file is written
    cases = plan(n_covid, n_control, seed, shortcut, group2_share)

    def render(case: Case) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, object]]:
        film = draw(case.rng(), size, case.kind, case.source)
        return film.image, film.infection, film.lung, film.meta

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # each image's operations are too small to gain from threads; they lose
    try:
        return write_dataset(out, cases, render, progress)
    finally:
        torch.set_num_threads(threads)
