"""The known layouts, found anywhere under a folder, indexed into one manifest (:func:`index_dataset`)."""

from __future__ import annotations

import os
from pathlib import Path

from cxrmap.core.errors import DataError
from cxrmap.data.readers.checks import finish
from cxrmap.data.readers.common import Collected, IndexResult, absolute, child_folder, loose_key, subfolders
from cxrmap.data.readers.control_groups import collect_control_group_i, collect_control_group_ii
from cxrmap.data.readers.covid_qu_ex import collect_covid_qu_ex, covid_image_folders, qu_ex_kind
from cxrmap.data.readers.qata import QATA_SETS, collect_qata_set

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


_MAX_DEPTH = 8


_COLLECTORS = {
    "qata-cov19-v1": lambda folder: collect_qata_set(folder, "qata-cov19-v1", ""),
    "qata-cov19-v2": lambda folder: collect_qata_set(
        folder, "qata-cov19-v2", QATA_SETS[loose_key(folder.name)]
    ),
    "control-group-I": collect_control_group_i,
    "control-group-II": collect_control_group_ii,
    "covid-qu-ex": collect_covid_qu_ex,
}


def find_layouts(root: str | os.PathLike) -> tuple[list[tuple[str, Path]], list[str]]:
    """Find the known layouts under ``root`` (``root`` itself included), without reading any image.

    Returns:
        ``[(layout name, folder)]`` sorted by folder, and warnings (e.g. COVID-QU-Ex lung-only data ignored).
    """
    found: list[tuple[str, Path]] = []
    warnings: list[str] = []

    def visit(folder: Path, depth: int) -> None:
        key, subdirs = loose_key(folder.name), subfolders(folder)
        if key == "lung_masks":
            return
        if "images" in subdirs and "ground_truths" in subdirs:
            found.append(("qata-cov19-v2" if key in QATA_SETS else "qata-cov19-v1", folder))
        elif key == "control_group_i":
            found.append(("control-group-I", folder))
        elif key == "control_group_ii":
            found.append(("control-group-II", folder))
        elif (kind := qu_ex_kind(folder)) is not None:
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


def infection_folders(
    root: str | os.PathLike,
) -> tuple[list[tuple[Path, Path | None, tuple[str, ...]]], list[str]]:
    """The COVID-19 image folders under ``root`` that :func:`find_layouts` recognises, with their
    infection masks: ``[(image folder, infection-mask folder or None, mask name prefixes)]`` and warnings.

    QaTa-COV19 (v1, v2): every ``Images`` + ``Ground-truths`` pair; COVID-QU-Ex: the ``COVID-19/images`` +
    ``COVID-19/infection masks`` of each split (its control classes carry no infection to annotate).
    """
    layouts, warnings = find_layouts(root)
    folders: list[tuple[Path, Path | None, tuple[str, ...]]] = []
    for name, folder in layouts:
        if name.startswith("qata"):
            folders.append(
                (child_folder(folder, "Images"), child_folder(folder, "Ground-truths"), ("mask_", ""))
            )
        elif name == "covid-qu-ex":
            folders.extend((images, masks, ("", "mask_")) for images, masks in covid_image_folders(folder))
    return folders, warnings


def _index_layouts(
    root: str | os.PathLike, only: str | None, progress: bool, check_masks: bool, max_pixels: int | None
) -> IndexResult:
    root = absolute(root)
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
    collected = Collected(warnings=warnings)
    for name, folder in found:
        collected.extend(_COLLECTORS[name](folder))
    return finish(collected, progress, check_masks, max_pixels)


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
