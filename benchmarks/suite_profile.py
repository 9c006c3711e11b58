"""Where the test suite's time goes: each test's CPU and wall, by test and by module, and how long one test process sat
idle at the end while the other finished.

Runs pytest (by default the suite as `make test` runs it) with a plugin that records, around each test: the test
process's own CPU, that of the children it reaped (fresh interpreters it started and waited for), that of the
processes still its children, what the tests' shared preloaded server forked (the test processes are forked from it
too; its commands are counted in the first test process, whichever test process asked for them), and the wall time.
The modules by wall time are what `tests/schedule.py`'s LONG_MODULES holds. Meanwhile it samples the machine's idle
cores (/proc/stat) and blames each idle core-second on the tests that were waiting then (a server starting, a sleep,
a retry's backoff): the part of the suite a faster machine does not shrink.

    python benchmarks/suite_profile.py [--top N] [-- PYTEST_ARGS ...]

Takes as long as the suite. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from runners.tracking import provenance

ROOT = Path(__file__).resolve().parents[1]
SUITE = ["-q", "-m", "not slow", "-n", "2", "--dist", "worksteal"]  # the Makefile's SUITE

PLUGIN = """
import json, os, resource, time
import psutil
import pytest

def _children_cpu(parent=None, skip=()):  # parent's (this process's) live children but those in skip, with their reaped
    total = 0.0
    for child in (parent or psutil.Process()).children():
        if child.pid in skip:
            continue
        try:
            t = child.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total

def _cpu(who):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime

# a test process forked from the tests' preloaded server (tests/preloaded.py), its parent: the commands the server
# forks for either test process are the server's children, counted here by the first test process only
FORKED = "SUBNETS_TESTS_PRELOADED_SERVER" in os.environ
PIDS = os.environ["SUITE_PROFILE_LOG"] + ".pids"  # the test processes, the server's children too: not commands

def pytest_configure(config):
    if FORKED:
        with open(PIDS, "a") as f:
            f.write(f"{os.getpid()}\\n")

def _server_children_cpu():
    if not FORKED or os.environ.get("PYTEST_XDIST_WORKER") != "gw0":
        return 0.0
    server = psutil.Process(os.getppid())
    with open(PIDS) as f:
        test_processes = {int(line) for line in f if line.strip()}
    t = server.cpu_times()
    return t.children_user + t.children_system + _children_cpu(server, skip=test_processes)  # reaped, and live

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    own, reaped, live = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN), _children_cpu()
    server, start = _server_children_cpu(), time.time()
    yield
    row = {
        "test": item.nodeid,
        "own_cpu_s": _cpu(resource.RUSAGE_SELF) - own,
        "reaped_cpu_s": _cpu(resource.RUSAGE_CHILDREN) - reaped,
        "children_cpu_s": max(0.0, _children_cpu() - live),
        "server_children_cpu_s": max(0.0, _server_children_cpu() - server),
        "wall_s": time.time() - start,
        "start": start,
        "process": os.environ.get("PYTEST_XDIST_WORKER", "main"),
    }
    with open(os.environ["SUITE_PROFILE_LOG"], "a") as log:
        log.write(json.dumps(row) + "\\n")
"""


def idle_core_seconds() -> float:
    """CPU seconds the whole machine has sat idle since boot (idle and iowait, summed over its cores)."""
    with open("/proc/stat") as f:
        idle, iowait = map(int, f.readline().split()[4:6])
    return (idle + iowait) / os.sysconf("SC_CLK_TCK")


class IdleSampler(threading.Thread):
    """The machine's idle core-seconds, sampled every `every` seconds: [(time, idle since boot), ...]."""

    def __init__(self, every: float = 0.25):
        super().__init__(daemon=True)
        self.every, self.samples, self.done = every, [(time.time(), idle_core_seconds())], threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every):
            self.samples.append((time.time(), idle_core_seconds()))

    def stop(self) -> list[tuple[float, float]]:
        self.done.set()
        self.join()
        self.samples.append((time.time(), idle_core_seconds()))
        return self.samples


