"""Effective size from a full grid vs from a search, on the embedded task with L0 pruning.

One fine-tuned tiny BERT; 3 pruning seeds. The grid trains one L0 subnetwork per target 0.05..0.95
(step 0.05) per seed: 57 subnetworks. The searches (bisection, then TPE, each with at most `--trials` trials
per seed) look for the same answer: the largest target whose ID accuracy holds (>= the full model's - the
margin, the Heuristic Core's rule). The grid runs once with 1 worker and once with 2 workers, each on a
fresh store (fine-tuning included in both), for the wall time of each.

    python benchmarks/search.py [--quick] [--workers-only]

--workers-only measures just a grid's wall time with 1 and with 2 workers (fine-tuning of the one shared model
included), the figure for "workers never idle behind a shared fine-tuning": 6 pruning seeds x 4 targets (0.2, 0.4,
0.6, 0.8), 6 runs that 2 workers split 3 + 3 (the full grid's 3 runs split 2 + 1, which caps its ratio at 1.5x);
and, as a control, 1 worker with 1 thread (one worker alone gets both cores as torch threads).

Prints one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runners.tracking import provenance

TARGETS = [round(0.05 * k, 2) for k in range(1, 20)]
WORKER_TARGETS = [0.2, 0.4, 0.6, 0.8]
MARGIN = 0.03

EXPERIMENTS = """
[defaults]
seeds = [0]
prune_seeds = {prune_seeds}

[defaults.model]
name = "tiny-bert"

[defaults.task]
name = "synthetic-nli"
params = {{ n_train = {n_train}, n_id_eval = 1000, n_ood_per_subcase = 100 }}

[defaults.finetune]
epochs = {epochs}
lr = 5e-4

[[experiment]]
name = "grid"
[experiment.prune]
method = "l0"
targets = {targets}
keep_ratio = 0.0
schedule_scale = {scale}

"""


SEARCH = """
[[experiment]]
name = "{sampler}"
[experiment.prune]
method = "l0"
targets = [0.5]
keep_ratio = 0.0
schedule_scale = {scale}
[experiment.search]
space = {{ target = {{ low = 0.05, high = 0.95, step = 0.05 }} }}
sampler = "{sampler}"
trials = {trials}
keep = "margin"
margin = {margin}
{extra}
"""
SAMPLERS = {"bisection": "tolerance = 0.1", "tpe": ""}  # bisection stops once the answer is within one grid step


def subnets(*args: str, cwd: Path) -> float:
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "registry.cli", *args],
        cwd=cwd,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - t


def grid_answers(store: Path) -> dict[int, dict]:
    """Per pruning seed: the largest target whose ID accuracy holds, from the grid run's metrics."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    exp = client.get_experiment_by_name("grid")
    out = {}
    for run in client.search_runs([exp.experiment_id], filter_string="tags.`subnets.kind` = 'run'"):
        acc = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "step/id.accuracy")}
        target = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "step/method.target_sparsity")}
        holding = [target[s] for s in target if acc[s] >= acc[0] - MARGIN]
        out[int(run.data.tags["subnets.prune_seed"])] = {
            "answer": max(holding, default=None),
            "full": acc[0],
            "subnetworks": len(target),
        }
    return out


