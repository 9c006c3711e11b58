"""The allocator settings of a pruning worker (runners/training/memory.py): with a fixed 1 MiB mmap threshold, a
block of activations freed at the end of a step goes back to the OS instead of staying on the heap."""

from __future__ import annotations

import subprocess
import sys

import pytest

from runners.training.memory import _libc

CODE = """
import sys, torch
sys.path.insert(0, {root!r})
from runners.training.memory import limit_heap_retention
def rss():
    return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) // 1024
if {limit}:
    assert limit_heap_retention()
torch.empty(8 << 20, dtype=torch.uint8).fill_(1)  # a large block come and gone: glibc raises its threshold
base = rss()
big, small = [], []
for k in range(60):  # ~180 MB of activations, each followed by a small block that stays (fragmentation)
    big.append(torch.empty(3_000_000 + 4096 * k, dtype=torch.uint8).fill_(1))
    small.append(torch.empty(70_000, dtype=torch.uint8).fill_(1))
held = rss()
del big
print(base, held, rss())
"""


@pytest.mark.skipif(_libc() is None, reason="glibc's mallopt and malloc_trim: not this platform's C library")
def test_freed_blocks_go_back_to_the_os_with_a_fixed_threshold():
    from tests.helpers import PROJECT_ROOT

    def run(limit: bool) -> tuple[int, int, int]:
        code = CODE.format(root=str(PROJECT_ROOT), limit=limit)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
        return tuple(int(x) for x in out.stdout.split())

    base, held, after = run(limit=True)
    assert held - base > 150  # the blocks were resident
    assert after - base < 30  # and each went back to the OS when freed
    base, held, after = run(limit=False)  # glibc's own rule keeps them on the heap, behind the small blocks
    assert held - base > 150 and after - base > 150
