"""COVID-19 detection from probability maps: any pixel >= threshold (paper Sec. II-D)."""

from __future__ import annotations

import numpy as np
import pytest

from cxrmap.core.errors import DataError
from cxrmap.predict.detect import image_score, is_covid


def one_hot_map(value: float, dtype=np.float32) -> np.ndarray:
    prob = np.zeros((5, 6), dtype=dtype)
    prob[3, 2] = value
    return prob


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_boundary_at_default_threshold(dtype):
    assert is_covid(one_hot_map(0.5, dtype)) is True  # exactly 0.5 counts (Y >= 0.5)
    assert is_covid(one_hot_map(0.4999, dtype)) is False
    assert is_covid(one_hot_map(1.0, dtype)) is True
    assert is_covid(np.zeros((4, 4), dtype)) is False


def test_custom_threshold():
    prob = one_hot_map(0.3)
    assert is_covid(prob, threshold=0.3) is True
    assert is_covid(prob, threshold=0.31) is False
    assert is_covid(prob, threshold=0.2) is True


def test_batch_gives_one_decision_per_image():
    batch = np.stack([one_hot_map(v) for v in (0.1, 0.5, 0.4999, 0.9)])
    decision = is_covid(batch)
    assert decision.dtype == np.bool_ and decision.tolist() == [False, True, False, True]
    assert is_covid(batch, threshold=0.05).tolist() == [True] * 4
    np.testing.assert_allclose(image_score(batch), [0.1, 0.5, 0.4999, 0.9], rtol=1e-6)


def test_score_is_the_maximum_probability():
    prob = np.array([[0.1, 0.7], [0.2, 0.0]])
    assert image_score(prob) == 0.7 and isinstance(image_score(prob), float)
    assert is_covid(prob) == (image_score(prob) >= 0.5)


@pytest.mark.parametrize(
    "prob",
    [np.zeros(5), np.zeros((1, 2, 3, 4)), np.zeros((0, 4)), np.full((2, 2), np.nan), np.zeros((2, 2), int)],
)
def test_bad_maps_raise(prob):
    with pytest.raises(DataError):
        is_covid(prob)


@pytest.mark.parametrize("threshold", [0.0, -0.5, 1.5])
def test_bad_threshold_raises(threshold):
    with pytest.raises(DataError, match="threshold"):
        is_covid(one_hot_map(0.5), threshold=threshold)


def test_area_scores_are_the_kth_largest_probability():
    from cxrmap.predict.detect import MIN_AREAS, area_scores, min_pixels

    prob = np.zeros((2, 10, 10), np.float32)
    prob[0, 0, :4] = [0.9, 0.8, 0.7, 0.6]  # four pixels, the fourth at 0.6
    prob[1, 5, 5] = 0.95  # one bright pixel
    scores = area_scores(prob, (0.0, 0.02, 0.04, 0.05))
    # 0 -> 1 pixel, 2% of 100 -> 2 pixels, 4% -> 4 pixels, 5% -> 5 pixels
    assert [min_pixels(a, 100) for a in (0.0, 0.02, 0.04, 0.05)] == [1, 2, 4, 5]
    np.testing.assert_allclose(scores, [[0.9, 0.8, 0.6, 0.0], [0.95, 0.0, 0.0, 0.0]], rtol=1e-6)
    assert area_scores(prob[0], (0.0, 0.04)).tolist() == pytest.approx([0.9, 0.6])
    assert area_scores(prob).shape == (2, len(MIN_AREAS))
    assert np.array_equal(area_scores(prob)[:, 0], image_score(prob))  # area 0 is the paper's score


def test_detection_rule_with_a_minimum_area():
    from cxrmap.predict.detect import DetectionRule

    prob = np.zeros((2, 10, 10), np.float32)
    prob[0, 0, :4] = 0.7
    prob[1, 5, 5] = 0.95
    assert DetectionRule().decide(prob).tolist() == is_covid(prob).tolist() == [True, True]
    # at least 3% of the image (3 pixels) at >= 0.6: the lone bright pixel no longer decides
    assert DetectionRule(0.6, 0.03).decide(prob).tolist() == [True, False]
    assert DetectionRule(0.6, 0.03).scores(prob[0]) == pytest.approx(0.7)
    with pytest.raises(DataError, match="share of the image"):
        DetectionRule(0.5, 1.5)
    with pytest.raises(DataError, match="threshold"):
        DetectionRule(0.0)
