"""Parameter counts as Keras reports them (Table VIII), and the comparison with the paper."""

from __future__ import annotations

import torch
from torch import nn

from cxrmap.core.progress import track
from cxrmap.models.encoders import ENCODERS
from cxrmap.models.segmentation import ARCHS, create_model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, non_trainable)`` parameters, counted as Keras counts them (Table VIII).

    Trainable: parameters with ``requires_grad``. Non-trainable: frozen parameters plus the BatchNorm
    moving mean and variance (Keras lists them as non-trainable weights; PyTorch keeps them as buffers).
    Works on models built on the ``meta`` device (no memory, no forward pass).
    """
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    moving = sum(
        m.running_mean.numel() + m.running_var.numel()
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
    )
    return trainable, frozen + moving


TABLE_VIII: dict[tuple[str, str, bool], tuple[float, float, float]] = {
    ("unet", "chexnet", True): (5.19e6, 6.96e6, 2.56),
    ("unet", "densenet121", True): (5.19e6, 6.96e6, 2.58),
    ("unet", "inception_v3", True): (8.15e6, 21.79e6, 2.53),
    ("unet", "resnet50", True): (9.06e6, 23.50e6, 2.54),
    ("unet", "chexnet", False): (12.06e6, 85.63e3, 2.62),
    ("unet", "densenet121", False): (12.06e6, 85.63e3, 2.58),
    ("unet", "inception_v3", False): (29.9e6, 36.42e3, 2.61),
    ("unet", "resnet50", False): (32.51e6, 47.56e3, 2.64),
    ("unetplusplus", "chexnet", True): (7.53e6, 6.96e6, 5.17),
    ("unetplusplus", "densenet121", True): (7.53e6, 6.96e6, 5.10),
    ("unetplusplus", "inception_v3", True): (8.68e6, 21.79e6, 5.32),
    ("unetplusplus", "resnet50", True): (10.88e6, 23.51e6, 5.58),
    ("unetplusplus", "chexnet", False): (14.40e6, 88.45e3, 5.24),
    ("unetplusplus", "densenet121", False): (14.40e6, 88.45e3, 5.25),
    ("unetplusplus", "inception_v3", False): (30.43e6, 39.23e3, 5.32),
    ("unetplusplus", "resnet50", False): (34.34e6, 50.37e3, 5.46),
    ("dla", "chexnet", True): (6.27e6, 6.96e6, 4.65),
    ("dla", "densenet121", True): (6.27e6, 6.96e6, 4.63),
    ("dla", "inception_v3", True): (7.20e6, 21.79e6, 4.70),
    ("dla", "resnet50", True): (8.74e6, 23.51e6, 4.90),
    ("dla", "chexnet", False): (13.15e6, 88.45e3, 4.63),
    ("dla", "densenet121", False): (13.15e6, 88.45e3, 4.65),
    ("dla", "inception_v3", False): (28.96e6, 39.23e3, 4.72),
    ("dla", "resnet50", False): (32.2e6, 50.37e3, 4.90),
}
"""Paper Table VIII: ``(arch, encoder, frozen) -> (trainable, non-trainable, ms/image on a 2080 Ti)``."""

FROZEN_NOTE = "encoder BatchNorm gamma/beta frozen here (1)"
FOOTNOTES = {
    "(1)": "the paper's Keras segmentation_models freezes every encoder layer except BatchNorm, so Table "
    "VIII counts the encoder's BatchNorm gamma/beta as trainable; here the whole encoder is frozen (its "
    "BatchNorm stays in eval mode), which moves those parameters to the non-trainable column",
}
"""Why frozen rows move a little from trainable to non-trainable compared with the paper."""

NOTE_THRESHOLD = 0.005
"""Rows not frozen that differ from the paper by more than this fraction (either count) carry a note."""


def table_viii(
    archs: list[str] | None = None,
    encoders: list[str] | None = None,
    frozen: tuple[bool, ...] = (True, False),
    progress: bool = True,
) -> list[dict]:
    """Our parameter counts beside Table VIII's, one row per architecture x encoder x frozen.

    Models are built on the ``meta`` device (no weights allocated, no forward pass), so all 24 rows
    take seconds.

    Args:
        archs: architectures (default :data:`~cxrmap.models.ARCHS`).
        encoders: encoders (default the paper's four; any other encoder name gets rows without paper figures).
        frozen: which of frozen / not frozen to list.
        progress: show a progress bar.

    Returns:
        dicts with arch, encoder, frozen, trainable, non_trainable, paper_trainable,
        paper_non_trainable, trainable_diff, non_trainable_diff (relative, e.g. 0.004), paper_ms, note.
    """

    combos = [
        (arch, is_frozen, encoder)
        for arch in (archs or ARCHS)
        for is_frozen in frozen
        for encoder in (encoders or ENCODERS)
    ]
    rows = []
    for arch, is_frozen, encoder in track(combos, stage="Table VIII", unit="model", enabled=progress):
        with torch.device("meta"):
            model = create_model(arch, encoder, freeze_encoder=is_frozen)
        trainable, non_trainable = count_parameters(model)
        paper = TABLE_VIII.get((arch, encoder, is_frozen))
        row = {
            "arch": arch,
            "encoder": encoder,
            "frozen": is_frozen,
            "trainable": trainable,
            "non_trainable": non_trainable,
            "paper_trainable": None,
            "paper_non_trainable": None,
            "trainable_diff": None,
            "non_trainable_diff": None,
            "paper_ms": None,
            "note": "",
        }
        if paper is not None:
            row["paper_trainable"], row["paper_non_trainable"], row["paper_ms"] = (
                int(paper[0]),
                int(paper[1]),
                paper[2],
            )
            row["trainable_diff"] = trainable / paper[0] - 1
            row["non_trainable_diff"] = non_trainable / paper[1] - 1
            if is_frozen:
                row["note"] = FROZEN_NOTE
            elif max(abs(row["trainable_diff"]), abs(row["non_trainable_diff"])) > NOTE_THRESHOLD:
                row["note"] = "differs from the paper by more than 0.5%"
        rows.append(row)
    return rows