def search_answers(store: Path, experiment: str) -> dict[int, dict]:
    """Per pruning seed: the largest target that held among the search's trials, and how many it trained."""
    import optuna

    from runners.queue import open_storage

    storage = open_storage(f"sqlite:///{store / 'optuna.db'}")
    out = {}
    for summary in optuna.get_all_study_summaries(storage):
        if not summary.study_name.startswith(f"subnets/{experiment}/search/"):
            continue
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        seed = (
            int(study.user_attrs["label"].split("prune_seed=")[1]) if "prune_seed=" in study.user_attrs["label"] else 0
        )
        held = [t.params["target"] for t in trials if t.user_attrs.get("holds")]
        out[seed] = {
            "answer": max(held, default=None),
            "trials": len(trials),
            "reused": sum(bool(t.user_attrs.get("reused")) for t in trials),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smaller task and schedule (minutes, not tens)")
    ap.add_argument("--trials", type=int, default=4, help="trials per seed for each search")
    ap.add_argument("--workers-only", action="store_true", help="only the grid's wall time, 1 vs 2 workers")
    ap.add_argument("--scale", type=float, help="the L0 schedule_scale (default 0.005): larger, longer pruning")
    args = ap.parse_args()
    # full: the demo's task and fine-tuning (ID ~0.8); a short L0 schedule per target
    cfg = dict(n_train=2000, epochs=1.0, scale=0.005) if args.quick else dict(n_train=16000, epochs=3.0, scale=0.005)
    if args.scale:
        cfg["scale"] = args.scale
    root = Path(tempfile.mkdtemp(prefix="subnets-bench-search-"))
    print(f"working in {root} ({cfg})", file=sys.stderr)
    toml = root / "experiments.toml"
    targets, prune_seeds = (WORKER_TARGETS, list(range(6))) if args.workers_only else (TARGETS, [0, 1, 2])
    toml.write_text(
        EXPERIMENTS.format(targets=json.dumps(targets), prune_seeds=json.dumps(prune_seeds), **cfg)
        + "".join(
            SEARCH.format(sampler=s, extra=extra, trials=args.trials, margin=MARGIN, scale=cfg["scale"])
            for s, extra in SAMPLERS.items()
        )
    )
    env_threads = {"SUBNETS_THREADS": os.environ.get("SUBNETS_THREADS", "")}
    wall = {}
    try:
        one = root / "one-worker"
        wall["grid_1_worker_s"] = subnets("run", "grid", "--file", str(toml), "--store", str(one), "--quiet", cwd=root)
        print(f"grid, 1 worker: {wall['grid_1_worker_s']:.0f} s (fine-tuning included)", file=sys.stderr)
        if not args.workers_only:
            wall["bisection_s"] = subnets(
                "sweep", "bisection", "--file", str(toml), "--store", str(one), "--quiet", cwd=root
            )
            wall["tpe_s"] = subnets("sweep", "tpe", "--file", str(toml), "--store", str(one), "--quiet", cwd=root)
            print(f"searches: bisection {wall['bisection_s']:.0f} s, tpe {wall['tpe_s']:.0f} s", file=sys.stderr)
        two = root / "two-workers"
        wall["grid_2_workers_s"] = subnets(
            "run", "grid", "--file", str(toml), "--store", str(two), "--quiet", "--workers", "2", cwd=root
        )
        print(f"grid, 2 workers: {wall['grid_2_workers_s']:.0f} s (fine-tuning included)", file=sys.stderr)
        if args.workers_only:  # the control: is a second worker worth more than a second thread in one worker?
            single = root / "one-worker-one-thread"
            wall["grid_1_worker_1_thread_s"] = subnets(
                "run", "grid", "--file", str(toml), "--store", str(single), "--quiet", "--threads", "1", cwd=root
            )
            print(f"grid, 1 worker x 1 thread: {wall['grid_1_worker_1_thread_s']:.0f} s", file=sys.stderr)
        grid = grid_answers(one)
        samplers = () if args.workers_only else ("bisection", "tpe")
        searches = {name: search_answers(one, name) for name in samplers}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    n_grid = sum(g["subnetworks"] for g in grid.values())
    fig = {
        "benchmark": "search",
        "machine": provenance.machine(),
        "config": {
            **cfg,
            "targets": targets,
            "prune_seeds_declared": prune_seeds,
            "keep": f"id >= full - {MARGIN}",
            "prune_seeds": sorted(grid),
            "trials_per_seed": args.trials,
            "threads": env_threads["SUBNETS_THREADS"] or "cores / workers",
        },
        "grid": {str(k): v for k, v in sorted(grid.items())},
        "grid_subnetworks": n_grid,
        "wall_s": wall,
    }
    for name, res in searches.items():
        used = sum(r["trials"] - r["reused"] for r in res.values())
        within = {
            str(s): (
                res[s]["answer"] is not None
                and grid[s]["answer"] is not None
                and abs(res[s]["answer"] - grid[s]["answer"]) <= 0.05 + 1e-9
            )
            or (res[s]["answer"] is None and grid[s]["answer"] is None)
            for s in grid
            if s in res
        }
        fig[name] = {
            "per_seed": {str(k): v for k, v in sorted(res.items())},
            "subnetworks_trained": used,
            "fraction_of_grid": used / n_grid,
            "within_one_grid_step": within,
            "all_within_and_at_most_25pct": all(within.values()) and used <= 0.25 * n_grid,
        }
    fig["grid_speedup_2_workers"] = wall["grid_1_worker_s"] / wall["grid_2_workers_s"]
    if "grid_1_worker_1_thread_s" in wall:  # 2 workers x 1 thread against 1 worker x 1 thread: the workers alone
        fig["grid_speedup_2_workers_vs_1_thread"] = wall["grid_1_worker_1_thread_s"] / wall["grid_2_workers_s"]
    print(json.dumps(fig))


if __name__ == "__main__":
    main()
