"""The benchmarks' model: U-Net + DenseNet-121, random weights (speed does not depend on what it learnt)."""

from __future__ import annotations

from pathlib import Path


def random_network(arch: str = "unet", encoder: str = "densenet121", size: int = 96):
    """``(model, meta)``: ``arch`` + ``encoder`` with random weights (seed 0), infection + lung channels."""
    import torch

    from cxrmap.models import create_model
    from cxrmap.models.checkpoint import CheckpointMeta, Provenance, TrainingData

    torch.manual_seed(0)
    model = create_model(arch, encoder, weights=None, classes=2)
    meta = CheckpointMeta(
        task="segmentation",
        model=model.config,
        channels=("infection", "lung"),
        input_size=size,
        threshold=0.5,
        data=TrainingData("phantom", "nothing: random weights (benchmark)", ""),
        provenance=Provenance("quick", {}, "bench", ""),
    )
    return model, meta


def write_checkpoint(path: Path, size: int) -> Path:
    """U-Net + DenseNet-121 of :func:`random_network` at ``size`` px, saved as a cxrmap checkpoint."""
    from cxrmap.models.checkpoint import save_checkpoint

    model, meta = random_network(size=size)
    return save_checkpoint(path, {"meta": meta, "model": model.state_dict()})
