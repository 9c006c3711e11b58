"""Whose is a run: the owner tag a process puts on the runs it starts, and whether that process is gone.

Run status itself is read through the run index (registry.runindex: sqlite3 on a local store, no MLflow import).
"""

from __future__ import annotations


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
