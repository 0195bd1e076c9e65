"""The image cache: every radiograph and mask decoded and resized once, then memory-mapped by every run.

Decoding a PNG and resizing it costs milliseconds; training reads each image once per epoch, so the
arrays are built once (paper Sec. III-B: inputs resized to 224 x 224) and kept as ``uint8`` ``.npy``
files opened with ``np.load(mmap_mode="r")``.

Layout of one cache (a folder under ``cache_dir``, named after its size and key)::

    images.npy    (N, S, S) uint8   radiographs, resized with cv2.INTER_AREA
    masks.npy     (N, S, S) uint8   infection masks {0, 1}
    lungs.npy     (N, S, S) uint8   lung masks {0, 1} (zeros where has_lung is False)
    has_mask.npy  (N,) bool         the infection mask is known
    has_lung.npy  (N,) bool         a lung mask exists
    rows.npy      (N,) int64        position of each kept row in the manifest the cache was built from
    skipped.json  [[path, reason], ...]   rows that could not be read
    meta.json     key, size, format version, counts (written last: its presence marks a complete cache)

Masks are resized with ``cv2.INTER_AREA`` (the share of each target pixel the mask covers) and kept where
that share is at least one half: this keeps a mask's area through downsampling, where nearest-neighbour
sampling would drop or keep thin structures by chance.

The key hashes, in order, each row's ``image_path``, ``mask_path``, ``lung_mask_path`` and ``label`` (what
the arrays depend on), each file's size and ``mtime_ns``, the size and :data:`FORMAT_VERSION`. Columns the
arrays do not depend on (``fold``, ``split``, ``source``...) are not in the key, so re-assigning folds
reuses the cache; ``ImageCache.manifest`` is always the caller's manifest less the skipped rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from cxrmap.core.errors import DataError
from cxrmap.core.fileio import write_text_atomic
from cxrmap.core.progress import track
from cxrmap.data import io
from cxrmap.data.manifest import normalise_manifest

FORMAT_VERSION = 1
MAPPED = ("images", "masks", "lungs")
ARRAYS = (*MAPPED, "has_mask", "has_lung", "rows")
KEY_COLUMNS = ("image_path", "mask_path", "lung_mask_path", "label")


@dataclass
class ImageCache:
    """Resized images and masks of a manifest, memory-mapped read-only.

    Attributes:
        path: the cache folder.
        size: side ``S`` of every array.
        images: ``(N, S, S)`` uint8 radiographs.
        masks: ``(N, S, S)`` uint8 infection masks in ``{0, 1}``.
        lungs: ``(N, S, S)`` uint8 lung masks in ``{0, 1}``.
        has_mask: ``(N,)`` bool, the infection mask is known (controls without a mask: True, empty mask).
        has_lung: ``(N,)`` bool, a lung mask was given.
        manifest: the manifest rows aligned with the arrays (unreadable rows removed, index 0..N-1).
        skipped: ``(path, reason)`` of each row left out.
        key: the hash the cache is stored under.
    """

    path: Path
    size: int
    images: np.ndarray
    masks: np.ndarray
    lungs: np.ndarray
    has_mask: np.ndarray
    has_lung: np.ndarray
    manifest: pd.DataFrame
    skipped: list[tuple[str, str]] = field(default_factory=list)
    key: str = ""

    def __len__(self) -> int:
        return len(self.images)

    def __getstate__(self) -> dict:
        """Pickle the folder, not the pixels (DataLoader workers started by spawn reopen the files)."""
        return {**self.__dict__, **{name: None for name in MAPPED}}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        for name in MAPPED:
            setattr(self, name, np.load(self.path / f"{name}.npy", mmap_mode="r"))


def default_cache_dir() -> Path:
    """``$CXRMAP_CACHE`` if set, else ``~/.cache/cxrmap``."""
    return Path(os.environ.get("CXRMAP_CACHE") or Path.home() / ".cache" / "cxrmap")


def cache_key(manifest: pd.DataFrame, size: int) -> str:
    """Hash of what the cached arrays depend on: rows, the files' sizes and mtimes, ``size``, format."""
    digest = hashlib.sha256(f"cxrmap-cache v{FORMAT_VERSION} size={size}\x1e".encode())
    for row in manifest[list(KEY_COLUMNS)].itertuples(index=False):
        parts = list(row)
        for path in row[:3]:
            if not path:
                parts.append("-")
                continue
            try:
                stat = os.stat(path)
            except OSError:
                parts.append("missing")
            else:
                parts.append(f"{stat.st_size}:{stat.st_mtime_ns}")
        digest.update("\x1f".join(parts).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()[:24]


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a uint8 radiograph to ``size x size`` with area averaging (cv2.INTER_AREA)."""

    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize a boolean mask to ``size x size``: area share (cv2.INTER_AREA) >= 0.5, as uint8 ``{0, 1}``."""

    share = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return (share >= 0.5).astype(np.uint8)


def load_row(
    image_path: str, mask_path: str, lung_mask_path: str, label: str, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool, bool]:
    """Decode and resize one manifest row.

    Returns:
        ``(image, mask, lung, has_mask, has_lung)``: ``(S, S)`` uint8 arrays (masks in ``{0, 1}``) and flags.
        A control row without a mask gets an empty mask with ``has_mask`` True (a control image has no
        infection by definition); a COVID-19 row without one gets zeros with ``has_mask`` False.

    Raises:
        DataError: a file cannot be read, or a mask's shape differs from its image's.
    """
    image = io.read_image(image_path)
    resized = resize_image(image, size)
    empty = np.zeros((size, size), np.uint8)
    masks = []
    for kind, path in (("infection mask", mask_path), ("lung mask", lung_mask_path)):
        if not path:
            masks.append(None)
            continue
        mask = io.read_mask(path)
        if mask.shape != image.shape:
            raise DataError(
                f"{kind} {path} is {mask.shape[1]}x{mask.shape[0]} pixels but its image {image_path} is "
                f"{image.shape[1]}x{image.shape[0]}; a mask must have its image's size"
            )
        masks.append(resize_mask(mask, size))
    mask, lung = masks
    has_mask = mask is not None or label == "control"
    has_lung = lung is not None
    return resized, empty if mask is None else mask, lung if has_lung else empty, has_mask, has_lung


def _load_row_safe(args: tuple[str, str, str, str, int]):
    """:func:`load_row`, with the reason returned as a string where the row cannot be read."""
    try:
        return load_row(*args)
    except DataError as error:
        return str(error)


def _decoded(jobs: list[tuple], workers: int) -> Iterator:
    """Yield :func:`_load_row_safe` of each job in order, in ``workers`` processes when above 1."""
    if workers <= 1:
        yield from map(_load_row_safe, jobs)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(_load_row_safe, jobs, chunksize=16)


def _build(manifest: pd.DataFrame, size: int, folder: Path, progress: bool, workers: int) -> None:
    """Decode every row of ``manifest`` into the arrays of a cache written in ``folder``."""

    n = len(manifest)
    open_memmap = np.lib.format.open_memmap
    arrays = {
        name: open_memmap(folder / f"{name}.npy", mode="w+", dtype=np.uint8, shape=(n, size, size))
        for name in MAPPED
    }
    has_mask = np.zeros(n, bool)
    has_lung = np.zeros(n, bool)
    rows: list[int] = []
    skipped: list[tuple[str, str]] = []
    jobs = [(*row, size) for row in manifest[list(KEY_COLUMNS)].itertuples(index=False)]
    bar = track(_decoded(jobs, workers), stage="cache", total=n, enabled=progress, at=f"{size}px")
    for position, result in enumerate(bar):
        if isinstance(result, str):
            skipped.append((jobs[position][0], result))
            continue
        j = len(rows)
        arrays["images"][j], arrays["masks"][j], arrays["lungs"][j], has_mask[j], has_lung[j] = result
        rows.append(position)
    kept = len(rows)
    for name, array in arrays.items():
        array.flush()
        if kept < n:  # rows were skipped: keep only the filled part
            trimmed = open_memmap(
                folder / f"{name}.tmp.npy", mode="w+", dtype=np.uint8, shape=(kept, size, size)
            )
            for start in range(0, kept, 1024):
                stop = min(start + 1024, kept)
                trimmed[start:stop] = array[start:stop]
            trimmed.flush()
            del trimmed, array
            os.replace(folder / f"{name}.tmp.npy", folder / f"{name}.npy")
    arrays.clear()
    np.save(folder / "has_mask.npy", has_mask[:kept])
    np.save(folder / "has_lung.npy", has_lung[:kept])
    np.save(folder / "rows.npy", np.asarray(rows, np.int64))
    (folder / "skipped.json").write_text(json.dumps(skipped, indent=1))
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    meta = {"format_version": FORMAT_VERSION, "size": size, "rows": n, "kept": kept, "skipped": len(skipped)}
    write_text_atomic(folder / "meta.json", json.dumps(meta, indent=1))


def _open(folder: Path, manifest: pd.DataFrame, size: int, key: str) -> ImageCache:
    """Open a complete cache folder; raise ``ValueError``/``OSError`` where it is incomplete or corrupt."""
    meta = json.loads((folder / "meta.json").read_text())
    if meta.get("format_version") != FORMAT_VERSION or meta.get("size") != size:
        raise ValueError(f"cache {folder} has format/size {meta}; expected v{FORMAT_VERSION} at {size}px")
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in ARRAYS}
    rows = np.asarray(arrays.pop("rows"))
    if any(len(array) != len(rows) for array in arrays.values()) or len(manifest) != meta["rows"]:
        raise ValueError(f"cache {folder} is inconsistent")
    skipped = [tuple(item) for item in json.loads((folder / "skipped.json").read_text())]
    return ImageCache(
        path=folder,
        size=size,
        images=arrays["images"],
        masks=arrays["masks"],
        lungs=arrays["lungs"],
        has_mask=np.asarray(arrays["has_mask"]),
        has_lung=np.asarray(arrays["has_lung"]),
        manifest=manifest.iloc[rows].reset_index(drop=True),
        skipped=skipped,
        key=key,
    )


