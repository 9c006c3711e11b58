"""Readers beside writers: `subnets report` and `subnets query`, real processes, while 2 workers write runs to the
same store. Each read succeeds and sees finished runs only; two reports at once both complete, and the warehouse
cache they leave reads the same as every run's own files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from reports.warehouse import open_warehouse
from runners.tracking import Store
from tests import preloaded
from tests.conftest import tiny_toml
from tests.helpers import mlflow_client
from tests.reports.test_report_cache import contents

# 40 small pruning steps, each evaluated on 2048 examples: a run lasts ~10 s here (2 cores), several reads (~3 s
# each, most of it the process starting), so reads fall between the runs' ends and catch the grid half done
RATES = [0.02, 0.021, 0.022, 0.023, 0.024, 0.025]
GRID = (
    tiny_toml(max_steps=40, rate=0.02)
    .replace("rate = 0.02", f"rate = {json.dumps(RATES)}")
    .replace("n_id_eval = 64", "n_id_eval = 2048")
)
SMALL_RATES = RATES[:3]  # no worker beside these reads: three runs make a store to read
SMALL = tiny_toml(max_steps=2).replace("rate = 0.3", f"rate = {json.dumps(SMALL_RATES)}")


def subnets(*args: str, **kw) -> preloaded.Popen:
    return preloaded.Popen(
        list(args),
        env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def finish(proc: preloaded.Popen, what: str, timeout: float = 300) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"{what}: exit {proc.returncode}\n{out}\n{err}"
    assert "Traceback" not in out + err, f"{what}:\n{out}\n{err}"
    return out


def query_run_ids(store: Path) -> list[str]:
    out = finish(subnets("query", "--store", str(store), "--format", "json", "SELECT run_id FROM runs"), "query")
    return [row["run_id"] for row in json.loads(out.strip().splitlines()[-1])]


def report_run_ids(store: Path, html: Path) -> list[str]:
    """The run ids a report names (its provenance section lists each run it counts)."""
    finish(subnets("report", "--store", str(store), "--out", str(html)), "report")
    return re.findall(r"· run <code>([0-9a-f]{32})</code>", html.read_text())


def finished_run_ids(store: Path) -> list[str]:
    """The FINISHED runs (kind run, not the reports' own runs) in MLflow."""
    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    found = client.search_runs(
        [exp.experiment_id], filter_string="tags.`subnets.kind` = 'run' and attributes.status = 'FINISHED'"
    )
    return sorted(r.info.run_id for r in found)


def status_of(store: Path, run_ids: list[str]) -> dict[str, str]:
    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    return {r: client.get_run(r).info.status for r in run_ids}


@pytest.mark.slow  # 113 s here (2 cores, load 4): the grid must outlast many reads
def test_reports_and_queries_beside_two_workers_see_finished_runs_only(write_toml, tmp_path):
    toml, store = write_toml(GRID), tmp_path / "s"
    writers = subnets("run", "--file", str(toml), "--store", str(store), "--workers", "2", "--quiet")
    seen: list[int] = []  # runs each read saw
    reads = 0
    try:
        while writers.poll() is None:
            if not (store / "mlflow.db").exists():
                time.sleep(0.2)
                continue
            queried = query_run_ids(store)
            reported = report_run_ids(store, tmp_path / f"report{reads}.html")
            reads += 1
            for ids in (queried, reported):
                statuses = status_of(store, ids)
                assert set(statuses.values()) <= {"FINISHED"}, statuses  # a run is read only once it has finished
            assert set(reported) <= set(queried) | set(query_run_ids(store))  # finished runs only grow
            seen.append(len(queried))
    finally:
        finish(writers, "subnets run --workers 2", timeout=600)
    assert reads >= 2, "the reads ran while the workers wrote"
    assert any(0 < n < len(RATES) for n in seen), f"no read caught the grid half done (runs seen: {seen})"
    assert seen == sorted(seen)
    assert sorted(query_run_ids(store)) == finished_run_ids(store) and len(finished_run_ids(store)) == len(RATES)


def test_two_reports_at_once_complete_and_leave_the_cache_consistent(write_toml, tmp_path):
    toml, store = write_toml(SMALL), tmp_path / "s"
    finish(subnets("run", "--file", str(toml), "--store", str(store), "--quiet"), "subnets run", timeout=600)
    both = [subnets("report", "--store", str(store), "--out", str(tmp_path / f"r{i}.html")) for i in range(2)]
    for i, proc in enumerate(both):
        assert "report written to" in finish(proc, f"report {i}")
    assert (tmp_path / "r0.html").read_bytes() == (tmp_path / "r1.html").read_bytes()  # same data, same bytes
    tracking = Store.at(store).tracking_uri
    with open_warehouse(tracking, warehouse_dir=store / ".subnets" / "warehouse") as wh:
        through_cache = contents(wh)
    with open_warehouse(tracking) as wh:
        every_file = contents(wh)
        ids = sorted(r for (r,) in wh.query("SELECT run_id FROM runs")[1])
    assert through_cache == every_file and ids == finished_run_ids(store) and len(ids) == len(SMALL_RATES)
    assert sorted(query_run_ids(store)) == ids  # `subnets query` reads through the cache the reports left
    client = MlflowClient(tracking_uri=tracking)
    exp = client.get_experiment_by_name("tiny").experiment_id
    assert len(client.search_runs([exp], "tags.`subnets.kind` = 'report'")) == 1  # one report run, not one each


PUBLISH = """
import sys, time
from pathlib import Path
from registry.runindex import mlflow_client
from reports.publish import log_report
uri, html, go, ready = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
client = mlflow_client(uri)
client.search_experiments(max_results=1)  # MLflow imported and the store open before the start line
ready.touch()
while not go.exists():
    time.sleep(0.001)
print(*log_report(uri, html, ["tiny"], client))
"""


def test_reports_published_at_once_share_one_report_run(tmp_path):
    """Reports started together on an experiment without a report run each found none and each created one (3 of
    3 reports at once left 3 report runs). Now the creators agree on the oldest and the others delete theirs."""
    uri, go, html = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "go", tmp_path / "report.html"
    html.write_text("<html>the report</html>")
    client = mlflow_client(tmp_path / "mlflow.db")
    exp = client.create_experiment("tiny", artifact_location=(tmp_path / "artifacts").as_uri())
    readies = [tmp_path / f"ready{i}" for i in range(3)]
    procs = [
        preloaded.Popen(
            [uri, str(html), str(go), str(ready)],
            code=PUBLISH,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for ready in readies
    ]
    deadline = time.time() + 120
    while not all(r.exists() for r in readies) and time.time() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.05)
    go.touch()  # the three log at the same moment
    ids = [finish(p, "log_report").split() for p in procs]
    reports = client.search_runs([exp], filter_string="tags.`subnets.kind` = 'report'")
    assert len(reports) == 1, [r.info.run_id for r in reports]
    assert ids == [[reports[0].info.run_id]] * 3
    assert reports[0].info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(reports[0].info.run_id)] == ["report.html"]
