"""The queue under load: 8 worker processes on one PostgreSQL queue and 4 on a SQLite queue drain a grid of
trivial trials (benchmarks/queue_load.py: the real Worker loop and storage, the run replaced by a no-op) with
every trial COMPLETE exactly once, no FAIL, no duplicate fingerprint and no worker error."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.helpers import PROJECT_ROOT
from tests.runners.queue.test_queue import postgres  # noqa: F401 - the fixture, used by name

TRIALS = 200


def _driver():
    spec = importlib.util.spec_from_file_location("queue_load", PROJECT_ROOT / "benchmarks" / "queue_load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_drained_once(result: dict, workers: int) -> None:
    assert result["errors"] == [], "\n".join(result["errors"])
    assert result["enqueued"] == TRIALS
    assert result["complete_fingerprints"] == result["expected_fingerprints"], "every fingerprint COMPLETE once"
    assert len(set(result["expected_fingerprints"])) == TRIALS
    assert result["duplicates"] == 0
    assert "FAIL" not in result["states"] and "RUNNING" not in result["states"] and "WAITING" not in result["states"]
    assert result["states"]["COMPLETE"] == TRIALS
    # PRUNED: only a worker's ask that found the queue empty at the end (at most one per worker)
    assert result["states"].get("PRUNED", 0) <= workers
    assert sum(result["ran_by_worker"]) == TRIALS and len(result["ran_by_worker"]) == workers
    split = result["split_ms"]
    assert split["claim"]["calls"] >= TRIALS and split["record"]["calls"] >= TRIALS
    assert split["heartbeat"]["calls"] >= TRIALS  # one heartbeat at least as each trial starts


@pytest.mark.slow  # 76 s here (2 cores, load 4.5): 8 processes start, import and drain
def test_eight_workers_drain_a_postgresql_queue(postgres, tmp_path):  # noqa: F811 - the imported fixture
    result = _driver().drain(postgres, workers=8, trials=TRIALS, work_dir=tmp_path / "pg")
    assert result["storage"] == "postgresql"
    assert_drained_once(result, 8)


@pytest.mark.slow  # 4 processes start, import and drain 200 trials: ~45 s of the fast set's 2 cores
def test_four_workers_drain_a_sqlite_queue(tmp_path):
    url = f"sqlite:///{tmp_path / 'sqlite' / 'store' / 'optuna.db'}"
    result = _driver().drain(url, workers=4, trials=TRIALS, work_dir=tmp_path / "sqlite")
    assert result["storage"] == "sqlite"
    assert_drained_once(result, 4)
    assert Path(url.removeprefix("sqlite:///")).exists()
