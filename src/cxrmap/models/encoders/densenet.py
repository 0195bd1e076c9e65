"""DenseNet-121 encoder with the paper's skip connections (also the CheXNet encoder).

The paper's Keras models (``segmentation_models``) take DenseNet-121's skip features after the 1x1
convolution of each transition layer (``pool2_conv``, ``pool3_conv``, ``pool4_conv``: 128, 256 and 512
channels), not at the end of the dense blocks (256, 512, 1024 channels, as segmentation-models-pytorch's
``densenet121`` does). That choice is what gives Table VIII's 12.06M parameters for U-Net DenseNet-121
(smp's taps give 13.61M), so this encoder follows Keras.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import densenet121


class DenseNetEncoder(nn.Module):
    """DenseNet-121 returning the input and five feature maps (strides 1, 2, 4, 8, 16, 32).

    Features: ``conv0 -> norm0 -> relu0`` (64 ch, stride 2), transition-1/2/3 convolutions before their
    pooling (128, 256, 512 ch at strides 4, 8, 16), and ``relu(norm5)`` (1024 ch, stride 32). The
    parameter names are torchvision's (``features.denseblock1...``), so torchvision and torchxrayvision
    weights load unchanged.

    Args:
        in_channels: channels of the first convolution (3 for ImageNet weights, 1 for CheXNet).

    Shape:
        input ``N x in_channels x H x W`` (H, W multiples of 32) -> list of 6 tensors, the last
        ``N x 1024 x H/32 x W/32``.
    """

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()

        self.features = densenet121(weights=None).features
        if in_channels != 3:
            self.features.conv0 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.out_channels = (in_channels, 64, 128, 256, 512, 1024)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f = self.features
        stride2 = f.relu0(f.norm0(f.conv0(x)))
        out = [x, stride2]
        y = f.pool0(stride2)
        for block, transition in (
            (f.denseblock1, f.transition1),
            (f.denseblock2, f.transition2),
            (f.denseblock3, f.transition3),
        ):
            y = transition.conv(transition.relu(transition.norm(block(y))))
            out.append(y)
            y = transition.pool(y)
        out.append(F.relu(f.norm5(f.denseblock4(y))))
        return out
