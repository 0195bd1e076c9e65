"""The phantom generator: layout, masks, determinism, the source shortcut, the CLI and option checks."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxrmap.cli import app
from cxrmap.core.errors import DataError
from cxrmap.data.phantom.shapes import (
    FINDINGS,
    KINDS,
    SOURCES,
    _Anatomy,
    _chest,
    _mimic_opacity,
    generate,
    plan,
    render_case,
)

G2 = "Control_Group/Control_Group_II/CHESTXRAY-14"


def files(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``root``."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def metadata(root: Path) -> list[dict[str, str]]:
    with open(root / "phantom-metadata.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def array(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "L", f"{path} is {image.mode}, expected 8-bit grayscale"
        return np.asarray(image)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """3 COVID-19 images and 8 controls (4 normal, 4 group II) at 64 x 64."""
    return generate(
        tmp_path_factory.mktemp("phantom") / "ds", n_covid=3, n_control=8, size=64, seed=1, progress=False
    )


def test_layout_is_qata_cov19_with_lung_masks_and_metadata(small):
    images = [f"QaTa-COV19-v1/Images/covid_{i}.png" for i in (1, 2, 3)]
    images += [f"Control_Group/Control_Group_I/normal_{i}.png" for i in (1, 2, 3, 4)]
    # group II deals out the findings in turn; the 3rd group II image falls in ChestX-ray14's Test folder.
    images += [
        f"{G2}/Train/consolidation_1.png",
        f"{G2}/Train/effusion_2.png",
        f"{G2}/Test/edema_3.png",
        f"{G2}/Train/nodule_4.png",
    ]
    masks = [f"QaTa-COV19-v1/Ground-truths/mask_covid_{i}.png" for i in (1, 2, 3)]
    expected = set(images) | set(masks) | {f"Lung-masks/{p}" for p in images} | {"phantom-metadata.csv"}
    assert set(files(small)) == expected  # nothing else: no staging folder, no mask for controls
    rows = metadata(small)
    assert list(rows[0]) == ["image", "finding", "source"]
    assert sorted(r["image"] for r in rows) == sorted(images)
    findings = {r["image"].rsplit("/", 1)[1]: r["finding"] for r in rows}
    assert findings["covid_1.png"] == "covid" and findings["normal_2.png"] == "normal"
    assert findings["edema_3.png"] == "edema" and findings["nodule_4.png"] == "nodule"
    assert {r["source"] for r in rows} <= set(SOURCES)


def test_images_and_masks_are_8_bit_and_masks_binary_and_nested(small):
    for row in metadata(small):
        image = array(small / row["image"])
        lung = array(small / "Lung-masks" / row["image"])
        assert image.shape == lung.shape == (64, 64) and image.dtype == np.uint8
        assert set(np.unique(lung)) == {0, 255}
        assert image.std() > 10  # a picture, not a flat field
        if row["finding"] == "covid":
            name = Path(row["image"]).name
            infection = array(small / "QaTa-COV19-v1/Ground-truths" / f"mask_{name}")
            assert set(np.unique(infection)) == {0, 255}
            outside = np.count_nonzero((infection > 0) & (lung == 0))
            assert outside <= 0.005 * infection.size, f"{outside} infected pixels outside the lungs"
            assert 0.015 <= np.mean(infection > 0) <= 0.6  # at least 2 % before a scale of up to 0.95


def test_render_case_shapes_and_every_kind():
    for i, kind in enumerate(KINDS):
        image, infection, lung = render_case(np.random.default_rng(i), 64, kind, SOURCES[i % 2])
        assert image.dtype == np.uint8 and image.shape == (64, 64)
        assert infection.dtype == lung.dtype == np.bool_
        assert lung.mean() > 0.1
        assert infection.any() == (kind == "covid")
        assert not (infection & ~lung).any()
    with pytest.raises(DataError, match="unknown phantom kind"):
        render_case(np.random.default_rng(0), 64, "pneumothorax")


def test_consolidation_hides_the_vessels_under_it_and_stays_in_the_lungs():
    """A consolidation removes exactly the vessel density under it (its sign); nothing outside the lungs."""
    anatomy = _Anatomy.draw(np.random.default_rng(3))
    _, _, edge, vessels, x, y = _chest(np.random.default_rng(4), anatomy, 64)
    field = np.random.default_rng(5).random(edge.shape).astype(np.float32)

    def draw(vessel_density):
        return _mimic_opacity(np.random.default_rng(6), "consolidation", anatomy, edge, vessel_density, x, y)

    plain = draw(np.zeros_like(edge))
    region = plain - draw(np.ones_like(edge))  # the consolidated share of each pixel
    assert region.max() > 0.9 and (region >= -1e-6).all()
    np.testing.assert_allclose(draw(field) - plain, -field * region, atol=1e-5)
    assert vessels.max() > 0 and not plain[edge == 0].any()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = files(generate(tmp_path / "a", n_covid=2, n_control=2, size=64, seed=5, progress=False))
    b = files(generate(tmp_path / "b", n_covid=2, n_control=2, size=64, seed=5, progress=False))
    c = files(generate(tmp_path / "c", n_covid=2, n_control=2, size=64, seed=6, progress=False))
    assert a == b
    assert set(a) == set(c)
    assert all(a[k] != c[k] for k in a if k.endswith("covid_1.png"))


def test_image_i_does_not_depend_on_the_number_of_images(tmp_path):
    three = files(generate(tmp_path / "3", n_covid=3, n_control=3, size=64, seed=2, progress=False))
    five = files(generate(tmp_path / "5", n_covid=5, n_control=5, size=64, seed=2, progress=False))
    shared = [k for k in three if k.endswith(".png")]
    assert shared and all(three[k] == five[k] for k in shared)
    assert len(five) > len(three)


def test_rerun_replaces_a_previous_phantom_and_refuses_a_foreign_folder(tmp_path):
    generate(tmp_path / "ds", n_covid=4, n_control=0, size=64, progress=False)
    generate(tmp_path / "ds", n_covid=2, n_control=0, size=64, progress=False)
    assert sorted(p.name for p in (tmp_path / "ds/QaTa-COV19-v1/Images").iterdir()) == [
        "covid_1.png",
        "covid_2.png",
    ]
    (tmp_path / "real/QaTa-COV19-v1").mkdir(parents=True)
    with pytest.raises(DataError, match="real data set"):
        generate(tmp_path / "real", n_covid=1, n_control=0, size=64, progress=False)


def test_a_covid_qu_ex_root_is_refused_and_left_untouched(tmp_path):
    root = tmp_path / "qu-ex"
    for kind in ("images", "infection masks", "lung masks"):
        (root / "Infection Segmentation Data" / "Train" / "COVID-19" / kind).mkdir(parents=True)
    (root / "Infection Segmentation Data" / "Train" / "COVID-19" / "images" / "a.png").write_bytes(b"x")
    with pytest.raises(DataError) as caught:
        generate(root, n_covid=1, n_control=0, size=64, progress=False)
    assert str(caught.value).startswith(f"{root} holds a real data set (covid-qu-ex in {root}")
    assert sorted(p.name for p in root.iterdir()) == ["Infection Segmentation Data"]


def test_group2_share_and_fixed_test_split():
    cases = plan(0, 100, group2_share=0.3)
    group2 = [c for c in cases if c.kind in FINDINGS]
    assert len(group2) == 30 and sum(c.kind == "normal" for c in cases) == 70
    assert sum("/Test/" in c.image for c in group2) == 7  # round(30 * 0.23)
    assert all(c.kind == "normal" for c in plan(0, 10, group2_share=0.0))
    assert all(c.kind in FINDINGS for c in plan(0, 10, group2_share=1.0))


def test_shortcut_ties_source_to_label_only_when_on():
    def share_a(cases, covid):
        chosen = [c.source == SOURCES[0] for c in cases if (c.kind == "covid") == covid]
        return sum(chosen) / len(chosen)

    off = plan(300, 300, seed=3, shortcut=0.0)
    assert abs(share_a(off, True) - share_a(off, False)) < 0.12
    assert 0.4 < share_a(off, True) < 0.6
    on = plan(300, 300, seed=3, shortcut=1.0)
    assert share_a(on, True) == 1.0 and share_a(on, False) == 0.0
    half = plan(300, 300, seed=3, shortcut=0.5)
    assert 0.65 < share_a(half, True) < 0.85 and 0.15 < share_a(half, False) < 0.35


def test_metadata_sources_follow_the_plan(small):
    planned = {c.image: c.source for c in plan(3, 8, seed=1)}
    assert {r["image"]: r["source"] for r in metadata(small)} == planned


def test_cli_writes_the_tree(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "phantom",
            str(tmp_path / "cli"),
            "--n-covid",
            "2",
            "--n-control",
            "2",
            "--size",
            "64",
            "--seed",
            "4",
            "--shortcut",
            "1",
            "--group2-share",
            "0.5",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "wrote 4 phantom images" in result.output
    assert (tmp_path / "cli/QaTa-COV19-v1/Ground-truths/mask_covid_2.png").is_file()
    assert (tmp_path / "cli/Control_Group/Control_Group_I/normal_1.png").is_file()
    assert {r["source"] for r in metadata(tmp_path / "cli") if r["finding"] == "covid"} == {SOURCES[0]}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_covid": -1}, "n_covid must be a non-negative"),
        ({"n_control": -3}, "n_control must be a non-negative"),
        ({"n_covid": 0, "n_control": 0}, "at least one image"),
        ({"shortcut": 1.5}, r"shortcut must be a number in \[0, 1\]"),
        ({"shortcut": -0.1}, r"shortcut must be a number in \[0, 1\]"),
        ({"group2_share": 2.0}, r"group2_share must be a number in \[0, 1\]"),
        ({"size": 32}, "size must be a whole number of pixels >= 64"),
        ({"seed": -1}, "seed must be a non-negative"),
    ],
)
def test_bad_options_raise_data_error(tmp_path, options, message):
    arguments = {"n_covid": 1, "n_control": 1, "size": 64, "progress": False} | options
    with pytest.raises(DataError, match=message):
        generate(tmp_path / "bad", **arguments)
    assert not (tmp_path / "bad").exists()


def test_cli_bad_option_is_a_data_error(tmp_path):
    result = CliRunner().invoke(app, ["phantom", str(tmp_path / "x"), "--size", "16", "--quiet"])
    assert isinstance(result.exception, DataError)
