"""Plain folders: images with a folder of masks (:func:`index_folder_pair`), or files to predict on
(:func:`index_files`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from cxrmap.core.errors import DataError
from cxrmap.data.io import check_image
from cxrmap.data.manifest import GROUPS, LABELS
from cxrmap.data.readers.checks import finish
from cxrmap.data.readers.common import (
    Collected,
    Entry,
    FileList,
    IndexResult,
    absolute,
    list_images,
    missing_mask,
    pair_masks,
)


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
    image_dir = absolute(images)
    mask_dir = absolute(masks) if masks is not None else None
    out = Collected(layouts=[("folder", str(image_dir))])
    files, out.skipped = list_images(image_dir)
    pairs, skipped, out.warnings = pair_masks(files, mask_dir, ("mask_", ""), "mask")
    lungs, lung_skipped, lung_warnings = pair_masks(
        files, absolute(lung_masks) if lung_masks else None, ("", "mask_"), "lung mask"
    )
    out.skipped += skipped + lung_skipped
    out.warnings += lung_warnings
    for image in files:
        if label == "covid" and image not in pairs:
            out.skipped.append(missing_mask(image, mask_dir, "mask_"))
            continue
        out.entries.append(
            Entry(
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
    return finish(out, progress, check_masks, max_pixels)


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
