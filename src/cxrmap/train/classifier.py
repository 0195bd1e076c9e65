"""The paper's classification networks, trained to give the activation maps of Sec. III-C.

"The encoder structures of the segmentation networks are trained for the classification task with a
modification at the output layer by adding 2-neurons ... fine-tuned using categorical cross-entropy as
loss function with 10 epochs and a learning rate of 1e-5 ... Other settings of the classifiers are kept the
same with the segmentation models" (Sec. III-A): Adam (beta1 0.9, beta2 0.999), batch 32, 224 x 224 inputs,
and the same class balancing (COVID-19 images repeated with random shift/rotate up to the number of
controls, :class:`cxrmap.data.dataset.SegmentationDataset` with ``balance=True``).

Presets (:data:`PRESETS`):

- ``paper``: 10 epochs, lr 1e-5, batch 32, the cache's input size (224 in the paper) — the paper's setting,
  meant for fine-tuning pretrained encoders on a GPU.
- ``quick``: 2 epochs, lr 1e-3, batch 16, at most 128 x 128 inputs (the cache's images are downsampled
  when larger). Random-initialised encoders learn nothing useful in a few epochs at 1e-5; 1e-3 and small
  inputs let one encoder learn a small phantom set in half a minute on two CPU cores. Grad-CAM maps then
  come from a 4 x 4 feature grid (DenseNet-121, stride 32) and are coarse; pass the same ``input_size`` to
  :class:`~cxrmap.explain.gradcam.GradCAMExplainer` so it sees images as in training.

The segmentation training loop (:mod:`cxrmap.train`) optimises a pixel loss on masks; the classifier
needs an image-level cross-entropy on labels, so this module has its own short loop and shares the
dataset, the balancing and the checkpoint format.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from cxrmap import __version__
from cxrmap.core.errors import CheckpointError, CxrmapError, ModelError
from cxrmap.core.progress import track
from cxrmap.core.runtime import resolve_device
from cxrmap.data.dataset import SegmentationDataset
from cxrmap.models import create_classifier
from cxrmap.models.checkpoint import load_checkpoint, restore_weights, save_checkpoint
from cxrmap.models.classifier import COVID_CLASS
from cxrmap.models.input import as_batch, fit_size
from cxrmap.train.presets import TrainConfig


@dataclass(frozen=True)
class ClassifierConfig:
    """Training settings of a classification network (paper Sec. III-A).

    Attributes:
        epochs: passes over the (balanced) training set.
        lr: Adam learning rate.
        batch_size: images per step.
        input_size: side the images are downsampled to when the cache's is larger; None keeps the cache's.
        balance: repeat COVID-19 images (augmented) up to the number of controls, as for segmentation.
        augment: shift/rotate every image, not only the repeats.
        seed: seed of the initial weights, shuffling, repeats and transforms.
        num_workers: DataLoader worker processes.
    """

    epochs: int = 10
    lr: float = 1e-5
    batch_size: int = 32
    input_size: int | None = None
    balance: bool = True
    augment: bool = False
    seed: int = 0
    num_workers: int = 0


PRESETS: dict[str, ClassifierConfig] = {
    "paper": ClassifierConfig(),
    "quick": ClassifierConfig(epochs=2, lr=1e-3, batch_size=16, input_size=128),
}
"""Named settings: ``paper`` as in Sec. III-A, ``quick`` for a CPU demonstration (see module docstring)."""


@dataclass
class ClassifierResult:
    """What one classifier training produced.

    Attributes:
        encoder: the encoder's name.
        config: the settings used.
        history: one dict per epoch: ``epoch``, ``loss`` (mean cross-entropy), ``accuracy`` (training
            accuracy of that epoch's batches), ``seconds``.
        seconds: total training time.
        train_images: rows of the cache trained on (before balancing).
        checkpoint: where the classifier was saved, or None.
    """

    encoder: str
    config: ClassifierConfig
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    train_images: int = 0
    checkpoint: Path | None = None


def resolve_config(config: Any, **overrides: Any) -> ClassifierConfig:
    """A :class:`ClassifierConfig` from a preset name, a config, or a segmentation ``TrainConfig``.

    A :class:`~cxrmap.train.presets.TrainConfig` gives the classifier preset of the same name (``paper``
    for custom ones) with the segmentation run's batch size, balancing, augmentation, seed and workers
    ("other settings of the classifiers are kept the same with the segmentation models", Sec. III-A).
    ``overrides`` are applied last.

    Raises:
        ModelError: unknown preset or override, or a non-positive epochs/lr/batch size.
    """

    if isinstance(config, TrainConfig):
        config = replace(
            PRESETS.get(config.preset, PRESETS["paper"]),
            batch_size=config.batch_size,
            balance=config.balance,
            augment=config.augment,
            seed=config.seed,
            num_workers=config.workers,
        )
    if isinstance(config, str):
        if config not in PRESETS:
            raise ModelError(f"unknown classifier preset {config!r}; choose one of {', '.join(PRESETS)}")
        config = PRESETS[config]
    if not isinstance(config, ClassifierConfig):
        raise ModelError(
            f"config must be a preset name, a ClassifierConfig or a TrainConfig, got {type(config).__name__}"
        )
    try:
        config = replace(config, **overrides)
    except TypeError as error:
        raise ModelError(f"unknown classifier setting: {error}") from error
    if config.epochs < 1 or config.lr <= 0 or config.batch_size < 1:
        raise ModelError(
            f"epochs and batch_size must be >= 1 and lr > 0; got epochs={config.epochs}, lr={config.lr}, "
            f"batch_size={config.batch_size}"
        )
    if config.input_size is not None and config.input_size < 32:
        raise ModelError(f"input_size must be at least 32 pixels or None, got {config.input_size}")
    return config


def train_classifier(
    encoder: str,
    cache: Any,
    train_idx: Any,
    config: Any = "quick",
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    weights: str | None = None,
    device: str | torch.device | None = None,
) -> tuple[nn.Module, ClassifierResult]:
    """Train ``encoder`` with a 2-neuron head for COVID-19 vs control (paper Sec. III-A, III-C).

    Args:
        encoder: encoder name accepted by :func:`cxrmap.models.create_classifier` (e.g. ``densenet121``).
        cache: the :class:`~cxrmap.data.cache.ImageCache` holding the images.
        train_idx: cache rows to train on.
        config: preset name (``quick`` or ``paper``), a :class:`ClassifierConfig`, or the segmentation
            run's ``TrainConfig`` (see :func:`resolve_config`).
        out_dir: folder for the checkpoint ``classifier-<encoder>.pt`` (none written when None).
        progress: show a progress bar.
        weights: encoder weights passed to ``create_classifier`` (None: random initialisation).
        device: torch device; default CUDA when available, else CPU.

    Returns:
        ``(classifier, result)``: the trained network in eval mode and a :class:`ClassifierResult`.

    Example:
        >>> classifier, result = train_classifier("densenet121", cache, train_idx, "quick")  # doctest: +SKIP
        >>> result.history[-1]["accuracy"]  # doctest: +SKIP
    """

    config = resolve_config(config)
    device = resolve_device(device)
    dataset = SegmentationDataset(
        cache, train_idx, balance=config.balance, augment=config.augment, seed=config.seed
    )
    if len(dataset) == 0:
        raise ModelError("the classifier's training set is empty; pass the cache rows to train on")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        classifier = create_classifier(encoder, weights=weights, num_classes=2)
    classifier.to(device)
    optimiser = torch.optim.Adam(classifier.parameters(), lr=config.lr, betas=(0.9, 0.999))
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(config.seed)
    result = ClassifierResult(encoder=encoder, config=config, train_images=len(dataset.indices))
    started = time.perf_counter()
    bar = track(stage="classifier", total=config.epochs * len(dataset), enabled=progress, encoder=encoder)
    for epoch in range(config.epochs):
        dataset.set_epoch(epoch)
        loader = DataLoader(
            dataset,
            batch_size=config.batch_size,
            shuffle=True,
            generator=generator,
            num_workers=config.num_workers,
            # a last batch of one image would break BatchNorm in training mode
            drop_last=len(dataset) % config.batch_size == 1 and len(dataset) > config.batch_size,
        )
        classifier.train()
        epoch_start, total_loss, correct, seen = time.perf_counter(), 0.0, 0, 0
        for batch in loader:
            images = fit_size(batch["image"].to(device), config.input_size)
            labels = torch.as_tensor(batch["label"], device=device)
            logits = classifier(images)
            loss = loss_fn(logits, labels)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total_loss += float(loss.detach()) * len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(labels)
            bar.set(epoch=f"{epoch + 1}/{config.epochs}", loss=total_loss / seen)
            bar.update(len(labels))
        result.history.append(
            {
                "epoch": epoch + 1,
                "loss": total_loss / max(seen, 1),
                "accuracy": correct / max(seen, 1),
                "seconds": time.perf_counter() - epoch_start,
            }
        )
    bar.close()
    classifier.eval()
    result.seconds = time.perf_counter() - started
    if out_dir is not None:
        result.checkpoint = save_classifier(Path(out_dir) / f"classifier-{encoder}.pt", classifier, result)
    return classifier, result


def save_classifier(path: str | os.PathLike, classifier: nn.Module, result: ClassifierResult) -> Path:
    """Save a trained classifier with what rebuilds it (atomic, :mod:`cxrmap.models.checkpoint`).

    The metadata holds ``kind`` ("classifier"), ``classifier`` (the ``create_classifier`` arguments),
    ``input_size``, ``config``, ``history``, ``train_images``, ``cxrmap_version`` and ``created``.
    """

    spec = dict(getattr(classifier, "config", {"encoder": result.encoder, "num_classes": 2}))
    if spec.get("weights") is not None:
        spec["weights"] = str(spec["weights"])
    meta = {
        "kind": "classifier",
        "classifier": spec,
        "input_size": result.config.input_size,
        "config": asdict(result.config),
        "history": result.history,
        "train_images": result.train_images,
        "cxrmap_version": __version__,
        "created": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    return save_checkpoint(path, {"model": classifier.state_dict(), "meta": meta})


def load_classifier(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a classifier saved by :func:`save_classifier`: ``(classifier in eval mode, meta)``.

    No pretrained weights are fetched: the saved weights replace them.

    Raises:
        CheckpointError: missing or corrupt file, or a checkpoint that is not a classifier's.
    """

    state = load_checkpoint(path)
    meta = state["meta"]
    if meta.get("kind") != "classifier" or not isinstance(meta.get("classifier"), dict):
        raise CheckpointError(
            f"{path} is not a classifier checkpoint (no classifier metadata); pass a file written by "
            "train_classifier / save_classifier (segmentation checkpoints load with load_model)"
        )
    try:
        classifier = create_classifier(**{**meta["classifier"], "weights": None})
    except (CxrmapError, TypeError) as error:
        raise CheckpointError(f"{path} describes a classifier that cannot be built: {error}") from error
    restore_weights(classifier, state["model"], path)
    return classifier.to(device).eval(), meta


@torch.no_grad()
def covid_probability(
    classifier: nn.Module,
    images: Any,
    input_size: int | None = None,
    batch_size: int = 32,
) -> np.ndarray:
    """Softmax probability of the COVID-19 class for radiographs (image-level detection by a classifier).

    Args:
        classifier: a trained classifier.
        images: uint8 ``N x H x W`` (or see :func:`cxrmap.explain.gradcam.as_batch`).
        input_size: the training ``input_size`` (images are downsampled to it when larger).
        batch_size: images per forward pass.

    Returns:
        float32 ``(N,)`` in [0, 1].
    """

    batch = as_batch(images)
    device = next(classifier.parameters()).device
    was_training = classifier.training
    classifier.eval()
    try:
        out = [
            torch.softmax(classifier(fit_size(batch[i : i + batch_size].to(device), input_size)), 1)[
                :, COVID_CLASS
            ]
            for i in range(0, len(batch), batch_size)
        ]
    finally:
        classifier.train(was_training)
    return torch.cat(out).cpu().numpy().astype(np.float32) if out else np.zeros(0, np.float32)
