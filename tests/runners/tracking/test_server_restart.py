"""The MLflow tracking server restarts (or is away for 30 s: a network partition) while a run logs to it: the run rides
through (its client retries for about a minute) or fails with one line, and the same command run again finishes it.
Either way each fingerprint ends FINISHED once, no metric step is logged twice, and the warehouse counts each run and
step once."""

from __future__ import annotations

import subprocess
import time

import pytest

from registry.loader import load_runs
from reports.warehouse import open_warehouse
from runners.tracking import Store
from tests import preloaded
from tests.conftest import tiny_toml
from tests.helpers import TrackingServer

GRID = tiny_toml(max_steps=6).replace("n_id_eval = 64", "n_id_eval = 600").replace("rate = 0.3", "rate = [0.2, 0.3]")


@pytest.fixture
def server(tmp_path):
    s = TrackingServer(tmp_path)
    s.start()
    yield s
    s.stop()


@pytest.mark.parametrize(
    "away_s",
    [1, pytest.param(30, marks=pytest.mark.slow, id="partition-30s")],  # a restart; a 30 s network partition
)
def test_a_run_survives_a_tracking_server_restart_or_finishes_on_rerun(write_toml, tmp_path, server, away_s):
    toml = write_toml(GRID)
    args = [
        "run",
        "--file",
        str(toml),
        "--store",
        str(tmp_path / "s"),
        "--tracking-uri",
        server.url,
        "--quiet",
    ]
    proc = preloaded.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not list((tmp_path / "server-artifacts").glob("*/*/artifacts/partial/step_001.json")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() else ""
        time.sleep(0.1)
    server.stop()  # mid-run: the run's next calls find nothing listening, then the server is back on the same port
    time.sleep(away_s)
    server.start()
    output, _ = proc.communicate(timeout=600)
    assert "Traceback" not in output, output
    if proc.returncode != 0:  # the client gave up while the server was away: one line, then the rerun finishes it
        assert proc.returncode == 2 and "the tracking store failed" in output, output
        again = preloaded.run(args, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0 and "Traceback" not in again.stdout + again.stderr, again.stdout + again.stderr
    store = Store.at(tmp_path / "s", server.url)
    exp = store.client.get_experiment_by_name("tiny")
    runs = store.client.search_runs([exp.experiment_id], "tags.`subnets.kind` = 'run'")
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert sorted(r.data.tags["subnets.fingerprint"] for r in finished) == sorted(
        r.fingerprint for r in load_runs(toml)
    )
    for run in finished:  # no metric step logged twice by a retried request
        history = store.client.get_metric_history(run.info.run_id, "step/sparsity")
        assert len(history) == len({m.step for m in history}) == 7  # step 0 and six pruning steps
    with open_warehouse(server.url, cache_dir=tmp_path / "downloads") as wh:
        ((n_runs, distinct),) = wh.query("SELECT count(*), count(DISTINCT fingerprint) FROM runs")[1]
        ((rows, steps),) = wh.query(
            "SELECT count(*), count(DISTINCT (run_id, variant, step)) FROM steps "
            "WHERE eval_set = 'id' AND subcase = 'all'"
        )[1]
    assert n_runs == distinct == 2 and rows == steps
