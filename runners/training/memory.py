"""A worker's memory: glibc's heap keeps what a step's activations freed.

A worker prunes with batches whose shapes change every step (padded per batch). glibc serves blocks under its mmap
threshold from the heap and keeps them when they are freed, and it raises that threshold as large blocks come and go
(up to 32 MiB), so more and more of each step's activations land on a heap that fragments and never shrinks: a
worker pruning MiniLM on MNLI grew past 3 GB. Two levers, both no-ops off glibc:

- `limit_heap_retention`: blocks from 1 MiB up are mapped from the OS and given back when freed (a fixed threshold
  turns the growing one off). Measured on 80 L0 steps of 3 MiniLM targets (MNLI-like lengths, 1 thread): peak
  748 MB against 887 MB, CPU time 115 s against 119 s.
- `release_memory`: give back the freed heap pages now, for a process that goes on to wait (the coordinator after
  fine-tuning first held 2.6 GB while its workers pruned; 0.63 GB after).

The fixed threshold costs training: every block from 1 MiB up is mapped, faulted in and unmapped each time, and a
training step allocates many (an AdamW step of a MiniLM-shaped BERT: 1.33x wall and CPU, benchmarks/
heap_threshold.py; 20% more CPU on the lottery study, all of it system time). So a worker sets it only while L0
prunes (`bounded_heap`), the workload that grew, and leaves glibc's heap for fine-tuning and everything else:
worker peaks 771 / 867 MB pruning MiniLM on MNLI (benchmarks/memory.py --quick), against 845 / 974 MB with the
threshold for the whole worker.
"""

from __future__ import annotations

import ctypes
import gc
from contextlib import contextmanager

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
MMAP_THRESHOLD_BYTES = 1 << 20
# Where glibc's dynamic rule settles once large blocks have come and gone (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit, and
# twice that for trimming): once a threshold was set the rule is off for good, so leaving `bounded_heap` sets these
HEAP_MMAP_THRESHOLD_BYTES = 32 << 20
HEAP_TRIM_THRESHOLD_BYTES = 64 << 20


def _libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc (macOS, musl): its allocator keeps what it keeps
        return None


def limit_heap_retention() -> bool:
    """Map blocks of MMAP_THRESHOLD_BYTES and more from the OS (returned when freed); True where it took effect."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


@contextmanager
def bounded_heap():
    """Inside: limit_heap_retention. After: blocks under 32 MiB from the heap again, as glibc's own rule would serve
    them once it has settled (a fixed threshold cannot be undone)."""
    took = limit_heap_retention()
    try:
        yield took
    finally:
        if took:
            libc = _libc()
            libc.mallopt(M_MMAP_THRESHOLD, HEAP_MMAP_THRESHOLD_BYTES)
            libc.mallopt(M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD_BYTES)


def release_memory() -> None:
    """Collect garbage and give the heap's free pages back to the OS."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


__all__ = ["bounded_heap", "limit_heap_retention", "release_memory"]
