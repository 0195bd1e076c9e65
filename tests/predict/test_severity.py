"""Severity: infected share of the lungs and of six lung zones, on masks with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from cxrmap.core.errors import DataError
from cxrmap.data.io import read_mask
from cxrmap.predict.severity import REGIONS, ZONES, lung_zones, severity, split_lungs


def two_lungs() -> np.ndarray:
    """16x16: image-left field (patient's right) rows 3-11 x cols 2-5, the other rows 6-11 x cols 10-13."""
    lungs = np.zeros((16, 16), dtype=bool)
    lungs[3:12, 2:6] = True  # height 9: thirds are rows 3-5, 6-8, 9-11
    lungs[6:12, 10:14] = True  # height 6: thirds are rows 6-7, 8-9, 10-11
    return lungs


def test_separate_lungs_known_shares():
    lungs = two_lungs()
    infection = np.zeros_like(lungs)
    infection[3:6, 2:6] = True  # patient's right upper third: 12 pixels
    infection[8:10, 10:14] = True  # patient's left middle third (of its own extent): 8 pixels
    infection[0, 0] = True  # outside the lungs: counts for the image only
    result = severity(infection, lungs)
    expected = {
        "right_upper": 1.0, "right_middle": 0.0, "right_lower": 0.0,
        "left_upper": 0.0, "left_middle": 1.0, "left_lower": 0.0,
        "right": 12 / 36, "left": 8 / 24,
        "upper": 12 / (12 + 8), "middle": 8 / (12 + 8), "lower": 0.0,
    }  # fmt: skip
    assert set(REGIONS) == set(expected)
    for name, value in expected.items():
        assert result[name] == pytest.approx(value), name
    assert result["lung_share"] == pytest.approx(20 / 60)
    assert result["image_share"] == pytest.approx(21 / 256)
    assert result["lung_pixels"] == 60 and result["infected_lung_pixels"] == 20 and result["note"] == ""


def test_sides_follow_radiological_convention():
    halves = split_lungs(two_lungs())
    assert np.nonzero(halves["right"])[1].max() < 8 < np.nonzero(halves["left"])[1].min()
    zones = lung_zones(two_lungs())
    assert list(zones) == list(ZONES)
    assert zones["left_upper"].sum() == 8 and np.nonzero(zones["left_upper"])[0].tolist() == [6] * 4 + [7] * 4


def test_touching_lungs_are_cut_at_the_narrowest_column():
    lungs = two_lungs()
    lungs[11, 6:10] = True  # a one-row bridge along the diaphragm joins the fields
    halves = split_lungs(lungs)
    assert halves["right"][3:12, 2:6].all() and not halves["right"][:, 10:].any()
    assert halves["left"][6:12, 10:14].all() and not halves["left"][:, :6].any()
    assert (halves["right"] | halves["left"]).sum() == lungs.sum() and not (
        halves["right"] & halves["left"]
    ).any()


def test_one_wide_field_across_the_midline_is_split():
    lungs = np.zeros((12, 20), dtype=bool)
    lungs[2:10, 3:17] = True  # no gap at all (e.g. a merged segmentation) straddling the image centre
    halves = split_lungs(lungs)
    assert halves["right"].sum() == halves["left"].sum() == 56


@pytest.mark.parametrize(
    ("columns", "present", "missing"), [((1, 6), "right", "left"), ((10, 15), "left", "right")]
)
def test_one_lung_missing(columns, present, missing):
    lungs = np.zeros((12, 16), dtype=bool)
    lungs[0:12, columns[0] : columns[1]] = True
    infection = np.zeros_like(lungs)
    infection[8:12] = True  # the lower third
    result = severity(infection, lungs)
    assert result[f"{present}_lower"] == 1.0 and result[f"{present}_upper"] == 0.0
    assert all(result[f"{missing}_{level}"] is None for level in ("upper", "middle", "lower"))
    assert result[missing] is None and result["lower"] == 1.0 and result["lung_share"] == pytest.approx(1 / 3)
    assert missing in result["note"]


def test_small_fragments_join_the_lung_on_their_side():
    lungs = two_lungs()
    lungs[14, 3] = True  # a stray pixel below the image-left field
    halves = split_lungs(lungs)
    assert halves["right"][14, 3] and halves["right"].sum() == 37


def test_integer_masks_accepted_and_bad_masks_rejected():
    lungs = two_lungs()
    assert severity(lungs.astype(np.uint8), lungs)["lung_share"] == 1.0
    with pytest.raises(DataError, match="empty"):
        severity(np.zeros((4, 4), bool), np.zeros((4, 4), bool))
    with pytest.raises(DataError, match="shape"):
        severity(np.zeros((4, 4), bool), lungs)
    with pytest.raises(DataError, match="boolean"):
        severity(lungs.astype(np.uint8) * 255, lungs)
    with pytest.raises(DataError, match="boolean"):
        severity(lungs.astype(np.float32), lungs)
    with pytest.raises(DataError, match="2-D"):
        severity(np.zeros((2, 4, 4), bool), np.zeros((2, 4, 4), bool))


def test_real_lung_masks(samples_root):
    lung_files = sorted(samples_root.glob("Infection Segmentation Data/*/*/lung masks/*.png"))
    assert len(lung_files) == 12
    for lung_file in lung_files:
        lungs = read_mask(lung_file)
        infection = read_mask(lung_file.parent.parent / "infection masks" / lung_file.name)
        halves = split_lungs(lungs)
        assert np.nonzero(halves["right"])[1].max() < np.nonzero(halves["left"])[1].min(), lung_file.name
        assert min(halves["right"].sum(), halves["left"].sum()) > 0.2 * lungs.sum(), lung_file.name
        result = severity(infection, lungs)
        assert result["lung_share"] == pytest.approx((infection & lungs).sum() / lungs.sum())
        assert all(result[name] is not None for name in REGIONS) and result["note"] == ""
