"""``benchmarks/bench_gpu.py`` (run by ``benchmarks/gpu.sh``) runs on a CPU in its tiny setting."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    """The script as ``python benchmarks/bench_gpu.py`` loads it: its folder first on the path."""
    folder = str(REPO_ROOT / "benchmarks")
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location("bench_gpu", REPO_ROOT / "benchmarks" / "bench_gpu.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module


def test_tiny_cpu_run_prints_every_path(bench, capsys):
    assert bench.main(["--device", "cpu", "--tiny", "--archs", "unet"]) == 0
    out = capsys.readouterr().out
    train = re.search(r"^  train unet +images/s at 64 px batch 2: (.*)$", out, re.M)
    assert train, out
    assert re.fullmatch(r"fp32 [\d.]+; amp bf16 [\d.]+; channels_last bf16 [\d.]+", train.group(1))
    for batch in (1, 2):
        infer = re.search(rf"^  infer unet +ms/image at batch {batch}: (.*)$", out, re.M)
        assert infer, out
        assert re.fullmatch(
            r"eager fp32 [\d.]+; amp bf16 [\d.]+; ort cpu ([\d.]+|unavailable .*)", infer.group(1)
        )


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: gpu.sh would measure")
def test_gpu_script_exits_cleanly_without_cuda(bench, capsys):
    assert bench.main(["--device", "cuda"]) == 0
    assert capsys.readouterr().out.startswith("no CUDA device here: nothing to measure")
    env = {**os.environ, "PYTHON": sys.executable}
    script = REPO_ROOT / "benchmarks" / "gpu.sh"
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0 and "no CUDA device" in result.stdout
