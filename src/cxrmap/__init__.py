"""cxrmap: COVID-19 infection maps and detection from chest X-rays.

Implements and extends Degerli et al., "COVID-19 infection map generation and detection from chest X-ray
images", Health Information Science and Systems 9, 15 (2021) (:data:`cxrmap.core.citation.PAPER`):
encoder-decoder segmentation networks trained with a focal + dice loss,
infection maps painted onto the radiograph, detection from those maps, cross-validated evaluation with
confidence intervals, activation-map comparison and a human-machine collaborative annotation workflow.

The user-facing API is importable from here::

    from cxrmap import Predictor, create_model, HybridLoss, infection_map, is_covid
    from cxrmap import binary_metrics, confidence_interval
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Imported on first use (PEP 562), not here: every module of the package imports this one first, so
# eager imports would load torch and the networks for `cxrmap --help` and `import cxrmap.core`, and
# would import the layers above from the ones below them.
_API = {
    "Predictor": "cxrmap.predict.predictor",
    "create_model": "cxrmap.models",
    "HybridLoss": "cxrmap.train.losses",
    "binary_metrics": "cxrmap.evaluate.metrics",
    "confidence_interval": "cxrmap.evaluate.metrics",
    "infection_map": "cxrmap.predict.maps",
    "is_covid": "cxrmap.predict.detect",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'cxrmap' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
