"""Keep freed memory in the process instead of handing it back to the kernel after every batch.

Every training step and every inference batch allocates and frees the same large activations
(a (B, 400) float32 buffer is 13 MB at B = 8192). glibc's malloc returns such memory to the
kernel when it is freed (heap trimming, or munmap above its mmap threshold), so the next batch
takes page faults and zeroes the same megabytes again: up to ~10,000 faults per batch and a
quarter of the inference time in benchmarks/throughput.py, varying with the heap's layout.
Raising the two thresholds makes freed chunks stay in the heap and get reused.
"""

from __future__ import annotations

import ctypes
import os
import sys

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc refuses an mmap threshold above half its 64 MiB heap size: the largest it accepts.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30  # keep up to 1 GiB of free memory at the top of the heap
OPT_OUT = "WIDEDEEP_MALLOC"  # "system": leave malloc as it is
# The same settings for a process started with them in its environment (glibc reads these at
# start): for a child that does not import widedeep.
MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
    "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD),
}


def keep_freed_memory() -> bool:
    """Set glibc's malloc to keep freed blocks of up to 32 MiB for reuse; True if it took.

    Process-wide and permanent, so the command-line tools (``widedeep-train``,
    ``widedeep-predict``, ``widedeep-bench``) call it at start and a library user may call it
    in their own script. Chunks above 32 MiB are still mapped and unmapped per allocation.
    Peak memory is unchanged (the freed blocks were in use a moment before); the process just
    does not shrink between batches. A no-op returning False off glibc (macOS, musl) or with
    ``WIDEDEEP_MALLOC=system`` in the environment; any other value of it is an error.
    """
    choice = os.environ.get(OPT_OUT, "")
    if choice not in ("", "system"):
        raise ValueError(f"{OPT_OUT}={choice!r}: unknown value; unset it, or 'system' to opt out")
    if choice == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # glibc's; musl has no mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and (
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    )