def blame_idle(rows: list[dict], cpu: dict[str, float], samples: list[tuple[float, float]]) -> dict[str, float]:
    """Each idle core-second of the run, blamed on the tests running then, by how much of their time they waited
    (wall beyond CPU): a test that computes beside one that sleeps is not blamed for the sleeper's idle core. Idle
    while no test that waits was running (collection, start-up, the tail) goes to "(no test waiting)"."""
    blamed: dict[str, float] = defaultdict(float)
    waiting_share = {r["test"]: max(0.0, 1.0 - cpu[r["test"]] / r["wall_s"]) if r["wall_s"] > 0 else 0.0 for r in rows}
    spans = sorted((r["start"], r["start"] + r["wall_s"], r["test"]) for r in rows)
    for (t0, idle0), (t1, idle1) in zip(samples, samples[1:]):
        idle = idle1 - idle0
        if idle <= 0:
            continue
        weights = {}
        for start, end, test in spans:
            if start >= t1:
                break
            overlap = min(end, t1) - max(start, t0)
            if overlap > 0 and waiting_share[test] > 0:
                weights[test] = overlap * waiting_share[test]
        total = sum(weights.values())
        if not total:
            blamed["(no test waiting)"] += idle
        for test, weight in weights.items():
            blamed[test] += idle * weight / total
    return blamed


def summarise(rows: list[dict], top: int = 10, samples: list[tuple[float, float]] | None = None) -> dict:
    """Totals, the costliest tests (CPU) and modules (wall), and the idle tail, from the plugin's rows."""
    cpu = {
        r["test"]: r["own_cpu_s"] + r["reaped_cpu_s"] + r["children_cpu_s"] + r.get("server_children_cpu_s", 0.0)
        for r in rows
    }
    waiting = {r["test"]: max(0.0, r["wall_s"] - cpu[r["test"]]) for r in rows}
    module_wall: dict[str, float] = defaultdict(float)
    ends: dict[str, float] = defaultdict(float)
    for r in rows:
        module_wall[r["test"].split("::")[0]] += r["wall_s"]
        ends[r["process"]] = max(ends[r["process"]], r["start"] + r["wall_s"])
    out = {
        "tests": len(rows),
        "cpu_s": round(sum(cpu.values()), 1),
        "wall_sum_s": round(sum(r["wall_s"] for r in rows), 1),
        "idle_tail_s": round(max(ends.values()) - min(ends.values()), 1) if ends else 0.0,
        "top_tests_cpu_s": [[t, round(c, 2)] for t, c in sorted(cpu.items(), key=lambda kv: -kv[1])[:top]],
        "top_modules_wall_s": [[m, round(w, 1)] for m, w in sorted(module_wall.items(), key=lambda kv: -kv[1])[:top]],
        # a test's wall beyond its CPU: time its core sat idle while the test waited (a server starting, a sleep, a
        # timeout); it does not shrink on a faster machine
        "top_tests_waiting_s": [[t, round(w, 2)] for t, w in sorted(waiting.items(), key=lambda kv: -kv[1])[:top]],
        "waiting_sum_s": round(sum(waiting.values()), 1),
    }
    if samples:  # the machine's idle cores while the suite ran, and the tests that left them idle
        blamed = blame_idle(rows, cpu, samples)
        out["idle_core_s"] = round(samples[-1][1] - samples[0][1], 1)
        out["top_tests_idle_core_s"] = [
            [t, round(s, 2)] for t, s in sorted(blamed.items(), key=lambda kv: -kv[1])[:top]
        ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=15, help="how many tests and modules to list (default 15)")
    parser.add_argument("pytest_args", nargs="*", help="after --: pytest's arguments (default: the suite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "suite_profile_plugin.py").write_text(PLUGIN)
        log = Path(tmp, "rows.jsonl")
        log.touch()
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (tmp, os.environ.get("PYTHONPATH", "")) if p),
            "SUITE_PROFILE_LOG": str(log),
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        cmd = [sys.executable, "-m", "pytest", "-p", "suite_profile_plugin", *(args.pytest_args or SUITE)]
        sampler = IdleSampler()
        sampler.start()
        code = subprocess.call(cmd, cwd=ROOT, env=env)
        samples = sampler.stop()
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    summary = summarise(rows, args.top, samples)
    for test, cpu in summary["top_tests_cpu_s"]:
        print(f"{cpu:8.2f} CPU-s  {test}")
    for module, wall in summary["top_modules_wall_s"]:
        print(f"{wall:8.1f} s wall {module}")
    for test, wait in summary["top_tests_waiting_s"]:
        print(f"{wait:8.2f} s waiting  {test}")
    for test, idle in summary.get("top_tests_idle_core_s", []):
        print(f"{idle:8.2f} idle core-s  {test}")
    print(json.dumps({"benchmark": "suite_profile", "machine": provenance.machine(), "exit_code": code, **summary}))
    sys.exit(0 if code == 0 else 1)


if __name__ == "__main__":
    main()
