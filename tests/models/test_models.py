"""Segmentation networks and classifiers: every architecture x encoder x frozen, inputs, Table VIII."""

from __future__ import annotations

import csv
import io

import pytest
import torch
from segmentation_models_pytorch.encoders._utils import patch_first_conv
from torch import nn

from cxrmap.core.errors import ModelError
from cxrmap.models import (
    ARCHS,
    ENCODERS,
    count_parameters,
    create_classifier,
    create_model,
    input_multiple,
    min_input_size,
    title,
)

# Paper Table VIII, U-Net rows: encoder -> frozen -> (trainable, non-trainable)
PAPER_UNET = {
    "chexnet": {True: (5.19e6, 6.96e6), False: (12.06e6, 85.63e3)},
    "densenet121": {True: (5.19e6, 6.96e6), False: (12.06e6, 85.63e3)},
    "inception_v3": {True: (8.15e6, 21.79e6), False: (29.9e6, 36.42e3)},
    "resnet50": {True: (9.06e6, 23.50e6), False: (32.51e6, 47.56e3)},
}


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("network access is disabled in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


def _bn_stats(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items() if "running_" in k}


@pytest.mark.parametrize("frozen", [True, False], ids=["frozen", "trained"])
@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("arch", ARCHS)
def test_forward_backward(arch, encoder, frozen):
    torch.manual_seed(0)
    model = create_model(arch, encoder, freeze_encoder=frozen, classes=2)
    model.train()
    size = min_input_size(encoder)
    before = _bn_stats(model.encoder)
    logits = model(torch.rand(2, 1, size, size))
    assert logits.shape == (2, 2, size, size)
    logits.square().mean().backward()
    after = _bn_stats(model.encoder)
    encoder_grads = [p.grad for p in model.encoder.parameters()]
    assert all(p.grad is not None for p in model.decoder.parameters())
    assert model.head.weight.grad is not None
    if frozen:
        assert all(g is None for g in encoder_grads)
        assert not any(m.training for m in model.encoder.modules())
        assert all(torch.equal(before[k], after[k]) for k in before)
    else:
        assert all(g is not None for g in encoder_grads)
        assert any(not torch.equal(before[k], after[k]) for k in before)


def test_unet_parameter_counts_match_table_viii():
    for encoder, rows in PAPER_UNET.items():
        for frozen, (paper_trainable, paper_non_trainable) in rows.items():
            with torch.device("meta"):
                model = create_model("unet", encoder, freeze_encoder=frozen)
            trainable, non_trainable = count_parameters(model)
            assert abs(trainable / paper_trainable - 1) < 0.02, (encoder, frozen, trainable)
            assert abs(non_trainable / paper_non_trainable - 1) < 0.02, (encoder, frozen, non_trainable)


def test_count_parameters_counts_batchnorm_statistics_as_non_trainable():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    assert count_parameters(net) == (2 * 9 + 2 + 2 + 2, 2 + 2)
    net[0].requires_grad_(False)
    assert count_parameters(net) == (4, 20 + 4)


def test_nested_decoders_follow_the_reference_grid():
    with torch.device("meta"):
        unetpp = create_model("unetplusplus", "densenet121")
        dla = create_model("dla", "densenet121")
    assert sorted(unetpp.decoder.nodes) == sorted(dla.decoder.nodes)
    assert len(dla.decoder.nodes) == 11  # 1 + 2 + 3 + 4 nodes on the encoder rows, 1 at full size
    # X(3,2) at stride 8 (256 ch): up-sampled X(4,1) (16 ch) + E3 (256) + X(3,1) (256) for UNet++ ...
    assert unetpp.decoder.nodes["x_3_2"].conv1[0].in_channels == 16 + 256 + 256
    # ... and up-sampled X(4,1) + X(3,1) only for DLA
    assert dla.decoder.nodes["x_3_2"].conv1[0].in_channels == 16 + 256
    assert dla.head.in_channels == 32


def test_config_rebuilds_the_same_network():
    model = create_model("dla", "resnet18", in_channels=3, classes=2)
    assert model.config == {
        "arch": "dla",
        "encoder": "resnet18",
        "weights": None,
        "freeze_encoder": False,
        "in_channels": 3,
        "classes": 2,
    }
    rebuilt = create_model(**model.config)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in rebuilt.state_dict().items()}


def test_grey_and_three_channel_inputs_agree():
    torch.manual_seed(0)
    model = create_model("unet", "resnet18").eval()
    grey = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(grey), model(grey.repeat(1, 3, 1, 1)), atol=1e-5)


def test_chexnet_input_is_one_channel_in_the_xray_range():
    model = create_model("unet", "chexnet").eval()
    adapter = model.input_adapter
    assert model.encoder.features.conv0.in_channels == 1
    x = torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3).expand(1, 1, 32, 3).contiguous()
    x = torch.cat([x] * 11, dim=3)[..., :32]
    out = adapter(x)
    assert out.shape == (1, 1, 32, 32)
    assert out.min().item() == pytest.approx(-1024) and out.max().item() == pytest.approx(1024)
    rgb = torch.rand(1, 3, 32, 32)
    assert torch.allclose(adapter(rgb), adapter(rgb.mean(1, keepdim=True)))


