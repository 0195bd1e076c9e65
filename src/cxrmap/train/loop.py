"""The training loop: one code path for a CPU, one GPU, or many GPUs/machines under ``torchrun``.

Paper Sec. II-C and III-A: an encoder-decoder network trained with the hybrid focal + dice loss (Eq. 5-7)
by Adam, on COVID-19 images augmented up to the number of controls (Sec. III-B). The same loop trains the
classification networks of Sec. III-A/III-C with cross-entropy: a :class:`Task` says what is learnt
(the network, the rows, the loss and target of a batch), the loop does the rest (seeding, Adam, the
schedule, mixed precision, progress, the BatchNorm last-batch rule, checkpoints and their metadata).

Every epoch ends with an atomic ``last.pt`` holding everything needed to resume exactly (weights,
optimiser, gradient scaler, scheduler, epoch, RNG states of torch/numpy/python, the data plan position,
history), or, with ``resume_every`` seconds, the first epoch end that long after the previous write and the
final epoch (short epochs would spend more time writing the state than learning); ``best.pt`` keeps the
epoch with the best validation pixel F1 when a validation set is given, and ``model.pt`` the final weights
with their metadata (see :mod:`cxrmap.models.checkpoint`).
"""

from __future__ import annotations

import math
import os
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cxrmap import __version__
from cxrmap.core import distributed
from cxrmap.core.errors import CheckpointError, DataError, ModelError
from cxrmap.core.progress import track
from cxrmap.core.runtime import autocast, resolve_amp, resolve_channels_last
from cxrmap.data.dataset import SegmentationDataset
from cxrmap.data.manifest import manifest_hash
from cxrmap.models import create_classifier, create_model, input_multiple
from cxrmap.models.checkpoint import (
    CheckpointMeta,
    Provenance,
    TrainingData,
    check_same_model,
    load_checkpoint,
    restore_weights,
    save_checkpoint,
)
from cxrmap.models.classifier import COVID_CLASS
from cxrmap.models.input import fit_size
from cxrmap.train.logs import TrainLogger
from cxrmap.train.losses import HybridLoss
from cxrmap.train.presets import ClassifierConfig, TrainConfig

Validation = Callable[[object, object], dict[str, float]]
"""``validation(model, device)``: figures on held-out images after an epoch (``f1`` picks ``best.pt``)."""

