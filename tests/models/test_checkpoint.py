"""Checkpoints: round trip, metadata validation, version 1 files, damaged files and other architectures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxrmap.core.errors import CheckpointError
from cxrmap.models import create_model
from cxrmap.models.checkpoint import (
    VERSION,
    CheckpointMeta,
    Provenance,
    TrainingData,
    check_same_model,
    load_checkpoint,
    load_model,
    restore_weights,
    save_checkpoint,
    update_meta,
)
from tests.helpers.checkpoints import RunsCode


def _meta(model) -> CheckpointMeta:
    return CheckpointMeta(
        task="segmentation",
        model=dict(model.config),
        channels=("infection", "lung")[: model.config["classes"]],
        input_size=64,
        threshold=0.5,
        data=TrainingData(
            "phantom", "phantom: 12 images (4 COVID-19, 8 control), manifest 0123", "0123456789abcdef"
        ),
        provenance=Provenance(
            "quick", {"size": 64, "betas": [0.9, 0.999]}, "0.1.0", "2021-01-01T00:00:00+00:00"
        ),
        metrics={"segmentation": {"f1": 0.8}},
    )


def _legacy_meta(model) -> dict:
    """Version 1 metadata, the flat dict the training loop wrote before CheckpointMeta."""
    return {
        "model": dict(model.config),
        "channels": ["infection", "lung"][: model.config["classes"]],
        "input_size": 64,
        "threshold": 0.5,
        "trained_on": "phantom: 12 images (4 COVID-19, 8 control), manifest 0123",
        "data_kind": "phantom",
        "manifest_hash": "0123456789abcdef",
        "preset": "quick",
        "config": {"size": 64, "betas": [0.9, 0.999]},
        "metrics": {"segmentation": {"f1": 0.8}},
        "cxrmap_version": "0.1.0",
        "created": "2021-01-01T00:00:00+00:00",
    }


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("unet", "resnet18", classes=2).eval()


def test_round_trip_restores_weights_and_meta(tmp_path, model):
    path = save_checkpoint(tmp_path / "model.pt", {"meta": _meta(model), "model": model.state_dict()})
    loaded, meta = load_model(path)
    assert meta == _meta(model)
    assert not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left behind


def test_truncated_and_garbage_files_raise(tmp_path, model):
    path = save_checkpoint(tmp_path / "model.pt", {"meta": _meta(model), "model": model.state_dict()})
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_model(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        load_checkpoint(garbage)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not a cxrmap checkpoint"):
        load_checkpoint(plain)


def test_only_plain_values_load(tmp_path, model):
    """weights_only=True refuses arbitrary objects (here a numpy array): no code runs on load."""
    path = tmp_path / "numpy.pt"
    torch.save({"format": "cxrmap-checkpoint", "meta": {"x": np.zeros(3)}, "model": {}}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_code_objects_are_refused_without_advice_to_disable_the_guard(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": "cxrmap-checkpoint", "meta": {}, "model": {"x": RunsCode()}}, path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert str(caught.value) == (
        f"checkpoint {path} holds code objects (Python objects other than tensors and plain values), "
        "so it was refused unread; use a checkpoint written by `cxrmap train`"
    )
    assert "code ran on load" not in capsys.readouterr().out
    path.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert "(UnpicklingError: Unsupported operand 110)" in str(caught.value)
    assert "weights_only" not in str(caught.value)


def test_other_architecture_is_refused(tmp_path, model):
    other = create_model("unetplusplus", "resnet18", classes=2)
    # metadata claiming U-Net over UNet++ weights: strict loading refuses, nothing is loaded partially
    path = save_checkpoint(tmp_path / "lying.pt", {"meta": _meta(model), "model": other.state_dict()})
    with pytest.raises(CheckpointError, match="another architecture"):
        load_model(path)
    fresh = create_model("unet", "resnet18", classes=1)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(CheckpointError):
        restore_weights(fresh, model.state_dict())  # 2 output channels into a 1-channel head
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())
    with pytest.raises(CheckpointError, match="arch: checkpoint 'unet' vs requested 'unetplusplus'"):
        check_same_model(_meta(model), dict(other.config))


def test_update_meta_keeps_weights(tmp_path, model):
    path = save_checkpoint(tmp_path / "model.pt", {"meta": _meta(model), "model": model.state_dict()})
    meta = update_meta(path, metrics={"detection": {"sensitivity": 1.0}})
    assert meta.metrics == {"detection": {"sensitivity": 1.0}}
    meta = update_meta(path, data={"kind": "real", "description": "COVID-QU-Ex"})
    assert meta.data == TrainingData("real", "COVID-QU-Ex", "0123456789abcdef")  # the hash is kept
    loaded, meta = load_model(path)
    assert meta.metrics["detection"]["sensitivity"] == 1.0 and not meta.phantom
    assert meta.provenance == _meta(model).provenance
    assert torch.equal(loaded.state_dict()["head.weight"], model.state_dict()["head.weight"])
    with pytest.raises(CheckpointError, match="no field 'trained_on'"):
        update_meta(path, trained_on="x")
    with pytest.raises(CheckpointError, match="'threshold' is 'abc', expected a number in"):
        update_meta(path, threshold="abc")


def test_version_1_checkpoints_still_load(tmp_path, model):
    path = save_checkpoint(tmp_path / "old.pt", {"meta": _legacy_meta(model), "model": model.state_dict()})
    loaded, meta = load_model(path)
    assert meta == _meta(model) and meta.version == VERSION
    assert (meta.arch, meta.encoder, meta.weights, meta.phantom) == ("unet", "resnet18", None, True)
    assert torch.equal(loaded.state_dict()["head.weight"], model.state_dict()["head.weight"])
    update_meta(path, metrics={})  # rewritten in this version
    assert torch.load(path, weights_only=True)["meta"]["version"] == VERSION


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 7}, "format version 7, which this cxrmap does not read"),
        ({"threshold": "abc"}, "field 'threshold' is 'abc', expected a number in \\[0, 1\\]"),
        ({"threshold": 1.5}, "field 'threshold' is 1.5"),
        ({"threshold": float("nan")}, "field 'threshold' is nan"),
        ({"input_size": 0}, "field 'input_size' is 0, expected a positive whole number"),
        ({"channels": []}, "field 'channels' is \\[\\]"),
        ({"task": "detection"}, "field 'task' is 'detection', expected one of segmentation, classification"),
        ({"data": {"kind": "real"}}, "lacks the field 'data.description'"),
        ({"model": {"encoder": "resnet18"}}, "lacks the field 'model.arch'"),
    ],
)
def test_bad_metadata_names_the_field_and_the_file(tmp_path, model, change, message):
    path = save_checkpoint(
        tmp_path / "bad.pt", {"meta": {**_meta(model).to_dict(), **change}, "model": model.state_dict()}
    )
    with pytest.raises(CheckpointError, match=message) as error:
        load_model(path)
    assert str(path) in str(error.value)


def test_missing_fields_of_version_1_are_named(tmp_path, model):
    for name in ("threshold", "data_kind", "created"):
        meta = {k: v for k, v in _legacy_meta(model).items() if k != name}
        path = save_checkpoint(tmp_path / f"{name}.pt", {"meta": meta, "model": model.state_dict()})
        with pytest.raises(CheckpointError, match=f"lacks the field '{name}'"):
            load_checkpoint(path)
