"""Shared by every layout: candidate rows, folder listing, mask pairing and loose folder names."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cxrmap.core.errors import DataError
from cxrmap.data.io import IMAGE_SUFFIXES, is_dicom

UNSUPPORTED_IMAGE_SUFFIXES = (".bmp", ".tif", ".tiff", ".gif", ".webp", ".jp2", ".j2k")
_NOT_IMAGE_SUFFIXES = (".csv", ".txt", ".md", ".json", ".xlsx", ".xls", ".pdf", ".zip", ".py", ".html")


@dataclass
class IndexResult:
    """What indexing produced.

    Attributes:
        manifest: one row per usable image (see :mod:`cxrmap.data.manifest`), sorted by image path.
        skipped: ``(path, reason)`` for every file left out.
        warnings: problems that did not cost an image (orphan masks, binarised masks, duplicates...).
        layouts: ``(layout name, folder)`` for every layout found.
    """

    manifest: pd.DataFrame
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    layouts: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class FileList:
    """Readable images among files/folders given for prediction, and the ones left out with a reason."""

    images: list[Path]
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Entry:
    """A candidate manifest row before its files are checked."""

    image: Path
    label: str
    group: str
    source: str
    dataset: str
    split: str = ""
    finding: str = ""
    mask: Path | None = None
    lung: Path | None = None


@dataclass
class Collected:
    """What reading one layout found: candidate rows, files left out, warnings, the layouts seen."""

    entries: list[Entry] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    layouts: list[tuple[str, str]] = field(default_factory=list)

    def extend(self, other: Collected) -> None:
        self.entries += other.entries
        self.skipped += other.skipped
        self.warnings += other.warnings
        self.layouts += other.layouts


def loose_key(name: str) -> str:
    """Folder names compared loosely: case, spaces and hyphens do not matter."""
    return name.lower().replace(" ", "_").replace("-", "_")


def subfolders(folder: Path) -> dict[str, Path]:
    """Visible sub-folders by loose name, in sorted order."""
    try:
        with os.scandir(folder) as entries:
            found = [Path(e.path) for e in entries if not e.name.startswith(".") and e.is_dir()]
    except OSError:
        return {}
    return {loose_key(p.name): p for p in sorted(found)}


MASK_FOLDER_NAMES = frozenset({"ground-truths", "infection masks", "lung masks", "lung-masks", "masks"})
"""Folders of masks, not radiographs: a recursive listing of a dataset root does not descend into them."""


def list_images(folder: Path, recursive: bool = False) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files in ``folder`` (sorted), and the image-like files that cannot be read, with a reason.

    PNG/JPEG/DICOM are recognised by their ending, DICOM also by content (files without an ending or
    named by UID); other documents are ignored silently.
    """
    files: list[Path] = []
    if recursive:
        for top, dirs, names in os.walk(folder):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d.lower() not in MASK_FOLDER_NAMES]
            files += [Path(top) / n for n in names]
    else:
        try:
            with os.scandir(folder) as entries:
                files = [Path(e.path) for e in entries if e.is_file()]
        except OSError as error:
            raise DataError(f"cannot list {folder}: {error}; check that it exists and is readable") from None
    images, skipped = [], []
    for path in sorted(files, key=str):
        suffix = path.suffix.lower()
        if path.name.startswith(".") or suffix in _NOT_IMAGE_SUFFIXES:
            continue
        if suffix in IMAGE_SUFFIXES:
            images.append(path)
        elif suffix in UNSUPPORTED_IMAGE_SUFFIXES:
            skipped.append((str(path), f"{suffix} images are not read; convert it to PNG"))
        elif is_dicom(path):
            images.append(path)
    return images, skipped


def pair_masks(
    images: list[Path], mask_dir: Path | None, prefixes: tuple[str, ...], what: str
) -> tuple[dict[Path, Path], list[tuple[str, str]], list[str]]:
    """Match each image with ``<prefix><name>`` (or ``<prefix><stem>.png``) in ``mask_dir``.

    Returns:
        (image -> mask, skipped files in the mask folder, warnings for masks that match no image).
    """
    if mask_dir is None or not mask_dir.is_dir():
        return {}, [], []
    masks, skipped = list_images(mask_dir)
    by_name = {m.name: m for m in masks}
    pairs: dict[Path, Path] = {}
    for image in images:
        for prefix in prefixes:
            candidate = by_name.get(prefix + image.name) or by_name.get(f"{prefix}{image.stem}.png")
            if candidate is not None:
                pairs[image] = candidate
                break
    used = set(pairs.values())
    image_dir = images[0].parent if images else mask_dir.parent
    warnings = [
        f"{what} without image: {mask} matches no image in {image_dir}; add the image or remove the mask"
        for mask in masks
        if mask not in used
    ]
    return pairs, skipped, warnings


def missing_mask(image: Path, mask_dir: Path | None, prefix: str) -> tuple[str, str]:
    where = f"{mask_dir}/{prefix}{image.name}" if mask_dir else "an infection-mask folder"
    return (
        str(image),
        f"COVID-19 image without an infection mask (expected {where}); add the mask or remove the image",
    )


def absolute(path: str | os.PathLike) -> Path:
    """Absolute, user-expanded, symlinks kept (so that folders above it can be searched)."""
    return Path(os.path.abspath(Path(path).expanduser()))


def child_folder(folder: Path, name: str) -> Path | None:
    """The sub-folder of ``folder`` called ``name`` (case and spacing ignored), or None."""
    return subfolders(folder).get(loose_key(name))


def control_entries(
    folder: Path, group: str, source: str, dataset: str, finding: str, recursive: bool = True
) -> Collected:
    images, skipped = list_images(folder, recursive=recursive)
    entries = [Entry(image, "control", group, source, dataset, "", finding) for image in images]
    return Collected(entries=entries, skipped=skipped)


def read_csv(path: Path, required: tuple[str, ...]) -> tuple[list[dict[str, str]], str | None]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                return [], f"ignored {path}: it lacks the columns {missing} (expected {list(required)})"
            return [{k: (v or "") for k, v in row.items() if k is not None} for row in reader], None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        return [], f"ignored {path}: cannot read it ({error})"
