"""Classifiers, Grad-CAM activation maps, localisation scores and the Fig. 7-style grid (paper Sec. III-C)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from cxrmap.core.errors import CheckpointError, DataError, ModelError
from cxrmap.data.cache import ImageCache
from cxrmap.data.manifest import normalise_manifest
from cxrmap.explain import (
    ClassifierConfig,
    GradCAMExplainer,
    comparison_grid,
    covid_probability,
    format_localisation,
    grid_size,
    load_classifier,
    localisation_scores,
    localisation_table,
    train_classifier,
)
from cxrmap.train.presets import classifier_config, get_preset
from tests.helpers.checkpoints import write_tiny_checkpoint


class MeanClassifier(nn.Module):
    """Known Grad-CAM: features = the image (1x1 conv, weight 1), logits = (-mean, +mean) of the features.

    For class 1, Eq. 14 gives alpha = 1/(HW) > 0 for the single feature map A = image, so Eq. 15 gives
    ReLU(A / HW), which min-max scaling turns back into the image. For class 0 alpha < 0: the map is zero.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(1, 1, 1)
        self.norm = nn.BatchNorm1d(1)
        self.head = nn.Linear(1, 2)
        with torch.no_grad():
            self.features.weight.fill_(1.0)
            self.features.bias.zero_()
            self.head.weight.copy_(torch.tensor([[-1.0], [1.0]]))
            self.head.bias.zero_()
        self.target_layer = self.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def _hooks(model: nn.Module) -> int:
    """Number of module hooks of every kind left on ``model``."""
    names = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return sum(len(getattr(module, name)) for module in model.modules() for name in names)


def _square_images(n: int = 2, size: int = 16) -> np.ndarray:
    images = np.zeros((n, size, size), np.uint8)
    images[:, 4:8, 9:13] = 255
    images[:, 2, 2] = 128
    return images


@pytest.fixture(scope="module")
def small_classifier_factory():
    """``create_classifier`` with the smallest supported encoder (resnet18, else densenet121)."""
    from cxrmap.models import create_classifier

    def make():
        torch.manual_seed(0)
        try:
            return create_classifier("resnet18", weights=None, num_classes=2), "resnet18"
        except ModelError:
            return create_classifier("densenet121", weights=None, num_classes=2), "densenet121"

    return make


# --- Grad-CAM ---------------------------------------------------------------------------------------


def test_gradcam_matches_eq_14_15_on_a_known_model():
    model = MeanClassifier()
    images = _square_images()
    with GradCAMExplainer(model) as explainer:
        maps = explainer.explain(images)
    assert maps.shape == (2, 16, 16) and maps.dtype == np.float32
    np.testing.assert_allclose(maps, images / 255.0, atol=1e-4)
    with GradCAMExplainer(model, target_class=0) as explainer:
        assert not explainer.explain(images).any()  # negative alpha: ReLU leaves nothing


@pytest.mark.parametrize("fail", [False, True])
def test_gradcam_removes_hooks_and_restores_model(fail):
    model = MeanClassifier()
    model.train()
    model.norm.eval()  # a module kept in eval mode (e.g. frozen BatchNorm) must stay so
    model.features.weight.requires_grad_(False)
    sentinel = torch.full_like(model.head.weight, 7.0)
    model.head.weight.grad = sentinel
    before = {name: p.requires_grad for name, p in model.named_parameters()}

    def run():
        with GradCAMExplainer(model) as explainer:
            assert _hooks(model) > 0 and not model.training
            maps = explainer.explain(_square_images())
            np.testing.assert_allclose(
                maps, _square_images() / 255.0, atol=1e-4
            )  # works with frozen features
            model.features.weight.requires_grad_(True)  # whatever happens inside is undone on exit
            if fail:
                raise RuntimeError("boom")

    if fail:
        with pytest.raises(RuntimeError, match="boom"):
            run()
    else:
        run()
    assert _hooks(model) == 0
    assert model.training and model.features.training and not model.norm.training
    assert {name: p.requires_grad for name, p in model.named_parameters()} == before
    assert model.head.weight.grad is sentinel
    assert model.features.weight.grad is None


def test_gradcam_outside_block_and_bad_inputs():
    model = MeanClassifier()
    explainer = GradCAMExplainer(model)
    with pytest.raises(ModelError, match="inside"):
        explainer.explain(_square_images())
    with pytest.raises(ModelError, match="target layer"):
        GradCAMExplainer(nn.Linear(2, 2))
    with GradCAMExplainer(model) as explainer, pytest.raises(DataError, match=r"\[0, 1\]"):
        explainer.explain(np.full((1, 8, 8), 2.0, np.float32))


