"""The store's warehouse cache (reports.cache, `.subnets/warehouse/`): merged Parquet files per table and a
manifest of the runs they hold. A warehouse read through it holds exactly what one read from every run's own
files holds, after runs are added, superseded, deleted or rewritten, with a damaged merge, a new contract
version, an experiment filter, several readers at once and no usable cache directory."""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from pathlib import Path

import pytest

from registry.runindex import local_artifact_path
from reports import cache, loading
from reports.cache import MANIFEST
from reports.warehouse import TABLES, open_warehouse
from runners.tracking.tables import write_table
from tests.reports.test_reports import (
    ACC,
    EXP_A,
    EXP_B,
    SELECTED,
    add_run,
    make_tables,
    shifted,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from tests.helpers import mlflow_client

    tmp = tmp_path_factory.mktemp("cache-store")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = mlflow_client(tmp / "mlflow.db")
    exps = {
        name: client.create_experiment(name, artifact_location=(tmp / f"art-{i}").as_uri())
        for i, name in enumerate((EXP_A, EXP_B))
    }
    runs = [
        add_run(
            client,
            tmp,
            exps[EXP_A],
            EXP_A,
            seed,
            f"fa{seed}",
            "magnitude",
            ACC[seed],
            SELECTED[seed],
            cka=True,
            units=seed == 0,
        )
        for seed in (0, 1)
    ]
    runs.append(add_run(client, tmp, exps[EXP_B], EXP_B, 0, "fb0", "s-pruning", ACC[0], 1))
    add_run(client, tmp, exps[EXP_B], EXP_B, 1, "fb1", "s-pruning", ACC[1], 1, status="FAILED")  # never read
    return {"uri": uri, "tmp": tmp, "client": client, "exps": exps, "runs": runs}


def _value(v):
    if isinstance(v, float):
        return "nan" if math.isnan(v) else round(v, 12)
    return v


def contents(wh) -> dict[str, list[tuple]]:
    """Every table of a warehouse, rows sorted."""
    out = {}
    for view in [*TABLES, "run_tags"]:
        rows = wh.query(f'SELECT * FROM "{view}"')[1]
        out[view] = sorted((tuple(_value(v) for v in row) for row in rows), key=repr)
    return out


def uncached(uri: str, experiments=None) -> dict[str, list[tuple]]:
    with open_warehouse(uri, experiments) as wh:
        return contents(wh)


def cached(uri: str, wd: Path, experiments=None) -> dict[str, list[tuple]]:
    with open_warehouse(uri, experiments, warehouse_dir=wd) as wh:
        return contents(wh)


def manifest(wd: Path) -> dict:
    return json.loads((wd / MANIFEST).read_text())


@pytest.fixture
def loads(monkeypatch):
    """What each load read: per call, the run files and the merged files given to create_tables."""
    calls = []
    real = loading.create_tables

    def spy(con, files, merged=None, keep=False):
        calls.append(
            {
                "files": sorted(str(p) for paths in files.values() for p in paths),
                "merged": sorted(merged or {}),
                "keep": keep,
            }
        )
        return real(con, files, merged, keep)

    monkeypatch.setattr(loading, "create_tables", spy)
    return calls


def tables_dir(client, run_id: str) -> Path:
    return local_artifact_path(client.get_run(run_id).info.artifact_uri) / "tables"


def test_the_cache_holds_the_finished_runs_and_later_reads_only_new_files(store, tmp_path, loads):
    wd = tmp_path / "warehouse"
    first = cached(store["uri"], wd)
    assert first == uncached(store["uri"]) and len(first["runs"]) == len(store["runs"])
    held = manifest(wd)
    assert set(held["runs"]) == set(store["runs"])
    assert held["runs"][store["runs"][0]]["steps"][2] == cache.RESULTS_VERSION  # each file's contract version
    assert sorted(p.name for p in wd.iterdir()) == sorted([".lock", MANIFEST, *held["files"].values()])
    assert set(held["files"]) == {"runs", "axes", "steps", "units", "cka"} - {"axes"}  # no run logged axes

    assert cached(store["uri"], wd) == first
    assert loads[-1]["files"] == [] and loads[-1]["merged"] == sorted(held["files"])  # the merge alone
    assert manifest(wd) == held  # nothing new: not rewritten

    client = store["client"]
    new = add_run(client, store["tmp"], store["exps"][EXP_B], EXP_B, 2, "fb2", "s-pruning", shifted(ACC[0], 0.4242), 1)
    try:
        after = cached(store["uri"], wd)
        load = loads[-1]
        assert after == uncached(store["uri"]) and len(after["runs"]) == len(first["runs"]) + 1
        assert load["files"] and all(f"/{new}/" in f for f in load["files"])  # only the new run's files
        assert load["merged"] == sorted(held["files"])
        assert set(manifest(wd)["runs"]) == set(store["runs"]) | {new}
    finally:
        client.delete_run(new)


def test_superseded_deleted_and_rewritten_runs_drop_out(store, tmp_path):
    client, tmp = store["client"], store["tmp"]
    exp = client.create_experiment("cache-drop", artifact_location=(tmp / "art-drop").as_uri())
    r1, r2, r3 = (
        add_run(client, tmp, exp, "cache-drop", seed, f"fd{seed}", "magnitude", ACC[seed % 2], SELECTED[seed % 2])
        for seed in range(3)
    )
    wd = tmp_path / "warehouse"
    cached(store["uri"], wd)
    assert {r1, r2, r3} <= set(manifest(wd)["runs"])

    # r1 re-finished under its fingerprint, r2 deleted, r3's steps rewritten in place (another value)
    r1b = add_run(client, tmp, exp, "cache-drop", 0, "fd0", "magnitude", shifted(ACC[0], 0.1357), 1, start=5000)
    client.delete_run(r2)
    steps = tables_dir(client, r3) / "steps.parquet"
    before = os.stat(steps)
    write_table(
        steps.parent, "steps", make_tables("cache-drop", r3, "fd2", 2, "magnitude", shifted(ACC[0], 0.2468), 1)["steps"]
    )
    os.utime(steps, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))  # a coarse clock still differs

    got = cached(store["uri"], wd)
    assert got == uncached(store["uri"])
    ids = {row[1] for row in got["runs"]}
    assert r1b in ids and r3 in ids and r1 not in ids and r2 not in ids
    value = [name for name, _ in TABLES["steps"][1]].index("value")
    assert {row[value] for row in got["steps"] if row[1] == r3} == {0.2468}
    held = manifest(wd)["runs"]
    assert r1 not in held and r2 not in held and r1b in held
    assert held[r3]["steps"][1] == os.stat(steps).st_mtime_ns


