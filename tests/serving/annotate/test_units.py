"""Pieces of the annotation workflow checked by hand: RLE, Dice, Fleiss' kappa, the position-bias test,
the acceptance rule, the simulated hand, and one real (tiny) training job."""

from __future__ import annotations

import base64
import io
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from cxrmap.serving.annotate.masks import MaskError, decode_mask_upload, decode_rle, dice, encode_rle
from cxrmap.serving.annotate.simulate import degrade_mask, draw_mask
from cxrmap.serving.annotate.stats import fleiss_kappa, position_bias
from cxrmap.serving.annotate.workflow import _labels, decide


def test_rle_round_trip_and_checks():
    rng = np.random.default_rng(0)
    for shape in ((1, 1), (3, 5), (17, 9)):
        for density in (0.0, 0.3, 1.0):
            mask = rng.random(shape) < density
            counts = encode_rle(mask)
            assert sum(counts) == mask.size
            assert np.array_equal(decode_rle(counts, shape[1], shape[0]), mask)
    assert encode_rle(np.array([[1, 1], [0, 1]], bool)) == [0, 2, 1, 1]
    with pytest.raises(MaskError, match="sum to 3"):
        decode_rle([1, 2], 2, 2)
    with pytest.raises(MaskError, match="negative"):
        decode_rle([5, -1], 2, 2)
    with pytest.raises(MaskError, match="whole numbers"):
        decode_rle([1.5, 2.5], 2, 2)


def test_png_mask_upload_must_be_binary_grey_and_the_right_size():
    def b64(array, mode="L"):
        buffer = io.BytesIO()
        Image.fromarray(array).convert(mode).save(buffer, format="PNG")
        return {"format": "png", "data": base64.b64encode(buffer.getvalue()).decode()}

    ones = np.zeros((4, 6), np.uint8)
    ones[1, 2] = 1
    assert decode_mask_upload(b64(ones), 6, 4, 10**6).sum() == 1  # 0/1 values are accepted
    assert decode_mask_upload(b64(ones * 255), 6, 4, 10**6)[1, 2]
    for body, words in (
        (b64(ones * 200), "not binary"),
        (b64(ones * 255, "RGB"), "grey"),
        (b64(ones.T * 255), "radiograph is 6 x 4"),
        ({"format": "png", "data": "%%"}, "base64"),
        ({"format": "png", "data": base64.b64encode(b"GIF89a").decode()}, "PNG"),
    ):
        with pytest.raises(MaskError, match=words):
            decode_mask_upload(body, 6, 4, 10**6)
    with pytest.raises(MaskError, match="over the limit"):
        decode_mask_upload(b64(ones * 255), 6, 4, 10)


def test_dice():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    assert dice(a, b) == 1.0
    a[0, :2] = True
    assert dice(a, b) == 0.0
    b[0, 1:4] = True
    assert dice(a, b) == pytest.approx(2 * 1 / (2 + 3))


def test_fleiss_kappa_matches_the_worked_example():
    # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories -> kappa 0.210
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    ratings = [[c for c, n in zip("abcde", row, strict=True) for _ in range(n)] for row in table]
    assert fleiss_kappa(ratings) == pytest.approx(0.20993, abs=1e-4)
    assert fleiss_kappa([["a", "a"], ["b", "b"]]) == pytest.approx(1.0)
    assert fleiss_kappa([["a", "b"], ["b", "a"]]) == pytest.approx(-1.0)
    assert fleiss_kappa([["a"]]) is None


def test_position_bias_chi_square_by_hand():
    bias = position_bias([(0, 2), (0, 2), (1, 2), (0, 4)])
    assert bias["labels"] == ["A", "B", "C", "D"]
    assert bias["observed"] == [3, 1, 0, 0] and bias["shown"] == [4, 4, 1, 1]
    assert bias["expected"] == [1.75, 1.75, 0.25, 0.25]
    chi2 = 1.25**2 / 1.75 + 0.75**2 / 1.75 + 0.25 + 0.25
    assert bias["chi2"] == pytest.approx(chi2, abs=1e-4) and bias["dof"] == 3
    from scipy.stats import chi2 as distribution

    assert bias["p_value"] == pytest.approx(distribution.sf(chi2, 3))
    assert bias["rate"] == [0.75, 0.25, 0.0, 0.0]
    assert position_bias([])["p_value"] is None


