"""The benchmarks' model: U-Net + DenseNet-121, random weights (speed does not depend on what it learnt)."""

from __future__ import annotations

from pathlib import Path


def write_checkpoint(path: Path, size: int) -> Path:
    """U-Net + DenseNet-121, random weights (seed 0), infection + lung channels, ``size`` px input."""
    import torch

    from cxrmap.models import create_model
    from cxrmap.models.checkpoint import CheckpointMeta, Provenance, TrainingData, save_checkpoint

    torch.manual_seed(0)
    model = create_model("unet", "densenet121", weights=None, classes=2)
    meta = CheckpointMeta(
        task="segmentation",
        model=model.config,
        channels=("infection", "lung"),
        input_size=size,
        threshold=0.5,
        data=TrainingData("phantom", "nothing: random weights (benchmark)", ""),
        provenance=Provenance("quick", {}, "bench", ""),
    )
    return save_checkpoint(path, {"meta": meta, "model": model.state_dict()})
