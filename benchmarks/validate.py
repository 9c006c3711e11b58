"""Wall time of `subnets validate` and `subnets plan` on the shipped experiments.toml, each in a fresh
process (median of N), against a baseline measured in the same run: a process that only imports what
validate used to import (torch, transformers, mlflow), which is what the registry no longer loads.

    python benchmarks/validate.py [--repeats 5]

Prints one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runners.tracking import provenance

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 1.0


def wall(cmd: list[str], cwd: Path) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    cli = [sys.executable, "-c", "from registry.cli import app; app()"]
    toml = str(ROOT / "experiments.toml")
    with tempfile.TemporaryDirectory() as store:
        cases = {
            "validate": cli + ["validate", "--file", toml],
            "plan_empty_store": cli + ["plan", "--file", toml, "--store", store],
            "baseline_import_torch_transformers_mlflow": [sys.executable, "-c", "import torch, transformers, mlflow"],
        }
        times = {k: [] for k in cases}
        for _ in range(args.repeats):  # interleaved, so a busy moment hits every case alike
            for name, cmd in cases.items():
                times[name].append(wall(cmd, ROOT))
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["baseline_import_torch_transformers_mlflow"]
    fig = {
        "benchmark": "validate",
        "machine": provenance.machine(),
        "repeats": args.repeats,
        "median_wall_s": med,
        "all_wall_s": times,
        "validate_vs_heavy_imports": med["validate"] / base,
        "plan_vs_heavy_imports": med["plan_empty_store"] / base,
        "goal_validate_s": GOAL_S,
        "goal_met": med["validate"] < GOAL_S,
    }
    print(
        f"validate {med['validate']:.2f} s, plan {med['plan_empty_store']:.2f} s, "
        f"importing torch+transformers+mlflow alone {base:.2f} s",
        file=sys.stderr,
    )
    print(json.dumps(fig))


if __name__ == "__main__":
    main()
