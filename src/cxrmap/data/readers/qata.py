"""QaTa-COV19: ``v1/{Images, Ground-truths}`` and ``v2/{Train Set, Test Set}/{Images, Ground-truths}``.

Every image is COVID-19 and pairs with ``Ground-truths/mask_X.png``.
"""

from __future__ import annotations

from pathlib import Path

from cxrmap.data.readers.common import Collected, Entry, child_folder, list_images, missing_mask, pair_masks

QATA_SETS = {"train_set": "train", "test_set": "test", "val_set": "val"}


def collect_qata_set(folder: Path, dataset: str, split: str) -> Collected:
    """One {Images, Ground-truths} folder of QaTa-COV19: every image is COVID-19 and needs its mask."""
    out = Collected(layouts=[(dataset, str(folder))])
    image_dir, mask_dir = child_folder(folder, "Images"), child_folder(folder, "Ground-truths")
    images, out.skipped = list_images(image_dir)
    pairs, skipped, out.warnings = pair_masks(images, mask_dir, ("mask_", ""), "mask")
    out.skipped += skipped
    for image in images:
        if image not in pairs:
            out.skipped.append(missing_mask(image, mask_dir, "mask_"))
            continue
        out.entries.append(
            Entry(image, "covid", "covid", dataset, dataset, split, "covid-19", mask=pairs[image])
        )
    return out
