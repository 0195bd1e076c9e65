"""Metrics of Eq. 8-13 and the confusion counter: hand-computed cases, undefined values, accumulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cxrmap.core.errors import DataError
from cxrmap.evaluate.metrics import METRICS, ConfusionCounter, binary_metrics, confidence_interval, fbeta


def test_binary_metrics_by_hand():
    m = binary_metrics(tp=8, fp=2, tn=85, fn=5)
    assert list(m) == list(METRICS)
    assert m["sensitivity"] == pytest.approx(8 / 13)  # Eq. 8
    assert m["specificity"] == pytest.approx(85 / 87)  # Eq. 9
    assert m["precision"] == pytest.approx(8 / 10)  # Eq. 10
    assert m["accuracy"] == pytest.approx(93 / 100)  # Eq. 11
    assert m["f1"] == pytest.approx(2 * 0.8 * (8 / 13) / (0.8 + 8 / 13))  # Eq. 12, beta = 1
    assert m["f2"] == pytest.approx(5 * 0.8 * (8 / 13) / (4 * 0.8 + 8 / 13))  # beta = 2
    assert m["f1"] == pytest.approx(fbeta(m["precision"], m["sensitivity"], 1))


def test_undefined_values_are_nan():
    none_predicted = binary_metrics(tp=0, fp=0, tn=90, fn=10)
    assert math.isnan(none_predicted["precision"])
    assert none_predicted["sensitivity"] == 0 and none_predicted["f1"] == 0 and none_predicted["f2"] == 0
    no_positives = binary_metrics(tp=0, fp=0, tn=5, fn=0)
    assert math.isnan(no_positives["sensitivity"]) and math.isnan(no_positives["f1"])
    assert no_positives["specificity"] == 1 and no_positives["accuracy"] == 1
    assert all(math.isnan(v) for v in binary_metrics(0, 0, 0, 0).values())
    assert math.isnan(fbeta(float("nan"), 0.5, 1)) and fbeta(0.0, 0.0, 2) == 0.0
    with pytest.raises(DataError, match="non-negative"):
        binary_metrics(tp=-1, fp=0, tn=0, fn=0)


def test_confidence_interval_eq13():
    assert confidence_interval(0.5, 100) == pytest.approx(1.96 * 0.05)
    assert confidence_interval(0.9, 400, z=2.576) == pytest.approx(2.576 * math.sqrt(0.9 * 0.1 / 400))
    assert confidence_interval(1.0, 10) == 0.0
    assert math.isnan(confidence_interval(0.5, 0)) and math.isnan(confidence_interval(float("nan"), 10))
    with pytest.raises(DataError, match="percent"):
        confidence_interval(95.0, 100)
    with pytest.raises(DataError):
        confidence_interval(0.5, -1)


def test_confusion_counter_numpy_and_torch_agree():
    prob = np.array([[0.9, 0.5, 0.49], [0.1, 0.7, 0.2]], dtype=np.float32)
    target = np.array([[255, 0, 255], [0, 255, 0]], dtype=np.uint8) / 255  # {0, 255} mask scaled
    a = ConfusionCounter()
    a.update(prob, target)
    # predicted positive where prob >= 0.5: (0,0) TP, (0,1) FP, (0,2) FN, (1,0) TN, (1,1) TP, (1,2) TN
    assert a.counts() == {"tp": 2, "fp": 1, "tn": 2, "fn": 1}
    b = ConfusionCounter()
    b.update(torch.tensor(prob, requires_grad=True), torch.tensor(target > 0.5))
    assert b.counts() == a.counts() and b.total == 6
    assert a.metrics() == binary_metrics(2, 1, 2, 1)


def test_confusion_counter_merge_and_large_counts():
    folds = [ConfusionCounter(), ConfusionCounter()]
    folds[0].update(np.array([0.8, 0.1]), np.array([1, 0]))
    folds[1].update(np.array([0.8, 0.9]), np.array([0, 1]))
    total = ConfusionCounter().merge(folds[0]).merge(folds[1])
    assert total.counts() == {"tp": 2, "fp": 1, "tn": 1, "fn": 0}
    with pytest.raises(DataError, match="threshold"):
        total.merge(ConfusionCounter(threshold=0.3))
    with pytest.raises(DataError, match="shapes differ"):
        total.update(np.zeros((2, 2)), np.zeros((2, 3)))
    big = ConfusionCounter()
    big.tp, big.tn = 6 * 10**9, 5 * 10**9  # beyond int32, like pixels of a large test set
    big.update(torch.ones(4), torch.ones(4))
    assert big.tp == 6 * 10**9 + 4 and big.total == 11 * 10**9 + 4
    assert big.metrics()["accuracy"] == 1.0
