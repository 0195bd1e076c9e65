"""Where and how the tensors are computed: the device, mixed precision, memory format and threads.

Every layer that runs a network (training, inference, Grad-CAM) asks here, so a machine's choice is made
once, from what the machine has:

- bf16 autocast only where the hardware has bf16: a GPU, or a CPU with native bf16 instructions
  (AVX-512 BF16 or AMX, read from the CPU flags), never by guess;
- channels_last on GPUs only: on CPUs ``benchmarks/bench_speed.py`` measured it within 1.1-1.3x of the
  default layout on a quiet machine (DenseNet-121 U-Net, training and inference) and 0.4-0.7x under
  load from other processes, a gain too small and unsteady to choose for anyone;
- one compute thread per physical core (hyper-threads share a core's vector units and gain nothing).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from cxrmap.core.errors import ModelError


def resolve_device(device: str | None = None) -> torch.device:
    """``torch.device(device)``, or the first GPU when there is one and ``device`` is ``None``/``auto``."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_amp(mode: str | bool, device) -> torch.dtype | None:
    """The autocast dtype of a mixed-precision ``mode`` on ``device``, or ``None`` for full precision.

    Args:
        mode: ``auto`` (bf16 on CPUs with native bf16, :func:`native_cpu_bf16`, and on GPUs that support
            it, fp16 on other GPUs, else off), ``bf16``, ``fp16`` (GPUs only), ``off``; True means
            ``auto``, False ``off``.
        device: the device computing.

    Raises:
        ModelError: ``fp16`` on a CPU, or an unknown mode.
    """
    device = torch.device(device)
    mode = {True: "auto", False: "off"}.get(mode, mode)
    cuda = device.type == "cuda"
    if mode == "off":
        return None
    if mode == "fp16":
        if not cuda:
            raise ModelError("fp16 mixed precision needs a GPU; on a CPU use amp 'bf16' or 'off'")
        return torch.float16
    if mode == "bf16":
        return torch.bfloat16
    if mode == "auto":
        if cuda:
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if native_cpu_bf16() else None
    raise ModelError(f"unknown mixed-precision mode {mode!r}; use auto, bf16, fp16 or off")


def autocast(device, dtype: torch.dtype | None):
    """``torch.autocast`` on ``device``'s type with ``dtype``; a null context when ``dtype`` is ``None``."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
"""The CPU flags that decide the fast paths (``/proc/cpuinfo`` names)."""


@dataclass(frozen=True)
class Machine:
    """What this machine computes with.

    Attributes:
        cpu: the CPU model name.
        features: which of :data:`CPU_FEATURES` the CPU has.
        physical_cores: cores this process may use, hyper-threads counted once.
        logical_cores: logical CPUs this process may use.
        memory_gib: physical memory, GiB (None where unknown).
        gpus: names of the CUDA devices.
    """

    cpu: str
    features: tuple[str, ...]
    physical_cores: int
    logical_cores: int
    memory_gib: float | None
    gpus: tuple[str, ...]

    def key(self) -> str:
        """A short hash of the machine and the torch build: what is measured here holds where it matches."""
        text = f"{self}|torch {torch.__version__}|{platform.machine()}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_cpuinfo(text: str, allowed: set[int] | None = None) -> tuple[str, set[str], int, int]:
    """``(model name, flags, physical cores, logical CPUs)`` of ``/proc/cpuinfo`` text.

    Only the processors in ``allowed`` (this process's CPU affinity) count when it is given; a core is a
    distinct ``(physical id, core id)`` pair, so hyper-threads of one core count once.
    """
    model, flags, cores, logical = "", set(), set(), 0
    for block in text.strip().split("\n\n"):
        fields = {}
        for line in block.splitlines():
            name, _, value = line.partition(":")
            fields[name.strip()] = value.strip()
        if "processor" not in fields or (allowed is not None and int(fields["processor"]) not in allowed):
            continue
        logical += 1
        model = model or fields.get("model name", "")
        flags |= set(fields.get("flags", "").split())
        cores.add((fields.get("physical id", "0"), fields.get("core id", fields["processor"])))
    return model, flags, len(cores), logical


@functools.lru_cache(maxsize=1)
def machine() -> Machine:
    """This machine's CPU, cores, memory and GPUs (read once per process)."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no flags, so no native bf16 is assumed
        text = ""
    model, flags, physical, logical = parse_cpuinfo(text, allowed)
    logical = logical or (len(allowed) if allowed else os.cpu_count() or 1)
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory = None
    gpus = tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return Machine(
        cpu=model or platform.processor() or "unknown",
        features=tuple(name for name in CPU_FEATURES if name in flags),
        physical_cores=physical or logical,
        logical_cores=logical,
        memory_gib=None if memory is None else round(memory, 1),
        gpus=gpus,
    )


def native_cpu_bf16() -> bool:
    """The CPU computes bf16 natively (AVX-512 BF16 or AMX); elsewhere bf16 is emulated and slower."""
    return bool({"avx512_bf16", "amx_bf16"} & set(machine().features))


def default_threads() -> int:
    """Compute threads for this process: one per physical core it may use."""
    return machine().physical_cores


def resolve_channels_last(device, choice: bool | None = None) -> bool:
    """Whether convolutions run in channels_last: ``choice``, or by default on GPUs only (module notes)."""
    if choice is not None:
        return bool(choice)
    return torch.device(device).type == "cuda"
