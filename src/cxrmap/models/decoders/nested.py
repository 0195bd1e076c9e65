"""Nested decoders: UNet++ (dense skip connections) and DLA (iterative deep aggregation).

Both are the decoders of the paper's Keras reference implementation (the ``segmentation_models``
fork of the UNet++ authors: ``Xnet`` for UNet++, ``Nestnet`` for the model the paper calls DLA), on
segmentation-models-pytorch's encoder contract. They fill the same triangular grid of nodes
``X(r, j)``: row ``r`` works at stride ``2**r`` (row 0 at full resolution), column 0 holds the encoder
features, and each node up-samples the node below-left, ``X(r + 1, j - 1)``, 2x (nearest), concatenates
it with nodes of its own row and applies two 3x3 convolution + BatchNorm + ReLU layers
(smp's ``UnetDecoderBlock``)::

    r=4 (1/16)  E4 ── X(4,1)
    r=3 (1/8)   E3 ── X(3,1) ── X(3,2)
    r=2 (1/4)   E2 ── X(2,1) ── X(2,2) ── X(2,3)
    r=1 (1/2)   E1 ── X(1,1) ── X(1,2) ── X(1,3) ── X(1,4)
    r=0 (1/1)                                          X(0,5) -> head
    (E5, stride 32, feeds X(4,1); E(r+1) feeds X(r,1))

- **DLA** (``dense=False``): ``X(r, j) = block(up(X(r+1, j-1)) ++ X(r, j-1))``. Each row is an iterative
  deep aggregation (IDA) chain that merges the adjacent, deeper scale again at every step, and the rows
  nest hierarchically -- the DLA-up segmentation decoder of Yu et al. (CVPR 2018), as redrawn in the
  UNet++ paper.
- **UNet++** (``dense=True``): ``X(r, j) = block(up(X(r+1, j-1)) ++ E_r ++ X(r,1) ++ ... ++ X(r, j-1))``,
  the dense skip pathways of Zhou et al.

Row widths: the reference code picks ``decoder_filters[n - r - 2]`` from ``(256, 128, 64, 32, 16)``, so
rows 0-3 get 32, 64, 128, 256 channels and the stride-16 row wraps around (index -1) to 16 channels.
We keep those widths (:data:`PAPER_ROW_CHANNELS`): with them the parameter counts are Table VIII's
(UNet++ DenseNet-121: 14.40M, DLA DenseNet-121: 13.15M).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoderBlock
from torch import nn

from cxrmap.core.errors import ModelError

PAPER_ROW_CHANNELS = (32, 64, 128, 256, 16)
"""Channels of the decoder rows at strides 1, 2, 4, 8, 16 in the paper's UNet++ and DLA."""


def _nodes(depth: int) -> list[tuple[int, int]]:
    """Grid positions ``(row, column)`` computed by the decoder, in the order they are computed."""
    return [
        (row, column + 1)
        for column in range(depth)
        for row in range(depth - column)
        if row > 0 or column == depth - 1
    ]


class NestedDecoder(nn.Module):
    """UNet++ (``dense=True``) or DLA (``dense=False``) decoder over an encoder's feature maps.

    Args:
        encoder_channels: the encoder's ``out_channels`` (input, then strides 2 ... 2**depth).
        dense: UNet++'s dense skip pathways (True) or DLA's chained aggregation (False).
        row_channels: channels of rows 0 ... depth-1 (stride 1 ... 2**(depth-1)).

    Shape:
        list of depth + 1 feature maps -> ``N x row_channels[0] x H x W``.
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        dense: bool,
        row_channels: Sequence[int] = PAPER_ROW_CHANNELS,
    ) -> None:
        super().__init__()
        depth = len(encoder_channels) - 1
        if len(row_channels) != depth:
            raise ModelError(f"a depth-{depth} encoder needs {depth} row widths, got {tuple(row_channels)}")
        self.depth = depth
        self.dense = dense
        self.out_channels = row_channels[0]
        self.nodes = nn.ModuleDict()
        for row, column in _nodes(depth):
            below = encoder_channels[row + 1] if column == 1 else row_channels[row + 1]
            if row == 0:
                skip = 0
            elif column == 1:
                skip = encoder_channels[row]
            elif dense:
                skip = encoder_channels[row] + (column - 1) * row_channels[row]
            else:
                skip = row_channels[row]
            self.nodes[f"x_{row}_{column}"] = UnetDecoderBlock(below, skip, row_channels[row])

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        grid = {(row, 0): features[row] for row in range(1, self.depth + 1)}
        for row, column in _nodes(self.depth):
            below = grid[(row + 1, column - 1)]
            if row == 0:
                skip = None
            elif column == 1 or not self.dense:
                skip = grid[(row, column - 1)]
            else:
                skip = torch.cat([grid[(row, k)] for k in range(column)], dim=1)
            height, width = features[row].shape[-2:]
            grid[(row, column)] = self.nodes[f"x_{row}_{column}"](below, height, width, skip_connection=skip)
        return grid[(0, self.depth)]
