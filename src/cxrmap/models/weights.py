"""Pretrained weights: what each file is, where it is looked up, and strict loading into a network.

Each set of pretrained encoder weights is described by one frozen :class:`WeightsSpec`: where the
weights come from, the file to fetch and its expected name, its checksum, the input size it was trained
at and the input convention it expects (ImageNet mean/std, or torchxrayvision's X-ray range
``[-1024, 1024]``). The input convention travels with the encoder, not with the file: a model rebuilt
with ``weights=None`` (e.g. before a checkpoint is loaded into it) normalises exactly like the one that
was trained from pretrained weights.

Offline use (no internet, as on clinical workstations): a weights file is looked up, in this order,

1. in the folder named by the environment variable ``CXRMAP_WEIGHTS_DIR``, under its expected
   file name (:attr:`WeightsSpec.file_name`);
2. in the cache its library uses: torch hub's ``<torch.hub.get_dir()>/checkpoints/`` for ImageNet
   weights, torchxrayvision's ``~/.torchxrayvision/models_data/`` for CheXNet;
3. downloaded from :attr:`WeightsSpec.url` into that cache.

When all three fail the :class:`~cxrmap.core.errors.ModelError` names the URL, the folder to put the file in,
and the alternative of passing a local path (``weights="/path/to/file.pth"``).

Loading is strict: a file whose keys or shapes do not match the network raises a ``ModelError`` listing
the first missing, unexpected and mismatching keys; nothing is ever loaded partially.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torchxrayvision as xrv
from torch import nn

from cxrmap.core.errors import ModelError
from cxrmap.core.progress import is_terminal

ENV_WEIGHTS_DIR = "CXRMAP_WEIGHTS_DIR"
"""Environment variable naming a folder searched first for weights files (by expected file name)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)

_SHOWN_KEYS = 5
"""How many keys of each kind a loading error lists."""


