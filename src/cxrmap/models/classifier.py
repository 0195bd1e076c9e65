"""Classification networks (Sec. III-A, III-C): an encoder, global average pooling and a 2-neuron head.

The paper trains the segmentation networks' encoders (CheXNet, DenseNet-121, Inception-v3, ResNet-50)
as COVID-19 / control classifiers and compares their Grad-CAM activation maps (Eq. 14-15) with the
infection maps. :attr:`Classifier.target_layer` is the encoder's last feature map, the layer Grad-CAM
weights.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from cxrmap.core.errors import ModelError
from cxrmap.models.input import InputAdapter
from cxrmap.models.segmentation import check_weights_arg, load_weights_file, prepare_encoder

COVID_CLASS = 1
"""Index of the COVID-19 output neuron of the classifiers (labels: 1 covid, 0 control)."""


class Classifier(nn.Module):
    """Input adapter -> encoder -> last feature map -> global average pooling -> linear logits.

    Attributes:
        config: the :func:`create_classifier` arguments that rebuild this network.
        target_layer: the module whose output is the encoder's last feature map (``N x C x h x w``), for
            Grad-CAM.

    Shape:
        ``N x 1 x H x W`` float in ``[0, 1]`` -> ``N x num_classes`` logits (softmax for probabilities).
    """

    def __init__(
        self, input_adapter: InputAdapter, encoder: nn.Module, num_classes: int, config: dict
    ) -> None:
        super().__init__()
        self.input_adapter = input_adapter
        self.encoder = encoder
        self.feature_map = nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(encoder.out_channels[-1], num_classes)
        self.config = dict(config)

    @property
    def target_layer(self) -> nn.Module:
        """The layer Grad-CAM hooks: its output is the encoder's last (stride-32) feature map."""
        return self.feature_map

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.feature_map(self.encoder(self.input_adapter(x))[-1])
        return self.head(torch.flatten(self.pool(features), 1))


def create_classifier(
    encoder: str,
    weights: str | os.PathLike | None = None,
    num_classes: int = 2,
    in_channels: int = 3,
) -> Classifier:
    """Build the paper's classification network for ``encoder`` (Sec. III-A).

    Args:
        encoder: as for :func:`cxrmap.models.create_model`.
        weights: None, ``"imagenet"``, ``"chexnet"``, or a state-dict file of the whole classifier
            (keys ``encoder.``, ``head.``) or of the encoder alone.
        num_classes: output neurons (2: control, COVID-19).
        in_channels: channels accepted besides grey.

    Returns:
        a :class:`Classifier`; ``create_classifier(**classifier.config)`` rebuilds it.

    Raises:
        ModelError: unknown encoder or weights, weights missing offline or not fitting.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ModelError(f"num_classes must be a positive integer, got {num_classes!r}")
    weights = check_weights_arg(weights)
    built, adapter, is_path = prepare_encoder(encoder, weights, in_channels)
    config: dict[str, Any] = {
        "encoder": encoder,
        "weights": weights,
        "num_classes": num_classes,
        "in_channels": in_channels,
    }
    classifier = Classifier(adapter, built, num_classes, config)
    if is_path:
        load_weights_file(classifier, weights)
    return classifier
