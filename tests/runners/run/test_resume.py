"""Kill a real `subnets run` process with SIGKILL at a point of its work, rerun it: the rerun reuses what was
finished (fine-tuning epochs, pruning steps, variants) and its tables, masks and metrics equal an
uninterrupted run's, byte for byte where they are files."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from registry.cli import app
from runners.run.scratch import PREFIX
from runners.tracking.store import KIND, Store
from tests import preloaded
from tests.conftest import tiny_toml

# Enough evaluation examples that a step takes a few of the test's 20 ms looks (~0.1 s), so the kill lands in the
# middle, a step or so after the one it waits for; CKA at every step and two controls exercise every kind of record.
TOML = (
    tiny_toml(rate=0.25, max_steps=8)
    .replace("n_id_eval = 64, n_ood_per_subcase = 8", "n_id_eval = 400, n_ood_per_subcase = 16")
    .replace("max_steps = 8", 'max_steps = 8\ncontrols = ["random", "bad"]')
    + "\n[experiment.cka]\nexamples = 64\n"
)
# Columns that legitimately differ between two executions of one fingerprint.
VOLATILE = {"run_id", "started_at", "duration_s"}


def _run_in_process(toml: Path, store_dir: Path):
    result = CliRunner().invoke(app, ["run", "--file", str(toml), "--store", str(store_dir)])
    assert result.exit_code == 0, result.output
    return result.output


def _parent_run(store_dir: Path):
    store = Store.at(store_dir)
    exp = store.client.get_experiment_by_name("tiny")
    runs = store.client.search_runs([exp.experiment_id], filter_string=f"tags.`{KIND}` = 'run'")
    return store, runs


def _artifacts(run) -> Path:
    return Path(run.info.artifact_uri.removeprefix("file://"))


def _tables(art: Path) -> dict[str, list[dict]]:
    return {
        p.stem: [{k: v for k, v in row.items() if k not in VOLATILE} for row in pq.read_table(p).to_pylist()]
        for p in sorted((art / "tables").glob("*.parquet"))
    }


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("whole")
    toml = root / "experiments.toml"
    toml.write_text(TOML)
    _run_in_process(toml, root / "s")
    store, (run,) = _parent_run(root / "s")
    return store, run


def _kill_when(toml: Path, store_dir: Path, appeared: str, timeout: float = 240.0, env: dict | None = None) -> float:
    """Start `subnets run` in its own process; SIGKILL it as soon as a file matching `appeared` (a glob
    under the store) exists. Returns the seconds it ran."""
    started = time.monotonic()
    proc = preloaded.Popen(
        ["run", "--file", str(toml), "--store", str(store_dir), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        while not list(store_dir.glob(appeared)):
            assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before {appeared} appeared"
            assert time.monotonic() - started < timeout, f"{appeared} did not appear in {timeout} s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return time.monotonic() - started


@pytest.mark.parametrize(
    "kill_at, reused_steps, reused_variants",
    [
        ("mlartifacts/tiny/*/artifacts/partial/step_003.json", 3, 0),  # in the middle of the pruning steps
        pytest.param(
            "mlartifacts/tiny/*/artifacts/partial/random_step_*.json",
            8,
            1,  # between the two controls
            marks=pytest.mark.slow,
        ),
    ],
)
def test_a_run_killed_mid_pruning_resumes_and_equals_an_uninterrupted_run(
    uninterrupted, tmp_path, monkeypatch, kill_at, reused_steps, reused_variants
):
    toml = tmp_path / "experiments.toml"
    toml.write_text(TOML)
    scratch = tmp_path / "tmp"  # the runs' temporary directory (TMPDIR), to see what the killed one left there
    scratch.mkdir()
    _kill_when(toml, tmp_path / "s", kill_at, env={**os.environ, "TMPDIR": str(scratch)})
    (left,) = scratch.iterdir()  # the killed run's scratch folder: nothing of its own could remove it
    assert left.name.startswith(PREFIX) and (left / "config.json").exists()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    _rerun_equals_uninterrupted(toml, tmp_path / "s", uninterrupted, reused_steps, reused_variants)
    assert list(scratch.iterdir()) == []  # the rerun removed it (its process is gone), and its own when it ended


# A real `subnets run` process (forked preloaded) that SIGKILLs itself right after writing its units table: the steps
# and units Parquet files exist in its scratch folder, the cka, runs and axes tables do not, nothing is logged yet.
KILL_WHILE_WRITING_TABLES = """
import importlib, os, signal, sys
execute = importlib.import_module("runners.run.execute")  # the module (the package exports a function of that name)
write = execute.write_table
def write_then_die(folder, name, rows):
    write(folder, name, rows)
    if name == "units":
        os.kill(os.getpid(), signal.SIGKILL)