def test_a_damaged_merge_is_read_from_the_runs_files_and_rebuilt(store, tmp_path, caplog):
    wd = tmp_path / "warehouse"
    cached(store["uri"], wd)
    old = manifest(wd)["files"]["steps"]
    (wd / old).write_bytes(b"not parquet")
    with caplog.at_level(logging.WARNING, logger="reports.cache"):
        assert cached(store["uri"], wd) == uncached(store["uri"])
    assert "read from the runs' files instead" in caplog.text
    assert manifest(wd)["files"]["steps"] != old and not (wd / old).exists()
    assert cached(store["uri"], wd) == uncached(store["uri"])


def test_an_experiment_filter_reads_the_cache_and_leaves_it_alone(store, tmp_path, loads):
    wd = tmp_path / "warehouse"
    cached(store["uri"], wd)
    text = (wd / MANIFEST).read_text()
    got = cached(store["uri"], wd, [EXP_B])
    load = loads[-1]
    assert got == uncached(store["uri"], [EXP_B]) and {row[0] for row in got["runs"]} == {EXP_B}
    assert load["files"] == [] and load["keep"] is True  # the merge, less the other experiments
    assert (wd / MANIFEST).read_text() == text


def test_a_new_contract_version_starts_the_merge_over(store, tmp_path, loads, monkeypatch):
    wd = tmp_path / "warehouse"
    cached(store["uri"], wd)
    monkeypatch.setattr(cache, "RESULTS_VERSION", cache.RESULTS_VERSION + 1)
    got = cached(store["uri"], wd)
    load = loads[-1]
    assert got == uncached(store["uri"])
    assert load["merged"] == [] and len(load["files"]) > 0
    assert manifest(wd)["results_version"] == cache.RESULTS_VERSION


def test_concurrent_readers_leave_one_whole_cache(store, tmp_path):
    wd = tmp_path / "warehouse"
    want = uncached(store["uri"])
    results, errors = [], []

    def read():
        try:
            results.append(cached(store["uri"], wd))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and results == [want] * 4
    held = manifest(wd)
    assert sorted(p.name for p in wd.iterdir()) == sorted([".lock", MANIFEST, *held["files"].values()])
    assert cached(store["uri"], wd) == want


def test_without_a_usable_cache_directory_every_file_is_read(store, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert cached(store["uri"], blocker / "warehouse") == uncached(store["uri"])
