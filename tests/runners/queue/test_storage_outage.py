"""The queue's PostgreSQL goes away while two workers run a grid (a restart for maintenance, a 30 s outage): the
workers say so in one line each, wait, and go on; every run finishes once and every trial completes once. A
database gone for longer than the workers wait is one line and exit code 2, and the rerun finishes the grid."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from runners.queue import grid_study, open_storage
from runners.tracking import Store
from tests.conftest import tiny_toml
from tests.runners.queue.test_queue import (
    _pg_bin,
    assert_each_run_once,
    cli,
    finished,
    postgres,  # noqa: F401 - the fixture: a throwaway PostgreSQL server
)

# 40 pruning steps: each run lasts seconds on this machine's cores, long enough to be caught running
SLOW_GRID = tiny_toml(max_steps=40, rate=0.02).replace("rate = 0.02", "rate = [0.02, 0.021, 0.022, 0.023]")
# heartbeats every second, stale after 4: an outage of seconds makes every running trial's heartbeat stale
FAST_HEARTBEAT = {"SUBNETS_HEARTBEAT_S": "1", "SUBNETS_GRACE_S": "4"}


class Server:
    """pg_ctl on the running `postgres` fixture's server (its data directory asked of the server itself)."""

    def __init__(self, url: str):
        import psycopg

        with psycopg.connect(url) as con:
            self.data = Path(con.execute("SHOW data_directory").fetchone()[0])
        self.port = int(re.search(r":(\d+)/", url).group(1))
        self.bin = _pg_bin()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), *args], check=True, capture_output=True
        )

    def restart(self) -> None:
        self.ctl("-w", "-l", str(self.data / "log"), "-m", "fast", "restart")  # the log: our pipe is not held open

    def stop(self) -> None:
        self.ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        self.ctl("-w", "-l", str(self.data / "log"), "-o", opts, "start")


def wait_for_running(url: str, proc: subprocess.Popen, count: int = 2) -> None:
    """Until `count` grid trials have been running for a moment (both workers inside a run)."""
    deadline = time.time() + 300
    storage = None  # one storage (one pool of connections) for the whole wait: an open per poll leaks connections
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        try:
            storage = storage or open_storage(url)
            study = optuna.load_study(study_name=grid_study("tiny"), storage=storage)
        except Exception:  # noqa: BLE001 - the coordinator is still creating the tables or the study: a concurrent
            if storage is not None:  # open can even race it on PostgreSQL's catalogue (UniqueViolation on
                storage.engine.dispose()  # alembic_version)
            storage = None
            continue
        running = [
            t
            for t in study.get_trials(states=(TrialState.RUNNING,))
            if "worker" in t.user_attrs and time.time() - t.datetime_start.timestamp() > 0.5
        ]
        if len(running) >= count:
            storage.engine.dispose()
            return
    said = proc.communicate()[0] if proc.poll() is not None else "(still running)"
    pytest.fail(f"{count} trials were not seen running; exit {proc.poll()}: {said}")


def states(url: str) -> dict[str, int]:
    study = optuna.load_study(study_name=grid_study("tiny"), storage=open_storage(url))
    out: dict[str, int] = {}
    for t in study.get_trials():
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def assert_rode_through(output: str, toml: Path, store: Path, url: str, noticed: bool = True) -> None:
    """`noticed`: the outage was long enough that a worker must have met it (a fast restart may fall between two of
    a worker's calls, and the pool's connection check then reconnects without a word)."""
    print(output)  # shown with -rP: what the workers printed, how long they waited
    assert "Traceback" not in output and "Error" not in output, output
    for worker in (1, 2):  # at most one line per worker for the one outage, and one when it is back
        assert output.count(f"[worker {worker}] the queue storage is unreachable") <= 1, output
        assert output.count(f"[worker {worker}] the queue storage is unreachable") == output.count(
            f"[worker {worker}] the queue storage is back after"
        ), output
    if noticed:
        assert re.search(r"\[worker \d\] the queue storage is unreachable \(.+\): retrying for up to 60 s", output), (
            output
        )
    assert_each_run_once(toml, Store.at(store), url)
    # nothing failed as stale (a live worker's trial run twice) and nothing left running
    assert set(states(url)) <= {"COMPLETE", "PRUNED"}, states(url)


def run_grid(write_toml, tmp_path, url: str, env: dict | None = None) -> tuple[Path, Path, subprocess.Popen]:
    toml, store = write_toml(SLOW_GRID), tmp_path / "s"
    args = ["run", "--file", str(toml), "--store", str(store), "--storage", url, "--workers", "2", "--quiet"]
    return toml, store, cli(args, env={**FAST_HEARTBEAT, **(env or {})})


def test_a_postgres_restart_while_trials_run_is_ridden_through(write_toml, tmp_path, postgres):  # noqa: F811
    server = Server(postgres)
    toml, store, proc = run_grid(write_toml, tmp_path, postgres)
    wait_for_running(postgres, proc)
    server.restart()
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    assert_rode_through(output, toml, store, postgres, noticed=False)


