"""The whole workflow end to end through the API on a small phantom project with simulated reviewers (fast
stand-in training): import, Stage I, reviews, Stage II, reviews, export; then `cxrmap index` and
`cxrmap train` read the export directly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("argon2")

from typer.testing import CliRunner  # noqa: E402

from cxrmap.cli import app as cli_app  # noqa: E402
from cxrmap.data.manifest import read_manifest  # noqa: E402
from cxrmap.serving.annotate.simulate import SimulationConfig, run_simulation  # noqa: E402
from tests.helpers.annotate import fake_trainer


def test_end_to_end_simulation_through_the_api(tmp_path):
    """Import, Stage I, reviews, Stage II, reviews, export; then `cxrmap index` and a training manifest."""
    config = SimulationConfig(
        n_images=10, manual_share=0.5, folds=2, reviewers=2, reviews_per_image=2, dice_floor=0.75
    )
    result = run_simulation(tmp_path / "sim", config, trainer=fake_trainer, progress=False, log=None)
    written = json.loads((tmp_path / "sim" / "simulation.json").read_text())
    for key in ("manual_dice", "final_dice", "machine_share_stage1", "machine_share_stage2"):
        assert written[key] == result[key]
    assert result["exported"] == result["indexed_by_cxrmap_index"] == 10
    # every image reviewed twice (k=2), in one Stage I and one Stage II round
    assert result["reviews_stage1"] == 10 and result["reviews_stage2"] == 10 and result["stage2_rounds"] == 1
    # the reviewers pick the closest candidate (or draw): the accepted masks beat the hurried manual ones
    assert result["final_dice_manual_subset"] > result["manual_dice"]
    assert 0.0 <= result["machine_share_stage1"] <= 1.0 and 0.0 <= result["machine_share_stage2"] <= 1.0
    board = result["dashboard"]
    assert board["progress"]["accepted"] == 10 and board["progress"]["unannotated"] == 0
    assert board["agreement"]["images"] == 10 and board["agreement"]["mean_pairwise_dice"] > 0.5
    assert sum(board["position_bias"]["observed"]) == sum(
        c["reviews"]["model"] + c["reviews"]["manual"] for c in board["choices"].values()
    )

    export = Path(result["export"])
    runner = CliRunner()
    answer = runner.invoke(
        cli_app, ["index", str(export), "--out", str(tmp_path / "index.csv"), "--folds", "2"]
    )
    assert answer.exit_code == 0, answer.output
    indexed = read_manifest(tmp_path / "index.csv")
    assert len(indexed) == 10 and (indexed["mask_path"] != "").all() and set(indexed["label"]) == {"covid"}
    provenance = read_manifest(export / "provenance.csv")
    assert len(provenance) == 10 and set(provenance["stage"]) == {"1", "2"}
    assert set(provenance["chosen_origin"]) <= {"manual", "model", "drawn"}
    assert all(Path(p).is_file() for p in provenance["mask_path"])
    assert (provenance["reviews"] == "2").all() and provenance["reviewers"].str.contains(";").all()

    # `cxrmap train` reads the provenance manifest directly (one epoch of a small network, fold 0 held out)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the test machine's cores are shared
    try:
        answer = runner.invoke(cli_app, [
            "train", "--manifest", str(export / "provenance.csv"), "--out", str(tmp_path / "run"),
            "--arch", "unet", "--encoder", "tu-resnet10t", "--epochs", "1", "--size", "64",
            "--batch-size", "4",
            "--fold", "0", "--quiet"])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert answer.exit_code == 0, answer.output
    assert (tmp_path / "run" / "model.pt").is_file()
