"""A run's scratch folder (runners/run/scratch.py): removed when the run ends, and, for a run killed outright, by the
next run on the same host once the killed process is gone; never a live process's, another host's or a stranger's."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from runners.run.scratch import PREFIX, prefix, remove_stale, run_scratch


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()  # reaped: the number is free (until a new process takes it, which the sweep then respects)
    return proc.pid


def test_only_this_hosts_folders_of_gone_processes_are_removed(tmp_path):
    host, mine, dead = socket.gethostname(), prefix(), _dead_pid()
    namespace = mine.removeprefix(f"{PREFIX}{host}-").rstrip("-")
    assert namespace.isdigit()  # the PID namespace's inode ("0" where /proc has none)
    folders = {
        "dead": tmp_path / f"{mine}{dead}-k3x_9q",
        "alive": tmp_path / f"{mine}{os.getpid()}-a8bc12",
        "other host": tmp_path / f"{PREFIX}{host}x-{namespace}-{dead}-k3x_9q",
        "other namespace": tmp_path / f"{PREFIX}{host}-{namespace}1-{dead}-k3x_9q",  # a container's own pids
        "not a pid": tmp_path / f"{mine}12ab-k3x_9q",
        "someone else's": tmp_path / f"tmp-{dead}-k3x_9q",
    }
    for folder in folders.values():
        folder.mkdir()
        (folder / "config.json").write_text("{}")
    a_file = tmp_path / f"{mine}{dead}-f1le"  # a file by that name is not a run's folder
    a_file.write_text("x")

    assert remove_stale(tmp_path) == [folders["dead"]]
    assert not folders["dead"].exists()
    assert all(folder.exists() for name, folder in folders.items() if name != "dead") and a_file.exists()
    assert remove_stale(tmp_path) == []


def test_a_runs_folder_is_its_own_and_removed_when_it_ends_even_on_an_error(tmp_path):
    with run_scratch(tmp_path) as scratch:
        assert scratch.parent == tmp_path
        assert scratch.name.startswith(f"{prefix()}{os.getpid()}-")
        (scratch / "masks").mkdir()
        assert remove_stale(tmp_path) == []  # this process is alive: its folder stays
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError):
        with run_scratch(tmp_path) as scratch:
            raise RuntimeError("a run that failed")
    assert list(tmp_path.iterdir()) == []


def test_a_new_run_removes_a_killed_runs_folder_first(tmp_path):
    killed = tmp_path / f"{prefix()}{_dead_pid()}-zz9_0a"
    (killed / "masks").mkdir(parents=True)
    with run_scratch(tmp_path) as scratch:
        assert not killed.exists() and [p for p in tmp_path.iterdir()] == [scratch]
