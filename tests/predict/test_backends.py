"""Inference backends: each matches eager fp32 on a tiny network, the parity gate refuses broken ones,
``auto`` takes the fastest that passes and remembers it, ONNX files carry their metadata."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from cxrmap.core.errors import CheckpointError, ModelError
from cxrmap.core.runtime import machine, native_cpu_bf16
from cxrmap.models import create_model
from cxrmap.predict import backends
from cxrmap.predict.backends import Backend, Parity, TorchBackend, make_backend, parity, select_backend
from cxrmap.predict.predictor import Predictor
from tests.helpers.checkpoints import make_meta

SIZE = 64
TOLERANCE = {"torch": 1e-6, "onnx": 1e-4, "torch-bf16": 0.05, "onnx-int8": 0.15}
"""Largest probability difference from eager fp32 on random weights (bf16 and int8 round)."""


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    model = create_model("unet", "resnet18", classes=2).eval()
    meta = make_meta(model.config, input_size=SIZE)
    return model, meta


@pytest.fixture(scope="module")
def held_out():
    return backends.phantom_set(SIZE, 6, seed=5)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("backends")


def _available(name: str) -> bool:
    if name == "torch-bf16":
        return native_cpu_bf16()
    package = {"onnx": "onnxruntime", "onnx-int8": "onnxruntime"}.get(name)
    return package is None or backends.backend_versions()[package] is not None


@pytest.mark.parametrize("name", list(TOLERANCE))
def test_backend_matches_eager(network, held_out, work, name):
    if not _available(name):
        pytest.skip(f"{name} is not available on this machine")
    model, meta = network
    images, _ = held_out
    reference = TorchBackend(model).probabilities(images)
    backend = make_backend(name, model, meta, work_dir=work)
    result = backend.probabilities(images)
    assert backend.name == name
    assert result.shape == (len(images), 2, SIZE, SIZE) and result.dtype == np.float32
    assert np.abs(result - reference).max() <= TOLERANCE[name]
    assert np.abs(result - reference).mean() <= TOLERANCE[name] / 5


def test_parity_known_answers():
    reference = np.zeros((4, 2, 2), np.float32)
    reference[0, 0, :] = 0.9  # image 0: two infected pixels, COVID-19
    masks = reference >= 0.5
    same = parity(reference, reference.copy(), masks)
    assert same.passed and same.f1_delta == 0.0 and same.agreement == 1.0 and same.reason == ""
    candidate = reference.copy()
    candidate[1, 0, 0] = 0.7  # one false positive pixel: F1 100 -> 80, image 1 becomes COVID-19
    broken = parity(reference, candidate, masks, name="x")
    assert not broken.passed and broken.f1_delta == pytest.approx(-20.0)
    assert broken.agreement == 0.75
    assert broken.reason == (
        "pixel F1 -20.00 points from eager fp32 (at most 0.5 allowed); the detection decision agrees with "
        "eager fp32 on 75.0% of the images (at least 99% needed)"
    )
    # Without masks the reference's own segmentation is the truth: the same figures here.
    assert parity(reference, candidate, None).f1_delta == pytest.approx(-20.0)


class Dead(Backend):
    """A deliberately broken backend: very fast, and says nothing is ever infected."""

    name = "dead"

    def probabilities(self, images):
        return np.zeros((len(images), 2, SIZE, SIZE), np.float32)


class Noisy(Backend):
    """A deliberately broken backend: eager's probabilities with strong noise added."""

    name = "noisy"

    def __init__(self, model):
        self.inner = TorchBackend(model)

    def probabilities(self, images):
        output = self.inner.probabilities(images)
        noise = np.random.default_rng(0).normal(0, 0.3, output.shape)
        return np.clip(output + noise, 0, 1).astype(np.float32)


