"""The one inference routine: images in, per-pixel probabilities out (paper Sec. II-D, Eq. 1).

Evaluation, prediction and the web server all call :func:`predict_probabilities`, so a probability map is
computed the same way everywhere: the network's logits through the sigmoid, without gradients, in eval mode.
"""

from __future__ import annotations

import contextlib

import numpy as np

from cxrmap.errors import DataError, ModelError


def resolve_amp(mode: str | bool, device):
    """The autocast dtype of a mixed-precision ``mode`` on ``device``, or ``None`` for full precision.

    Args:
        mode: ``auto`` (bf16 on CPUs with native bf16 and on GPUs that support it, fp16 on other GPUs, else
            off), ``bf16``, ``fp16`` (GPUs only), ``off``; True means ``auto``, False ``off``.
        device: the device computing.

    Raises:
        ModelError: ``fp16`` on a CPU, or an unknown mode.
    """
    import torch

    device = torch.device(device)
    mode = {True: "auto", False: "off"}.get(mode, mode)
    cuda = device.type == "cuda"
    if mode == "off":
        return None
    if mode == "fp16":
        if not cuda:
            raise ModelError("fp16 mixed precision needs a GPU; on a CPU use amp 'bf16' or 'off'")
        return torch.float16
    if mode == "bf16":
        return torch.bfloat16
    if mode == "auto":
        if cuda:
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
    raise ModelError(f"unknown mixed-precision mode {mode!r}; use auto, bf16, fp16 or off")


def autocast(device, dtype):
    """``torch.autocast`` on ``device``'s type with ``dtype``; a null context when ``dtype`` is ``None``."""
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def _as_batch(images):
    """``images`` as a float32 tensor N x 1 x S x S in [0, 1] (uint8 N x S x S or a float tensor)."""
    import torch

    if isinstance(images, torch.Tensor):
        tensor = images
        if tensor.dtype == torch.uint8:
            tensor = tensor.float() / 255.0
    else:
        array = np.asarray(images)
        if array.dtype != np.uint8:
            raise DataError(
                f"images given as an array must be uint8 grayscale (N, S, S); got dtype {array.dtype}. "
                "Pass float images as a torch tensor N x 1 x S x S in [0, 1]."
            )
        tensor = torch.from_numpy(np.ascontiguousarray(array)).float() / 255.0
    if tensor.ndim == 3:
        tensor = tensor[:, None]
    if tensor.ndim != 4:
        raise DataError(
            f"expected images N x S x S (uint8) or N x 1 x S x S (float); got shape {tuple(tensor.shape)}"
        )
    return tensor.float()


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
    import torch

    if batch_size < 1:
        raise DataError(f"batch_size must be at least 1, got {batch_size}")
    batch = _as_batch(images)
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
