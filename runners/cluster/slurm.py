"""Workers as a Slurm job array: `subnets slurm` writes an sbatch script whose array elements are each one
`subnets work` process on the shared queue (--storage) and tracking store (--tracking-uri), and submits it.

The queue hands each trial to one worker, so the array drains a grid or a search with each run executed once, as
local workers do. A worker stopped by `scancel` (SIGTERM) marks its run KILLED and its trial is retried by the
other elements (or by the next submission). The storage URL and tracking URI travel in the job's environment
(sbatch exports the submitting environment), never in the script file: a PostgreSQL password is not written down.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


class SlurmError(RuntimeError):
    """sbatch is missing or refused the job."""


@dataclass(frozen=True)
class ArrayJob:
    """What the array asks of the scheduler, and what each element runs."""

    file: Path  # the experiments file, absolute: elements may start in another directory
    store: Path  # the store directory (caches; the tracking store unless --tracking-uri names a server)
    mode: str  # "grid" (subnets run's work) or "search" (subnets sweep's)
    array_size: int
    experiment: str | None = None
    partition: str | None = None
    time_limit: str | None = None  # Slurm's --time, e.g. 04:00:00
    gpus_per_task: int = 0
    cpus_per_task: int = 1
    mem: str | None = None  # Slurm's --mem, e.g. 16G
    log_dir: Path | None = None  # where each element's output goes (default: <store>/.subnets/slurm)
    quiet: bool = True  # plain progress lines in the logs, not bars

    @property
    def name(self) -> str:
        return f"subnets-{self.experiment or self.file.stem}"

    def logs(self) -> Path:
        return self.log_dir or self.store / ".subnets" / "slurm"


def script(job: ArrayJob, python: str = sys.executable) -> str:
    """The sbatch script: one `subnets work` per array element, each on --cpus-per-task threads."""
    directives = [
        f"--job-name={job.name}",
        f"--array=0-{job.array_size - 1}",
        f"--cpus-per-task={job.cpus_per_task}",
        f"--output={job.logs() / '%x-%A_%a.out'}",
    ]
    if job.partition:
        directives.append(f"--partition={job.partition}")
    if job.time_limit:
        directives.append(f"--time={job.time_limit}")
    if job.gpus_per_task:
        directives.append(f"--gpus-per-task={job.gpus_per_task}")
    if job.mem:
        directives.append(f"--mem={job.mem}")
    work = [
        python,
        "-m",
        "registry.cli",
        "work",
        "--file",
        str(job.file),
        "--store",
        str(job.store),
        "--mode",
        job.mode,
        *(["--quiet"] if job.quiet else []),
        *([job.experiment] if job.experiment else []),
    ]
    lines = [
        "#!/bin/bash",
        *(f"#SBATCH {d}" for d in directives),
        "# Written by `subnets slurm`. Each array element is one queue worker; the queue (SUBNETS_STORAGE) and",
        "# the tracking store (MLFLOW_TRACKING_URI) come from the submitting environment, so each run executes",
        "# once whichever element takes it. scancel of an element marks its run KILLED; its trial is retried.",
        "set -euo pipefail",
        'threads="${SLURM_CPUS_PER_TASK:-1}"',
        'export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1',
        # exec: the worker is the job step's process, so scancel's SIGTERM reaches it directly
        "exec "
        + " ".join(shlex.quote(a) for a in work)
        + ' --threads "$threads" --worker-index "${SLURM_ARRAY_TASK_ID:-0}"',
    ]
    return "\n".join(lines) + "\n"


def submit(job: ArrayJob, storage_url: str, tracking_uri: str, sbatch: str = "sbatch") -> tuple[str, Path]:
    """Write the script under the log directory and submit it; returns (job id, script path)."""
    logs = job.logs()
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"{job.name}-{time.strftime('%Y%m%d-%H%M%S')}.sbatch"
    path.write_text(script(job))
    env = {**os.environ, "SUBNETS_STORAGE": storage_url, "MLFLOW_TRACKING_URI": tracking_uri}
    try:
        proc = subprocess.run(
            [sbatch, "--parsable", "--export=ALL", str(path)], capture_output=True, text=True, env=env, timeout=60
        )
    except FileNotFoundError as e:
        raise SlurmError(f"{sbatch} not found: submit from a Slurm login node (the script is at {path})") from e
    if proc.returncode != 0:
        raise SlurmError(f"sbatch refused the job: {(proc.stderr or proc.stdout).strip()} (script: {path})")
    return proc.stdout.strip().split(";")[0], path
