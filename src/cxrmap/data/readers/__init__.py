"""Dataset readers: every supported folder layout becomes one manifest (paper Sec. II-A).

Layouts (found anywhere under the folder given to :func:`index_dataset`, several at once)::

    QaTa-COV19-v1/{Images, Ground-truths}                  Ground-truths/mask_X.png pairs with Images/X.png
    QaTa-COV19-v2/{Train Set, Test Set}/{Images, Ground-truths}           split = train / test
    Control_Group/Control_Group_I/                          normal CXRs: control, group I
    Control_Group/Control_Group_II/{CHESTXRAY-14/{Train,Test}, Pediatric_Bacterial_Pneumonia,
                                    Pediatric_Viral_Pneumonia}          control, group II
    COVID-QU-Ex: Infection Segmentation Data/[Infection Segmentation Data/]{Train,Val,Test}/
                 {COVID-19,Non-COVID,Normal}/{images, infection masks, lung masks}/NAME.png

Any dataset folder may also carry ``Lung-masks/`` (lung masks at the images' relative paths) and
``phantom-metadata.csv`` (columns ``image`` (relative path), ``finding``, ``source``); both are looked
up in the image's folder and every folder above it, the nearest winning. ChestX-ray14 findings also
come from ``Data_Entry_2017.csv`` ("Image Index", "Finding Labels") found the same way.

Every image is checked cheaply (header, PNG checksums, DICOM header) and every mask decoded once
(size, binary values). Problems never stop the indexing: the file is skipped with a reason or kept
with a warning, both returned in :class:`IndexResult`.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from cxrmap.core.errors import DataError
from cxrmap.data.io import IMAGE_SUFFIXES, ImageInfo, binarise_mask, check_image, is_dicom, read_image
from cxrmap.data.manifest import GROUPS, LABELS, empty_manifest, normalise_manifest

LAYOUTS = {
    "qata-cov19-v1": "QaTa-COV19-v1/{Images, Ground-truths}  (masks named mask_<image name>)",
    "qata-cov19-v2": "QaTa-COV19-v2/{Train Set, Test Set}/{Images, Ground-truths}",
    "control-group-I": "Control_Group/Control_Group_I/  (normal images)",
    "control-group-II": "Control_Group/Control_Group_II/{CHESTXRAY-14/{Train,Test}, "
    "Pediatric_Bacterial_Pneumonia, Pediatric_Viral_Pneumonia}",
    "covid-qu-ex": "Infection Segmentation Data/{Train,Val,Test}/{COVID-19,Non-COVID,Normal}/"
    "{images, infection masks, lung masks}",
}
"""The layouts :func:`index_dataset` recognises, by name (also the default ``source`` of their rows)."""

UNSUPPORTED_IMAGE_SUFFIXES = (".bmp", ".tif", ".tiff", ".gif", ".webp", ".jp2", ".j2k")
_NOT_IMAGE_SUFFIXES = (".csv", ".txt", ".md", ".json", ".xlsx", ".xls", ".pdf", ".zip", ".py", ".html")
_QATA_SETS = {"train_set": "train", "test_set": "test", "val_set": "val"}
_QU_EX_SPLITS = {"train": "train", "val": "val", "test": "test"}
_QU_EX_CLASSES = {  # folder -> (label, group, finding)
    "covid_19": ("covid", "covid", "covid-19"),
    "normal": ("control", "I", "normal"),
    "non_covid": ("control", "II", "non-covid"),
}
_CHESTXRAY14 = ("chestxray_14", "chestxray14", "chestx_ray14", "chest_xray_14")
_MAX_DEPTH = 8
_GREY_LOW, _GREY_HIGH = 10, 245  # mask values strictly between these count as "not binary"


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
class _Entry:
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
class _Collected:
    entries: list[_Entry] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    layouts: list[tuple[str, str]] = field(default_factory=list)

    def extend(self, other: _Collected) -> None:
        self.entries += other.entries
        self.skipped += other.skipped
        self.warnings += other.warnings
        self.layouts += other.layouts


# ---------------------------------------------------------------------------------------------- files


def _key(name: str) -> str:
    """Folder names compared loosely: case, spaces and hyphens do not matter."""
    return name.lower().replace(" ", "_").replace("-", "_")


def _subdirs(folder: Path) -> dict[str, Path]:
    """Visible sub-folders by loose name, in sorted order."""
    try:
        with os.scandir(folder) as entries:
            found = [Path(e.path) for e in entries if not e.name.startswith(".") and e.is_dir()]
    except OSError:
        return {}
    return {_key(p.name): p for p in sorted(found)}


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


def _missing_mask(image: Path, mask_dir: Path | None, prefix: str) -> tuple[str, str]:
    where = f"{mask_dir}/{prefix}{image.name}" if mask_dir else "an infection-mask folder"
    return (
        str(image),
        f"COVID-19 image without an infection mask (expected {where}); add the mask or remove the image",
    )


def _absolute(path: str | os.PathLike) -> Path:
    """Absolute, user-expanded, symlinks kept (so that folders above it can be searched)."""
    return Path(os.path.abspath(Path(path).expanduser()))


def child_folder(folder: Path, name: str) -> Path | None:
    """The sub-folder of ``folder`` called ``name`` (case and spacing ignored), or None."""
    return _subdirs(folder).get(_key(name))


# -------------------------------------------------------------------------------------------- layouts


def _collect_qata_set(folder: Path, dataset: str, split: str) -> _Collected:
    """One {Images, Ground-truths} folder of QaTa-COV19: every image is COVID-19 and needs its mask."""
    out = _Collected(layouts=[(dataset, str(folder))])
    image_dir, mask_dir = child_folder(folder, "Images"), child_folder(folder, "Ground-truths")
    images, out.skipped = list_images(image_dir)
    pairs, skipped, out.warnings = pair_masks(images, mask_dir, ("mask_", ""), "mask")
    out.skipped += skipped
    for image in images:
        if image not in pairs:
            out.skipped.append(_missing_mask(image, mask_dir, "mask_"))
            continue
        out.entries.append(
            _Entry(image, "covid", "covid", dataset, dataset, split, "covid-19", mask=pairs[image])
        )
    return out


def _control_entries(
    folder: Path, group: str, source: str, dataset: str, finding: str, recursive: bool = True
) -> _Collected:
    images, skipped = list_images(folder, recursive=recursive)
    entries = [_Entry(image, "control", group, source, dataset, "", finding) for image in images]
    return _Collected(entries=entries, skipped=skipped)


def _collect_control_group_i(folder: Path) -> _Collected:
    out = _control_entries(folder, "I", "control-group-I", "control-group-I", "normal")
    out.layouts = [("control-group-I", str(folder))]
    return out


def _collect_control_group_ii(folder: Path) -> _Collected:
    """Group II: ChestX-ray14 (fixed Train/Test split), pediatric pneumonia, and any other finding folder."""
    dataset = "control-group-II"
    out = _control_entries(folder, "II", dataset, dataset, "", recursive=False)
    out.layouts = [(dataset, str(folder))]
    for key, sub in _subdirs(folder).items():
        if key in _CHESTXRAY14:
            out.extend(_collect_chestxray14(sub, dataset))
        elif key.startswith("pediatric"):
            out.extend(_control_entries(sub, "II", "pediatric-pneumonia", dataset, sub.name))
        else:
            out.extend(_control_entries(sub, "II", dataset, dataset, sub.name))
    return out


def _collect_chestxray14(folder: Path, dataset: str) -> _Collected:
    out = _control_entries(folder, "II", "chestxray14", dataset, "")
    findings, warnings = _chestxray14_findings(folder)
    out.warnings += warnings
    for entry in out.entries:
        first = entry.image.relative_to(folder).parts[0]
        entry.split = {"train": "train", "test": "test", "val": "val"}.get(first.lower(), "")
        entry.finding = findings.get(entry.image.name, "")
    return out


def _chestxray14_findings(folder: Path) -> tuple[dict[str, str], list[str]]:
    """``Finding Labels`` by ``Image Index`` from the nearest ``Data_Entry_2017.csv`` (empty if none)."""
    for directory in (folder, *folder.parents):
        table = directory / "Data_Entry_2017.csv"
        if table.is_file():
            rows, warning = _read_csv(table, ("Image Index", "Finding Labels"))
            if warning:
                return {}, [warning]
            return {row["Image Index"].strip(): row["Finding Labels"].strip() for row in rows}, []
    return {}, []


def _qu_ex_kind(folder: Path) -> str | None:
    """``"infection"`` for COVID-QU-Ex infection data, ``"lung-only"`` for its lung data, else None."""
    kind = None
    for key, split in _subdirs(folder).items():
        if key not in _QU_EX_SPLITS:
            continue
        for class_key, class_dir in _subdirs(split).items():
            if class_key not in _QU_EX_CLASSES:
                continue
            parts = _subdirs(class_dir)
            if "infection_masks" in parts:
                return "infection"
            if "images" in parts:
                kind = "lung-only"
    return kind


def _collect_covid_qu_ex(folder: Path) -> _Collected:
    """COVID-QU-Ex infection data: image, infection mask and lung mask share one file name."""
    dataset = "covid-qu-ex"
    out = _Collected(layouts=[(dataset, str(folder))])
    for split_key, split_dir in _subdirs(folder).items():
        if split_key not in _QU_EX_SPLITS:
            continue
        for class_key, class_dir in _subdirs(split_dir).items():
            if class_key not in _QU_EX_CLASSES:
                out.warnings.append(
                    f"ignored {class_dir}: expected class folders COVID-19, Non-COVID, Normal"
                )
                continue
            label, group, finding = _QU_EX_CLASSES[class_key]
            image_dir = child_folder(class_dir, "images")
            if image_dir is None:
                out.warnings.append(f"ignored {class_dir}: it has no 'images' folder")
                continue
            infection_dir = child_folder(class_dir, "infection masks")
            lung_dir = child_folder(class_dir, "lung masks")
            images, skipped = list_images(image_dir)
            masks, mask_skipped, mask_warnings = pair_masks(
                images, infection_dir, ("", "mask_"), "infection mask"
            )
            lungs, lung_skipped, lung_warnings = pair_masks(images, lung_dir, ("", "mask_"), "lung mask")
            out.skipped += skipped + mask_skipped + lung_skipped
            out.warnings += mask_warnings + lung_warnings
            for image in images:
                if label == "covid" and image not in masks:
                    out.skipped.append(_missing_mask(image, infection_dir, ""))
                    continue
                out.entries.append(
                    _Entry(
                        image,
                        label,
                        group,
                        dataset,
                        dataset,
                        _QU_EX_SPLITS[split_key],
                        finding,
                        mask=masks.get(image),
                        lung=lungs.get(image),
                    )
                )
    return out


_COLLECTORS = {
    "qata-cov19-v1": lambda folder: _collect_qata_set(folder, "qata-cov19-v1", ""),
    "qata-cov19-v2": lambda folder: _collect_qata_set(folder, "qata-cov19-v2", _QATA_SETS[_key(folder.name)]),
    "control-group-I": _collect_control_group_i,
    "control-group-II": _collect_control_group_ii,
    "covid-qu-ex": _collect_covid_qu_ex,
}


def find_layouts(root: str | os.PathLike) -> tuple[list[tuple[str, Path]], list[str]]:
    """Find the known layouts under ``root`` (``root`` itself included), without reading any image.

    Returns:
        ``[(layout name, folder)]`` sorted by folder, and warnings (e.g. COVID-QU-Ex lung-only data ignored).
    """
    found: list[tuple[str, Path]] = []
    warnings: list[str] = []

    def visit(folder: Path, depth: int) -> None:
        key, subdirs = _key(folder.name), _subdirs(folder)
        if key == "lung_masks":
            return
        if "images" in subdirs and "ground_truths" in subdirs:
            found.append(("qata-cov19-v2" if key in _QATA_SETS else "qata-cov19-v1", folder))
        elif key == "control_group_i":
            found.append(("control-group-I", folder))
        elif key == "control_group_ii":
            found.append(("control-group-II", folder))
        elif (kind := _qu_ex_kind(folder)) is not None:
            if kind == "infection":
                found.append(("covid-qu-ex", folder))
            else:
                warnings.append(
                    f"ignored {folder}: COVID-QU-Ex images without infection masks (lung data only)"
                )
        elif depth < _MAX_DEPTH:
            for sub in subdirs.values():
                visit(sub, depth + 1)

    visit(Path(root), 0)
    return sorted(found, key=lambda item: str(item[1])), warnings


# ---------------------------------------------------------------------------- extras and verification


def _read_csv(path: Path, required: tuple[str, ...]) -> tuple[list[dict[str, str]], str | None]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                return [], f"ignored {path}: it lacks the columns {missing} (expected {list(required)})"
            return [{k: (v or "") for k, v in row.items() if k is not None} for row in reader], None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        return [], f"ignored {path}: cannot read it ({error})"


class _Extras:
    """``Lung-masks/`` mirrors and ``phantom-metadata.csv`` tables of every folder above an image."""

    def __init__(self) -> None:
        self._folders: dict[str, tuple[Path | None, dict[str, tuple[str, str]]]] = {}
        self.warnings: list[str] = []

    def _at(self, folder: str) -> tuple[Path | None, dict[str, tuple[str, str]]]:
        if folder not in self._folders:
            lung_dir = Path(folder) / "Lung-masks"
            table: dict[str, tuple[str, str]] = {}
            metadata = Path(folder) / "phantom-metadata.csv"
            if metadata.is_file():
                rows, warning = _read_csv(metadata, ("image",))
                if warning:
                    self.warnings.append(warning)
                for row in rows:
                    relative = row["image"].strip().replace("\\", "/").removeprefix("./")
                    table[relative] = (row.get("finding", "").strip(), row.get("source", "").strip())
            self._folders[folder] = (lung_dir if lung_dir.is_dir() else None, table)
        return self._folders[folder]

    def apply(self, entry: _Entry) -> None:
        """Fill the entry's lung mask, finding and source from the folders above it, the nearest winning.

        Folders are walked as strings (one ``dirname`` per level): at the paper's scale, building a
        ``Path`` and a ``relative_to`` for every level of every image cost as much as checking the image.
        """
        has_metadata = False
        image = os.fspath(entry.image)
        folder = os.path.dirname(image)
        while True:
            lung_dir, table = self._at(folder)
            if lung_dir is not None or (table and not has_metadata):
                relative = image[len(folder) :].lstrip(os.sep)
                if entry.lung is None and lung_dir is not None:
                    for candidate in (lung_dir / relative, (lung_dir / relative).with_suffix(".png")):
                        if candidate.is_file():
                            entry.lung = candidate
                            break
                posix = relative.replace(os.sep, "/")
                if not has_metadata and posix in table:
                    finding, source = table[posix]
                    entry.finding = finding or entry.finding
                    entry.source = source or entry.source
                    has_metadata = True
            parent = os.path.dirname(folder)
            if parent == folder:
                return
            folder = parent


def _check_mask(
    path: Path, image: ImageInfo, decode: bool, max_pixels: int | None
) -> tuple[str | None, str | None, bool | None]:
    """Check a mask against its image.

    Returns:
        ``(problem, warning, non_empty)``: a problem makes the mask unusable; ``non_empty`` is None when
        the pixels were not decoded.
    """
    try:
        info = check_image(path, max_pixels=max_pixels)
        if (info.width, info.height) != (image.width, image.height):
            return (
                f"mask {path} is {info.width}x{info.height} but its image is {image.width}x{image.height}; "
                "give a mask of the image's size",
                None,
                None,
            )
        if not decode:
            return None, None, None
        values = read_image(path, max_pixels=max_pixels)
    except DataError as error:
        return f"its mask is unusable: {error}", None, None
    warning = None
    if values.max(initial=0) == 1:
        warning = f"mask {path} holds values 0/1: read with 1 as foreground (masks are normally 0/255)"
    else:
        grey = float(np.mean((values > _GREY_LOW) & (values < _GREY_HIGH)))
        if grey > 0:
            warning = (
                f"mask {path} is not binary ({grey:.1%} of its pixels are neither ~0 nor ~255); "
                "binarised at >127, check that it is a mask"
            )
    return None, warning, bool(binarise_mask(values).any())


def _finish(collected: _Collected, progress: bool, check_masks: bool, max_pixels: int | None) -> IndexResult:
    """Attach lung masks and metadata, check every file, build the manifest."""
    extras = _Extras()
    skipped, warnings = list(collected.skipped), list(collected.warnings)
    rows: list[dict[str, str]] = []
    datasets: dict[str, str] = {}
    for entry in tqdm(collected.entries, desc="checking images", unit="image", disable=not progress):
        image_path = os.path.abspath(entry.image)
        if image_path in datasets:
            continue
        extras.apply(entry)
        try:
            info = check_image(entry.image, max_pixels=max_pixels)
        except DataError as error:
            skipped.append((str(entry.image), str(error)))
            continue
        if entry.mask is not None:
            problem, warning, non_empty = _check_mask(entry.mask, info, check_masks, max_pixels)
            if problem:
                skipped.append((str(entry.image), problem))
                continue
            warnings += [warning] if warning else []
            if non_empty is False and entry.label == "covid":
                warnings.append(
                    f"COVID-19 image {entry.image} has an empty infection mask {entry.mask} (kept)"
                )
            if non_empty and entry.label == "control":
                warnings.append(
                    f"control image {entry.image} has a non-empty infection mask {entry.mask} (kept); "
                    "controls are expected to have none"
                )
        if entry.lung is not None:
            problem, warning, _ = _check_mask(entry.lung, info, check_masks, max_pixels)
            if problem:
                warnings.append(f"lung mask of {entry.image} not used: {problem}")
                entry.lung = None
            elif warning:
                warnings.append(warning)
        datasets[image_path] = entry.dataset
        rows.append(
            {
                "image_path": image_path,
                "mask_path": os.path.abspath(entry.mask) if entry.mask else "",
                "lung_mask_path": os.path.abspath(entry.lung) if entry.lung else "",
                "label": entry.label,
                "group": entry.group,
                "source": entry.source,
                "split": entry.split,
                "fold": "",
                "finding": entry.finding,
            }
        )
    warnings = extras.warnings + warnings + _duplicate_warnings(datasets)
    manifest = normalise_manifest(rows) if rows else empty_manifest()
    manifest = manifest.sort_values("image_path", kind="stable").reset_index(drop=True)
    return IndexResult(
        manifest, skipped, warnings, [(name, str(folder)) for name, folder in collected.layouts]
    )


def _duplicate_warnings(datasets: dict[str, str]) -> list[str]:
    """One warning per pair of datasets sharing file names (QaTa-COV19-v2 and COVID-QU-Ex overlap)."""
    by_name: dict[str, set[str]] = {}
    for path, dataset in datasets.items():
        by_name.setdefault(os.path.basename(path), set()).add(dataset)
    shared: dict[tuple[str, ...], list[str]] = {}
    for name, names in sorted(by_name.items()):
        if len(names) > 1:
            shared.setdefault(tuple(sorted(names)), []).append(name)
    return [
        f"{len(files)} file name(s) appear in more than one dataset ({', '.join(pair)}), e.g. "
        f"{', '.join(files[:3])}: the same radiograph may be indexed twice; index one copy only"
        for pair, files in shared.items()
    ]


# ------------------------------------------------------------------------------------------ public API


def _index_layouts(
    root: str | os.PathLike, only: str | None, progress: bool, check_masks: bool, max_pixels: int | None
) -> IndexResult:
    root = _absolute(root)
    if not root.exists():
        raise DataError(
            f"dataset folder {root} does not exist; give the folder holding the dataset "
            "(e.g. QaTa-COV19/ or the COVID-QU-Ex root), or make a synthetic one with `cxrmap phantom OUT`"
        )
    if not root.is_dir():
        raise DataError(
            f"{root} is a file, not a dataset folder; give the dataset's folder (to run on single images, "
            "use `cxrmap predict`)"
        )
    found, warnings = find_layouts(root)
    expected = {only: LAYOUTS[only]} if only else LAYOUTS
    found = [(name, folder) for name, folder in found if only in (None, name)]
    if not found:
        listing = "\n".join(f"  - {name}: {text}" for name, text in expected.items())
        raise DataError(
            f"no known dataset layout under {root}. Expected one of:\n{listing}\n"
            "For a plain folder of images and masks use `cxrmap index --images DIR --masks DIR`"
        )
    collected = _Collected(warnings=warnings)
    for name, folder in found:
        collected.extend(_COLLECTORS[name](folder))
    return _finish(collected, progress, check_masks, max_pixels)


def index_dataset(
    root: str | os.PathLike,
    *,
    layout: str | None = None,
    progress: bool = True,
    check_masks: bool = True,
    max_pixels: int | None = None,
) -> IndexResult:
    """Index every known layout found under ``root`` into one manifest (paper Sec. II-A).

    Args:
        root: a dataset folder (``root`` itself or any folder below it may hold the layouts).
        layout: index only this layout (a key of :data:`LAYOUTS`, e.g. ``qata-cov19-v1``); None: all found.
        progress: show a progress bar while checking files.
        check_masks: decode each mask (size, binary values, empty or not); False checks headers only.
        max_pixels: pixel limit per image (default :func:`cxrmap.data.limits.max_pixel_limit`).

    Returns:
        :class:`IndexResult` with the manifest, the skipped files and the warnings.

    Raises:
        DataError: ``root`` is missing or holds no known layout (the message lists them).

    Example:
        >>> result = index_dataset("QaTa-COV19")  # doctest: +SKIP
        >>> result.manifest.label.value_counts()  # doctest: +SKIP
    """
    if layout is not None and layout not in LAYOUTS:
        raise DataError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    return _index_layouts(root, layout, progress, check_masks, max_pixels)


def index_folder_pair(
    images: str | os.PathLike,
    masks: str | os.PathLike | None = None,
    label: str = "covid",
    *,
    group: str | None = None,
    source: str = "folder",
    split: str = "",
    finding: str = "",
    lung_masks: str | os.PathLike | None = None,
    progress: bool = True,
    check_masks: bool = True,
    max_pixels: int | None = None,
) -> IndexResult:
    """Index a plain folder of images with a folder of masks named ``X.png`` or ``mask_X.png``.

    Args:
        images: folder of radiographs (not searched recursively).
        masks: folder of infection masks; required for ``label="covid"`` (images without one are skipped).
        label: ``covid`` or ``control`` for every image.
        group: ``covid`` for COVID-19; ``I`` (default) or ``II`` for controls.
        source, split, finding: written into every row.
        lung_masks: optional folder of lung masks with the same names.

    Raises:
        DataError: a folder is missing, or the label/group is unknown.
    """
    if label not in LABELS:
        raise DataError(f"label {label!r} is unknown; expected one of {LABELS}")
    group = group or ("covid" if label == "covid" else "I")
    if group not in GROUPS or (group == "covid") != (label == "covid"):
        raise DataError(
            f"group {group!r} does not fit label {label!r}; use covid for covid, I or II for control"
        )
    folders = {"images": images, "masks": masks, "lung masks": lung_masks}
    for what, folder in folders.items():
        if folder is not None and not Path(folder).is_dir():
            raise DataError(f"the {what} folder {folder} does not exist or is not a folder; check the path")
    if label == "covid" and masks is None:
        raise DataError("COVID-19 images need their infection masks: give the masks folder")
    image_dir = _absolute(images)
    mask_dir = _absolute(masks) if masks is not None else None
    out = _Collected(layouts=[("folder", str(image_dir))])
    files, out.skipped = list_images(image_dir)
    pairs, skipped, out.warnings = pair_masks(files, mask_dir, ("mask_", ""), "mask")
    lungs, lung_skipped, lung_warnings = pair_masks(
        files, _absolute(lung_masks) if lung_masks else None, ("", "mask_"), "lung mask"
    )
    out.skipped += skipped + lung_skipped
    out.warnings += lung_warnings
    for image in files:
        if label == "covid" and image not in pairs:
            out.skipped.append(_missing_mask(image, mask_dir, "mask_"))
            continue
        out.entries.append(
            _Entry(
                image,
                label,
                group,
                source,
                "folder",
                split,
                finding,
                mask=pairs.get(image),
                lung=lungs.get(image),
            )
        )
    return _finish(out, progress, check_masks, max_pixels)


def index_files(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    recursive: bool = False,
    max_pixels: int | None = None,
) -> FileList:
    """The readable images among files and folders (for prediction; no labels, no masks).

    Folders are listed (sorted; sub-folders only with ``recursive``); each image's header is checked.
    Nothing raises for a bad file: it lands in ``skipped`` with the reason.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    images: list[Path] = []
    seen: set[Path] = set()
    skipped: list[tuple[str, str]] = []
    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            candidates, not_images = list_images(path, recursive=recursive)
            skipped += not_images
            if not candidates and not not_images:
                skipped.append((str(path), "no PNG, JPEG or DICOM images in this folder"))
        elif path.exists():
            candidates = [path]
        else:
            skipped.append((str(path), "does not exist; check the path"))
            continue
        for candidate in candidates:
            try:
                check_image(candidate, max_pixels=max_pixels)
            except DataError as error:
                skipped.append((str(candidate), str(error)))
                continue
            absolute = Path(os.path.abspath(candidate))
            if absolute not in seen:
                seen.add(absolute)
                images.append(absolute)
    return FileList(images, skipped)
