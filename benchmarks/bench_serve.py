"""Request batching in ``cxrmap serve``: API latency under concurrent clients, batched against unbatched.

Builds U-Net + DenseNet-121 with RANDOM weights (speed does not depend on what the weights learnt) at the
``quick`` preset's input size, saves it as a checkpoint, and for each backend of ``--backends`` measures in
the same run:

1. the bare prediction time, ``Predictor.predict([image])`` on one phantom radiograph, in a worker
   thread as the server runs it (p50);
2. for the unbatched server (``--batch-size 1``, the baseline) and the batched one (``--batch-size``):
   ``POST /api/v1/predict`` on a loopback uvicorn server, single sequential requests (p50), then
   ``--clients`` concurrent clients for ``--seconds`` seconds (throughput, latency p50/p95, the mean batch
   the network ran, errors) while a probe checks that ``/healthz`` stays responsive;

and prints the ratios unbatched / batched (latency) and batched / unbatched (throughput), and the server
overhead (sequential API p50 / bare p50). Loopback only; every loop is bounded.

    python benchmarks/bench_serve.py [--backends torch,onnx] [--batch-size 8] [--seconds 30] [--clients 8]
"""

from __future__ import annotations

import argparse
import os
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
from cxrmap.predict.predictor import Predictor
from cxrmap.serving.demo.app import create_app, serve_in_background
from cxrmap.train.presets import PRESETS
from random_model import write_checkpoint


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


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


def serve_phase(checkpoint: Path, data: bytes, args, backend: str, batch_size: int) -> dict:
    """Sequential requests, then ``args.clients`` concurrent clients, on a server with ``batch_size``."""
    app = create_app(
        checkpoint, workers=args.workers, max_queue=args.queue, backend=backend, batch_size=batch_size
    )
    service = app.state.service
    with serve_in_background(app) as url:
        latencies = sequential(url, data, args.sequential)
        calls = service.batcher.batches
        load = concurrent(url, data, args.clients, args.seconds)
        calls = service.batcher.batches - calls
    load["sequential"] = latencies
    load["mean_batch"] = (len(load["ok"]) + sum(load["errors"].values())) / max(calls, 1)
    return load


def report(label: str, load: dict, args) -> None:
    ok, errors = load["ok"], sum(load["errors"].values())
    kinds = f" {load['errors']}" if errors else ""
    print(
        f"  {label}: sequential p50 {1000 * percentile(load['sequential'], 50):6.1f} ms; "
        f"{args.clients} clients x {args.seconds:g} s: {len(ok) / load['elapsed']:5.2f} req/s, "
        f"p50 {1000 * percentile(ok, 50):6.0f} ms, p95 {1000 * percentile(ok, 95):6.0f} ms, "
        f"mean batch {load['mean_batch']:.1f}, {len(ok)} ok, {errors} errors{kinds}; /healthz max "
        f"{1000 * max(load['health'], default=float('nan')):.0f} ms (n={len(load['health'])})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="torch,onnx", help="inference backends, comma-separated")
    parser.add_argument("--batch-size", type=int, default=8, help="the batched server's batch size")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each concurrent phase")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--sequential", type=int, default=20, help="sequential requests (and bare calls)")
    parser.add_argument("--workers", type=int, default=1, help="server decoding/drawing threads")
    parser.add_argument("--queue", type=int, default=8, help="server queue limit (beyond: 503)")
    parser.add_argument("--image-size", type=int, default=256, help="side of the phantom radiograph")
    args = parser.parse_args()
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]

    size = PRESETS["quick"].size
    failed = False
    with tempfile.TemporaryDirectory(prefix="cxrmap-bench-serve-") as tmp:
        tmp = Path(tmp)
        os.environ["CXRMAP_CACHE"] = str(tmp / "cache")  # the random network's exported graphs go here
        checkpoint = write_checkpoint(tmp / "model.pt", size)
        root = generate(tmp / "phantom", n_covid=1, n_control=0, size=args.image_size, seed=0, progress=False)
        image_path = next((root / "QaTa-COV19-v1" / "Images").glob("*.png"))
        data, image = image_path.read_bytes(), read_image(image_path)
        print(
            f"model: U-Net + DenseNet-121, RANDOM weights, input {size}px (quick preset); "
            f"image {image.shape[1]}x{image.shape[0]} PNG, {len(data):,} bytes; {args.workers} worker(s), "
            f"queue {args.queue}"
        )
        for backend in backends:
            predictor = Predictor.from_checkpoint(checkpoint, backend=backend)
            bare = percentile(bare_forward(predictor, image, args.sequential), 50)
            del predictor
            print(f"backend {backend}: bare Predictor.predict([image]) p50 {1000 * bare:.1f} ms")
            single = serve_phase(checkpoint, data, args, backend, 1)
            report("unbatched (--batch-size 1)", single, args)
            batched = serve_phase(checkpoint, data, args, backend, args.batch_size)
            report(f"batched (--batch-size {args.batch_size})", batched, args)
            one, many = single["ok"], batched["ok"]
            print(
                f"  ratios, unbatched / batched: p50 {percentile(one, 50) / percentile(many, 50):.2f}x, "
                f"p95 {percentile(one, 95) / percentile(many, 95):.2f}x; throughput batched / unbatched "
                f"{(len(many) / batched['elapsed']) / (len(one) / single['elapsed']):.2f}x; server overhead "
                f"(batched sequential p50 / bare p50) {percentile(batched['sequential'], 50) / bare:.2f}x"
            )
            failed |= bool(single["errors"] or batched["errors"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
