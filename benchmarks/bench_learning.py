"""Does the ``quick`` preset learn? U-Net + DenseNet-121 from random weights on the phantom, one fold.

Generates a fixed-seed phantom data set (COVID-19, control groups I and II, source shortcut on), trains
the ``quick`` preset on all folds but the first, evaluates on the held-out first fold and checks:

- pixel F1 over the test images (paper Table I, pixels of all test images)   >= 0.70
- detection sensitivity and specificity (any pixel >= 0.5, Table III)           >= 0.90
- training time                                                                 <  600 s

Prints the figures with their 95% intervals (Eq. 13) and PASS or FAIL; exits 1 on FAIL.

Usage: ``python benchmarks/bench_learning.py [--out DIR] [--device cpu]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

BARS = {"f1": 0.70, "sensitivity": 0.90, "specificity": 0.90, "seconds": 600.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--seed", type=int, default=0, help="phantom seed")
    args = parser.parse_args(argv)

    import torch

    from cxrmap.data.cache import build_cache
    from cxrmap.data.phantom.shapes import generate
    from cxrmap.data.readers import index_dataset
    from cxrmap.data.splits import assign_folds, fold_indices
    from cxrmap.evaluate.evaluation import evaluate_model
    from cxrmap.train import get_preset, load_model, train

    config = get_preset("quick")
    work = args.out or Path(tempfile.mkdtemp(prefix="cxrmap-bench-"))
    started = time.perf_counter()
    root = generate(work / "phantom", n_covid=config.phantom_covid, n_control=config.phantom_control,
                    seed=args.seed, shortcut=0.5, group2_share=0.5, progress=False)  # fmt: skip
    manifest = assign_folds(index_dataset(root, progress=False).manifest, k=config.folds, seed=config.seed)
    cache = build_cache(manifest, config.size, cache_dir=work / "cache", progress=False)
    prepared = time.perf_counter() - started
    train_idx, test_idx = fold_indices(cache.manifest, 0)
    print(
        f"phantom: {len(cache)} images (seed {args.seed}), {config.folds} folds; fold 0: {len(train_idx)} "
        f"training, {len(test_idx)} test; data ready in {prepared:.0f} s"
    )
    print(
        f"quick preset: size {config.size}, batch {config.batch_size}, {config.epochs} epochs, lr "
        f"{config.lr:g} ({config.schedule}), amp {config.amp}, torch threads {torch.get_num_threads()}"
    )

    result = train(config, cache, train_idx, None, work / "fold-0", progress=True, device=args.device)
    model, _ = load_model(result.model_path, device=args.device)
    started = time.perf_counter()
    metrics = evaluate_model(
        model, cache, test_idx, device=args.device, amp=config.amp, progress=False
    ).metrics()
    evaluated = time.perf_counter() - started

    seg, det = metrics["segmentation"], metrics["detection"]
    rows = [
        ("training time (s)", result.seconds, None, BARS["seconds"], result.seconds < BARS["seconds"]),
        ("pixel F1", seg["f1"], seg["f1_ci"], BARS["f1"], seg["f1"] >= BARS["f1"]),
        ("detection sensitivity", det["sensitivity"], det["sensitivity_ci"], BARS["sensitivity"],
         det["sensitivity"] >= BARS["sensitivity"]),
        ("detection specificity", det["specificity"], det["specificity_ci"], BARS["specificity"],
         det["specificity"] >= BARS["specificity"]),
    ]  # fmt: skip
    print(
        f"\nfinal training loss {result.history[-1]['train_loss']:.4f}; evaluation {evaluated:.1f} s; "
        f"COVID-19-only pixel F1 {metrics['segmentation_covid']['f1']:.4f}; pixel AUC {seg['auc']:.4f}; "
        f"detection AUC {det['auc']:.4f}; detection tp {det['tp']} fn {det['fn']} tn {det['tn']} "
        f"fp {det['fp']}"
    )
    print(f"{'measure':<24}{'value':>10}{'95% CI':>10}   bar")
    for name, value, ci, bar, ok in rows:
        interval = f"±{ci:.4f}" if ci is not None else ""
        relation = "<" if name.startswith("training") else ">="
        print(f"{name:<24}{value:>10.4f}{interval:>10}   {relation} {bar:g}  {'ok' if ok else 'MISSED'}")
    passed = all(ok for *_, ok in rows)
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
