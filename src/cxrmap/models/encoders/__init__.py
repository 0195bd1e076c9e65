"""Encoders: the paper's four (Sec. II-C.2) and any encoder segmentation-models-pytorch offers.

Every encoder follows segmentation-models-pytorch's contract: ``forward(x)`` returns ``depth + 1 = 6``
tensors (the input, then strides 2, 4, 8, 16, 32) and ``out_channels`` gives their channel counts. The
decoders (:mod:`cxrmap.models.decoders`) take nothing else.

=============  ==============================================  ======================  =========
name           network                                         skip channels           weights
=============  ==============================================  ======================  =========
densenet121    DenseNet-121, Keras skip taps                   64, 128, 256, 512, 1024  imagenet
chexnet        the same DenseNet-121, one input channel        64, 128, 256, 512, 1024  chexnet
inception_v3   Inception-v3, 'same' padding                    64, 192, 288, 768, 2048  imagenet
resnet50       pre-activation ResNet-50 (v2), Keras skip taps  64, 256, 512, 1024, 2048 imagenet
other names    ``smp.encoders.get_encoder(name)``, e.g. ``resnet18``, ``efficientnet-b0``, ``tu-<timm model>``
=============  ==============================================  ======================  =========
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from segmentation_models_pytorch.encoders import get_encoder, get_encoder_names
from segmentation_models_pytorch.encoders._utils import patch_first_conv
from torch import nn

from cxrmap.core.errors import ModelError
from cxrmap.models.encoders.densenet import DenseNetEncoder
from cxrmap.models.encoders.inception import InceptionV3Encoder
from cxrmap.models.encoders.resnet import PreActResNet50Encoder
from cxrmap.models.weights import SMP_IMAGENET, WEIGHTS, WeightsSpec, load_strict, read_pretrained

DEPTH = 5
"""Encoder depth: five down-samplings, output stride 32."""


@dataclass(frozen=True)
class EncoderInfo:
    """One of the paper's encoders: its title, how to build it and its input convention."""

    name: str
    title: str
    build: Callable[[int], nn.Module]
    convention: WeightsSpec
    """Weights whose input convention (channels, normalisation) the encoder always uses."""


def _densenet(channels: int) -> nn.Module:

    return DenseNetEncoder(channels)


def _inception(channels: int) -> nn.Module:

    return InceptionV3Encoder(channels)


def _resnet(channels: int) -> nn.Module:

    return PreActResNet50Encoder(channels)


PAPER_ENCODERS: dict[str, EncoderInfo] = {
    "chexnet": EncoderInfo("chexnet", "CheXNet", _densenet, WEIGHTS["chexnet"]["chexnet"]),
    "densenet121": EncoderInfo("densenet121", "DenseNet-121", _densenet, WEIGHTS["densenet121"]["imagenet"]),
    "inception_v3": EncoderInfo(
        "inception_v3", "Inception-v3", _inception, WEIGHTS["inception_v3"]["imagenet"]
    ),
    "resnet50": EncoderInfo("resnet50", "ResNet-50", _resnet, WEIGHTS["resnet50"]["imagenet"]),
}

ENCODERS: tuple[str, ...] = tuple(PAPER_ENCODERS)
"""The paper's encoders, in the order of Table VIII's rows."""

ENCODER_TITLES: dict[str, str] = {name: info.title for name, info in PAPER_ENCODERS.items()}
"""The paper's names of its encoders (``densenet121`` -> ``DenseNet-121``), as in its tables."""


def _unknown_encoder(name: str, reason: str = "") -> ModelError:
    return ModelError(
        f"unknown encoder {name!r}{reason}; expected one of the paper's encoders ({', '.join(ENCODERS)}), "
        "an encoder of segmentation-models-pytorch (e.g. resnet18, resnet34, efficientnet-b0, mobilenet_v2; "
        "all: segmentation_models_pytorch.encoders.get_encoder_names()) or 'tu-<timm model name>'"
    )


def check_encoder(name: str) -> None:
    """Raise :class:`ModelError` listing the valid names when ``name`` is no known encoder."""
    if not isinstance(name, str):
        raise _unknown_encoder(repr(name))
    if name in PAPER_ENCODERS:
        return
    if name.startswith("tu-"):
        import timm

        if not timm.is_model(name[3:]):
            raise _unknown_encoder(name, f" (timm has no model {name[3:]!r}; see timm.list_models())")
        return

    if name not in get_encoder_names():
        raise _unknown_encoder(name)


