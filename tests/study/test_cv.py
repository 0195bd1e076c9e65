"""Cross-validation: every image tested once, finished folds skipped, cut-off folds resumed, CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cxrmap.core.errors import ModelError
from cxrmap.study.cv import ModelSpec, model_specs, run_cv
from cxrmap.train import get_preset

TINY = get_preset("quick").replace(encoder="resnet18", size=64, batch_size=4, epochs=1, lr=3e-3, amp="off")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    from cxrmap.data.manifest import write_manifest
    from cxrmap.data.phantom.shapes import generate
    from cxrmap.data.readers import index_dataset

    root = tmp_path_factory.mktemp("phantom")
    generate(root / "data", n_covid=4, n_control=4, size=64, seed=1, progress=False)
    return write_manifest(index_dataset(root / "data", progress=False).manifest, root / "manifest.csv")


def test_model_specs():
    specs = model_specs("unet,unetplusplus", ["densenet121"], frozen="both", weights="imagenet")
    assert [s.name for s in specs] == [
        "unet-densenet121-imagenet-frozen", "unet-densenet121-imagenet",
        "unetplusplus-densenet121-imagenet-frozen", "unetplusplus-densenet121-imagenet",
    ]  # fmt: skip
    assert model_specs("unet", "resnet18") == [ModelSpec("unet", "resnet18")]
    with pytest.raises(ModelError, match="frozen"):
        model_specs("unet", "resnet18", frozen="maybe")
    with pytest.raises(ModelError, match="at least one"):
        model_specs("", "resnet18")


def test_cv_runs_skips_and_resumes(manifest, tmp_path, monkeypatch):
    import cxrmap.study.cv as cv

    calls = []
    real_train = cv.train

    def counting_train(*args, **kwargs):
        calls.append(kwargs.get("resume"))
        return real_train(*args, **kwargs)

    monkeypatch.setattr(cv, "train", counting_train)
    specs = [ModelSpec("unet", "resnet18")]
    result = run_cv(manifest, specs, TINY, tmp_path, folds=2, progress=False)
    assert calls == [False, False]
    name = "unet-resnet18"
    assert len(result.fold_metrics[name]) == 2 and all(p.is_file() for p in result.model_paths[name])
    # every image is tested exactly once, in its own fold
    assert sorted(result.scores["index"]) == list(range(8))
    folds = result.manifest["fold"].astype(int).to_numpy()
    assert (folds[result.scores["index"]] == result.scores["fold"]).all()
    assert result.confusion[name].sum() == 8
    per_fold = [m["detection"] for m in result.fold_metrics[name]]
    summed = np.sum([[[d["tn"], d["fp"]], [d["fn"], d["tp"]]] for d in per_fold], axis=0)
    assert result.confusion[name].tolist() == summed.tolist()
    summary = result.summary[name]["segmentation"]
    mean = np.nanmean([m["segmentation"]["f1"] for m in result.fold_metrics[name]])
    assert summary["f1"] == pytest.approx(mean)
    for role in ("segmentation", "detection", "confusion", "pr_curve", "roc_curve", "scores", "subgroups"):
        assert result.files[role].is_file(), role
    # the out-of-fold scores broken down by the phantom's control groups: each control counted once
    subgroups = pd.read_csv(result.files["subgroups_csv"])
    groups = subgroups[subgroups["column"] == "group"]
    assert set(groups["value"]) == {"I", "II"} and groups["images"].sum() == 4
    done = json.loads((tmp_path / name / "fold-1" / "done.json").read_text())
    assert done["metrics"]["detection"]["images"] == 4

    # second call: nothing to train, same figures
    calls.clear()
    again = run_cv(manifest, specs, TINY, tmp_path, folds=2, progress=False)
    assert calls == []
    assert again.summary == result.summary

    # a fold cut off after its checkpoint (no done.json, no model.pt) is resumed, not restarted
    (tmp_path / name / "fold-1" / "done.json").unlink()
    (tmp_path / name / "fold-1" / "model.pt").unlink()
    third = run_cv(manifest, specs, TINY, tmp_path, folds=2, progress=False)
    assert calls == [True]
    assert third.summary == result.summary  # the resumed fold's weights are the ones it stopped with
    assert third.summary[name]["detection"]["images"] == 8


def test_evaluate_cli_on_a_fold(manifest, tmp_path):
    from typer.testing import CliRunner

    from cxrmap.cli import app
    from cxrmap.data.manifest import read_manifest
    from cxrmap.data.splits import assign_folds

    runner = CliRunner()
    out = tmp_path / "train"
    options = ["--encoder", "resnet18", "--size", "64", "--batch-size", "4", "--epochs", "1", "--amp", "off"]
    done = runner.invoke(
        app, ["train", "--manifest", str(manifest), "--out", str(out), *options, "--fold", "0", "--quiet"]
    )
    assert done.exit_code == 0, done.output
    assert (out / "evaluation" / "table3_detection.md").is_file()
    done = runner.invoke(app, ["evaluate", "--model", str(out / "model.pt"), "--manifest", str(manifest),
                               "--fold", "0", "--out", str(tmp_path / "eval"), "--quiet"])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "Table III" in done.output
    scores = pd.read_csv(tmp_path / "eval" / "scores.csv")
    folds = assign_folds(read_manifest(manifest), k=3, seed=0)["fold"]  # the preset's folds, as trained
    assert len(scores) == (folds == "0").sum()
    first = pd.read_csv(out / "evaluation" / "table1_segmentation.csv")
    second = pd.read_csv(tmp_path / "eval" / "table1_segmentation.csv")
    assert first["f1"].equals(second["f1"])  # the same model on the same fold gives the same figures


def test_cv_chooses_a_detection_rule_on_validation_images_and_evaluates_on_onnx(tmp_path, monkeypatch):
    import cxrmap.study.cv as cv
    from cxrmap.data.phantom.shapes import generate
    from cxrmap.data.readers import index_dataset
    from cxrmap.evaluate.evaluation import VALIDATED

    generate(tmp_path / "data", n_covid=6, n_control=6, size=64, seed=2, progress=False)
    manifest = index_dataset(tmp_path / "data", progress=False).manifest
    trained_on = []
    real_train = cv.train

    def recording_train(config, cache, rows, *args, **kwargs):
        trained_on.append(set(rows.tolist()))
        return real_train(config, cache, rows, *args, **kwargs)

    monkeypatch.setattr(cv, "train", recording_train)
    config = TINY.replace(validation_share=0.3, batch_size=2)
    result = run_cv(
        manifest, [ModelSpec("unet", "resnet18")], config, tmp_path / "cv", 2, False, backend="onnx"
    )
    summary = result.summary["unet-resnet18"]
    # the rule is chosen per fold on 2 of its 6 training images; the test images are scored under it
    assert summary[VALIDATED]["images"] == summary["detection"]["images"] == 12
    assert len(summary[VALIDATED]["rules"]) == 2
    table = pd.read_csv(result.files["detection"].with_suffix(".csv"))
    assert len(table) == 2 and table["rule"].str.contains("validation").tolist() == [False, True]
    done = json.loads((tmp_path / "cv" / "unet-resnet18" / "fold-0" / "done.json").read_text())
    assert done["metrics"][VALIDATED]["threshold"] == summary[VALIDATED]["rules"][0]["threshold"]
    # each fold trained on 4 of its 6 training images: the 2 validation images were left out
    folds = result.manifest["fold"].astype(int).to_numpy()
    for fold, rows in enumerate(trained_on):
        assert len(rows) == 4 and not rows & set(np.flatnonzero(folds == fold).tolist())
