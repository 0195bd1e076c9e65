"""Shift/rotate augmentation and class balancing (paper Sec. III-B, Table II)."""

from __future__ import annotations

import numpy as np
import pytest

from cxrmap.data.augment import balanced_counts, balanced_plan, random_affine, shift_rotate


def _blob(size: int = 64) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[20:40, 16:30] = 1
    mask[44:52, 36:50] = 1
    return mask


def test_same_transform_on_image_and_mask():
    mask = _blob()
    for seed in range(10):
        rng = np.random.default_rng(seed)
        image, (warped, lung) = shift_rotate(255 * mask, [mask, mask.astype(bool)], rng)
        assert image.dtype == np.uint8 and warped.dtype == np.uint8 and lung.dtype == np.bool_
        assert set(np.unique(warped)) <= {0, 1}
        np.testing.assert_array_equal(lung, warped.astype(bool))
        # bilinear and nearest differ only on the boundary: within one pixel of the mask's edge
        disagree = (image > 127) != warped.astype(bool)
        assert disagree.sum() <= 0.1 * warped.sum()
        near_edge = np.abs(np.diff(warped.astype(int), axis=0, prepend=0)) + np.abs(
            np.diff(warped.astype(int), axis=1, prepend=0)
        )
        grown = np.zeros_like(near_edge)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                grown |= np.roll(near_edge, (dy, dx), axis=(0, 1))
        assert not (disagree & (grown == 0)).any()
        assert not np.array_equal(warped, mask)  # something moved


def test_zero_shift_zero_rotation_is_identity():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 64), dtype=np.uint8)
    mask = rng.random((48, 64)) > 0.5
    out, (out_mask,) = shift_rotate(image, [mask], np.random.default_rng(1), max_shift=0, max_degrees=0)
    np.testing.assert_array_equal(out, image)
    np.testing.assert_array_equal(out_mask, mask)


def test_shift_bounds_and_angle_bounds():
    for seed in range(200):
        matrix = random_affine((50, 100), np.random.default_rng(seed))
        angle = np.degrees(np.arctan2(-matrix[0, 1], matrix[0, 0]))
        assert abs(angle) <= 10
        # the centre moves by the shift only (rotation is about the centre)
        centre = np.array([99 / 2, 49 / 2, 1.0])
        shift = matrix @ centre - centre[:2]
        assert abs(shift[0]) <= 10 and abs(shift[1]) <= 5
    # a single bright pixel, shift only: it lands within 10% of width/height
    image = np.zeros((50, 100), np.uint8)
    image[25, 50] = 255
    for seed in range(50):
        out, _ = shift_rotate(image, [], np.random.default_rng(seed), max_degrees=0)
        ys, xs = np.nonzero(out)
        assert len(ys) and (np.abs(ys - 25) <= 5).all() and (np.abs(xs - 50) <= 10).all()


def test_fill_replicates_edges():
    ramp = np.tile(40 + 3 * np.arange(64, dtype=np.uint8)[None], (64, 1))  # 40 .. 229, left to right
    for seed in range(5):
        out, _ = shift_rotate(ramp, [], np.random.default_rng(seed), max_shift=0.3, max_degrees=10)
        assert out.min() >= 40 and out.max() <= 229  # no black (constant) fill where the image moved away
    uniform = np.full((32, 32), 100, np.uint8)
    out, _ = shift_rotate(uniform, [], np.random.default_rng(2), max_shift=0.3, max_degrees=10)
    assert (out == 100).all()


def test_deterministic_given_generator():
    image = np.random.default_rng(0).integers(0, 256, (40, 40), dtype=np.uint8)
    a, _ = shift_rotate(image, [], np.random.default_rng(7))
    b, _ = shift_rotate(image, [], np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


def test_balanced_counts_table2():
    assert balanced_counts(2361, 10035) == (10035, 10035)
    assert balanced_counts(590, 2509) == (2509, 2509)
    assert balanced_counts(50, 10) == (50, 10)  # never shrinks the COVID-19 class
    assert balanced_counts(0, 10) == (0, 10)


@pytest.mark.parametrize("labels", [["covid"] * 3 + ["control"] * 11, [1, 0, 0, 1, 1] + [0] * 9])
def test_balanced_plan(labels):
    plan = balanced_plan(labels, np.random.default_rng(0))
    covid = np.flatnonzero(np.asarray(labels) == (1 if isinstance(labels[0], int) else "covid"))
    assert plan.dtype == np.int64
    np.testing.assert_array_equal(plan[: len(labels)], np.arange(len(labels)))
    assert len(plan) == 22  # 11 controls + 11 COVID-19 (3 originals, 8 repeats)
    repeats = np.bincount(plan[len(labels) :], minlength=len(labels))
    assert repeats[covid].sum() == 8 and sorted(repeats[covid]) == [2, 3, 3]  # spread evenly
    assert repeats.sum() == repeats[covid].sum()  # only COVID-19 images repeat
    np.testing.assert_array_equal(plan, balanced_plan(labels, np.random.default_rng(0)))


def test_balanced_plan_without_imbalance():
    np.testing.assert_array_equal(balanced_plan(["covid", "control"], np.random.default_rng(0)), [0, 1])
    np.testing.assert_array_equal(balanced_plan(["control"] * 3, np.random.default_rng(0)), [0, 1, 2])
    assert len(balanced_plan(["covid"] * 2361 + ["control"] * 10035, np.random.default_rng(0))) == 20070