execute.write_table = write_then_die
from registry.cli import app
app(sys.argv[1:], prog_name="subnets")
"""


def test_a_run_killed_while_its_tables_are_written_resumes_and_equals_an_uninterrupted_run(uninterrupted, tmp_path):
    toml = tmp_path / "experiments.toml"
    toml.write_text(TOML)
    proc = preloaded.run(
        ["run", "--file", str(toml), "--store", str(tmp_path / "s"), "--quiet"],
        code=KILL_WHILE_WRITING_TABLES,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    # every step and both controls were recorded before the kill: the rerun only writes the tables
    _rerun_equals_uninterrupted(toml, tmp_path / "s", uninterrupted, reused_steps=8, reused_variants=2)


def _rerun_equals_uninterrupted(toml: Path, store_dir: Path, uninterrupted, reused_steps: int, reused_variants: int):
    whole_store, whole = uninterrupted
    store, (killed,) = _parent_run(store_dir)
    assert killed.info.status == "RUNNING"  # as a SIGKILL leaves it; the next command finds its process gone

    output = _run_in_process(toml, store_dir)
    store, runs = _parent_run(store_dir)
    (run,) = runs  # the killed run was reopened and finished: no second run of the fingerprint
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    # at least the records that existed at the kill were reused (the kill may land a step later)
    resumed_after = int(run.data.tags["subnets.resumed_after_step"])
    assert resumed_after >= reused_steps
    assert f"after step {resumed_after}: {resumed_after} pruning step(s) and" in output
    n_variants = int(output.split("pruning step(s) and ")[1].split(" variant")[0])
    assert n_variants >= reused_variants

    # the tables equal the uninterrupted run's, row for row
    assert _tables(_artifacts(run)) == _tables(_artifacts(whole))
    # every mask file byte for byte, and the same set of step records
    for kind in ("masks", "partial"):
        mine = sorted(p.name for p in (_artifacts(run) / kind).iterdir())
        assert mine == sorted(p.name for p in (_artifacts(whole) / kind).iterdir())
    for name in sorted(p.name for p in (_artifacts(whole) / "masks").iterdir()):
        assert (_artifacts(run) / "masks" / name).read_bytes() == (_artifacts(whole) / "masks" / name).read_bytes(), (
            name
        )
    # the run's summary metrics (the kept step) and every step's curve
    assert {k: v for k, v in run.data.metrics.items() if not k.startswith("finetune.")} == {
        k: v for k, v in whole.data.metrics.items() if not k.startswith("finetune.")
    }
    for key in ("step/id.accuracy", "step/sparsity", "step/cka.layer_1"):
        curve = lambda r: sorted({(m.step, m.value) for m in store.client.get_metric_history(r.info.run_id, key)})  # noqa: E731
        assert curve(run) == sorted(
            {(m.step, m.value) for m in whole_store.client.get_metric_history(whole.info.run_id, key)}
        )


def test_a_run_killed_while_fine_tuning_resumes_from_its_epoch_checkpoint(tmp_path):
    """SIGKILL after the first of two epochs' checkpoint: the rerun trains the second epoch only and the
    fine-tuned model, hence every later figure, equals an uninterrupted run's."""
    # what comes after fine-tuning is the plain tiny run: it only has to be equal
    two_epochs = tiny_toml(rate=0.25, max_steps=2).replace("epochs = 1.0", "epochs = 2.0")
    whole_dir, toml = tmp_path / "whole", tmp_path / "experiments.toml"
    toml.write_text(two_epochs)
    _run_in_process(toml, whole_dir)
    _kill_when(toml, tmp_path / "s", ".subnets/finetuned/.*.checkpoint.pt")
    assert not list((tmp_path / "s").glob(".subnets/finetuned/*/record.json"))  # killed before the cache entry
    output = _run_in_process(toml, tmp_path / "s")
    assert "fine-tuning: resumed after epoch 1" in output
    store, runs = _parent_run(tmp_path / "s")
    # the killed run had logged no step: it stays KILLED beside the run that did the work
    assert sorted(r.info.status for r in runs) == ["FINISHED", "KILLED"]
    (run,) = [r for r in runs if r.info.status == "FINISHED"]
    _, (whole,) = _parent_run(whole_dir)
    assert _tables(_artifacts(run)) == _tables(_artifacts(whole))
    assert not list((tmp_path / "s").glob(".subnets/finetuned/.*"))  # checkpoint and temporary folders are gone
