"""Classifiers, their Grad-CAM activation maps, and how they localise infection next to infection maps.

Paper Sec. III-C and Fig. 7: the encoders of the segmentation networks, trained as 2-class classifiers
(:mod:`~cxrmap.train.classifier`), give Grad-CAM maps (:mod:`~cxrmap.explain.gradcam`, Eq. 14-15) that
are compared with the infection maps, here by measurement (:mod:`~cxrmap.explain.localisation`) and by
the Fig. 7-style grid (:mod:`~cxrmap.explain.figure`).
"""

from cxrmap.explain.figure import comparison_grid, grid_size
from cxrmap.explain.gradcam import COVID_CLASS, GradCAMExplainer, explain
from cxrmap.explain.localisation import (
    format_localisation,
    localisation_scores,
    localisation_table,
    pointing_hit,
)
from cxrmap.train.classifier import ClassifierResult, covid_probability, load_classifier, train_classifier
from cxrmap.train.presets import CLASSIFIER_PRESETS, ClassifierConfig

__all__ = [
    "CLASSIFIER_PRESETS",
    "COVID_CLASS",
    "ClassifierConfig",
    "ClassifierResult",
    "GradCAMExplainer",
    "comparison_grid",
    "covid_probability",
    "explain",
    "format_localisation",
    "grid_size",
    "load_classifier",
    "localisation_scores",
    "localisation_table",
    "pointing_hit",
    "train_classifier",
]
