"""Whose is a run: the owner tag a process puts on the runs it starts, and whether that process is gone.

Run status itself is read through the run index (registry.runindex: sqlite3 on a local store, no MLflow import);
sqlite_run_status is kept for callers of the old reader.
"""
from __future__ import annotations

from pathlib import Path

from registry.runindex import LocalRunIndex
from registry.tracking import FINGERPRINT, KIND, OWNER


def sqlite_run_status(db: Path, experiment: str, kind_tag: str = KIND, fingerprint_tag: str = FINGERPRINT,
                      owner_tag: str = OWNER) -> list[tuple[str, str, str | None]]:
    """(fingerprint, status, owner) of every parent run of `experiment` that has a fingerprint, from a local store;
    [] when the store has no tables yet. The tags are the tracking contract's (the index reads no others)."""
    if (kind_tag, fingerprint_tag, owner_tag) != (KIND, FINGERPRINT, OWNER):
        raise ValueError("the run index reads the tracking contract's tags (registry.tracking) only")
    return [(r.fingerprint, r.status.value, r.tags.get(OWNER)) for r in LocalRunIndex(db).parent_runs(experiment)
            if r.fingerprint is not None]


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
