"""Run status straight from a local MLflow SQLite store, read-only, without importing MLflow.

MLflow keeps runs, their tags and experiments in the tables `runs` (run_uuid, experiment_id, status,
lifecycle_stage), `tags` (key, value, run_uuid) and `experiments` (experiment_id, name,
lifecycle_stage); these have been stable since MLflow 1.x. A test checks this reader against the
MLflow client on a store MLflow itself wrote.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

_QUERY = """
SELECT fp.value, r.status
FROM runs AS r
JOIN experiments AS e ON e.experiment_id = r.experiment_id
JOIN tags AS kind ON kind.run_uuid = r.run_uuid AND kind.key = ? AND kind.value = 'run'
JOIN tags AS fp ON fp.run_uuid = r.run_uuid AND fp.key = ?
WHERE e.name = ? AND e.lifecycle_stage = 'active' AND r.lifecycle_stage = 'active'
"""


def sqlite_run_status(db: Path, experiment: str, kind_tag: str, fingerprint_tag: str) -> list[tuple[str, str]]:
    """(fingerprint, status) of every parent run of `experiment`; [] when the store has no such tables yet."""
    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        return [(fp, status) for fp, status in con.execute(_QUERY, (kind_tag, fingerprint_tag, experiment))]
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return []
        raise
    finally:
        con.close()
