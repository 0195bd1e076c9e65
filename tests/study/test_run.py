"""``cxrmap run`` end to end on a tiny phantom setting: every output of the run folder, and resuming."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from typer.testing import CliRunner

from cxrmap.cli import app
from cxrmap.models.checkpoint import load_model

TINY_LOUD = [
    "--phantom", "shapes", "--n-covid", "16", "--n-control", "16", "--folds", "2", "--epochs", "1",
    "--size", "64", "--encoder", "resnet18", "--classifiers", "resnet18",
]  # fmt: skip
TINY = [*TINY_LOUD, "-q"]


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


@pytest.fixture(scope="module")
def loud_run(tmp_path_factory):
    """The tiny run with its progress output, written (as into a log file) to a stream that is no terminal."""
    out = tmp_path_factory.mktemp("run") / "study"
    result = CliRunner().invoke(app, ["run", "--out", str(out), *TINY_LOUD])
    assert result.exit_code == 0, result.output
    assert str(out / "report.html") in result.output
    return out, result.output


@pytest.fixture(scope="module")
def run_dir(loud_run):
    return loud_run[0]


def test_run_progress_in_a_log_is_plain_lines_with_fold_and_eta(loud_run):
    log = loud_run[1]
    assert "\r" not in log
    lines = log.splitlines()
    for fold in ("1/2", "2/2"):
        epoch_end = [
            line for line in lines if line.startswith(f"train fold {fold} epoch 1/1: 2/2 batch, loss ")
        ]
        assert len(epoch_end) == 1, log  # one line at the epoch's end (more only every few seconds)
        assert " img/s, " in epoch_end[0] and ", run ETA " in epoch_end[0]
        assert any(line.startswith(f"evaluate fold {fold}: 16/16 img, ") for line in lines)
    assert any(line.startswith("classifier encoder resnet18 epoch 2/2: ") for line in lines)
    assert lines.index(next(line for line in lines if line.startswith("phantom: 32/32 img"))) < lines.index(
        next(line for line in lines if line.startswith("train fold 1/2"))
    )


def test_run_writes_summary_with_fractions_and_wall_time(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    for task, metric in [("segmentation", "f1"), ("detection", "sensitivity"), ("detection", "specificity")]:
        assert 0.0 <= summary[task][metric] <= 1.0
    assert summary["wall_seconds"] > 0 and summary["folds"] == 2
    # the rule chosen on each fold's validation images, scored on the same 32 test images as the paper's
    validated = summary["detection_validated"]
    assert validated["images"] == summary["detection"]["images"] == 32 and len(validated["rules"]) == 2
    assert all(0.0 < rule["threshold"] <= 1.0 for rule in validated["rules"])
    assert "chosen on validation images" in (run_dir / "cv" / "table3_detection.md").read_text()
    assert summary["data"] == {
        **summary["data"],
        "kind": "phantom",
        "images": 32,
        "covid": 16,
        "control": 16,
    }
    # the 16 controls, half in each group, each counted once in the breakdown by group
    groups = [row for row in summary["detection_by_subgroup"] if row["column"] == "group"]
    assert {row["value"] for row in groups} == {"I", "II"} and sum(row["images"] for row in groups) == 16
    methods = [row["method"] for row in summary["localisation"]]
    assert methods == ["U-Net resnet18 infection map", "resnet18 Grad-CAM"]
    for row in summary["localisation"]:
        # phantom lesions lie inside the lungs, so no map can put more energy on them than on the lungs
        assert 0.0 <= row["infection_energy"] <= row["lung_energy"] + 0.02 <= 1.02


def test_run_model_carries_its_provenance(run_dir):
    model, meta = load_model(run_dir / "model.pt")
    assert meta.data.kind == "phantom" and meta.phantom
    assert "phantom" in meta.data.description
    assert meta.metrics["folds"] == 2
    assert set(meta.metrics["cross_validated"]) >= {"segmentation", "detection"}
    assert meta.encoder == "resnet18"


def test_run_report_is_self_contained_with_tables_and_pictures(run_dir):
    page = (run_dir / "report.html").read_text()
    for heading in (
        "Model card", "Table I: infected region segmentation (pixels)", "Held-out figures, mean over 2",
        "Table I", "Table III", "Table IV", "Detection by subgroup", "Localisation", "Fig. 7",
        "precision-recall",
    ):  # fmt: skip
        assert heading in page
    parser = _Images()
    parser.feed(page)
    assert len(parser.sources) >= 3 + 6  # curves, the Fig. 7 grid, the gallery
    assert all(src.startswith("data:image/png;base64,") for src in parser.sources)
    assert "http://" not in page and "https://" not in page
    assert len(list((run_dir / "maps").glob("*.png"))) >= 6
    assert (run_dir / "fig7_activation_vs_infection.png").is_file()


def test_run_again_resumes_without_training_the_folds_again(run_dir, monkeypatch):
    import cxrmap.study.cv

    def refuse(*args, **kwargs):
        raise AssertionError("a finished fold was trained again")

    monkeypatch.setattr(cxrmap.study.cv, "train", refuse)
    result = CliRunner().invoke(app, ["run", "--out", str(run_dir), *TINY])
    assert result.exit_code == 0, result.output


def test_run_on_data_without_covid_masks_says_why(tmp_path):
    from PIL import Image

    images = tmp_path / "root" / "Control_Group" / "Control_Group_I"
    images.mkdir(parents=True)
    for i in range(4):
        Image.new("L", (64, 64), 40 * i).save(images / f"normal_{i}.png")
    result = CliRunner().invoke(
        app, ["run", "--out", str(tmp_path / "out"), "--data", str(tmp_path / "root")]
    )
    assert result.exit_code != 0
    assert "no COVID-19 images with infection masks" in str(result.exception or result.output)


def test_the_ct_phantom_is_the_default_data(tmp_path):
    from cxrmap.study.run import StudyOptions, prepare_data
    from cxrmap.train.presets import get_preset

    assert "[default: ct]" in CliRunner().invoke(app, ["run", "--help"], terminal_width=200).output
    options = StudyOptions(out=tmp_path, n_covid=2, n_control=2, progress=False)
    manifest, data = prepare_data(options, get_preset("quick"), print)
    assert len(manifest) == 4 and (manifest["label"] == "covid").sum() == 2
    assert data["kind"] == "phantom" and data["phantom"] == "ct"
    metadata = (tmp_path / "data" / "phantom-metadata.csv").read_text().splitlines()
    assert len(metadata) == 5 and "bone" in metadata[0]  # the CT renderer's own columns
