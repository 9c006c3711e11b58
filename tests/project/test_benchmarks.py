"""benchmarks/test_loop.py reads `make test`'s figures from its output and the machine's busy CPU from /proc."""

from __future__ import annotations

import importlib.util
import os
import time

import pytest

from tests.helpers import PROJECT_ROOT


@pytest.fixture(scope="module")
def test_loop():
    spec = importlib.util.spec_from_file_location("test_loop", PROJECT_ROOT / "benchmarks" / "test_loop.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
