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
SELECT fp.value, r.status, owner.value
FROM runs AS r
JOIN experiments AS e ON e.experiment_id = r.experiment_id
JOIN tags AS kind ON kind.run_uuid = r.run_uuid AND kind.key = ? AND kind.value = 'run'
JOIN tags AS fp ON fp.run_uuid = r.run_uuid AND fp.key = ?
LEFT JOIN tags AS owner ON owner.run_uuid = r.run_uuid AND owner.key = ?
WHERE e.name = ? AND e.lifecycle_stage = 'active' AND r.lifecycle_stage = 'active'
"""


def sqlite_run_status(db: Path, experiment: str, kind_tag: str, fingerprint_tag: str,
                      owner_tag: str = "subnets.owner") -> list[tuple[str, str, str | None]]:
    """(fingerprint, status, owner) of every parent run of `experiment`; [] when the store has no tables yet."""
    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        return [tuple(row) for row in con.execute(_QUERY, (kind_tag, fingerprint_tag, owner_tag, experiment))]
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return []
        raise
    finally:
        con.close()


def owner() -> str:
    """host:pid of this process, tagged on every run it starts."""
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def owner_gone(tag: str | None) -> bool:
    """True when the run's process was on this host and no longer exists (so its RUNNING is stale).
    A process on another host cannot be checked from here: the queue's heartbeats cover that case."""
    import socket

    if not tag or ":" not in tag:
        return False
    host, pid = tag.rsplit(":", 1)
    return host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (one we may not signal counts as alive)."""
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
