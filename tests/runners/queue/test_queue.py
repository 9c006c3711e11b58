"""The work queue with real worker processes: N local workers share one grid, a worker killed with SIGKILL
leaves its trial to the others, and many machines share a PostgreSQL queue and an MLflow tracking server.
Every run executes exactly once and the warehouse sees each once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from registry.loader import load_runs
from reports.warehouse import open_warehouse
from runners.queue import grid_study, open_storage
from runners.tracking import Store
from tests import preloaded
from tests.conftest import tiny_toml
from tests.helpers import TrackingServer, free_port

GRID = tiny_toml(max_steps=2).replace("rate = 0.3", "rate = [0.2, 0.3, 0.4, 0.5]")


def cli(args: list[str], env: dict | None = None, **kw) -> preloaded.Popen:
    return preloaded.Popen(
        args, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw
    )


def finished(store: Store, experiment: str = "tiny") -> list:
    exp = store.client.get_experiment_by_name(experiment)
    return store.client.search_runs(
        [exp.experiment_id], filter_string="tags.`subnets.kind` = 'run' and attributes.status = 'FINISHED'"
    )


def assert_each_run_once(toml: Path, store: Store, storage_url: str) -> None:
    expected = {r.fingerprint for r in load_runs(toml)}
    runs = finished(store)
    fps = [r.data.tags["subnets.fingerprint"] for r in runs]
    assert sorted(fps) == sorted(expected), "every run finished exactly once"
    study = optuna.load_study(study_name=grid_study("tiny"), storage=open_storage(storage_url))
    complete = [t.user_attrs["fingerprint"] for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))]
    assert sorted(complete) == sorted(expected), "one complete trial per run, no duplicate"
    with open_warehouse(store.tracking_uri) as wh:
        assert wh.query("SELECT count(*), count(DISTINCT fingerprint) FROM runs")[1] == [(len(expected), len(expected))]
        ((total, distinct, runs_with_steps),) = wh.query(
            "SELECT count(*), count(DISTINCT (run_id, variant, step)), count(DISTINCT run_id) FROM steps "
            "WHERE subcase = 'all' AND eval_set = 'id'"
        )[1]
        assert total == distinct and runs_with_steps == len(expected)  # each step of each run counted once


# 4 workers on 2 cores race harder than 2: the fast set keeps that one, the slow set both
@pytest.mark.parametrize("workers", [pytest.param(2, marks=pytest.mark.slow), 4])
def test_local_workers_share_one_grid(write_toml, tmp_path, workers):
    toml = write_toml(GRID)
    proc = cli(["run", "--file", str(toml), "--store", str(tmp_path / "s"), "--workers", str(workers), "--quiet"])
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    assert f"{workers} worker(s) started" in output and "1 torch thread(s) each" in output
    store = Store.at(tmp_path / "s")
    assert_each_run_once(toml, store, f"sqlite:///{tmp_path / 's' / 'optuna.db'}")
    caches = sorted(r.data.tags["subnets.finetune_cache"] for r in finished(store))
    # the one model they share was fine-tuned first, on every core: every worker loaded it
    assert caches == ["hit"] * 4 and "fine-tuning 1 shared model(s) first" in output


def test_a_worker_killed_mid_trial_is_taken_over(write_toml, tmp_path):
    # 40 pruning steps: each run lasts over a second on a fast machine, long enough to be caught running
    toml = write_toml(tiny_toml(max_steps=40, rate=0.02).replace("rate = 0.02", "rate = [0.02, 0.021, 0.022]"))
    url = f"sqlite:///{tmp_path / 's' / 'optuna.db'}"
    proc = cli(
        ["run", "--file", str(toml), "--store", str(tmp_path / "s"), "--workers", "2", "--quiet"],
        env={"SUBNETS_HEARTBEAT_S": "1", "SUBNETS_GRACE_S": "4"},
    )
    victim = None
    deadline = time.time() + 300
    while victim is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
        if not (tmp_path / "s" / "optuna.db").exists():
            continue
        try:
            study = optuna.load_study(study_name=grid_study("tiny"), storage=open_storage(url))
        except (KeyError, optuna.exceptions.StorageInternalError):
            continue  # the coordinator is still creating the study
        running = [
            t
            for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
            if "worker" in t.user_attrs and t.datetime_start and time.time() - t.datetime_start.timestamp() > 0.3
        ]
        if running:
            victim = running[0]
            os.kill(int(victim.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
    assert victim is not None, "no trial was seen running"
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    assert "1 worker(s) were killed (signal 9); the others took over their trials." in output
    assert_each_run_once(toml, Store.at(tmp_path / "s"), url)
    study = optuna.load_study(study_name=grid_study("tiny"), storage=open_storage(url))
    failed = study.get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert [t.number for t in failed] == [victim.number]  # the stale trial, retried once


# ---- PostgreSQL and an MLflow tracking server, as many machines would use them ---------------------------


def _pg_bin() -> Path | None:
    for root in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (root / "initdb").exists():
            return root
    return None


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL server on 127.0.0.1 (as the postgres user when the tests run as root)."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (make test installs Debian's postgresql package where it can)")
    pytest.importorskip("psycopg", reason="psycopg is needed for a postgresql:// storage")
    import shutil
    import tempfile

    # outside pytest's private (0700) temp tree, so the postgres user can reach it when we are root
    top = Path(tempfile.mkdtemp(prefix="subnets-pg-"))
    data, port = top / "data", free_port()
    data.mkdir()
    as_user = []
    if os.geteuid() == 0:
        os.chmod(top, 0o755)
        shutil.chown(data, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "subnets"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *as_user,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(data / "log"),
            "-o",
            f"-p {port} -k {data} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "subnets", "queue"],
            check=True,
            capture_output=True,
        )
        yield f"postgresql://subnets@127.0.0.1:{port}/queue"
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def tracking_server(tmp_path):
    server = TrackingServer(tmp_path)
    server.start(timeout=90)
    yield server.url
    server.stop()


def test_two_machines_share_postgres_and_a_tracking_server(write_toml, tmp_path, postgres, tracking_server):
    """Two `subnets run` processes with separate caches ("machines") pointed at one PostgreSQL queue and one
    tracking server: the grid finishes, each run once, and the warehouse reads it through the server."""
    toml = write_toml(GRID)
    args = ["run", "--file", str(toml), "--storage", postgres, "--tracking-uri", tracking_server, "--quiet"]
    first = cli([*args, "--store", str(tmp_path / "machine-a")])
    time.sleep(1.0)  # let the first create the studies' tables; the second then joins the same queue
    second = cli([*args, "--store", str(tmp_path / "machine-b")])
    out_a, _ = first.communicate(timeout=600)
    out_b, _ = second.communicate(timeout=600)
    assert first.returncode == 0, out_a
    assert second.returncode == 0, out_b
    store = Store.at(tmp_path / "machine-a", tracking_server)
    assert_each_run_once(toml, store, postgres)
    assert "Traceback" not in out_a + out_b
    # the warehouse fetches each run's tables through the server once, into a local cache
    cache = tmp_path / "cache"
    for _ in range(2):
        with open_warehouse(tracking_server, cache_dir=cache) as wh:
            assert wh.query("SELECT count(*) FROM runs")[1] == [(4,)]
    assert sorted(p.name for p in (cache).iterdir() if not p.name.startswith(".")) == sorted(
        r.info.run_id for r in finished(store)
    )
    report = cli(
        [
            "report",
            "--store",
            str(tmp_path / "machine-a"),
            "--tracking-uri",
            tracking_server,
            "--out",
            str(tmp_path / "r.html"),
        ]
    )
    out, _ = report.communicate(timeout=300)
    assert report.returncode == 0, out
    assert "tiny" in (tmp_path / "r.html").read_text()


def test_plan_status_and_dashboard_show_the_queue(write_toml, tmp_path):
    """After a run: `plan` and `status` list the grid study's trials; `subnets dashboard` serves the same
    storage on 127.0.0.1 and stopping it leaves no process behind."""
    import json
    import urllib.request

    from typer.testing import CliRunner

    from registry.cli import app

    toml = write_toml(tiny_toml(max_steps=1))
    runner = CliRunner()
    assert runner.invoke(app, ["run", "--file", str(toml), "--store", str(tmp_path / "s"), "--quiet"]).exit_code == 0
    plan = runner.invoke(app, ["plan", "--file", str(toml), "--store", str(tmp_path / "s")], env={"COLUMNS": "200"})
    assert plan.exit_code == 0 and "queue: sqlite:///" in plan.output and "complete 1" in plan.output
    status = runner.invoke(app, ["status", "--file", str(toml), "--store", str(tmp_path / "s")], env={"COLUMNS": "200"})
    assert status.exit_code == 0 and "tiny/grid" in status.output and "complete 1" in status.output
    assert "ETA" in status.output and "done" in status.output  # nothing remains
    as_json = runner.invoke(app, ["status", "--file", str(toml), "--store", str(tmp_path / "s"), "--format", "json"])
    (study,) = json.loads(as_json.output)
    assert study["study"] == grid_study("tiny") and study["trials"] == {"COMPLETE": 1} and study["remaining"] == 0
    assert study["eta_s"] == 0 and study["mean_trial_s"] > 0
    from runners.tracking import Store

    client = Store.at(tmp_path / "s").client
    (run,) = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert run.info.run_name == "magnitude · seed=0"  # named by what tells it from its siblings, as the report does
    empty = runner.invoke(app, ["status", "--file", str(toml), "--store", str(tmp_path / "nothing")])
    assert empty.exit_code == 1 and "no queue at" in empty.output and not (tmp_path / "nothing").exists()

    port = free_port()
    dash = subprocess.Popen(
        [sys.executable, "-m", "registry.cli", "dashboard", "--store", str(tmp_path / "s"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline, studies = time.time() + 60, None
        while time.time() < deadline and studies is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
                    studies = json.loads(r.read())["study_summaries"]
            except OSError:
                time.sleep(0.5)
        assert studies is not None, "optuna-dashboard did not answer"
        assert [s["study_name"] for s in studies] == [grid_study("tiny")]
    finally:
        dash.kill()  # SIGKILL: the dashboard is this very process (exec), nothing is left serving
        dash.wait(timeout=10)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2)


@pytest.mark.parametrize("processes", [pytest.param(2, marks=pytest.mark.slow), 4])
def test_runs_started_at_once_on_a_fresh_store_run_everything_once(write_toml, tmp_path, processes):
    """N `subnets run` at the same moment on an empty store: one creates the stores (under the store's
    lock, by atomic rename), all share the queue, every run executes once, no process fails."""
    toml = write_toml(GRID)
    procs = [cli(["run", "--file", str(toml), "--store", str(tmp_path / "s"), "--quiet"]) for _ in range(processes)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out
        assert "Traceback" not in out
    assert_each_run_once(toml, Store.at(tmp_path / "s"), f"sqlite:///{tmp_path / 's' / 'optuna.db'}")
    assert not list((tmp_path / "s").glob(".*.creating-*"))  # no temporary database left behind


def test_a_kill_while_the_store_is_created_leaves_a_usable_store(tmp_path):
    """SIGKILL while MLflow creates its tables (a temporary file then): the next command works."""

    db = tmp_path / "mlflow.db"
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom runners.tracking.store import create_sqlite_atomically\n"
        "def slow(url):\n    Path(url.removeprefix('sqlite:///')).write_bytes(b'half')\n    time.sleep(60)\n"
        f"create_sqlite_atomically(Path({str(db)!r}), slow)\n"
    )
    victim = preloaded.Popen([], code=code)
    deadline = time.time() + 60
    while not list(tmp_path.glob(".mlflow.db.creating-*")) and time.time() < deadline:
        time.sleep(0.1)
    victim.kill()
    victim.wait()
    assert not db.exists()  # the half-made database never took the real name
    store = Store.at(tmp_path)
    store.ensure()  # creates it properly, and clears the dead process's temporary file
    assert store.client.search_experiments() and db.exists()
    assert not list(tmp_path.glob(".mlflow.db.creating-*"))


POP = """
import json, sys, time
from pathlib import Path
import optuna
from runners.queue import open_storage
url, out, go, ready = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
study = optuna.load_study(study_name="q", storage=open_storage(url))
ready.touch()
while not go.exists():
    time.sleep(0.01)
