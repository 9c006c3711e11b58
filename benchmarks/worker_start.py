"""How `subnets run --workers N` starts its workers: forked from one forkserver that imported their modules once
(the default), against a fresh interpreter per worker (SUBNETS_WORKER_START=spawn, how every worker started before).

    python benchmarks/worker_start.py [--workers 4] [--runs 4] [--repeats 2]

Each measurement is a real `subnets run --workers N --quiet` of a magnitude-pruning grid of micro-bert (one run per
worker, all pruning one fine-tuned model) on a fresh store that holds only that model's fine-tuning cache (made once
first), so the coordinating process has nothing to fine-tune and each measurement differs only in how the workers
start. Wall time is the command's; CPU time is user + system of its whole process tree (the workers, the forkserver
and its resource tracker are all waited for). The two methods alternate, `--repeats` times each. Progress goes to
stdout; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from runners.tracking import provenance  # noqa: E402

GRID = """
[defaults]
seeds = [0]

[defaults.model]
name = "micro-bert"

[defaults.task]
name = "synthetic-nli"
max_length = 48
params = {{ n_train = 256, n_id_eval = 64, n_ood_per_subcase = 8 }}

[defaults.finetune]
epochs = 1.0
lr = 1e-3
batch_size = 32

[[experiment]]
name = "start"
description = "one magnitude-pruning run per worker, all of one fine-tuned model"

[experiment.prune]
method = "magnitude"
rate = {rates}
max_steps = 2
"""


def log(msg: str) -> None:
    print(f"[worker-start] {msg}", flush=True)


def timed_run(toml: Path, store: Path, workers: int, method: str | None) -> tuple[float, float]:
    """(wall s, CPU s of the whole process tree) of one `subnets run --workers N`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("SUBNETS_WORKER_START", None)
    if method is not None:
        env["SUBNETS_WORKER_START"] = method
    cmd = [sys.executable, "-m", "registry.cli", "run", "--file", str(toml), "--store", str(store)]
    cmd += ["--workers", str(workers), "--quiet"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        print(done.stdout + done.stderr)
        raise SystemExit(f"subnets run failed ({done.returncode})")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--runs", type=int, default=4, help="runs in the grid (default: one per worker)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    top = Path(tempfile.mkdtemp(prefix="subnets-worker-start-"))
    try:
        rates = [round(0.1 * (i + 1), 2) for i in range(args.runs)]
        toml = top / "experiments.toml"
        toml.write_text(GRID.format(rates=rates))
        log("fine-tuning the shared model once (its cache is copied into every measured store)")
        timed_run(toml, top / "warm", 1, None)
        cache = top / "warm" / ".subnets" / "finetuned"

        results: dict[str, list[tuple[float, float]]] = {"spawn": [], "forkserver": []}
        for i in range(args.repeats):
            for method in results:
                store = top / f"{method}-{i}"
                shutil.copytree(cache, store / ".subnets" / "finetuned")
                wall, cpu = timed_run(toml, store, args.workers, method)
                results[method].append((wall, cpu))
                log(f"{method}: {wall:.1f} s wall, {cpu:.1f} s CPU")
    finally:
        shutil.rmtree(top, ignore_errors=True)

    def median(method: str, k: int) -> float:
        return statistics.median(r[k] for r in results[method])

    out = {
        "benchmark": "worker_start",
        "machine": provenance.machine(),
        "workers": args.workers,
        "runs": args.runs,
        "repeats": args.repeats,
        "spawn_wall_s": round(median("spawn", 0), 2),
        "spawn_cpu_s": round(median("spawn", 1), 2),
        "forkserver_wall_s": round(median("forkserver", 0), 2),
        "forkserver_cpu_s": round(median("forkserver", 1), 2),
        "wall_ratio": round(median("forkserver", 0) / median("spawn", 0), 3),
        "cpu_ratio": round(median("forkserver", 1) / median("spawn", 1), 3),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
