"""Benchmark of the phantom generator: single-core speed and how hard the phantoms are (DESIGN.md sec. 4).

Bars (exit code 1 if one is missed):
- speed: >= 100 images/s at 256 x 256 on one core, whole :func:`generate` (drawing, PNG coding, writing),
  counted in CPU time of this single-threaded process so that other work on the machine does not count;
- (a) inside the lungs of COVID-19 images, raw pixel intensity separates lesion from healthy lung pixels
  with ROC AUC < 0.8 (pooled pixels, best direction);
- (b) mean and max lung intensity separate COVID-19 from control group II with ROC AUC < 0.85 each;
- (c) a logistic regression on the image border alone separates COVID-19 from controls with cross-validated
  AUC > 0.9 when the source shortcut is on (1.0), and < 0.6 when it is off (0.0).

Run: ``python benchmarks/bench_phantom.py`` (about a minute).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cxrmap.data.io import read_image, read_mask
from cxrmap.data.phantom.shapes import METADATA, generate, render_case

SIZE = 256
SEED = 2024


def load(root: Path) -> pd.DataFrame:
    """Read back a generated data set: one row per image with its arrays and finding."""
    meta = pd.read_csv(root / METADATA, dtype=str)
    rows = []
    for image, finding in zip(meta["image"], meta["finding"], strict=True):
        name = Path(image)
        mask = (
            root / name.parent.parent / "Ground-truths" / f"mask_{name.name}" if finding == "covid" else None
        )
        rows.append(
            {
                "finding": finding,
                "image": read_image(root / image),
                "lung": read_mask(root / "Lung-masks" / image),
                "infection": read_mask(mask) if mask else None,
            }
        )
    return pd.DataFrame(rows)


def best_auc(labels, scores) -> float:
    """ROC AUC in the better direction: how well the score separates the classes, whichever way round."""
    auc = roc_auc_score(labels, scores)
    return max(auc, 1.0 - auc)


def group2_lung_aucs(covid: pd.DataFrame, default: pd.DataFrame) -> tuple[int, dict[str, float]]:
    """COVID-19 against the group II images of ``default`` by the mean and by the max raw intensity inside
    the lungs: ``(number of group II images, {"mean": AUC, "max": AUC})``."""
    group2 = default[~default["finding"].isin(("covid", "normal"))]
    both = pd.concat([covid, group2])
    labels = (both["finding"] == "covid").to_numpy()
    aucs = {
        name: best_auc(
            labels, [score(image[lung]) for image, lung in zip(both["image"], both["lung"], strict=True)]
        )
        for name, score in (("mean", np.mean), ("max", np.max))
    }
    return len(group2), aucs


def border_features(image: np.ndarray, strip: int = 8, corner: int = 16) -> list[float]:
    """Mean and standard deviation of the four border strips and the four corner patches."""
    parts = [image[:strip], image[-strip:], image[:, :strip], image[:, -strip:]]
    parts += [
        image[:corner, :corner],
        image[:corner, -corner:],
        image[-corner:, :corner],
        image[-corner:, -corner:],
    ]
    return [float(f(p)) for p in parts for f in (np.mean, np.std)]


def border_auc(data: pd.DataFrame) -> float:
    """Cross-validated AUC of a logistic regression on border features, COVID-19 vs control."""
    features = np.array([border_features(image) for image in data["image"]])
    labels = (data["finding"] == "covid").to_numpy().astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    return float(cross_val_score(model, features, labels, cv=folds, scoring="roc_auc").mean())


def main() -> int:
    cv2.setNumThreads(1)
    results = []

    def report(name: str, value: float, bar: str, ok: bool) -> None:
        results.append(ok)
        print(f"{name:<58} {value:8.3f}   bar {bar:<8} {'PASS' if ok else 'FAIL'}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # Speed: the whole generator, then drawing alone.
        wall, cpu = time.perf_counter(), time.process_time()
        generate(tmp / "speed", n_covid=100, n_control=100, size=SIZE, seed=SEED + 1, progress=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        rng_cpu = time.process_time()
        for i in range(100):
            render_case(np.random.default_rng([SEED, i]), SIZE, ("covid", "normal", "edema", "nodule")[i % 4])
        draw_rate = 100 / (time.process_time() - rng_cpu)
        print(f"generate(): 200 images at {SIZE}px in {wall:.2f} s wall, {cpu:.2f} s CPU (one thread)")
        print(f"{'drawing alone, images/s (CPU time)':<58} {draw_rate:8.1f}")
        print(f"{'generate() incl. PNG + files, images/s (wall time)':<58} {200 / wall:8.1f}")
        report("generate() incl. PNG + files, images/s (CPU time)", 200 / cpu, ">= 100", 200 / cpu >= 100)

        # Difficulty on the default shortcut, with both control groups.
        default = load(
            generate(tmp / "default", n_covid=150, n_control=240, size=SIZE, seed=SEED, progress=False)
        )
        covid = default[default["finding"] == "covid"]
        pixels = np.concatenate(
            [image[lung] for image, lung in zip(covid["image"], covid["lung"], strict=True)]
        )
        lesion = np.concatenate(
            [infection[lung] for infection, lung in zip(covid["infection"], covid["lung"], strict=True)]
        )
        share = np.array([infection.mean() for infection in covid["infection"]])
        print(
            f"infection mask share of the image: min {share.min():.3f}, median {np.median(share):.3f}, "
            f"max {share.max():.3f}; lesion share of lung pixels {lesion.mean():.3f}"
        )
        report(
            "(a) lesion vs healthy lung pixels, raw intensity AUC",
            best_auc(lesion, pixels),
            "< 0.8",
            best_auc(lesion, pixels) < 0.8,
        )
        group2, aucs = group2_lung_aucs(covid, default)
        for name, auc in aucs.items():
            report(
                f"(b) COVID-19 vs group II ({group2}), {name} lung intensity AUC",
                auc,
                "< 0.85",
                auc < 0.85,
            )
        print(f"{'    border-feature AUC at the default shortcut 0.5 (info)':<58} {border_auc(default):8.3f}")

        # The source shortcut, on and off.
        for shortcut, bar in ((1.0, "> 0.9"), (0.0, "< 0.6")):
            data = load(
                generate(
                    tmp / f"s{shortcut}",
                    n_covid=150,
                    n_control=150,
                    size=SIZE,
                    seed=SEED + 7,
                    shortcut=shortcut,
                    progress=False,
                )
            )
            auc = border_auc(data)
            ok = auc > 0.9 if shortcut else auc < 0.6
            report(f"(c) border-only classifier, shortcut={shortcut}, CV AUC", auc, bar, ok)

    print("all bars met" if all(results) else f"{results.count(False)} bar(s) missed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
