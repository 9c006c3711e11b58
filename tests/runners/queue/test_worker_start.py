"""How `subnets run --workers N` starts its workers: forked from one forkserver that imported their modules (the
default), or each a fresh interpreter (SUBNETS_WORKER_START=spawn). Either way the grid drains, each run once; the
coordinating process, with nothing to fine-tune first, never loads torch; and no helper process outlives the
command. A bad value is refused before the store exists."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import psutil
import pytest
from typer.testing import CliRunner

from registry.cli import app
from registry.loader import load_runs
from runners.queue.local import START_ENV
from runners.tracking import Store
from tests.conftest import tiny_toml
from tests.helpers import PROJECT_ROOT


def _grid(max_steps: int) -> str:
    return tiny_toml(name="tiny", max_steps=max_steps).replace("n_id_eval = 64", "n_id_eval = 400")


GRID = _grid(4)


def _loads_torch(proc: psutil.Process) -> bool:
    return any("libtorch" in m.path for m in proc.memory_maps(grouped=True))


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_workers_start_and_drain_the_grid_and_the_coordinator_loads_no_torch(write_toml, tmp_path, method):
    store = tmp_path / "s"
    # the fine-tuned model, made once by a one-step run (the same fine-tuning as the grid's): the measured command then
    # has nothing to fine-tune first
    first = write_toml(_grid(1), "first.toml")
    assert CliRunner().invoke(app, ["run", "--file", str(first), "--store", str(store), "--quiet"]).exit_code == 0
    toml = write_toml(GRID.replace('name = "tiny"', 'name = "grid"').replace("rate = 0.3", "rate = [0.2, 0.4]"))
    env = {**os.environ, START_ENV: method, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "registry.cli", "run", "--file", str(toml), "--store", str(store), "--workers", "2"]
    proc = subprocess.Popen(
        [*cmd, "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "worker(s) started" in line:
            break
    (pids,) = re.findall(r"pids ([0-9, ]+)\)", "".join(lines)) or [""]
    workers = [int(p) for p in pids.split(", ") if p]
    assert len(workers) == 2, "".join(lines)
    coordinator = psutil.Process(proc.pid)
    parents = set()
    for pid in workers:
        try:
            parents.add(psutil.Process(pid).ppid())
        except psutil.NoSuchProcess:  # already done (a fast machine): its parent cannot be read any more
            pass
    helpers = coordinator.children()  # the forkserver and its resource tracker, or the workers themselves
    assert not _loads_torch(coordinator), "the coordinating process loaded torch"
    output = "".join(lines) + proc.stdout.read()
    assert proc.wait(timeout=300) == 0, output
    assert "Traceback" not in output

    if method == "spawn":
        assert parents <= {proc.pid}
    else:  # forked from the forkserver, the coordinator's child
        assert parents and proc.pid not in parents and parents <= {h.pid for h in helpers}
    deadline = time.monotonic() + 30  # none outlives the command (the helpers were stopped and waited for)
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in workers):
        assert time.monotonic() < deadline, "a worker outlived its coordinator"
        time.sleep(0.1)
    assert not [h for h in helpers if h.is_running() and h.status() != psutil.STATUS_ZOMBIE]

    client = Store.at(store).client
    runs = client.search_runs([client.get_experiment_by_name("grid").experiment_id], "tags.`subnets.kind` = 'run'")
    assert sorted(r.data.tags["subnets.fingerprint"] for r in runs if r.info.status == "FINISHED") == sorted(
        r.fingerprint for r in load_runs(toml)
    )
    assert len(runs) == 2


def test_an_unknown_start_method_is_refused_before_anything_is_written(write_toml, tmp_path, monkeypatch):
    toml = write_toml(tiny_toml())
    monkeypatch.setenv(START_ENV, "threads")
    result = CliRunner().invoke(app, ["run", "--file", str(toml), "--store", str(tmp_path / "s"), "--workers", "2"])
    assert result.exit_code == 2
    assert "SUBNETS_WORKER_START='threads': expected one of forkserver, spawn" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "s").exists()


FREEZE_PROBE = """
import gc, multiprocessing, sys
from runners.queue.local import _worker, start_forkserver

def probe(argv):  # a worker's entry: how many objects its collections leave alone, and whether they run
    open(argv[0], "w").write(f"{gc.get_freeze_count()} {gc.isenabled()}")

if __name__ == "__main__":
    start_forkserver(["preloaded_probe"], "forkserver")
    p = multiprocessing.get_context("forkserver").Process(target=_worker, args=(probe, [sys.argv[1]], {}))
    p.start()
    p.join(60)
    sys.exit(p.exitcode)
"""

# what a forkserver holds after its imports, in small; and whether the collector ran while they were imported
PRELOADED_PROBE = """
import gc, os
inherited = [[i] for i in range(50_000)]
open(os.environ["PROBE_IMPORTED"], "w").write(str(gc.isenabled()))
"""


def test_a_worker_keeps_what_it_inherited_out_of_its_collections(tmp_path):
    """The forkserver imports its modules with the collector paused (Python's gc documentation for a process that
    forks without exec). A worker freezes what it was forked with (gc.freeze): its collections then never write to
    those objects, which would copy their pages out of the memory it shares with the forkserver; and in the worker
    the collector runs again."""
    (tmp_path / "probe.py").write_text(FREEZE_PROBE)
    (tmp_path / "preloaded_probe.py").write_text(PRELOADED_PROBE)
    count, imported = tmp_path / "count", tmp_path / "imported"
    env = {**os.environ, "PYTHONPATH": f"{PROJECT_ROOT}{os.pathsep}{tmp_path}", "PROBE_IMPORTED": str(imported)}
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "probe.py"), str(count)], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert imported.read_text() == "False"  # paused while the forkserver imported
    frozen, enabled = count.read_text().split()
    assert int(frozen) >= 50_000 and enabled == "True"
