"""Reading training items from the image cache vs decoding the PNGs, on a phantom dataset.

Generates (or reuses) a phantom set of 256 x 256 images, builds the cache at 224 x 224, then reads
random items (image + infection and lung masks into float tensors) both ways in the same run and prints
images per second and the ratio. Exits with status 1 when the cache is less than ``--min-ratio`` times
faster.

    python benchmarks/bench_cache.py [--out DIR] [--n-covid 100] [--n-control 200] [--reads 1000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cxrmap.data import phantom
from cxrmap.data.cache import build_cache, default_cache_dir, load_row
from cxrmap.data.dataset import SegmentationDataset
from cxrmap.data.readers import index_dataset

SIZE = 224


def decode_item(row: pd.Series) -> dict:
    """One item decoded from the files, resized and converted as the Dataset converts cached arrays."""
    image, mask, lung, _, has_lung = load_row(
        row["image_path"], row["mask_path"], row["lung_mask_path"], row["label"], SIZE
    )
    return {
        "image": torch.from_numpy(image.astype(np.float32)[None] / 255.0),
        "target": torch.from_numpy(np.stack([mask, lung]).astype(np.float32)),
        "has_lung": torch.tensor(has_lung),
    }


def rate(read, order: np.ndarray) -> float:
    """Items per second of ``read(i)`` over ``order`` (after a short warm-up)."""
    for i in order[:10]:
        read(int(i))
    start = time.perf_counter()
    for i in order:
        read(int(i))
    return len(order) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=default_cache_dir() / "bench-phantom",
        help="phantom folder (generated when absent)",
    )
    parser.add_argument("--n-covid", type=int, default=100)
    parser.add_argument("--n-control", type=int, default=200)
    parser.add_argument("--reads", type=int, default=1000, help="random reads from the cache")
    parser.add_argument("--min-ratio", type=float, default=10.0)
    args = parser.parse_args()

    if not (args.out / "phantom-metadata.csv").is_file():
        phantom.generate(args.out, n_covid=args.n_covid, n_control=args.n_control, size=256, seed=0)
    manifest = index_dataset(args.out, progress=False).manifest
    start = time.perf_counter()
    cache = build_cache(manifest, SIZE)
    print(
        f"cache: {len(cache)} images at {SIZE}px in {cache.path} ({time.perf_counter() - start:.1f} s to "
        f"build or open), {len(cache.skipped)} skipped"
    )

    rng = np.random.default_rng(0)
    dataset = SegmentationDataset(cache, np.arange(len(cache)))
    cached = rate(dataset.__getitem__, rng.integers(0, len(cache), args.reads))
    rows = cache.manifest
    decode_order = rng.integers(0, len(cache), max(args.reads // 10, 50))
    decoded = rate(lambda i: decode_item(rows.iloc[i]), decode_order)
    ratio = cached / decoded
    print(f"cache reads:  {cached:9.1f} images/s")
    print(f"PNG decoding: {decoded:9.1f} images/s (image + masks, decoded and resized)")
    print(f"ratio: {ratio:.1f}x (required: >= {args.min_ratio:g}x)")
    return 0 if ratio >= args.min_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
