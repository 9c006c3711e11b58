"""How many torch threads each local worker gets: the cores this process may use (a Slurm allocation, taskset), split
between the workers, never the node's count: a job given 1 core of a 2-core node that ran 2 threads would
oversubscribe it."""

from __future__ import annotations

import os

import pytest
import torch

from registry.tracking import TORCH_THREADS
from runners.queue.local import threads_per_worker
from tests.conftest import tiny_toml
from tests.helpers import run_cli


def test_the_cores_are_split_between_the_workers_at_least_one_thread_each():
    assert threads_per_worker(1, cores=8) == 8
    assert threads_per_worker(3, cores=8) == 2  # 3 x 2 <= 8: never more threads than cores
    assert threads_per_worker(4, cores=2) == 1  # more workers than cores: one thread each


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="this platform cannot restrict a process's cores")
def test_a_process_restricted_to_one_core_gives_its_workers_one_thread():
    allowed = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(allowed)})
        assert threads_per_worker(1) == 1
        assert threads_per_worker(2) == 1
    finally:
        os.sched_setaffinity(0, allowed)
    assert threads_per_worker(1) == len(allowed)  # the allocation back, every core a thread again


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="this platform cannot restrict a process's cores")
@pytest.mark.skipif(len(getattr(os, "sched_getaffinity", lambda _: {0})(0)) < 2, reason="one core: nothing to restrict")
def test_a_run_in_a_one_core_allocation_records_one_torch_thread(write_toml, tmp_path, monkeypatch):
    """`subnets run` with no --threads (nor SUBNETS_THREADS) in a process allowed one core of several: one thread."""
    monkeypatch.delenv("SUBNETS_THREADS")
    allowed = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(allowed)})
        _, run, _ = run_cli(write_toml(tiny_toml(max_steps=1)), tmp_path / "s")
    finally:
        os.sched_setaffinity(0, allowed)
        torch.set_num_threads(1)  # the test process's own setting (tests/conftest.py)
    assert run.data.tags[TORCH_THREADS] == "1"
