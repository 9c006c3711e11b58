"""Stopping a run with Ctrl-C or SIGTERM: it ends KILLED, even when the signal's exception is lost inside a
destructor or a second signal arrives while the run is being marked."""

from __future__ import annotations

import gc
import signal
import subprocess
import sys
import time

import pytest

from runners.tracking import progress as progress_mod
from runners.tracking.progress import Progress
from runners.tracking.store import KIND, Store
from tests import preloaded
from tests.conftest import tiny_toml


@pytest.fixture
def stop_state(monkeypatch):
    monkeypatch.setattr(progress_mod, "_signals", 0)
    progress_mod._STOP.clear()
    yield
    progress_mod._STOP.clear()


def test_a_lost_stop_prints_no_traceback_and_other_lost_errors_still_do(stop_state, capsys, monkeypatch):
    monkeypatch.setattr(sys, "unraisablehook", progress_mod.quiet_lost_stop)  # as install_stop_handlers sets it

    class Finaliser:
        def __del__(self):
            progress_mod.request_stop(signal.SIGTERM)  # as if the signal arrived while this ran

    class Broken:
        def __del__(self):
            raise ValueError("not a stop")

    Finaliser()
    gc.collect()
    assert capsys.readouterr().err == "" and progress_mod._STOP.is_set()
    Broken()
    gc.collect()
    err = capsys.readouterr().err
    assert "Exception ignored in" in err and "ValueError: not a stop" in err


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped exception, on purpose
@pytest.mark.parametrize("plain, enabled", [(True, True), (False, True), (True, False)])
def test_a_stop_lost_in_a_destructor_is_raised_at_the_next_point_of_progress(stop_state, plain, enabled):
    class Finaliser:
        def __del__(self):
            progress_mod.request_stop(signal.SIGTERM)  # as if the signal arrived while this ran

    Finaliser()  # its KeyboardInterrupt is printed as "Exception ignored in ..." and dropped by Python
    gc.collect()
    with Progress(enabled=enabled, plain=plain, every_s=1e9).task("steps", total=3) as advance:
        with pytest.raises(KeyboardInterrupt):
            advance(1)


def test_a_second_and_third_signal(stop_state, monkeypatch):
    exited = []
    monkeypatch.setattr(progress_mod.os, "_exit", exited.append)
    with pytest.raises(KeyboardInterrupt):
        progress_mod.request_stop(signal.SIGINT)
    progress_mod.request_stop(signal.SIGINT)  # ignored: the bookkeeping of the stop goes on
    assert exited == []
    progress_mod.request_stop(signal.SIGINT)
    assert exited == [128 + signal.SIGINT]


@pytest.mark.parametrize("second", ["20 ms later", "as it exits"])
def test_a_second_sigterm_leaves_the_run_killed_and_the_exit_code_130(write_toml, tmp_path, second):
    """The second SIGTERM lands while the run is stopping (20 ms after the first) or once the process has said
    it stopped and is shutting down, where Python puts the default signal actions back: either way the outcome
    is the first stop's. Nothing here depends on how fast the machine is: each moment is reached by waiting
    for what the process writes, and both moments must give the same result."""
    toml = write_toml(tiny_toml(max_steps=8).replace("n_id_eval = 64", "n_id_eval = 1500"))
    proc = preloaded.Popen(
        ["run", "--file", str(toml), "--store", str(tmp_path / "s"), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list((tmp_path / "s").glob("mlartifacts/tiny/*/artifacts/partial/step_001.json")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    lines = []
    if second == "20 ms later":
        time.sleep(0.02)
    else:
        for line in proc.stdout:  # the process has marked the run KILLED and printed why: now it exits
            lines.append(line)
            if "interrupted:" in line:
                break
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    output = "".join(lines) + output
    assert proc.returncode == 130, output
    assert "Traceback" not in output and "interrupted: the current run is marked KILLED" in output
    store = Store.at(tmp_path / "s")
    exp = store.client.get_experiment_by_name("tiny")
    (run,) = store.client.search_runs([exp.experiment_id], filter_string=f"tags.`{KIND}` = 'run'")
    assert run.info.status == "KILLED"
