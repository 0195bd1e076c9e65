"""The collaborative annotation workflow (paper Sec. II-B) on phantoms with simulated reviewers.

Runs :func:`cxrmap.serving.annotate.simulate.run_simulation` -- import, Stage I (networks in k-fold
cross-validation on hurried "manual" masks), blinded reviews, Stage II (networks trained on the chosen
masks), reviews, export, ``cxrmap index`` -- through the HTTP API with real training, and prints the mean
Dice to the true phantom masks of (a) the degraded manual masks and (b) the final accepted masks, and the
share of machine-chosen masks per stage. The paper's claim is that (b) beats (a); the paper reports the
doctors preferring the machine mask in three of five Stage I cases and drawing under 5% of Stage II masks.
Exits with status 1 when (b) does not beat (a) on the manual images.

    python benchmarks/bench_annotate.py [--out DIR] [--images 48] [--epochs 12] [--threads 1]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from cxrmap.serving.annotate.simulate import SimulationConfig, run_simulation


def main() -> int:
    defaults = SimulationConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=None, help="new folder for the run (default: a temporary one)"
    )
    parser.add_argument("--images", type=int, default=defaults.n_images, help="COVID-19 phantoms")
    parser.add_argument("--size", type=int, default=defaults.size, help="image size in pixels")
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="epochs per network")
    parser.add_argument("--folds", type=int, default=defaults.folds, help="Stage I folds")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (1: fastest on a busy CPU)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="cxrmap-bench-annotate-")) / "run"
    config = SimulationConfig(
        n_images=args.images,
        size=args.size,
        epochs=args.epochs,
        folds=args.folds,
        threads=args.threads,
        seed=args.seed,
    )
    try:
        result = run_simulation(out, config, progress=False)
    finally:
        if args.out is None:
            shutil.rmtree(out.parent, ignore_errors=True)
    print(
        f"images: {result['images']} ({result['manual_images']} with hurried manual masks), "
        f"{config.size} px; Stage I: {config.stage1_networks} x {config.folds} folds; "
        f"Stage II: {config.stage2_networks}; {config.epochs} epochs"
    )
    print(f"(a) mean Dice of the manual masks to the truth:           {result['manual_dice']:.3f}")
    print(
        f"(b) mean Dice of the accepted masks, same images:         {result['final_dice_manual_subset']:.3f}"
    )
    print(f"    mean Dice of the accepted masks, all images:          {result['final_dice']:.3f}")
    print(
        f"machine-chosen share: Stage I {result['machine_share_stage1']}, Stage II "
        f"{result['machine_share_stage2']} (drawn by hand in Stage II: {result['drawn_share_stage2']})"
    )
    print(f"wall time {result['wall_time_s']} s: {result['timings_s']}")
    return 0 if result["final_dice_manual_subset"] > result["manual_dice"] else 1


if __name__ == "__main__":
    sys.exit(main())
