"""Local workers: N processes on this machine pulling from one queue, the cores split between them."""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import sys
import time
from typing import Callable

from runners.tracking.provenance import usable_cores

STOP_GRACE_S = 10.0  # after Ctrl-C or SIGTERM, how long the workers get to mark their runs before they are killed
GRACE_ENV = "SUBNETS_STOP_GRACE_S"  # overrides it: a busy machine or a slow tracking server needs longer


def stop_grace_s() -> float:
    """The grace period: SUBNETS_STOP_GRACE_S where set (seconds), else STOP_GRACE_S."""
    return float(os.environ.get(GRACE_ENV) or STOP_GRACE_S)


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Cores split between the workers (at least one thread each): workers x threads <= cores, because
    torch processes that oversubscribe the cores each run many times slower. The cores are those this process may
    use (a Slurm allocation, taskset), not the node's: on a 64-core node, a job given 4 runs 4 threads, not 64."""
    cores = cores or usable_cores()
    return max(1, cores // workers)


START_ENV = "SUBNETS_WORKER_START"  # "forkserver" (the default), or "spawn": each worker a fresh interpreter
START_METHODS = ("forkserver", "spawn")


def start_method() -> str:
    """How workers start: SUBNETS_WORKER_START where set, else forkserver."""
    method = os.environ.get(START_ENV) or "forkserver"
    if method not in START_METHODS:
        raise ValueError(f"{START_ENV}={method!r}: expected one of {', '.join(START_METHODS)}")
    return method


def start_forkserver(preload: list[str], method: str) -> None:
    """Start the workers' forkserver now, importing the `preload` modules (what every worker imports before its
    first trial: torch, transformers, MLflow, Optuna, ~6 s of CPU) once, while this process prepares the queue (or
    fine-tunes first) on another core; each worker is then forked from it. No-op for the "spawn" method."""
    from multiprocessing import forkserver

    if method != "forkserver":
        return
    multiprocessing.get_context("forkserver").set_forkserver_preload(["runners.queue.forkserver_start", *preload])
    forkserver.ensure_running()


def _worker(entry: Callable[[list[str]], None], argv: list[str], env: dict[str, str]) -> None:
    """A worker process: `entry(argv)` with the workers' environment."""
    # what the forkserver imported (torch, transformers, MLflow: ~1M objects) is this worker's only through shared
    # pages; out of its collections, which would otherwise walk those objects and write to each (a private copy of
    # every page), as Python's documentation advises for forked processes. The forkserver imported them with the
    # collector paused (runners.queue.forkserver_start): it runs again from here.
    gc.freeze()
    gc.enable()
    os.environ.clear()
    os.environ.update(env)
    for stream in (sys.stdout, sys.stderr):  # each line as it is printed, as PYTHONUNBUFFERED gives a fresh process
        stream.reconfigure(line_buffering=True)
    entry(argv)


def _stop_forkserver() -> None:
    """Stop the forkserver and its resource tracker once the workers are gone, so that none outlives this call (a
    later spawn starts a fresh one, with the environment and directory of its own time). Private to
    multiprocessing, so only where they exist."""
    from multiprocessing import forkserver, resource_tracker

    for helper in (getattr(forkserver, "_forkserver", None), getattr(resource_tracker, "_resource_tracker", None)):
        stop = getattr(helper, "_stop", None)
        if stop is not None:
            try:
                stop()
            except (OSError, ChildProcessError):  # already gone
                pass


def spawn(
    workers: int,
    entry: Callable[[list[str]], None],
    worker_args: list[str],
    threads: int,
    method: str = "forkserver",
    echo=print,
) -> list[int]:
    """Start N workers, each `entry(["work", *worker_args, "--threads", T, "--worker-index", I])` (a module-level
    function: the CLI's `subnets work`), forked from the forkserver (start_forkserver; started here without its
    preload where it was not) or, for `method` "spawn", each a fresh interpreter, and wait; forwards
    Ctrl-C/SIGTERM to them, and kills those still running the grace period (stop_grace_s) later, so a stop never
    hangs and leaves no process behind. Returns their exit codes (negative: killed by that signal)."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
    }
    ctx = multiprocessing.get_context(method)
    procs = [
        ctx.Process(
            target=_worker,
            args=(entry, ["work", *worker_args, "--threads", str(threads), "--worker-index", str(i)], env),
            name=f"subnets-worker-{i}",
        )
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    echo(f"{workers} worker(s) started (pids {', '.join(str(p.pid) for p in procs)}), {threads} torch thread(s) each")

    stopping: list[float] = []  # when the first stop was asked for
    grace_s = stop_grace_s()

    def forward(signum, _frame):
        stopping.append(time.monotonic())
        for p in procs:
            if p.exitcode is None:
                os.kill(p.pid, signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while any(p.exitcode is None for p in procs):
            if stopping and time.monotonic() - stopping[0] > grace_s:
                # a worker still busy marking its run (a tracking server gone, say) is not waited for: its trial's
                # worker is then gone, and the next run retries the trial at once (Worker._fail_trials_of_dead_workers)
                stuck = [p for p in procs if p.exitcode is None]
                echo(f"{len(stuck)} worker(s) did not stop within {grace_s:.0f} s: killed")
                for p in stuck:
                    p.kill()
                for p in stuck:
                    p.join()
                break
            time.sleep(0.1)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        _stop_forkserver()
    return [p.exitcode for p in procs]
