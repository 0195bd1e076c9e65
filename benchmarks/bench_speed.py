"""How much faster than eager fp32 is each path, and does it keep parity? One run, side by side.

Prints, against eager fp32 measured in the same run:

- the training step (U-Net + DenseNet-121, batch 8) at the quick preset's 96 px and the paper's 224 px:
  eager fp32, bf16 autocast where the CPU or GPU has native bf16, channels_last;
- inference at batch 1 and batch 16 for each backend of :mod:`cxrmap.predict.backends` (eager fp32,
  eager bf16 where native, channels_last, torch.compile, ONNX Runtime fp32 and int8), each
  with its ratio to eager fp32 and its parity figures on held-out phantom images: pixel F1 minus eager
  fp32's and the share of images with the same detection decision (the gate: 0.5 points, 99%).

Parity needs a trained network: ``--model PATH``, else the newest ``runs/*/model.pt``, else a quick-shaped
network trained here for about a minute on a small phantom (weak, but its maps are not noise).
Goals on a CPU: batch 1 at least 2.5x eager fp32 with parity; at least 4x where int8 keeps parity.

Usage: ``python benchmarks/bench_speed.py [--model PATH] [--repeats 10] [--compile] [--no-train-step]``
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def trained_model(args, work: Path):
    """``(model, meta, where it came from)``: --model, the newest runs/*/model.pt, or a minute of training."""
    from cxrmap.models.checkpoint import load_model

    candidates = sorted(ROOT.glob("runs/*/model.pt"), key=lambda path: path.stat().st_mtime)
    path = args.model or (candidates[-1] if candidates else None)
    if path is not None:
        model, meta = load_model(path)
        return model, meta, str(path)
    from cxrmap.data.cache import build_cache
    from cxrmap.data.phantom.shapes import generate
    from cxrmap.data.readers import index_dataset
    from cxrmap.train import get_preset, train

    config = get_preset("quick", epochs=args.train_epochs)
    root = generate(work / "phantom", n_covid=40, n_control=40, size=128, seed=0, progress=False)
    cache = build_cache(index_dataset(root, progress=False).manifest, config.size, work / "cache", False)
    import numpy as np

    result = train(config, cache, np.arange(len(cache)), out_dir=work / "run", progress=False, device="cpu")
    model, meta = load_model(result.model_path)
    return (
        model,
        meta,
        f"trained here: quick preset, {args.train_epochs} epochs, 80 phantom images, {result.seconds:.0f} s",
    )


