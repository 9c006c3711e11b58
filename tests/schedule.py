"""The order the test processes run the suite in: each starts on its share of the longest modules.

pytest-xdist's `worksteal` hands each of N test processes a contiguous share of the collection (the first n // N
tests to the first, and so on), and later moves only tests not yet started, from the end of a queue. In collection
order (alphabetical) the modules with 10-30 s tests (real servers, a Slurm cluster, fresh interpreters) sat at the
end of a queue: one process ran them alone while the other, done, had nothing left to take (18 s of one idle core
in a run measured on 2026-12-06). So the longest modules are dealt out first, the longest to the process with the
least so far, and each process's share of them opens its queue; the other modules follow in collection order, each
module's tests kept together (its module-scoped fixtures are made once).

LONG_MODULES holds each module's wall seconds in a `-n 2` run (2026-12-06, 2 cores, a slow day;
`python benchmarks/suite_profile.py` lists them again); a module missing from it, or an estimate gone stale, changes
only the order, never what runs.
"""

from __future__ import annotations

LONG_MODULES = {
    "tests/runners/queue/test_queue.py": 54,
    "tests/runners/training/test_hub_offline.py": 46,
    "tests/runners/queue/test_worker_start.py": 41,
    "tests/runners/queue/test_storage_outage.py": 37,
    "tests/runners/pruning/test_l0_batched.py": 35,
    "tests/runners/cluster/test_slurm.py": 29,
    "tests/runners/tracking/test_server_restart.py": 27,
    "tests/runners/pruning/test_l0_teacher.py": 21,
    "tests/project/test_real_model.py": 18,
    "tests/runners/run/test_resume.py": 16,
    "tests/reports/test_readers_beside_writers.py": 14,
    "tests/runners/training/test_runtime.py": 13,
    "tests/runners/queue/test_stop.py": 12,
    "tests/runners/queue/test_finetune_first.py": 11,
}


def shares(n: int, workers: int) -> list[int]:
    """How many tests of `n` worksteal first hands each of `workers` processes (xdist's own arithmetic)."""
    sizes = []
    for k in range(workers):
        sizes.append(n // (workers - k))
        n -= sizes[-1]
    return sizes


def long_first(nodeids: list[str], workers: int, long_modules: dict[str, float] = LONG_MODULES) -> list[int]:
    """The collection's new order, as indices into `nodeids`: the share of each of `workers` processes opens with the
    long modules dealt to it (longest first, each to the least loaded), then the other modules in their order."""
    modules: dict[str, list[int]] = {}  # module -> its tests' indices, in collection order
    for i, nodeid in enumerate(nodeids):
        modules.setdefault(nodeid.split("::")[0], []).append(i)
    dealt: list[list[int]] = [[] for _ in range(workers)]
    load = [0.0] * workers
    for module in sorted((m for m in modules if m in long_modules), key=lambda m: -long_modules[m]):
        least = load.index(min(load))
        dealt[least] += modules[module]
        load[least] += long_modules[module]
    rest = [i for module, tests in modules.items() if module not in long_modules for i in tests]
    order: list[int] = []
    boundary = 0  # where the next process's share starts
    for share, opening in zip(shares(len(nodeids), workers), dealt):
        boundary += share
        order += opening
        take = max(0, boundary - len(order))  # the rest of this process's share
        order += rest[:take]
        rest = rest[take:]
    return order + rest
