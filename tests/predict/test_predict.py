"""Predictor (any-size images, detection, severity) and ``cxrmap predict`` (maps, CSV, skipped files)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cxrmap.cli import app
from cxrmap.cli.predict import output_names
from cxrmap.core.errors import CheckpointError, DataError, ModelError
from cxrmap.data.io import read_image
from cxrmap.predict.maps import display_image
from cxrmap.predict.predictor import FIELDS, NO_LUNG_CHANNEL, Prediction, Predictor, latest_model
from cxrmap.predict.severity import REGIONS
from tests.helpers.checkpoints import make_meta

SIZE = 64


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A random-weight U-Net/ResNet-18 with infection and lung channels, saved as a real checkpoint."""
    from cxrmap.models import create_model
    from cxrmap.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = create_model("unet", "resnet18", classes=2)
    meta = make_meta(model.config, input_size=SIZE)
    return save_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "model.pt", {"meta": meta, "model": model.state_dict()}
    )


class Scripted(torch.nn.Module):
    """A fixed 'network': infection where the image is bright, lungs on two fixed rectangles."""

    def __init__(self, lungs: np.ndarray):
        super().__init__()
        self.register_buffer("lungs", torch.from_numpy(lungs.astype(np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        infection = (x[:, :1] - 0.5) * 40.0
        lung = (self.lungs - 0.5).expand_as(infection) * 40.0
        return torch.cat([infection, lung], dim=1)


def test_predictor_known_answers():
    lungs = np.zeros((16, 16), bool)
    lungs[2:14, 2:7] = lungs[2:14, 9:14] = True  # 60 + 60 pixels, heights 12: thirds of 4 rows
    image = np.zeros((16, 16), np.uint8)
    image[2:6, 2:7] = 255  # the patient's right upper zone, fully infected
    image[0, 15] = 255  # one bright pixel outside the lungs
    meta = make_meta(input_size=16)
    prediction = Predictor(Scripted(lungs), meta).predict([image])[0]
    assert prediction.covid and prediction.score == pytest.approx(1.0, abs=1e-6)
    assert prediction.image_share == pytest.approx(21 / 256)
    grade = prediction.severity
    assert (
        grade["lung_share"] == pytest.approx(20 / 120)
        and grade["right_upper"] == 1.0
        and grade["right"] == 1 / 3
    )
    assert grade["left"] == 0.0 and grade["upper"] == 0.5
    row = prediction.to_dict()
    assert tuple(row) == FIELDS and row["lung_share"] == grade["lung_share"] and row["severity_note"] == ""
    assert all(not isinstance(value, np.ndarray) for value in row.values())
    assert np.array_equal(prediction.prob >= 0.5, image >= 128)


def test_predictor_odd_sizes_and_16_bit(checkpoint, tmp_path):
    rng = np.random.default_rng(0)
    sixteen = tmp_path / "sixteen.png"
    Image.fromarray(rng.integers(0, 65536, (41, 29), dtype=np.uint16)).save(sixteen)
    images = [
        rng.integers(0, 256, (37, 53), dtype=np.uint8),
        read_image(sixteen),
        np.zeros((SIZE, SIZE), np.uint8),
    ]
    predictor = Predictor.from_checkpoint(checkpoint)
    predictions = predictor.predict(images)
    assert len(predictions) == 3 and predictor.batch_size == 8
    for image, prediction in zip(images, predictions, strict=True):
        assert isinstance(prediction, Prediction)
        assert prediction.prob.shape == prediction.lung_prob.shape == image.shape
        assert (
            prediction.prob.dtype == np.float32
            and 0.0 <= prediction.prob.min() <= prediction.prob.max() <= 1.0
        )
        assert prediction.covid == (prediction.score >= 0.5) and prediction.threshold == 0.5
        assert prediction.severity is not None or prediction.severity_note  # never None without a reason
        assert prediction.map(image).shape == (*image.shape, 3)
    # batching does not change the result
    one_by_one = Predictor.from_checkpoint(checkpoint, batch_size=1).predict(images)
    for a, b in zip(predictions, one_by_one, strict=True):
        np.testing.assert_allclose(a.prob, b.prob, atol=1e-5)


def test_no_lung_channel_means_no_severity():
    model = torch.nn.Conv2d(1, 1, 3, padding=1)
    prediction = Predictor(model, make_meta(channels=("infection",), input_size=16)).predict(
        [np.zeros((9, 9), np.uint8)]
    )[0]
    assert prediction.severity is None and prediction.lung_prob is None
    assert prediction.severity_note == NO_LUNG_CHANNEL
    row = prediction.to_dict()
    assert row["lung_share"] is None and all(row[name] is None for name in REGIONS)


def test_threshold_override_and_bad_inputs():
    model = torch.nn.Conv2d(1, 1, 1)
    meta = make_meta(channels=("infection",), input_size=8)
    assert Predictor(model, meta, threshold=0.2).threshold == 0.2
    with pytest.raises(DataError, match="threshold"):
        Predictor(model, meta, threshold=1.5)
    with pytest.raises(DataError, match="read_image"):
        Predictor(model, meta).predict([np.zeros((8, 8), np.uint16)])
    with pytest.raises(DataError, match="uint8 grayscale"):
        Predictor(model, meta).predict([np.zeros((8, 8, 3), np.uint8)])
    with pytest.raises(ModelError, match="channels must include 'infection'"):
        Predictor(model, make_meta(channels=("lung",), input_size=8))


def test_missing_checkpoint_says_how_to_make_one(tmp_path):
    with pytest.raises(CheckpointError, match=r"nowhere\.pt.*cxrmap run.*cxrmap train"):
        Predictor.from_checkpoint(tmp_path / "nowhere.pt")


def test_output_names_are_safe_and_unique():
    names = output_names(
        [Path("a/Normal (1).png"), Path("b/Normal (1).png"), Path("c/x.png"), Path("d/X.dcm")]
    )
    assert len({name.lower() for name in names}) == 4
    assert all(name.startswith("Normal_1-") for name in names[:2])
    assert all(
        set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        for name in names
    )
    assert output_names([Path("..png")]) == ["image"]


def test_latest_model(tmp_path):
    with pytest.raises(CheckpointError, match="cxrmap run"):
        latest_model(tmp_path)
    for name, mtime in (("old", 1_000_000), ("new", 2_000_000), ("older", 500_000)):
        path = tmp_path / "runs" / name / "model.pt"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
        os.utime(path, (mtime, mtime))
    assert latest_model(tmp_path) == tmp_path / "runs" / "new" / "model.pt"


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_cli_on_real_samples(checkpoint, samples_root, tmp_path):
    folders = sorted(samples_root.glob("Infection Segmentation Data/*/*/images"))
    out = tmp_path / "out"
    args = ["predict", *map(str, folders), "--model", str(checkpoint), "--out", str(out), "--batch-size", "5"]
    result = CliRunner().invoke(app, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = read_rows(out / "predictions.csv")
    assert len(rows) == 12 and list(rows[0]) == ["path", "map", *FIELDS]
    assert sorted(p.name for p in (out / "maps").iterdir()) == sorted(Path(row["map"]).name for row in rows)
    for row in rows:
        assert row["covid"] in ("True", "False") and 0.0 <= float(row["score"]) <= 1.0
        assert row["lung_share"] != "" or row["severity_note"]  # empty only with a reason
        painted = np.asarray(Image.open(out / row["map"]))
        assert painted.shape == (*read_image(row["path"]).shape, 3)
    assert read_rows(out / "skipped.csv") == []
    assert (
        (out / "colorbar.png").is_file() and not list(out.glob("*.partial")) and not list(out.glob(".*.tmp"))
    )
    assert "12 image(s)" in result.output


def test_cli_skips_unreadable_files_and_keeps_names_unique(checkpoint, tmp_path):
    rng = np.random.default_rng(1)
    data = tmp_path / "data"
    for folder in ("a", "b"):
        (data / folder).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (40, 30), dtype=np.uint8)).save(data / folder / "same name.png")
    (data / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["predict", str(data), "--model", str(checkpoint), "--out", str(out), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    rows = read_rows(out / "predictions.csv")
    assert len(rows) == 2 and len({row["map"] for row in rows}) == 2
    skipped = read_rows(out / "skipped.csv")
    assert [Path(row["path"]).name for row in skipped] == ["broken.png"] and skipped[0]["reason"]
    assert "1 file(s) skipped" in result.output


def test_cli_missing_model(tmp_path, monkeypatch):
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(image)
    runner = CliRunner()
    result = runner.invoke(
        app, ["predict", str(image), "--model", str(tmp_path / "none.pt"), "--out", str(tmp_path)]
    )
    assert isinstance(result.exception, CheckpointError) and "none.pt" in str(result.exception)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["predict", str(image), "--out", str(tmp_path / "o")])
    assert isinstance(result.exception, CheckpointError) and "cxrmap run" in str(result.exception)
    assert not (tmp_path / "o").exists()


def test_map_side_gives_display_sized_maps_and_the_same_figures(checkpoint):
    image = np.random.default_rng(2).integers(0, 256, (90, 60), dtype=np.uint8)
    predictor = Predictor.from_checkpoint(checkpoint)
    full, small = predictor.predict([image])[0], predictor.predict([image], map_side=30)[0]
    assert full.prob.shape == image.shape and small.prob.shape == small.lung_prob.shape == (30, 20)
    assert full.to_dict() == small.to_dict()
    assert small.map(display_image(image, 30)).shape == (30, 20, 3)
