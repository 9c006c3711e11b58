"""What a run records about where it came from: git SHA (and dirtiness), package versions and the machine."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("subnets", "torch", "transformers", "tokenizers", "mlflow", "optuna", "duckdb", "pydantic", "numpy")


def git_sha(directory: str | Path) -> str:
    """HEAD of the repository holding `directory`, '+dirty' when it has uncommitted changes, or 'unknown'."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The processor's name, as /proc/cpuinfo's first processor gives it on Linux ("AMD EPYC (family 25, model 1)":
    a virtual machine may show only the vendor's line, and the family and model then tell its hosts apart), else
    what the platform says, else the architecture. Timings compare only on the same processor: hosts of one kind
    differ by 1.5x and more (docs/figures.md)."""
    fields: dict[str, str] = {}
    try:
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            if not line.strip():
                break  # the first processor's block only
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), " ".join(value.split()))
    except OSError:  # not Linux
        pass
    name = fields.get("model name")
    if not name:
        return platform.processor() or platform.machine() or "unknown"
    if fields.get("cpu family") and fields.get("model"):
        return f"{name} (family {fields['cpu family']}, model {fields['model']})"
    return name


def usable_cores() -> int:
    """The cores this process may run on (a Slurm or taskset allocation), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def machine() -> str:
    """Where a run or a benchmark ran, as a reader compares timings: "x86_64, 2 cores, AMD EPYC"."""
    cores = usable_cores()
    return f"{platform.machine()}, {cores} core{'' if cores == 1 else 's'}, {cpu_model()}"
