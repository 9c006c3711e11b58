"""Where the test suite's time goes: each test's CPU and wall, by test and by module, and how long one test process
sat idle at the end while the other finished.

Runs pytest (by default the suite as `make test` runs it) with a plugin that records, around each test: the test
process's own CPU, that of the children it reaped (fresh interpreters it started and waited for), that of the
processes still its children (the tests' shared preloaded server and what it forked; another test process's commands
can land there too), and the wall time. The modules by wall time are what `tests/schedule.py`'s LONG_MODULES holds.

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
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE = ["-q", "-m", "not slow", "-n", "2", "--dist", "worksteal"]  # the Makefile's SUITE

PLUGIN = """
import json, os, resource, time
import psutil
import pytest

def _children_cpu():
    total = 0.0
    for child in psutil.Process().children():
        try:
            t = child.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total

def _cpu(who):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    own, reaped, live, start = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN), _children_cpu(), time.time()
    yield
    row = {
        "test": item.nodeid,
        "own_cpu_s": _cpu(resource.RUSAGE_SELF) - own,
        "reaped_cpu_s": _cpu(resource.RUSAGE_CHILDREN) - reaped,
        "children_cpu_s": max(0.0, _children_cpu() - live),
        "wall_s": time.time() - start,
        "start": start,
        "process": os.environ.get("PYTEST_XDIST_WORKER", "main"),
    }
    with open(os.environ["SUITE_PROFILE_LOG"], "a") as log:
        log.write(json.dumps(row) + "\\n")
"""


def summarise(rows: list[dict], top: int = 10) -> dict:
    """Totals, the costliest tests (CPU) and modules (wall), and the idle tail, from the plugin's rows."""
    cpu = {r["test"]: r["own_cpu_s"] + r["reaped_cpu_s"] + r["children_cpu_s"] for r in rows}
    waiting = {r["test"]: max(0.0, r["wall_s"] - cpu[r["test"]]) for r in rows}
    module_wall: dict[str, float] = defaultdict(float)
    ends: dict[str, float] = defaultdict(float)
    for r in rows:
        module_wall[r["test"].split("::")[0]] += r["wall_s"]
        ends[r["process"]] = max(ends[r["process"]], r["start"] + r["wall_s"])
    return {
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
        code = subprocess.call(cmd, cwd=ROOT, env=env)
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    summary = summarise(rows, args.top)
    for test, cpu in summary["top_tests_cpu_s"]:
        print(f"{cpu:8.2f} CPU-s  {test}")
    for module, wall in summary["top_modules_wall_s"]:
        print(f"{wall:8.1f} s wall {module}")
    for test, wait in summary["top_tests_waiting_s"]:
        print(f"{wait:8.2f} s waiting  {test}")
    print(json.dumps({"benchmark": "suite_profile", "exit_code": code, **summary}))
    sys.exit(0 if code == 0 else 1)


if __name__ == "__main__":
    main()
