"""``cxrmap doctor``: the machine, the installed backends and the paths cxrmap takes on it."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from cxrmap.cli import app
from cxrmap.core.runtime import machine
from tests.helpers.checkpoints import write_tiny_checkpoint

runner = CliRunner()


def test_doctor_prints_machine_and_paths():
    result = runner.invoke(app, ["doctor", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    info = machine()
    lines = result.output.splitlines()
    assert lines[0] == "machine" and f"  cpu            {info.cpu}" in lines
    assert re.search(r"^  features       avx2 (yes|no), avx512 (yes|no), avx512_bf16 (yes|no), amx (yes|no)$",
                     result.output, re.M)  # fmt: skip
    assert f"  cores          {info.physical_cores} physical, {info.logical_cores} logical" in lines
    assert re.search(r"^  torch          \d+\.\d+", result.output, re.M)
    assert re.search(r"^  onnxruntime    (\d+\.\d+|not installed)", result.output, re.M)
    assert "  device         cpu" in lines
    assert re.search(r"^  amp \(auto\)     (bfloat16 \(native bf16 on this CPU\)|off \(no native bf16\))$",
                     result.output, re.M)  # fmt: skip
    assert "  channels_last  off (no steady gain measured on CPUs)" in lines
    assert f"  threads        {info.physical_cores} (physical cores" in result.output
    assert lines[-1] == "  backend auto   give --model CKPT to measure"


def test_doctor_measures_backends_for_a_checkpoint(tmp_path):
    checkpoint = write_tiny_checkpoint(tmp_path / "model.pt")
    result = runner.invoke(app, ["doctor", "--device", "cpu", "--model", str(checkpoint)])
    assert result.exit_code == 0, result.output
    assert re.search(r"^  torch          [\d.]+ ms/image, pixel F1 \+0\.00 points, same decision 100\.0%$",
                     result.output, re.M)  # fmt: skip
    choice = result.output.splitlines()[-1]
    assert re.fullmatch(r"  backend auto   (torch|torch-bf16|onnx|onnx-int8)", choice)
