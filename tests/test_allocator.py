"""A run on the CPU keeps freed memory in the process (glibc's malloc thresholds), so each training step
reuses the pages of the last instead of faulting in new ones: checked by the resident memory after a
large tensor is freed, before and after the run's accelerator is made, in a fresh process."""

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import psutil, torch
    from bequest.config import RuntimeConfig
    from bequest.train.runtime import make_accelerator

    def kept_mb():
        process = psutil.Process()
        before = process.memory_info().rss
        block = torch.ones(64 << 18)  # 64 MB: above glibc's default mmap threshold
        del block
        return (process.memory_info().rss - before) >> 20

    print(kept_mb())
    make_accelerator(RuntimeConfig(precision="fp32"))
    first = kept_mb()
    sum(kept_mb() for _ in range(10))
    print(first, sum(kept_mb() for _ in range(20)))  # once the heap holds the blocks, it stops growing
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_cpu_run_keeps_freed_blocks_for_reuse():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    default, (first, later) = (line.split() for line in result.stdout.splitlines()[-2:])
    assert int(default[0]) < 8, result.stdout  # given back to the kernel on free
    assert int(first) >= 60, result.stdout  # kept by the process...
    assert int(later) < 8, result.stdout  # ...and reused: twenty more blocks of that size add nothing
