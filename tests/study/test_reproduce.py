"""The paper's study by one command: targets, counts of Tables II and V, the Group-II split, the job grid
(shards, Ray, a killed worker) and ``cxrmap reproduce all`` on a phantom."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrmap.cli import app
from cxrmap.core.errors import DataError
from cxrmap.data.readers import index_dataset
from cxrmap.data.splits import assign_folds
from cxrmap.evaluate.tables import beside_paper
from cxrmap.study.cv import DONE, ModelSpec
from cxrmap.study.grid import Job, parse_shard, run_jobs, select_shard
from cxrmap.study.reproduce import (
    group_i_manifest,
    group_ii_manifest,
    resolve_targets,
    table2_counts,
    table5_counts,
)
from tests.helpers.grid import qata_tree, recording_work

REPO = Path(__file__).resolve().parents[2]


def test_targets_expand_to_tables_in_the_papers_order():
    assert resolve_targets(["group-ii", "table8"]) == ("table5", "table6", "table7", "table8")
    assert resolve_targets(["fig7", "table2"]) == ("table2", "fig7")
    assert len(resolve_targets(["all"])) == 10
    with pytest.raises(DataError, match="unknown target 'table9'; choose from table1"):
        resolve_targets(["table9"])


def test_cells_beside_the_paper():
    assert beside_paper(0.841, 84.0, ci=0.005) == "84.10 ± 0.5 / 84.00 (+0.10)"
    assert beside_paper(2361, 2361, "count") == "2,361 / 2,361 (+0)"
    assert beside_paper(5.16, 2.58, "ms") == "5.16 / 2.58 (x2.00)"
    assert beside_paper(0.5, None) == "50.00"


def test_table2_counts_per_fold_by_hand(tmp_path):
    manifest = index_dataset(qata_tree(tmp_path / "data", covid=4, group1=6), progress=False).manifest
    frame = assign_folds(group_i_manifest(manifest), k=2, seed=0)
    counts = table2_counts(frame)
    # 2 folds: each test part holds 2 of the 4 COVID-19 and 3 of the 6 Group-I images; the 2 COVID-19
    # training images are augmented up to the 3 Group-I ones
    assert counts.to_dict("records") == [
        {"fold": 0, "class": "covid", "samples": 4, "training": 2, "augmented": 3, "test": 2},
        {"fold": 0, "class": "I", "samples": 6, "training": 3, "augmented": 3, "test": 3},
        {"fold": 1, "class": "covid", "samples": 4, "training": 2, "augmented": 3, "test": 2},
        {"fold": 1, "class": "I", "samples": 6, "training": 3, "augmented": 3, "test": 3},
    ]


def test_group2_keeps_the_official_lists_and_splits_the_rest_at_their_ratio(tmp_path):
    # folders say 6 train / 2 test; the official lists move train_00000 to the test set: 5 / 3
    root = qata_tree(tmp_path / "data", covid=8, chest_train=6, chest_test=2, bacterial=8, viral=4,
                     official_test=("test_00000.png", "test_00001.png", "train_00000.png"))  # fmt: skip
    manifest = index_dataset(root, progress=False).manifest
    frame, notes = group_ii_manifest(manifest, root, seed=0)
    assert "official lists" in notes[0]
    by_name = dict(zip(frame["image_path"].map(lambda p: Path(p).name), frame["split"], strict=True))
    assert by_name["train_00000.png"] == "test" and by_name["train_00001.png"] == "train"
    assert set(frame["fold"]) == {"0", "1"}
    assert (frame["fold"] == "0").equals(frame["split"] == "test")
    assert not (frame["group"] == "I").any()
    counts = table5_counts(frame, {"covid": 10, "bacterial": 6, "viral": 1}).set_index("class")
    # ratio 5/8: round(8 * 0.625) = 5 of 8 COVID-19 and bacterial, round(4 * 0.625) = 2 (2.5 rounds to even)
    assert counts.loc["chestxray14"].tolist() == [5, 5, 3]  # not augmented
    assert counts.loc["covid"].tolist() == [5, 10, 3]
    assert counts.loc["bacterial"].tolist() == [5, 6, 3]
    assert counts.loc["viral"].tolist() == [2, 2, 2]  # the target is below the training count: kept
    assert list(counts.index) == ["covid", "bacterial", "chestxray14", "viral"]


def _grid(tmp_path: Path, n: int = 5, kill: str | None = None) -> list[Job]:
    log = tmp_path / "runs.log"
    specs = [ModelSpec("unet", "densenet121"), ModelSpec("dla", "resnet50")]
    return [
        Job(
            f"group-i/{spec.name}/fold-{fold}",
            spec,
            fold,
            tmp_path / spec.name / f"fold-{fold}",
            tmp_path / "manifest.csv",
            {"log": str(log), "kill": f"{spec.name}/fold-{fold}" == kill},
        )
        for spec in specs
        for fold in range(n)
    ]


def _log(tmp_path: Path) -> list[list[str]]:
    return [line.split() for line in (tmp_path / "runs.log").read_text().splitlines()]


def test_shards_split_the_grid_without_overlap_and_skip_what_is_done(tmp_path):
    jobs = _grid(tmp_path)
    assert parse_shard("1/2") == (1, 2)
    with pytest.raises(DataError, match=r"--shard 2/2: the shard must lie in 0..n-1 \(a SLURM array for 2"):
        parse_shard("2/2")
    with pytest.raises(DataError, match="--shard takes i/n"):
        parse_shard("first")
    first = run_jobs(select_shard(jobs, 0, 2), recording_work, progress=False)
    second = run_jobs(select_shard(list(reversed(jobs)), 1, 2), recording_work, progress=False)
    assert len(first) == len(second) == 5
    assert not set(first) & set(second)
    assert sorted(first + second) == sorted(job.name for job in jobs)
    assert all(job.done for job in jobs)
    assert run_jobs(select_shard(jobs, 0, 2), recording_work, progress=False) == []
    assert len(_log(tmp_path)) == 10


def test_ray_runs_each_job_once_also_when_a_worker_is_killed(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    monkeypatch.setenv("PYTHONPATH", f"{REPO}:{REPO / 'src'}")
    jobs = _grid(tmp_path, n=2, kill="unet-densenet121/fold-1")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        done = run_jobs(jobs, recording_work, engine="ray", cpus_per_job=1, max_retries=2, progress=False)
    finally:
        ray.shutdown()
    assert sorted(done) == sorted(job.name for job in jobs)
    log = _log(tmp_path)
    assert sorted(name for name, _, _ in log) == sorted(job.name for job in jobs)
    killed = [(status, pid) for name, status, pid in log if name.endswith("unet-densenet121/fold-1")]
    assert [status for status, _ in killed] == ["resumed"]
    killed_pid = (tmp_path / "unet-densenet121" / "fold-1" / "last.pt").read_text()
    assert killed[0][1] != killed_pid  # another worker took the job over


def test_reproduce_all_on_a_phantom_writes_every_table_and_resumes(tmp_path):
    runner = CliRunner()
    data = tmp_path / "data"
    made = runner.invoke(app, ["phantom", str(data), "--n-covid", "8", "--n-control", "16", "--size", "64",
                               "--quiet"])  # fmt: skip
    assert made.exit_code == 0, made.output
    out = tmp_path / "study"
    command = ["reproduce", "all", "--data", str(data), "--out", str(out), "--archs", "unet", "--encoders",
               "densenet121", "--folds", "2", "--epochs", "1", "--size", "32", "--batch-size", "4",
               "--timing-runs", "1", "--classifiers", "densenet121", "--quiet"]  # fmt: skip
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    tables = out / "tables"
    for number in range(1, 9):
        assert (tables / f"table{number}.md").is_file() and (tables / f"table{number}.csv").is_file()
    assert (out / "figures" / "fig6_precision_recall.png").is_file()
    assert (out / "fig7" / "fig7_activation_vs_infection.png").is_file()
    table1 = pd.read_csv(tables / "table1.csv")
    assert table1.loc[0, "sensitivity_paper"] == pytest.approx(0.84)  # U-Net DenseNet-121 not frozen
    assert table1.loc[0, "sensitivity_diff"] == pytest.approx(table1.loc[0, "sensitivity"] - 0.84)
    assert "/ 84.00 (" in (tables / "table1.md").read_text()
    table7 = pd.read_csv(tables / "table7.csv")
    assert table7.loc[0, ["tn_paper", "fp_paper", "fn_paper", "tp_paper"]].tolist() == [26534, 31, 44, 829]
    table8 = pd.read_csv(tables / "table8.csv")
    assert table8.loc[0, "paper_ms"] == 2.58 and table8.loc[0, "ms"] > 0
    assert table8.loc[0, "machine"] in (tables / "table8.md").read_text()
    table5 = (tables / "table5.md").read_text()
    assert "| COVID-19 | " in table5 and "| Total | " in table5
    report = (out / "report.html").read_text()
    for caption in ("Table I:", "Table II:", "Table V:", "Table VIII:", "Fig. 6:", "Fig. 7:"):
        assert caption in report
    done = sorted(out.glob(f"group-*/**/{DONE}"))
    assert len(done) == 3  # 2 folds of Group I, the Group-II model
    stamps = [path.stat().st_mtime_ns for path in done]
    again = runner.invoke(app, command)
    assert again.exit_code == 0, again.output
    assert [path.stat().st_mtime_ns for path in done] == stamps  # nothing trained twice
    assert json.loads((out / "fig7" / DONE).read_text())["grid"].endswith(".png")


def test_reproduce_without_data_names_the_option(tmp_path):
    result = CliRunner().invoke(app, ["reproduce", "table1", "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "every target but table8 needs the data: give --data ROOT" in str(result.exception)
