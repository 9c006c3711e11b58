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


def test_a_stop_that_lands_inside_a_tracking_write_still_marks_the_run_killed(write_toml, tmp_path, stop_state):
    """The stop's KeyboardInterrupt is raised wherever the program is, here between two rows of MLflow's
    executemany of a metrics batch (seen in a stopped `run --workers 4`). SQLite keeps that write's lock while
    the traceback refers to its cursor; the run must still be marked KILLED (before the fix the KILLED waited out
    the busy timeout, 20 s, and failed: "database is locked", the run left RUNNING)."""
    from sqlalchemy import event

    from registry.loader import load_runs
    from runners.run.execute import execute

    (spec,) = load_runs(write_toml(tiny_toml()))
    store = Store.at(tmp_path / "s")
    engine = store.client._tracking_client.store.engine  # MLflow's SQLAlchemy engine over this store's database
    torn: list[str] = []

    def tear_the_first_metrics_batch(conn, cursor, statement, parameters, context, executemany):
        if not (executemany and statement.startswith("INSERT INTO metrics") and not torn):
            return statement, parameters
        torn.append(statement)

        def rows():
            yield parameters[0]  # one row is written: the statement is under way and holds the write lock
            raise KeyboardInterrupt  # the signal's exception, before the next row

        return statement, rows()

    event.listen(engine, "before_cursor_execute", tear_the_first_metrics_batch, retval=True)
    try:
        with pytest.raises(KeyboardInterrupt):
            execute(spec, store, Progress(enabled=False))
    finally:
        event.remove(engine, "before_cursor_execute", tear_the_first_metrics_batch)
    (run,) = store.client.search_runs(
        [store.client.get_experiment_by_name("tiny").experiment_id], filter_string=f"tags.`{KIND}` = 'run'"
    )
    assert torn and run.info.status == "KILLED", (torn, run.info.status)
