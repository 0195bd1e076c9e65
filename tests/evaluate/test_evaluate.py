"""Evaluation: pixel and image counts on hand-made probability maps, intervals, AUC, tables, curves."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cxrmap.evaluate.detection import DetectionAccumulator
from cxrmap.evaluate.evaluation import Evaluation, summarise, write_results
from cxrmap.evaluate.segmentation import PixelAccumulator, histogram_auc, interval_sizes, pr_curve
from cxrmap.evaluate.tables import format_value


def _maps():
    """Two 2x3 COVID maps and one control map with known counts at 0.5.

    covid 0: mask [[1,1,0],[0,0,0]], prob [[.9,.4,.6],[.1,.0,.2]] -> tp 1, fn 1, fp 1, tn 3
    covid 1: mask [[0,0,0],[1,1,1]], prob [[.0,.0,.0],[.5,.7,.8]] -> tp 3, tn 3
    control: mask 0,                 prob [[.2,.3,.1],[.1,.55,.0]] -> fp 1, tn 5   (score .55: a false alarm)
    """
    prob = np.array(
        [
            [[0.9, 0.4, 0.6], [0.1, 0.0, 0.2]],
            [[0.0, 0.0, 0.0], [0.5, 0.7, 0.8]],
            [[0.2, 0.3, 0.1], [0.1, 0.55, 0.0]],
        ],
        np.float32,
    )
    mask = np.array(
        [[[1, 1, 0], [0, 0, 0]], [[0, 0, 0], [1, 1, 1]], [[0, 0, 0], [0, 0, 0]]],
        np.uint8,
    )
    return prob, mask, np.array([1, 1, 0])


def test_pixel_counts_and_metrics_match_hand_computation():
    prob, mask, _ = _maps()
    acc = PixelAccumulator()
    acc.update(prob[:2], mask[:2])
    acc.update(prob[2:], mask[2:])
    assert acc.counts() == (4, 2, 11, 1)
    m = acc.metrics()
    assert m["sensitivity"] == pytest.approx(4 / 5)
    assert m["specificity"] == pytest.approx(11 / 13)
    assert m["precision"] == pytest.approx(4 / 6)
    assert m["accuracy"] == pytest.approx(15 / 18)
    f1 = 2 * (4 / 6) * (4 / 5) / (4 / 6 + 4 / 5)
    assert m["f1"] == pytest.approx(f1)
    assert m["f2"] == pytest.approx(5 * (4 / 6) * (4 / 5) / (4 * 4 / 6 + 4 / 5))
    # Eq. 13 with n = positives for sensitivity, negatives for specificity, all pixels otherwise
    assert m["sensitivity_ci"] == pytest.approx(1.96 * math.sqrt(0.8 * 0.2 / 5))
    assert m["specificity_ci"] == pytest.approx(1.96 * math.sqrt((11 / 13) * (2 / 13) / 13))
    assert m["precision_ci"] == pytest.approx(1.96 * math.sqrt((4 / 6) * (2 / 6) / 18))
    assert interval_sizes(4, 2, 11, 1) == {
        "sensitivity": 5, "specificity": 13, "precision": 18, "f1": 18, "f2": 18, "accuracy": 18, "auc": 18,
    }  # fmt: skip
    assert m["images"] == 3


def test_pixel_auc_from_histogram_equals_exact_auc():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    mask = rng.random((4, 16, 16)) < 0.3
    prob = np.clip(mask * 0.3 + rng.random((4, 16, 16)) * 0.7, 0, 1)
    prob = np.round(prob, 3).astype(np.float64)  # on the bin grid: the histogram AUC is then exact
    acc = PixelAccumulator(bins=1000)
    acc.update(prob, mask)
    assert acc.auc() == pytest.approx(roc_auc_score(mask.ravel(), prob.ravel()), abs=1e-9)
    # hand case: positives at bins 9 and 5, negatives at 5 and 0 -> (1 + 1 + 0.5 + 1) / 4
    pos, neg = np.zeros(10, np.int64), np.zeros(10, np.int64)
    pos[[9, 5]] = 1
    neg[[5, 0]] = 1
    assert histogram_auc(pos, neg) == pytest.approx(3.5 / 4)
    assert math.isnan(histogram_auc(pos, np.zeros(10)))


def test_pr_curve_counts_at_each_threshold():
    prob, mask, _ = _maps()
    acc = PixelAccumulator(bins=10)
    acc.update(prob, mask)
    curve = pr_curve(acc.pos_hist, acc.neg_hist)
    at = 5  # threshold 0.5: the counts at the threshold
    assert curve["threshold"][at] == pytest.approx(0.5)
    assert (curve["tp"][at], curve["fp"][at]) == (4, 2)
    assert curve["recall"][0] == 1.0 and curve["tp"][-1] == 0 and curve["precision"][-1] == 1.0
    assert np.all(np.diff(curve["recall"]) <= 0)


def test_detection_confusion_and_metrics():
    prob, mask, labels = _maps()
    evaluation = Evaluation()
    evaluation.update(prob, mask, np.ones(3, bool), labels, indices=[10, 11, 12])
    det = evaluation.detection
    assert det.scores == pytest.approx([0.9, 0.8, 0.55])
    assert det.confusion().tolist() == [[0, 1], [0, 2]]  # the control is a false alarm
    m = evaluation.metrics()
    assert m["detection"]["sensitivity"] == 1.0 and m["detection"]["specificity"] == 0.0
    assert m["detection"]["auc"] == 1.0  # the control's score is below both COVID-19 scores
    assert m["segmentation_covid"]["tp"] == 4 and m["segmentation_covid"]["fp"] == 1
    assert m["segmentation"]["fp"] == 2  # the control's pixels count in the paper's figure


def test_unknown_masks_count_for_detection_only():
    prob, mask, labels = _maps()
    evaluation = Evaluation()
    evaluation.update(prob, mask, np.array([False, True, True]), labels)
    assert evaluation.pixels.images == 2 and len(evaluation.detection.scores) == 3
    assert evaluation.pixels.counts() == (3, 1, 8, 0)


def test_folds_average_and_cumulative_confusion(tmp_path):
    folds = []
    for scores, labels in (([0.9, 0.2, 0.7], [1, 0, 0]), ([0.4, 0.1, 0.8, 0.6], [1, 0, 1, 1])):
        evaluation = Evaluation()
        evaluation.detection.update(scores, labels)
        evaluation.pixels.update(np.array([[[0.9]]]), np.array([[[1]]]))
        folds.append(evaluation)
    summary = summarise(folds)["detection"]
    # fold 0: tp 1, fp 1, tn 1 -> sens 1, spec .5; fold 1: tp 2, fn 1, tn 1 -> sens 2/3, spec 1
    assert summary["sensitivity"] == pytest.approx((1 + 2 / 3) / 2)
    assert summary["specificity"] == pytest.approx(0.75)
    assert (summary["tp"], summary["fp"], summary["tn"], summary["fn"]) == (3, 1, 2, 1)
    assert summary["sensitivity_ci"] == pytest.approx(
        1.96 * math.sqrt(summary["sensitivity"] * (1 - summary["sensitivity"]) / 4)
    )
    paths = write_results(tmp_path, {"unet-densenet121": ({"arch": "unet", "encoder": "densenet121"}, folds)})
    confusion = pd.read_csv(paths["confusion"].with_suffix(".csv"))
    assert confusion.loc[0, ["tn", "fp", "fn", "tp"]].tolist() == [2, 1, 1, 3]
    assert confusion[["tn", "fp", "fn", "tp"]].to_numpy().sum() == 7  # every test image once
    table = paths["detection"].read_text()
    assert "| U-Net | DenseNet-121 | not frozen, random init |" in table and "83.33 ±" in table
    for name in (
        "fig6_precision_recall.png",
        "fig6_precision_recall.csv",
        "roc_detection.png",
        "summary.json",
    ):
        assert (tmp_path / name).stat().st_size > 0
    assert pd.read_csv(tmp_path / "table1_segmentation.csv").loc[0, "sensitivity"] == 1.0


def test_round_trip_and_format():
    prob, mask, labels = _maps()
    evaluation = Evaluation()
    evaluation.update(prob, mask, np.ones(3, bool), labels, indices=[0, 1, 2])
    again = Evaluation.from_dict(evaluation.to_dict())
    assert again.metrics() == evaluation.metrics()
    assert format_value(0.84, 0.00015) == "84.00 ± 0.015"
    assert format_value(float("nan"), 0.1) == "-"
    acc = DetectionAccumulator()
    with pytest.raises(Exception, match="labels"):
        acc.update([0.1, 0.2], [1])


def test_evaluate_model_with_constant_network():
    import torch

    from cxrmap.data.cache import ImageCache
    from cxrmap.evaluate.evaluation import evaluate_model

    class Constant(torch.nn.Module):
        """Probability 0.73 on pixels brighter than mid-grey, 0.27 elsewhere."""

        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(1.0))

        def forward(self, x):
            return torch.where(x > 0.5, 1.0, -1.0) * self.scale

    images = np.zeros((3, 4, 4), np.uint8)
    images[0, :2] = 255  # covid: top half bright, mask = top half
    images[2, 0, 0] = 255  # control: one bright pixel -> false alarm
    masks = np.zeros((3, 4, 4), np.uint8)
    masks[0, :2] = 1
    masks[1, 0] = 1  # covid with a mask the model misses
    manifest = pd.DataFrame({"label": ["covid", "covid", "control"], "image_path": ["a", "b", "c"]})
    cache = ImageCache(None, 4, images, masks, masks * 0, np.ones(3, bool), np.zeros(3, bool), manifest)
    model = Constant().train()
    evaluation = evaluate_model(model, cache, [0, 1, 2], progress=False, chunk=2)
    assert model.training  # mode restored
    assert evaluation.pixels.counts() == (8, 1, 35, 4)
    assert evaluation.detection.confusion().tolist() == [[0, 1], [1, 1]]
    assert evaluation.detection.indices == [0, 1, 2]


def test_predict_probabilities_is_the_sigmoid_of_the_logits():
    import torch

    from cxrmap.core.errors import DataError
    from cxrmap.predict.inference import predict_probabilities

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.BatchNorm2d(2)).train()
    images = np.random.default_rng(0).integers(0, 256, (5, 8, 8), dtype=np.uint8)
    prob = predict_probabilities(model, images, batch_size=2)
    assert prob.shape == (5, 2, 8, 8) and prob.dtype == np.float32
    assert model.training  # mode restored
    with torch.no_grad():
        expected = torch.sigmoid(model.eval()(torch.from_numpy(images).float()[:, None] / 255)).numpy()
    np.testing.assert_allclose(prob, expected, atol=1e-6)
    as_tensor = predict_probabilities(model, torch.from_numpy(images)[:, None].float() / 255, batch_size=5)
    np.testing.assert_allclose(as_tensor, prob, atol=1e-6)  # same whatever the input form and batch size
    with pytest.raises(DataError, match="uint8"):
        predict_probabilities(model, images.astype(np.float32))


def test_rule_chosen_on_validation_images_is_applied_to_the_test_images(tmp_path):
    from cxrmap.evaluate.detection import choose_rule
    from cxrmap.evaluate.evaluation import VALIDATED
    from cxrmap.predict.detect import DetectionRule

    def maps(spots: list[tuple[int, float]]) -> np.ndarray:
        """One 10 x 10 map per (pixels, value): that many pixels at that probability."""
        prob = np.zeros((len(spots), 10, 10), np.float32)
        for image, (pixels, value) in enumerate(spots):
            prob[image].flat[:pixels] = value
        return prob

    # validation: COVID-19 images have 3+ pixels at 0.8; controls have one pixel at 0.9 (a false spot)
    validation = Evaluation()
    spots = [(3, 0.8), (5, 0.8), (1, 0.9), (1, 0.9)]
    validation.update(maps(spots), np.zeros((4, 10, 10)), np.zeros(4, bool), [1, 1, 0, 0])
    rule = validation.choose_rule()
    assert rule.min_area > 0 and rule.decide(maps(spots)).tolist() == [True, True, False, False]
    assert choose_rule(validation.areas, [1, 1, 0, 0]) == rule
    with pytest.raises(Exception, match="both classes"):
        choose_rule(validation.areas[:2], [1, 1])

    # test fold: the paper's rule calls the spotty control COVID-19, the validated one does not
    test = Evaluation()
    test.update(maps([(4, 0.85), (1, 0.95), (0, 0.0)]), np.zeros((3, 10, 10)), np.zeros(3, bool), [1, 0, 0])
    test.rule = rule
    metrics = test.metrics()
    assert metrics["detection"]["specificity"] == pytest.approx(0.5)
    assert metrics[VALIDATED]["specificity"] == 1.0 and metrics[VALIDATED]["sensitivity"] == 1.0
    assert metrics[VALIDATED]["min_area"] == rule.min_area
    again = Evaluation.from_dict(test.to_dict())
    assert again.rule == rule
    assert {k: again.metrics()[k] for k in ("detection", VALIDATED)} == {
        k: metrics[k] for k in ("detection", VALIDATED)
    }

    summary = summarise([test, again])
    assert summary[VALIDATED]["specificity"] == 1.0 and len(summary[VALIDATED]["rules"]) == 2
    assert VALIDATED not in summarise([Evaluation.from_dict({**test.to_dict(), "rule": None})])
    paths = write_results(
        tmp_path, {"unet-densenet121": ({"arch": "unet", "encoder": "densenet121"}, [test])}
    )
    table = pd.read_csv(paths["detection"].with_suffix(".csv"))
    assert table["rule"].str.startswith("paper").tolist() == [True, False]
    assert table["specificity"].tolist() == [0.5, 1.0]
    assert "chosen on validation images" in paths["detection"].read_text()
    assert DetectionRule() == DetectionRule(0.5, 0.0)
