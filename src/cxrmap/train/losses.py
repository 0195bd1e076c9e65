"""The hybrid loss of the paper (Sec. II-C.3): focal loss (Eq. 5) plus dice loss (Eq. 7).

Notation as in the paper: ``p`` is the ground-truth probability of the positive (infected) class at a
pixel, ``q = sigmoid(z)`` the network's (Eq. 1), ``z`` the logit.

Example:
    >>> import torch
    >>> loss_fn = HybridLoss()
    >>> logits = torch.zeros(2, 1, 4, 4, requires_grad=True)
    >>> target = torch.zeros(2, 1, 4, 4)
    >>> loss = loss_fn(logits, target)
    >>> loss.backward()
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cxrmap.core.errors import DataError, ModelError


class HybridLoss(nn.Module):
    r"""Focal loss (Eq. 5) + dice loss (Eq. 7), computed from logits.

    Focal loss per pixel (Eq. 5), with ``alpha`` weighting the positive class and ``1 - alpha`` the
    negative one, and focusing parameter ``gamma``:

    .. math:: F(p, q) = -\alpha (1-q)^\gamma p \log q - (1-\alpha) q^\gamma (1-p) \log(1-q)

    With ``gamma = 0`` it is the alpha-balanced cross-entropy of Eq. 4. ``log q`` and ``log(1 - q)`` are
    ``logsigmoid(z)`` and ``logsigmoid(-z)``, and ``q**gamma = exp(gamma * logsigmoid(z))``, so large
    logits neither overflow nor give ``log 0``.

    Dice loss per image and channel (Eq. 7, sums over the H x W pixels), with smoothing ``smooth``:

    .. math:: D(p, q) = 1 - \frac{2 \sum p q + s}{\sum p + \sum q + s}

    Reductions: the focal loss is the mean over the pixels of each image and channel; both terms are
    then averaged over the (image, channel) pairs, and the result is their sum. With ``per_image=False``
    the dice sums run over the whole batch per channel instead (as Keras ``segmentation_models``' default
    dice loss does), and the dice term is the mean over channels.

    Empty masks (control images have no infection): the smoothing makes the dice of an empty target and
    an empty prediction 1, so its loss is 0; an empty target with predicted mass ``S = sum q`` costs
    ``1 - s / (S + s)``, which grows towards 1 with ``S``. The focal term is unaffected by emptiness.

    Several channels (``target`` ``N x C x H x W``, e.g. infection and lungs): every channel is a binary
    problem of its own, weighted by ``channel_weights`` (default 1 each). Labels missing for some images
    (a lung mask that does not exist) are left out with ``valid``, an ``N x C`` boolean tensor: the
    averages then run over the valid (image, channel) pairs only; no valid pair gives a zero loss that
    still back-propagates (zero gradient).

    Args:
        alpha: weight of the positive class in the focal loss (paper: 0.25).
        gamma: focusing parameter (paper: 2); 0 gives balanced cross-entropy (Eq. 4).
        smooth: dice smoothing ``s`` (default 1).
        per_image: dice per image (default) or over the whole batch.
        channel_weights: one non-negative weight per channel, or None for equal weights.

    Half-precision logits (mixed-precision training) are computed in float32.

    Shape:
        logits, target: ``N x C x H x W`` (target in ``[0, 1]``, soft labels allowed);
        valid: ``N x C`` bool or None. Output: scalar.

    Raises:
        ModelError: shapes that do not match; DataError: target values outside ``[0, 1]``.
    """

    def __init__(
        self,
        alpha: float = 0.25,
        gamma: float = 2.0,
        smooth: float = 1.0,
        per_image: bool = True,
        channel_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ModelError(f"alpha must be in [0, 1], got {alpha}")
        if gamma < 0:
            raise ModelError(f"gamma must be >= 0, got {gamma}")
        if smooth <= 0:
            raise ModelError(f"smooth must be > 0 (it defines the dice of empty masks), got {smooth}")
        if channel_weights is not None and any(w < 0 for w in channel_weights):
            raise ModelError(f"channel_weights must be non-negative, got {list(channel_weights)}")
        self.alpha = float(alpha)
        self.gamma = float(gamma)
        self.smooth = float(smooth)
        self.per_image = per_image
        self.channel_weights = None if channel_weights is None else tuple(float(w) for w in channel_weights)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, gamma={self.gamma}, smooth={self.smooth}, per_image={self.per_image}"

    def focal(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Focal loss (Eq. 5) per image and channel: ``N x C`` means over the pixels."""
        log_q = F.logsigmoid(logits)
        log_not_q = F.logsigmoid(-logits)
        positive = self.alpha * target * log_q
        negative = (1.0 - self.alpha) * (1.0 - target) * log_not_q
        if self.gamma:
            positive = positive * torch.exp(self.gamma * log_not_q)
            negative = negative * torch.exp(self.gamma * log_q)
        return -(positive + negative).flatten(2).mean(dim=2)

    def dice_terms(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(2 sum p q, sum p + sum q)`` per image and channel (``N x C`` each)."""
        q = torch.sigmoid(logits).flatten(2)
        p = target.flatten(2)
        return 2.0 * (p * q).sum(dim=2), p.sum(dim=2) + q.sum(dim=2)

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        if logits.shape != target.shape or logits.ndim < 3:
            raise ModelError(
                f"logits and target must both be N x C x H x W, got {tuple(logits.shape)} and "
                f"{tuple(target.shape)}; add the channel axis with target.unsqueeze(1)"
            )
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()  # mixed precision: the loss itself runs in float32
        target = target.to(logits.dtype)
        if target.numel() and (target.min() < 0 or target.max() > 1):
            low, high = float(target.min()), float(target.max())
            raise DataError(
                f"target values must lie in [0, 1], got [{low:.3g}, {high:.3g}]; divide masks by 255"
            )
        n, c = logits.shape[:2]
        weight = torch.ones(n, c, dtype=logits.dtype, device=logits.device)
        if self.channel_weights is not None:
            if len(self.channel_weights) != c:
                raise ModelError(f"{len(self.channel_weights)} channel_weights for {c} channels")
            weight = weight * torch.tensor(self.channel_weights, dtype=logits.dtype, device=logits.device)
        if valid is not None:
            if tuple(valid.shape) != (n, c):
                raise ModelError(f"valid must be N x C = {n} x {c}, got {tuple(valid.shape)}")
            weight = weight * valid.to(device=logits.device, dtype=logits.dtype)
        total = weight.sum()
        if total <= 0:
            return logits.sum() * 0.0
        focal = (self.focal(logits, target) * weight).sum() / total
        overlap, size = self.dice_terms(logits, target)
        if self.per_image:
            dice = 1.0 - (overlap + self.smooth) / (size + self.smooth)
            dice = (dice * weight).sum() / total
        else:
            mask = weight > 0
            overlap = (overlap * mask).sum(dim=0)
            size = (size * mask).sum(dim=0)
            channel_weight = weight.amax(dim=0)
            dice = 1.0 - (overlap + self.smooth) / (size + self.smooth)
            dice = (dice * channel_weight).sum() / channel_weight.sum()
        return focal + dice
