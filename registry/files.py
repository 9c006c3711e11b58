"""Two file-system rules that runners/ and reports/ both follow, written once: a file (or directory) appears
whole or not at all (written under a temporary name beside it, then renamed into place), and an exclusive lock
held on a lock file (released by the OS if its holder dies).

Standard library only, so the registry stays torch- and MLflow-free and both sides may import it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterator

__all__ = ["locked", "replacing", "sqlite_damage", "write_atomic"]


@contextlib.contextmanager
def replacing(target: Path, tmp: Path | None = None, mode: int | None = 0o644) -> Iterator[Path]:
    """A temporary path beside `target` (a fresh hidden name unless `tmp` names one), nothing there yet: what the
    block writes at it (a file or a directory) is renamed onto `target` when the block ends without error (an
    atomic rename: a reader or a crash sees the old target or the new one, never half of one), and removed
    otherwise. A file is then made `mode` (a reader of the store other than its writer must see it)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tmp) if tmp is not None else target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    tmp.unlink(missing_ok=True)  # a named temporary left by an earlier, killed attempt
    try:
        yield tmp
        if mode is not None and tmp.is_file():
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def write_atomic(path: Path, data: str | bytes, mode: int = 0o644) -> Path:
    """Write text (UTF-8) or bytes to `path` whole: through a temporary file beside it, flushed to disk, renamed
    into place. Returns the path."""
    path = Path(path)
    with replacing(path, mode=mode) as tmp:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
    return path


@contextlib.contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on `lock_file` (created, with its directory, if missing) for the block; other
    processes and threads wait. The OS releases it if the holder dies."""
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_sqlite(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """`sql`'s rows from the SQLite database `db`, opened read-only. A writer killed mid-transaction (a worker's
    SIGKILL) leaves a hot journal that the next connection must roll back, which a read-only one cannot do
    ("attempt to write a readonly database"): the database is then opened read-write once, to roll it back as any
    writer's connection would, and asked again."""
    import sqlite3

    for mode in ("ro", "rw"):
        con = sqlite3.connect(f"{Path(db).resolve().as_uri()}?mode={mode}", uri=True, timeout=30)
        try:
            return con.execute(sql, params).fetchall()
        except sqlite3.OperationalError as e:
            if mode == "rw" or "readonly database" not in str(e):
                raise
        finally:
            con.close()
    raise AssertionError("unreachable")


def sqlite_damage(db: Path) -> str | None:
    """Why an existing SQLite database file cannot be read (not a database, truncated, damaged pages), or None when
    it reads. Read-only: the file is never written (but for rolling back a killed writer's hot journal, read_sqlite),
    so a damaged store is left as it is for its owner to restore."""
    import sqlite3

    if not Path(db).exists():
        return None  # nothing there to be damaged
    try:  # the header and the schema: cheap enough for every command (a full integrity check scans every page)
        read_sqlite(db, "SELECT count(*) FROM sqlite_master")
        return None
    except sqlite3.Error as e:
        return str(e)
