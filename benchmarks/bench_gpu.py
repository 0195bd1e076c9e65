"""GPU speed of every path: training images/s and inference ms/image, for U-Net, UNet++ and DLA.

For each architecture with DenseNet-121 (random weights, the paper's 224 px):

- training images/s at batch 32: fp32, AMP bf16, AMP fp16 (with gradient scaling), channels_last (bf16),
  torch.compile (bf16);
- inference ms/image at batch 1 and 64: eager fp32, AMP bf16, torch.compile (bf16), CUDA graphs (bf16),
  and ONNX Runtime's CUDA and TensorRT execution providers where the installed build has them (their
  figures include copying the batch in and the logits out; the others stay on the GPU).

A time budget (``--budget`` seconds, default 420) keeps the whole run within ``benchmarks/gpu.sh``'s 8
minutes: what no longer fits is printed as skipped. ``--device cpu --tiny`` runs every path that works on
a CPU on a tiny setting (ResNet-18, 64 px, batch 2, one timed run) so the script is known to run where
there is no GPU.

Usage: ``python benchmarks/bench_gpu.py [--device cuda] [--tiny] [--budget 420] [--archs unet,dla]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from random_model import random_network


class Budget:
    """Seconds left of the run; a measurement that would start past the end is skipped."""

    def __init__(self, seconds: float) -> None:
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()


def timed(run, repeats: int, warmup: int, sync) -> float:
    """Median seconds of ``run()`` after ``warmup`` calls, synchronising the device around each."""
    for _ in range(warmup):
        run()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def training_paths(device: str, tiny: bool) -> list[tuple[str, object, bool, bool]]:
    """``(name, autocast dtype, channels_last, compile)`` of each training path that runs on ``device``."""
    import torch

    cuda = device.startswith("cuda")
    paths = [("fp32", None, False, False), ("amp bf16", torch.bfloat16, False, False)]
    if cuda:
        paths.append(("amp fp16", torch.float16, False, False))
    paths.append(("channels_last bf16", torch.bfloat16, True, False))
    if cuda or not tiny:  # compiling takes minutes on a small CPU
        paths.append(("compile bf16", torch.bfloat16, False, True))
    return paths


def bench_training(arch, encoder, size, batch, device, tiny, budget, repeats) -> None:
    import torch

    from cxrmap.core.runtime import autocast
    from cxrmap.models import create_model
    from cxrmap.train.losses import HybridLoss

    sync = torch.cuda.synchronize if device.startswith("cuda") else lambda: None
    images = torch.rand(batch, 1, size, size, device=device)
    target = (torch.rand(batch, 2, size, size, device=device) > 0.9).float()
    figures = []
    for name, dtype, channels_last, compiled in training_paths(device, tiny):
        if budget.left() < (90 if compiled else 10):
            figures.append(f"{name} skipped (time budget)")
            continue
        torch.manual_seed(0)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model = create_model(arch, encoder, classes=2).to(device, memory_format=fmt).train()
        network = torch.compile(model) if compiled else model
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
        scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
        loss_fn = HybridLoss()
        batch_in = images.contiguous(memory_format=fmt)

        def step(
            network=network,
            optimiser=optimiser,
            scaler=scaler,
            batch_in=batch_in,
            dtype=dtype,
            loss_fn=loss_fn,
        ):
            optimiser.zero_grad(set_to_none=True)
            with autocast(device, dtype):
                logits = network(batch_in)
            scaler.scale(loss_fn(logits.float(), target)).backward()
            scaler.step(optimiser)
            scaler.update()

        seconds = timed(step, repeats, 3 if compiled else 2, sync)
        figures.append(f"{name} {batch / seconds:.1f}")
        del model, network, optimiser
    print(f"  train {arch:<13} images/s at {size} px batch {batch}: " + "; ".join(figures))


def bench_inference(arch, encoder, size, batches, device, tiny, budget, repeats, work: Path) -> None:
    import torch

    model, meta = random_network(arch, encoder, size)
    model = model.to(device).eval()
    for batch in batches:
        x = torch.rand(batch, 1, size, size, device=device)
        figures = inference_figures(model, meta, x, device, tiny, budget, repeats, work)
        print(f"  infer {arch:<13} ms/image at batch {batch}: " + "; ".join(figures))


def inference_figures(model, meta, x, device, tiny, budget, repeats, work: Path) -> list[str]:
    """``name ms/image`` of each inference path on the batch ``x``."""
    import torch

    from cxrmap.core.runtime import autocast

    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else lambda: None
    figures: list[str] = []

    def add(name, run, needs=0.0, warmup=2):
        if budget.left() < needs + 5:
            figures.append(f"{name} skipped (time budget)")
            return
        try:
            with torch.inference_mode():
                seconds = timed(run, repeats, warmup, sync)
        except Exception as error:  # a path that does not work here is reported, not fatal
            figures.append(f"{name} failed ({type(error).__name__}: {str(error).splitlines()[0][:80]})")
            return
        figures.append(f"{name} {1000 * seconds / len(x):.3f}")

    def skip(name, why):
        figures.append(f"{name} unavailable ({why})")

    def amp(run):
        def wrapped():
            with autocast(device, torch.bfloat16):
                run()

        return wrapped

    add("eager fp32", lambda: model(x))
    add("amp bf16", amp(lambda: model(x)))
    if cuda or not tiny:  # compiling takes minutes on a small CPU
        compiled = torch.compile(model)
        add("compile bf16", amp(lambda: compiled(x)), needs=90, warmup=3)
    if cuda:
        add("cuda graph bf16", cuda_graph(model, x), needs=10)
    add_onnx(add, skip, model, meta, x, cuda, work)
    return figures


def cuda_graph(model, x):
    """A replay of ``model(x)`` (bf16 autocast) captured in one CUDA graph; input copied into its buffer."""
    import torch

    static = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode(), torch.cuda.stream(stream), torch.autocast("cuda", torch.bfloat16):
        for _ in range(3):
            model(static)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph), torch.autocast("cuda", torch.bfloat16):
        model(static)

    def replay():
        static.copy_(x)
        graph.replay()

    return replay


def add_onnx(add, skip, model, meta, x, cuda, work: Path) -> None:
    """ONNX Runtime on the CPU (no GPU) or with its CUDA and TensorRT providers, where installed."""
    from cxrmap.predict import backends

    try:
        import onnxruntime as ort  # optional heavy dependency (extra `fast`)
    except ImportError:
        skip("onnxruntime", f"not installed: {backends.FAST_EXTRA}")
        return
    path = work / f"{meta.arch}.onnx"
    if not path.is_file():
        backends.export_onnx(model, meta, path)
    available = ort.get_available_providers()
    wanted = [("ort cuda", "CUDAExecutionProvider"), ("ort tensorrt", "TensorrtExecutionProvider")]
    chosen = wanted if cuda else [("ort cpu", "CPUExecutionProvider")]
    array = x.float().cpu().numpy()
    for name, provider in chosen:
        if provider not in available:
            skip(name, f"{provider} not in this onnxruntime build")
            continue
        session = backends.OnnxBackend(path, providers=[provider, "CPUExecutionProvider"]).session
        add(
            name, lambda session=session: session.run(None, {"image": array}), needs=60 if "rt" in name else 5
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny setting: ResNet-18, 64 px, batch 2")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds for the whole run")
    parser.add_argument("--archs", default="unet,unetplusplus,dla", help="comma-separated architectures")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per figure (median)")
    args = parser.parse_args(argv)

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: nothing to measure (run on a machine with a GPU, or --device cpu --tiny)")
        return 0
    budget = Budget(args.budget)
    encoder, size, train_batch, batches = (
        ("resnet18", 64, 2, (1, 2)) if args.tiny else ("densenet121", 224, 32, (1, 64))
    )
    repeats = 1 if args.tiny else args.repeats
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(args.device)
    else:
        name = "cpu"
    print(
        f"device {name}, torch {torch.__version__}, encoder {encoder}, {size} px; budget {args.budget:.0f} s"
    )
    work = Path(tempfile.mkdtemp(prefix="cxrmap-gpu-"))
    for arch in args.archs.split(","):
        bench_training(arch, encoder, size, train_batch, args.device, args.tiny, budget, repeats)
        bench_inference(arch, encoder, size, batches, args.device, args.tiny, budget, repeats, work)
    print(f"done in {args.budget - budget.left():.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
