"""Where and how the tensors are computed: the device, and the mixed-precision choice.

Every layer that runs a network (training, inference, Grad-CAM) asks here, so a machine's choice is made
once: bf16 autocast only where the hardware has bf16 (a GPU, or a CPU with native bf16), never by guess.
"""

from __future__ import annotations

import contextlib

import torch

from cxrmap.core.errors import ModelError


def resolve_device(device: str | None = None) -> torch.device:
    """``torch.device(device)``, or the first GPU when there is one and ``device`` is ``None``/``auto``."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_amp(mode: str | bool, device) -> torch.dtype | None:
    """The autocast dtype of a mixed-precision ``mode`` on ``device``, or ``None`` for full precision.

    Args:
        mode: ``auto`` (bf16 on CPUs with native bf16 and on GPUs that support it, fp16 on other GPUs, else
            off), ``bf16``, ``fp16`` (GPUs only), ``off``; True means ``auto``, False ``off``.
        device: the device computing.

    Raises:
        ModelError: ``fp16`` on a CPU, or an unknown mode.
    """
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


def autocast(device, dtype: torch.dtype | None):
    """``torch.autocast`` on ``device``'s type with ``dtype``; a null context when ``dtype`` is ``None``."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)
