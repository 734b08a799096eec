"""The CPU: its name and the instruction-set flags that decide which number formats are fast."""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path

# The flags the benchmark reports (/proc/cpuinfo's names): fp32 vector width, and bf16 in
# hardware (avx512_bf16: Cooper Lake, Zen 4 and later; amx_bf16: Sapphire Rapids and later).
REPORTED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux
        return ""


def cpu_name() -> str:
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def cpu_flags() -> set[str]:
    """The first core's flags (every core of a machine has the same); empty where unknown."""
    for line in _cpuinfo().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 in hardware (else torch emulates it, slower than fp32)."""
    return bool(cpu_flags() & set(BF16_FLAGS))
