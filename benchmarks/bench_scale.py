"""The study's data path at the paper's Group-II scale: a QaTa-COV19-shaped tree of 120,000 images.

Builds (or reuses) a tree in the real layout, Table V's class shares: QaTa-COV19-v1 COVID-19 images with
masks, Control_Group_I, Control_Group_II with CHESTXRAY-14/{Train,Test} (plus Data_Entry_2017.csv,
train_val_list.txt and test_list.txt), Pediatric_Bacterial_Pneumonia and Pediatric_Viral_Pneumonia. Every
file is a hard link of one of a few small PNGs, so the tree costs inodes, not gigabytes (and decoding
runs from the page cache: an optimistic bound for a real disk). Then measures, in one run:

- indexing (files/s, :func:`cxrmap.data.readers.index_dataset`, what ``cxrmap index`` runs), with the
  process's peak RSS;
- the Group-I folds and the Group-II split over the whole manifest (seconds);
- the cache build at 224 px (images/s, bytes on disk) over ``--cache-images`` of the rows, extrapolated
  to the whole set;
- loader throughput at 224 px with augmentation, 0 and 2 workers (images/s), against what a GPU
  training step would need (forward and backward taken as 3x the paper's 2.58 ms per image on a 2080 Ti);
- one epoch of a tiny model over ``--epoch-images`` rows, extrapolated to a whole balanced Group-I epoch;
- a kill-and-resume of a sharded study: ``cxrmap reproduce table1 --shard 0/2`` on a small phantom, killed
  once its first checkpoint exists, run again (it resumes), and shard 1/2 after it.

Bars: peak RSS at 120,000 images <= 4 GB; indexing >= 2,000 files/s (exit status 1 when missed).

    python benchmarks/bench_scale.py [--images 120000] [--out DIR] [--cache-images 2000]
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cxrmap.core.images import save_png
from cxrmap.data.cache import build_cache
from cxrmap.data.dataset import SegmentationDataset
from cxrmap.data.readers import index_dataset
from cxrmap.data.splits import assign_folds, fold_indices
from cxrmap.study.reproduce import group_i_manifest, group_ii_manifest
from cxrmap.train.loop import LAST, train
from cxrmap.train.presets import get_preset

SHARES = {  # Table V / Table II proportions of the ~120k images
    "covid": 2951,
    "group1": 12544,
    "chest_train": 86524,
    "chest_test": 25596,
    "bacterial": 2760,
    "viral": 1485,
}
PAPER_MS = 2.58
"""U-Net DenseNet-121 inference per image on the paper's RTX 2080 Ti (Table VIII)."""
RSS_BAR_GB, INDEX_BAR = 4.0, 2000.0


