"""COVID-QU-Ex infection data: ``{Train,Val,Test}/{COVID-19,Non-COVID,Normal}/{images, infection masks,
lung masks}``, image and masks sharing one file name.
"""

from __future__ import annotations

from pathlib import Path

from cxrmap.data.readers.common import (
    Collected,
    Entry,
    child_folder,
    list_images,
    missing_mask,
    pair_masks,
    subfolders,
)

_QU_EX_SPLITS = {"train": "train", "val": "val", "test": "test"}


_QU_EX_CLASSES = {  # folder -> (label, group, finding)
    "covid_19": ("covid", "covid", "covid-19"),
    "normal": ("control", "I", "normal"),
    "non_covid": ("control", "II", "non-covid"),
}


def qu_ex_kind(folder: Path) -> str | None:
    """``"infection"`` for COVID-QU-Ex infection data, ``"lung-only"`` for its lung data, else None."""
    kind = None
    for key, split in subfolders(folder).items():
        if key not in _QU_EX_SPLITS:
            continue
        for class_key, class_dir in subfolders(split).items():
            if class_key not in _QU_EX_CLASSES:
                continue
            parts = subfolders(class_dir)
            if "infection_masks" in parts:
                return "infection"
            if "images" in parts:
                kind = "lung-only"
    return kind


def collect_covid_qu_ex(folder: Path) -> Collected:
    """COVID-QU-Ex infection data: image, infection mask and lung mask share one file name."""
    dataset = "covid-qu-ex"
    out = Collected(layouts=[(dataset, str(folder))])
    for split_key, split_dir in subfolders(folder).items():
        if split_key not in _QU_EX_SPLITS:
            continue
        for class_key, class_dir in subfolders(split_dir).items():
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
                    out.skipped.append(missing_mask(image, infection_dir, ""))
                    continue
                out.entries.append(
                    Entry(
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


def covid_image_folders(folder: Path) -> list[tuple[Path, Path | None]]:
    """Each split's ``COVID-19/images`` folder with its ``infection masks`` folder (None where absent)."""
    pairs = []
    for split_key, split_dir in subfolders(folder).items():
        class_dir = subfolders(split_dir).get("covid_19") if split_key in _QU_EX_SPLITS else None
        image_dir = child_folder(class_dir, "images") if class_dir is not None else None
        if image_dir is not None:
            pairs.append((image_dir, child_folder(class_dir, "infection masks")))
    return pairs
