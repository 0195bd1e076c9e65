"""A tiny trained-looking checkpoint for the servers' tests (random weights, real metadata)."""

from __future__ import annotations

from pathlib import Path


def write_tiny_checkpoint(path: Path, data_kind: str = "phantom") -> Path:
    """A random-weight U-Net + ResNet-18 (64 px, infection + lung channels) saved as a cxrmap checkpoint."""
    import torch

    from cxrmap.models import create_model
    from cxrmap.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = create_model("unet", "resnet18", weights=None, classes=2)
    meta = {
        "model": model.config,
        "channels": ["infection", "lung"],
        "input_size": 64,
        "threshold": 0.5,
        "trained_on": "phantom: 40 images, seed 0" if data_kind == "phantom" else "COVID-QU-Ex test set",
        "data_kind": data_kind,
        "manifest_hash": "0" * 16,
        "preset": "test",
        "config": {},
        "metrics": {
            "sensitivity": 0.91,
            "specificity": 0.97,
            "f1": {"mean": 0.8, "ci": 0.02},
            "folds": 5,
            "auc": float("nan"),
        },
        "cxrmap_version": "0.1.0",
        "created": "2024-01-01T00:00:00+00:00",
    }
    return save_checkpoint(path, {"meta": meta, "model": model.state_dict()})


class RunsCode:
    """An object whose unpickling would call ``print``: what a malicious checkpoint smuggles in."""

    def __reduce__(self):
        return (print, ("code ran on load",))
