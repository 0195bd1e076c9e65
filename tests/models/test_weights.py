"""Pretrained weights: lookup order, offline errors, checksums, strict loading; no network access."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
import torch

from cxrmap.core.errors import ModelError
from cxrmap.models import WEIGHTS, create_classifier, create_model
from cxrmap.models.weights import ENV_WEIGHTS_DIR, read_state_dict
from tests.helpers.checkpoints import RunsCode


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    """No downloads; empty torch hub, torchxrayvision and $CXRMAP_WEIGHTS_DIR folders; one thread."""
    import torchxrayvision.utils

    def refuse(*args, **kwargs):
        raise RuntimeError("network access is disabled in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.setattr(torchxrayvision.utils, "get_cache_dir", lambda: str(tmp_path / "xrv") + "/")
    monkeypatch.delenv(ENV_WEIGHTS_DIR, raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _without_checksum(monkeypatch, encoder: str, name: str) -> None:
    monkeypatch.setitem(WEIGHTS[encoder], name, dataclasses.replace(WEIGHTS[encoder][name], sha256=None))


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "ddp"])
def test_whole_model_file_round_trip(tmp_path, wrap):
    torch.manual_seed(1)
    source = create_model("unet", "resnet18", classes=2)
    state = source.state_dict()
    payload = {
        "plain": state,
        "state_dict": {"state_dict": state, "epoch": 3},
        "model": {"model": state, "meta": {"note": "x"}},
        "ddp": {f"module.{k}": v for k, v in state.items()},
    }[wrap]
    path = tmp_path / "model.pt"
    torch.save(payload, path)
    torch.manual_seed(2)
    loaded = create_model("unet", "resnet18", weights=path, classes=2)
    assert _same_tensors(loaded.state_dict(), state)
    assert loaded.config["weights"] == str(path)


def test_encoder_only_file(tmp_path):
    torch.manual_seed(1)
    source = create_classifier("resnet18")
    path = tmp_path / "encoder.pth"
    torch.save(source.encoder.state_dict(), path)
    model = create_model("dla", "resnet18", weights=str(path))
    assert _same_tensors(model.encoder.state_dict(), source.encoder.state_dict())
    whole = tmp_path / "classifier.pth"
    torch.save(source.state_dict(), whole)
    assert _same_tensors(create_classifier("resnet18", weights=whole).state_dict(), source.state_dict())


def test_mismatching_files_are_refused_listing_keys(tmp_path):
    state = create_model("unet", "resnet18", classes=2).state_dict()
    path = tmp_path / "two_classes.pt"
    torch.save(state, path)
    with pytest.raises(ModelError, match=r"shape mismatch \[2\].*head\.weight") as info:
        create_model("unet", "resnet18", classes=1, weights=path)
    assert "nothing was loaded" in str(info.value)

    partial = {k: v for k, v in state.items() if not k.startswith("decoder.blocks.4")}
    partial["encoder.extra.weight"] = torch.zeros(1)
    torch.save(partial, path)
    with pytest.raises(ModelError, match=r"missing \[\d+\]: decoder\.blocks\.4") as info:
        create_model("unet", "resnet18", classes=2, weights=path)
    assert "unexpected [1]: encoder.extra.weight" in str(info.value)

    torch.save([1, 2, 3], path)
    with pytest.raises(ModelError, match="holds no state dict"):
        create_model("unet", "resnet18", weights=path)
    path.write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="cannot read weights file"):
        create_model("unet", "resnet18", weights=path)
    with pytest.raises(ModelError, match="neither a weights name"):
        create_model("unet", "resnet18", weights=str(tmp_path / "missing.pt"))


def test_offline_imagenet_error_names_file_and_folder(tmp_path):
    with pytest.raises(ModelError) as info:
        create_model("unet", "densenet121", weights="imagenet")
    message = str(info.value)
    assert "https://download.pytorch.org/models/densenet121-a639ec97.pth" in message
    assert str(tmp_path / "hub" / "checkpoints" / "densenet121-a639ec97.pth") in message
    assert ENV_WEIGHTS_DIR in message and "weights='/path/to/" in message


def test_imagenet_from_weights_dir_with_checksum(tmp_path, monkeypatch):
    from torchvision.models import densenet121

    torch.manual_seed(3)
    reference = densenet121(weights=None).state_dict()
    # torchvision's published file uses the old 'norm.1' names and has no num_batches_tracked counters
    state = {
        k.replace("denselayer1.norm1", "denselayer1.norm.1"): v
        for k, v in reference.items()
        if not k.endswith("num_batches_tracked")
    }
    folder = tmp_path / "weights"
    folder.mkdir()
    path = folder / "densenet121-a639ec97.pth"
    torch.save(state, path)
    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(folder))
    with pytest.raises(ModelError, match="SHA-256"):
        create_model("unet", "densenet121", weights="imagenet")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    spec = dataclasses.replace(WEIGHTS["densenet121"]["imagenet"], sha256=digest[:8])
    monkeypatch.setitem(WEIGHTS["densenet121"], "imagenet", spec)
    model = create_model("unet", "densenet121", weights="imagenet")
    encoder_state = model.encoder.state_dict()
    assert all(torch.equal(encoder_state[k], v) for k, v in reference.items() if k.startswith("features."))


def test_imagenet_safetensors_in_torch_hub_cache(tmp_path, monkeypatch):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(4)
    reference = timm.create_model("resnetv2_50", num_classes=1000).state_dict()
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    save_file(reference, str(cache / WEIGHTS["resnet50"]["imagenet"].file_name))
    model = create_model("unet", "resnet50", weights="imagenet", freeze_encoder=True)
    encoder_state = model.encoder.state_dict()
    assert torch.equal(encoder_state["stem.conv.weight"], reference["stem.conv.weight"])
    assert torch.equal(encoder_state["norm.running_var"], reference["norm.running_var"])
    assert "head.fc.weight" not in encoder_state


def test_inception_torchvision_file(tmp_path, monkeypatch):
    from torchvision.models import Inception3

    torch.manual_seed(5)
    reference = Inception3(aux_logits=True, init_weights=False).state_dict()  # with AuxLogits and fc
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference, cache / "inception_v3_google-0cc3c7bd.pth")
    _without_checksum(monkeypatch, "inception_v3", "imagenet")
    classifier = create_classifier("inception_v3", weights="imagenet")
    state = classifier.encoder.state_dict()
    assert torch.equal(
        state["Mixed_7c.branch_pool.conv.weight"], reference["Mixed_7c.branch_pool.conv.weight"]
    )


def _fake_xrv_file(folder):
    import torchxrayvision as xrv

    torch.manual_seed(6)
    fake = xrv.models.DenseNet()  # random weights, the library's architecture (1 channel, 18 outputs)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(fake, folder / WEIGHTS["chexnet"]["chexnet"].file_name)  # the library's format: a whole model
    return fake


@pytest.mark.parametrize("where", ["xrv-cache", "weights-dir"])
def test_chexnet_loads_torchxrayvision_file(tmp_path, monkeypatch, where):
    if where == "xrv-cache":
        fake = _fake_xrv_file(tmp_path / "xrv")
    else:
        fake = _fake_xrv_file(tmp_path / "mine")
        monkeypatch.setenv(ENV_WEIGHTS_DIR, str(tmp_path / "mine"))
    model = create_model("unet", "chexnet", weights="chexnet")
    ours = model.encoder.features.state_dict()
    theirs = fake.features.state_dict()
    assert ours["conv0.weight"].shape[1] == 1
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_chexnet_offline_error_and_wrong_names():
    with pytest.raises(ModelError) as info:
        create_model("unet", "chexnet", weights="chexnet")
    message = str(info.value)
    assert WEIGHTS["chexnet"]["chexnet"].url in message and "xrv" in message
    with pytest.raises(ModelError, match=r"\['chexnet'\]"):
        create_model("unet", "chexnet", weights="imagenet")


def test_weights_spec_is_frozen_and_describes_the_input():
    spec = WEIGHTS["chexnet"]["chexnet"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.url = "elsewhere"
    mean, std = spec.normalisation(1)
    assert (0 - mean[0]) / std[0] == pytest.approx(-1024) and (1 - mean[0]) / std[0] == pytest.approx(1024)
    assert WEIGHTS["inception_v3"]["imagenet"].normalisation(3) == ((0.5,) * 3, (0.5,) * 3)
    assert WEIGHTS["densenet121"]["imagenet"].normalisation(1) == ((0.449,), (0.226,))


def test_weights_file_with_code_objects_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"x": RunsCode()}}, path)
    with pytest.raises(ModelError) as caught:
        read_state_dict(path)
    assert str(caught.value) == (
        f"weights file {path} holds code objects (Python objects other than tensors and plain values), "
        "so it was refused unread; give a state dict saved with torch.save(model.state_dict(), path)"
    )
    assert "code ran on load" not in capsys.readouterr().out
