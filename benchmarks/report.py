"""`subnets report` over many finished runs: its wall time and the report's size in bytes.

Synthetic but logged through the real tracking code: each run is an MLflow parent run started with
runners.tracking.Store (tags, params, config.json, batched metrics), its tables written with
runners.tracking.tables.write_table through the results contract and logged as `tables/` artifacts, then
finished, on a local store (SQLite + file artifacts) under a temporary directory. The runs spread over 10
experiments sharing two fine-tuned models, with three methods: iterative magnitude pruning (8 steps), L0 (5
targets, heads + MLPs, CKA over 5 layers in 2 experiments) and s-pruning with random/bad controls and
re-fine-tuned variants; ID plus an OOD set with two subcases; 5 seeds per grid point.

Times the command a user runs (`subnets report`, a fresh process: imports, reading MLflow, DuckDB, rendering,
logging the report back to MLflow) on one thread: first on a store with no warehouse cache (.subnets/warehouse,
removed before), then again with it warm (the runs' tables merged by the first report), checking that both give
the same bytes. Target: <= 10 s for 1000 runs, both.

    python benchmarks/report.py [--runs 1000] [--store DIR] [--no-mlflow] [--warm 2] [--profile FILE.prof]

Prints one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runners.tracking import Store, provenance  # noqa: E402
from runners.tracking.tables import write_table  # noqa: E402

LAYERS, HEADS = 4, 4
SUBCASES = ("lexical_overlap/entailment", "lexical_overlap/non_entailment")


def _run_tables(exp: str, run_id: str, k: int, rng: random.Random) -> dict[str, list[dict]]:
    method = ("magnitude", "l0", "s-pruning")[k % 3]
    point, seed = divmod(k // 3, 5)
    ids = dict(
        experiment=exp,
        run_id=run_id,
        fingerprint=f"{exp}-{k:04d}",
        group_id=f"{exp}-{method}-{point}",
        seed=seed,
        prune_seed=seed,
        method=method,
    )
    lr = (1e-3, 5e-4, 2e-4)[point % 3]
    if method == "magnitude":
        xs, axis = [float(s) for s in range(9)], "step"
        sparsity = [1 - 0.9**s for s in range(9)]
    elif method == "l0":
        xs, axis = [0.0, 0.2, 0.4, 0.6, 0.8, 0.9], "target"
        sparsity = [0.0] + [min(0.99, x + rng.uniform(-0.02, 0.08)) for x in xs[1:]]
    else:
        xs, axis = [float(s) for s in range(7)], "step"
        sparsity = [0.1 * s for s in range(7)]
    full = 0.78 + 0.02 * rng.random()
    id_acc = [full - 0.25 * s**3 + rng.uniform(-0.01, 0.01) for s in sparsity]
    passed = [a >= 0.9 * full for a in id_acc]
    kept = max([i for i, p in enumerate(passed) if p])
    stop = "keep_rule" if not all(passed) else ("declared" if axis == "target" else "max_steps")
    steps = []
    for i, (x, s) in enumerate(zip(xs, sparsity)):
        base = dict(
            ids,
            variant="pruned",
            step=i,
            x=x,
            sparsity=s,
            unit_sparsity=None if method == "magnitude" else s,
            metric="accuracy",
            n=1000,
            passed=passed[i],
            selected=i == kept,
        )
        ood = 0.55 + rng.uniform(-0.05, 0.05)
        steps += [
            dict(base, eval_set="id", kind="id", subcase="all", value=id_acc[i]),
            dict(base, eval_set="hans_like", kind="ood", subcase="all", value=ood),
            dict(base, eval_set="hans_like", kind="ood", subcase=SUBCASES[0], value=min(1, ood + 0.4)),
            dict(base, eval_set="hans_like", kind="ood", subcase=SUBCASES[1], value=max(0, ood - 0.4)),
        ]
    units, cka = [], []
    if method != "magnitude":
        variants = ["pruned"] + (
            ["random", "bad", "retrained", "random_retrained", "bad_retrained"] if method == "s-pruning" else []
        )
        for v in variants[1:]:
            for row in [r for r in steps if r["selected"] and r["variant"] == "pruned"]:
                steps.append(dict(row, variant=v, value=row["value"] * rng.uniform(0.6, 1.05)))
        for i in range(1, len(xs)):
            for layer in range(LAYERS):
                for kind, index in [("head", h) for h in range(HEADS)] + [("mlp", 0)]:
                    units.append(
                        dict(
                            ids,
                            variant="pruned",
                            step=i,
                            layer=layer,
                            unit_kind=kind,
                            unit_index=index,
                            kept=rng.random() > sparsity[i] * (0.5 + layer / LAYERS),
                            score=rng.random(),
                        )
                    )
        if method == "l0" and exp in ("exp-00", "exp-01"):
            for i in range(len(xs)):
                cka += [
                    dict(
                        ids,
                        variant="pruned",
                        step=i,
                        sparsity=sparsity[i],
                        representation="layer_output",
                        pooling="mean",
                        estimator="linear",
                        layer_base=b,
                        layer_pruned=p,
                        degenerate=False,
                        value=max(0.0, 1 - sparsity[i] * (0.2 + 0.15 * p) - 0.1 * abs(b - p)),
                    )
                    for b in range(LAYERS + 1)
                    for p in range(LAYERS + 1)
                ]
    run = [
        dict(
            ids,
            label=f"finetune.lr={lr:g}, seed={seed}",
            finetune_fingerprint=f"ft-{int(exp[-2:]) % 2}-{lr:g}-{seed}",
            model="tiny-bert",
            task="synthetic-nli",
            primary_metric="accuracy",
            description=f"synthetic {exp}",
            x_axis=axis,
            config_json=json.dumps({"experiment": exp, "prune": {"method": method}, "finetune": {"lr": lr}}),
            git_sha="0" * 40,
            device="cpu",
            torch_threads=1,
            started_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
            duration_s=60.0,
            baseline_id_accuracy=full,
            final_step=kept,
            final_sparsity=sparsity[kept],
            stop_reason=stop,
            keep_rule="ratio",
            keep_threshold=0.9,
            data_digest="d" * 16,
        )
    ]
    axes = [
        dict(
            {f: ids[f] for f in ("experiment", "run_id", "fingerprint", "group_id")},
            axis=a,
            value=str(v),
            number=float(v),
        )
        for a, v in (("finetune.lr", lr), ("seed", seed), ("prune_seed", seed))
    ]
    return {"runs": run, "axes": axes, "steps": steps, "units": units, "cka": cka}


def log_runs(store: Store, n: int, experiments: int = 10) -> float:
    """Log n finished runs through the tracking code; seconds taken."""
    from registry.tracking import EXPERIMENT, FINGERPRINT, KIND, METHOD, SEED, VERSION_PREFIX, RunKind

    started = time.perf_counter()
    rng = random.Random(0)
    store.ensure()
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(n):
            exp = f"exp-{k % experiments:02d}"
            j = k // experiments
            tags = {
                KIND: RunKind.RUN.value,
                FINGERPRINT: f"{exp}-{j:04d}",
                EXPERIMENT: exp,
                METHOD: "synthetic",
                SEED: str(j % 5),
                VERSION_PREFIX + "torch": "2.13.0",
            }
            run = store.start_run(store.experiment_id(exp), f"run-{j}", tags)
            tables = _run_tables(exp, run.run_id, j, rng)
            run.params({"prune.method": tables["runs"][0]["method"], "finetune.lr": tables["axes"][0]["value"]})
            for row in tables["steps"]:
                if row["eval_set"] == "id" and row["variant"] == "pruned":
                    run.metrics({"id.accuracy": row["value"], "sparsity": row["sparsity"]}, step=row["step"])
            folder = Path(tmp) / run.run_id
            for name, rows in tables.items():
                write_table(folder / "tables", name, rows)
            run.artifact(folder / "tables", "tables")
            run.finish()
    return time.perf_counter() - started


def _report(root: str, out: Path, mlflow: bool, profile: Path | None = None) -> tuple[float, float]:
    """One `subnets report` in a fresh process: (wall s, CPU s of the child)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", SUBNETS_THREADS="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    cli = ["-m", "registry.cli"] if profile is None else ["-m", "cProfile", "-o", str(profile), "-m", "registry.cli"]
    cmd = [sys.executable, *cli, "report", "--store", root, "--out", str(out)] + ([] if mlflow else ["--no-mlflow"])
    before = os.times()
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = os.times()
    if proc.returncode != 0:
        sys.exit(f"subnets report failed:\n{proc.stdout}\n{proc.stderr}")
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument(
        "--store",
        type=Path,
        default=None,
        help="Keep the logged store in this directory (reused when it already holds runs).",
    )
    ap.add_argument("--no-mlflow", action="store_true", help="Time `subnets report --no-mlflow`.")
    ap.add_argument("--warm", type=int, default=2, help="Reports timed after the first (the warehouse cache warm).")
    ap.add_argument(
        "--profile", type=Path, default=None, help="Also write a cProfile of one more warm report to this file."
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="subnets-bench-report-") as tmp:
        root = str(args.store.resolve()) if args.store else tmp
        store = Store.at(root)
        logged_s = 0.0 if (Path(root) / "mlflow.db").exists() else log_runs(store, args.runs)
        out = Path(tmp) / "report.html"
        shutil.rmtree(Path(root) / ".subnets" / "warehouse", ignore_errors=True)
        load = _load()
        cold = _report(root, out, not args.no_mlflow)  # the store's first report: no warehouse cache yet
        first = out.read_bytes()
        warm = [_report(root, out, not args.no_mlflow) for _ in range(args.warm)]
        if warm and out.read_bytes() != first:
            sys.exit("a report built from the warehouse cache differs from the one built without it")
        if args.profile:
            _report(root, Path(tmp) / "profiled.html", not args.no_mlflow, args.profile)
        html = out.read_text(encoding="utf-8")
        best = min([cold] + warm)
        fig = {
            "runs": args.runs,
            "experiments": 10,
            "logging_s": round(logged_s, 1),
            "mlflow": not args.no_mlflow,
            "report_s": round(best[0], 2),
            "report_cold_s": round(cold[0], 2),
            "report_cold_cpu_s": round(cold[1], 2),
            "report_warm_s": [round(w, 2) for w, _ in warm],
            "report_warm_cpu_s": [round(c, 2) for _, c in warm],
            "load_before": load,
            "load_after": _load(),
            "report_bytes": out.stat().st_size,
            "charts": html.count("<svg"),
            "target_s": 10.0,
            "within_target": cold[0] <= 10.0 and all(w <= 10.0 for w, _ in warm),
        }
    print(
        f"subnets report over {args.runs} runs: first {fig['report_cold_s']} s (no warehouse cache), then "
        f"{fig['report_warm_s']} s; {fig['report_bytes']:,} bytes, {fig['charts']} charts; load {load}"
    )
    print(json.dumps({"benchmark": "report", "machine": provenance.machine(), **fig}))


if __name__ == "__main__":
    main()