def peak_rss_gb() -> float:
    """This process's peak resident set size so far (GB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def build_tree(root: Path, images: int, side: int = 256) -> dict[str, int]:
    """The QaTa-shaped tree of ``images`` hard-linked files (reused when its stamp says the same size)."""
    stamp = root / "bench-scale.txt"
    total = sum(SHARES.values())
    counts = {name: max(2, round(images * share / total)) for name, share in SHARES.items()}
    if stamp.is_file() and stamp.read_text() == repr(counts):
        return counts
    shutil.rmtree(root, ignore_errors=True)
    sources = root / ".sources"
    rng = np.random.default_rng(0)
    originals = []
    for i in range(4):
        path = sources / f"image_{i}.png"
        save_png(path, rng.integers(0, 255, (side, side), dtype=np.uint8))
        originals.append(path)
    mask = np.zeros((side, side), np.uint8)
    mask[side // 4 : side // 2, side // 4 : side // 2] = 255
    save_png(sources / "mask.png", mask)

    def link(target: Path, number: int) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(originals[number % len(originals)], target)

    qata = root / "QaTa-COV19" / "QaTa-COV19-v1"
    (qata / "Ground-truths").mkdir(parents=True)
    for i in range(counts["covid"]):
        link(qata / "Images" / f"covid_{i}.png", i)
        os.link(sources / "mask.png", qata / "Ground-truths" / f"mask_covid_{i}.png")
    group = root / "QaTa-COV19" / "Control_Group"
    for i in range(counts["group1"]):
        link(group / "Control_Group_I" / f"normal_{i}.png", i)
    chest = group / "Control_Group_II" / "CHESTXRAY-14"
    names = {"Train": [], "Test": []}
    for split, key in (("Train", "chest_train"), ("Test", "chest_test")):
        for i in range(counts[key]):
            name = f"{i:08d}_{split == 'Test':03d}.png"
            names[split].append(name)
            link(chest / split / name, i)
    with open(chest / "Data_Entry_2017.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Image Index", "Finding Labels"])
        for i, name in enumerate(names["Train"] + names["Test"]):
            writer.writerow([name, ("No Finding", "Infiltration", "Effusion|Atelectasis")[i % 3]])
    (chest / "train_val_list.txt").write_text("\n".join(names["Train"]) + "\n")
    (chest / "test_list.txt").write_text("\n".join(names["Test"]) + "\n")
    for folder, key in (
        ("Pediatric_Bacterial_Pneumonia", "bacterial"),
        ("Pediatric_Viral_Pneumonia", "viral"),
    ):
        for i in range(counts[key]):
            link(group / "Control_Group_II" / folder / f"{key}_{i}.png", i)
    stamp.write_text(repr(counts))
    return counts


def loader_rate(cache, rows: np.ndarray, workers: int, batches: int, batch_size: int = 32) -> float:
    """Images per second the training DataLoader gives at the cache's size with augmentation."""
    dataset = SegmentationDataset(cache, rows, balance=True, augment=True, seed=0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers)
    seen, started = 0, None
    for step, batch in enumerate(loader):
        if step == 1:  # the first batch pays for starting the workers
            started, seen = time.perf_counter(), 0
        seen += len(batch["image"])
        if step > batches:
            break
    return seen / (time.perf_counter() - started)