def build_cache(
    manifest: pd.DataFrame,
    size: int,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    workers: int | None = None,
) -> ImageCache:
    """Resize every image and mask of ``manifest`` to ``size x size`` once; reuse the result afterwards.

    The cache is found again by its key (rows, files' sizes and mtimes, ``size``; see the module notes), so
    a later call with the same inputs decodes nothing, and any change to a file or a row builds a new one.
    A cache is built in a temporary folder and moved into place in one ``os.replace``: a crash mid-build
    leaves every earlier cache as it was.

    Args:
        manifest: the manifest (see :mod:`cxrmap.data.manifest`).
        size: side of the square arrays (paper Sec. III-B: 224).
        cache_dir: parent folder of the caches; default ``$CXRMAP_CACHE`` or ``~/.cache/cxrmap``.
        progress: show a progress bar while building.
        workers: processes decoding in parallel; ``None`` or 1 decodes in this process.

    Returns:
        The :class:`ImageCache`. Rows whose image or mask cannot be read, or whose mask's shape differs
        from its image's, are left out of it and listed in ``.skipped`` with the reason.

    Raises:
        DataError: ``size`` is not a positive integer.

    Example:
        >>> cache = build_cache(read_manifest("manifest.csv"), 224)  # doctest: +SKIP
        >>> cache.images.shape, cache.skipped  # doctest: +SKIP
        ((15495, 224, 224), [])
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise DataError(f"cache size must be a positive integer number of pixels, got {size!r} (e.g. 224)")
    size = int(size)
    manifest = normalise_manifest(manifest)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(manifest, size)
    folder = root / f"{size}px-{key}"
    if (folder / "meta.json").is_file():
        with contextlib.suppress(ValueError, OSError, KeyError):
            return _open(folder, manifest, size, key)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".building", dir=root))
    try:
        _build(manifest, size, tmp, progress, workers or 1)
        if folder.exists():  # an incomplete or corrupt cache under this key: move it aside, then drop it
            stale = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".stale", dir=root))
            os.replace(folder, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished the same cache first: use theirs
            if not (folder / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _open(folder, manifest, size, key)
