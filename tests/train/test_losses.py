"""HybridLoss = focal (Eq. 5) + dice (Eq. 7): hand-computed cases on 2x2 images and invariants."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cxrmap.core.errors import DataError, ModelError
from cxrmap.train.losses import HybridLoss

LOGITS = [[0.0, 2.0], [-1.0, 3.0]]
TARGET = [[1.0, 0.0], [0.0, 1.0]]


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def _hand_loss(logits, target, alpha=0.25, gamma=2.0, smooth=1.0) -> float:
    """Eq. 5 averaged over the pixels plus Eq. 7 with smoothing, in plain Python."""
    zs = [z for row in logits for z in row]
    ps = [p for row in target for p in row]
    qs = [_sigmoid(z) for z in zs]
    focal = [
        -alpha * (1 - q) ** gamma * p * math.log(q) - (1 - alpha) * q**gamma * (1 - p) * math.log(1 - q)
        for p, q in zip(ps, qs, strict=True)
    ]
    dice = 1 - (2 * sum(p * q for p, q in zip(ps, qs, strict=True)) + smooth) / (sum(ps) + sum(qs) + smooth)
    return sum(focal) / len(focal) + dice


def _t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)[None, None]


def test_hand_computed_2x2():
    # q = sigmoid([0, 2, -1, 3]) = 0.5, 0.880797, 0.268941, 0.952574; p = 1, 0, 0, 1
    loss = HybridLoss()(_t(LOGITS), _t(TARGET))
    assert loss.item() == pytest.approx(_hand_loss(LOGITS, TARGET), rel=1e-12)
    # the same value written out: focal terms 0.0433217, 1.2375586, 0.0169935, 0.0000273 -> mean 0.3244753;
    # dice 1 - (2 * 1.4525741 + 1) / (2 + 2.6023126 + 1) = 0.3029400
    assert loss.item() == pytest.approx(0.3244753 + 0.3029400, abs=1e-6)


def test_exact_dice_with_tiny_smoothing():
    loss = HybridLoss(smooth=1e-12)(_t(LOGITS), _t(TARGET))
    focal_only = HybridLoss(smooth=1e-12).focal(_t(LOGITS), _t(TARGET)).mean()
    q = [_sigmoid(z) for z in (0.0, 2.0, -1.0, 3.0)]
    dice = 1 - 2 * (q[0] + q[3]) / (2 + sum(q))  # Eq. 7
    assert (loss - focal_only).item() == pytest.approx(dice, rel=1e-9)


def test_gamma_zero_is_balanced_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    target = (torch.rand(3, 1, 4, 4) > 0.5).double()
    alpha = 0.25
    focal = HybridLoss(alpha=alpha, gamma=0.0).focal(logits, target).mean()
    # Eq. 4: alpha for positives, 1 - alpha for negatives
    weight = alpha * target + (1 - alpha) * (1 - target)
    assert focal.item() == pytest.approx(
        F.binary_cross_entropy_with_logits(logits, target, weight=weight).item()
    )
    z, p = LOGITS[0][1], TARGET[0][1]  # one pixel by hand: -(1 - alpha) log(1 - q)
    one = HybridLoss(alpha=alpha, gamma=0.0).focal(_t([[z]]), _t([[p]])).item()
    assert one == pytest.approx(-(1 - alpha) * math.log(1 - _sigmoid(z)))


def test_empty_masks():
    empty = torch.zeros(1, 1, 2, 2)
    assert HybridLoss()(torch.full((1, 1, 2, 2), -60.0), empty).item() == pytest.approx(0.0, abs=1e-12)
    # an empty target with everything predicted: dice 1 - 1 / (4 + 1)
    full = HybridLoss().dice_terms(torch.full((1, 1, 2, 2), 60.0), empty)
    assert full[0].item() == 0 and full[1].item() == pytest.approx(4.0)
    loss = HybridLoss(alpha=0.25, gamma=0.0)(torch.full((1, 1, 2, 2), 60.0), empty)
    assert loss.item() == pytest.approx(0.75 * 60 + 0.8, rel=1e-6)


def test_stable_for_extreme_logits():
    logits = torch.tensor([[[[-500.0, 500.0], [80.0, -80.0]]]], requires_grad=True)
    target = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    loss = HybridLoss()(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert loss.item() > 10  # the two confident mistakes cost a lot


def test_reductions_over_batch_and_channels():
    torch.manual_seed(1)
    logits = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    target = (torch.rand(2, 2, 4, 4) > 0.6).double()
    loss_fn = HybridLoss()
    pieces = [
        loss_fn(logits[n : n + 1, c : c + 1], target[n : n + 1, c : c + 1])
        for n in range(2)
        for c in range(2)
    ]
    assert loss_fn(logits, target).item() == pytest.approx(torch.stack(pieces).mean().item())

    valid = torch.tensor([[True, False], [True, True]])
    kept = [pieces[0], pieces[2], pieces[3]]
    assert loss_fn(logits, target, valid=valid).item() == pytest.approx(torch.stack(kept).mean().item())

    weighted = HybridLoss(channel_weights=[3.0, 1.0])(logits, target)
    expected = (3 * pieces[0] + pieces[1] + 3 * pieces[2] + pieces[3]) / 8
    assert weighted.item() == pytest.approx(expected.item())


def test_batch_dice_equals_dice_of_the_joined_images():
    torch.manual_seed(2)
    logits = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    target = (torch.rand(2, 1, 4, 4) > 0.5).double()
    joined = HybridLoss()(
        torch.cat([logits[0], logits[1]], dim=-1)[None], torch.cat([target[0], target[1]], -1)[None]
    )
    assert HybridLoss(per_image=False)(logits, target).item() == pytest.approx(joined.item())


def test_no_valid_entry_gives_zero_with_gradient():
    logits = torch.randn(2, 1, 2, 2, requires_grad=True)
    loss = HybridLoss()(logits, torch.zeros(2, 1, 2, 2), valid=torch.zeros(2, 1, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_gradients_match_finite_differences():
    torch.manual_seed(3)
    logits = torch.randn(1, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    target = torch.rand(1, 2, 2, 2, dtype=torch.float64)  # soft labels
    assert torch.autograd.gradcheck(lambda z: HybridLoss()(z, target), (logits,))


def test_bad_arguments():
    with pytest.raises(ModelError, match="unsqueeze"):
        HybridLoss()(torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 4))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        HybridLoss()(torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 255.0))
    with pytest.raises(ModelError, match="alpha"):
        HybridLoss(alpha=1.5)
    with pytest.raises(ModelError, match="valid"):
        HybridLoss()(torch.zeros(2, 2, 2, 2), torch.zeros(2, 2, 2, 2), valid=torch.ones(2, dtype=torch.bool))
    with pytest.raises(ModelError, match="channel_weights"):
        HybridLoss(channel_weights=[1.0])(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2))
