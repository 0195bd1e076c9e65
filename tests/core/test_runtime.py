"""Hardware-aware defaults: CPU flags and cores from /proc/cpuinfo, bf16 only where native, channels_last."""

from __future__ import annotations

import pytest
import torch

from cxrmap.core import runtime
from cxrmap.core.runtime import Machine, parse_cpuinfo, resolve_amp, resolve_channels_last

# Two cores with two hyper-threads each: processors 0/2 share core 0, 1/3 share core 1.
CPUINFO = "\n\n".join(
    f"processor\t: {cpu}\nmodel name\t: Test CPU 9000\nphysical id\t: 0\ncore id\t\t: {cpu % 2}\n"
    f"flags\t\t: fpu sse avx2 avx512f{' avx512_bf16 amx_bf16' if cpu else ''}"
    for cpu in range(4)
)


def test_parse_cpuinfo_counts_cores_once_and_reads_flags():
    model, flags, physical, logical = parse_cpuinfo(CPUINFO)
    assert (model, physical, logical) == ("Test CPU 9000", 2, 4)
    assert {"avx2", "avx512f", "avx512_bf16", "amx_bf16"} <= flags
    # Only the processors this process may run on count: 0 and 2 are one core.
    assert parse_cpuinfo(CPUINFO, allowed={0, 2})[2:] == (1, 2)
    assert parse_cpuinfo(CPUINFO, allowed={0})[1] == {"fpu", "sse", "avx2", "avx512f"}


@pytest.mark.parametrize(("features", "expected"), [((), None), (("avx2", "avx512f"), None),
                                                     (("avx512_bf16",), torch.bfloat16),
                                                     (("amx_bf16",), torch.bfloat16)])  # fmt: skip
def test_bf16_autocast_only_where_native(monkeypatch, features, expected):
    fake = Machine("cpu", features, 4, 8, 16.0, ())
    monkeypatch.setattr(runtime, "machine", lambda: fake)
    assert resolve_amp("auto", "cpu") is expected
    assert resolve_amp("bf16", "cpu") is torch.bfloat16  # asked for explicitly: always
    assert resolve_amp("off", "cpu") is None
    assert runtime.default_threads() == 4


def test_channels_last_on_gpus_only_unless_asked():
    assert resolve_channels_last("cpu") is False and resolve_channels_last("cuda") is True
    assert resolve_channels_last("cpu", True) is True and resolve_channels_last("cuda", False) is False


def test_machine_describes_this_one():
    info = runtime.machine()
    assert info.physical_cores >= 1 and info.logical_cores >= info.physical_cores
    assert set(info.features) <= set(runtime.CPU_FEATURES)
    assert len(info.key()) == 16 and info.key() == runtime.machine().key()