def convention(name: str) -> WeightsSpec:
    """The input convention (channels, normalisation) of encoder ``name``."""
    if name in PAPER_ENCODERS:
        return PAPER_ENCODERS[name].convention
    if name.startswith("tu-"):
        import timm

        cfg = timm.models.get_pretrained_cfg(name[3:])
        if cfg is not None and len(cfg.mean) == 3:
            return WeightsSpec(**{**SMP_IMAGENET.__dict__, "mean": tuple(cfg.mean), "std": tuple(cfg.std)})
    return SMP_IMAGENET


def weights_names(name: str) -> tuple[str, ...]:
    """Names ``weights=`` accepts for encoder ``name`` (besides None and a file path)."""
    if name in PAPER_ENCODERS:
        return tuple(WEIGHTS[name])
    return ("imagenet",)


def encoder_channels(name: str, in_channels: int) -> int:
    """Channels the encoder's first convolution takes for a model accepting ``in_channels``.

    The input adapter turns 1 or 3 channels into the encoder's own (3 for ImageNet weights, 1 for
    CheXNet) so pretrained first convolutions stay as trained; other counts patch the first convolution.
    """
    native = convention(name).channels
    return native if in_channels in (1, 3) else in_channels


def build_encoder(name: str, in_channels: int = 3, weights: str | None = None) -> nn.Module:
    """Build encoder ``name`` with its first convolution taking ``encoder_channels(name, in_channels)``.

    Args:
        name: a name of :data:`ENCODERS`, a segmentation-models-pytorch encoder, or ``tu-<timm model>``.
        in_channels: channels of the images the model accepts (see :func:`encoder_channels`).
        weights: None (random), or one of :func:`weights_names` (``"imagenet"``, ``"chexnet"``).

    Returns:
        an ``nn.Module`` with ``out_channels`` (6 entries) whose forward returns 6 feature maps.

    Raises:
        ModelError: unknown encoder or weights name, or weights that cannot be found or do not fit.
    """
    check_encoder(name)
    if weights is not None and weights not in weights_names(name):
        raise ModelError(
            f"encoder {name!r} has no weights {weights!r}; expected one of {list(weights_names(name))}, "
            "None (random initialisation) or the path of a weights file"
        )
    channels = encoder_channels(name, in_channels)
    if name not in PAPER_ENCODERS:
        return _smp_encoder(name, channels, weights)
    info = PAPER_ENCODERS[name]
    native = info.convention.channels
    encoder = info.build(native)
    if weights is not None:
        spec = WEIGHTS[name][weights]
        state = read_pretrained(spec, name)
        load_strict(encoder, state, f"{spec.file_name} into the {name} encoder")
    if channels != native:
        # smp's own: pretrained kernels repeated over the new channels and scaled by native / channels (a
        # grey image's response stays the same), random ones re-initialised.
        patch_first_conv(encoder, channels, native, pretrained=weights is not None)
        encoder.out_channels = (channels, *encoder.out_channels[1:])
    return encoder


def _smp_encoder(name: str, channels: int, weights: str | None) -> nn.Module:
    """A segmentation-models-pytorch encoder (``tu-`` names through timm), errors as ModelError."""

    smp_weights = None if weights is None else (True if name.startswith("tu-") else weights)
    try:
        return get_encoder(name, in_channels=channels, depth=DEPTH, weights=smp_weights)
    except (KeyError, ValueError) as error:
        raise ModelError(f"segmentation-models-pytorch cannot build encoder {name!r}: {error}") from error
    except Exception as error:  # download failures: requests / huggingface_hub / OSError
        raise ModelError(
            f"the {weights!r} weights of encoder {name!r} could not be fetched ({type(error).__name__}: "
            f"{error}); segmentation-models-pytorch downloads them from the Hugging Face Hub: run once on a "
            "connected machine and copy its cache (~/.cache/huggingface/hub, set HF_HUB_OFFLINE=1), or "
            "pass a local weights file: weights='/path/to/encoder.pth'"
        ) from error
