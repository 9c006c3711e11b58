"""`subnets slurm` against a real single-node Slurm (Debian's slurm-wlm and munge, started here on 127.0.0.1 ports
with their own key, spool and state under a temporary directory): the job array drains a grid with each run once,
and `scancel` of an element that is running a trial leaves the trial retried by the other element."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from registry.loader import load_runs
from runners.tracking import Store
from tests import preloaded
from tests.conftest import tiny_toml
from tests.helpers import free_port

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")
pytestmark = pytest.mark.skipif(
    any(shutil.which(d) is None and not Path("/usr/sbin", d).exists() for d in DAEMONS) or os.geteuid() != 0,
    reason="needs Debian's slurm-wlm and munge (make system-deps installs them as root) and root to start slurmd",
)


def _binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin") / name)


SLURM_CONF = """ClusterName=subnetstest
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
AuthInfo=socket={root}/munge.sock
CryptoType=crypto/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=10
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A one-node Slurm cluster on this machine; yields the environment its client commands need."""
    root = tmp_path_factory.mktemp("slurm")
    for d in ("state", "spool"):
        (root / d).mkdir()
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    conf = root / "slurm.conf"
    conf.write_text(
        SLURM_CONF.format(
            host=socket.gethostname(), ctld_port=free_port(), d_port=free_port(), root=root, cpus=os.cpu_count() or 2
        )
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    daemons = [
        subprocess.Popen(
            [
                _binary("munged"),
                "-F",
                "--force",
                f"--key-file={key}",
                f"--socket={root}/munge.sock",
                f"--pid-file={root}/munged.pid",
                f"--log-file={root}/munged.log",
                f"--seed-file={root}/munge.seed",
            ],
            start_new_session=True,
        )
    ]
    try:
        # generous: the daemons start in seconds alone, far slower beside the other tests on 2 busy cores
        deadline = time.monotonic() + 120
        while not (root / "munge.sock").exists():
            assert time.monotonic() < deadline and daemons[0].poll() is None, (root / "munged.log").read_text()
            time.sleep(0.1)
        for daemon in ("slurmctld", "slurmd"):
            daemons.append(
                subprocess.Popen(
                    [_binary(daemon), "-D", "-f", str(conf)],
                    env=env,
                    start_new_session=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        while True:
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True).stdout.strip()
            if state == "idle":
                break
            assert time.monotonic() < deadline + 120 and all(d.poll() is None for d in daemons), (
                state,
                (root / "slurmctld.log").read_text()[-2000:] if (root / "slurmctld.log").exists() else "",
            )
            time.sleep(0.5)
        yield env
    finally:
        subprocess.run(["scancel", "--user=root"], env=env, capture_output=True)
        for d in reversed(daemons):
            if d.poll() is None:
                os.killpg(d.pid, signal.SIGTERM)
                try:
                    d.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(d.pid, signal.SIGKILL)


def _submit(args: list[str], env: dict) -> str:
    proc = preloaded.run(["slurm", *args], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("submitted job "))
    return line.split()[2].rstrip(":")


def _queued(job: str, env: dict) -> bool:
    return bool(subprocess.run(["squeue", "-h", "-j", job], env=env, capture_output=True, text=True).stdout.strip())


def _wait_for(job: str, env: dict, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while _queued(job, env):
        assert time.monotonic() < deadline, f"job {job} still queued after {timeout} s"
        time.sleep(1)


def _grid_trials(store: Path) -> list[optuna.trial.FrozenTrial]:
    url = f"sqlite:///{store / 'optuna.db'}"
    (name,) = [s for s in optuna.get_all_study_names(storage=url) if s.endswith("/grid")]
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


def _finished_fingerprints(store: Path, experiment: str = "tiny") -> list[str]:
    client = Store.at(store).client
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs(
        [exp.experiment_id], filter_string="tags.`subnets.kind` = 'run' and attributes.status = 'FINISHED'"
    )
    return sorted(r.data.tags["subnets.fingerprint"] for r in runs)


def test_the_sbatch_script_runs_one_worker_per_element_and_holds_no_secret(write_toml, tmp_path):
    toml = write_toml(tiny_toml())
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "registry.cli",
            "slurm",
            "--file",
            str(toml),
            "--store",
            str(tmp_path / "s"),
            "-n",
            "4",
            "-p",
            "gpu",
            "-t",
            "02:00:00",
            "--gpus-per-task",
            "1",
            "-c",
            "8",
            "--mem",
            "32G",
            "--dry-run",
            "--storage",
            "postgresql://u:secret@db.example:5432/q",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:9] == [
        "#!/bin/bash",
        "#SBATCH --job-name=subnets-experiments",
        "#SBATCH --array=0-3",
        "#SBATCH --cpus-per-task=8",
        f"#SBATCH --output={tmp_path / 's'}/.subnets/slurm/%x-%A_%a.out",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=02:00:00",
        "#SBATCH --gpus-per-task=1",
        "#SBATCH --mem=32G",
    ]
    assert (
        lines[-1].startswith("exec ")
        and " work --file " in lines[-1]
        and '--worker-index "${SLURM_ARRAY_TASK_ID:-0}"' in lines[-1]
    )
    assert "secret" not in proc.stdout and "postgresql" not in proc.stdout  # the URL travels in the environment
    assert not (tmp_path / "s").exists()  # a dry run writes nothing


# 12 pruning steps a run, each evaluating 800 examples: a second or two per run past its first step, for the test's
# looks (every 0.1 s) to see and cancel
SLOW = tiny_toml(max_steps=12).replace("n_id_eval = 64", "n_id_eval = 800").replace("rate = 0.3", "rate = [0.2, 0.4]")


def _array_task_of(pid: int) -> str | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    found = [e.split(b"=", 1)[1].decode() for e in environ if e.startswith(b"SLURM_ARRAY_TASK_ID=")]
    return found[0] if found else None


def test_a_job_array_drains_a_grid_each_run_once_and_a_scancelled_elements_trial_is_retried(
    slurm, write_toml, tmp_path
):
    """One array of two elements (each a fresh `subnets work`, ~6 s of imports): one is cancelled while it runs a
    trial; the other finishes the grid, the cancelled trial included, each run once."""
    toml = write_toml(SLOW)
    store = tmp_path / "s"
    job = _submit(["--file", str(toml), "--store", str(store), "-n", "2"], slurm)
    # `slurm` made the queue before it submitted: one storage, opened once, keeps each look cheap (a look that opens
    # the database again costs ~1 s of CPU, and on two busy cores could miss a run's few seconds)
    storage = optuna.storages.RDBStorage(f"sqlite:///{store / 'optuna.db'}")
    (grid,) = [
        storage.get_study_id_from_name(s.study_name)
        for s in storage.get_all_studies()
        if s.study_name.endswith("/grid")
    ]
    running_now = (optuna.trial.TrialState.RUNNING,)
    while True:  # a trial is running, its run past its first pruning step: cancel the element that runs it
        running = storage.get_all_trials(grid, deepcopy=False, states=running_now)
        started = list(store.glob("mlartifacts/tiny/*/artifacts/partial/step_001.json"))
        if running and started:
            pid = int(running[0].user_attrs["worker"].rsplit(":", 1)[1])
            task = _array_task_of(pid)
            if task is not None:
                break
        # the array ended before a look saw a run past its first step: say so now, not at a deadline
        assert running or _queued(job, slurm), "the job array finished before any run was seen past its first step"
        time.sleep(0.1)
    element = running[0].user_attrs["worker"]
    subprocess.run(["scancel", f"{job}_{task}"], env=slurm, check=True)
    _wait_for(job, slurm)
    expected = sorted(r.fingerprint for r in load_runs(toml))
    assert _finished_fingerprints(store) == expected  # the cancelled run finished too, once
    trials = _grid_trials(store)
    # the trial the element held when the cancel reached it (on a busy machine the one seen running may have
    # finished first, and the element taken the next): failed by the cancel, then retried by the other element
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert failed and {t.user_attrs["worker"] for t in failed} == {element}, [(t.number, t.state) for t in trials]
    for cancelled in {t.user_attrs["fingerprint"] for t in failed}:
        of_cancelled = sorted(t.state.name for t in trials if t.user_attrs.get("fingerprint") == cancelled)
        assert of_cancelled == ["COMPLETE", "FAIL"], of_cancelled
    assert sorted(t.user_attrs["fingerprint"] for t in trials if t.state.name == "COMPLETE") == expected
    logs = {path.name: path.read_text() for path in (store / ".subnets" / "slurm").glob(f"*-{job}_*.out")}
    assert len(logs) == 2 and not any("Traceback" in log for log in logs.values()), logs
    cancelled = logs[next(name for name in logs if name.endswith(f"_{task}.out"))]
    assert "interrupted: the current run is marked KILLED" in cancelled, cancelled
