"""registry.runindex: the local backend (sqlite3 over MLflow's private schema) returns exactly what the client
backend (the installed MLflow) returns, on a store that MLflow itself wrote: several experiments, FINISHED, KILLED,
FAILED and RUNNING runs, a fingerprint run twice, runs with equal start times, a deleted run, a deleted experiment,
child runs and report runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.runindex import ClientRunIndex, LocalRunIndex, RunRecord, open_index
from registry.tracking import EXPERIMENT, FINGERPRINT, KIND, OWNER, RunKind, RunStatus


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from tests.helpers import mlflow_client

    tmp = tmp_path_factory.mktemp("runindex")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = mlflow_client(tmp / "mlflow.db")
    ids: dict[str, str] = {}

    def run(
        exp: str, name: str, start: int, status: str | None, kind: str = "run", fp: str | None = None, **tags: str
    ) -> str:
        all_tags = {KIND: kind, EXPERIMENT: exp, **tags} | ({FINGERPRINT: fp} if fp else {})
        r = client.create_run(exps[exp], start_time=start, tags=all_tags, run_name=name)
        if status is not None:
            client.set_terminated(r.info.run_id, status, end_time=start + 1)
        ids[name] = r.info.run_id
        return r.info.run_id

    exps = {
        name: client.create_experiment(name, artifact_location=(tmp / "art" / name).as_uri())
        for name in ("e1", "e2", "gone", "reports-only", "empty")
    }
    run("e1", "a-old", 1000, "FINISHED", fp="fpA", **{OWNER: "host:1"})
    run("e1", "a-new", 2000, "FINISHED", fp="fpA")  # a rerun: supersedes a-old
    run("e1", "b", 3000, "FINISHED", fp="fpB")
    run("e1", "b-failed", 3000, "FAILED", fp="fpB")  # the same start time: MLflow orders by run id then
    run("e1", "c", 3000, "KILLED", fp="fpC")
    run("e1", "d", 4000, None, fp="fpD", **{OWNER: "host:2"})  # RUNNING
    run("e1", "step", 4100, "FINISHED", kind="step", fp="fpA")  # a child: never a parent run
    client.delete_run(run("e1", "deleted", 5000, "FINISHED", fp="fpE"))
    run("e1", "report-old", 6000, "KILLED", kind="report")
    run("e1", "report-new", 7000, "FINISHED", kind="report")
    run("e2", "no-fp", 1500, "FINISHED")  # no fingerprint tag: counted under its own id
    run("e2", "x", 2500, "FINISHED", fp="fpX")
    run("e2", "report", 8000, None, kind="report")  # RUNNING
    run("gone", "g", 1000, "FINISHED", fp="fpG")
    client.delete_experiment(exps["gone"])
    run("reports-only", "r", 1000, "FINISHED", kind="report")
    run("reports-only", "r-run", 1100, "KILLED", fp="fpR")
    db = tmp / "mlflow.db"
    return {"uri": uri, "db": db, "client": ClientRunIndex(uri, client), "local": LocalRunIndex(db), "ids": ids}


def _names(store, records: list[RunRecord]) -> list[str]:
    by_id = {v: k for k, v in store["ids"].items()}
    return [by_id[r.run_id] for r in records]


def test_open_index_picks_the_backend(store):
    assert isinstance(open_index(store["uri"]), LocalRunIndex)
    assert isinstance(open_index("http://127.0.0.1:1"), ClientRunIndex)


def test_experiments_agree(store):
    assert store["local"].experiments() == store["client"].experiments()
    assert sorted(store["local"].experiments().values()) == ["Default", "e1", "e2", "empty", "reports-only"]


@pytest.mark.parametrize("kind", list(RunKind))
@pytest.mark.parametrize("experiments", [None, ["e1"], ["e2", "gone", "nope"], []])
@pytest.mark.parametrize("status", [None, RunStatus.FINISHED, RunStatus.KILLED, RunStatus.RUNNING])
def test_runs_agree(store, kind, experiments, status):
    assert store["local"].runs(kind, experiments, status) == store["client"].runs(kind, experiments, status)


@pytest.mark.parametrize("fingerprint", ["fpA", "fpB", "fpE", "fpG", "none"])
def test_parent_runs_of_a_fingerprint_agree(store, fingerprint):
    assert store["local"].parent_runs("e1", fingerprint) == store["client"].parent_runs("e1", fingerprint)


def test_parent_runs_hold_every_status_newest_first(store):
    got = store["local"].parent_runs("e1")
    assert got == store["client"].parent_runs("e1")
    ties = sorted(["b", "b-failed", "c"], key=lambda n: store["ids"][n])  # equal start times: by run id
    assert _names(store, got) == ["d", *ties, "a-new", "a-old"]
    assert {r.status for r in got} == {RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED, RunStatus.RUNNING}
    old = got[-1]
    assert (old.experiment, old.fingerprint, old.tags[OWNER], old.start_time) == ("e1", "fpA", "host:1", 1000)
    assert old.artifact_uri.endswith(f"/art/e1/{old.run_id}/artifacts")


@pytest.mark.parametrize("experiments", [None, ["e1"], ["e2", "gone", "nope"]])
def test_finished_runs_agree_and_keep_the_newest_per_fingerprint(store, experiments):
    got = store["local"].finished_runs(experiments)
    assert got == store["client"].finished_runs(experiments)
    want = {None: ["b", "x", "a-new", "no-fp"], ("e1",): ["b", "a-new"], ("e2", "gone", "nope"): ["x", "no-fp"]}
    assert _names(store, got) == want[tuple(experiments) if experiments else None]


def test_an_unknown_experiment_is_warned_about(store, caplog):
    store["local"].finished_runs(["nope"])
    assert "no MLflow experiment named 'nope'" in caplog.text


def test_report_runs_agree(store):
    got = store["local"].report_runs()
    assert got == store["client"].report_runs()
    assert {name: _names(store, [run])[0] if run else None for name, run in got.items()} == {
        "e1": "report-new",
        "e2": "report",
    }  # reports-only has no finished parent run
    assert got["e2"].status == RunStatus.RUNNING and got["e1"].tags[KIND] == RunKind.REPORT


def test_experiments_with_agree(store):
    for kind, status in [
        (RunKind.RUN, RunStatus.FINISHED),
        (RunKind.RUN, RunStatus.KILLED),
        (RunKind.REPORT, RunStatus.FINISHED),
    ]:
        assert store["local"].experiments_with(kind, status) == store["client"].experiments_with(kind, status)
    assert store["local"].experiments_with(RunKind.RUN, RunStatus.KILLED) == {"e1", "reports-only"}


def test_a_store_not_created_yet_holds_nothing(tmp_path):
    import sqlite3

    missing = LocalRunIndex(tmp_path / "none.db")
    assert missing.experiments() == {} and missing.finished_runs() == [] and missing.report_runs() == {}
    sqlite3.connect(tmp_path / "empty.db").close()  # a file without MLflow's tables
    assert LocalRunIndex(tmp_path / "empty.db").parent_runs("e") == []
    assert not (tmp_path / "none.db").exists()  # read-only: nothing created


def test_store_run_status_reads_the_index(store):
    from runners.tracking import Store

    st = Store(Path(store["db"]).parent, store["uri"])
    assert st.run_status("e1") == {"fpA": "FINISHED", "fpB": "FINISHED", "fpC": "KILLED", "fpD": "RUNNING"}
    assert st.run_status("gone") == {} and st.run_status("nope") == {}