def train_steps(size: int, repeats: int, device: str) -> list[tuple[str, float]]:
    """Seconds per training step (U-Net + DenseNet-121, batch 8, hybrid loss, Adam) for each path."""
    import torch

    from cxrmap.core.runtime import autocast, resolve_amp
    from cxrmap.models import create_model
    from cxrmap.predict import backends
    from cxrmap.train.losses import HybridLoss

    paths = [("eager fp32", None, False), ("channels_last", None, True)]
    bf16 = resolve_amp("auto", device)
    if bf16 is not None:
        paths.insert(1, (f"eager {str(bf16).removeprefix('torch.')}", bf16, False))
    images = torch.rand(8, 1, size, size, device=device)
    target = (torch.rand(8, 2, size, size, device=device) > 0.9).float()
    steps = {}
    for name, dtype, channels_last in paths:
        torch.manual_seed(0)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model = create_model("unet", "densenet121", classes=2).to(device, memory_format=fmt).train()
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
        loss_fn = HybridLoss()
        batch = images.contiguous(memory_format=fmt)

        def step(model=model, optimiser=optimiser, loss_fn=loss_fn, batch=batch, dtype=dtype):
            optimiser.zero_grad(set_to_none=True)
            with autocast(device, dtype):
                logits = model(batch)
            loss_fn(logits.float(), target).backward()
            optimiser.step()
            if device != "cpu":
                torch.cuda.synchronize()

        steps[name] = step
    return list(backends.measure(steps, repeats, warmup=1).items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="trained checkpoint for the parity figures")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per figure (median)")
    parser.add_argument("--train-epochs", type=int, default=3, help="epochs when a network is trained here")
    parser.add_argument(
        "--compile", action="store_true", help="measure torch.compile too (minutes to compile)"
    )
    parser.add_argument("--no-train-step", action="store_true", help="leave the training step out")
    args = parser.parse_args(argv)

    import torch

    from cxrmap.core.runtime import default_threads, machine, resolve_amp
    from cxrmap.predict import backends

    torch.set_num_threads(default_threads())
    info = machine()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {info.cpu}, {info.physical_cores} cores, features {', '.join(info.features) or '-'}; "
          f"{torch.get_num_threads()} threads; load average {load:.2f}")  # fmt: skip
    print("versions: " + ", ".join(f"{k} {v}" for k, v in backends.backend_versions().items() if v))

    if not args.no_train_step:
        print("\ntraining step, U-Net + DenseNet-121, batch 8 (random weights), s/step and speed-up:")
        for size in (96, 224):
            rows = train_steps(size, max(2, args.repeats // (5 if size == 224 else 3)), "cpu")
            base = rows[0][1]
            print(f"  {size} px: " + "; ".join(f"{name} {t:.3f} s ({base / t:.2f}x)" for name, t in rows))

    work = Path(tempfile.mkdtemp(prefix="cxrmap-speed-"))
    model, meta, source = trained_model(args, work)
    size = meta.input_size
    infection = list(meta.channels).index("infection")
    threshold = float(meta.get("threshold", 0.5))
    images, masks = backends.phantom_set(size, backends.GATE_IMAGES, backends.GATE_SEED)
    print(f"\ninference, {meta.arch} + {meta.encoder} at {size} px ({source})")
    print(f"parity on {len(images)} held-out phantom images ({int(masks.any(axis=(1, 2)).sum())} COVID-19)")

    reference = backends.TorchBackend(model)
    paths: list[tuple[str, object]] = [("eager fp32", lambda: reference)]
    if resolve_amp("auto", "cpu") is not None:
        paths.append(("eager bf16", lambda: backends.make_backend("torch-bf16", model, meta)))
    # Copies: these backends change the network they are given (memory format, compiled wrapper).
    paths.append(("channels_last", lambda: backends.TorchBackend(copy.deepcopy(model), channels_last=True)))
    if args.compile:
        paths.append(
            ("torch.compile", lambda: backends.make_backend("torch-compile", copy.deepcopy(model), meta))
        )
    for name in ("onnx", "onnx-int8"):
        paths.append(
            (name, lambda name=name: backends.make_backend(name, model, meta, work_dir=work / "onnx"))
        )

    expected = reference.probabilities(images)[:, infection]
    batch16 = images[:16]
    columns = ("batch 1 ms", "x eager", "b16 ms/img", "x eager", "F1 delta", "agree")
    print(
        f"  {'path':<14} "
        + " ".join(f"{c:>{w}}" for c, w in zip(columns, (10, 8, 11, 8, 9, 7), strict=True))
        + "  gate"
    )
    built, parities = {}, {}
    for name, build in paths:
        started = time.perf_counter()
        try:
            backend = build()
            probs = backend.probabilities(images)[:, infection]
        except Exception as error:  # a path that does not work here is reported, not fatal
            print(f"  {name:<14} unavailable: {type(error).__name__}: {str(error).splitlines()[0][:120]}")
            continue
        built[name] = (backend, time.perf_counter() - started)
        parities[name] = backends.parity(expected, probs, masks, threshold, name)
    one = backends.measure(
        {n: (lambda b=b: b.probabilities(images[:1])) for n, (b, _) in built.items()}, args.repeats
    )
    many = backends.measure(
        {n: (lambda b=b: b.probabilities(batch16)) for n, (b, _) in built.items()}, args.repeats // 3 or 1
    )
    base1, base16 = one["eager fp32"], many["eager fp32"]
    for name, (_, setup) in built.items():
        result = parities[name]
        gate = "pass" if result.passed else f"FAIL: {result.reason}"
        b1, b16 = 1000 * one[name], 1000 * many[name] / len(batch16)
        figures = f"{b1:>10.2f} {base1 / one[name]:>7.2f}x {b16:>11.2f} {base16 / many[name]:>7.2f}x"
        agreement = f"{result.f1_delta:>+9.2f} {100 * result.agreement:>6.1f}%"
        print(f"  {name:<14} {figures} {agreement}  {gate} (ready {setup:.0f} s)")
    chosen, _ = backends.select_backend(model, meta, work_dir=work / "onnx")
    print(f"backend auto on this machine: {chosen.name}; load average now {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