LAST, BEST, FINAL = "last.pt", "best.pt", "model.pt"
RESUME_KEYS = ("size", "batch_size", "balance", "augment", "seed", "schedule")
"""Settings a resumed run must share with the run it continues (the number of epochs may grow)."""
FUSED_ADAM_DEVICES = ("cpu", "cuda")
"""Devices where Adam runs fused (one kernel over all parameters): the same update within float rounding,
about ten times faster than the per-tensor loop torch takes on a CPU by default."""


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        out_dir: the run's folder (None: nothing was written).
        model_path: ``model.pt``, the final weights and metadata (None without ``out_dir``).
        last_path: ``last.pt``, the resumable state (None without ``out_dir``).
        best_path: ``best.pt`` (best validation F1), ``None`` without a validation set.
        history: one dict per epoch (``epoch``, ``train_loss``, the task's ``train_*`` figures, ``lr``,
            ``seconds``, ``val_*``).
        seconds: wall time of this call.
        meta: the metadata stored in ``model.pt``.
        model: the trained network (in training mode; the main process's copy).
    """

    out_dir: Path | None
    model_path: Path | None
    last_path: Path | None
    best_path: Path | None
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    meta: CheckpointMeta | None = None
    model: nn.Module | None = None


def check_size(size: int, encoder: str) -> None:
    """Raise unless ``size`` is a multiple of the encoder's total stride.

    Raises:
        ModelError: naming the nearest valid sizes.
    """

    multiple = input_multiple(encoder)
    if size % multiple:
        low = size // multiple * multiple
        options = [str(s) for s in (low, low + multiple) if s > 0]
        raise ModelError(
            f"image size {size} cannot go through encoder {encoder!r}, whose inputs must be multiples of "
            f"{multiple}; use {' or '.join(options)}"
        )


def training_rows(cache, train_idx) -> np.ndarray:
    """The training rows, less the COVID-19 rows whose infection mask is unknown (with a warning).

    Raises:
        DataError: no training row, or no COVID-19 training row has a mask (saying how many, first few).
    """
    rows = np.asarray(train_idx, np.int64).reshape(-1)
    if not len(rows):
        raise DataError("no training images: the training index is empty (check the manifest's folds/splits)")
    covid = cache.manifest["label"].to_numpy()[rows] == "covid"
    missing = covid & ~np.asarray(cache.has_mask)[rows]
    if missing.any():
        paths = cache.manifest["image_path"].to_numpy()[rows[missing]]
        listed = ", ".join(map(str, paths[:3])) + (", ..." if len(paths) > 3 else "")
        text = f"{len(paths)} of the {int(covid.sum())} COVID-19 training images have no infection mask"
        text += f" ({listed})"
        if missing.sum() == covid.sum():
            raise DataError(
                f"{text}: a segmentation network learns from infection masks. Give each COVID-19 image's "
                "mask in the manifest's mask_path column (QaTa-COV19: Ground-truths/mask_NAME.png)."
            )
        warnings.warn(f"{text}; they are left out of training", stacklevel=4)
    return rows[~missing]


def data_description(cache, rows: np.ndarray) -> tuple[str, str]:
    """``(data_kind, trained_on)``: ``phantom`` or ``real``, and a human description of the rows."""
    frame = cache.manifest.iloc[rows]
    sources = frame["source"].astype(str)
    kind = "phantom" if len(sources) and sources.str.startswith("phantom").all() else "real"
    n_covid = int((frame["label"] == "covid").sum())
    text = (
        f"{kind}: {len(frame)} images ({n_covid} COVID-19, {len(frame) - n_covid} control), "
        f"manifest {manifest_hash(cache.manifest)}"
    )
    return kind, text


def rng_state() -> dict:
    """The RNG states of torch (and CUDA when in use), numpy and python, as checkpoint-safe values."""

    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": [version, list(internal), gauss],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the RNG states saved by :func:`rng_state`."""

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def segmentation_loss(criterion, logits, target, has_lung):
    """The hybrid loss over the infection channel and, for the images with a lung mask, the lung channel.

    Shape:
        logits, target: N x C x H x W (C = 1: infection; 2: infection, lung); has_lung: N bool.
    """

    valid = torch.stack([torch.ones_like(has_lung), has_lung], dim=1)[:, : logits.shape[1]]
    return criterion(logits, target, valid=valid)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def progress_bar(batches, stage: str, enabled: bool, **facts):
    """The progress display of one epoch (:func:`cxrmap.core.progress.track`), ``facts`` on every line."""
    return track(
        batches, stage=stage, unit="batch", count=lambda batch: len(batch["image"]), enabled=enabled, **facts
    )


class Task:
    """What a training run learns; the loop does the rest (seeding, Adam, progress, checkpoints).

    Attributes:
        name: the checkpoint's ``task`` (:data:`cxrmap.models.checkpoint.TASKS`).
        stage: the kind of step the progress display and the run's ETA count its epochs as.
        facts: what the progress display shows of the run on every line (e.g. ``{"encoder": "resnet18"}``).
        channels: the network's outputs, in order (set by :meth:`rows`).
        input_size: the side of the images the network sees (set by :meth:`rows`).
        threshold: the probability from which an output means COVID-19.
    """

    name = ""
    stage = "train"
    facts: dict[str, str] = {}
    channels: tuple[str, ...] = ()
    input_size = 0
    threshold = 0.5

    def rows(self, cache, train_idx) -> np.ndarray:
        """The cache rows to learn from (after checking that the cache suits the task)."""
        raise NotImplementedError

    def build(self) -> nn.Module:
        """The network, built with the random generators seeded."""
        raise NotImplementedError

    def inputs(self, batch: dict, device) -> torch.Tensor:
        """The network's input for a batch of :class:`~cxrmap.data.dataset.SegmentationDataset` items."""
        return batch["image"].to(device, non_blocking=True)

    def loss(self, logits: torch.Tensor, batch: dict, device) -> tuple[torch.Tensor, dict]:
        """The batch's loss (float32 logits) and figures summed over its images (``accuracy``: correct)."""
        raise NotImplementedError


class SegmentationTask(Task):
    """Infection (and lung) maps from masks: the hybrid focal + dice loss (Sec. II-C, Eq. 5-7).

    The model has two output channels (infection, lung) when any training image has a lung mask; the lung
    channel's loss counts only the images that have one.
    """

    name = "segmentation"

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.input_size, self.threshold = config.size, config.threshold
        self.classes = 1

    def rows(self, cache, train_idx) -> np.ndarray:
        config = self.config
        if cache.size != config.size:
            raise ModelError(
                f"the configuration's image size is {config.size} but the cache holds "
                f"{cache.size}px images; build the cache at {config.size} or set size={cache.size}"
            )
        check_size(config.size, config.encoder)
        rows = training_rows(cache, train_idx)
        self.classes = 2 if bool(np.asarray(cache.has_lung)[rows].any()) else 1
        self.channels = ("infection", "lung")[: self.classes]
        self.criterion = HybridLoss(
            alpha=config.loss_alpha,
            gamma=config.loss_gamma,
            smooth=config.dice_smooth,
            per_image=config.dice_per_image,
            channel_weights=(1.0, config.lung_weight)[: self.classes],
        )
        return rows

    def build(self) -> nn.Module:
        config = self.config
        return create_model(
            arch=config.arch,
            encoder=config.encoder,
            weights=config.weights,
            freeze_encoder=config.freeze_encoder,
            classes=self.classes,
        )

    def loss(self, logits, batch, device):
        target = batch["target"][:, : self.classes].to(device, non_blocking=True)
        return segmentation_loss(self.criterion, logits, target, batch["has_lung"].to(device)), {}


class ClassificationTask(Task):
    """COVID-19 / control from image labels: a 2-neuron head and cross-entropy (Sec. III-A, III-C).

    Args:
        encoder: the encoder of :func:`cxrmap.models.create_classifier`.
        weights: its initial weights (None: random).
        input_size: images larger than this are downsampled to it; None keeps the cache's size.
    """

    name = "classification"
    stage = "classifier"
    channels = tuple("covid" if i == COVID_CLASS else "control" for i in range(2))

    def __init__(self, encoder: str, weights: str | None = None, input_size: int | None = None) -> None:
        self.encoder, self.weights, self.fit = encoder, weights, input_size
        self.facts = {"encoder": encoder}
        self.criterion = nn.CrossEntropyLoss()

    def rows(self, cache, train_idx) -> np.ndarray:
        rows = np.asarray(train_idx, np.int64).reshape(-1)
        if not len(rows):
            raise ModelError("the classifier's training set is empty; pass the cache rows to train on")
        self.input_size = min(cache.size, self.fit or cache.size)
        return rows

    def build(self) -> nn.Module:
        return create_classifier(self.encoder, weights=self.weights, num_classes=len(self.channels))

    def inputs(self, batch, device):
        return fit_size(super().inputs(batch, device), self.fit)

    def loss(self, logits, batch, device):
        labels = torch.as_tensor(batch["label"], device=device)
        return self.criterion(logits, labels), {"accuracy": (logits.argmax(1) == labels).sum()}


class _Run:
    """The state of one training run in one process: model, optimiser, data, history."""

    def __init__(
        self, config, task: Task, cache, train_idx, validation, context: distributed.Context
    ) -> None:

        rows = task.rows(cache, train_idx)
        self.config, self.task, self.cache, self.context = config, task, cache, context
        self.validation = validation
        self.dataset = SegmentationDataset(
            cache, rows, balance=config.balance, augment=config.augment, seed=config.seed
        )
        if config.batch_size % context.world_size:
            raise ModelError(
                f"batch size {config.batch_size} does not split over {context.world_size} "
                f"processes; use a multiple of {context.world_size}"
            )
        self.local_batch = config.batch_size // context.world_size
        if config.batch_size > len(self.dataset):
            raise ModelError(
                f"batch size {config.batch_size} is larger than the {len(self.dataset)} training "
                f"images of an epoch; use at most {len(self.dataset)}"
            )

        random.seed(config.seed)
        np.random.seed(config.seed)
        torch.manual_seed(config.seed)
        self.model = task.build()
        self.model.train()
        self.batchnorm = any(
            isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training for m in self.model.modules()
        )
        if self.batchnorm and self.local_batch == 1:
            raise ModelError(
                "a batch of 1 image per process cannot train BatchNorm layers; use a batch size "
                f"of at least {2 * context.world_size}"
            )
        channels_last = resolve_channels_last(context.device, config.channels_last)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(context.device, memory_format=self.memory_format)
        self.amp_dtype = resolve_amp(config.amp, context.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(
            params,
            lr=config.lr,
            betas=config.betas,
            weight_decay=config.weight_decay,
            fused=context.device.type in FUSED_ADAM_DEVICES,
        )
        total = max(1, config.epochs * len(self.plan(0)))
        cosine = config.schedule == "cosine"
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total)) if cosine else 1.0,
        )
        self.network = self.model
        if context.distributed:
            ids = [context.device.index] if context.device.type == "cuda" else None
            self.network = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

        data_kind, trained_on = data_description(cache, rows)
        self.meta = CheckpointMeta(
            task=task.name,
            model=dict(self.model.config),
            channels=task.channels,
            input_size=task.input_size,
            threshold=task.threshold,
            data=TrainingData(
                kind=data_kind, description=trained_on, manifest_hash=manifest_hash(cache.manifest)
            ),
            provenance=Provenance(
                preset=config.preset, config=config.to_dict(), cxrmap_version=__version__, created=_now()
            ),
        )
        self.epoch, self.history, self.best = 0, [], -1.0

    def plan(self, epoch: int) -> distributed.EpochPlan:
        """This process's batches of ``epoch``."""
        c = self.context
        return distributed.EpochPlan(
            len(self.dataset),
            self.local_batch,
            self.config.seed,
            epoch,
            c.rank,
            c.world_size,
            drop_single=self.batchnorm,
        )

    def resume(self, path: Path) -> None:
        """Continue from the ``last.pt`` at ``path``: weights, optimiser, scheduler, scaler, RNG, history."""
        state = load_checkpoint(path)
        check_same_model(state["meta"], self.meta.model, path)
        saved = state["meta"].provenance.config
        diff = [
            f"{k}: {saved[k]!r} vs {getattr(self.config, k)!r}"
            for k in RESUME_KEYS
            if k in saved and saved[k] != getattr(self.config, k)
        ]
        if diff:
            raise CheckpointError(
                f"cannot resume {path}: it was trained with other settings ({'; '.join(diff)}); "
                "resume with the same settings or train into a new output folder"
            )
        restore_weights(self.model, state["model"], path)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            set_rng_state(state["rng"])
            self.epoch, self.history, self.best = (
                int(state["epoch"]),
                list(state["history"]),
                float(state["best"]),
            )
        except (KeyError, ValueError, TypeError, RuntimeError) as error:
            raise CheckpointError(
                f"{path} lacks a usable training state ({error}); it cannot be resumed. "
                "Train again without --resume."
            ) from error

    def train_epoch(self, progress: bool) -> dict:
        """One pass over this process's share of the epoch; returns the history entry."""

        c, started = self.context, time.perf_counter()
        self.dataset.set_epoch(self.epoch)
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=self.plan(self.epoch),
            num_workers=self.config.workers,
            pin_memory=c.device.type == "cuda",
        )
        self.network.train()
        total, count, sums = 0.0, 0, {}
        bar = progress_bar(
            loader,
            self.task.stage,
            progress and c.is_main,
            **self.task.facts,
            epoch=f"{self.epoch + 1}/{self.config.epochs}",
        )
        for batch in bar:
            images = self.task.inputs(batch, c.device).contiguous(memory_format=self.memory_format)
            with autocast(c.device, self.amp_dtype):
                logits = self.network(images)
            loss, figures = self.task.loss(logits.float(), batch, c.device)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            total += float(loss.detach()) * len(images)
            count += len(images)
            for name, value in figures.items():
                sums[name] = sums.get(name, 0.0) + float(value)
            bar.set_postfix(loss=f"{total / count:.4f}")
        bar.close()
        total, count, *summed = distributed.all_reduce_sum([total, count, *sums.values()], c)
        self.epoch += 1
        return {
            "epoch": self.epoch,
            "train_loss": total / max(count, 1),
            **{f"train_{name}": value / max(count, 1) for name, value in zip(sums, summed, strict=True)},
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - started,
        }

    def validate(self) -> dict:
        """The validation figures (computed in rank 0, shared with all), each prefixed ``val_``."""
        scores = None
        if self.context.is_main:
            figures = self.validation(self.model, self.context.device)
            scores = {f"val_{k}": (float(v) if math.isfinite(v) else -1.0) for k, v in figures.items()}
        return distributed.broadcast_object(scores, self.context)

    def save(self, path: Path | None, full: bool, metrics: dict | None = None) -> None:
        """Write a checkpoint (rank 0 only; none without a path): the full training state, or the weights
        and metadata."""
        if not self.context.is_main or path is None:
            return
        meta = self.meta.replace(provenance={"created": _now()})
        if metrics is not None:
            meta = meta.replace(metrics=metrics)
        state = {"meta": meta, "model": self.model.state_dict(), "epoch": self.epoch}
        if full:
            state.update(
                optimizer=self.optimizer.state_dict(),
                scheduler=self.scheduler.state_dict(),
                scaler=self.scaler.state_dict(),
                rng=rng_state(),
                history=self.history,
                best=self.best,
                plan={"epoch": self.epoch, "batch": 0, "seed": self.config.seed},
            )
        save_checkpoint(path, state)


