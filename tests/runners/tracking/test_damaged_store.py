"""A damaged store: a run's table file truncated or deleted is named (run and file) and that run left out of
`query` and `report` while the others load; a damaged mlflow.db or optuna.db is one clear line (exit 2), no
traceback, and the file is left exactly as it was (the warehouse cache's own damage:
tests/reports/test_report_cache.py).
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from tests import preloaded
from tests.conftest import tiny_toml

GRID = tiny_toml(max_steps=1).replace("rate = 0.3", "rate = [0.2, 0.3, 0.4]")


def _cli(args: list[str], store: Path) -> subprocess.CompletedProcess:
    return preloaded.run(
        [*args, "--store", str(store)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "300"},
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """A store with three finished runs, copied by each test that damages one of its databases."""
    root = tmp_path_factory.mktemp("finished")
    toml = root / "experiments.toml"
    toml.write_text(GRID)
    proc = _cli(["run", "--file", str(toml), "--quiet"], root / "s")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return toml, root / "s"


def _copy(finished, tmp_path) -> tuple[Path, Path]:
    import shutil

    toml, store = finished
    shutil.copytree(store, tmp_path / "s")
    return toml, tmp_path / "s"


def _tables(store: Path, name: str) -> list[Path]:
    return sorted(store.glob(f"mlartifacts/tiny/*/artifacts/tables/{name}"))


def test_a_damaged_table_file_leaves_its_run_out_and_names_it(tmp_path):
    """One run's steps table truncated, another's deleted: each run is named with its file and left out of every
    table, and the third run's rows all load."""
    toml, store = (
        tmp_path / "experiments.toml",
        tmp_path / "s",
    )  # its own store: a copy's runs point at the original's files
    toml.write_text(GRID)
    assert _cli(["run", "--file", str(toml), "--quiet"], store).returncode == 0
    truncated, deleted, _ = _tables(store, "steps.parquet")
    truncated.write_bytes(truncated.read_bytes()[:100])
    deleted.unlink()
    damaged = [path.parts[-4] for path in (truncated, deleted)]  # their run ids
    query = _cli(["query", "select count(*) AS n, count(DISTINCT run_id) AS r from steps", "--format", "csv"], store)
    assert query.returncode == 0, query.stdout + query.stderr
    for run_id in damaged:
        assert f"run {run_id}" in query.stderr, query.stderr
    assert query.stderr.count("steps.parquet") >= 2 and "left out" in query.stderr
    assert query.stdout.splitlines()[1].endswith(",1")  # the third run's steps, all there
    runs = _cli(["query", "select count(*) from runs", "--format", "csv"], store)
    assert runs.stdout.splitlines()[1] == "1"  # left out of every table, not only the damaged one
    report = _cli(["report", "-o", str(tmp_path / "report.html"), "--no-mlflow"], store)
    assert report.returncode == 0 and all(f"run {r}" in report.stderr for r in damaged), report.stdout + report.stderr
    assert "Traceback" not in query.stderr + report.stderr and (tmp_path / "report.html").exists()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "db, commands",
    [
        ("mlflow.db", [["plan"], ["run"], ["report", "--no-mlflow"], ["query", "select 1"]]),
        ("optuna.db", [["plan"], ["status"], ["run"]]),
    ],
)
def test_a_damaged_database_is_one_line_and_left_as_it_was(finished, tmp_path, db, commands):
    toml, store = _copy(finished, tmp_path)
    path = store / db
    path.write_bytes(path.read_bytes()[:3000])  # a torn copy: the header survives, the pages do not
    before = _digest(path)
    for args in commands:
        file_args = ["--file", str(toml)] if args[0] in ("plan", "run", "status") else []
        proc = _cli([*args, *file_args], store)
        assert proc.returncode == 2, (args, proc.stdout + proc.stderr)
        assert "Traceback" not in proc.stdout + proc.stderr
        assert f"{path} is damaged" in proc.stderr and "restore it from a backup" in proc.stderr, proc.stderr
    assert _digest(path) == before  # nothing was written to it


def test_a_queue_database_another_optuna_made_is_one_line_and_left_as_it_was(finished, tmp_path):
    """Tables at another revision of Optuna's schema (here an older one): refused in one line that says how to
    upgrade, by the commands that open the queue and by a worker, and the file is not written."""
    import sqlite3

    toml, store = _copy(finished, tmp_path)
    path = store / "optuna.db"
    with sqlite3.connect(path) as con:
        (head,) = con.execute("SELECT version_num FROM alembic_version").fetchone()
        con.execute("UPDATE alembic_version SET version_num = 'v3.0.0.a'")
    con.close()
    before = _digest(path)
    url = f"sqlite:///{path}"
    worker = ["work", "--storage", url, "--tracking-uri", f"sqlite:///{store / 'mlflow.db'}"]
    for args in (["status"], ["run"], worker):
        proc = _cli([*args, "--file", str(toml)], store)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 2, (args, output)
        assert "Traceback" not in output and len(output.strip().splitlines()) == 1, (args, output)
        assert (
            f"the queue database {url} was made by another version of Optuna (its tables are at revision v3.0.0.a, "
            f"Optuna {optuna_version()} makes {head})" in output
        ), output
        assert f"`optuna storage upgrade --storage {url}`" in output
    assert _digest(path) == before


def optuna_version() -> str:
    from importlib.metadata import version

    return version("optuna")
