"""SegmentationDataset: item layout, balancing, deterministic augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from cxrmap.core.errors import DataError
from cxrmap.data.cache import build_cache
from cxrmap.data.dataset import SegmentationDataset
from cxrmap.data.manifest import normalise_manifest

SIZE = 32


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """2 COVID-19 images with masks, 7 controls (one without lung mask)."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(9):
        covid = i < 2
        image = rng.integers(0, 256, (40, 40), dtype=np.uint8)
        Image.fromarray(image).save(root / f"img{i}.png")
        row = {
            "image_path": str(root / f"img{i}.png"),
            "label": "covid" if covid else "control",
            "group": "covid" if covid else "I",
        }
        if covid:
            mask = np.zeros((40, 40), np.uint8)
            mask[10:30, 5:20] = 255
            Image.fromarray(mask).save(root / f"mask{i}.png")
            row["mask_path"] = str(root / f"mask{i}.png")
        if i != 8:
            lung = np.zeros((40, 40), np.uint8)
            lung[2:38, 2:38] = 255
            Image.fromarray(lung).save(root / f"lung{i}.png")
            row["lung_mask_path"] = str(root / f"lung{i}.png")
        rows.append(row)
    return build_cache(normalise_manifest(rows), SIZE, cache_dir=Path(root) / "cache", progress=False)


def test_items_without_augmentation(cache):
    data = SegmentationDataset(cache, [0, 5, 8])
    assert len(data) == 3 and data.labels.tolist() == [1, 0, 0]
    item = data[0]
    assert item["image"].shape == (1, SIZE, SIZE) and item["image"].dtype == torch.float32
    assert item["target"].shape == (2, SIZE, SIZE) and item["target"].dtype == torch.float32
    assert item["image"].min() >= 0 and item["image"].max() <= 1
    np.testing.assert_allclose(item["image"][0].numpy(), cache.images[0] / 255.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(item["target"][0].numpy(), cache.masks[0])
    np.testing.assert_array_equal(item["target"][1].numpy(), cache.lungs[0])
    assert item["target"][0].sum() > 0 and item["label"] == 1 and item["index"] == 0
    assert item["has_lung"].dtype == torch.bool and bool(item["has_lung"]) and bool(item["has_mask"])
    last = data[2]
    assert last["index"] == 8 and last["label"] == 0 and not bool(last["has_lung"])
    assert last["target"].sum() == 0
    with pytest.raises(IndexError):
        data[3]


def test_balance_length_and_repeats(cache):
    data = SegmentationDataset(cache, np.arange(9), balance=True, seed=1)
    assert len(data) == 14 and data.labels.sum() == 7  # 2 COVID-19 repeated up to the 7 controls
    assert [data[i]["index"] for i in range(9)] == list(range(9))
    repeats = [data[i] for i in range(9, 14)]
    assert all(item["label"] == 1 and item["index"] in (0, 1) for item in repeats)
    # repeats are augmented: not pixel copies of the cached image; originals are not
    for item in repeats:
        cached = torch.from_numpy(cache.images[item["index"]] / 255.0).float()
        assert not torch.equal(item["image"][0], cached)
        assert set(torch.unique(item["target"]).tolist()) <= {0.0, 1.0}
        assert item["image"].min() >= 0 and item["image"].max() <= 1
    np.testing.assert_allclose(data[0]["image"][0].numpy(), cache.images[0] / 255.0, atol=1e-7)


def test_deterministic_across_instances_and_workers(cache):
    a = SegmentationDataset(cache, np.arange(9), balance=True, augment=True, seed=3)
    b = SegmentationDataset(cache, np.arange(9), balance=True, augment=True, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    for i in range(len(a)):
        assert torch.equal(a[i]["image"], b[i]["image"]) and torch.equal(a[i]["target"], b[i]["target"])
    batches = list(DataLoader(b, batch_size=5, num_workers=2))
    loaded = torch.cat([batch["image"] for batch in batches])
    assert torch.equal(loaded, torch.stack([a[i]["image"] for i in range(len(a))]))
    first = a[9]["image"]
    a.set_epoch(3)
    assert not torch.equal(a[9]["image"], first)  # a new epoch draws new transforms


def test_bad_indices(cache):
    with pytest.raises(DataError, match="outside the cache"):
        SegmentationDataset(cache, [0, 9])