def kill_and_resume(work: Path) -> dict:
    """A sharded study on a small phantom: killed at its first checkpoint, resumed, then the other shard."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CXRMAP_CACHE": str(work / "cache")}
    cli = [sys.executable, "-m", "cxrmap"]
    subprocess.run(
        [
            *cli,
            "phantom",
            str(work / "data"),
            "--n-covid",
            "8",
            "--n-control",
            "16",
            "--size",
            "64",
            "--quiet",
        ],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    study = [
        *cli,
        "reproduce",
        "table1",
        "--data",
        str(work / "data"),
        "--out",
        str(work / "study"),
        "--archs",
        "unet",
        "--encoders",
        "densenet121",
        "--folds",
        "2",
        "--epochs",
        "3",
        "--size",
        "32",
        "--batch-size",
        "4",
        "--quiet",
    ]
    started = time.perf_counter()
    process = subprocess.Popen(
        [*study, "--shard", "0/2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    while not list((work / "study").glob(f"group-i/cv/*/fold-*/{LAST}")) and process.poll() is None:
        time.sleep(0.2)
    killed_after = time.perf_counter() - started
    process.send_signal(signal.SIGKILL)
    process.wait()
    started = time.perf_counter()
    subprocess.run([*study, "--shard", "0/2"], check=True, env=env, stdout=subprocess.DEVNULL)
    resumed = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run([*study, "--shard", "1/2"], check=True, env=env, stdout=subprocess.DEVNULL)
    other = time.perf_counter() - started
    done = len(list((work / "study").glob("group-i/cv/*/fold-*/done.json")))
    tables = (work / "study" / "tables" / "table1.md").is_file()
    return {
        "killed_after_s": killed_after,
        "resume_s": resumed,
        "other_shard_s": other,
        "done": done,
        "tables": tables,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=120_000, help="images in the tree (paper: ~120,000)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "cxrmap-bench-scale")
    parser.add_argument("--cache-images", type=int, default=2000, help="rows the cache is built for")
    parser.add_argument("--epoch-images", type=int, default=64, help="rows of the tiny model's epoch")
    parser.add_argument("--batches", type=int, default=10, help="loader batches measured per worker count")
    parser.add_argument("--skip-resume", action="store_true", help="leave out the kill-and-resume")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = args.out
    started = time.perf_counter()
    counts = build_tree(out / "tree", args.images)
    files = sum(counts.values()) + counts["covid"]
    print(
        f"tree: {sum(counts.values()):,} images ({counts}), "
        f"built/reused in {time.perf_counter() - started:.1f} s"
    )

    started = time.perf_counter()
    manifest = index_dataset(out / "tree", progress=False).manifest
    seconds = time.perf_counter() - started
    index_rate = files / seconds
    rss = peak_rss_gb()
    print(
        f"indexing: {len(manifest):,} rows, {files:,} files in {seconds:.1f} s = {index_rate:,.0f} files/s "
        f"(bar {INDEX_BAR:,.0f}); peak RSS {rss:.2f} GB (bar {RSS_BAR_GB:g})"
    )

    started = time.perf_counter()
    group_i = assign_folds(group_i_manifest(manifest), k=5, seed=0)
    folds_s = time.perf_counter() - started
    started = time.perf_counter()
    group_ii, _ = group_ii_manifest(manifest, out / "tree", seed=0)
    split_s = time.perf_counter() - started
    print(
        f"folds: Group I ({len(group_i):,} rows, 5 folds) {folds_s:.2f} s; Group-II split "
        f"({len(group_ii):,} rows, test {int((group_ii['split'] == 'test').sum()):,}) {split_s:.2f} s"
    )

    subset = group_i.sample(n=min(args.cache_images, len(group_i)), random_state=0)
    subset = assign_folds(subset, k=5, seed=0)
    cache_dir = out / "cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    started = time.perf_counter()
    cache = build_cache(subset, 224, cache_dir=cache_dir, progress=False)
    cache_s = time.perf_counter() - started
    size = sum(p.stat().st_size for p in cache_dir.rglob("*") if p.is_file())
    print(
        f"cache at 224 px: {len(cache):,} images in {cache_s:.1f} s = {len(cache) / cache_s:,.0f} images/s, "
        f"{size / 1e6:,.0f} MB; extrapolated to {len(manifest):,}: "
        f"{size / len(cache) * len(manifest) / 1e9:.1f} GB, "
        f"{cache_s / len(cache) * len(manifest) / 60:.0f} min"
    )

    needed = 1000.0 / (3 * PAPER_MS)
    train_rows, _ = fold_indices(cache.manifest, 0)
    for workers in (0, 2):
        rate = loader_rate(cache, train_rows, workers, args.batches)
        print(
            f"loader, 224 px, augmented, {workers} workers: {rate:,.0f} images/s "
            f"({rate / needed:.2f}x the ~{needed:.0f} images/s a 2080 Ti training step needs)"
        )
    print(f"peak RSS so far: {peak_rss_gb():.2f} GB")

    config = get_preset(
        "quick", size=224, epochs=1, batch_size=min(8, args.epoch_images), encoder="resnet18", augment=True
    )
    rows = train_rows[: args.epoch_images]
    started = time.perf_counter()
    train(config, cache, rows, None, out / "epoch", progress=False, device="cpu")
    epoch_s = time.perf_counter() - started
    labels = group_i["label"].to_numpy()
    balanced = 2 * int((labels != "covid").sum() * 0.8)
    print(
        f"tiny model (U-Net ResNet-18, 224 px, CPU, 1 thread): {args.epoch_images} rows + balancing repeats "
        f"in {epoch_s:.1f} s; a balanced Group-I training epoch of ~{balanced:,} items extrapolates to "
        f"{epoch_s / max(1, len(rows)) * balanced / 3600:.1f} h here"
    )

    if not args.skip_resume:
        shutil.rmtree(out / "resume", ignore_errors=True)
        result = kill_and_resume(out / "resume")
        print(
            "sharded study: shard 0/2 killed at its first checkpoint after "
            f"{result['killed_after_s']:.1f} s, "
            f"resumed in {result['resume_s']:.1f} s, shard 1/2 in {result['other_shard_s']:.1f} s; "
            f"{result['done']} jobs done, tables written: {result['tables']}"
        )
    failed = []
    if args.images >= 120_000 and rss > RSS_BAR_GB:
        failed.append(f"peak RSS {rss:.2f} GB > {RSS_BAR_GB} GB")
    if index_rate < INDEX_BAR:
        failed.append(f"indexing {index_rate:,.0f} files/s < {INDEX_BAR:,.0f}")
    print("bars: " + ("; ".join(failed) if failed else "met"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
