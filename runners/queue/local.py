"""Local workers: N processes on this machine pulling from one queue, the cores split between them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

STOP_GRACE_S = 10.0  # after Ctrl-C or SIGTERM, how long the workers get to mark their runs before they are killed
GRACE_ENV = "SUBNETS_STOP_GRACE_S"  # overrides it: a busy machine or a slow tracking server needs longer


def stop_grace_s() -> float:
    """The grace period: SUBNETS_STOP_GRACE_S where set (seconds), else STOP_GRACE_S."""
    return float(os.environ.get(GRACE_ENV) or STOP_GRACE_S)


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Cores split between the workers (at least one thread each): workers x threads <= cores, because
    torch processes that oversubscribe the cores each run many times slower."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // workers)


def spawn(workers: int, worker_args: list[str], threads: int, echo=print) -> list[int]:
    """Start `subnets work ...` N times and wait; forwards Ctrl-C/SIGTERM to them, and kills those still running
    the grace period (stop_grace_s) later, so a stop never hangs and leaves no process behind. Returns their exit
    codes (negative: killed by that signal)."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
    }
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "registry.cli",
                "work",
                *worker_args,
                "--threads",
                str(threads),
                "--worker-index",
                str(i),
            ],
            env=env,
        )
        for i in range(workers)
    ]
    echo(f"{workers} worker(s) started (pids {', '.join(str(p.pid) for p in procs)}), {threads} torch thread(s) each")

    stopping: list[float] = []  # when the first stop was asked for
    grace_s = stop_grace_s()

    def forward(signum, _frame):
        stopping.append(time.monotonic())
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while any(p.poll() is None for p in procs):
            if stopping and time.monotonic() - stopping[0] > grace_s:
                # a worker still busy marking its run (a tracking server gone, say) is not waited for: its trial's
                # worker is then gone, and the next run retries the trial at once (Worker._fail_trials_of_dead_workers)
                stuck = [p for p in procs if p.poll() is None]
                echo(f"{len(stuck)} worker(s) did not stop within {grace_s:.0f} s: killed")
                for p in stuck:
                    p.kill()
                for p in stuck:
                    p.wait()
                break
            time.sleep(0.1)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    return [p.returncode for p in procs]
