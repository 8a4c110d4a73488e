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
    print(kept_mb(), kept_mb())
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_cpu_run_keeps_freed_blocks_for_reuse():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    default, (first, second) = (line.split() for line in result.stdout.splitlines()[-2:])
    assert int(default[0]) < 8  # given back to the kernel on free
    assert int(first) >= 60  # kept by the process...
    assert int(second) < 8  # ...and reused by the next allocation of that size, not added to
