"""The options the commands share, and the checks of every option, run where the option is parsed.

Each ``*_option()`` returns a fresh :func:`typer.Option` whose callback refuses a bad value before the
command starts any work; :func:`cxrmap.cli.main` prints the :class:`~cxrmap.core.errors.OptionError` as
``error: ...`` (exit code 2). The common options mean the same everywhere: ``-q``/``--quiet`` turns
progress bars off, ``--device`` picks the torch device, ``-o``/``--out`` names the output folder.
Heavy modules (torch, the model registry) are imported inside the checks, so ``cxrmap --help`` stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from cxrmap.core.errors import CxrmapError, OptionError
from cxrmap.train.presets import preset_defaults

MIN_SIZE, MAX_SIZE, SIZE_MULTIPLE = 32, 4096, 32
"""Network input sides accepted by --size (the encoders downsample 32 times)."""

_DEVICE_TYPES = ("cpu", "cuda", "mps")


def check_device(value: str | None, option: str = "--device") -> str | None:
    """``value`` if it names a torch device this machine has (``None``/``auto``: chosen later)."""
    if value is None or value == "auto":
        return value
    import torch  # heavy: only when a device is given

    try:
        device = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        device = None
    if device is None or device.type not in _DEVICE_TYPES:
        raise OptionError(f"{option} {value!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise OptionError(f"{option} {value}: this machine has no usable CUDA GPU; use {option} cpu")
        if device.index is not None and device.index >= count:
            raise OptionError(
                f"{option} {value}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise OptionError(f"{option} mps: this machine has no Apple GPU (MPS); use {option} cpu")
    return value


def check_size(value: int | None, option: str = "--size") -> int | None:
    """A network input side: a multiple of 32 in [32, 4096]."""
    if value is None:
        return value
    if not MIN_SIZE <= value <= MAX_SIZE or value % SIZE_MULTIPLE:
        raise OptionError(
            f"{option} {value} is not a network input side; give a multiple of {SIZE_MULTIPLE} from "
            f"{MIN_SIZE} to {MAX_SIZE} (the paper uses 224)"
        )
    return value


def check_folds(value: int | None, option: str = "--folds", allow_none: bool = False) -> int | None:
    """A number of cross-validation folds: at least 2 (0 too where ``allow_none``: no folds)."""
    if value is None or (allow_none and value == 0):
        return value
    if value < 2:
        none = " (or 0 for no folds)" if allow_none else ""
        raise OptionError(
            f"{option} {value}: cross-validation needs at least 2 folds{none}; the paper uses 5"
        )
    return value


def check_names(value: str | list[str] | None, kind: str, option: str) -> str | list[str] | None:
    """Comma-separated (or repeated) architecture or encoder names, each known to cxrmap."""
    if value is None:
        return value
    names = [
        part.strip() for item in ([value] if isinstance(value, str) else value) for part in item.split(",")
    ]
    if not any(names) or not all(names):
        raise OptionError(f"{option} {value!r} holds an empty name; give names separated by commas")
    from cxrmap.models.encoders import check_encoder  # heavy: the model registry
    from cxrmap.models.segmentation import ARCHS

    for name in names:
        if kind == "arch" and name not in ARCHS:
            raise OptionError(f"{option} {name!r} is no architecture; choose from {', '.join(ARCHS)}")
        if kind == "encoder":
            try:
                check_encoder(name)
            except CxrmapError as error:
                raise OptionError(f"{option}: {error}") from None
    return value


def check_phantom_kind(value: str) -> str:
    """Refuse a phantom kind that no generator draws (:data:`cxrmap.data.phantom.GENERATORS`)."""
    kinds = ("shapes", "ct")
    if value not in kinds:
        raise OptionError(f"--phantom {value!r} is no phantom kind; choose from {', '.join(kinds)}")
    return value


def check_out_folder(value: Path | None, option: str = "--out") -> Path | None:
    """An output folder: missing (it is created) or an existing folder, never a file."""
    if value is not None and value.exists() and not value.is_dir():
        raise OptionError(f"{option} {value} is a file; give a folder (it is created if missing)")
    return value


def check_manifest(value: Path | None, option: str = "--manifest") -> Path | None:
    """A manifest CSV that exists and holds text (see :func:`cxrmap.data.manifest.check_manifest_file`)."""
    if value is None:
        return value
    from cxrmap.data.manifest import check_manifest_file

    try:
        check_manifest_file(value)
    except CxrmapError as error:
        raise OptionError(f"{option}: {error}") from None
    return value


def memory_available() -> int | None:
    """Bytes of memory available to a new allocation (MemAvailable on Linux, else physical), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(needed: int, what: str, fix: str) -> None:
    """Refuse work whose estimated memory ``needed`` (bytes) exceeds what this machine has available."""
    available = memory_available()
    if available is not None and needed > available:
        raise OptionError(
            f"{what} needs about {_bytes(needed)} of memory, more than the {_bytes(available)} "
            f"available; {fix}"
        )