def test_acceptance_rule_majority_then_earliest():
    def review(i, decision, choice=None):
        return SimpleNamespace(id=i, decision=decision, choice_id=choice)

    # two of three chose candidate 7
    assert decide([review(1, "choose", 5), review(2, "choose", 7), review(3, "choose", 7)]).id == 2
    # a tie goes to the earliest submitted review's outcome
    assert decide([review(1, "choose", 5), review(2, "choose", 7)]).id == 1
    # rejections vote together; the earliest rejecting review's drawn mask wins
    assert decide([review(1, "choose", 5), review(2, "reject"), review(3, "reject")]).id == 2
    assert decide([review(4, "reject")]).id == 4


def test_labels():
    assert _labels(3) == ["A", "B", "C"]
    assert _labels(28)[-3:] == ["Z", "AA", "AB"]


def test_simulated_hands():
    yy, xx = np.mgrid[:96, :96]
    truth = ((yy - 50) ** 2 / 400 + (xx - 30) ** 2 / 150 < 1) | (
        (yy - 55) ** 2 / 300 + (xx - 68) ** 2 / 120 < 1
    )
    hurried = [dice(degrade_mask(truth, np.random.default_rng(s)), truth) for s in range(20)]
    careful = [dice(draw_mask(truth, np.random.default_rng(s)), truth) for s in range(20)]
    assert 0.5 < np.mean(hurried) < 0.9 and min(careful) > 0.85 and np.mean(careful) > np.mean(hurried)


def test_cxrmap_trainer_trains_and_predicts_masks(tmp_path):
    """One real (tiny) training job: 6 phantoms at 64 px, 2 epochs; masks come back at each image's size,
    the same as the saved model.pt predicts; the resumable last.pt holds the final epoch."""
    import torch

    from cxrmap.data.io import read_image
    from cxrmap.predict.predictor import Predictor
    from cxrmap.serving.annotate.training import Network, TrainTask, cxrmap_trainer, parse_training
    from cxrmap.train import load_checkpoint
    from tests.helpers.annotate import tiny_data

    images_dir, _, truths, _ = tiny_data(tmp_path / "data", n_images=6, manual_share=0.5)
    paths = sorted(images_dir.glob("*.png"))
    truth_dir = images_dir.parent / "Ground-truths"
    reports = []
    threads = torch.get_num_threads()
    task = TrainTask(
        Network("unet", "tu-resnet10t"),
        parse_training({"size": 64, "epochs": 2, "batch_size": 4, "threads": 1}),
        train=[(str(p), str(truth_dir / f"mask_{p.name}")) for p in paths[:4]],
        predict=[(10 + i, str(p)) for i, p in enumerate(paths[4:])],
        workdir=tmp_path / "task",
        report=lambda f, m: reports.append((f, m)),
    )
    masks = cxrmap_trainer(task)
    assert sorted(masks) == [10, 11]
    assert all(m.dtype == bool and m.shape == (64, 64) for m in masks.values())
    run = tmp_path / "task" / "run"
    reloaded = Predictor.from_checkpoint(run / "model.pt").predict([read_image(p) for p in paths[4:]])
    for image_id, prediction in zip((10, 11), reloaded, strict=True):
        assert np.array_equal(masks[image_id], prediction.prob >= prediction.threshold)
    assert load_checkpoint(run / "last.pt")["epoch"] == 2
    assert any("epoch 1/2" in m for _, m in reports) and any("epoch 2/2" in m for _, m in reports)
    assert reports[0][0] == 0.0
    assert torch.get_num_threads() == threads
