"""Training settings and their named presets: :class:`TrainConfig` and :data:`PRESETS` for the segmentation
networks, :class:`ClassifierConfig` and :data:`CLASSIFIER_PRESETS` for the classification networks.

Segmentation networks
---------------------

``paper`` is the setting of Sec. III-A: 224 x 224 inputs, Adam (lr 1e-4, default betas 0.9/0.999),
batch 32, 50 epochs, the hybrid focal + dice loss (alpha 0.25, gamma 2), COVID-19 images augmented up to
the number of controls (Sec. III-B, Table II), stratified 5-fold cross-validation.

``quick`` trains U-Net + DenseNet-121 from random weights on the phantom data set (120 COVID-19, 240
controls, 3 folds) on two CPU cores in about two and a half minutes per fold: 96 x 96 inputs, Adam from
lr 1e-3 with a cosine decay over 9 epochs, batches of 8, every training image shifted/rotated, a dice
smoothing of 5, and the lung channel's loss weighted 0.1 against the infection channel's 1. With equal
weights the easy lung channel takes half the loss; on fold 0 of the seed-0 phantom the weight 0.1 moved
detection sensitivity from 0.675 to 0.900, specificity from 0.950 to 0.850 and the AUC from 0.844 to
0.929, and the lung dice from 0.979 to 0.963.

Detection specificity is decided by the control images (empty masks): a control's dice loss
``S / (S + s)`` (``S`` its summed probability, ``s`` the smoothing) stays near 1, with almost no gradient,
until ``S`` is far below ``s``. With ``s = 1`` that takes most of a short run; ``s = 5`` gives the controls a
usable gradient five times earlier while leaving the dice of COVID-19 masks (hundreds of pixels) as it was
(measured with ``benchmarks/bench_learning.py``). The smoothing suits this short run: trained twice as long
(18 epochs, lung weight 1), the per-image dice empties the maps of small lesions too (fold 0 of the seed-0
phantom: detection sensitivity 0.625, specificity 0.963); longer runs do better with
``dice_per_image=False``.

Classification networks
-----------------------

"The encoder structures of the segmentation networks are trained for the classification task with a
modification at the output layer by adding 2-neurons ... fine-tuned using categorical cross-entropy as
loss function with 10 epochs and a learning rate of 1e-5 ... Other settings of the classifiers are kept the
same with the segmentation models" (Sec. III-A): Adam (beta1 0.9, beta2 0.999), batch 32, 224 x 224 inputs,
and the same class balancing.

- ``paper``: 10 epochs, lr 1e-5, batch 32, the cache's input size (224 in the paper) — the paper's setting,
  meant for fine-tuning pretrained encoders on a GPU.
- ``quick``: 2 epochs, lr 1e-3, batch 16, at most 128 x 128 inputs (the cache's images are downsampled
  when larger). Random-initialised encoders learn nothing useful in a few epochs at 1e-5; 1e-3 and small
  inputs let one encoder learn a small phantom set in half a minute on two CPU cores. Grad-CAM maps then
  come from a 4 x 4 feature grid (DenseNet-121, stride 32) and are coarse; pass the same ``input_size`` to
  :class:`~cxrmap.explain.gradcam.GradCAMExplainer` so it sees images as in training.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cxrmap.core.errors import ModelError

AMP_MODES = ("auto", "bf16", "fp16", "off")
SCHEDULES = ("constant", "cosine")


def _check_steps(config) -> None:
    """Raise unless a configuration's epochs, batch size and learning rate can train."""
    for name in ("batch_size", "epochs"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelError(f"{name} must be a positive whole number, got {value!r}")
    if not config.lr > 0:
        raise ModelError(f"learning rate must be positive, got {config.lr!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (the data and its folds aside).

    Attributes:
        arch, encoder, weights, freeze_encoder: the model (:func:`cxrmap.models.create_model`).
        size: side of the square input images in pixels.
        batch_size: images per optimiser step (over all processes when distributed).
        epochs: passes over the (balanced) training set.
        lr, betas, weight_decay: Adam's settings.
        schedule: ``constant`` (paper) or ``cosine`` decay of the learning rate to zero over the epochs.
        balance: augment COVID-19 images up to the number of controls (Sec. III-B).
        augment: shift/rotate every training image, not only the balancing repeats.
        folds: cross-validation folds.
        seed: seed of the weights' initialisation, the data order and the augmentations.
        amp: mixed precision: ``auto`` (bf16 where the CPU or GPU supports it, else fp16 on GPU, else
            off), ``bf16``, ``fp16`` (GPU, with a gradient scaler) or ``off``.
        channels_last: ``None`` chooses (on for GPUs, off on CPUs, where it measured slower here).
        workers: DataLoader worker processes (0 loads in the training process).
        loss_alpha, loss_gamma: focal loss parameters (Eq. 5).
        dice_smooth: the dice loss's smoothing (Eq. 7); see :class:`cxrmap.train.losses.HybridLoss`.
        dice_per_image: dice loss (Eq. 7) per image, or over the whole batch (Keras
            ``segmentation_models``' default); see :class:`cxrmap.train.losses.HybridLoss`.
        lung_weight: weight of the lung channel's loss against the infection channel's 1 (the lung
            channel is learnt where lung masks exist, for severity; the paper trains infection alone).
        threshold: probability at or above which a pixel is infected (Sec. II-D).
        validation_share: share of the training images set aside (stratified) to choose a detection rule
            beside the paper's (``detection_validated``, :func:`cxrmap.evaluate.detection.choose_rule`);
            0 trains on all of them and reports the paper's rule only.
        deterministic: ask torch for deterministic algorithms (exact resume checks; slower on GPU).
        phantom_covid, phantom_control: size of the phantom data set the preset is meant for.
        preset: the preset this configuration came from.
    """

    arch: str = "unet"
    encoder: str = "densenet121"
    weights: str | None = None
    freeze_encoder: bool = False
    size: int = 224
    batch_size: int = 32
    epochs: int = 50
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    schedule: str = "constant"
    balance: bool = True
    augment: bool = False
    folds: int = 5
    seed: int = 0
    amp: str = "auto"
    channels_last: bool | None = None
    workers: int = 0
    loss_alpha: float = 0.25
    loss_gamma: float = 2.0
    dice_smooth: float = 1.0
    dice_per_image: bool = True
    lung_weight: float = 1.0
    threshold: float = 0.5
    validation_share: float = 0.0
    deterministic: bool = False
    phantom_covid: int = 0
    phantom_control: int = 0
    preset: str = "custom"

    def __post_init__(self) -> None:
        for name in ("size", "folds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ModelError(f"{name} must be a positive whole number, got {value!r}")
        _check_steps(self)
        if not self.lung_weight >= 0:
            raise ModelError(f"lung_weight must be >= 0, got {self.lung_weight!r}")
        if self.amp not in AMP_MODES:
            raise ModelError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.schedule not in SCHEDULES:
            raise ModelError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not 0.0 < self.threshold < 1.0:
            raise ModelError(f"threshold must lie in (0, 1), got {self.threshold!r}")
        if not 0.0 <= self.validation_share < 1.0:
            raise ModelError(f"validation_share must lie in [0, 1), got {self.validation_share!r}")
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

    def replace(self, **changes) -> TrainConfig:
        """A copy with ``changes`` applied; ``None`` values leave a field as it is (handy for CLI options)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        """Plain-python dict (lists for tuples): safe in a ``weights_only`` checkpoint and in JSON."""
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Rebuild a configuration from :meth:`to_dict`'s output (unknown keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def model_config(self, classes: int = 1) -> dict:
        """The :func:`cxrmap.models.create_model` keyword arguments of this configuration."""
        return {
            "arch": self.arch,
            "encoder": self.encoder,
            "weights": self.weights,
            "freeze_encoder": self.freeze_encoder,
            "classes": classes,
        }


PRESETS: dict[str, TrainConfig] = {
    "paper": TrainConfig(
        size=224,
        batch_size=32,
        epochs=50,
        lr=1e-4,
        schedule="constant",
        balance=True,
        augment=False,
        folds=5,
        preset="paper",
    ),
    "quick": TrainConfig(
        size=96,
        batch_size=8,
        epochs=9,
        lr=1e-3,
        schedule="cosine",
        balance=True,
        augment=True,
        folds=3,
        dice_smooth=5.0,
        lung_weight=0.1,
        validation_share=0.15,
        phantom_covid=120,
        phantom_control=240,
        preset="quick",
    ),
}


@dataclass(frozen=True)
class ClassifierConfig:
    """Training settings of a classification network (paper Sec. III-A), read by the same loop.

    Attributes:
        epochs: passes over the (balanced) training set.
        lr, betas, weight_decay: Adam's settings.
        batch_size: images per step.
        input_size: side the images are downsampled to when the cache's is larger; None keeps the cache's.
        balance: repeat COVID-19 images (augmented) up to the number of controls, as for segmentation.
        augment: shift/rotate every image, not only the repeats.
        seed: seed of the initial weights, the data order, the repeats and transforms.
        workers: DataLoader worker processes.
        schedule, amp, channels_last, deterministic: as for :class:`TrainConfig` (constant, full precision).
        preset: the preset this configuration came from.
    """

    epochs: int = 10
    lr: float = 1e-5
    batch_size: int = 32
    input_size: int | None = None
    balance: bool = True
    augment: bool = False
    seed: int = 0
    workers: int = 0
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    schedule: str = "constant"
    amp: str = "off"
    channels_last: bool | None = None
    deterministic: bool = False
    preset: str = "custom"

    def __post_init__(self) -> None:
        _check_steps(self)
        if self.input_size is not None and self.input_size < 32:
            raise ModelError(f"input_size must be at least 32 pixels or None, got {self.input_size}")
        if self.amp not in AMP_MODES:
            raise ModelError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.schedule not in SCHEDULES:
            raise ModelError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

    def to_dict(self) -> dict:
        """Plain-python dict (lists for tuples): safe in a ``weights_only`` checkpoint and in JSON."""
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        return data


CLASSIFIER_PRESETS: dict[str, ClassifierConfig] = {
    "paper": ClassifierConfig(preset="paper"),
    "quick": ClassifierConfig(epochs=2, lr=1e-3, batch_size=16, input_size=128, preset="quick"),
}
"""Named classifier settings: ``paper`` as in Sec. III-A, ``quick`` for a CPU demonstration."""


def classifier_config(config, **overrides) -> ClassifierConfig:
    """A :class:`ClassifierConfig` from a preset name, a config, or a segmentation :class:`TrainConfig`.

    A :class:`TrainConfig` gives the classifier preset of the same name (``paper`` for custom ones) with
    the segmentation run's batch size, balancing, augmentation, seed and workers ("other settings of the
    classifiers are kept the same with the segmentation models", Sec. III-A). ``overrides`` come last.

    Raises:
        ModelError: unknown preset or override, or a non-positive epochs/lr/batch size.
    """

    if isinstance(config, TrainConfig):
        config = dataclasses.replace(
            CLASSIFIER_PRESETS.get(config.preset, CLASSIFIER_PRESETS["paper"]),
            batch_size=config.batch_size,
            balance=config.balance,
            augment=config.augment,
            seed=config.seed,
            workers=config.workers,
        )
    if isinstance(config, str):
        if config not in CLASSIFIER_PRESETS:
            raise ModelError(
                f"unknown classifier preset {config!r}; choose one of {', '.join(CLASSIFIER_PRESETS)}"
            )
        config = CLASSIFIER_PRESETS[config]
    if not isinstance(config, ClassifierConfig):
        raise ModelError(
            f"config must be a preset name, a ClassifierConfig or a TrainConfig, got {type(config).__name__}"
        )
    try:
        return dataclasses.replace(config, **overrides)
    except TypeError as error:
        raise ModelError(f"unknown classifier setting: {error}") from error


PRESET_USES = {"paper": "Sec. III-A; GPU", "quick": "2-core CPU, phantom, minutes"}
"""What each preset of :data:`PRESETS` is for, in a few words (help texts)."""


def preset_help() -> str:
    """The presets and their uses for help texts: ``paper (Sec. III-A; GPU) or quick (...)``."""
    return " or ".join(f"{name} ({PRESET_USES[name]})" for name in PRESETS)


def preset_defaults(name: str) -> str:
    """Each preset's value of setting ``name`` for help texts, e.g. ``paper: 50, quick: 9``."""
    values = {preset: getattr(config, name) for preset, config in PRESETS.items()}
    return ", ".join(f"{p}: {v:g}" if isinstance(v, float) else f"{p}: {v}" for p, v in values.items())


def get_preset(name: str, **overrides) -> TrainConfig:
    """The preset ``name`` (``paper`` or ``quick``) with ``overrides`` applied (``None`` values ignored).

    Raises:
        ModelError: an unknown preset name.

    Example:
        >>> get_preset("quick", epochs=2).epochs
        2
    """
    if name not in PRESETS:
        raise ModelError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides)