@dataclass(frozen=True)
class WeightsSpec:
    """Metadata of one set of pretrained encoder weights and of the input convention they expect.

    Attributes:
        name: the value of ``weights=`` that selects them (``"imagenet"``, ``"chexnet"``).
        source: where the weights come from, in words.
        url: the file to fetch.
        file_name: the expected file name, looked up in ``$CXRMAP_WEIGHTS_DIR`` and in :attr:`cache`.
        cache: the cache folder of the library that owns the file: ``"torch-hub"`` or ``"torchxrayvision"``.
        file_format: how the file's tensors map onto our encoder: ``"torchvision-densenet"``,
            ``"torchvision-inception"``, ``"timm"`` or ``"torchxrayvision"``.
        channels: input channels of the first convolution (1 for the X-ray models).
        input_size: image size the weights were trained at (any multiple of 32 works; see
            :func:`cxrmap.models.input_multiple`).
        mean, std: per-channel normalisation of a ``[0, 1]`` image, used when :attr:`xray_range` is None.
        xray_range: ``(low, high)`` the ``[0, 1]`` image is mapped to linearly (torchxrayvision uses
            ``(-1024, 1024)``), or None for mean/std normalisation.
        sha256: the file's SHA-256, or its leading hex digits (torch hub file names carry the first 8);
            None where unknown.
    """

    name: str
    source: str
    url: str
    file_name: str
    cache: str
    file_format: str
    channels: int = 3
    input_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    xray_range: tuple[float, float] | None = None
    sha256: str | None = None

    def normalisation(self, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Mean and std that map a ``[0, 1]`` image with ``channels`` channels to this convention.

        The X-ray range becomes a mean/std pair too: ``(x - mean) / std = low + x * (high - low)``.
        For a channel count other than :attr:`channels` (a patched first convolution) every channel gets
        the average of the per-channel values.
        """
        if self.xray_range is not None:
            low, high = self.xray_range
            mean, std = (-low / (high - low),), (1.0 / (high - low),)
        else:
            mean, std = self.mean, self.std
        if len(mean) != channels:
            mean = (sum(mean) / len(mean),) * channels
            std = (sum(std) / len(std),) * channels
        return tuple(mean), tuple(std)


WEIGHTS: dict[str, dict[str, WeightsSpec]] = {
    "densenet121": {
        "imagenet": WeightsSpec(
            name="imagenet",
            source="torchvision DenseNet121_Weights.IMAGENET1K_V1 (ImageNet-1k)",
            url="https://download.pytorch.org/models/densenet121-a639ec97.pth",
            file_name="densenet121-a639ec97.pth",
            cache="torch-hub",
            file_format="torchvision-densenet",
            sha256="a639ec97",
        )
    },
    "chexnet": {
        "chexnet": WeightsSpec(
            name="chexnet",
            source="torchxrayvision densenet121-res224-nih (DenseNet-121 trained on ChestX-ray14)",
            url="https://github.com/mlmed/torchxrayvision/releases/download/v1/"
            "nih-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt",
            file_name="nih-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt",
            cache="torchxrayvision",
            file_format="torchxrayvision",
            channels=1,
            xray_range=(-1024.0, 1024.0),
        )
    },
    "inception_v3": {
        "imagenet": WeightsSpec(
            name="imagenet",
            source="torchvision Inception_V3_Weights.IMAGENET1K_V1 (ImageNet-1k, inputs in [-1, 1])",
            url="https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
            file_name="inception_v3_google-0cc3c7bd.pth",
            cache="torch-hub",
            file_format="torchvision-inception",
            input_size=299,
            mean=INCEPTION_MEAN,
            std=INCEPTION_STD,
            sha256="0cc3c7bd",
        )
    },
    "resnet50": {
        "imagenet": WeightsSpec(
            name="imagenet",
            source="timm resnetv2_50.a1h_in1k (pre-activation ResNet-50, ImageNet-1k)",
            url="https://huggingface.co/timm/resnetv2_50.a1h_in1k/resolve/main/model.safetensors",
            file_name="resnetv2_50.a1h_in1k.safetensors",
            cache="torch-hub",
            file_format="timm",
            mean=INCEPTION_MEAN,
            std=INCEPTION_STD,
        )
    },
}
"""Pretrained weights of the paper's encoders: ``WEIGHTS[encoder][weights_name]``."""

SMP_IMAGENET = WeightsSpec(
    name="imagenet",
    source="segmentation-models-pytorch / timm ImageNet weights (fetched by that library)",
    url="",
    file_name="",
    cache="huggingface",
    file_format="smp",
)
"""Input convention of any other segmentation-models-pytorch encoder (ImageNet mean/std)."""


def cache_dir(spec: WeightsSpec) -> Path:
    """The cache folder of the library that owns ``spec``'s file."""
    if spec.cache == "torchxrayvision":
        from torchxrayvision.utils import get_cache_dir

        return Path(get_cache_dir()).expanduser()
    return Path(torch.hub.get_dir()) / "checkpoints"


def locate(spec: WeightsSpec, encoder: str) -> Path:
    """The local path of ``spec``'s file: ``$CXRMAP_WEIGHTS_DIR``, then the cache, then a download.

    Raises:
        ModelError: the file is nowhere and cannot be downloaded; the message names the URL, the folder
            to put the file in, and the alternative of a local path.
    """
    candidates = []
    folder = os.environ.get(ENV_WEIGHTS_DIR)
    if folder:
        candidates.append(Path(folder).expanduser() / spec.file_name)
    target = cache_dir(spec) / spec.file_name
    candidates.append(target)
    for path in candidates:
        if path.is_file():
            check_sha256(path, spec)
            return path
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        live = is_terminal()
        if not live:  # a log gets one line, not the redrawn frames of a bar
            print(
                f"downloading the {spec.name} weights of {encoder} from {spec.url}",
                file=sys.stderr,
                flush=True,
            )
        torch.hub.download_url_to_file(spec.url, str(target), progress=live)
    except Exception as error:  # network, proxy, disk: all end in the same advice
        searched = ", ".join(str(p.parent) for p in candidates)
        raise ModelError(
            f"the {spec.name!r} weights of encoder {encoder!r} ({spec.source}) are not on this machine "
            f"(looked in {searched}) and could not be downloaded ({type(error).__name__}: {error}).\n"
            f"  fetch: {spec.url}\n"
            f"  and put it at: {target}\n"
            f"  or in the folder named by ${ENV_WEIGHTS_DIR} as {spec.file_name},\n"
            f"  or pass the file itself: weights='/path/to/{spec.file_name}'"
        ) from error
    check_sha256(target, spec)
    return target


def check_sha256(path: Path, spec: WeightsSpec) -> None:
    """Compare ``path``'s SHA-256 with the spec's (full or leading digits); no-op where unknown.

    Raises:
        ModelError: the digests differ (a truncated download or another file under that name).
    """
    if not spec.sha256:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(spec.sha256.lower()):
        raise ModelError(
            f"{path} has SHA-256 {digest.hexdigest()[:16]}..., expected {spec.sha256}...: the file is "
            f"truncated or not {spec.source}; delete it and fetch {spec.url} again"
        )


def refused_code(error: BaseException) -> bool:
    """True when ``torch.load(weights_only=True)`` refused a file for the code objects it would unpickle."""
    return isinstance(error, pickle.UnpicklingError) and "unsupported global" in str(error).lower()


def load_failure(error: BaseException) -> str:
    """``Type: reason`` of a failed ``torch.load``, without torch's advice on turning ``weights_only`` off."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    advice = ("weights only load failed", "please file an issue", "check the documentation of torch.load")
    reasons = [line for line in lines if not line.lower().startswith(advice)]
    return f"{type(error).__name__}: {(reasons or ['no details'])[0][:200]}"


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a weights file: a state dict, or a checkpoint holding one under "state_dict"/"model".

    ``.safetensors`` files are read with safetensors, anything else with
    ``torch.load(weights_only=True)``. A ``module.`` prefix (DistributedDataParallel) is removed.

    Raises:
        ModelError: the file is missing, unreadable, or holds no mapping of names to tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist; pass an existing file or a weights name")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        if refused_code(error):
            raise ModelError(
                f"weights file {path} holds code objects (Python objects other than tensors and plain "
                "values), so it was refused unread; give a state dict saved with "
                "torch.save(model.state_dict(), path)"
            ) from None
        raise ModelError(
            f"cannot read weights file {path} ({load_failure(error)}); expected a state dict or a "
            "checkpoint saved with torch.save (a torchxrayvision model file goes in "
            f"${ENV_WEIGHTS_DIR} with weights='chexnet')"
        ) from error
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(
            f"{path} holds no state dict (a mapping of parameter names to tensors, possibly under "
            "'state_dict' or 'model'); save one with torch.save(model.state_dict(), path)"
        )
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``module``, all or nothing.

    Only ``num_batches_tracked`` counters (absent from old files) may be missing. Tensors are copied
    into the module's own (so a frozen or moved module keeps its device and ``requires_grad``).

    Args:
        module: the network or encoder to fill.
        state: name -> tensor.
        what: what is loaded, for the error message (e.g. ``"densenet121-a639ec97.pth into the encoder"``).

    Raises:
        ModelError: listing the first missing, unexpected and shape-mismatching keys.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (("shape mismatch", mismatched), ("missing", missing), ("unexpected", unexpected)):
            if keys:
                more = f" (+{len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else ""
                parts.append(f"  {label} [{len(keys)}]: " + "; ".join(keys[:_SHOWN_KEYS]) + more)
        raise ModelError(
            f"cannot load {what}: the file does not fit this network (nothing was loaded).\n"
            + "\n".join(parts)
            + "\n  check that the file was saved from the same architecture, encoder, in_channels and classes"
        )
    full = {k: state.get(k, expected[k]) for k in expected}
    module.load_state_dict(full, strict=True)


_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def convert(spec: WeightsSpec, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a pretrained file's tensors onto our encoder's names (classifier heads dropped).

    ``torchvision-densenet``: old ``norm.1`` names become ``norm1`` (as torchvision does);
    ``torchvision-inception``: ``fc`` and ``AuxLogits`` dropped; ``timm``: ``head``/``fc`` dropped;
    ``torchxrayvision``: the ``features`` tensors of the X-ray DenseNet.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if spec.file_format == "torchvision-densenet":
            match = _OLD_DENSENET_KEY.match(key)
            key = match.group(1) + match.group(2) if match else key
            drop = key.startswith("classifier.")
        elif spec.file_format == "torchvision-inception":
            drop = key.startswith(("fc.", "AuxLogits."))
        elif spec.file_format == "torchxrayvision":
            drop = not key.startswith("features.")
        else:
            drop = key.startswith(("head.", "fc."))
        if not drop:
            out[key] = value
    return out


def read_pretrained(spec: WeightsSpec, encoder: str) -> dict[str, torch.Tensor]:
    """Locate (or download) ``spec``'s file and return its tensors under our encoder's names."""
    path = locate(spec, encoder)
    xrv = spec.file_format == "torchxrayvision"
    return convert(spec, _read_torchxrayvision(path) if xrv else read_state_dict(path))


def _read_torchxrayvision(path: Path) -> dict[str, torch.Tensor]:
    """State dict of a torchxrayvision DenseNet file, read by torchxrayvision itself.

    Its files are pickled whole models (not plain state dicts), so the library's own loader reads them;
    ``path`` must carry the library's file name (it is looked up by that name in its folder).
    """

    name = next(k for k, v in xrv.models.model_urls.items() if Path(v["weights_url"]).name == path.name)
    try:
        model = xrv.models.DenseNet(weights=name, cache_dir=str(path.parent))
    except Exception as error:
        raise ModelError(
            f"torchxrayvision could not read {path} ({type(error).__name__}: {error}); delete it and fetch "
            f"{xrv.models.model_urls[name]['weights_url']} again"
        ) from error
    return {k: v for k, v in model.state_dict().items() if k.startswith("features.")}
