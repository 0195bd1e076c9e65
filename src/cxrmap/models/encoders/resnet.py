"""ResNet-50 encoder: the pre-activation ResNet-50 (v2) of the paper's Keras ``segmentation_models``.

The Keras ``segmentation_models`` ResNet-50 (from ``classification_models``, ported from MXNet) is the
pre-activation variant: BatchNorm + ReLU *before* each convolution, no BatchNorm on the shortcut.
That is why Table VIII lists 47.56K non-trainable parameters (BatchNorm moving statistics) for U-Net
ResNet-50 where torchvision's post-activation ResNet-50 would give 55.10K. We build it from timm's
``resnetv2_50`` (ImageNet weights ``resnetv2_50.a1h_in1k``); the post-activation torchvision network
remains available as the encoder ``"tu-resnet50"``.

Skip features follow Keras: the pre-activation (BatchNorm + ReLU) at the entry of stages 2, 3, 4
(``stage{2,3,4}_unit1_relu1``) and the final BatchNorm + ReLU (``relu1``).
"""

from __future__ import annotations

import timm
import torch
from torch import nn


def _preact_block(block: nn.Module, x: torch.Tensor, x_preact: torch.Tensor) -> torch.Tensor:
    """timm's ``PreActBottleneck.forward`` after its first BatchNorm, given that BatchNorm's output."""
    shortcut = x if block.downsample is None else block.downsample(x_preact)
    y = block.conv1(x_preact)
    y = block.conv2(block.norm2(y))
    y = block.conv3(block.norm3(y))
    return block.drop_path(y) + shortcut


class PreActResNet50Encoder(nn.Module):
    """Pre-activation ResNet-50 returning the input and five feature maps.

    Features (channels at strides 2, 4, 8, 16, 32): stem convolution (64), pre-activations of stages
    2, 3, 4 (256, 512, 1024), final BatchNorm + ReLU (2048). Parameter names are timm's
    (``stem.conv``, ``stages.N.blocks.M...``, ``norm``).

    Args:
        in_channels: channels of the first convolution.
    """

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()

        net = timm.create_model("resnetv2_50", pretrained=False, in_chans=in_channels, num_classes=0)
        self.stem = net.stem
        self.stages = net.stages
        self.norm = net.norm
        self.out_channels = (in_channels, 64, 256, 512, 1024, 2048)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.stem.conv(x)
        out = [x, stem]
        y = self.stages[0](self.stem.pool(stem))
        for stage in self.stages[1:]:
            first = stage.blocks[0]
            preact = first.norm1(y)
            out.append(preact)
            y = stage.blocks[1:](_preact_block(first, y, preact))
        out.append(self.norm(y))
        return out