def _bytes(value: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if value < 1000 or unit == "PB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


# ------------------------------------------------------------------------------ the shared options


def quiet_option() -> bool:
    """``-q``/``--quiet``: no progress bars (the same on every command)."""
    return typer.Option(False, "--quiet", "-q", "--no-progress", help="No progress bars.")


def device_option(default: str | None = None) -> str | None:
    """``--device``: auto, cpu, cuda, cuda:N or mps, checked against this machine."""
    return typer.Option(
        default,
        "--device",
        help="Torch device: auto, cpu, cuda, cuda:N, mps (auto: a GPU if there is one).",
        callback=lambda value: check_device(value),
    )


def out_folder_option(help: str, default: Path | None = ..., **kwargs) -> Path:
    """``-o``/``--out``: the output folder (created if missing; an existing file is refused)."""
    return typer.Option(
        default, "--out", "-o", help=help, callback=lambda value: check_out_folder(value), **kwargs
    )


def manifest_option() -> Path:
    """``--manifest``: a manifest CSV written by ``cxrmap index``."""
    return typer.Option(
        ..., "--manifest", help="Manifest CSV (`cxrmap index`).", callback=lambda value: check_manifest(value)
    )


def size_option(help: str) -> int | None:
    """``--size``: the network input side, a multiple of 32."""
    return typer.Option(None, "--size", help=help, callback=lambda value: check_size(value))


def backend_option(default: str = "torch") -> str:
    """``--backend``: the inference backend of the evaluation or prediction passes."""
    return typer.Option(
        default,
        "--backend",
        help="Inference backend: torch, onnx, onnx-int8, torch-bf16, torch-compile, or auto (the fastest "
        "that passes the parity gate here; `cxrmap doctor` lists what this machine has).",
    )


def validation_share_option() -> float | None:
    """``--validation-share``: training images set aside to choose a detection rule beside the paper's."""
    return typer.Option(
        None,
        "--validation-share",
        min=0.0,
        max=0.9,
        help="Share of the training images set aside (not trained on) to choose a detection threshold and "
        "minimum infected area, reported beside the paper's rule as detection_validated; 0 trains on all "
        f"(default: the preset's, {preset_defaults('validation_share')}).",
    )


def workers_option() -> int | None:
    """``--workers``: DataLoader worker processes, 0 or more."""
    return typer.Option(
        None, "--workers", min=0, help="DataLoader worker processes (0: in the main process)."
    )


def arch_option(default: str = "unet", option: str = "--arch") -> str:
    """An architecture name (comma-separated for ``--archs``), checked against :data:`ARCHS`."""
    return typer.Option(
        default,
        option,
        help="unet, unetplusplus or dla.",
        callback=lambda value: check_names(value, "arch", option),
    )


def encoder_option(
    default: str | None = "densenet121", option: str = "--encoder", help: str | None = None
) -> str:
    """An encoder name (comma-separated for ``--encoders``/``--classifiers``), checked before any work."""
    return typer.Option(
        default,
        option,
        help=help or "densenet121, chexnet, inception_v3, resnet50 or a segmentation-models-pytorch encoder.",
        callback=lambda value: check_names(value, "encoder", option),
    )