def test_gate_refuses_broken_backends(network, held_out, tmp_path):
    model, meta = network
    images, masks = held_out
    # A scripted truth where eager finds infection in half of the images makes "dead" change decisions.
    eager = TorchBackend(model).probabilities(images)[:, 0]
    chosen, results = select_backend(
        model, meta, images=images, masks=eager >= 0.5, candidates=(Dead(), Noisy(model)), work_dir=tmp_path
    )
    by_name = {result.backend: result for result in results}
    assert chosen.name == "torch" and list(by_name) == ["torch", "dead", "noisy"]
    assert by_name["torch"].passed and by_name["torch"].f1_delta == 0.0
    assert by_name["dead"].ms_per_image < by_name["torch"].ms_per_image  # fastest, yet refused
    for name in ("dead", "noisy"):
        assert not by_name[name].passed and "points from eager fp32" in by_name[name].reason

    assert not (tmp_path / f"gate-{machine().key()}.json").exists()  # not the default held-out set


def test_auto_remembers_its_choice_per_machine(network, tmp_path, monkeypatch):
    model, meta = network
    chosen, results = select_backend(model, meta, candidates=("torch",), work_dir=tmp_path)
    record = tmp_path / f"gate-{machine().key()}.json"
    saved = json.loads(record.read_text())
    assert saved["choice"] == "torch" == chosen.name and [r["backend"] for r in saved["results"]] == ["torch"]
    assert saved["machine"]["physical_cores"] == machine().physical_cores

    def no_measuring(*args, **kwargs):
        raise AssertionError("the gate ran again")

    monkeypatch.setattr(backends, "measure", no_measuring)
    again, cached = select_backend(model, meta, work_dir=tmp_path)
    assert again.name == "torch" and cached == results == [Parity(**r) for r in saved["results"]]


def test_auto_takes_fastest_passing_backend(network, tmp_path, monkeypatch):
    if not _available("onnx"):
        pytest.skip("onnxruntime is not installed")
    model, meta = network
    speeds = {"torch": 9.0, "onnx": 1.0}
    monkeypatch.setattr(backends, "measure", lambda runs: {name: speeds[name] / 1000 for name in runs})
    chosen, results = select_backend(model, meta, candidates=("torch", "onnx"), work_dir=tmp_path)
    assert chosen.name == "onnx" and [r.passed for r in results] == [True, True]
    predictor = Predictor(model, meta, backend=chosen)
    assert predictor.backend is chosen


def test_unknown_and_unavailable_backends(network, monkeypatch, tmp_path):
    model, meta = network
    with pytest.raises(ModelError, match="unknown inference backend 'tensorrt'; use one of torch, "):
        make_backend("tensorrt", model, meta)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    with pytest.raises(
        ModelError, match=r"onnxruntime package is not installed.*pip install 'cxrmap\[fast\]'"
    ):
        backends.OnnxBackend(b"")
    _, results = select_backend(model, meta, candidates=("onnx",), work_dir=tmp_path)
    assert results[1].backend == "onnx" and not results[1].passed
    assert results[1].reason.startswith("unavailable: the onnxruntime package is not installed")


def test_onnx_file_carries_metadata(network, tmp_path):
    if not _available("onnx"):
        pytest.skip("onnxruntime is not installed")
    model, meta = network
    path = tmp_path / "model.onnx"
    backends.export_onnx(model, meta.replace(metrics={"auc": float("nan"), "f1": 0.8}), path)
    assert backends.onnx_meta(path) == meta.replace(metrics={"auc": None, "f1": 0.8})
    assert backends.load_onnx(path)[0].name == "onnx"
    with pytest.raises(CheckpointError, match="does not exist"):
        backends.onnx_meta(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="cannot be read as an ONNX model"):
        backends.onnx_meta(tmp_path / "junk.onnx")


@pytest.mark.slow
def test_torch_compile_matches_eager(network, held_out):
    model, meta = network
    images, _ = held_out
    reference = TorchBackend(model).probabilities(images)
    assert np.abs(make_backend("torch-compile", model, meta).probabilities(images) - reference).max() < 1e-4
