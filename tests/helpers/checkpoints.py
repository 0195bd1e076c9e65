"""Checkpoint metadata and a tiny trained-looking checkpoint for tests (random weights, real metadata)."""

from __future__ import annotations

from pathlib import Path

from cxrmap.models.checkpoint import CheckpointMeta, Provenance, TrainingData

METRICS = {
    "sensitivity": 0.91,
    "specificity": 0.97,
    "f1": {"mean": 0.8, "ci": 0.02},
    "folds": 5,
    "auc": float("nan"),
}


def make_meta(
    model: dict | None = None,
    channels: tuple[str, ...] = ("infection", "lung"),
    input_size: int = 64,
    data_kind: str = "phantom",
    metrics: dict | None = None,
) -> CheckpointMeta:
    """The metadata of a segmentation network (U-Net + ResNet-18 unless ``model`` says otherwise)."""
    model = model or {"arch": "unet", "encoder": "resnet18", "weights": None, "classes": len(channels)}
    return CheckpointMeta(
        task="segmentation",
        model=model,
        channels=tuple(channels),
        input_size=input_size,
        threshold=0.5,
        data=TrainingData(
            kind=data_kind,
            description="phantom: 40 images, seed 0" if data_kind == "phantom" else "COVID-QU-Ex test set",
            manifest_hash="0" * 16,
        ),
        provenance=Provenance(
            preset="test", config={}, cxrmap_version="0.1.0", created="2024-01-01T00:00:00+00:00"
        ),
        metrics=dict(METRICS if metrics is None else metrics),
    )


def write_tiny_checkpoint(path: Path, data_kind: str = "phantom") -> Path:
    """A random-weight U-Net + ResNet-18 (64 px, infection + lung channels) saved as a cxrmap checkpoint."""
    import torch

    from cxrmap.models import create_model
    from cxrmap.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = create_model("unet", "resnet18", weights=None, classes=2)
    meta = make_meta(model.config, data_kind=data_kind)
    return save_checkpoint(path, {"meta": meta, "model": model.state_dict()})
