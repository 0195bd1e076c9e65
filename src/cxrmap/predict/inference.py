"""The one inference routine: images in, per-pixel probabilities out (paper Sec. II-D, Eq. 1).

Evaluation, prediction and the web server all call :func:`predict_probabilities`, so a probability map is
computed the same way everywhere: the network's logits through the sigmoid, without gradients, in eval mode.
"""

from __future__ import annotations

import numpy as np
import torch

from cxrmap.core.errors import DataError
from cxrmap.core.runtime import autocast, resolve_amp
from cxrmap.models.input import as_batch


def predict_probabilities(
    model, images, batch_size: int = 16, device="cpu", amp: bool | str = False
) -> np.ndarray:
    """Per-pixel probabilities ``sigmoid(logits)`` of ``model`` on ``images``.

    The model is run in eval mode without gradients, on ``device``; its training/eval mode and its device
    are restored afterwards. Images are processed ``batch_size`` at a time.

    Args:
        model: a segmentation network (:func:`cxrmap.models.create_model`), possibly DDP-wrapped.
        images: uint8 array N x S x S (e.g. ``cache.images[idx]``) or float tensor N x 1 x S x S in [0, 1].
        batch_size: images per forward pass.
        device: where to compute.
        amp: mixed precision, as :func:`resolve_amp` (True: bf16 on CPUs and recent GPUs, fp16 on older
            GPUs); probabilities are float32 anyway.

    Returns:
        float32 array N x C x S x S, C the model's output channels (infection first, then lung if any).

    Example:
        >>> prob = predict_probabilities(model, cache.images[:4])  # doctest: +SKIP
        >>> prob.shape, prob.dtype  # doctest: +SKIP
        ((4, 2, 224, 224), dtype('float32'))
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be at least 1, got {batch_size}")
    batch = as_batch(images)
    device = torch.device(device)
    network = getattr(model, "module", model)
    was_training = network.training
    first = next(network.parameters(), None)
    old_device = first.device if first is not None else device
    network.to(device).eval()
    outputs = []
    try:
        with torch.inference_mode(), autocast(device, resolve_amp(amp, device)):
            for start in range(0, len(batch), batch_size):
                chunk = batch[start : start + batch_size].to(device, non_blocking=True)
                outputs.append(torch.sigmoid(network(chunk).float()).cpu().numpy())
    finally:
        network.to(old_device).train(was_training)
    if not outputs:
        return np.zeros((0, 0, *batch.shape[-2:]), np.float32)
    return np.concatenate(outputs).astype(np.float32, copy=False)
