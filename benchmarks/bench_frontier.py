"""Held-out figures against training time: the frontier of ``cxrmap run``'s default on a 2-core CPU.

Trains the ``quick`` preset's U-Net + DenseNet-121 from random weights on fold 0 of the default phantom
(``--phantom ct``: rendered from a real chest CT; ``shapes``: drawn in 2D) at each budget given by
``--points`` (``EPOCHSxSIZE``, e.g. ``3x96,6x96,9x96``), evaluates on the held-out fold with the paper's
rule and with the rule chosen on the fold's validation images (``detection_validated``), and prints one
line per point: training seconds (measured here, so run it on an otherwise idle machine), pixel F1,
detection sensitivity / specificity under both rules, detection AUC. ``OUT/frontier.csv`` keeps every
point measured in ``OUT`` (a point measured again replaces its row) and ``OUT/frontier.png`` plots them
against the training time, with the main job's bars (F1 0.70, sensitivity and specificity 0.90).

    python benchmarks/bench_frontier.py [--phantom ct] [--points 3x96,6x96,9x96] [--encoder E] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

BARS = {"f1": 0.70, "sensitivity": 0.90, "specificity": 0.90}


def parse_points(text: str) -> list[tuple[int, int]]:
    """``"3x96,6x128"`` -> ``[(3, 96), (6, 128)]`` (epochs, input side)."""
    points = []
    for item in text.split(","):
        epochs, _, size = item.strip().partition("x")
        if not (epochs.isdigit() and size.isdigit()):
            raise SystemExit(f"--points: expected EPOCHSxSIZE items such as 6x96, got {item!r}")
        points.append((int(epochs), int(size)))
    return points


def plot(rows: list[dict], path: Path) -> None:
    """Pixel F1 and detection sensitivity / specificity (validated rule) against training seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    seconds = [row["seconds"] for row in rows]
    for key, label, marker in (
        ("f1", "pixel F1", "o"),
        ("val_sensitivity", "detection sensitivity (validated rule)", "s"),
        ("val_specificity", "detection specificity (validated rule)", "^"),
    ):
        axis.plot(seconds, [row[key] for row in rows], marker=marker, linestyle="none", label=label)
    for row in rows:
        axis.annotate(
            row["point"], (row["seconds"], row["f1"]), textcoords="offset points", xytext=(-14, -14)
        )
    axis.axhline(BARS["f1"], color="grey", linestyle=":", linewidth=1)
    axis.axhline(BARS["sensitivity"], color="grey", linestyle="--", linewidth=1)
    axis.set_xlabel("training seconds, one fold (this machine)")
    axis.set_ylabel("held-out figure (fold 0)")
    axis.set_ylim(0, 1)
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phantom", default="ct", choices=("ct", "shapes"), help="the phantom's kind")
    parser.add_argument("--points", default="3x96,6x96,9x96", help="budgets: EPOCHSxSIZE, comma-separated")
    parser.add_argument("--validation-share", type=float, default=None, help="default: the preset's")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=0, help="phantom and training seed")
    parser.add_argument("--arch", default=None, help="decoder (default: the quick preset's, unet)")
    parser.add_argument("--encoder", default=None, help="encoder (default: the quick preset's, densenet121)")
    args = parser.parse_args(argv)
    points = parse_points(args.points)

    import pandas as pd

    from cxrmap.core.runtime import machine
    from cxrmap.data.cache import build_cache
    from cxrmap.data.phantom import generate
    from cxrmap.data.readers import index_dataset
    from cxrmap.data.splits import assign_folds, fold_indices
    from cxrmap.study.cv import train_and_evaluate
    from cxrmap.train import get_preset

    base = get_preset("quick", seed=args.seed, validation_share=args.validation_share)
    base = base.replace(arch=args.arch or base.arch, encoder=args.encoder or base.encoder)
    work = args.out or Path(tempfile.mkdtemp(prefix="cxrmap-frontier-"))
    root = work / f"phantom-{args.phantom}"
    if not (root / "metadata.csv").is_file():
        generate(root, kind=args.phantom, n_covid=base.phantom_covid, n_control=base.phantom_control,
                 size=256, seed=args.seed, progress=False)  # fmt: skip
    manifest = assign_folds(index_dataset(root, progress=False).manifest, k=base.folds, seed=base.seed)
    here = machine()
    print(f"machine: {here.cpu}, {here.physical_cores} cores, features: {', '.join(here.features) or 'none'}")
    print(
        f"{args.phantom} phantom: {len(manifest)} images, fold 0 of {base.folds}; validation share "
        f"{base.validation_share:g}; {base.arch} + {base.encoder}, random initial weights, "
        f"batch {base.batch_size}"
    )
    header = (
        f"{'point':>7} {'train s':>8} {'F1':>6} {'sens':>6} {'spec':>6} {'v.sens':>7} {'v.spec':>7} "
        f"{'AUC':>6}  validated rule"
    )
    print(header)
    rows = []
    default = get_preset("quick")
    changed = (base.arch, base.encoder) != (default.arch, default.encoder)
    model_label = f" {base.arch}:{base.encoder}" if changed else ""  # points of other models kept apart
    for epochs, size in points:
        config = base.replace(epochs=epochs, size=size)
        cache = build_cache(manifest, size, cache_dir=work / "cache", progress=False)
        train_idx, test_idx = fold_indices(cache.manifest, 0)
        started = time.perf_counter()
        point = f"{epochs}x{size}{model_label}"
        result, evaluation = train_and_evaluate(
            config, cache, train_idx, test_idx, work / f"fold0-{point.replace(' ', '-').replace(':', '-')}",
            resume=False, progress=False,
        )  # fmt: skip
        metrics = evaluation.metrics()
        seg, det = metrics["segmentation"], metrics["detection"]
        valid = metrics.get("detection_validated", det)
        row = {
            "point": point,
            "seconds": result.seconds,
            "wall": time.perf_counter() - started,
            "f1": seg["f1"],
            "sensitivity": det["sensitivity"],
            "specificity": det["specificity"],
            "val_sensitivity": valid["sensitivity"],
            "val_specificity": valid["specificity"],
            "auc": det["auc"],
            "rule": f"t {valid.get('threshold', 0.5):.3g}, area {100 * valid.get('min_area', 0.0):g}%",
        }
        rows.append(row)
        print(
            f"{row['point']:>7} {row['seconds']:>8.0f} {row['f1']:>6.3f} {row['sensitivity']:>6.3f} "
            f"{row['specificity']:>6.3f} {row['val_sensitivity']:>7.3f} {row['val_specificity']:>7.3f} "
            f"{row['auc']:>6.3f}  {row['rule']}",
            flush=True,
        )
    table = work / "frontier.csv"
    earlier = pd.read_csv(table) if table.is_file() else pd.DataFrame(columns=list(rows[0]))
    merged = pd.concat([earlier[~earlier["point"].isin([r["point"] for r in rows])], pd.DataFrame(rows)])
    merged = merged.sort_values("seconds")
    merged.to_csv(table, index=False)
    plot(merged.to_dict("records"), work / "frontier.png")
    print(f"table: {table}")
    print(f"plot: {work / 'frontier.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