def test_imagenet_normalisation_and_patched_channels():
    model = create_model("unet", "densenet121", in_channels=4).eval()
    assert model.encoder.features.conv0.in_channels == 4
    out = model.input_adapter(torch.full((1, 4, 32, 32), 0.5))
    assert out.shape == (1, 4, 32, 32)
    assert model(torch.rand(1, 1, 32, 32)).shape == (1, 1, 32, 32)
    adapter = create_model("unet", "densenet121").input_adapter
    white = adapter(torch.ones(1, 1, 32, 32))[0, :, 0, 0]
    expected = [(1 - m) / s for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), strict=True)]
    assert white.tolist() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(("old", "new"), [(3, 4), (3, 5), (1, 2), (1, 4)])
def test_first_convolution_patch_repeats_pretrained_kernels_and_redraws_random_ones(old, new):
    torch.manual_seed(0)
    conv = nn.Conv2d(old, 8, 3)
    trained = conv.weight.detach().clone()
    patch_first_conv(nn.Sequential(conv), new, old, pretrained=True)
    # the kernels repeated over the new channels and scaled by old / new, as build_encoder needs
    assert conv.in_channels == new
    assert torch.equal(conv.weight, trained[:, torch.arange(new) % old] * (old / new))
    random = nn.Conv2d(old, 8, 3)
    torch.manual_seed(1)
    patch_first_conv(nn.Sequential(random), new, old, pretrained=False)
    torch.manual_seed(1)
    fresh = nn.Conv2d(new, 8, 3)
    assert torch.equal(random.weight, fresh.weight) and torch.equal(random.bias, fresh.bias)


def test_titles_are_the_papers_names():
    assert [title(name) for name in ARCHS] == ["U-Net", "UNet++", "DLA"]
    assert [title(name) for name in ENCODERS] == ["CheXNet", "DenseNet-121", "Inception-v3", "ResNet-50"]
    assert title("resnet18") == "resnet18"


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ModelError, match="unet, unetplusplus, dla"):
        create_model("fpn", "densenet121")
    with pytest.raises(ModelError, match="densenet121") as info:
        create_model("unet", "densenet122")
    assert "chexnet" in str(info.value) and "tu-" in str(info.value)
    with pytest.raises(ModelError, match="timm has no model"):
        create_model("unet", "tu-no_such_network")
    with pytest.raises(ModelError, match="imagenet"):
        create_model("unet", "densenet121", weights="chexnet")


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (torch.rand(1, 1, 48, 64), "multiples of 32"),
        (torch.rand(1, 1, 64, 70), "multiples of 32"),
        (torch.rand(1, 2, 64, 64), "1 or 3 channels"),
        (torch.rand(1, 64, 64), "N x C x H x W"),
        (torch.rand(1, 1, 64, 64) * 255, r"\[0, 1\]"),
        (torch.rand(1, 1, 64, 64) - 0.5, r"\[0, 1\]"),
        (torch.full((1, 1, 64, 64), float("nan")), r"\[0, 1\]"),
        (torch.zeros(1, 1, 64, 64, dtype=torch.uint8), "divide uint8"),
    ],
)
def test_bad_inputs_are_refused(x, message):
    model = create_model("unet", "resnet18")
    with pytest.raises(ModelError, match=message):
        model(x)


def test_sizes():
    assert all(input_multiple(e) == 32 and min_input_size(e) == 32 for e in ENCODERS)
    model = create_model("unet", "inception_v3").eval()
    with torch.no_grad():  # the 'same'-padded Inception-v3 takes non-square multiples of 32 as small as 32
        assert model(torch.rand(1, 1, 32, 96)).shape == (1, 1, 32, 96)
    with pytest.raises(ModelError):
        input_multiple("nope")


def test_frozen_encoder_stays_in_eval_mode():
    model = create_model("unet", "resnet18", freeze_encoder=True)
    model.train()
    assert model.training and model.decoder.training
    assert not any(m.training for m in model.encoder.modules())
    assert not any(p.requires_grad for p in model.encoder.parameters())


@pytest.mark.parametrize("encoder", [*ENCODERS, "resnet18"])
def test_classifier(encoder):
    torch.manual_seed(0)
    classifier = create_classifier(encoder, num_classes=2)
    seen = []
    handle = classifier.target_layer.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    logits = classifier(torch.rand(2, 1, 64, 64))
    handle.remove()
    assert logits.shape == (2, 2)
    assert len(seen) == 1 and len(seen[0]) == 4 and seen[0][1] == classifier.encoder.out_channels[-1]
    logits.sum().backward()
    assert classifier.head.weight.grad is not None
    rebuilt = create_classifier(**classifier.config)
    assert rebuilt.head.weight.shape == classifier.head.weight.shape


def test_models_cli_prints_table_viii():
    from typer.testing import CliRunner

    from cxrmap.cli import app

    result = CliRunner().invoke(app, ["models", "--csv", "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 24
    assert {(r["arch"], r["encoder"], r["frozen"]) for r in rows} == {
        (a, e, f) for a in ARCHS for e in ENCODERS for f in ("True", "False")
    }
    for row in rows:
        limit = 0.02 if row["arch"] == "unet" else 0.10
        within = all(abs(float(row[k])) < limit for k in ("trainable_diff", "non_trainable_diff"))
        assert within or row["note"], row

    result = CliRunner().invoke(app, ["models", "--markdown", "--arch", "unet", "--encoder", "densenet121"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("| U-Net")]
    assert len(lines) == 2 and "12.06M" in result.stdout and "85.63K" in result.stdout