def test_gradcam_shape_and_range_on_a_real_classifier(small_classifier_factory):
    model, _ = small_classifier_factory()
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64), dtype=np.uint8)
    with GradCAMExplainer(model, batch_size=2) as explainer:
        maps = explainer.explain(images)
    assert maps.shape == (3, 64, 64) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert any(np.isclose(m.max(), 1.0, atol=1e-3) for m in maps)  # scaled per image
    assert _hooks(model) == 0


def test_gradcam_input_size_downsamples_and_returns_input_size():
    with GradCAMExplainer(MeanClassifier(), input_size=32) as explainer:
        maps = explainer.explain(np.kron(_square_images(1, 16), np.ones((4, 4), np.uint8)))
    assert maps.shape == (1, 64, 64)
    assert maps[0, 24, 44] > 0.9 and maps[0, 60, 4] < 0.1


# --- localisation --------------------------------------------------------------------------------------


def _masks():
    infection = np.zeros((8, 8), bool)
    infection[2:4, 2:6] = True
    lungs = np.zeros((8, 8), bool)
    lungs[1:7, 1:7] = True
    return infection, lungs


def test_localisation_scores_known_answers():
    infection, lungs = _masks()
    inside = infection * 0.8
    assert localisation_scores(inside, infection, lungs) == {
        "infection_energy": 1.0,
        "lung_energy": 1.0,
        "pointing_hit": 1.0,
        "empty": 0.0,
    }
    half = np.zeros((8, 8))
    half[2:4, 2:6] = 0.5
    half[4:6, 2:6] = 0.5  # outside the infection, inside the lungs
    half[3, 3] = 0.5
    assert localisation_scores(half, infection, lungs)["infection_energy"] == pytest.approx(0.5)
    outside = np.zeros((8, 8))
    outside[7, 7] = 1.0
    scores = localisation_scores(outside, infection, lungs)
    assert (
        scores["lung_energy"] == 0.0 and scores["infection_energy"] == 0.0 and scores["pointing_hit"] == 0.0
    )
    assert np.isnan(localisation_scores(inside, infection, None)["lung_energy"])


def test_pointing_game_tolerance_and_empty_maps():
    infection, _ = _masks()
    near = np.zeros((8, 8))
    near[5, 4] = 1.0  # two pixels below the mask's last row (row 3)
    assert [localisation_scores(near, infection, tolerance=t)["pointing_hit"] for t in (0, 1, 2)] == [0, 0, 1]
    empty = localisation_scores(np.zeros((8, 8)), infection)
    assert (empty["empty"], empty["pointing_hit"], empty["infection_energy"]) == (1.0, 0.0, 0.0)


def test_localisation_table_means_intervals_and_skips():
    infection, lungs = _masks()
    masks = np.stack([infection, infection, np.zeros_like(infection)])  # third: nothing to localise
    lung_masks = np.stack([lungs, np.zeros_like(lungs), lungs])  # second: lung mask unknown
    half = np.zeros((8, 8))
    half[2:4, 2:6] = 1.0
    half[5, 2:6] = 2.0  # twice the value on half the pixels: half the energy, argmax outside
    maps = {
        "ideal": np.stack([infection, infection, infection]).astype(float),
        "half": np.stack([infection * 1.0, half, half]),
    }
    table = localisation_table(maps, masks, lung_masks)
    assert list(table["method"]) == ["ideal", "half"]
    ideal, halfrow = table.iloc[0], table.iloc[1]
    assert ideal["images"] == 2 and ideal["infection_energy"] == 1.0 and ideal["infection_energy_ci"] == 0.0
    assert ideal["pointing_hit"] == 1.0 and ideal["lung_images"] == 1 and ideal["lung_energy"] == 1.0
    assert halfrow["infection_energy"] == pytest.approx(0.75)
    assert halfrow["infection_energy_ci"] == pytest.approx(1.96 * np.std([1.0, 0.5], ddof=1) / np.sqrt(2))
    assert halfrow["pointing_hit"] == 0.5
    assert halfrow["pointing_hit_ci"] == pytest.approx(1.96 * np.sqrt(0.25 / 2))
    shown = format_localisation(table)
    assert shown["Infection energy (%)"].tolist() == ["100.0 ± 0.0", "75.0 ± 49.0"]
    assert shown["Pointing game (%)"].tolist()[1] == "50.0 ± 69.3"


def test_localisation_table_resizes_maps_and_rejects_bad_input():
    infection = np.zeros((1, 16, 16), bool)
    infection[0, :8] = True
    coarse = np.zeros((1, 4, 4))
    coarse[0, :2] = 1.0
    table = localisation_table({"coarse": coarse}, infection)
    assert table["infection_energy"].item() > 0.9
    with pytest.raises(DataError, match="maps for"):
        localisation_table({"short": coarse[:0]}, infection)
    with pytest.raises(DataError, match="negative"):
        localisation_table({"neg": -coarse}, infection)
    with pytest.raises(DataError, match="none of the"):
        localisation_table({"x": coarse}, np.zeros_like(infection))