def _validation_metrics(entry: dict) -> dict:
    return {k[4:]: v for k, v in entry.items() if k.startswith("val_")}


def train(
    config: TrainConfig | ClassifierConfig,
    cache,
    train_idx,
    validation: Validation | None = None,
    out_dir: str | os.PathLike | None = "runs/train",
    resume: bool = False,
    progress: bool = True,
    device: str | None = None,
    on_epoch_end=None,
    task: Task | None = None,
    resume_every: float | None = None,
) -> TrainResult:
    """Train a segmentation network (or ``task``'s) on the cache rows ``train_idx`` (Sec. II-C, III-A).

    Args:
        config: the settings (:func:`~cxrmap.train.presets.get_preset`); ``config.size`` must be the cache's;
            a :class:`~cxrmap.train.presets.ClassifierConfig` for a :class:`ClassificationTask`.
        cache: the :class:`~cxrmap.data.cache.ImageCache`.
        train_idx: cache rows to train on; COVID-19 rows without an infection mask are left out (warning).
        validation: called as ``validation(model, device)`` after each epoch, returning named figures with
            at least ``f1`` (it picks ``best.pt``), e.g. :func:`cxrmap.evaluate.evaluation.validation`;
            ``None`` for none.
        out_dir: the run's folder (``last.pt``, ``best.pt``, ``model.pt``, ``history.csv``, ``tensorboard/``);
            None writes nothing.
        resume: continue from ``out_dir/last.pt`` if it exists, exactly where the run stopped.
        progress: show a progress bar per epoch (rank 0).
        device: ``cpu``, ``cuda``, ``cuda:1``...; ``None`` takes the GPU if there is one.
        on_epoch_end: called as ``on_epoch_end(epoch, entry)`` after each epoch (and its ``last.pt``, if due).
        task: what is learnt; None for :class:`SegmentationTask` ``(config)``.
        resume_every: write ``last.pt`` at the first epoch end at least this many seconds after the start
            or the previous write, and after the final epoch; None writes it after every epoch. A run killed
            in between resumes from the last one written (the epochs since are trained again, identically).

    Returns:
        The :class:`TrainResult` (in every process; only rank 0 writes files).

    Raises:
        ModelError: an image size the encoder cannot take, or a batch size that does not fit the data.
        DataError: no usable training image.
        CheckpointError: ``resume`` from a ``last.pt`` of another model, other settings, or a damaged one.

    A segmentation model has two output channels (infection, lung) when any training image has a lung
    mask; the lung channel's loss counts only the images that have one.

    Example:
        >>> cache = build_cache(manifest, 96)  # doctest: +SKIP
        >>> train_idx, test_idx = fold_indices(cache.manifest, 0)  # doctest: +SKIP
        >>> result = train(get_preset("quick"), cache, train_idx, out_dir="runs/fold0")  # doctest: +SKIP
    """

    started = time.perf_counter()
    out_dir = None if out_dir is None else Path(out_dir)
    paths = {name: None if out_dir is None else out_dir / name for name in (LAST, BEST, FINAL)}
    context = distributed.setup(device)
    try:
        run = _Run(config, task or SegmentationTask(config), cache, train_idx, validation, context)
        if resume and paths[LAST] is not None and paths[LAST].is_file():
            run.resume(paths[LAST])
        writes = context.is_main and out_dir is not None
        logger = TrainLogger(out_dir or ".", enabled=writes, start_epoch=run.epoch)
        written = time.monotonic()
        try:
            with distributed.deterministic(config.deterministic):
                while run.epoch < config.epochs:
                    entry = run.train_epoch(progress)
                    improved = False
                    if run.validation is not None:
                        entry.update(run.validate())
                        improved = entry["val_f1"] > run.best
                        run.best = max(run.best, entry["val_f1"])
                    run.history.append(entry)
                    due = resume_every is None or time.monotonic() - written >= resume_every
                    if due or run.epoch == config.epochs:
                        run.save(paths[LAST], full=True)
                        written = time.monotonic()
                    if improved:
                        run.save(paths[BEST], full=False, metrics=_validation_metrics(entry))
                    logger.log(run.history)
                    distributed.barrier(context)
                    if on_epoch_end is not None:
                        on_epoch_end(run.epoch, entry)
        finally:
            logger.close()
        metrics = _validation_metrics(run.history[-1]) if run.history else {}
        run.meta = run.meta.replace(metrics=metrics)
        run.save(paths[FINAL], full=False)
        distributed.barrier(context)
    finally:
        distributed.teardown(context)
    best = paths[BEST] if paths[BEST] is not None and paths[BEST].is_file() else None
    seconds = time.perf_counter() - started
    return TrainResult(out_dir, paths[FINAL], paths[LAST], best, run.history, seconds, run.meta, run.model)
