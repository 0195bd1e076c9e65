"""``cxrmap predict`` at scale: throughput, memory, kill-and-resume, and films of 2-8 Mpx.

Three parts, each running ``cxrmap predict`` as a subprocess with a random-weight U-Net + DenseNet-121 at
the quick preset's input size (96 px):

(a) ``--images`` small phantom radiographs (default 10,000): images/s and the peak RSS of the largest
    process (the predicting process or one of its decoding workers);
(b) kill-and-resume on ``--resume-images`` of them: SIGKILL after ``--kill-after`` seconds, run again,
    then check exactly one row per image in predictions.csv and every map present;
(c) ``--films`` radiographs of 2-8 Mpx (the COVID-QU-Ex samples, or phantoms, upscaled with film-like
    noise, half PNG, half JPEG): end-to-end images/s (decode, inference, map, files written) of the
    in-process path with full-size maps (``--workers 0 --map-side 0``, the baseline), with 1024 px maps,
    and with decoding workers, measured in the same run, with ratios. Goal: at least 5 images/s on 2 cores.

"img/s" is the progress bar's rate (first file to last map written); "wall" adds starting the process
and loading the model.

Usage: ``python benchmarks/bench_predict.py [--images 10000] [--films 24] [--resume-images 1000]``
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from random_model import write_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = Path(os.environ.get("CXRMAP_SAMPLES", ROOT.parent / "shared" / "samples" / "covid-qu-ex"))
INPUT_SIZE = 96  # the quick preset's
FILM_SIZES = [(1700, 1400), (2000, 2000), (2500, 2300), (2900, 2700)]  # 2.4, 4.0, 5.8, 7.8 Mpx


def phantoms(folder: Path, n: int, size: int = 128, distinct: int = 64) -> Path:
    """``n`` phantom PNGs: ``distinct`` drawn cases, written over and over (fast for 10,000 files)."""
    from cxrmap.data.phantom.shapes import render_case

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    encoded = []
    for i in range(min(n, distinct)):
        image, _, _ = render_case(rng, size, "covid" if i % 3 == 0 else "normal")
        encoded.append(cv2.imencode(".png", image)[1].tobytes())
    for i in range(n):
        (folder / f"cxr{i:05d}.png").write_bytes(encoded[i % len(encoded)])
    return folder


def films(folder: Path, n: int) -> Path:
    """``n`` radiographs of 2-8 Mpx: samples (or phantoms) upscaled with noise, PNG and JPEG in turn."""
    folder.mkdir(parents=True)
    sources = sorted(SAMPLES.glob("*/*/images/*.png"))
    rng = np.random.default_rng(1)
    if sources:
        bases = [cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) for path in sources]
    else:
        from cxrmap.data.phantom.shapes import render_case

        bases = [render_case(rng, 256, kind)[0] for kind in ("covid", "normal", "covid", "normal")]
    for i in range(n):
        height, width = FILM_SIZES[i % len(FILM_SIZES)]
        film = cv2.resize(bases[i % len(bases)], (width, height), interpolation=cv2.INTER_CUBIC)
        noisy = np.clip(film + rng.normal(0, 3, film.shape), 0, 255).astype(np.uint8)  # a detector's grain
        if i % 2:
            cv2.imwrite(str(folder / f"film{i:03d}.jpg"), noisy, [cv2.IMWRITE_JPEG_QUALITY, 90])
        else:
            cv2.imwrite(str(folder / f"film{i:03d}.png"), noisy, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    return folder


def predict(images: Path, out: Path, model: Path, *options: str, kill_after: float | None = None) -> dict:
    """Run ``cxrmap predict`` (killed with SIGKILL after ``kill_after`` seconds if given).

    Returns ``wall`` seconds, ``rate`` (the progress bar's last img/s), ``rss_mib`` (peak RSS of the
    largest process of its tree) and ``killed``.
    """
    command = [sys.executable, "-m", "cxrmap", "predict", str(images), "--model", str(model),
               "--out", str(out), *options]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        child = subprocess.Popen(command, stdout=log, stderr=log, env=env, start_new_session=True)
        killed = False
        if kill_after is not None:
            try:
                child.wait(timeout=kill_after)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)  # the workers too
                killed = True
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        log.seek(0)
        text = log.read()
    if not killed and os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"cxrmap predict failed:\n{text[-3000:]}")
    rates = re.findall(r"([0-9.]+) img/s", text)
    return {
        "wall": wall,
        "rate": float(rates[-1]) if rates else float("nan"),
        "rss_mib": usage.ru_maxrss / 1024,
        "killed": killed,
    }


def check_complete(images: Path, out: Path) -> str:
    """Exactly one row per input image and every map present, or SystemExit saying what is wrong."""
    with open(out / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    paths = [row["path"] for row in rows]
    expected = sorted(str(path) for path in images.iterdir())
    missing = [row["map"] for row in rows if not (out / row["map"]).is_file()]
    if sorted(paths) != expected or missing:
        raise SystemExit(
            f"resume broken: {len(paths)} rows, {len(set(paths))} distinct, {len(expected)} images, "
            f"{len(missing)} maps missing"
        )
    return f"{len(rows)} rows, one per image, {len(rows)} maps present"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000, help="phantom images for (a); 0 skips it")
    parser.add_argument("--resume-images", type=int, default=1000, help="images for (b); 0 skips it")
    parser.add_argument("--kill-after", type=float, default=15.0, help="seconds before the SIGKILL in (b)")
    parser.add_argument("--films", type=int, default=24, help="films of 2-8 Mpx for (c); 0 skips it")
    parser.add_argument("--workers", type=int, default=None, help="decoding workers (default: cxrmap's)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from cxrmap.predict.stream import default_workers

    workers = default_workers() if args.workers is None else args.workers
    streaming = ["--workers", str(workers)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = write_checkpoint(work / "model.pt", INPUT_SIZE)
        print(
            f"U-Net + DenseNet-121 (random weights) at {INPUT_SIZE} px, batch 8; {workers} worker(s) default"
        )
        if args.images:
            data = phantoms(work / "phantoms", args.images)
            got = predict(data, work / "a", model, *streaming)
            check_complete(data, work / "a")
            print(f"(a) {args.images} phantoms of 128 px: {got['rate']:.1f} img/s "
                  f"({args.images / got['wall']:.1f} with start-up, {got['wall']:.0f} s wall), "
                  f"peak RSS {got['rss_mib']:.0f} MiB")  # fmt: skip
        if args.resume_images:
            data = phantoms(work / "resume", args.resume_images)
            first = predict(data, work / "b", model, *streaming, kill_after=args.kill_after)
            staged = sum(1 for _ in (work / "b" / ".predict-partial" / "maps").glob("*.png"))
            predict(data, work / "b", model, *streaming)
            verdict = check_complete(data, work / "b")
            print(f"(b) {args.resume_images} phantoms, SIGKILL after {args.kill_after:g} s "
                  f"({'killed' if first['killed'] else 'finished first'}, {staged} maps staged), "
                  f"rerun: {verdict}")  # fmt: skip
        if args.films:
            data = films(work / "films", args.films)
            one_worker = max(1, workers)
            variants = {
                "in-process, full-size maps (--workers 0 --map-side 0)": [
                    "--workers",
                    "0",
                    "--map-side",
                    "0",
                ],
                "in-process, 1024 px maps (--workers 0)": ["--workers", "0"],
                f"{one_worker} worker(s), 1024 px maps (--workers {one_worker})": [
                    "--workers",
                    str(one_worker),
                ],
            }
            print(f"(c) {args.films} films of 2-8 Mpx (PNG and JPEG):")
            base = None
            for index, (label, options) in enumerate(variants.items()):
                got = predict(data, work / f"c{index}", model, *options)
                base = base or got
                print(f"    {label:55s} {got['rate']:5.2f} img/s ({got['rate'] / base['rate']:.2f}x), "
                      f"wall {got['wall']:5.1f} s ({base['wall'] / got['wall']:.2f}x), "
                      f"peak RSS {got['rss_mib']:.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
