"""benchmarks/test_loop.py reads `make test`'s figures from its output and the machine's busy CPU from /proc;
benchmarks/suite_profile.py measures each test of a pytest run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest

from runners.tracking import provenance
from tests.helpers import PROJECT_ROOT


def _script(name: str):
    """benchmarks/NAME.py, imported as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, PROJECT_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def test_loop():
    return _script("test_loop")


def test_the_pytest_summary_line_gives_passed_failed_and_seconds(test_loop):
    make_output = "ruff...\n....\n967 passed, 18 warnings in 288.09s (0:04:48)\n"
    assert test_loop.pytest_summary(make_output) == (967, 0, 288.09)
    failing = "x\n1 failed, 968 passed, 18 warnings in 306.27s (0:05:06)\nmake: *** [Makefile:56: test] Error 1\n"
    assert test_loop.pytest_summary(failing) == (968, 1, 306.27)
    assert test_loop.pytest_summary("make: *** [Makefile:65: lint] Error 1\n") == (0, 0, None)


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads Linux's /proc/stat")
def test_busy_cpu_counts_this_process_spinning(test_loop):
    before = test_loop.busy_cpu_seconds()
    end = time.process_time() + 0.5  # this process's own CPU, however slow or shared the machine is
    while time.process_time() < end:
        pass
    assert test_loop.busy_cpu_seconds() - before >= 0.45  # /proc/stat counts in clock ticks (0.01 s)


@pytest.fixture(scope="module")
def suite_profile():
    return _script("suite_profile")


def test_idle_cores_are_blamed_on_the_tests_that_waited_then(suite_profile):
    rows = [  # two processes: "sleeper" waits through 0-10 s; "spinner" computes through 0-4 s; "late" 12-14 s
        {"test": "sleeper", "start": 0.0, "wall_s": 10.0, "own_cpu_s": 1.0, "reaped_cpu_s": 0.0, "children_cpu_s": 0.0},
        {"test": "spinner", "start": 0.0, "wall_s": 4.0, "own_cpu_s": 4.0, "reaped_cpu_s": 0.0, "children_cpu_s": 0.0},
        {"test": "late", "start": 12.0, "wall_s": 2.0, "own_cpu_s": 1.0, "reaped_cpu_s": 0.0, "children_cpu_s": 0.0},
    ]
    cpu = {r["test"]: r["own_cpu_s"] for r in rows}
    # idle since boot, sampled: 0.9 core-s idle in 0-2 s, 1 in 2-4, 4 in 4-8 (the spinner done), 2 in 10-12
    samples = [(0.0, 100.0), (2.0, 100.9), (4.0, 101.9), (8.0, 105.9), (10.0, 105.9), (12.0, 107.9)]
    blamed = suite_profile.blame_idle(rows, cpu, samples)
    assert blamed["sleeper"] == pytest.approx(0.9 + 1.0 + 4.0)  # the spinner never waited: none of it is its
    assert "spinner" not in blamed
    assert blamed["(no test waiting)"] == pytest.approx(2.0)  # between tests
    assert "late" not in blamed  # after the last sample
    summary = suite_profile.summarise([{**r, "process": "gw0"} for r in rows], 3, samples)
    assert summary["idle_core_s"] == pytest.approx(7.9)
    assert summary["top_tests_idle_core_s"][0] == ["sleeper", 5.9]


PROBE = """
import subprocess, sys, time

def test_spins():  # 0.4 s of its own CPU, however slow the machine
    end = time.process_time() + 0.4
    while time.process_time() < end:
        pass

CHILD = "import time\\nend = time.process_time() + 0.3\\nwhile time.process_time() < end: pass"

def test_waits_for_a_child_that_spins():
    subprocess.run([sys.executable, "-c", CHILD])

def test_sleeps():
    time.sleep(0.3)
"""


def test_suite_profile_counts_each_tests_own_and_its_childrens_cpu(tmp_path):
    (tmp_path / "test_probe.py").write_text(PROBE)
    script = PROJECT_ROOT / "benchmarks" / "suite_profile.py"
    args = [sys.executable, str(script), "--top", "3", "--", "-q", "-p", "no:cacheprovider", str(tmp_path)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads(out.stdout.splitlines()[-1])
    assert summary["benchmark"] == "suite_profile" and summary["tests"] == 3 and summary["idle_tail_s"] == 0.0
    assert summary["machine"] == provenance.machine()  # the processor its figures came from
    cpu = {test.split("::")[-1]: seconds for test, seconds in summary["top_tests_cpu_s"]}
    assert cpu["test_spins"] >= 0.39 and cpu["test_waits_for_a_child_that_spins"] >= 0.29  # the child's, reaped
    assert cpu["test_sleeps"] < 0.25  # waiting costs no CPU
    waiting = {test.split("::")[-1]: seconds for test, seconds in summary["top_tests_waiting_s"]}
    assert waiting["test_sleeps"] >= 0.3 - cpu["test_sleeps"] - 0.01  # its wall beyond its CPU
    ((module, wall),) = summary["top_modules_wall_s"]
    assert module.endswith("test_probe.py") and wall >= 0.3 + 0.4


FORKED_PROBE = """
from tests import preloaded

SPIN = "import time\\nend = time.process_time() + 0.3\\nwhile time.process_time() < end: pass"

def test_has_the_preloaded_server_spin():
    preloaded.run([], code=SPIN, timeout=120, check=True)
"""


def test_suite_profile_counts_what_the_preloaded_server_forks_for_a_forked_test_process(tmp_path):
    """A test process forked from the tests' preloaded server (as `make test`'s are) has a command forked for it:
    the command is the server's child, not the test process's, and its CPU still counts toward the test."""
    from tests import preloaded

    (tmp_path / "test_forked_probe.py").write_text(FORKED_PROBE)
    script = PROJECT_ROOT / "benchmarks" / "suite_profile.py"
    tx = f"popen//python={preloaded.forked_test_process_python()}"
    pytest_args = ["-q", "-p", "no:cacheprovider", "--tx", tx, "--dist", "load", str(tmp_path)]
    out = subprocess.run([sys.executable, str(script), "--", *pytest_args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    ((test, cpu),) = json.loads(out.stdout.splitlines()[-1])["top_tests_cpu_s"]
    assert test.endswith("test_has_the_preloaded_server_spin") and cpu >= 0.29
