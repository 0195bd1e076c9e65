"""Folds (Group-I, Table II) and the Group-II split (Table V), on manifests without images."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrmap.core.errors import DataError
from cxrmap.data.augment import balanced_counts
from cxrmap.data.manifest import normalise_manifest
from cxrmap.data.splits import (
    apply_official_lists,
    assign_folds,
    fold_indices,
    group2_classes,
    group2_split,
    split_indices,
)


def _manifest(n_covid: int, n_control: int) -> pd.DataFrame:
    rows = [{"image_path": f"/x/covid_{i}.png", "label": "covid", "group": "covid"} for i in range(n_covid)]
    rows += [{"image_path": f"/x/normal_{i}.png", "label": "control", "group": "I"} for i in range(n_control)]
    return normalise_manifest(rows)


def test_table2_group1_counts():
    """Table II: 2951 COVID-19 + 12544 controls in 5 folds.

    Per fold: training 2361 COVID-19 / 10035 controls (10035 COVID-19 after augmentation), test 590 / 2509.
    """
    folds = assign_folds(_manifest(2951, 12544), k=5, seed=0)
    labels = folds["label"].to_numpy()
    table = []
    for fold in range(5):
        train, test = fold_indices(folds, fold)
        assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == 15495
        n_covid, n_control = int((labels[train] == "covid").sum()), int((labels[train] == "control").sum())
        table.append(
            (
                n_covid,
                n_control,
                int((labels[test] == "covid").sum()),
                int((labels[test] == "control").sum()),
                balanced_counts(n_covid, n_control),
            )
        )
    # 2951 and 12544 are not multiples of 5: four folds are exactly Table II, the fifth one image off
    assert table.count((2361, 10035, 590, 2509, (10035, 10035))) == 4
    assert sorted(table)[0] == (2360, 10036, 591, 2508, (10036, 10036))
    assert all(row[2] + row[3] == 3099 for row in table)  # Table II: 3099 test images per fold


def test_folds_reproducible_and_stratified():
    manifest = _manifest(23, 61)
    a, b = assign_folds(manifest, k=5, seed=3), assign_folds(manifest, k=5, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert not assign_folds(manifest, k=5, seed=4)["fold"].equals(a["fold"])
    assert sorted(a["fold"].unique()) == ["0", "1", "2", "3", "4"]
    counts = pd.crosstab(a["fold"], a["label"])
    assert counts["covid"].between(4, 5).all() and counts["control"].between(12, 13).all()
    assert manifest["fold"].eq("").all()  # the input is not modified


def test_fold_needs_enough_images_per_class():
    with pytest.raises(DataError, match="'covid' has 3 image"):
        assign_folds(_manifest(3, 40), k=5)
    with pytest.raises(DataError, match="at least 2 folds"):
        assign_folds(_manifest(10, 10), k=1)
    folds = assign_folds(_manifest(3, 40), k=3)
    with pytest.raises(DataError, match="has folds 0, 1, 2"):
        fold_indices(folds, 3)
    with pytest.raises(DataError, match="assign_folds"):
        fold_indices(_manifest(3, 3), 0)


def test_rows_without_fold_are_in_neither_part():
    folds = assign_folds(_manifest(5, 5), k=5)
    folds.loc[0, "fold"] = ""
    train, test = fold_indices(folds, "1")
    assert 0 not in train and 0 not in test and len(train) + len(test) == 9
    assert train.dtype == test.dtype == np.int64


def _group2() -> pd.DataFrame:
    rows = [
        {
            "image_path": f"/d/CHESTXRAY-14/Train/x_{i}.png",
            "label": "control",
            "group": "II",
            "source": "ChestX-ray14",
            "split": "train",
            "finding": "Effusion",
        }
        for i in range(300)
    ]
    rows += [
        {
            "image_path": f"/d/CHESTXRAY-14/Test/x_{i}.png",
            "label": "control",
            "group": "II",
            "source": "ChestX-ray14",
            "split": "test",
            "finding": "Effusion",
        }
        for i in range(100)
    ]
    rows += [{"image_path": f"/d/covid_{i}.png", "label": "covid", "group": "covid"} for i in range(40)]
    for finding, n in (("Pediatric_Viral_Pneumonia", 20), ("Pediatric_Bacterial_Pneumonia", 12)):
        rows += [
            {"image_path": f"/d/{finding}/{i}.png", "label": "control", "group": "II", "finding": finding}
            for i in range(n)
        ]
    return normalise_manifest(rows)


def test_group2_split_keeps_chestxray14_and_matches_its_ratio():
    manifest = _group2()
    split = group2_split(manifest, seed=0)
    pd.testing.assert_series_equal(split["split"][:400], manifest["split"][:400])  # fixed split kept
    assert set(split["split"]) == {"train", "test"}
    shares = split[400:].groupby("finding")["split"].apply(lambda s: (s == "train").sum())
    # ChestX-ray14's ratio is 300/400 = 0.75, applied within each stratum
    assert shares.to_dict() == {"": 30, "Pediatric_Bacterial_Pneumonia": 9, "Pediatric_Viral_Pneumonia": 15}
    pd.testing.assert_frame_equal(split, group2_split(manifest, seed=0))
    assert not split["split"].equals(group2_split(manifest, seed=1)["split"])
    train, test = split_indices(split, "train"), split_indices(split, "test")
    assert len(train) == 300 + 54 and len(test) == 100 + 18 and train.dtype == np.int64


def test_group2_split_needs_a_fixed_split():
    with pytest.raises(DataError, match="no row has split 'train' or 'test'"):
        group2_split(_manifest(5, 5))
    with pytest.raises(DataError, match="group2_split"):
        split_indices(_manifest(5, 5), "train")
    with pytest.raises(DataError, match="it has test, train"):
        split_indices(group2_split(_group2()), "val")


def _chest_rows(names: list[str], split: str) -> list[dict]:
    return [
        {
            "image_path": f"/d/CHESTXRAY-14/{split.title()}/{n}",
            "label": "control",
            "group": "II",
            "split": split,
        }
        for n in names
    ]


def test_official_lists_override_the_folders_of_chestxray14_only(tmp_path):
    frame = normalise_manifest(
        _chest_rows(["a.png", "b.png"], "train")
        + _chest_rows(["c.png"], "test")
        + [{"image_path": "/d/Pediatric_Viral_Pneumonia/a.png", "label": "control", "group": "II"}]
    )
    (tmp_path / "train.txt").write_text("a.png\nc.png\n")
    (tmp_path / "test.txt").write_text("b.png\n\n")
    lists = {"train": tmp_path / "train.txt", "test": tmp_path / "test.txt"}
    split = apply_official_lists(frame, lists)["split"].tolist()
    assert split == ["train", "test", "train", ""]  # the pediatric a.png is not ChestX-ray14: untouched
    (tmp_path / "test.txt").write_text("a.png\n")
    with pytest.raises(DataError, match="1 image\\(s\\) are in both official lists, e.g. a.png"):
        apply_official_lists(frame, lists)


def test_group2_classes():
    frame = normalise_manifest(
        _chest_rows(["x.png"], "train")
        + [
            {"image_path": "/d/covid.png", "label": "covid", "group": "covid"},
            {"image_path": "/d/Pediatric_Bacterial_Pneumonia/p.png", "label": "control", "group": "II"},
            {"image_path": "/d/Pediatric_Viral_Pneumonia/v.png", "label": "control", "group": "II"},
            {"image_path": "/d/other/o.png", "label": "control", "group": "II", "finding": "nodule"},
        ]
    )
    assert group2_classes(frame).tolist() == ["chestxray14", "covid", "bacterial", "viral", "other"]


def test_validation_split_is_stratified_disjoint_and_reproducible():
    from cxrmap.data.splits import validation_split

    frame = _manifest(20, 40)
    rows = np.arange(0, 60, 1)[5:]  # 15 COVID-19, 40 controls
    fit, held = validation_split(frame, rows, 0.2, seed=3)
    assert len(held) == 11 and len(fit) == 44
    assert not set(fit) & set(held) and set(fit) | set(held) == set(rows)
    labels = frame["label"].to_numpy()
    assert (labels[held] == "covid").sum() == 3  # 20% of each class
    assert np.array_equal(held, validation_split(frame, rows, 0.2, seed=3)[1])
    assert np.array_equal(validation_split(frame, rows, 0.0)[0], rows)
    with pytest.raises(DataError, match="validation share"):
        validation_split(frame, rows, 1.0)
    with pytest.raises(DataError, match="both classes"):
        validation_split(frame, rows[:6], 0.1)
