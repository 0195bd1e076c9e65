"""Segmentation networks (Sec. II-C): U-Net, UNet++ and DLA on the paper's encoders or any smp encoder.

Example:
    >>> import torch
    >>> from cxrmap.models import create_model
    >>> model = create_model("unet", "resnet18")   # doctest: +SKIP
    >>> model(torch.rand(2, 1, 64, 64)).shape       # doctest: +SKIP
    torch.Size([2, 1, 64, 64])
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from cxrmap.core.errors import ModelError
from cxrmap.models.decoders import build_decoder, build_head
from cxrmap.models.encoders import (
    ENCODER_TITLES,
    build_encoder,
    check_encoder,
    convention,
    encoder_channels,
    weights_names,
)
from cxrmap.models.input import InputAdapter, input_multiple, min_input_size
from cxrmap.models.weights import WEIGHTS, load_strict, read_state_dict

ARCHS: tuple[str, ...] = ("unet", "unetplusplus", "dla")
"""Segmentation architectures, in Table VIII's order."""

ARCH_TITLES = {"unet": "U-Net", "unetplusplus": "UNet++", "dla": "DLA"}
"""The paper's names of the architectures, as in its tables."""


def title(name: str) -> str:
    """The paper's name of an architecture or encoder (``unet`` -> ``U-Net``, ``resnet50`` -> ``ResNet-50``).

    Names the paper does not use (other smp encoders) come back as given.
    """
    return ARCH_TITLES.get(name) or ENCODER_TITLES.get(name, name)


class SegmentationModel(nn.Module):
    """Input adapter -> encoder -> decoder -> 3x3 convolution head, giving logits.

    Attributes:
        config: the :func:`create_model` arguments that rebuild this network.
        freeze_encoder: encoder parameters do not train and its BatchNorm layers stay in eval mode,
            even after ``model.train()``.

    Shape:
        ``N x 1 x H x W`` or ``N x in_channels x H x W`` float in ``[0, 1]`` -> ``N x classes x H x W``
        logits (apply ``torch.sigmoid`` for probabilities).
    """

    def __init__(
        self,
        input_adapter: InputAdapter,
        encoder: nn.Module,
        decoder: nn.Module,
        head: nn.Module,
        freeze_encoder: bool,
        config: dict[str, Any],
    ) -> None:
        super().__init__()
        self.input_adapter = input_adapter
        self.encoder = encoder
        self.decoder = decoder
        self.head = head
        self.freeze_encoder = freeze_encoder
        self.config = dict(config)
        if freeze_encoder:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(self.encoder(self.input_adapter(x))))

    def train(self, mode: bool = True) -> SegmentationModel:
        """Set training mode; a frozen encoder (BatchNorm statistics, dropout) stays in eval mode."""
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self


def check_weights_arg(weights: Any) -> str | None:
    """``weights`` as stored in a config: None, a weights name, or a file path as a string."""
    if weights is None or isinstance(weights, str):
        return weights
    if isinstance(weights, os.PathLike):
        return os.fspath(weights)
    raise ModelError(f"weights must be None, a weights name or a file path, got {type(weights).__name__}")


def prepare_encoder(
    encoder: str, weights: str | None, in_channels: int
) -> tuple[nn.Module, InputAdapter, bool]:
    """Encoder and its input adapter; weights names are loaded, a file path is left to the caller.

    Returns:
        ``(encoder, adapter, is_path)``: ``is_path`` is True when ``weights`` is a file to load into the
        assembled network (whole network or encoder alone) by :func:`load_weights_file`.

    Raises:
        ModelError: unknown encoder, bad ``in_channels``, unknown weights name or a missing file.
    """
    check_encoder(encoder)
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ModelError(f"in_channels must be a positive integer, got {in_channels!r}")
    known = {name for specs in WEIGHTS.values() for name in specs}
    is_path = weights is not None and weights not in known and weights not in weights_names(encoder)
    if is_path and not os.path.isfile(weights):
        raise ModelError(
            f"weights {weights!r} is neither a weights name of encoder {encoder!r} "
            f"({', '.join(weights_names(encoder))}) nor an existing file; pass None, a name or a file path"
        )
    built = build_encoder(encoder, in_channels, None if is_path else weights)
    channels = encoder_channels(encoder, in_channels)
    mean, std = convention(encoder).normalisation(channels)
    adapter = InputAdapter(in_channels, channels, mean, std, input_multiple(encoder), min_input_size(encoder))
    return built, adapter, is_path


def load_weights_file(model: nn.Module, path: str) -> None:
    """Load a state dict file into ``model`` (keys ``encoder.*`` ...) or into ``model.encoder`` alone."""
    state = read_state_dict(path)
    if any(key.startswith("encoder.") for key in state):
        load_strict(model, state, f"{path} into the whole network")
    else:
        load_strict(model.encoder, state, f"{path} into the encoder")


def create_model(
    arch: str,
    encoder: str,
    weights: str | os.PathLike | None = None,
    freeze_encoder: bool = False,
    in_channels: int = 3,
    classes: int = 1,
) -> SegmentationModel:
    """Build a segmentation network of the paper (Sec. II-C), optionally pretrained and frozen.

    Args:
        arch: ``unet``, ``unetplusplus`` or ``dla`` (:data:`ARCHS`).
        encoder: ``densenet121``, ``chexnet``, ``inception_v3``, ``resnet50`` (:data:`ENCODERS`), any
            segmentation-models-pytorch encoder (``resnet18``, ``efficientnet-b0``...) or ``tu-<timm>``.
        weights: None (random initialisation), ``"imagenet"``, ``"chexnet"`` (CheXNet encoder only),
            or a state-dict file: the whole network (keys ``encoder.``, ``decoder.``, ``head.``), or
            the encoder alone; a checkpoint dict holding it under ``state_dict`` or ``model`` works too.
        freeze_encoder: encoder weights do not train; its BatchNorm layers stay in eval mode.
        in_channels: channels the model accepts besides grey (1 channel is always accepted).
        classes: output channels (1: infection; 2: infection and lungs).

    Returns:
        a :class:`SegmentationModel` whose ``config`` rebuilds it with ``create_model(**config)``.

    Raises:
        ModelError: unknown architecture/encoder/weights (listing the valid names), weights that are
            missing offline (naming the file and where to put it) or do not fit.

    Example:
        >>> model = create_model("unet", "densenet121", weights=None)  # doctest: +SKIP
        >>> create_model(**model.config)  # same architecture  # doctest: +SKIP
    """
    if arch not in ARCHS:
        raise ModelError(f"unknown architecture {arch!r}; expected one of: {', '.join(ARCHS)}")
    if not isinstance(classes, int) or classes < 1:
        raise ModelError(f"classes must be a positive integer, got {classes!r}")
    weights = check_weights_arg(weights)
    built, adapter, is_path = prepare_encoder(encoder, weights, in_channels)
    decoder = build_decoder(arch, built.out_channels)
    config = {
        "arch": arch,
        "encoder": encoder,
        "weights": weights,
        "freeze_encoder": bool(freeze_encoder),
        "in_channels": in_channels,
        "classes": classes,
    }
    model = SegmentationModel(
        adapter, built, decoder, build_head(decoder.out_channels, classes), bool(freeze_encoder), config
    )
    if is_path:
        load_weights_file(model, weights)
    return model
