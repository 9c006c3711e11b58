"""Effective size from a grid vs from a search, per pruning seed, read from a store where both ran: the answers,
and the compute each used, counted in L0 training steps (every subnetwork's `method.train_steps`).

    python benchmarks/effective_size.py --store STORE --grid EXP [EXP ...] --search EXP [--search-store STORE2]
                                        [--margin 0.03]

The Heuristic Core offline study is the case it was written for (studies/offline-heuristic-core.toml):

    subnets run hc-offline hc-offline-fine --file studies/offline-heuristic-core.toml --store S --workers 2
    subnets sweep hc-offline-effective-size --file studies/offline-heuristic-core.toml --store S --workers 2
    python benchmarks/effective_size.py --store S --grid hc-offline hc-offline-fine --search hc-offline-effective-size

The grid's answer for a seed is the largest target whose subnetwork held (ID score >= the full model's - margin);
where a target above it held again after one failed (not monotone) the grid says so. The grid's compute is that of
every value of the search's space for every seed: targets of the space that no grid run trained (the ends,
assumed to hold below the answer and fail above it) are counted by the recipe's schedule, which gives exactly the
steps the trained ones logged (checked here). Runs no training; prints one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from registry.tracking import PRUNE_SEED
from runners.tracking import provenance

EPS = 1e-9
METRICS = ("id.accuracy", "method.target_sparsity", "method.train_steps", "method.expected_sparsity_end")


def grid_curves(client, experiments: list[str], margin: float) -> dict[int, dict]:
    """Per pruning seed: the full model's ID score, and per target the subnetwork's ID score, whether it held,
    its L0 steps and the expected sparsity its gates reached."""
    seeds: dict[int, dict] = {}
    for name in experiments:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise SystemExit(f"no experiment {name!r} in this store")
        for run in client.search_runs(
            [exp.experiment_id], "tags.`subnets.kind` = 'run' and attributes.status = 'FINISHED'"
        ):
            history = {
                key: {m.step: m.value for m in client.get_metric_history(run.info.run_id, f"step/{key}")}
                for key in METRICS
            }
            seed = seeds.setdefault(int(run.data.tags[PRUNE_SEED]), {"full": None, "targets": {}})
            full = history["id.accuracy"][0]
            seed["full"] = full
            for step, target in history["method.target_sparsity"].items():
                score = history["id.accuracy"][step]
                seed["targets"][round(target, 6)] = {
                    "id": score,
                    "held": score >= full - margin - EPS,
                    "steps": int(history["method.train_steps"][step]),
                    "expected_sparsity": history["method.expected_sparsity_end"].get(step),
                    "run": name,
                }
    return seeds


def grid_answer(curve: dict[float, dict]) -> tuple[float | None, bool]:
    """(the largest target that held, whether some target held above one that failed)."""
    held = [t for t, r in curve.items() if r["held"]]
    answer = max(held, default=None)
    failed_below = [t for t, r in curve.items() if not r["held"] and answer is not None and t < answer]
    return answer, bool(failed_below)


def searches(client, storage_url: str, experiment: str) -> dict[int, dict]:
    """Per pruning seed: the search's trials in order (target, held, L0 steps) and its answer."""
    import optuna

    from runners.queue import open_storage
    from runners.queue.samplers import holds

    storage = open_storage(storage_url)
    out = {}
    for name in optuna.get_all_study_names(storage):
        if not name.startswith(f"subnets/{experiment}/search/"):
            continue
        study = optuna.load_study(study_name=name, storage=storage)
        trials, seeds = [], set()
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            run = client.get_run(t.user_attrs["run_id"])
            seeds.add(int(run.data.tags[PRUNE_SEED]))
            steps = client.get_metric_history(run.info.run_id, "step/method.train_steps")
            trials.append(
                {
                    "trial": t.number,
                    "target": t.params["target"],
                    "held": holds(t),
                    "steps": int(sum(m.value for m in steps)),
                    "reused": bool(t.user_attrs.get("reused")),
                }
            )
        if trials:
            (seed,) = seeds  # a search is one pruning seed's
            answer = max((t["target"] for t in trials if t["held"]), default=None)
            out[seed] = {"trials": trials, "answer": answer}
    return out


