"""Benchmark of the CT phantom: setup, speed, hardness, realism against real radiographs (DESIGN.md sec. 4).

Bars (exit code 1 if one is missed):
- setup: the one-time build of the attenuation slabs from the CT files <= 60 s (into a fresh cache);
- speed: >= 10 images/s at 256 x 256, whole :func:`~cxrmap.data.phantom.ct.generate` (rendering, PNG
  coding, writing), wall time with the threads ``OMP_NUM_THREADS`` allows (2 on the reference machine);
- (a) inside the lungs of COVID-19 images, raw pixel intensity separates lesion from healthy lung pixels
  with ROC AUC <= 0.80 (pooled pixels, best direction);
- (b) mean and max lung intensity separate COVID-19 from control group II with ROC AUC <= 0.65 each;
- (c) a logistic regression on the image border alone separates COVID-19 from controls with cross-validated
  AUC >= 0.95 when the source shortcut is on (1.0), and <= 0.60 when it is off (0.0).

Realism (printed, no bar): intensity histograms and radial power spectra inside the lung masks, rendered
vs the real samples (``$CXRMAP_SAMPLES``, default ``../shared/samples/covid-qu-ex``), as distances: the
Wasserstein distance between lung intensity distributions (grey levels / 255) and the RMS difference of the
mean log10 radial power spectra, for the CT phantom and for the 2D phantom. Pictures go to ``--out``
(a grid of each finding next to the real samples, histograms and spectra); a grid of rendered films alone
is written to ``docs/images/ct_phantom_grid.png``.

Run: ``OMP_NUM_THREADS=2 python benchmarks/bench_ct.py --out /tmp/bench-ct`` (about two minutes).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.stats import wasserstein_distance  # noqa: E402

from bench_phantom import best_auc, border_auc, group2_lung_aucs, load  # noqa: E402
from cxrmap.data.io import read_image, read_mask  # noqa: E402
from cxrmap.data.phantom import ct, ctvolume, shapes  # noqa: E402

SIZE = 256
SEED = 2024
REPO = Path(__file__).resolve().parents[1]
SAMPLES = Path(os.environ.get("CXRMAP_SAMPLES", REPO.parent / "shared" / "samples" / "covid-qu-ex"))
GRID = REPO / "docs" / "images" / "ct_phantom_grid.png"


def real_samples() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(class, image, lung mask) of each real sample, in name order; empty where the folder is absent."""
    root = SAMPLES / "Infection Segmentation Data" / "Test"
    rows = []
    for group in ("COVID-19", "Non-COVID", "Normal"):
        for path in sorted((root / group / "images").glob("*.png")):
            image = cv2.resize(read_image(path), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
            lung = (
                cv2.resize(read_mask(root / group / "lung masks" / path.name).view(np.uint8), (SIZE, SIZE))
                > 0
            )
            rows.append((group, image, lung))
    return rows


def radial_spectrum(image: np.ndarray, lung: np.ndarray, bins: int = 48) -> np.ndarray:
    """Log10 radial power spectrum of the lung region (mean removed, outside zeroed), normalised to sum 1."""
    values = image.astype(np.float64)
    values = np.where(lung, values - values[lung].mean(), 0.0) * np.outer(np.hanning(SIZE), np.hanning(SIZE))
    power = np.abs(np.fft.fftshift(np.fft.fft2(values))) ** 2
    y, x = np.indices(power.shape) - SIZE // 2
    radius = np.sqrt(x * x + y * y)
    edges = np.linspace(1, SIZE // 2, bins + 1)
    index = np.digitize(radius, edges) - 1
    keep = (index >= 0) & (index < bins)
    radial = np.bincount(index[keep], power[keep], bins) / np.maximum(np.bincount(index[keep], None, bins), 1)
    return np.log10(radial / radial.sum() + 1e-12)


def realism(films: list[tuple[np.ndarray, np.ndarray]], real: list[tuple[str, np.ndarray, np.ndarray]]):
    """(intensity distance, spectrum distance, pooled lung grey levels, mean spectrum) against ``real``."""
    values = np.concatenate([image[lung] for image, lung in films]) / 255.0
    real_values = np.concatenate([image[lung] for _, image, lung in real]) / 255.0
    spectrum = np.mean([radial_spectrum(image, lung) for image, lung in films], axis=0)
    real_spectrum = np.mean([radial_spectrum(image, lung) for _, image, lung in real], axis=0)
    return (
        float(wasserstein_distance(values, real_values)),
        float(np.sqrt(np.mean((spectrum - real_spectrum) ** 2))),
        values,
        spectrum,
    )


def tile(image: np.ndarray, label: str) -> np.ndarray:
    canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    cv2.putText(canvas, label, (4, SIZE - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 220, 255), 1, cv2.LINE_AA)
    return canvas


def pictures(out: Path, rendered, real, curves) -> None:
    """The comparison grid, histograms and spectra under ``out``; the rendered grid under docs/images."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [np.concatenate([tile(image, kind) for kind, image in rendered[i : i + 4]], 1) for i in (0, 4)]
    real_tiles = [tile(image, group) for group, image, _ in real]
    rows += [np.concatenate(real_tiles[i : i + 4], 1) for i in range(0, len(real_tiles), 4)]
    cv2.imwrite(str(out / "ct_vs_real.png"), np.concatenate(rows, 0))
    small = [cv2.resize(image, (160, 160), interpolation=cv2.INTER_AREA) for _, image in rendered]
    grid = np.concatenate([np.concatenate(small[i : i + 4], 1) for i in (0, 4)], 0)
    GRID.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(GRID), grid, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, (values, spectrum) in curves.items():
        left.hist(values, bins=64, range=(0, 1), density=True, histtype="step", label=name)
        right.plot(spectrum, label=name)
    left.set(title="grey levels inside the lungs", xlabel="grey level / 255")
    right.set(
        title="radial power spectrum inside the lungs", xlabel="radial frequency bin", ylabel="log10 share"
    )
    left.legend()
    right.legend()
    figure.tight_layout()
    figure.savefig(out / "histograms_spectra.png", dpi=90)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "bench-ct")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    results = []

    def report(name: str, value: float, bar: str, ok: bool) -> None:
        results.append(ok)
        print(f"{name:<58} {value:8.3f}   bar {bar:<8} {'PASS' if ok else 'FAIL'}")

    print(
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["CXRMAP_CACHE"] = str(tmp / "cache")
        ctvolume.load_volume.cache_clear()
        start = time.perf_counter()
        ctvolume.load_volume()
        report(
            "one-time setup into a fresh cache, s",
            time.perf_counter() - start,
            "<= 60",
            time.perf_counter() - start <= 60,
        )
        ctvolume.load_volume.cache_clear()
        start = time.perf_counter()
        ctvolume.load_volume()
        print(f"{'    reading the cached slabs, s':<58} {time.perf_counter() - start:8.3f}")

        wall, cpu = time.perf_counter(), time.process_time()
        ct.generate(tmp / "speed", n_covid=50, n_control=50, size=SIZE, seed=SEED + 1, progress=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"generate(): 100 images at {SIZE}px in {wall:.2f} s wall, {cpu:.2f} s CPU")
        report("generate() incl. PNG + files, images/s (wall time)", 100 / wall, ">= 10", 100 / wall >= 10)

        default = load(
            ct.generate(tmp / "default", n_covid=80, n_control=160, size=SIZE, seed=SEED, progress=False)
        )
        covid = default[default["finding"] == "covid"]
        pixels = np.concatenate(
            [image[lung] for image, lung in zip(covid["image"], covid["lung"], strict=True)]
        )
        lesion = np.concatenate(
            [infection[lung] for infection, lung in zip(covid["infection"], covid["lung"], strict=True)]
        )
        share = np.array(
            [
                infection[lung].mean()
                for infection, lung in zip(covid["infection"], covid["lung"], strict=True)
            ]
        )
        print(
            f"infection share of the lungs: min {share.min():.3f}, median {np.median(share):.3f}, "
            f"max {share.max():.3f}; pooled {lesion.mean():.3f}"
        )
        auc = best_auc(lesion, pixels)
        report("(a) lesion vs healthy lung pixels, raw intensity AUC", auc, "<= 0.80", auc <= 0.80)
        group2, aucs = group2_lung_aucs(covid, default)
        for name, auc in aucs.items():
            report(
                f"(b) COVID-19 vs group II ({group2}), {name} lung intensity AUC",
                auc,
                "<= 0.65",
                auc <= 0.65,
            )
        for shortcut, bar in ((1.0, ">= 0.95"), (0.0, "<= 0.60")):
            data = load(
                ct.generate(
                    tmp / f"s{shortcut}",
                    n_covid=120,
                    n_control=120,
                    size=SIZE,
                    seed=SEED + 7,
                    shortcut=shortcut,
                    progress=False,
                )
            )
            auc = border_auc(data)
            report(
                f"(c) border-only classifier, shortcut={shortcut}, CV AUC",
                auc,
                bar,
                auc >= 0.95 if shortcut else auc <= 0.60,
            )

        # Realism: each finding once (and the lung pixels of the whole default set) against the real samples.
        real = real_samples()
        rendered = [
            (kind, ct.draw(np.random.default_rng([SEED, 9, k]), SIZE, kind).image)
            for k, kind in enumerate(shapes.KINDS)
        ]
        ct_films = list(zip(default["image"], default["lung"], strict=True))
        shape_films = [
            shapes.render_case(
                np.random.default_rng([SEED, 5, i]), SIZE, shapes.KINDS[i % len(shapes.KINDS)]
            )[::2]
            for i in range(len(ct_films))
        ]
        if real:
            curves = {}
            for name, films in (("CT phantom", ct_films), ("2D phantom", shape_films)):
                intensity, spectrum, values, mean_spectrum = realism(films, real)
                curves[name] = (values, mean_spectrum)
                print(
                    f"realism, {name}: lung grey-level Wasserstein distance {intensity:.3f}, "
                    f"log radial spectrum RMS distance {spectrum:.3f}"
                )
            real_values = np.concatenate([image[lung] for _, image, lung in real]) / 255.0
            real_spectrum = np.mean([radial_spectrum(image, lung) for _, image, lung in real], axis=0)
            curves[f"real ({len(real)})"] = (real_values, real_spectrum)
            pictures(args.out, rendered, real, curves)
            kilobytes = GRID.stat().st_size // 1024
            print(f"pictures in {args.out}; rendered grid in {GRID.relative_to(REPO)} ({kilobytes} KB)")
        else:
            print(f"realism skipped: no real samples under {SAMPLES} (set CXRMAP_SAMPLES)")

    print("all bars met" if all(results) else f"{results.count(False)} bar(s) missed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
