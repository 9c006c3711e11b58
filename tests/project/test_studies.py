"""The declared study files (studies/): each opens with the command that runs it and its cost, validates and
plans without the hub (nothing heavy is even imported), and declares what its paper ran."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from registry.loader import load_runs
from registry.tasks import eval_set_names
from tests.helpers import PROJECT_ROOT
from tests.project.test_layering import _cli_modules

STUDIES = PROJECT_ROOT / "studies"
HUB = ["pruning-cka", "lottery", "heuristic-core"]


@pytest.mark.parametrize("name", sorted(p.stem for p in STUDIES.glob("*.toml")))
def test_every_study_file_opens_with_its_command_and_cost(name):
    lines = (STUDIES / f"{name}.toml").read_text().splitlines()
    assert re.match(rf"# subnets (run|sweep) .*--file studies/{name}\.toml", lines[0]), lines[0]
    cost = next(line for line in lines[:6] if line.startswith("# Cost:"))
    assert re.search(r"\d", cost) and ("GPU" in cost or "core" in cost)


@pytest.mark.parametrize("name", HUB)
def test_hub_studies_validate_and_plan_offline_without_heavy_imports(name, tmp_path):
    path = STUDIES / f"{name}.toml"
    code, output, heavy = _cli_modules(["validate", "--file", str(path)], tmp_path)
    assert code == 0 and heavy == [], output
    code, output, heavy = _cli_modules(["plan", "--file", str(path), "--store", str(tmp_path / "store")], tmp_path)
    assert code == 0 and heavy == [], output
    runs = load_runs(path)
    assert f"{len(runs)} run(s) on {len({r.finetune_fingerprint for r in runs})} fine-tuned model(s): 0 done" in output
    assert {r.model.name for r in runs} == {"bert-base-uncased"}


def test_pruning_cka_study():
    runs = load_runs(STUDIES / "pruning-cka.toml")
    assert {(r.task.name, r.prune.method) for r in runs} == {
        (t, m) for t in ("sst2", "cola") for m in ("magnitude", "attribution")
    }
    assert all(r.cka is not None and r.seed in (0, 1, 2) for r in runs) and len(runs) == 12
    assert {r.primary_metric for r in runs if r.task.name == "cola"} == {"mcc"}
    assert eval_set_names(next(r for r in runs if r.task.name == "sst2").task) == ["id", "imdb", "yelp"]
    assert len({r.finetune_fingerprint for r in runs}) == 6  # both methods prune the same three models per task


def test_lottery_study():
    runs = load_runs(STUDIES / "lottery.toml")
    glue = {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}
    assert {r.task.name for r in runs} == glue and len(runs) == 9 * 2 * 5
    for r in runs:
        p = r.prune.params
        assert (p.controls, p.retrain, p.keep_ratio, r.seed in range(5)) == (["random", "bad"], True, 0.9, True)
        assert (r.prune.method, getattr(p, "rate", None) or p.head_rate) in {("magnitude", 0.1), ("importance", 0.1)}
    assert {r.task.name: r.primary_metric for r in runs} == {
        **{t: "accuracy" for t in glue},
        "cola": "mcc",
        "mrpc": "f1",
        "qqp": "f1",
        "stsb": "pearson",
    }
    assert len({r.finetune_fingerprint for r in runs}) == 45  # m- and s-pruning share each task's 5 models


def test_heuristic_core_study():
    runs = load_runs(STUDIES / "heuristic-core.toml")
    grid = [r for r in runs if r.search is None]
    assert {r.experiment for r in grid} == {"hc-mnli", "hc-qqp"} and len(grid) == 24
    assert sorted({r.prune_seed for r in grid}) == list(range(42, 54)) and {r.seed for r in runs} == {0}
    for r in runs:
        p = r.prune.params
        assert (r.prune.method, p.ablation, p.batch_size, p.schedule_scale, p.lr, p.lambda_lr) == (
            "l0",
            "mean",
            128,
            1.0,
            0.1,
            1.0,
        )
        assert r.primary_metric == "accuracy"
    mnli = next(r for r in runs if r.task.name == "mnli")
    assert eval_set_names(mnli.task) == ["id", "mismatched", "hans"]
    searches = {r.experiment: r.search for r in runs if r.search is not None}
    assert {k: (s.keep, s.margin, s.space["target"].high) for k, s in searches.items()} == {
        "hc-mnli-effective-size": ("margin", 0.03, 0.70),
        "hc-qqp-effective-size": ("margin", 0.03, 0.65),
    }
    assert len({r.finetune_fingerprint for r in runs}) == 2  # one fine-tuned model per task


def test_offline_minilm_study_validates_and_plans_on_the_shared_data(shared_data, minilm, tmp_path):
    """The experiments that run here: the local MiniLM on ../shared/data, found relative to the file."""
    from registry.models import resolve_path

    path = STUDIES / "offline-minilm.toml"
    code, output, heavy = _cli_modules(["plan", "--file", str(path), "--store", str(tmp_path / "store")], tmp_path)
    assert code == 0 and heavy == [] and "18 run(s) on 6 fine-tuned model(s): 0 done, 18 to run" in output, output
    runs = load_runs(path)
    assert {resolve_path(r.model.name, r.base_dir).resolve() for r in runs} == {minilm.resolve()}
    by_task = {}
    for r in runs:
        by_task.setdefault(r.task.name, set()).add((r.prune.method, r.seed))
    methods = ("magnitude", "importance", "l0")
    assert by_task == {t: {(m, s) for m in methods for s in (0, 1, 2)} for t in ("sst2", "cola")}
    sets = {r.task.name: eval_set_names(r.task) for r in runs}
    assert sets == {"sst2": ["id", "imdb", "yelp"], "cola": ["id", "cola-ood"]}
    assert {r.task.name: r.primary_metric for r in runs} == {"sst2": "accuracy", "cola": "mcc"}
    assert all((r.cka is not None) == (r.prune.method == "l0") for r in runs)
    assert all(r.prune.params.controls == ["random", "bad"] for r in runs if r.prune.method == "importance")


def _plan_offline(name: str, tmp_path) -> tuple[list, str]:
    path = STUDIES / f"{name}.toml"
    code, output, heavy = _cli_modules(["validate", "--file", str(path)], tmp_path)
    assert code == 0 and heavy == [] and "warning" not in output, output  # no overlapping train and eval rows
    code, output, heavy = _cli_modules(["plan", "--file", str(path), "--store", str(tmp_path / "store")], tmp_path)
    assert code == 0 and heavy == [], output
    return load_runs(path), output


def test_offline_heuristic_core_study(shared_data, minilm, tmp_path):
    """One MiniLM fine-tuned on MNLI rows 0-8999 (dev: rows 9000-9999 of the same file), >= 3 targets x >= 6
    pruning seeds of L0, HANS per fine-grained subcase and label, and an effective-size search per pruning seed; and
    the same grid on all 1,000 pairs of each of HANS's 15 non-entailment subcases."""
    runs, output = _plan_offline("offline-heuristic-core", tmp_path)
    assert "24 run(s) on 2 fine-tuned model(s): 0 done" in output and "6 search(es) declared" in output
    full_hans = [r for r in runs if r.experiment == "hc-offline-full-hans"]
    grid = [r for r in runs if r.search is None and r not in full_hans]
    assert len({p for r in grid for p in r.prune.params.targets}) >= 3 and len({r.prune_seed for r in grid}) >= 6
    # the search's reference grid: every 10% from 20% to 70%, for every pruning seed
    targets = {(r.prune_seed, t) for r in grid for t in r.prune.params.targets}
    assert targets == {(s, t / 10) for s in range(6) for t in range(2, 8)}
    assert {r.search.warm_start for r in runs if r.search is not None} == {"siblings"}
    assert {r.prune_seed for r in runs if r.search is not None} == {r.prune_seed for r in grid}
    task = grid[0].task
    assert (task.train.rows, task.eval.rows) == ([0, 9000], [9000, 10000])
    hans = next(o for o in task.ood if o.name == "hans")
    assert (hans.subcase, hans.every, hans.pred_map) == (["subcase", "gold_label"], 10, [0, 1, 1])
    # hc-offline's grid again, evaluated on every pair of HANS's 15 non-entailment subcases (1,000 each)
    assert {(r.prune_seed, tuple(r.prune.params.targets)) for r in full_hans} == {
        (r.prune_seed, tuple(r.prune.params.targets)) for r in grid if r.experiment == "hc-offline"
    }
    dense = full_hans[0].task
    assert (dense.train, dense.eval, dense.max_length) == (task.train, task.eval, task.max_length)
    rows = (shared_data / "hans" / "hans_train_set.tsv").read_text().splitlines()
    header = rows[0].split("\t")
    subcases = Counter()  # (subcase, label) -> pairs, over the three sets' rows
    for ood in dense.ood:
        assert (ood.every, ood.limit, ood.subcase, ood.pred_map) == (None, None, ["subcase", "gold_label"], [0, 1, 1])
        for line in rows[1 + ood.rows[0] : 1 + ood.rows[1]]:
            row = dict(zip(header, line.split("\t")))
            subcases[row["subcase"], row["gold_label"]] += 1
    assert len(subcases) == 15 and set(subcases.values()) == {1000}
    assert {label for _, label in subcases} == {"non-entailment"}


