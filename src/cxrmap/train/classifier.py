"""The paper's classification networks, trained to give the activation maps of Sec. III-C.

The encoders of the segmentation networks with a 2-neuron head, trained with categorical cross-entropy
(Sec. III-A) by the segmentation networks' own loop (:func:`cxrmap.train.loop.train` with a
:class:`~cxrmap.train.loop.ClassificationTask`): the same seeding, Adam, class balancing
(:class:`cxrmap.data.dataset.SegmentationDataset` with ``balance=True``), progress display, checkpoints
and metadata. The settings are :class:`~cxrmap.train.presets.ClassifierConfig` and the presets
:data:`~cxrmap.train.presets.CLASSIFIER_PRESETS`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cxrmap.models.checkpoint import CheckpointMeta, load_model
from cxrmap.models.classifier import COVID_CLASS
from cxrmap.models.input import as_batch, fit_size
from cxrmap.train.loop import ClassificationTask, train
from cxrmap.train.presets import ClassifierConfig, classifier_config


@dataclass
class ClassifierResult:
    """What one classifier training produced.

    Attributes:
        encoder: the encoder's name.
        config: the settings used.
        history: one dict per epoch: ``epoch``, ``train_loss`` (mean cross-entropy), ``train_accuracy``
            (training accuracy of that epoch's batches), ``lr``, ``seconds``.
        seconds: total training time.
        train_images: rows of the cache trained on (before balancing).
        checkpoint: where the classifier was saved (``model.pt`` of its run folder), or None.
    """

    encoder: str
    config: ClassifierConfig
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    train_images: int = 0
    checkpoint: Path | None = None


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
        config: preset name (``quick`` or ``paper``), a :class:`~cxrmap.train.presets.ClassifierConfig`, or
            the segmentation run's ``TrainConfig`` (see :func:`~cxrmap.train.presets.classifier_config`).
        out_dir: the run folder is ``out_dir/classifier-<encoder>/`` (``model.pt``, ``last.pt``,
            ``history.csv``); nothing is written when None.
        progress: show a progress bar.
        weights: encoder weights passed to ``create_classifier`` (None: random initialisation).
        device: torch device; default CUDA when available, else CPU.

    Returns:
        ``(classifier, result)``: the trained network in eval mode and a :class:`ClassifierResult`.

    Raises:
        ModelError: an unknown preset or setting, no training row, or a batch that does not fit the data.

    Example:
        >>> classifier, result = train_classifier("densenet121", cache, train_idx, "quick")  # doctest: +SKIP
        >>> result.history[-1]["train_accuracy"]  # doctest: +SKIP
    """

    config = classifier_config(config)
    run_dir = None if out_dir is None else Path(out_dir) / f"classifier-{encoder}"
    task = ClassificationTask(encoder, weights, config.input_size)
    device = None if device is None else str(device)
    done = train(config, cache, train_idx, out_dir=run_dir, progress=progress, device=device, task=task)
    result = ClassifierResult(
        encoder=encoder,
        config=config,
        history=done.history,
        seconds=done.seconds,
        train_images=int(np.asarray(train_idx).size),
        checkpoint=done.model_path,
    )
    return done.model.eval(), result


def load_classifier(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[nn.Module, CheckpointMeta]:
    """Rebuild a classifier trained by :func:`train_classifier`: ``(classifier in eval mode, meta)``.

    No pretrained weights are fetched: the saved weights replace them.

    Raises:
        CheckpointError: missing or corrupt file, or a checkpoint that is not a classifier's.
    """

    return load_model(path, device, task="classification")


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
