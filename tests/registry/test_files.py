"""registry.files: a file or directory appears whole or not at all, and one lock excludes other processes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

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
