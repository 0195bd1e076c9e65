"""Every candidate row checked (image header, mask size and values), extras attached, the manifest built.

``Lung-masks/`` mirrors and ``phantom-metadata.csv`` tables are looked up in the image's folder and every
folder above it, the nearest winning.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cxrmap.core.errors import DataError
from cxrmap.core.progress import track
from cxrmap.data.io import ImageInfo, binarise_mask, check_image, read_image
from cxrmap.data.manifest import empty_manifest, normalise_manifest
from cxrmap.data.readers.common import Collected, Entry, IndexResult, read_csv

_GREY_LOW, _GREY_HIGH = 10, 245  # mask values strictly between these count as "not binary"


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
                rows, warning = read_csv(metadata, ("image",))
                if warning:
                    self.warnings.append(warning)
                for row in rows:
                    relative = row["image"].strip().replace("\\", "/").removeprefix("./")
                    table[relative] = (row.get("finding", "").strip(), row.get("source", "").strip())
            self._folders[folder] = (lung_dir if lung_dir.is_dir() else None, table)
        return self._folders[folder]

    def apply(self, entry: Entry) -> None:
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


def finish(collected: Collected, progress: bool, check_masks: bool, max_pixels: int | None) -> IndexResult:
    """Attach lung masks and metadata, check every file, build the manifest."""
    extras = _Extras()
    skipped, warnings = list(collected.skipped), list(collected.warnings)
    rows: list[dict[str, str]] = []
    datasets: dict[str, str] = {}
    for entry in track(collected.entries, stage="checking images", enabled=progress):
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
