"""Freed memory kept in the process on Linux CPUs, so a training step does not give its gradient
buffers back to the kernel only to fault them in again on the next step.

glibc's malloc serves large blocks (the 3-layer MiniLM student's 47 MB word-embedding gradient,
activations) by mmap and returns them with munmap when they are freed; every step then pays for
fresh zeroed pages (profiled: `fill_` and `zero_grad` took 18% of a bf16 logit-KD step on 2
cores). Raising malloc's mmap and trim thresholds keeps those pages for reuse: +27% examples/s for
that step (3,200 SST-2 sentences, separate processes with and without, alternating). What torch's CPU
tuning guide gets from preloading jemalloc or tcmalloc, without a preload. The cost: memory freed
stays with the process, and a heap that holds blocks of changing sizes settles somewhat above the
working set (freeing and allocating 64 MB blocks beside small ones: +194 MB, then no growth).
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
KEEP_BYTES = 1 << 30  # blocks up to 1 GiB come from the heap, and up to 2 GiB of free heap is kept


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed blocks; False where the C library is not glibc (macOS, musl)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, 2 * KEEP_BYTES))
