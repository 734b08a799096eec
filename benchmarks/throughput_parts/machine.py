"""The machine: the matmul ceiling, how busy it was, the CPU's name."""

from __future__ import annotations

import os
import re
import resource
import time
from pathlib import Path
from typing import Any

from .spec import HIDDEN


def matmul_gflops(threads: int, seconds: float = 1.0, device: str = "cpu") -> float:
    """fp32 GEMM rate at the MLP's shape (batch 4096, 400 x 400): the ceiling's denominator."""
    import torch

    torch.set_num_threads(threads)
    a = torch.randn(4096, HIDDEN[0], device=device)
    b = torch.randn(HIDDEN[0], HIDDEN[1], device=device)
    sync = torch.cuda.synchronize if device != "cpu" else (lambda: None)
    best = 0.0
    for _ in range(3):
        for _ in range(3):
            a @ b
        sync()
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            for _ in range(10 if device != "cpu" else 1):  # a GPU: amortise the sync
                a @ b
                reps += 1
            sync()
        rate = 2 * a.shape[0] * a.shape[1] * b.shape[1] * reps / (time.perf_counter() - start)
        best = max(best, rate / 1e9)
    return best


def busy_cpu_seconds() -> float:
    """CPU seconds every process on the machine has used since boot (from /proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_name() -> str:
    from widedeep.core.cpu import cpu_name as name

    return name()


def cpu_report(device: str = "cpu") -> dict[str, Any]:
    """The CPU's name, cores and the reported flags it has (the parent runs in widedeep's env);
    with a GPU device, its name and whether it computes bf16 (``bf16`` then is the GPU's)."""
    from widedeep.core.cpu import REPORTED_FLAGS, cpu_flags, cpu_has_bf16

    flags = cpu_flags()
    out: dict[str, Any] = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "flags": [f for f in REPORTED_FLAGS if f in flags],
        "bf16": cpu_has_bf16(),
        "gpu": None,
    }
    if device != "cpu":
        import torch

        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
        out["bf16"] = torch.cuda.is_bf16_supported()
    return out


def cpu_slug(name: str) -> str:
    """A file-name part for the CPU: ``throughput-amd-epyc.md``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "cpu"