def test_offline_lottery_study(shared_data, minilm, tmp_path):
    runs, output = _plan_offline("offline-lottery", tmp_path)
    assert "18 run(s) on 9 fine-tuned model(s): 0 done" in output
    assert {(r.task.name, r.prune.method) for r in runs} == {
        (t, m) for t in ("sst2", "mnli", "cola") for m in ("magnitude", "importance")
    }
    for r in runs:
        p = r.prune.params
        assert (p.controls, p.retrain, p.keep_ratio, r.seed in (0, 1, 2)) == (["random", "bad"], True, 0.9, True)
    assert {r.task.name: r.primary_metric for r in runs} == {"sst2": "accuracy", "mnli": "accuracy", "cola": "mcc"}


def test_offline_pruning_cka_study(shared_data, minilm, tmp_path):
    runs, output = _plan_offline("offline-pruning-cka", tmp_path)
    assert "12 run(s) on 6 fine-tuned model(s): 0 done" in output
    assert {(r.task.name, r.prune.method) for r in runs} == {
        (t, m) for t in ("sst2", "cola") for m in ("magnitude", "attribution")
    }
    assert all(r.cka is not None for r in runs)
    assert {r.task.name: eval_set_names(r.task) for r in runs} == {
        "sst2": ["id", "imdb", "yelp"],
        "cola": ["id", "cola-ood"],
    }
