"""Checkpoint metadata and a tiny trained-looking checkpoint for tests (random weights, real metadata)."""

from __future__ import annotations

from pathlib import Path

from cxrmap.models.checkpoint import CheckpointMeta, Provenance, TrainingData

CROSS_VALIDATED = {
    "cross_validated": {
        "segmentation": {"f1": 0.832, "f1_ci": 0.0041, "sensitivity": 0.8, "sensitivity_ci": 0.005,
                         "specificity": 0.99, "specificity_ci": 0.0002, "tp": 10, "folds": 5},
        "segmentation_covid": {"f1": 0.85, "f1_ci": 0.01},
        "detection": {"sensitivity": 0.9496, "sensitivity_ci": 0.0079, "specificity": 0.9988,
                      "specificity_ci": 0.0002, "f1": float("nan"), "f1_ci": float("nan"), "folds": 5},
    },
    "folds": 5,
}  # fmt: skip
"""Metrics as ``cxrmap run`` stores them: Tables I and III averaged over folds, with Eq. 13 intervals."""


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


def write_tiny_checkpoint(path: Path, data_kind: str = "phantom", metrics: dict | None = None) -> Path:
    """A random-weight U-Net + ResNet-18 (64 px, infection + lung channels) saved as a cxrmap checkpoint.

    ``metrics`` replaces the default flat figures (e.g. :data:`CROSS_VALIDATED`).
    """
    import torch

    from cxrmap.models import create_model
    from cxrmap.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = create_model("unet", "resnet18", weights=None, classes=2)
    meta = make_meta(model.config, data_kind=data_kind, metrics=metrics)
    return save_checkpoint(path, {"meta": meta, "model": model.state_dict()})


class RunsCode:
    """An object whose unpickling would call ``print``: what a malicious checkpoint smuggles in."""

    def __reduce__(self):
        return (print, ("code ran on load",))
