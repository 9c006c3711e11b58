"""The allocator settings of a pruning worker (runners/training/memory.py): with a fixed 1 MiB mmap threshold, a
block of activations freed at the end of a step goes back to the OS instead of staying on the heap; the threshold
holds only inside `bounded_heap` (while L0 prunes), since it makes every training step dearer."""

from __future__ import annotations

import pytest

from runners.training.memory import _libc
from tests import preloaded

GLIBC = pytest.mark.skipif(
    _libc() is None or not hasattr(_libc(), "mallinfo2"),
    reason="glibc's mallopt, malloc_trim and mallinfo2 (glibc >= 2.33): not this platform's C library",
)

# Each measurement runs in a process of its own, forked from the tests' preloaded server (tests/preloaded.py) as the
# pruning workers are forked from theirs: torch already imported, glibc's allocator as the imports left it.
# What both child processes start with: glibc's mallinfo2 (glibc >= 2.33)
PRELUDE = """
import ctypes, torch
from runners.training.memory import _libc, bounded_heap, limit_heap_retention
class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]
libc = _libc()
libc.mallinfo2.restype = Mallinfo2
def mmapped():  # MB held in blocks of their own (mmap), which free gives back to the OS
    return libc.mallinfo2().hblkhd >> 20
"""

CODE = (
    PRELUDE
    + """
def rss():
    return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) // 1024
if {limit}:
    assert limit_heap_retention()
torch.empty(8 << 20, dtype=torch.uint8).fill_(1)  # a large block come and gone: glibc raises its threshold
base, base_mapped = rss(), mmapped()
big, small = [], []
for k in range(60):  # ~180 MB of activations, each followed by a small block that stays (fragmentation)
    big.append(torch.empty(3_000_000 + 4096 * k, dtype=torch.uint8).fill_(1))
    small.append(torch.empty(70_000, dtype=torch.uint8).fill_(1))
held, held_mapped = rss(), mmapped()
del big
print(base, held, rss(), held_mapped - base_mapped)
"""
)


@GLIBC
def test_freed_blocks_go_back_to_the_os_with_a_fixed_threshold():
    def run(limit: bool) -> tuple[int, int, int, int]:
        code = CODE.format(limit=limit)
        out = preloaded.run([], code=code, capture_output=True, text=True, check=True, timeout=120)
        return tuple(int(x) for x in out.stdout.split())

    base, held, after, mapped = run(limit=True)
    assert held - base > 150 and mapped > 150  # the blocks were resident, each in a mapping of its own
    assert after - base < 30  # and each went back to the OS when freed
    # glibc's own rule puts them on the heap, where a freed block stays unless it is the heap's top: whether the
    # heap then shrinks depends on what else the process allocated, so the mapping is what is checked
    base, held, after, mapped = run(limit=False)
    assert held - base > 150 and mapped < 30


BOUNDED = (
    PRELUDE
    + """
def blocks():
    return [torch.empty(3_000_000 + 4096 * k, dtype=torch.uint8).fill_(1) for k in range(60)]
base = mmapped()
with bounded_heap() as took:
    assert took
    big = blocks()
    inside = mmapped() - base
    del big
big = blocks()
print(inside, mmapped() - base)
"""
)


@GLIBC
def test_the_bound_holds_only_inside_bounded_heap():
    """A worker maps its blocks only while L0 prunes: afterwards fine-tuning's blocks come from the heap again."""
    out = preloaded.run([], code=BOUNDED, capture_output=True, text=True, check=True, timeout=120)
    inside, after = (int(x) for x in out.stdout.split())
    assert inside > 150 and after < 30


def test_only_l0_bounds_its_heap_while_it_prunes():
    """The recipe whose passes change shape every step declares the bound; the others keep glibc's heap."""
    from runners.pruning.recipes import RECIPES

    assert [name for name in RECIPES.names() if RECIPES.get(name).bounded_heap] == ["l0"]
