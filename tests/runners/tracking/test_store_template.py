"""A fresh store's MLflow database is copied from an empty one made once per MLflow version, and is the database
MLflow itself would have made there."""

from __future__ import annotations

import sqlite3

import pytest

from runners.tracking import store as store_module
from runners.tracking.store import Store, _mlflow_tables, template_path


def _lines(sql: str | None) -> list[str]:
    """A CREATE statement's clauses, in order-free form: MLflow's own migrations order a table's constraints
    differently from one run to the next."""
    return sorted(line.strip().rstrip(",") for line in (sql or "").splitlines())


def _dump(db) -> tuple[list, list, list]:
    """Schema, alembic version and every row but the Default experiment's times."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
        schema = sorted((kind, name, _lines(sql)) for kind, name, sql in rows)
        version = con.execute("SELECT * FROM alembic_version").fetchall()
        experiments = con.execute("SELECT experiment_id, name, artifact_location, lifecycle_stage FROM experiments")
        return schema, version, experiments.fetchall()
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
    assert template_path().is_relative_to(cache) and template_path().exists()
    assert _dump(tmp_path / "a" / "mlflow.db") == _dump(direct)
    # the store works: an experiment, a run, a metric
    store = Store.at(tmp_path / "a")
    exp = store.experiment_id("x")
    run = store.client.create_run(exp)
    store.client.log_metric(run.info.run_id, "m", 1.5)
    assert store.client.get_run(run.info.run_id).data.metrics == {"m": 1.5}


def test_migrations_run_once_per_mlflow_version(tmp_path, cache, monkeypatch):
    calls = []

    def counted(url):
        calls.append(url)
        _mlflow_tables(url)

    monkeypatch.setattr(store_module, "_mlflow_tables", counted)
    for name in ("a", "b", "c"):
        Store.at(tmp_path / name).ensure()
    assert len(calls) == 1 and "subnets" in calls[0]  # the template's, then copies
    assert _dump(tmp_path / "b" / "mlflow.db") == _dump(tmp_path / "c" / "mlflow.db")


def test_an_unwritable_cache_makes_the_database_directly(tmp_path, monkeypatch):
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    Store.at(tmp_path / "a").ensure()
    assert _dump(tmp_path / "a" / "mlflow.db")[1]  # migrated: an alembic version
    assert not (tmp_path / "a" / "mlflow.db-journal").exists()


def test_a_damaged_template_is_made_again(tmp_path, cache):
    Store.at(tmp_path / "a").ensure()
    template_path().write_bytes(b"not a database" * 100)
    Store.at(tmp_path / "b").ensure()
    assert _dump(tmp_path / "b" / "mlflow.db") == _dump(tmp_path / "a" / "mlflow.db")
