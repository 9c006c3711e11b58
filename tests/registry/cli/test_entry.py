"""The `subnets` entry point (console script, `python -m registry.cli`, each local worker): it runs the command
with the collector's thresholds raised for the imports that are most of its start-up."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from registry.cli import GC_THRESHOLDS, main

PRINT_THRESHOLDS = """
import gc, sys
import registry.cli.common as common
real = common.app
def app(*args, **kwargs):  # the command: what the collector's thresholds are when it runs
    print("thresholds", *gc.get_threshold())
    return real(*args, **kwargs)
common.app = app
from registry.cli.__main__ import main
main()
"""


def test_a_command_runs_with_the_raised_thresholds(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", PRINT_THRESHOLDS, "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert f"thresholds {' '.join(map(str, GC_THRESHOLDS))}" in proc.stdout and "validate" in proc.stdout


def test_a_worker_entry_sets_them_and_runs_the_command_it_is_given(capsys):
    before = gc.get_threshold()
    try:
        with pytest.raises(SystemExit) as exit_:
            main(["--help"])
        assert exit_.value.code == 0
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        gc.set_threshold(*before)
    assert "Usage: subnets" in capsys.readouterr().out
