"""The networks of the workflow: what a stage trains, and the hook that trains one and predicts masks.

A *trainer* is any callable ``trainer(task: TrainTask) -> {image_id: bool mask at the image's size}``.
The server uses :func:`cxrmap_trainer` (cxrmap's training loop and
:class:`~cxrmap.predict.predictor.Predictor`); tests of the server itself pass a fast stand-in. Stage I
trains every network once per fold; Stage II once on all accepted masks (paper Sec. II-B, Fig. 4).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cxrmap.data.cache import build_cache
from cxrmap.data.io import read_image
from cxrmap.data.manifest import normalise_manifest
from cxrmap.models import ARCHS
from cxrmap.predict.predictor import Predictor
from cxrmap.serving.annotate.errors import WorkflowConflict, WorkflowError
from cxrmap.train import TrainConfig, train

TRAINING_DEFAULTS = {
    "size": 96,
    "epochs": 8,
    "batch_size": 8,
    "lr": 1e-3,
    "augment": True,
    "device": None,
    "threads": None,
}
"""Training settings of the workflow's networks (overridable per stage; CPU-sized, see ``--help``).
``threads``: CPU threads torch uses during the job (None: torch's default; 1 is much faster on a machine
whose cores are busy with other work)."""

RESUME_EVERY = 60.0
"""Seconds between a stage training's resumable ``last.pt`` writes (and one after the last epoch): a job
killed meanwhile loses at most about a minute of training, and short epochs are not spent writing it."""

_NAME = re.compile(r"^[A-Za-z0-9_.+-]{1,64}$")


class JobCancelled(Exception):
    """Raised inside a job when an admin cancelled it."""


@dataclass(frozen=True)
class Network:
    """One network of a stage: an architecture and its encoder (:func:`cxrmap.models.create_model`)."""

    arch: str
    encoder: str

    @property
    def name(self) -> str:
        return f"{self.arch}-{self.encoder}"


def parse_networks(value: list | str) -> list[Network]:
    """Networks from ``[{"arch": ..., "encoder": ...}]`` or ``"unet:resnet18,dla:resnet18"``.

    Raises:
        WorkflowError: an empty list, an unknown architecture, a malformed name or a duplicate.
    """

    if isinstance(value, str):
        items = []
        for part in filter(None, (p.strip() for p in value.split(","))):
            arch, _, encoder = part.partition(":")
            items.append({"arch": arch, "encoder": encoder})
    else:
        items = list(value or [])
    networks = []
    for item in items:
        arch = str(item.get("arch", "")) if isinstance(item, dict) else ""
        encoder = str(item.get("encoder", "")) if isinstance(item, dict) else ""
        if arch not in ARCHS:
            raise WorkflowError(
                f"unknown architecture {arch!r}; use one of {', '.join(ARCHS)}", code="invalid_network"
            )
        if not _NAME.match(encoder):
            raise WorkflowError(
                f"encoder {encoder!r} is not a valid name (e.g. resnet18, densenet121)",
                code="invalid_network",
            )
        networks.append(Network(arch, encoder))
    if not networks:
        raise WorkflowError("give at least one network, e.g. unet:resnet18", code="invalid_network")
    if len({n.name for n in networks}) != len(networks):
        raise WorkflowError(
            "the same network is listed twice; list each arch:encoder once", code="invalid_network"
        )
    return networks


def parse_training(value: dict | None) -> dict:
    """:data:`TRAINING_DEFAULTS` updated by ``value`` (unknown keys or bad values refused).

    Raises:
        WorkflowError: an unknown key, a non-positive size/epochs/batch size/learning rate.
    """
    settings = dict(TRAINING_DEFAULTS)
    for key, item in (value or {}).items():
        if key not in settings:
            raise WorkflowError(
                f"unknown training setting {key!r}; known: {', '.join(settings)}", code="invalid_setting"
            )
        settings[key] = item
    for key in ("size", "epochs", "batch_size"):
        if (
            isinstance(settings[key], bool)
            or not isinstance(settings[key], int)
            or not 1 <= settings[key] <= 4096
        ):
            raise WorkflowError(
                f"training {key} must be a positive whole number, got {settings[key]!r}",
                code="invalid_setting",
            )
    threads = settings["threads"]
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise WorkflowError(
            f"training threads must be null or a positive whole number, got {threads!r}",
            code="invalid_setting",
        )
    if not isinstance(settings["lr"], (int, float)) or not 0 < settings["lr"] < 1:
        raise WorkflowError(f"training lr must lie in (0, 1), got {settings['lr']!r}", code="invalid_setting")
    return settings


@dataclass
class TrainTask:
    """One network to train on ``train`` (image path, mask path) and to run on ``predict`` (image id, path).

    ``report(fraction, message)`` tells the job's progress and raises :class:`JobCancelled` when an admin
    cancelled the job; ``workdir`` is this task's own folder (kept across restarts: training resumes).
    """

    network: Network
    training: dict
    train: list[tuple[str, str]]
    predict: list[tuple[int, str]]
    workdir: Path
    seed: int = 0
    report: Callable[[float, str], None] = field(default=lambda fraction, message: None)


Trainer = Callable[[TrainTask], dict[int, np.ndarray]]


def cxrmap_trainer(task: TrainTask) -> dict[int, np.ndarray]:
    """Train ``task.network`` with cxrmap's loop (hybrid focal + dice loss, Adam; Sec. II-C) and predict.

    The training images are cached at ``training["size"]``; the predicted masks are the trained network's
    probability >= 0.5, resized back to each image's size (:class:`cxrmap.predict.predictor.Predictor` on
    the network in memory, the same weights as its ``model.pt``). The resumable state is written every
    :data:`RESUME_EVERY` seconds and at the end.
    """

    settings = task.training
    rows = [
        {"image_path": image, "mask_path": mask, "label": "covid", "group": "covid", "source": "annotate"}
        for image, mask in task.train
    ]
    cache = build_cache(
        normalise_manifest(rows), settings["size"], cache_dir=task.workdir / "cache", progress=False
    )
    if len(cache) < 2:
        raise WorkflowConflict(
            f"{task.network.name} needs at least 2 training images with masks, has {len(cache)}",
            code="too_few_masks",
        )
    config = TrainConfig(
        arch=task.network.arch, encoder=task.network.encoder, size=settings["size"],
        batch_size=min(settings["batch_size"], len(cache)), epochs=settings["epochs"],
        lr=float(settings["lr"]),
        balance=False, augment=bool(settings["augment"]), folds=1, schedule="cosine", seed=task.seed,
        preset="annotate",
    )  # fmt: skip
    task.report(0.0, "training")
    with _torch_threads(settings.get("threads")):
        return _train_and_predict(task, config, cache)


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    """Run the block with ``threads`` torch CPU threads (None: unchanged), restoring the count after."""

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        if threads:
            torch.set_num_threads(previous)


def _train_and_predict(task: TrainTask, config, cache) -> dict[int, np.ndarray]:

    settings, epochs = task.training, task.training["epochs"]

    def on_epoch_end(epoch: int, entry: dict) -> None:
        task.report(0.9 * epoch / epochs, f"epoch {epoch}/{epochs}, loss {entry.get('train_loss', 0):.3f}")

    result = train(
        config,
        cache,
        np.arange(len(cache)),
        out_dir=task.workdir / "run",
        resume=True,
        progress=False,
        device=settings.get("device"),
        on_epoch_end=on_epoch_end,
        resume_every=RESUME_EVERY,
    )
    predictor = Predictor(result.model, result.meta, device=settings.get("device") or "cpu")
    masks: dict[int, np.ndarray] = {}
    for start in range(0, len(task.predict), 16):
        chunk = task.predict[start : start + 16]
        task.report(0.9 + 0.1 * start / max(1, len(task.predict)), "predicting")
        predictions = predictor.predict([read_image(path) for _, path in chunk])
        for (image_id, _), prediction in zip(chunk, predictions, strict=True):
            masks[image_id] = prediction.prob >= prediction.threshold
    return masks
