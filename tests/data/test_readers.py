"""Dataset readers and `cxrmap index`: every layout, the real samples, and every kind of bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from cxrmap.cli import index as index_cli
from cxrmap.core.errors import DataError
from cxrmap.data.manifest import COLUMNS, read_manifest
from cxrmap.data.readers import (
    LAYOUTS,
    find_layouts,
    index_dataset,
    index_files,
    index_folder_pair,
)
from tests.helpers.images import png_declaring, write_dicom

SIZE = 32


def image(path: Path, value: int = 100, size: int = SIZE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, np.uint8)).save(path)
    return path


def mask(path: Path, filled: bool = True, size: int = SIZE) -> Path:
    array = np.zeros((size, size), np.uint8)
    if filled:
        array[8:20, 8:20] = 255
    return _save(path, array)


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def rows_by_name(manifest: pd.DataFrame) -> dict[str, dict]:
    return {Path(row["image_path"]).name: row for row in manifest.to_dict("records")}


@pytest.fixture
def qata(tmp_path) -> Path:
    """A QaTa-COV19 root: v1, v2, both control groups, Lung-masks/ and phantom-metadata.csv."""
    root = tmp_path / "QaTa-COV19"
    v1 = root / "QaTa-COV19-v1"
    for n in (1, 2):
        image(v1 / "Images" / f"covid_{n}.png")
        mask(v1 / "Ground-truths" / f"mask_covid_{n}.png")
    image(v1 / "Images" / "covid_3.png")  # no mask: skipped
    mask(v1 / "Ground-truths" / "mask_covid_9.png")  # no image: warning
    for split, name in (("Train Set", "sub-S0001_ses-E01_run-1.png"), ("Test Set", "covid_77.png")):
        image(root / "QaTa-COV19-v2" / split / "Images" / name)
        mask(root / "QaTa-COV19-v2" / split / "Ground-truths" / f"mask_{name}")
    group1 = root / "Control_Group" / "Control_Group_I"
    image(group1 / "normal_1.png")
    image(group1 / "normal_2.png")
    group2 = root / "Control_Group" / "Control_Group_II"
    image(group2 / "CHESTXRAY-14" / "Train" / "00000001_000.png")
    image(group2 / "CHESTXRAY-14" / "Test" / "00000002_000.png")
    (group2 / "CHESTXRAY-14" / "Data_Entry_2017.csv").write_text(
        "Image Index,Finding Labels,Patient Age\n00000001_000.png,Cardiomegaly|Effusion,58\n"
        "00000002_000.png,No Finding,40\n"
    )
    image(group2 / "Pediatric_Bacterial_Pneumonia" / "person1_bacteria_1.jpg")
    image(group2 / "Pediatric_Viral_Pneumonia" / "person2_virus_2.png")
    mask(root / "Lung-masks" / "QaTa-COV19-v1" / "Images" / "covid_1.png")
    mask(root / "Lung-masks" / "Control_Group" / "Control_Group_I" / "normal_1.png")
    (root / "phantom-metadata.csv").write_text(
        "image,finding,source\nControl_Group/Control_Group_I/normal_2.png,normal,hospital-b\n"
        "Control_Group/Control_Group_II/CHESTXRAY-14/Test/00000002_000.png,nodule,\n"
    )
    return root


def qu_ex(root: Path, nested: bool = True, covid_name: str = "covid_1.png") -> Path:
    """A COVID-QU-Ex infection-data tree with names holding spaces and parentheses."""
    base = root / "Infection Segmentation Data"
    if nested:
        base = base / "Infection Segmentation Data"
    for split, klass, name, filled in (
        ("Train", "COVID-19", covid_name, True),
        ("Val", "Normal", "Normal (1).png", False),
        ("Test", "Non-COVID", "non_COVID (11905).png", False),
    ):
        image(base / split / klass / "images" / name)
        mask(base / split / klass / "infection masks" / name, filled=filled)
        mask(base / split / klass / "lung masks" / name)
    image(base / "Test" / "COVID-19" / "images" / "covid_2.png")  # no infection mask: skipped
    return root


# ---------------------------------------------------------------------------------------------- layouts


def test_qata_root_with_every_sub_layout(qata):
    result = index_dataset(qata, progress=False)
    manifest = result.manifest
    assert list(manifest.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert list(manifest["image_path"]) == sorted(manifest["image_path"])
    assert all(os.path.isabs(p) for p in manifest["image_path"])
    rows = rows_by_name(manifest)
    assert len(rows) == 10
    covid = rows["covid_1.png"]
    assert (covid["label"], covid["group"], covid["source"], covid["split"]) == (
        "covid",
        "covid",
        "qata-cov19-v1",
        "",
    )
    assert covid["mask_path"].endswith("Ground-truths/mask_covid_1.png")
    assert covid["lung_mask_path"].endswith("Lung-masks/QaTa-COV19-v1/Images/covid_1.png")
    assert rows["covid_2.png"]["lung_mask_path"] == ""
    assert rows["sub-S0001_ses-E01_run-1.png"]["split"] == "train"
    assert rows["covid_77.png"]["split"] == "test"
    assert rows["covid_77.png"]["source"] == "qata-cov19-v2"
    normal1, normal2 = rows["normal_1.png"], rows["normal_2.png"]
    assert (normal1["label"], normal1["group"], normal1["finding"]) == ("control", "I", "normal")
    assert normal1["source"] == "control-group-I" and normal1["mask_path"] == ""
    assert normal1["lung_mask_path"].endswith("Lung-masks/Control_Group/Control_Group_I/normal_1.png")
    assert normal2["source"] == "hospital-b"  # from phantom-metadata.csv
    train, test = rows["00000001_000.png"], rows["00000002_000.png"]
    assert (train["group"], train["source"], train["split"]) == ("II", "chestxray14", "train")
    assert train["finding"] == "Cardiomegaly|Effusion"  # Data_Entry_2017.csv
    assert (test["split"], test["finding"], test["source"]) == (
        "test",
        "nodule",
        "chestxray14",
    )  # metadata wins
    bacteria = rows["person1_bacteria_1.jpg"]
    assert (bacteria["finding"], bacteria["source"], bacteria["group"]) == (
        "Pediatric_Bacterial_Pneumonia", "pediatric-pneumonia", "II",
    )  # fmt: skip
    assert rows["person2_virus_2.png"]["finding"] == "Pediatric_Viral_Pneumonia"
    assert [Path(p).name for p, _ in result.skipped] == ["covid_3.png"]
    assert "mask_covid_3.png" in result.skipped[0][1] and "add the mask" in result.skipped[0][1]
    assert any("mask_covid_9.png" in w and "matches no image" in w for w in result.warnings)
    assert {name for name, _ in result.layouts} == set(LAYOUTS) - {"covid-qu-ex"}


def test_each_layout_alone_and_from_its_own_folder(qata, monkeypatch):
    only_v1 = index_dataset(qata, layout="qata-cov19-v1", progress=False).manifest
    assert set(only_v1["source"]) == {"qata-cov19-v1"} and len(only_v1) == 2
    monkeypatch.chdir(qata / "Control_Group")
    from_group1 = index_dataset("Control_Group_I", progress=False).manifest
    assert len(from_group1) == 2
    # Lung-masks/ and phantom-metadata.csv above the indexed folder are still found
    assert from_group1.loc[from_group1["image_path"].str.endswith("normal_1.png"), "lung_mask_path"].item()
    assert set(from_group1["source"]) == {"control-group-I", "hospital-b"}
    with pytest.raises(DataError, match="(?s)no known dataset layout.*covid-qu-ex"):
        index_dataset(qata, layout="covid-qu-ex", progress=False)
    with pytest.raises(DataError, match="unknown layout"):
        index_dataset(qata, layout="qata-v9", progress=False)


@pytest.mark.parametrize("nested", [True, False])
def test_covid_qu_ex_layout(tmp_path, nested):
    result = index_dataset(qu_ex(tmp_path / "COVID-QU-Ex", nested=nested), progress=False)
    rows = rows_by_name(result.manifest)
    assert set(rows) == {"covid_1.png", "Normal (1).png", "non_COVID (11905).png"}
    covid, normal, other = rows["covid_1.png"], rows["Normal (1).png"], rows["non_COVID (11905).png"]
    assert (covid["label"], covid["group"], covid["split"], covid["source"]) == (
        "covid",
        "covid",
        "train",
        "covid-qu-ex",
    )
    assert (normal["label"], normal["group"], normal["split"], normal["finding"]) == (
        "control",
        "I",
        "val",
        "normal",
    )
    assert (other["label"], other["group"], other["split"], other["finding"]) == (
        "control",
        "II",
        "test",
        "non-covid",
    )
    for row in rows.values():  # the all-zero masks of controls are kept: they are valid empty masks
        assert row["mask_path"].endswith(f"infection masks/{Path(row['image_path']).name}")
        assert row["lung_mask_path"].endswith(f"lung masks/{Path(row['image_path']).name}")
    assert [Path(p).name for p, _ in result.skipped] == ["covid_2.png"]
    assert not result.warnings


def test_covid_qu_ex_lung_only_data_is_ignored_with_a_warning(tmp_path):
    root = qu_ex(tmp_path / "COVID-QU-Ex")
    image(
        root / "Lung Segmentation Data" / "Lung Segmentation Data" / "Train" / "COVID-19" / "images" / "x.png"
    )
    mask(
        root
        / "Lung Segmentation Data"
        / "Lung Segmentation Data"
        / "Train"
        / "COVID-19"
        / "lung masks"
        / "x.png"
    )
    result = index_dataset(root, progress=False)
    assert len(result.manifest) == 3
    assert any("Lung Segmentation Data" in w and "lung data only" in w for w in result.warnings)


def test_duplicate_names_across_datasets_warned(tmp_path):
    root = qu_ex(tmp_path / "data", covid_name="covid_77.png")
    image(root / "QaTa-COV19-v2" / "Test Set" / "Images" / "covid_77.png")
    mask(root / "QaTa-COV19-v2" / "Test Set" / "Ground-truths" / "mask_covid_77.png")
    result = index_dataset(root, progress=False)
    assert len(result.manifest) == 4
    (warning,) = [w for w in result.warnings if "more than one dataset" in w]
    assert "covid-qu-ex, qata-cov19-v2" in warning and "covid_77.png" in warning


def test_real_samples(samples_root):
    result = index_dataset(samples_root, progress=False)
    manifest = result.manifest
    assert len(manifest) == 12 and not result.skipped and not result.warnings
    assert manifest["label"].value_counts().to_dict() == {"control": 8, "covid": 4}
    assert manifest.groupby("group").size().to_dict() == {"I": 4, "II": 4, "covid": 4}
    assert (manifest["lung_mask_path"] != "").all() and (manifest["mask_path"] != "").all()
    assert set(manifest["split"]) == {"test"}
    assert all(Path(p).is_file() for p in manifest["image_path"])
    assert "non_COVID (11905).png" in {Path(p).name for p in manifest["image_path"]}


def test_dicom_and_extensionless_dicom_are_indexed(tmp_path):
    folder = tmp_path / "Control_Group" / "Control_Group_I"
    write_dicom(folder / "a.dcm", np.zeros((SIZE, SIZE), np.uint16))
    write_dicom(folder / "1.2.840.1.2", np.zeros((SIZE, SIZE), np.uint16))
    write_dicom(folder / "colour.dcm", np.zeros((SIZE, SIZE, 3), np.uint8), photometric="RGB", bits_stored=8)
    (folder / "README.txt").write_text("not an image")
    result = index_dataset(tmp_path, progress=False)
    assert sorted(Path(p).name for p in result.manifest["image_path"]) == ["1.2.840.1.2", "a.dcm"]
    (skip,) = result.skipped
    assert skip[0].endswith("colour.dcm") and "PhotometricInterpretation 'RGB'" in skip[1]


# ------------------------------------------------------------------------------------------- bad input


def test_missing_root_file_root_and_unknown_layout(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        index_dataset(tmp_path / "nowhere")
    image(tmp_path / "x.png")
    with pytest.raises(DataError, match="is a file, not a dataset folder"):
        index_dataset(tmp_path / "x.png")
    with pytest.raises(DataError, match="no known dataset layout") as error:
        index_dataset(tmp_path)
    for name in LAYOUTS:
        assert name in str(error.value)


def test_bad_files_are_skipped_or_warned_with_reasons(tmp_path):
    v1 = tmp_path / "QaTa-COV19-v1"
    image(v1 / "Images" / "good.png")
    mask(v1 / "Ground-truths" / "mask_good.png")
    image(v1 / "Images" / "small_mask.png")
    mask(v1 / "Ground-truths" / "mask_small_mask.png", size=16)
    image(v1 / "Images" / "grey.png")
    grey = np.zeros((SIZE, SIZE), np.uint8)
    grey[:10] = 255
    grey[10:20] = 128  # mid-grey: warned, binarised at >127
    _save(v1 / "Ground-truths" / "mask_grey.png", grey)
    image(v1 / "Images" / "empty.png")
    mask(v1 / "Ground-truths" / "mask_empty.png", filled=False)
    data = image(v1 / "Images" / "cut.png").read_bytes()
    (v1 / "Images" / "cut.png").write_bytes(data[: len(data) // 2])
    mask(v1 / "Ground-truths" / "mask_cut.png")
    png_declaring(v1 / "Images" / "bomb.png", 30_000, 30_000)
    mask(v1 / "Ground-truths" / "mask_bomb.png")
    image(v1 / "Images" / "scan.tif")
    result = index_dataset(tmp_path, progress=False)
    assert sorted(Path(p).name for p in result.manifest["image_path"]) == [
        "empty.png",
        "good.png",
        "grey.png",
    ]
    reasons = {Path(path).name: reason for path, reason in result.skipped}
    assert set(reasons) == {"small_mask.png", "cut.png", "bomb.png", "scan.tif"}
    assert "is 16x16 but its image is 32x32" in reasons["small_mask.png"]
    assert "truncated" in reasons["cut.png"] and "cut.png" in reasons["cut.png"]
    assert "declares" in reasons["bomb.png"]
    assert "convert it to PNG" in reasons["scan.tif"]
    assert any("mask_grey.png is not binary" in w and "binarised at >127" in w for w in result.warnings)
    assert any("empty.png has an empty infection mask" in w for w in result.warnings)


def test_bad_lung_mask_is_dropped_not_the_image(tmp_path):
    folder = tmp_path / "Control_Group" / "Control_Group_I"
    image(folder / "normal_1.png")
    mask(tmp_path / "Lung-masks" / "Control_Group" / "Control_Group_I" / "normal_1.png", size=20)
    result = index_dataset(tmp_path, progress=False)
    assert len(result.manifest) == 1 and result.manifest.loc[0, "lung_mask_path"] == ""
    assert any("lung mask of" in w and "20x20" in w for w in result.warnings)


def test_pixel_limit_applies_to_indexing(tmp_path):
    image(tmp_path / "Control_Group" / "Control_Group_I" / "normal_1.png")
    result = index_dataset(tmp_path, progress=False, max_pixels=100)
    assert result.manifest.empty and "limit of 100" in result.skipped[0][1]


# ------------------------------------------------------------------------------ folder pair and files


def test_index_folder_pair(tmp_path):
    image(tmp_path / "img" / "a.png")
    image(tmp_path / "img" / "b.png")
    image(tmp_path / "img" / "c.png")
    mask(tmp_path / "msk" / "a.png")
    mask(tmp_path / "msk" / "mask_b.png")
    result = index_folder_pair(tmp_path / "img", tmp_path / "msk", progress=False)
    rows = rows_by_name(result.manifest)
    assert set(rows) == {"a.png", "b.png"} and rows["b.png"]["mask_path"].endswith("mask_b.png")
    assert {r["source"] for r in rows.values()} == {"folder"} and {r["group"] for r in rows.values()} == {
        "covid"
    }
    assert [Path(p).name for p, _ in result.skipped] == ["c.png"]
    controls = index_folder_pair(tmp_path / "img", label="control", group="II", progress=False).manifest
    assert len(controls) == 3 and set(controls["group"]) == {"II"} and set(controls["mask_path"]) == {""}
    with pytest.raises(DataError, match="label 'sick' is unknown"):
        index_folder_pair(tmp_path / "img", tmp_path / "msk", label="sick")
    with pytest.raises(DataError, match="group 'II' does not fit label 'covid'"):
        index_folder_pair(tmp_path / "img", tmp_path / "msk", group="II")
    with pytest.raises(DataError, match="masks folder .* does not exist"):
        index_folder_pair(tmp_path / "img", tmp_path / "nope")


def test_index_files(tmp_path):
    one = image(tmp_path / "single (1).png")
    image(tmp_path / "folder" / "b.png")
    image(tmp_path / "folder" / "a.jpg")
    image(tmp_path / "folder" / "sub" / "c.png")
    (tmp_path / "folder" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    found = index_files([one, tmp_path / "folder", tmp_path / "missing.png", one])
    assert [p.name for p in found.images] == ["single (1).png", "a.jpg", "b.png"]
    assert all(p.is_absolute() for p in found.images)
    reasons = {Path(p).name: r for p, r in found.skipped}
    assert set(reasons) == {"broken.png", "missing.png"} and "does not exist" in reasons["missing.png"]
    assert [p.name for p in index_files(tmp_path / "folder", recursive=True).images] == [
        "a.jpg",
        "b.png",
        "c.png",
    ]


def test_find_layouts_does_not_descend_into_lung_masks(qata):
    found, _ = find_layouts(qata)
    assert all("Lung-masks" not in str(folder) for _, folder in found)
    assert [name for name, _ in found].count("qata-cov19-v2") == 2


# ------------------------------------------------------------------------------------------------- CLI


def cli() -> typer.Typer:
    app = typer.Typer()
    index_cli.register(app)
    app.command("noop")(lambda: None)  # two commands keep `index` a sub-command
    return app


def test_cli_writes_manifest_with_folds_and_summary(qata, tmp_path):
    out = tmp_path / "out" / "manifest.csv"
    result = CliRunner().invoke(cli(), ["index", str(qata), "--out", str(out), "--folds", "2", "-q"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    assert len(manifest) == 10
    assert set(manifest["fold"]) == {"0", "1"}
    for text in ("qata-cov19-v1", "chestxray14", "total", "skipped (1)", "covid_3.png", "mask_covid_9.png"):
        assert text in result.output


def test_cli_failure_keeps_the_existing_manifest(tmp_path):
    out = tmp_path / "manifest.csv"
    out.write_text("previous content\n")
    folder = tmp_path / "data" / "QaTa-COV19-v1"
    image(folder / "Images" / "covid_1.png")
    (folder / "Ground-truths").mkdir()
    result = CliRunner().invoke(cli(), ["index", str(tmp_path / "data"), "--out", str(out), "-q"])
    assert isinstance(result.exception, DataError) and "no usable image" in str(result.exception)
    assert "covid_1.png" in result.output
    result = CliRunner().invoke(cli(), ["index", str(tmp_path / "absent"), "--out", str(out), "-q"])
    assert isinstance(result.exception, DataError)
    assert out.read_text() == "previous content\n"


def test_cli_folder_pair_and_argument_errors(tmp_path):
    image(tmp_path / "img" / "a.png")
    mask(tmp_path / "msk" / "mask_a.png")
    out = tmp_path / "pair.csv"
    args = ["index", "--images", str(tmp_path / "img"), "--masks", str(tmp_path / "msk"), "--out", str(out)]
    result = CliRunner().invoke(cli(), [*args, "--folds", "0", "-q"])
    assert result.exit_code == 0, result.output
    assert read_manifest(out).loc[0, "label"] == "covid"
    result = CliRunner().invoke(cli(), args)  # one image cannot make 5 folds: written without folds
    assert result.exit_code == 0 and "folds not assigned" in result.output
    result = CliRunner().invoke(cli(), ["index", "--out", str(out)])
    assert isinstance(result.exception, DataError) and "either a dataset folder ROOT or --images" in str(
        result.exception
    )


def test_index_files_on_a_dataset_root_skips_mask_folders(samples_root):
    listed = index_files(samples_root, recursive=True)
    assert len(listed.images) == 12
    assert not any("masks" in part for image in listed.images for part in image.parts)
