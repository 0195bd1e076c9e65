"""Detection by subgroup: shares and intervals on hand-made scores, which columns apply, files, errors."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from cxrmap.core.errors import DataError
from cxrmap.evaluate.subgroups import detection_by_subgroup, write_subgroups


def _manifest() -> pd.DataFrame:
    """Three COVID-19 images from two sources, five controls: two normal (group I), three group II."""
    return pd.DataFrame(
        {
            "label": ["covid"] * 3 + ["control"] * 5,
            "group": ["covid"] * 3 + ["I", "I", "II", "II", "II"],
            "finding": ["covid"] * 3 + ["normal", "normal", "effusion", "effusion", "nodule"],
            "source": ["A", "A", "B", "B", "A", "A", "B", ""],
        }
    )


def _scores() -> pd.DataFrame:
    # rows 0-2 COVID-19 (called: 0 and 2; 0.5 sits on the threshold), rows 3-7 controls (called: 5, 6)
    return pd.DataFrame(
        {
            "model": "m",
            "index": [0, 1, 2, 3, 4, 5, 6, 7],
            "label": [1, 1, 1, 0, 0, 0, 0, 0],
            "score": [0.5, 0.49, 0.9, 0.1, 0.2, 0.95, 0.7, 0.3],
        }
    )


def _row(table: pd.DataFrame, column: str, value: str, label: str) -> dict:
    found = table[(table["column"] == column) & (table["value"] == value) & (table["label"] == label)]
    assert len(found) == 1, (column, value, label)
    return found.iloc[0].to_dict()


def test_shares_and_intervals_match_hand_computation():
    table = detection_by_subgroup(_scores(), _manifest())
    group_ii = _row(table, "group", "II", "control")
    assert (group_ii["images"], group_ii["called_covid"]) == (3, 2)
    assert group_ii["share"] == pytest.approx(2 / 3)
    assert group_ii["share_ci"] == pytest.approx(1.96 * math.sqrt((2 / 3) * (1 / 3) / 3))
    assert _row(table, "group", "I", "control")["called_covid"] == 0
    effusion = _row(table, "finding", "effusion", "control")
    assert (effusion["images"], effusion["called_covid"], effusion["share"]) == (2, 2, 1.0)
    assert effusion["share_ci"] == 0.0
    # the score 0.5 of row 0 reaches the threshold: source A's COVID-19 images are 1 of 2 found
    assert _row(table, "source", "A", "COVID-19")["share"] == pytest.approx(0.5)
    assert _row(table, "source", "B", "COVID-19")["share"] == 1.0
    # the control with no source (row 7) is left out of the source rows only
    assert (
        _row(table, "source", "A", "control")["images"] + _row(table, "source", "B", "control")["images"] == 4
    )
    assert table[(table["column"] == "group") & (table["label"] == "control")]["images"].sum() == 5


def test_only_columns_that_tell_images_apart():
    table = detection_by_subgroup(_scores(), _manifest())
    # group and finding have one value for every COVID-19 image: no COVID-19 rows for them
    assert not ((table["column"] != "source") & (table["label"] == "COVID-19")).any()
    one_source = _manifest().assign(source="QaTa")
    assert "source" not in set(detection_by_subgroup(_scores(), one_source)["column"])
    bare = _manifest().assign(group="", finding="", source="")
    assert detection_by_subgroup(_scores(), bare).empty


def test_threshold_moves_the_calls():
    table = detection_by_subgroup(_scores(), _manifest(), threshold=0.8)
    assert _row(table, "group", "II", "control")["called_covid"] == 1  # only 0.95 stays
    assert _row(table, "source", "A", "COVID-19")["called_covid"] == 0


def test_files_written_and_nothing_when_no_column_applies(tmp_path):
    paths = write_subgroups(_scores(), _manifest(), tmp_path / "detection_subgroups")
    assert {p.name for p in paths.values()} == {
        "detection_subgroups.md", "detection_subgroups.csv", "detection_subgroups.png",
    }  # fmt: skip
    assert "| m | group: II | control | 3 | 2 | 66.67 ± 53 |" in paths["subgroups"].read_text()
    assert paths["subgroups_plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    two_models = pd.concat([_scores(), _scores().assign(model="n", score=0.0)], ignore_index=True)
    table = pd.read_csv(write_subgroups(two_models, _manifest(), tmp_path / "two")["subgroups_csv"])
    assert set(table["model"]) == {"m", "n"} and (table[table["model"] == "n"]["called_covid"] == 0).all()
    bare = _manifest().assign(group="", finding="", source="")
    assert write_subgroups(_scores(), bare, tmp_path / "none") == {}
    assert not list(tmp_path.glob("none*"))


def test_bad_input_is_named():
    with pytest.raises(DataError, match="no score column"):
        detection_by_subgroup(_scores().drop(columns="score"), _manifest())
    with pytest.raises(DataError, match="manifest has 8"):
        detection_by_subgroup(_scores().assign(index=range(1, 9)), _manifest())
