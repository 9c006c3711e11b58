"""A fresh store's MLflow and Optuna databases are copied from empty ones made once per version of each library,
and are the databases the library itself would have made there."""

from __future__ import annotations

import sqlite3

import pytest

from runners.queue import storage as queue_storage
from runners.queue.storage import _optuna_tables, open_storage, schema_head
from runners.tracking import store as store_module
from runners.tracking.store import Store, _mlflow_tables
from runners.tracking.templates import template_path


def _lines(sql: str | None) -> list[str]:
    """A CREATE statement's clauses, in order-free form: MLflow's own migrations order a table's constraints
    differently from one run to the next."""
    return sorted(line.strip().rstrip(",") for line in (sql or "").splitlines())


def _dump(db, rows: str = "SELECT experiment_id, name, artifact_location, lifecycle_stage FROM experiments"):
    """Schema, alembic version and the rows `rows` selects (MLflow's: every row but the Default experiment's times)."""
    con = sqlite3.connect(db)
    try:
        tables = con.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
        schema = sorted((kind, name, _lines(sql)) for kind, name, sql in tables)
        version = con.execute("SELECT * FROM alembic_version").fetchall()
        return schema, version, con.execute(rows).fetchall()
    finally:
        con.close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "cache"


def test_a_store_from_the_template_is_the_database_mlflow_makes(tmp_path, cache):
    direct = tmp_path / "direct.db"
    _mlflow_tables(f"sqlite:///{direct}")
    Store.at(tmp_path / "a").ensure()
    assert template_path("mlflow").is_relative_to(cache) and template_path("mlflow").exists()
    assert _dump(tmp_path / "a" / "mlflow.db") == _dump(direct)
    # the store works: an experiment, a run, a metric
    store = Store.at(tmp_path / "a")
    exp = store.experiment_id("x")
    run = store.client.create_run(exp)
    store.client.log_metric(run.info.run_id, "m", 1.5)
    assert store.client.get_run(run.info.run_id).data.metrics == {"m": 1.5}


def _counted(monkeypatch, module, name: str) -> list[str]:
    """module.name (a function of a database URL) replaced by itself, counting: the URLs it is called with."""
    calls, original = [], getattr(module, name)

    def counted(url):
        calls.append(url)
        original(url)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_migrations_run_once_per_mlflow_version(tmp_path, cache, monkeypatch):
    calls = _counted(monkeypatch, store_module, "_mlflow_tables")
    for name in ("a", "b", "c"):
        Store.at(tmp_path / name).ensure()
    Store.at(tmp_path / "d" / "new").client.search_experiments()  # a store first opened by its client: the same
    assert len(calls) == 1 and "subnets" in calls[0]  # the template's, then copies
    assert _dump(tmp_path / "b" / "mlflow.db") == _dump(tmp_path / "c" / "mlflow.db")
    assert _dump(tmp_path / "d" / "new" / "mlflow.db") == _dump(tmp_path / "c" / "mlflow.db")


def test_an_unwritable_cache_makes_the_database_directly(tmp_path, monkeypatch):
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    Store.at(tmp_path / "a").ensure()
    assert _dump(tmp_path / "a" / "mlflow.db")[1]  # migrated: an alembic version
    assert not (tmp_path / "a" / "mlflow.db-journal").exists()


def test_a_damaged_template_is_made_again(tmp_path, cache):
    Store.at(tmp_path / "a").ensure()
    template_path("mlflow").write_bytes(b"not a database" * 100)
    Store.at(tmp_path / "b").ensure()
    assert _dump(tmp_path / "b" / "mlflow.db") == _dump(tmp_path / "a" / "mlflow.db")


def _optuna_dump(db) -> tuple[list, list, list]:
    """Schema, alembic version and Optuna's version row."""
    return _dump(db, "SELECT * FROM version_info")


def test_a_queue_from_the_template_is_the_database_optuna_makes_and_is_made_once(tmp_path, cache, monkeypatch):
    calls = _counted(monkeypatch, queue_storage, "_optuna_tables")
    direct = tmp_path / "direct.db"
    _optuna_tables(f"sqlite:///{direct}")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        storage = open_storage(f"sqlite:///{tmp_path / name / 'optuna.db'}", create=True)
        storage.engine.dispose()
    assert len(calls) == 1 and template_path("optuna").is_relative_to(cache)  # the template's, then copies
    assert (
        _optuna_dump(tmp_path / "a" / "optuna.db") == _optuna_dump(direct) == _optuna_dump(tmp_path / "b" / "optuna.db")
    )
    # the queue works: a study, a trial, its value
    import optuna

    storage = open_storage(f"sqlite:///{tmp_path / 'a' / 'optuna.db'}")
    study = optuna.create_study(storage=storage, study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert len(study.trials) == 1 and study.trials[0].value is not None
    # the revision a storage is checked against is the one Optuna makes
    assert schema_head() == _optuna_dump(direct)[1][0][0]


def test_a_queue_another_optuna_made_is_refused_at_once(tmp_path, cache, monkeypatch):
    """Tables at another revision are refused on the first try: not taken for two coordinators creating the tables
    at once, whose loser tries again after a pause."""
    db = tmp_path / "optuna.db"
    open_storage(f"sqlite:///{db}", create=True).engine.dispose()
    with sqlite3.connect(db) as con:
        con.execute("UPDATE alembic_version SET version_num = 'v3.0.0.a'")
    con.close()
    monkeypatch.setattr(queue_storage.time, "sleep", lambda s: pytest.fail(f"tried again after {s} s"))
    for create in (True, False):
        with pytest.raises(queue_storage.StorageIncompatible, match="tables are at revision v3.0.0.a"):
            open_storage(f"sqlite:///{db}", create=create)
