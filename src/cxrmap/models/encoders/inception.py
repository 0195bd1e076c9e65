"""Inception-v3 encoder with 'same' padding, as in the paper's Keras ``segmentation_models``.

The original Inception-v3 uses unpadded ('valid') 3x3 convolutions and poolings, so its feature maps are
not exact halvings of the input (a 256 x 256 image gives 6 x 6 at stride 32, 14 x 14 at stride 16) and
U-Net skip connections cannot be concatenated; it also needs at least 75 x 75 pixels. Like the paper's
Keras backbone we pad every 3x3 convolution and 3x3 pooling by one pixel, which leaves every weight as
it is (torchvision's ImageNet weights load unchanged) and makes any multiple of 32 a valid input size,
from 32 x 32 up.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import inception as tv_inception


class _InceptionB(tv_inception.InceptionB):
    """Grid reduction 35 -> 17 with its max pooling padded ('same')."""

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return [self.branch3x3(x), double, F.max_pool2d(x, kernel_size=3, stride=2, padding=1)]


class _InceptionD(tv_inception.InceptionD):
    """Grid reduction 17 -> 8 with its max pooling padded ('same')."""

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = self.branch7x7x3_1(x)
        for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            branch7x7x3 = conv(branch7x7x3)
        return [branch3x3, branch7x7x3, F.max_pool2d(x, kernel_size=3, stride=2, padding=1)]


_STAGES = (
    ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"),
    ("maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3"),
    ("maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d"),
    ("Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"),
    ("Mixed_7a", "Mixed_7b", "Mixed_7c"),
)
"""Layers between the feature taps (Keras: after Conv2d_2b, Conv2d_4a, mixed2, mixed7, mixed10)."""


class InceptionV3Encoder(nn.Module):
    """Inception-v3 ('same' padding) returning the input and five feature maps.

    Features (channels at strides 2, 4, 8, 16, 32): Conv2d_2b_3x3 (64), Conv2d_4a_3x3 (192),
    Mixed_5d (288), Mixed_6e (768), Mixed_7c (2048) -- the taps of the paper's Keras model. Parameter
    names are torchvision's (without ``fc`` and ``AuxLogits``).

    Args:
        in_channels: channels of the first convolution.

    Shape:
        input ``N x in_channels x H x W`` (H, W multiples of 32, at least 32) -> list of 6 tensors.
    """

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        blocks = [
            tv_inception.BasicConv2d,
            tv_inception.InceptionA,
            _InceptionB,
            tv_inception.InceptionC,
            _InceptionD,
            tv_inception.InceptionE,
            tv_inception.InceptionAux,
        ]
        net = tv_inception.Inception3(aux_logits=False, inception_blocks=blocks, init_weights=False)
        if in_channels != 3:
            net.Conv2d_1a_3x3 = tv_inception.BasicConv2d(in_channels, 32, kernel_size=3, stride=2)
        for stage in _STAGES:
            for name in stage:
                self.add_module(name, getattr(net, name))
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3) and module.padding == (0, 0):
                module.padding = (1, 1)
            elif isinstance(module, nn.MaxPool2d):
                module.padding = 1
        self.out_channels = (in_channels, 64, 192, 288, 768, 2048)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = [x]
        for stage in _STAGES:
            for name in stage:
                x = getattr(self, name)(x)
            out.append(x)
        return out
