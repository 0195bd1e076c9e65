"""The image cache: values against direct reads, reuse, rebuild on change, skipped rows, crash safety."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrmap.core.errors import DataError
from cxrmap.data import io
from cxrmap.data.cache import build_cache
from cxrmap.data.manifest import normalise_manifest

SIZE = 32


def _png(path: Path, array: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return str(path)


def _tree(root: Path, n: int = 6, shape: tuple[int, int] = (48, 64)) -> pd.DataFrame:
    """n images: half COVID-19 with masks (but image 2), half controls without; lung masks but the last."""
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n):
        covid = i % 2 == 0
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        row = {
            "image_path": _png(root / f"img{i}.png", image),
            "label": "covid" if covid else "control",
            "group": "covid" if covid else "I",
            "fold": str(i % 3),
        }
        if covid and i != 2:  # image 2: a COVID-19 image without mask
            mask = np.zeros(shape, np.uint8)
            mask[8 : 8 + 4 * i + 8, 10:40] = 255
            row["mask_path"] = _png(root / f"mask{i}.png", mask)
        if i != n - 1:
            lung = np.zeros(shape, np.uint8)
            lung[4:44, 4:30] = 255
            row["lung_mask_path"] = _png(root / f"lung{i}.png", lung)
        rows.append(row)
    return normalise_manifest(rows)


def _count_reads(monkeypatch) -> list[str]:
    calls: list[str] = []
    original = io.read_image

    def counting(path, *args, **kwargs):
        calls.append(str(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(io, "read_image", counting)
    return calls


def test_cache_matches_direct_reads(tmp_path):
    manifest = _tree(tmp_path / "data")
    cache = build_cache(manifest, SIZE, cache_dir=tmp_path / "cache", progress=False)
    assert cache.images.shape == cache.masks.shape == cache.lungs.shape == (6, SIZE, SIZE)
    assert cache.images.dtype == cache.masks.dtype == np.uint8
    assert isinstance(cache.images, np.memmap) and not cache.images.flags.writeable
    assert cache.skipped == [] and len(cache) == 6
    pd.testing.assert_frame_equal(cache.manifest, manifest)
    for i, row in manifest.iterrows():
        expected = cv2.resize(io.read_image(row["image_path"]), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(cache.images[i], expected)
        if row["mask_path"]:
            share = cv2.resize(
                io.read_mask(row["mask_path"]).astype(np.float32), (SIZE, SIZE), interpolation=cv2.INTER_AREA
            )
            np.testing.assert_array_equal(cache.masks[i], share >= 0.5)
            assert cache.masks[i].sum() > 0
    assert set(np.unique(cache.masks)) <= {0, 1} and set(np.unique(cache.lungs)) <= {0, 1}
    # COVID-19 with mask, COVID-19 without mask (unknown), controls (empty mask, known)
    assert cache.has_mask.tolist() == [True, True, False, True, True, True]
    assert cache.masks[[1, 2, 3, 5]].sum() == 0
    assert cache.has_lung.tolist() == [True] * 5 + [False]
    assert cache.lungs[5].sum() == 0
    # lung rows 4:44 of 48 -> target rows 3:29 (row 2 covers input rows 3-4.5: a third lung, dropped;
    # row 29 covers 43.5-45: a third, dropped); columns 4:30 of 64 -> 2:15 (hand-computed)
    expected_lung = np.zeros((SIZE, SIZE), np.uint8)
    expected_lung[3:29, 2:15] = 1
    np.testing.assert_array_equal(cache.lungs[0], expected_lung)


def test_mask_resize_keeps_area_share():
    from cxrmap.data.cache import resize_mask

    mask = np.zeros((64, 64), bool)
    mask[:, :32] = True  # left half
    mask[0, 40] = True  # one stray pixel: a quarter of a target pixel, dropped
    resized = resize_mask(mask, 32)
    expected = np.zeros((32, 32), np.uint8)
    expected[:, :16] = 1
    np.testing.assert_array_equal(resized, expected)


def test_second_build_reuses_cache(tmp_path, monkeypatch):
    manifest = _tree(tmp_path / "data")
    first = build_cache(manifest, SIZE, cache_dir=tmp_path / "cache", progress=False)
    calls = _count_reads(monkeypatch)
    refolded = manifest.assign(fold="0", split="train")  # columns the arrays do not depend on
    second = build_cache(refolded, SIZE, cache_dir=tmp_path / "cache", progress=False)
    assert calls == []
    assert second.path == first.path
    assert (second.manifest["fold"] == "0").all()
    np.testing.assert_array_equal(second.images, first.images)
    # another size is another cache
    third = build_cache(manifest, 16, cache_dir=tmp_path / "cache", progress=False)
    assert set(manifest["image_path"]) <= set(calls)
    assert third.images.shape == (6, 16, 16) and third.path != first.path


def test_default_cache_dir_is_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("CXRMAP_CACHE", str(tmp_path / "env-cache"))
    cache = build_cache(_tree(tmp_path / "data", n=2), SIZE, progress=False)
    assert cache.path.parent == tmp_path / "env-cache"


def test_rebuild_after_touch_and_change(tmp_path, monkeypatch):
    manifest = _tree(tmp_path / "data")
    first = build_cache(manifest, SIZE, cache_dir=tmp_path / "cache", progress=False)
    calls = _count_reads(monkeypatch)
    path = manifest.loc[1, "image_path"]
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    touched = build_cache(manifest, SIZE, cache_dir=tmp_path / "cache", progress=False)
    assert set(manifest["image_path"]) <= set(calls) and touched.path != first.path
    np.testing.assert_array_equal(touched.images, first.images)
    _png(Path(path), np.full((48, 64), 77, np.uint8))
    changed = build_cache(manifest, SIZE, cache_dir=tmp_path / "cache", progress=False)
    assert (changed.images[1] == 77).all()
    np.testing.assert_array_equal(changed.images[0], first.images[0])


def test_unreadable_and_mismatched_rows_are_skipped(tmp_path):
    manifest = _tree(tmp_path / "data")
    truncated = Path(manifest.loc[1, "image_path"])
    truncated.write_bytes(truncated.read_bytes()[:200])
    manifest.loc[3, "image_path"] = str(tmp_path / "data" / "absent.png")
    manifest.loc[4, "mask_path"] = _png(tmp_path / "data" / "big-mask.png", np.zeros((40, 40), np.uint8))
    cache = build_cache(manifest, SIZE, cache_dir=tmp_path / "cache", progress=False)
    skipped = dict(cache.skipped)
    mismatched = manifest.loc[4, "image_path"]
    assert list(skipped) == [str(truncated), str(tmp_path / "data" / "absent.png"), mismatched]
    assert all(str(path) in reason for path, reason in cache.skipped)  # each reason names its file
    assert "40x40" in skipped[mismatched] and "64x48" in skipped[mismatched]
    assert len(cache) == 3 and cache.images.shape == (3, SIZE, SIZE)
    pd.testing.assert_frame_equal(cache.manifest, manifest.iloc[[0, 2, 5]].reset_index(drop=True))
    original = io.read_image(manifest.loc[5, "image_path"])
    expected = cv2.resize(original, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(cache.images[2], expected)
    assert cache.has_lung.tolist() == [True, True, False]
    # the skipped list survives reuse
    again = build_cache(manifest, SIZE, cache_dir=tmp_path / "cache", progress=False)
    assert again.skipped == cache.skipped


def test_crash_mid_build_keeps_previous_cache(tmp_path, monkeypatch):
    manifest = _tree(tmp_path / "data")
    first = build_cache(manifest, SIZE, cache_dir=tmp_path / "cache", progress=False)
    before = {name.name: name.read_bytes() for name in first.path.iterdir()}
    path = manifest.loc[0, "image_path"]
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))

    calls = []
    original = io.read_image

    def interrupted(p, *args, **kwargs):
        calls.append(p)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(p, *args, **kwargs)

    monkeypatch.setattr(io, "read_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_cache(manifest, SIZE, cache_dir=tmp_path / "cache", progress=False)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [first.path.name]  # no half-built folder
    assert {name.name: name.read_bytes() for name in first.path.iterdir()} == before
    # restoring the file's time finds the old cache again, decoding nothing
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    calls.clear()
    again = build_cache(manifest, SIZE, cache_dir=tmp_path / "cache", progress=False)
    assert calls == [] and again.path == first.path


def test_pickle_reopens_files(tmp_path):
    cache = build_cache(_tree(tmp_path / "data"), SIZE, cache_dir=tmp_path / "cache", progress=False)
    data = pickle.dumps(cache)
    assert len(data) < cache.images.nbytes  # the pixels are not copied
    copy = pickle.loads(data)
    assert isinstance(copy.images, np.memmap) and copy.path == cache.path
    for name in ("images", "masks", "lungs", "has_mask", "has_lung"):
        np.testing.assert_array_equal(getattr(copy, name), getattr(cache, name))
    pd.testing.assert_frame_equal(copy.manifest, cache.manifest)


def test_corrupt_cache_is_rebuilt(tmp_path):
    manifest = _tree(tmp_path / "data", n=2)
    first = build_cache(manifest, SIZE, cache_dir=tmp_path / "cache", progress=False)
    expected = np.array(first.images)
    (first.path / "images.npy").write_bytes(b"garbage")
    again = build_cache(manifest, SIZE, cache_dir=tmp_path / "cache", progress=False)
    np.testing.assert_array_equal(again.images, expected)
    assert json.loads((again.path / "meta.json").read_text())["kept"] == 2


def test_parallel_build_matches_sequential(tmp_path):
    manifest = _tree(tmp_path / "data")
    sequential = build_cache(manifest, SIZE, cache_dir=tmp_path / "a", progress=False)
    parallel = build_cache(manifest, SIZE, cache_dir=tmp_path / "b", progress=False, workers=2)
    for name in ("images", "masks", "lungs", "has_mask", "has_lung"):
        np.testing.assert_array_equal(getattr(parallel, name), getattr(sequential, name))


@pytest.mark.parametrize("size", [0, -3, 22.5, "224"])
def test_bad_size(tmp_path, size):
    with pytest.raises(DataError, match="positive integer"):
        build_cache(_tree(tmp_path / "data", n=2), size, cache_dir=tmp_path / "cache", progress=False)


def test_real_samples(samples_root, tmp_path):
    images = sorted((samples_root / "Infection Segmentation Data" / "Test").glob("*/images/*.png"))[:3]
    rows = [
        {
            "image_path": str(p),
            "lung_mask_path": str(p.parent.parent / "lung masks" / p.name),
            "label": "control",
            "group": "I",
        }
        for p in images
    ]
    cache = build_cache(normalise_manifest(rows), 64, cache_dir=tmp_path / "cache", progress=False)
    assert cache.skipped == [] and cache.images.shape == (len(images), 64, 64)
    assert cache.has_lung.all() and all(0.05 < lung.mean() < 0.8 for lung in cache.lungs)
