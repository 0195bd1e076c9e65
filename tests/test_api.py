"""The package's top-level API: the user-facing names, imported only when first used."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import cxrmap

OWNERS = {
    "Predictor": "cxrmap.predict.predictor",
    "create_model": "cxrmap.models.segmentation",
    "HybridLoss": "cxrmap.train.losses",
    "binary_metrics": "cxrmap.evaluate.metrics",
    "confidence_interval": "cxrmap.evaluate.metrics",
    "infection_map": "cxrmap.predict.maps",
    "is_covid": "cxrmap.predict.detect",
}


def test_top_level_names_are_their_owners_objects():
    from cxrmap import HybridLoss, Predictor, create_model, is_covid  # noqa: F401  (the import works)

    for name, owner in OWNERS.items():
        assert getattr(cxrmap, name) is getattr(importlib.import_module(owner), name), name
    assert set(cxrmap.__all__) == {"__version__", *OWNERS} and set(cxrmap.__all__) <= set(dir(cxrmap))
    assert cxrmap.__version__ == "0.1.0"
    with pytest.raises(AttributeError, match="no attribute 'train_everything'"):
        cxrmap.train_everything  # noqa: B018


def test_importing_the_package_or_its_core_loads_no_torch():
    code = (
        "import sys, cxrmap, cxrmap.core.errors; "
        "print('torch' in sys.modules, 'cxrmap.models' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
