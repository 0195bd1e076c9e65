"""Networks of the paper: segmentation models (U-Net, UNet++, DLA), classifiers, weights, sizes.

Public names: :func:`create_model`, :func:`create_classifier`, :data:`ARCHS`, :data:`ENCODERS`,
:func:`title` (the paper's names), :func:`input_multiple`, :func:`count_parameters`.
"""

from cxrmap.models.classifier import Classifier, create_classifier
from cxrmap.models.encoders import ENCODER_TITLES, ENCODERS
from cxrmap.models.input import input_multiple, min_input_size
from cxrmap.models.params import count_parameters
from cxrmap.models.segmentation import ARCH_TITLES, ARCHS, SegmentationModel, create_model, title
from cxrmap.models.weights import WEIGHTS, WeightsSpec

__all__ = [
    "ARCHS",
    "ARCH_TITLES",
    "ENCODERS",
    "ENCODER_TITLES",
    "WEIGHTS",
    "Classifier",
    "SegmentationModel",
    "WeightsSpec",
    "count_parameters",
    "create_classifier",
    "create_model",
    "input_multiple",
    "min_input_size",
    "title",
]
