"""registry.files: a file or directory appears whole or not at all, and one lock excludes other processes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from registry.files import locked, replacing, write_atomic


def test_write_atomic_writes_text_and_bytes_readable_by_others(tmp_path):
    path = write_atomic(tmp_path / "new" / "report.html", "é<html>")
    assert path.read_bytes() == "é<html>".encode() and stat.S_IMODE(path.stat().st_mode) == 0o644
    write_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01" and os.listdir(path.parent) == ["report.html"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "manifest.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), replacing(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["manifest.json"]


def test_a_directory_is_renamed_into_place_whole(tmp_path):
    with replacing(tmp_path / "run", mode=None) as tmp:
        (tmp / "tables").mkdir(parents=True)
        (tmp / "tables" / "runs.parquet").write_bytes(b"x")
    assert (tmp_path / "run" / "tables" / "runs.parquet").read_bytes() == b"x"
    with pytest.raises(OSError), replacing(tmp_path / "run") as tmp:  # onto a full directory: refused
        (tmp / "tables").mkdir(parents=True)
    assert sorted(os.listdir(tmp_path)) == ["run"]  # the refused copy removed


def test_a_named_temporary_left_by_a_killed_attempt_is_replaced(tmp_path):
    left = tmp_path / ".db.creating-1"
    left.write_text("half")
    with replacing(tmp_path / "db", tmp=left, mode=None) as tmp:
        assert not tmp.exists()
        tmp.write_text("whole")
    assert (tmp_path / "db").read_text() == "whole" and not left.exists()


def test_the_lock_excludes_another_process_until_released(tmp_path):
    probe = (
        "import fcntl, sys\n"
        "f = open(sys.argv[1], 'a')\n"
        "try:\n    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept BlockingIOError:\n    sys.exit(3)\n"
    )
    lock = tmp_path / "sub" / ".lock"
    with locked(lock):
        held = subprocess.run([sys.executable, "-c", probe, str(lock)]).returncode
    free = subprocess.run([sys.executable, "-c", probe, str(lock)]).returncode
    assert (held, free) == (3, 0)


def _killed_mid_transaction(db: Path) -> None:
    """A table of experiments in `db`, then a process killed by SIGKILL while it rewrites every row: its hot journal
    is left beside the database, the rows' old values to roll back to."""
    import signal
    import sqlite3

    con = sqlite3.connect(db)
    con.execute("CREATE TABLE experiments (experiment_id TEXT, name TEXT, lifecycle_stage TEXT)")
    con.executemany("INSERT INTO experiments VALUES (?, ?, 'active')", [(str(i), f"e{i}") for i in range(5000)])
    con.commit()
    con.close()
    pid = os.fork()
    if pid == 0:  # the writer: its changes spill into the file mid-transaction, then it dies
        writer = sqlite3.connect(db, isolation_level=None)
        writer.execute("PRAGMA cache_size = 1")
        writer.execute("BEGIN")
        writer.execute("UPDATE experiments SET name = 'half-written'")
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    assert db.with_name(db.name + "-journal").exists()


def test_a_hot_journal_left_by_a_killed_writer_is_rolled_back_not_an_error(tmp_path):
    from registry.files import read_sqlite, sqlite_damage
    from registry.runindex import LocalRunIndex

    for reader in ("damage", "rows", "index"):
        db = tmp_path / f"{reader}.db"
        _killed_mid_transaction(db)
        if reader == "damage":  # the store reads: not damaged
            assert sqlite_damage(db) is None
        elif reader == "rows":
            assert read_sqlite(db, "SELECT count(*), count(DISTINCT name) FROM experiments") == [(5000, 5000)]
        else:  # the run index of a store a worker was killed in, as the other workers read it
            assert LocalRunIndex(db).experiments()["4999"] == "e4999"
        assert not db.with_name(db.name + "-journal").exists()  # rolled back: the old rows
