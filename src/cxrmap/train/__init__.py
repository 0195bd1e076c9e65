"""Training: settings and presets, the loop (CPU, GPU, torchrun), checkpoints, logs.

Example:
    >>> from cxrmap.train import get_preset, train  # doctest: +SKIP
    >>> result = train(get_preset("quick"), cache, train_idx, out_dir="runs/quick")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib

from cxrmap.train.presets import CLASSIFIER_PRESETS, PRESETS, ClassifierConfig, TrainConfig, get_preset

# The loop and the checkpoints load torch: imported on first use (PEP 562), so that the command line
# can build its help texts from the presets without them.
_LAZY = {
    "TrainResult": "cxrmap.train.loop",
    "train": "cxrmap.train.loop",
    "load_checkpoint": "cxrmap.models.checkpoint",
    "load_model": "cxrmap.models.checkpoint",
    "save_checkpoint": "cxrmap.models.checkpoint",
}

__all__ = [
    "CLASSIFIER_PRESETS",
    "PRESETS",
    "ClassifierConfig",
    "TrainConfig",
    "TrainResult",
    "get_preset",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "train",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'cxrmap.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