taken = []
while study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
    def objective(trial):
        taken.append(trial.user_attrs.get("item"))
        return 0.0
    study.optimize(objective, n_trials=1, catch=())  # as a worker pops: ask, run, tell
out.write_text(json.dumps(taken))
"""


def test_a_sqlite_queue_hands_each_trial_to_one_worker(tmp_path):
    """Four processes pop one SQLite queue as fast as they can. Before transactions were BEGIN IMMEDIATE,
    two processes could both claim one WAITING trial (11 of 100 popped twice) and the second tell failed
    with 'Cannot tell a COMPLETE trial'."""
    url, go, items = f"sqlite:///{tmp_path / 'optuna.db'}", tmp_path / "go", 80
    study = optuna.create_study(study_name="q", storage=open_storage(url, create=True))
    for i in range(items):
        study.enqueue_trial({}, user_attrs={"item": i})
    outs, readies = [tmp_path / f"w{k}.json" for k in range(4)], [tmp_path / f"ready{k}" for k in range(4)]
    procs = [
        preloaded.Popen([url, str(o), str(go), str(r)], code=POP, stderr=subprocess.PIPE, text=True)
        for o, r in zip(outs, readies)
    ]
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in readies):  # all four have loaded the study and wait on the same start line
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a process did not load the study"
        time.sleep(0.05)
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    import json

    taken = [i for o in outs for i in json.loads(o.read_text()) if i is not None]
    assert sorted(taken) == list(range(items)), "every trial popped exactly once"
    states = [t.state for t in study.get_trials()]
    assert states.count(optuna.trial.TrialState.COMPLETE) >= items and optuna.trial.TrialState.FAIL not in states


def test_the_run_summary_flags_a_vacuous_keep_rule_and_missed_l0_targets():
    from types import SimpleNamespace

    from registry.methods import L0Params
    from registry.tracking import StopReason
    from runners.pruning.recipe import PruneStep
    from runners.queue.text import run_summary as _summary
    from runners.training import EvalResult

    def res(mcc):
        return {"id": EvalResult("id", "id", 50, 100, metrics={"mcc": mcc, "accuracy": 0.5}, primary="mcc")}

    full = PruneStep(0, 0.0, res(0.0), True)
    hit, missed = (
        PruneStep(i, 0.1 * i, res(0.0), True, strength=t, extra={"expected_sparsity_end": e})
        for i, e, t in [(1, 0.32, 0.3), (2, 0.91, 0.5)]
    )
    outcome = SimpleNamespace(
        baseline=res(0.0),
        selected=missed,
        steps=2,
        stop_reason=StopReason.DECLARED,
        seconds=1.0,
        run_id="r",
        variants=[],
        pruned_steps=[full, hit, missed],
    )
    l0 = SimpleNamespace(prune=SimpleNamespace(method="l0", params=L0Params()), experiment="x", label=lambda: "seed=1")
    text = _summary(outcome, l0)
    assert "the full model's ID mcc is 0.000: it did not learn the task" in text
    assert "L0 target 0.50: the gates' expected unit sparsity ended at 0.910" in text
    assert "target 0.30" not in text  # 0.32 is within 0.05
    learned = SimpleNamespace(**{**vars(outcome), "baseline": res(0.41), "pruned_steps": [full, hit]})
    assert "note:" not in _summary(learned, l0)
    assert _summary(learned, l0).startswith("[x] l0 · seed=1: done\n  full model: ID mcc 0.410")
    assert _summary(learned, l0, 7).startswith("[x] l0 · seed=1 · trial 7: done\n")  # a worker names its trial
    assert "\n  stopped: declared  [1 s, run r]" in _summary(learned, l0)  # the reason as its value


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # optuna's note on ask() outside optimize(), as here
def test_a_trial_whose_worker_process_is_gone_is_retried_at_once(tmp_path):
    """A worker SIGKILLed on this host leaves its trial RUNNING with a fresh heartbeat. The next worker with nothing
    to take fails it and enqueues its retry at once, instead of waiting out the heartbeat grace (20 s), so a rerun
    after a kill starts right away. A trial of a live worker, or of another host, is left to the heartbeats."""
    import socket

    from optuna.trial import TrialState

    from runners.queue import StudyName, Worker
    from runners.tracking.status import owner

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    storage = open_storage(url, create=True)
    study = optuna.create_study(study_name="subnets/tiny/grid", storage=storage)
    workers = {"dead": f"{socket.gethostname()}:{dead.pid}", "live": owner(), "elsewhere": "another-host:1"}
    for who, worker in workers.items():
        study.enqueue_trial({}, user_attrs={"fingerprint": who})
        trial = study.ask()
        trial.set_user_attr("worker", worker)
        storage.record_heartbeat(trial._trial_id)

    worker = Worker([], url, store=None, progress=None)  # neither is needed to look after the queue
    assert worker._others_running([StudyName.grid("tiny")])  # no clock: a heartbeat grace could not have passed yet
    states = {(t.user_attrs["fingerprint"], t.state) for t in study.get_trials()}
    assert states == {
        ("dead", TrialState.FAIL),
        ("live", TrialState.RUNNING),
        ("elsewhere", TrialState.RUNNING),
        ("dead", TrialState.WAITING),
    }  # the retry


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_fingerprint_enqueued_twice_completes_once(write_toml, tmp_path):
    """Two coordinators starting together (two machines) can both enqueue a fingerprint. The copy popped after
    the other trial finished it is pruned as a duplicate, not completed as a second result."""
    from optuna.trial import TrialState

    from runners.queue import Worker

    (spec,) = load_runs(write_toml(tiny_toml()))

    class FinishedStore:  # the run of this fingerprint is FINISHED in MLflow
        def run_status(self, experiment):
            return {spec.fingerprint: "FINISHED"}

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name=grid_study(spec.experiment), storage=open_storage(url, create=True))
    for _ in range(2):
        study.enqueue_trial({}, user_attrs={"fingerprint": spec.fingerprint})
    first = study.ask()
    study.tell(first, 0.5)  # the trial that ran it
    worker = Worker([spec], url, store=FinishedStore(), progress=None)
    study.optimize(worker._grid_objective, n_trials=1)
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.PRUNED]
    assert "enqueued twice" in study.get_trials()[1].user_attrs["reason"]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_of_two_running_copies_of_a_fingerprint_the_one_started_first_goes_on(write_toml, tmp_path):
    from runners.queue import Worker

    (spec,) = load_runs(write_toml(tiny_toml()))
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name=grid_study(spec.experiment), storage=open_storage(url, create=True))
    for _ in range(2):
        study.enqueue_trial({}, user_attrs={"fingerprint": spec.fingerprint})
    first, second = study.ask(), study.ask()  # both running, the first started earlier
    worker = Worker([spec], url, store=None, progress=None)
    with pytest.raises(optuna.TrialPruned):
        worker._grid_objective(second)
    assert study.get_trials()[1].user_attrs["reason"] == f"trial {first.number} is running this fingerprint"


def test_a_worker_with_nothing_left_stops_waiting_when_the_others_trial_ends(tmp_path, monkeypatch):
    """A worker whose queue is empty while another worker's trial runs waits for that trial, not a whole
    heartbeat interval: it looks again as soon as the trial ends, or as soon as a retry is enqueued."""
    import threading

    from runners.queue import StudyName, Worker

    monkeypatch.setenv("SUBNETS_HEARTBEAT_S", "600")  # a wait that ended only with the interval would hang here
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="subnets/tiny/grid", storage=open_storage(url, create=True))
    study.enqueue_trial({})
    running = study.ask()  # another worker's trial
    worker = Worker([], url, store=None, progress=None)
    grid = [StudyName.grid("tiny")]
    for change in ("ends", "a retry is enqueued"):
        waiting = threading.Thread(target=worker._wait_for_a_change, args=(grid,), daemon=True)
        waiting.start()
        waiting.join(1.0)
        assert waiting.is_alive()  # nothing changed yet: it waits
        if change == "ends":
            study.tell(running, 0.0)
            running = study.ask()  # the next trial runs on; the wait below sees a retry of it enqueued
        else:
            study.enqueue_trial({})
        waiting.join(60)
        assert not waiting.is_alive(), f"the wait went on after the other worker's trial {change}"
