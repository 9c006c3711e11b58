"""A run's scratch folder: where it writes its tables, masks and step records before they are logged.

A run removes its own when it ends, on an error or on Ctrl-C / SIGTERM too. A process killed outright (SIGKILL, the
OOM killer, a scheduler's kill after its grace period) cannot, and on a node that runs many trials the folders of
killed runs (a mask per step: for bert-base, ~110 MB each) would pile up in /tmp. So each folder is named for its
host, process namespace and process, `subnets-run-<host>-<namespace>-<pid>-<random>`, and every run first removes
the folders of this host and namespace whose process is gone. A folder whose process still exists (or whose number a
new process took) is left alone, and so is one of another namespace: containers that share a /tmp and a host name
(a pod's) each number their processes.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from runners.tracking.status import pid_alive

PREFIX = "subnets-run-"
_SUFFIX = re.compile(r"(\d+)-[a-z0-9_]+")  # "<pid>-<mkdtemp's random letters>" (which never hold a "-")


def _host() -> str:
    return socket.gethostname() or "localhost"


def _namespace() -> str:
    """This process's PID namespace (its inode; "0" where there is none to read): a pid means something only in it."""
    try:
        return os.readlink("/proc/self/ns/pid").partition("[")[2].rstrip("]") or "0"
    except OSError:
        return "0"


def prefix() -> str:
    """The start of the name of every scratch folder of this host and namespace."""
    return f"{PREFIX}{_host()}-{_namespace()}-"


def remove_stale(tmpdir: str | Path | None = None) -> list[Path]:
    """Remove the scratch folders of this host's (and namespace's) runs whose process is gone; returns them."""
    root = Path(tmpdir or tempfile.gettempdir())
    mine = prefix()
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        match = _SUFFIX.fullmatch(entry.name[len(mine) :]) if entry.name.startswith(mine) else None
        if match is None or pid_alive(int(match.group(1))):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
        except OSError:  # removed meanwhile (another run's sweep)
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


@contextmanager
def run_scratch(tmpdir: str | Path | None = None) -> Iterator[Path]:
    """A new scratch folder for this process's run (killed runs' folders removed first), removed when it ends."""
    remove_stale(tmpdir)
    path = Path(tempfile.mkdtemp(prefix=f"{prefix()}{os.getpid()}-", dir=tmpdir))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
