"""Infection maps (paper Sec. II-D, Fig. 5): jet hue and saturation on the radiograph's value, per pixel."""

from __future__ import annotations

import colorsys

import matplotlib
import numpy as np
import pytest
from PIL import Image

from cxrmap.core.errors import DataError
from cxrmap.core.images import save_png
from cxrmap.predict.maps import DISPLAY_FLOOR, colorbar, display_shape, infection_map


def reference_map(cxr: np.ndarray, prob: np.ndarray, floor: float) -> np.ndarray:
    """The paper's recipe, one pixel at a time with matplotlib's jet and Python's colorsys."""
    jet = matplotlib.colormaps["jet"]
    out = np.zeros((*cxr.shape, 3), dtype=np.float64)
    for (y, x), p in np.ndenumerate(prob):
        gray = cxr[y, x] / 255.0
        if p < floor:
            out[y, x] = (gray, gray, gray)
            continue
        hue, saturation, _ = colorsys.rgb_to_hsv(*jet(float(p))[:3])
        out[y, x] = colorsys.hsv_to_rgb(hue, saturation, gray)
    return out * 255.0


def test_matches_per_pixel_recipe():
    rng = np.random.default_rng(0)
    cxr = rng.integers(0, 256, size=(9, 11), dtype=np.uint8)
    prob = rng.random((9, 11))
    prob[0, :4] = [0.0, 0.005, DISPLAY_FLOOR, 1.0]
    result = infection_map(cxr, prob)
    assert result.dtype == np.uint8 and result.shape == (9, 11, 3)
    assert np.abs(result.astype(float) - reference_map(cxr, prob, DISPLAY_FLOOR)).max() <= 1.0
    float32_result = infection_map(cxr, prob.astype(np.float32))
    assert np.abs(float32_result.astype(int) - result.astype(int)).max() <= 1


def test_every_jet_level_on_every_gray_level_matches_the_recipe():
    levels, grays = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    cxr = grays.astype(np.uint8)
    prob = (levels + 0.5) / 256.0  # the middle of each jet level
    result = infection_map(cxr, prob, floor=0.0)
    assert np.abs(result.astype(float) - reference_map(cxr, prob, 0.0)).max() <= 1.0


def test_zero_probability_leaves_radiograph_unchanged():
    cxr = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    prob = np.zeros((8, 8), dtype=np.float32)
    prob[0, 0] = DISPLAY_FLOOR / 2  # below the display floor counts as zero
    result = infection_map(cxr, prob)
    assert np.array_equal(result, np.repeat(cxr[..., None], 3, axis=2))


def test_probability_one_is_dark_red_hue_with_radiograph_value():
    cxr = np.array([[0, 50, 128, 255]], dtype=np.uint8)
    assert matplotlib.colormaps["jet"](1.0)[:3] == (0.5, 0.0, 0.0)  # jet's top: dark red, hue 0, saturation 1
    result = infection_map(cxr, np.ones((1, 4)))
    assert result[0].tolist() == [[0, 0, 0], [50, 0, 0], [128, 0, 0], [255, 0, 0]]


def test_mid_probability_keeps_the_gray_level_as_value():
    cxr = np.full((3, 3), 180, dtype=np.uint8)
    result = infection_map(cxr, np.full((3, 3), 0.5))
    assert result.max(axis=2).tolist() == [[180] * 3] * 3  # HSV value = max(R, G, B) = the gray level
    assert (result[..., 1] == 180).all() and (result[..., 0] < 180).all()  # jet(0.5) is green-dominant


def test_floor_and_opacity():
    cxr = np.full((1, 3), 200, dtype=np.uint8)
    prob = np.array([[0.3, 0.3, 0.05]])
    full = infection_map(cxr, prob)
    assert np.array_equal(infection_map(cxr, prob, opacity=0.0), np.full((1, 3, 3), 200))
    half = infection_map(cxr, prob, opacity=0.5).astype(float)
    assert np.abs(half - (full.astype(float) + 200) / 2).max() <= 1.0
    high_floor = infection_map(cxr, prob, floor=0.1)
    assert high_floor[0, 2].tolist() == [200, 200, 200] and np.array_equal(high_floor[0, :2], full[0, :2])


@pytest.mark.parametrize(
    ("cxr", "prob", "message"),
    [
        (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4)), "2-D uint8"),
        (np.zeros((4, 4), np.float32), np.zeros((4, 4)), "2-D uint8"),
        (np.zeros((4, 4), np.uint16), np.zeros((4, 4)), "2-D uint8"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 5)), "shape"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), "float"),
        (np.zeros((4, 4), np.uint8), np.full((4, 4), np.nan), "NaN"),
        (np.zeros((4, 4), np.uint8), np.full((4, 4), 1.5), r"\[0, 1\]"),
        (np.zeros((4, 4), np.uint8), np.full((4, 4), -0.1), r"\[0, 1\]"),
    ],
)
def test_bad_inputs_raise(cxr, prob, message):
    with pytest.raises(DataError, match=message):
        infection_map(cxr, prob)


def test_bad_floor_or_opacity_raise():
    cxr, prob = np.zeros((2, 2), np.uint8), np.zeros((2, 2))
    with pytest.raises(DataError, match="floor"):
        infection_map(cxr, prob, floor=1.5)
    with pytest.raises(DataError, match="opacity"):
        infection_map(cxr, prob, opacity=-0.1)


def test_colorbar_runs_blue_to_red():
    bar = colorbar(height=256, width=96)
    assert bar.dtype == np.uint8 and bar.shape == (256, 96, 3)
    column = bar[:, 18].astype(int)  # inside the bar (10-28% of the width)
    top, bottom = column[25], column[230]
    assert top[0] > 100 and top[2] < 50  # red near 1
    assert bottom[2] > 100 and bottom[0] < 50  # blue near 0
    assert (bar[:, 35:].sum(axis=2) < 200).sum() > 50  # dark tick labels right of the bar
    assert colorbar(height=100, width=60).shape == (100, 60, 3)
    with pytest.raises(DataError, match="64x48"):
        colorbar(height=10)


def test_save_png_round_trip_is_atomic(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    save_png(tmp_path / "sub" / "map.png", rgb)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "sub" / "map.png")), rgb)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["map.png"]
    with pytest.raises(DataError, match="uint8"):
        save_png(tmp_path / "bad.png", rgb.astype(np.float32))
    assert not (tmp_path / "bad.png").exists()


@pytest.mark.parametrize(
    ("shape", "side", "expected"),
    [
        ((3000, 2000), 1024, (1024, 683)),
        ((2000, 3000), 1024, (683, 1024)),
        ((800, 600), 1024, (800, 600)),
        ((4096, 10), 1024, (1024, 2)),
        ((3000, 2000), 0, (3000, 2000)),
    ],
)
def test_display_shape_caps_the_longest_side_and_keeps_the_aspect(shape, side, expected):
    assert display_shape(shape, side) == expected


def test_display_shape_refuses_a_negative_side():
    with pytest.raises(DataError, match="full size"):
        display_shape((10, 10), -1)
