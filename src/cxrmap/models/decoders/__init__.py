"""Decoders (Sec. II-C.1): U-Net (segmentation-models-pytorch's), UNet++ and DLA (ours, nested grid).

Each decoder takes the encoder's list of feature maps and returns a full-resolution map whose channel
count is ``decoder.out_channels``; a 3x3 convolution head (:func:`build_head`) turns it into logits.
"""

from __future__ import annotations

from collections.abc import Sequence

from segmentation_models_pytorch.base.initialization import initialize_decoder, initialize_head
from torch import nn

UNET_CHANNELS = (256, 128, 64, 32, 16)
"""U-Net decoder widths from stride 16 to stride 1, as in Keras ``segmentation_models``."""


def build_decoder(arch: str, encoder_channels: Sequence[int]) -> nn.Module:
    """Decoder of architecture ``arch`` (``unet``, ``unetplusplus``, ``dla``), randomly initialised.

    Returns:
        an ``nn.Module`` with ``out_channels`` taking the encoder's feature list.
    """

    if arch == "unet":
        from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoder

        decoder = UnetDecoder(
            encoder_channels=encoder_channels,
            decoder_channels=UNET_CHANNELS,
            n_blocks=len(UNET_CHANNELS),
            use_norm="batchnorm",
        )
        decoder.out_channels = UNET_CHANNELS[-1]
    else:
        from cxrmap.models.decoders.nested import NestedDecoder

        decoder = NestedDecoder(encoder_channels, dense=arch == "unetplusplus")
    initialize_decoder(decoder)
    return decoder


def build_head(in_channels: int, classes: int) -> nn.Module:
    """The output layer: a 3x3 convolution to ``classes`` logits (Keras sm's ``final_conv``)."""

    head = nn.Conv2d(in_channels, classes, kernel_size=3, padding=1)
    initialize_head(head)
    return head