@pytest.mark.slow
def test_postgres_down_for_30_s_mid_grid_is_ridden_through(write_toml, tmp_path, postgres):  # noqa: F811
    """The server stopped for 30 s, far past the 4 s grace period: once it is back every heartbeat is stale, yet
    no live worker's trial is failed (run twice), and a run that finished during the outage is recorded."""
    server = Server(postgres)
    toml, store, proc = run_grid(write_toml, tmp_path, postgres)
    wait_for_running(postgres, proc)
    server.stop()
    time.sleep(30)
    server.start()
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    assert_rode_through(output, toml, store, postgres)
    for worker in (1, 2):  # both were running a trial: both noticed, and waited about 30 s
        waited = re.findall(rf"\[worker {worker}\] the queue storage is back after (\d+) s", output)
        assert len(waited) == 1 and 25 <= int(waited[0]) <= 45, output


def test_postgres_down_past_the_bound_stops_the_workers_with_one_line(write_toml, tmp_path, postgres):  # noqa: F811
    """Workers that wait 5 s for a server down for longer exit (code 2) with one line each, none hangs; the rerun
    once the server is back finishes the grid, each run once (a run finished meanwhile is reused)."""
    server = Server(postgres)
    toml, store, proc = run_grid(write_toml, tmp_path, postgres, env={"SUBNETS_STORAGE_RETRY_S": "5"})
    wait_for_running(postgres, proc)
    server.stop()
    started = time.time()
    try:
        output, _ = proc.communicate(timeout=120)
        stopped_after = time.time() - started
    finally:
        server.start()
    print(output, f"stopped {stopped_after:.0f} s after the server")  # shown with -rP
    assert proc.returncode == 2, output
    assert "Traceback" not in output, output
    for worker in (1, 2):
        assert output.count(f"[worker {worker}] the queue storage is unreachable") == 1, output
        assert output.count(f"[worker {worker}] the queue storage is still unreachable after 5 s") == 1, output
    # each waited its 5 s, plus a run that finished meanwhile, not forever
    assert stopped_after < 60, (stopped_after, output)
    # one worker is enough to finish what is left (and starts no forkserver)
    rerun = cli(["run", "--file", str(toml), "--store", str(store), "--storage", postgres, "--quiet"])
    out2, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out2
    assert "Traceback" not in out2, out2
    assert_each_run_once(toml, Store.at(store), postgres)
    assert len(finished(Store.at(store))) == 4


def test_no_trial_is_failed_as_stale_for_a_grace_period_after_an_outage(postgres):  # noqa: F811
    """Once the server is back every heartbeat is as old as the outage: a worker that failed stale trials at once
    would fail a live worker's trial whose heartbeat thread had not beaten yet, and the run would run twice."""
    import warnings

    from runners.queue.outage import Outage, RetryingRDBStorage

    open_storage(postgres, create=True).engine.dispose()  # the tables
    lines: list[str] = []
    outage = Outage(echo=lines.append, prefix="[worker 1] ", grace_s=3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = RetryingRDBStorage(postgres, heartbeat_interval=1, grace_period=1, outage=outage)
        study = optuna.create_study(study_name="stale", storage=storage)
        trial = study.ask()
        storage.record_heartbeat(trial._trial_id)
        server = Server(postgres)
        server.stop()
        try:
            storage.record_heartbeat(trial._trial_id)  # the heartbeat thread during the outage: skipped, no error
        finally:
            server.start()
        time.sleep(1.5)  # the heartbeat is now stale
        optuna.storages.fail_stale_trials(study)
        assert storage.get_trial(trial._trial_id).state == TrialState.RUNNING, "failed right after the outage"
        assert len(lines) == 2 and "unreachable" in lines[0] and "is back after" in lines[1], lines
        time.sleep(3.0)  # the grace period after the outage is over: a heartbeat still stale is a dead worker's
        optuna.storages.fail_stale_trials(study)
        assert storage.get_trial(trial._trial_id).state == TrialState.FAIL


def test_the_queue_timings_are_read_when_used_not_at_import(monkeypatch):
    """A worker forked from a process that imported the queue long before (a forkserver) gets its own environment's
    timings, not those of the process it was forked from."""
    from runners.queue.outage import Outage
    from runners.queue.storage import grace_s, heartbeat_s

    monkeypatch.setenv("SUBNETS_STORAGE_RETRY_S", "7")
    monkeypatch.setenv("SUBNETS_HEARTBEAT_S", "2")
    monkeypatch.setenv("SUBNETS_GRACE_S", "9")
    assert (Outage().retry_s, heartbeat_s(), grace_s()) == (7.0, 2, 9)
    monkeypatch.delenv("SUBNETS_STORAGE_RETRY_S")
    monkeypatch.delenv("SUBNETS_HEARTBEAT_S")
    monkeypatch.delenv("SUBNETS_GRACE_S")
    assert (Outage().retry_s, heartbeat_s(), grace_s()) == (60.0, 5, 20)