def schedule_params(client, experiment: str, params_cls):
    """The L0 schedule the grid's runs logged (prune.schedule_scale, warmup_base, ...), as the recipe's params."""
    exp = client.get_experiment_by_name(experiment)
    (run,) = client.search_runs([exp.experiment_id], "tags.`subnets.kind` = 'run'", max_results=1)
    logged = run.data.params
    return params_cls(
        schedule_scale=float(logged["prune.schedule_scale"]),
        warmup_base=int(logged["prune.warmup_base"]),
        warmup_per_target=int(logged["prune.warmup_per_target"]),
        settle_per_target=int(logged["prune.settle_per_target"]),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--grid", nargs="+", required=True, help="the experiments whose runs make the grid")
    ap.add_argument("--search", required=True, help="the search experiment")
    ap.add_argument("--search-store", type=Path, help="where the search ran, if not in --store (the same model)")
    ap.add_argument("--margin", type=float, default=0.03, help="the keep rule: ID >= full - margin")
    ap.add_argument("--low", type=float, default=0.1, help="the search space: low, high, step")
    ap.add_argument("--high", type=float, default=0.8)
    ap.add_argument("--step", type=float, default=0.1)
    args = ap.parse_args()

    from mlflow.tracking import MlflowClient

    from registry.methods import L0Params
    from runners.pruning.recipes.l0 import schedule

    store = args.store.resolve()
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    curves = grid_curves(client, args.grid, args.margin)
    search_store = (args.search_store or store).resolve()
    search_client = MlflowClient(f"sqlite:///{search_store / 'mlflow.db'}")
    found = searches(search_client, f"sqlite:///{search_store / 'optuna.db'}", args.search)
    space = [round(args.low + k * args.step, 6) for k in range(round((args.high - args.low) / args.step) + 1)]
    params = schedule_params(client, args.grid[0], L0Params)

    def steps_of(target: float, seed: dict) -> int:
        trained = seed["targets"].get(target)
        return trained["steps"] if trained else schedule(params, target)[1]

    schedule_checked = all(
        r["steps"] == schedule(params, t)[1] for seed in curves.values() for t, r in seed["targets"].items()
    )
    per_seed, grid_steps, search_steps, within = {}, 0, 0, {}
    for s, seed in sorted(curves.items()):
        answer, not_monotone = grid_answer({t: r for t, r in seed["targets"].items() if t in space})
        cost = sum(steps_of(t, seed) for t in space)
        grid_steps += cost
        if s not in found:  # this seed's search has not run (yet)
            per_seed[str(s)] = {"full_id": seed["full"], "grid_answer": answer, "search": None}
            continue
        mine = found[s]
        used = sum(t["steps"] for t in mine["trials"] if not t["reused"])
        search_steps += used
        ok = (mine["answer"] is None and answer is None) or (
            mine["answer"] is not None and answer is not None and abs(mine["answer"] - answer) <= args.step + EPS
        )
        within[str(s)] = ok
        per_seed[str(s)] = {
            "full_id": seed["full"],
            "grid": {str(t): round(r["id"], 4) for t, r in sorted(seed["targets"].items())},
            "grid_answer": answer,
            "grid_not_monotone": not_monotone,
            "grid_steps": cost,
            "search_trials": [(t["target"], t["held"]) for t in mine["trials"]],
            "search_answer": mine["answer"],
            "search_steps": used,
            "within_one_step": ok,
        }
    untrained = sorted({t for t in space for seed in curves.values() if t not in seed["targets"]})
    fig = {
        "benchmark": "effective_size",
        "machine": provenance.machine(),
        "store": str(store),
        "search_store": str(search_store),
        "grid_experiments": args.grid,
        "search_experiment": args.search,
        "keep": f"id >= full - {args.margin}",
        "space": space,
        "grid_targets_not_trained": untrained,
        "schedule_gives_the_logged_steps": schedule_checked,
        "per_seed": per_seed,
        "grid_l0_steps": grid_steps,
        "search_l0_steps": search_steps,
        "search_fraction_of_grid": search_steps / grid_steps if grid_steps else None,
        "search_trials": sum(len(f["trials"]) for f in found.values()),
        "within_one_grid_step": within,
        "all_within_and_at_most_25pct": all(within.values()) and search_steps <= 0.25 * grid_steps,
    }
    print(json.dumps(fig))


if __name__ == "__main__":
    main()
