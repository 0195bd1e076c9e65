"""``cxrmap export`` (ONNX fp32 and int8 files that carry the checkpoint's metadata) and ``cxrmap doctor``."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from cxrmap.cli import app
from cxrmap.core.errors import DataError
from cxrmap.models.checkpoint import load_model
from cxrmap.predict import backends
from cxrmap.predict.predictor import Predictor
from tests.helpers.checkpoints import write_tiny_checkpoint

pytest.importorskip("onnxruntime")
runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt")


def test_export_onnx_carries_metadata_and_predicts_the_same(checkpoint, tmp_path):
    out = tmp_path / "model.onnx"
    result = runner.invoke(app, ["export", str(checkpoint), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (onnx, " in result.output
    assert "parity against eager fp32 on 32 phantom images: pixel F1 +0.00 points" in result.output
    _, meta = load_model(checkpoint)
    # NaN is not JSON: undefined figures read back as None
    assert backends.onnx_meta(out) == meta.replace(metrics={**meta.metrics, "auc": None})
    assert backends.load_onnx(out)[0].name == "onnx"
    images = [np.random.default_rng(i).integers(0, 256, (70 + 10 * i, 90), dtype=np.uint8) for i in range(3)]
    from_onnx = Predictor.from_checkpoint(out)
    from_pt = Predictor.from_checkpoint(checkpoint)
    assert from_onnx.backend.name == "onnx" and from_onnx.model is None
    for a, b in zip(from_onnx.predict(images), from_pt.predict(images), strict=True):
        assert a.prob.shape == b.prob.shape
        np.testing.assert_allclose(a.prob, b.prob, atol=1e-4)
        np.testing.assert_allclose(a.lung_prob, b.lung_prob, atol=1e-4)
        assert a.covid == b.covid and a.score == pytest.approx(b.score, abs=1e-4)


def test_export_int8_calibrated_on_a_manifest(checkpoint, tmp_path):
    from cxrmap.data.manifest import write_manifest
    from cxrmap.data.phantom.shapes import generate
    from cxrmap.data.readers import index_dataset

    root = generate(tmp_path / "phantom", n_covid=4, n_control=4, size=64, seed=1, progress=False)
    frame = index_dataset(root, progress=False).manifest
    manifest = write_manifest(frame, tmp_path / "manifest.csv")
    training = int((~frame["split"].isin(("val", "test"))).sum())
    assert training > 0
    out = tmp_path / "int8.onnx"
    args = [
        "export",
        str(checkpoint),
        "--format",
        "onnx-int8",
        "--out",
        str(out),
        "--calibration",
        str(manifest),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"calibrating int8 on {training} training images of {manifest}" in result.output
    assert backends.load_onnx(out)[0].name == "onnx-int8"
    assert Predictor.from_checkpoint(out).backend.name == "onnx-int8"


def test_export_refuses_bad_options(checkpoint, tmp_path):
    for args, message in (
        (
            ["--format", "tflite", "--out", str(tmp_path / "m.onnx")],
            "unknown export format 'tflite'; use onnx or",
        ),
        (["--out", str(tmp_path / "m.bin")], "the output file must end in .onnx"),
    ):
        result = runner.invoke(app, ["export", str(checkpoint), *args])
        assert isinstance(result.exception, DataError) and message in str(result.exception)
        assert not (tmp_path / "m.onnx").exists()
