"""Training: settings and presets, the loop (CPU, GPU, torchrun), checkpoints, logs.

Example:
    >>> from cxrmap.train import get_preset, train  # doctest: +SKIP
    >>> result = train(get_preset("quick"), cache, train_idx, out_dir="runs/quick")  # doctest: +SKIP
"""

from cxrmap.models.checkpoint import load_checkpoint, load_model, save_checkpoint
from cxrmap.train.loop import TrainResult, train
from cxrmap.train.presets import PRESETS, TrainConfig, get_preset

__all__ = [
    "PRESETS",
    "TrainConfig",
    "TrainResult",
    "get_preset",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "train",
]
