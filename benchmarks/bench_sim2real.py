"""Sim-to-real: U-Net + DenseNet-121 trained on a phantom only, run on the real samples (DESIGN.md sec. 4).

For each phantom kind (``ct``: rendered from the chest CT; ``shapes``: the 2D phantom), writes a phantom
data set, trains the ``quick`` preset from random weights on all of it, and runs the model on the 12 real
COVID-QU-Ex samples (``$CXRMAP_SAMPLES``, default ``../shared/samples/covid-qu-ex``): the Dice of the
infection map (probability >= the threshold) against each of the 4 COVID-19 masks, and the detection
decision (any pixel >= the threshold, paper Sec. II-D) on all 12. No bar: it prints the figures.

The quick preset trains for minutes on a CPU (about 10 on two cores); ``--epochs``, ``--covid`` and
``--control`` shorten it. Run: ``python benchmarks/bench_sim2real.py [--device cuda]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cxrmap.data.cache import build_cache
from cxrmap.data.io import read_image, read_mask
from cxrmap.data.phantom import generate
from cxrmap.data.readers import index_dataset
from cxrmap.predict.predictor import Predictor
from cxrmap.serving.annotate.masks import dice
from cxrmap.train import get_preset, train

REPO = Path(__file__).resolve().parents[1]
SAMPLES = Path(os.environ.get("CXRMAP_SAMPLES", REPO.parent / "shared" / "samples" / "covid-qu-ex"))


def real_samples() -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(class, name, image, infection mask) of each real sample."""
    root = SAMPLES / "Infection Segmentation Data" / "Test"
    rows = []
    for group in ("COVID-19", "Non-COVID", "Normal"):
        for path in sorted((root / group / "images").glob("*.png")):
            mask = read_mask(root / group / "infection masks" / path.name)
            rows.append((group, path.name, read_image(path), mask))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=["ct", "shapes"], choices=["ct", "shapes"])
    parser.add_argument("--epochs", type=int, default=None, help="default: the quick preset's")
    parser.add_argument("--covid", type=int, default=None, help="COVID-19 images (default: the preset's)")
    parser.add_argument("--control", type=int, default=None, help="control images (default: the preset's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args(argv)
    real = real_samples()
    if not real:
        print(f"no real samples under {SAMPLES} (set CXRMAP_SAMPLES)")
        return 1
    config = get_preset("quick", epochs=args.epochs)
    work = args.out or Path(tempfile.mkdtemp(prefix="cxrmap-sim2real-"))
    for kind in args.kinds:
        started = time.perf_counter()
        root = generate(
            work / kind,
            kind=kind,
            n_covid=args.covid or config.phantom_covid,
            n_control=args.control or config.phantom_control,
            size=256,
            seed=0,
            progress=False,
        )
        cache = build_cache(
            index_dataset(root, progress=False).manifest,
            config.size,
            cache_dir=work / "cache",
            progress=False,
        )
        result = train(config, cache, np.arange(len(cache)), None, work / f"{kind}-run", progress=False,
                       device=args.device)  # fmt: skip
        predictor = Predictor.from_checkpoint(result.model_path, device=args.device)
        predictions = predictor.predict([image for _, _, image, _ in real])
        print(f"\n{kind} phantom: {len(cache)} images, {config.epochs} epochs, "
              f"{time.perf_counter() - started:.0f} s; threshold {predictor.threshold:g}")  # fmt: skip
        scores = []
        for (group, name, _, mask), prediction in zip(real, predictions, strict=True):
            said = "COVID-19" if prediction.covid else "no"
            line = f"  {group:<10} {name:<24} score {prediction.score:.3f} -> {said}"
            if group == "COVID-19":
                scores.append(dice(prediction.prob >= predictor.threshold, mask))
                line += f", Dice {scores[-1]:.3f}"
            print(line)
        covid = np.array([group == "COVID-19" for group, *_ in real])
        said = np.array([prediction.covid for prediction in predictions])
        print(
            f"  mean Dice of the COVID-19 masks {np.mean(scores):.3f}; detected {said[covid].sum()}/"
            f"{covid.sum()} COVID-19, {said[~covid].sum()}/{(~covid).sum()} controls called COVID-19"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