# --- figure ---------------------------------------------------------------------------------------------


def test_comparison_grid_layout(tmp_path):
    rng = np.random.default_rng(0)
    cxrs = rng.integers(0, 256, (2, 32, 32), dtype=np.uint8)
    gts = np.zeros((2, 32, 32), bool)
    gts[:, 8:20, 8:20] = True
    cams = {"ResNet Grad-CAM": rng.random((2, 4, 4)), "DenseNet Grad-CAM": rng.random((2, 32, 32))}
    infection = {"U-Net": gts.astype(np.float32) * 0.9}
    path = comparison_grid(
        cxrs, gts, cams, infection, tmp_path / "grid.png", row_labels=["a", "b"], cell_px=64
    )
    with Image.open(path) as image:
        assert image.size == grid_size(2, 5, cell_px=64) == (5 * 64, 40 + 2 * 64)
    with pytest.raises(DataError, match="one per radiograph"):
        comparison_grid(cxrs, gts[:1], cams, infection, tmp_path / "bad.png")


# --- classifier training ------------------------------------------------------------------------------


def _toy_cache(tmp_path: Path, n: int = 16, size: int = 32) -> ImageCache:
    """Separable toy set: COVID-19 images carry a bright blob, controls do not."""
    rng = np.random.default_rng(1)
    labels = np.array(["covid", "control"] * (n // 2))
    images = rng.integers(40, 90, (n, size, size)).astype(np.uint8)
    images[labels == "covid", 8:24, 8:24] = 230
    zeros = np.zeros((n, size, size), np.uint8)
    manifest = normalise_manifest(
        pd.DataFrame(
            {
                "label": labels,
                "group": np.where(labels == "covid", "covid", "I"),
                "source": "toy",
                "image_path": [f"img{i}.png" for i in range(n)],
            }
        )
    )
    return ImageCache(
        path=tmp_path,
        size=size,
        images=images,
        masks=zeros,
        lungs=zeros,
        has_mask=np.ones(n, bool),
        has_lung=np.zeros(n, bool),
        manifest=manifest,
    )


def test_classifier_learns_a_separable_toy_set(tmp_path, small_classifier_factory):
    _, encoder = small_classifier_factory()
    cache = _toy_cache(tmp_path)
    config = ClassifierConfig(epochs=4, lr=1e-3, batch_size=8, seed=0)
    classifier, result = train_classifier(
        encoder, cache, np.arange(len(cache)), config, out_dir=tmp_path, progress=False
    )
    losses = [h["train_loss"] for h in result.history]
    accuracies = [h["train_accuracy"] for h in result.history]
    assert len(result.history) == 4 and losses[-1] < losses[0]
    assert accuracies[-1] > accuracies[0] and accuracies[-1] >= 0.9
    assert not classifier.training
    prob = covid_probability(classifier, cache.images)
    labels = cache.manifest["label"].to_numpy() == "covid"
    assert prob[labels].mean() > prob[~labels].mean()
    assert result.checkpoint == tmp_path / f"classifier-{encoder}" / "model.pt"
    # the segmentation networks' loop: resumable last.pt and history.csv beside model.pt
    assert {"last.pt", "history.csv"} <= {p.name for p in result.checkpoint.parent.iterdir()}
    loaded, meta = load_classifier(result.checkpoint, device=next(classifier.parameters()).device)
    assert meta.task == "classification" and meta.channels == ("control", "covid")
    assert meta.encoder == encoder and meta.provenance.config["epochs"] == 4 and meta.input_size == 32
    assert meta.data.description.startswith("real: 16 images (8 COVID-19, 8 control)")
    np.testing.assert_allclose(covid_probability(loaded, cache.images), prob, atol=1e-4)


def test_load_classifier_rejects_other_checkpoints(tmp_path):
    path = write_tiny_checkpoint(tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="holds a segmentation network, not a classification one"):
        load_classifier(path)


def test_classifier_presets():
    assert classifier_config("paper") == ClassifierConfig(epochs=10, lr=1e-5, batch_size=32, preset="paper")
    quick = classifier_config("quick")
    assert quick.lr > 1e-5 and quick.epochs < 10 and quick.input_size is not None
    assert classifier_config("quick", epochs=2).epochs == 2
    with pytest.raises(ModelError, match="unknown classifier preset"):
        classifier_config("fast")
    with pytest.raises(ModelError, match="input_size must be at least 32"):
        classifier_config("quick", input_size=16)
    from_train = classifier_config(get_preset("quick", batch_size=4, seed=3))
    assert (from_train.lr, from_train.batch_size, from_train.seed) == (quick.lr, 4, 3)
