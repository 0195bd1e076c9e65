"""Serving overhead of ``cxrmap serve``: API latency and throughput against the bare model forward.

Builds U-Net + DenseNet-121 with RANDOM weights (speed does not depend on what the weights learnt) at the
``quick`` preset's input size, saves it as a checkpoint, and in the same run measures:

1. the bare prediction time, ``Predictor.predict([image])`` on one phantom radiograph, in a worker
   thread as the server runs it (p50);
2. ``POST /api/v1/predict`` on a loopback uvicorn server, single sequential requests (p50, p95);
3. throughput and errors with ``--clients`` concurrent clients for ``--seconds`` seconds, while a probe
   checks that ``/healthz`` stays responsive;

and prints the server overhead ratio (API p50 latency / bare p50). Loopback only; every loop is bounded.

    python benchmarks/bench_serve.py [--seconds 30] [--clients 8] [--sequential 30] [--workers 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from cxrmap.data.io import read_image
from cxrmap.data.phantom.shapes import generate
from cxrmap.models import create_model
from cxrmap.models.checkpoint import CheckpointMeta, Provenance, TrainingData, save_checkpoint
from cxrmap.predict.predictor import Predictor
from cxrmap.serving.demo.app import create_app, serve_in_background
from cxrmap.train.presets import PRESETS


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def write_checkpoint(path: Path, size: int) -> Path:
    """U-Net + DenseNet-121, random weights, infection + lung channels, ``size`` px input."""
    import torch

    torch.manual_seed(0)
    model = create_model("unet", "densenet121", weights=None, classes=2)
    meta = CheckpointMeta(
        task="segmentation",
        model=model.config,
        channels=("infection", "lung"),
        input_size=size,
        threshold=0.5,
        data=TrainingData("phantom", "nothing: random weights (benchmark)", ""),
        provenance=Provenance("quick", {}, "bench", ""),
    )
    return save_checkpoint(path, {"meta": meta, "model": model.state_dict()})


def bare_forward(predictor: Predictor, image: np.ndarray, repeats: int) -> list[float]:
    """Seconds per ``predictor.predict([image])`` call, after two warm-up calls.

    Run in a worker thread, as the server runs its predictions: on a loaded machine PyTorch's OpenMP
    threads behave very differently in the main thread, which would make the comparison unfair.
    """

    def measure() -> list[float]:
        for _ in range(2):
            predictor.predict([image])
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            predictor.predict([image])
            times.append(time.perf_counter() - start)
        return times

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(measure).result()


def sequential(url: str, data: bytes, repeats: int) -> list[float]:
    """Seconds per request, one request at a time (after two warm-up requests)."""
    times = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for index in range(repeats + 2):
            start = time.perf_counter()
            response = client.post("/api/v1/predict", files={"file": ("cxr.png", data, "image/png")})
            response.raise_for_status()
            if index >= 2:
                times.append(time.perf_counter() - start)
    return times


def concurrent(url: str, data: bytes, clients: int, seconds: float) -> dict:
    """``clients`` threads posting back to back for ``seconds``; a probe times ``/healthz`` meanwhile."""
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    ok: list[float] = []
    errors: dict[str, int] = {}
    health: list[float] = []

    def client_loop() -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            for _ in range(100_000):  # bounded; the deadline ends it long before
                if time.monotonic() >= deadline:
                    return
                start = time.perf_counter()
                try:
                    response = client.post("/api/v1/predict", files={"file": ("cxr.png", data, "image/png")})
                    key = None if response.status_code == 200 else str(response.status_code)
                except httpx.HTTPError as error:
                    key = type(error).__name__
                with lock:
                    if key is None:
                        ok.append(time.perf_counter() - start)
                    else:
                        errors[key] = errors.get(key, 0) + 1

    def health_probe() -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            while time.monotonic() < deadline:
                start = time.perf_counter()
                client.get("/healthz").raise_for_status()
                health.append(time.perf_counter() - start)
                time.sleep(0.2)

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    threads.append(threading.Thread(target=health_probe))
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 120)
    elapsed = time.monotonic() - start
    return {"ok": ok, "errors": errors, "health": health, "elapsed": elapsed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the concurrent phase")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--sequential", type=int, default=30, help="sequential requests (and bare calls)")
    parser.add_argument("--workers", type=int, default=1, help="server prediction threads")
    parser.add_argument("--queue", type=int, default=8, help="server queue limit (beyond: 503)")
    parser.add_argument("--image-size", type=int, default=256, help="side of the phantom radiograph")
    args = parser.parse_args()

    size = PRESETS["quick"].size
    with tempfile.TemporaryDirectory(prefix="cxrmap-bench-serve-") as tmp:
        tmp = Path(tmp)
        checkpoint = write_checkpoint(tmp / "model.pt", size)
        root = generate(tmp / "phantom", n_covid=1, n_control=0, size=args.image_size, seed=0, progress=False)
        image_path = next((root / "QaTa-COV19-v1" / "Images").glob("*.png"))
        data, image = image_path.read_bytes(), read_image(image_path)
        print(
            f"model: U-Net + DenseNet-121, RANDOM weights, input {size}px (quick preset); "
            f"image {image.shape[1]}x{image.shape[0]} PNG, {len(data):,} bytes"
        )

        bare = bare_forward(Predictor.from_checkpoint(checkpoint), image, args.sequential)
        app = create_app(checkpoint, workers=args.workers, max_queue=args.queue)
        with serve_in_background(app) as url:
            latencies = sequential(url, data, args.sequential)
            load = concurrent(url, data, args.clients, args.seconds)

    bare_p50 = percentile(bare, 50)
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    bare_p95 = percentile(bare, 95)
    print(f"bare Predictor.predict:   p50 {1000 * bare_p50:7.1f} ms  p95 {1000 * bare_p95:7.1f} ms")
    print(f"API, sequential (n={len(latencies)}): p50 {1000 * p50:7.1f} ms  p95 {1000 * p95:7.1f} ms")
    throughput = len(load["ok"]) / load["elapsed"]
    errors = sum(load["errors"].values())
    kinds = f" {load['errors']}" if errors else ""
    print(
        f"API, {args.clients} clients x {args.seconds:g} s, {args.workers} worker(s): "
        f"{throughput:.2f} req/s, {len(load['ok'])} ok, {errors} errors{kinds}, "
        f"latency p50 {1000 * percentile(load['ok'], 50):.0f} ms "
        f"p95 {1000 * percentile(load['ok'], 95):.0f} ms"
    )
    print(
        f"/healthz under load: p50 {1000 * percentile(load['health'], 50):.1f} ms, "
        f"max {1000 * max(load['health'], default=float('nan')):.1f} ms (n={len(load['health'])})"
    )
    print(f"server overhead ratio (API p50 / bare p50): {p50 / bare_p50:.2f}x")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
