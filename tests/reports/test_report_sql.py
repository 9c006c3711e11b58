"""Golden tests of every reports/sql/*.sql file on small fixture tables written through the results contract
(runners' write_table, which refuses a column the contract lacks). The warehouse is built straight from the
Parquet files (no MLflow here: test_reports.py covers reading them from MLflow). Expected rows are worked out
by hand from the fixture below."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from reports.warehouse import TABLES, Sources, Warehouse, load_sql, sql_names
from runners.tracking.tables import write_table

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def ids(exp, run, seed, prune_seed, method, group):
    return dict(
        experiment=exp,
        run_id=run,
        fingerprint=f"fp-{run}",
        group_id=group,
        seed=seed,
        prune_seed=prune_seed,
        method=method,
    )


def run_row(
    i,
    *,
    label,
    x_axis,
    ft,
    final_step,
    final_sparsity,
    stop,
    keep=("ratio", 0.9),
    metric=None,
    study=None,
    trial=None,
    description="",
    started=0,
):
    return dict(
        i,
        label=label,
        finetune_fingerprint=ft,
        model="tiny-bert",
        task="synthetic-nli",
        primary_metric=metric,
        description=description,
        x_axis=x_axis,
        config_json=json.dumps({"run": i["run_id"]}),
        git_sha="abc123",
        device="cpu",
        torch_threads=1,
        started_at=T0.replace(minute=started),
        duration_s=10.0,
        baseline_id_accuracy=None,
        final_step=final_step,
        final_sparsity=final_sparsity,
        stop_reason=stop,
        keep_rule=keep[0],
        keep_threshold=keep[1],
        study=study,
        trial=trial,
        data_digest=f"digest-{i['run_id']}",
    )


def step_rows(
    i, *, xs, sparsity, passed, selected, values, metric="accuracy", variant="pruned", steps=None, expected=None
):
    """values: {(eval_set, subcase): [value per step]}; expected: L0's expected unit sparsity per step"""
    rows = []
    for (eval_set, subcase), vals in values.items():
        for k, v in enumerate(vals):
            step = steps[k] if steps else k
            rows.append(
                dict(
                    i,
                    variant=variant,
                    step=step,
                    x=xs[k],
                    sparsity=sparsity[k],
                    unit_sparsity=xs[k] if variant == "pruned" and metric != "accuracy" else None,
                    expected_unit_sparsity=expected[k] if expected else None,
                    eval_set=eval_set,
                    kind="id" if eval_set == "id" else "ood",
                    subcase=subcase,
                    metric=metric,
                    value=v,
                    n=100,
                    passed=passed[k],
                    selected=variant != "pruned" or step == selected,
                )
            )
    return rows


def build(tmp: Path) -> dict[str, list[Path]]:
    runs: dict[str, dict[str, list]] = {}

    def add(run_id, **tables):
        runs[run_id] = tables

    # a: iterative magnitude pruning, two seeds; accuracy (no primary_metric: a run logged before it existed)
    ia = {0: ids("a", "a1", 0, 0, "magnitude", "ga"), 1: ids("a", "a2", 1, 1, "magnitude", "ga")}
    a_vals = {
        0: {
            ("id", "all"): [0.90, 0.88, 0.80],
            ("hans", "all"): [0.50, 0.55, 0.60],
            ("hans", "lo/ne"): [0.10, 0.20, 0.30],
        },
        1: {
            ("id", "all"): [0.92, 0.86, 0.84],
            ("hans", "all"): [0.52, 0.57, 0.64],
            ("hans", "lo/ne"): [0.06, 0.22, 0.48],
        },
    }
    a_passed = {0: [True, True, False], 1: [True, True, True]}
    a_sel = {0: 1, 1: 2}
    sp = [0.0, 0.1, 0.19]
    for seed, i in ia.items():
        steps = step_rows(
            i, xs=[0.0, 1.0, 2.0], sparsity=sp, passed=a_passed[seed], selected=a_sel[seed], values=a_vals[seed]
        )
        if seed == 0:  # another metric of the same step: never read for an accuracy task
            steps += step_rows(
                i,
                xs=[1.0],
                sparsity=[0.1],
                passed=[True],
                selected=-1,
                metric="f1",
                values={("id", "all"): [0.123]},
                steps=[1],
            )
        cka = [
            dict(
                i,
                variant="pruned",
                step=k,
                sparsity=sp[k],
                representation="layer_output",
                pooling="mean",
                estimator="linear",
                layer_base=b,
                layer_pruned=p,
                degenerate=(seed, k, b, p) == (1, 2, 0, 0),
                value=0.0 if (seed, k, b, p) == (1, 2, 0, 0) else round(1 - 0.1 * k - 0.05 * (b != p) - 0.01 * seed, 4),
            )
            for k in range(3)
            for b in range(2)
            for p in range(2)
        ]
        add(
            i["run_id"],
            runs=[
                run_row(
                    i,
                    label=f"rate=0.1, seed={seed}",
                    x_axis="step",
                    ft="ft1",
                    final_step=a_sel[seed],
                    final_sparsity=sp[a_sel[seed]],
                    stop="keep_rule" if seed == 0 else "max_steps",
                    description="magnitude <b>",
                    started=seed,
                )
            ],
            axes=[
                dict(
                    {k: i[k] for k in ("experiment", "run_id", "fingerprint", "group_id")},
                    axis=a,
                    value=v,
                    number=float(v),
                )
                for a, v in (("prune.rate", "0.1"), ("seed", str(seed)), ("prune_seed", str(seed)))
            ],
            steps=steps,
            cka=cka,
        )

    # c: L0 judged by MCC, one fine-tuned model (shared with a), two pruning seeds, controls and re-fine-tuning
    ic = {0: ids("c", "c0", 0, 0, "l0", "gc"), 1: ids("c", "c1", 0, 1, "l0", "gc")}
    c_sp = {0: [0.0, 0.3, 0.62], 1: [0.0, 0.3, 0.9]}  # the gates' expected unit sparsity as well
    c_mcc = {
        0: {("id", "all"): [0.80, 0.79, 0.70], ("hans", "all"): [0.10, 0.30, 0.20]},
        1: {("id", "all"): [0.80, 0.795, 0.60], ("hans", "all"): [0.10, 0.05, 0.40]},
    }
    c_var = {
        0: {"random": (0.40, 0.00), "bad": (0.20, 0.05), "retrained": (0.81, 0.25)},
        1: {"random": (0.50, 0.10), "bad": (0.10, 0.15), "retrained": (0.79, 0.05)},
    }
    c_keep = {
        0: {(0, "head", 0), (0, "head", 1), (0, "mlp", 0), (1, "head", 0)},
        1: {(0, "head", 0), (0, "mlp", 0), (1, "head", 0), (1, "mlp", 0)},
    }
    units_all = [(l, "head", h) for l in range(2) for h in range(2)] + [(l, "mlp", 0) for l in range(2)]
    for ps, i in ic.items():
        xs = [0.0, 0.3, 0.6]
        steps = step_rows(
            i,
            xs=xs,
            sparsity=c_sp[ps],
            passed=[True, True, False],
            selected=1,
            metric="mcc",
            values=c_mcc[ps],
            expected=c_sp[ps],
        )
        steps += step_rows(
            i,
            xs=xs,
            sparsity=c_sp[ps],
            passed=[True, True, False],
            selected=1,  # decoy metric
            values={("id", "all"): [0.5, 0.5, 0.5], ("hans", "all"): [0.5, 0.5, 0.5]},
        )
        for variant, (vid, vood) in c_var[ps].items():
            steps += step_rows(
                i,
                xs=[0.3],
                sparsity=[0.3],
                passed=[True],
                selected=1,
                metric="mcc",
                variant=variant,
                values={("id", "all"): [vid], ("hans", "all"): [vood]},
                steps=[1],
            )
        units = [
            dict(
                i, variant="pruned", step=1, layer=l, unit_kind=k, unit_index=u, kept=(l, k, u) in c_keep[ps], score=0.0
            )
            for l, k, u in units_all
        ]
        units += [
            dict(
                i,
                variant="pruned",
                step=2,
                layer=l,
                unit_kind=k,
                unit_index=u,
                kept=(l, k, u) == (0, "head", 0),
                score=0.0,
            )
            for l, k, u in units_all
        ]  # step 2 failed the rule: not a good subnetwork
        units += [
            dict(i, variant="random", step=1, layer=l, unit_kind=k, unit_index=u, kept=k == "mlp", score=0.0)
            for l, k, u in units_all
        ]  # a control's mask: not a good subnetwork either
        add(
            i["run_id"],
            runs=[
                run_row(
                    i,
                    label=f"prune_seed={ps}, seed=0",
                    x_axis="target",
                    ft="ft1",
                    final_step=1,
                    final_sparsity=0.3,
                    stop="declared",
                    keep=("margin", 0.03),
                    metric="mcc",
                    started=10 + ps,
                )
            ],
            steps=steps,
            units=units,
        )

    # d: a search (study s1) of three L0 trials; t2 is dominated by t0 (as sparse, worse ID, same OOD)
    for t, (x, s, vid, vood) in enumerate([(0.3, 0.3, 0.8, 0.5), (0.5, 0.5, 0.8, 0.4), (0.35, 0.3, 0.7, 0.5)]):
        i = ids("d", f"d{t}", 0, 0, "l0", f"gd{t}")
        add(
            i["run_id"],
            runs=[
                run_row(
                    i,
                    label=f"target={x:g}, seed=0",
                    x_axis="target",
                    ft="ft2",
                    final_step=1,
                    final_sparsity=s,
                    stop="declared",
                    study="s1",
                    trial=t,
                    started=20 + t,
                )
            ],
            steps=step_rows(
                i,
                xs=[0.0, x],
                sparsity=[0.0, s],
                passed=[True, vid >= 0.765],
                selected=1,
                values={("id", "all"): [0.85, vid], ("hans", "all"): [0.45, vood]},
            ),
        )

    # e: ID only, one run, no OOD, units, CKA or controls
    i = ids("e", "e0", 0, 0, "magnitude", "ge")
    add(
        "e0",
        runs=[
            run_row(
                i,
                label="seed=0",
                x_axis="step",
                ft="ft3",
                final_step=1,
                final_sparsity=0.1,
                stop="exhausted",
                started=30,
            )
        ],
        steps=step_rows(
            i, xs=[0.0, 1.0], sparsity=[0.0, 0.1], passed=[True, True], selected=1, values={("id", "all"): [0.7, 0.69]}
        ),
    )

    files: dict[str, list[Path]] = {t: [] for t in TABLES}
    for run_id, tables in runs.items():
        for name, rows in tables.items():
            path = write_table(tmp / run_id, name, rows)
            files[name].append(path)
    return files


@pytest.fixture(scope="module")
def wh(tmp_path_factory):
    files = build(tmp_path_factory.mktemp("tables"))
    tags = [
        ("a1", "subnets.version.torch", "2.13.0"),
        ("a1", "subnets.version.duckdb", "2.0.1"),
        ("a1", "subnets.machine", "x86_64, 2 cores, AMD EPYC (family 25, model 1)"),
        ("a1", "subnets.kind", "run"),
    ]
    with Warehouse(Sources(files=files, run_ids=[], tags=tags)) as w:
        yield w


def rows(wh, name, experiment=None, cols=None):
    out = wh.named(name, **({"experiment": experiment} if experiment else {}))
    if cols:
        out = [tuple(r[c] for c in cols) for r in out]
    return out


def approx_rows(actual, expected):
    assert len(actual) == len(expected), actual
    for a, e in zip(actual, expected):
        assert a == pytest.approx(e, abs=1e-9), (a, e)


def test_every_sql_file_has_a_golden_test():
    import inspect
    import sys

    source = inspect.getsource(sys.modules[__name__])
    untested = [n for n in sql_names() if f'"{n}"' not in source and f"'{n}'" not in source]
    assert untested == []


def test_primary_steps_reads_each_runs_own_metric(wh):
    got = wh.query(f"SELECT experiment, metric, count(*) FROM ({load_sql('primary_steps')}) GROUP BY ALL ORDER BY ALL")[
        1
    ]
    # a: 2 runs x 3 steps x 3 (set, subcase), the f1 row left out; c: mcc only (2 x (6 pruned + 6 variant)); d: 3 x 4;
    # e: 2
    assert got == [("a", "accuracy", 18), ("c", "mcc", 24), ("d", "accuracy", 12), ("e", "accuracy", 2)]


def test_run_groups_label_runs_by_axis_values(wh):
    got = wh.query(f"SELECT run_id, group_label, run_label FROM ({load_sql('run_groups')}) ORDER BY run_id")[1]
    assert got == [
        ("a1", "magnitude", "magnitude · rate=0.1, seed=0"),
        ("a2", "magnitude", "magnitude · rate=0.1, seed=1"),
        ("c0", "l0", "l0 · prune_seed=0, seed=0"),
        ("c1", "l0", "l0 · prune_seed=1, seed=0"),
        ("d0", "l0 [target=0.3]", "l0 · target=0.3, seed=0"),
        ("d1", "l0 [target=0.5]", "l0 · target=0.5, seed=0"),
        ("d2", "l0 [target=0.35]", "l0 · target=0.35, seed=0"),
        ("e0", "magnitude", "magnitude · seed=0"),
    ]


def test_experiments(wh):
    got = rows(wh, "experiments", cols=("experiment", "description", "methods", "n_runs", "n_seeds"))
    assert got == [
        ("a", "magnitude <b>", "magnitude", 2, 2),
        ("c", "", "l0", 2, 1),
        ("d", "", "l0", 3, 1),
        ("e", "", "magnitude", 1, 1),
    ]


def test_ood_sets(wh):
    assert rows(wh, "ood_sets", "a") == [{"eval_set": "hans"}] and rows(wh, "ood_sets", "e") == []


def test_runs_stop_reasons_and_l0_targets(wh):
    cols = (
        "run_label",
        "metric",
        "full_id_value",
        "final_step",
        "kept_x",
        "final_sparsity",
        "stop_reason",
        "last_step",
        "chosen_by",
        "kept_id_value",
    )
    assert rows(wh, "runs", "a", cols) == [
        ("magnitude · rate=0.1, seed=0", "accuracy", 0.90, 1, 1.0, 0.1, "keep_rule", 2, "keep rule", 0.88),
        ("magnitude · rate=0.1, seed=1", "accuracy", 0.92, 2, 2.0, 0.19, "max_steps", 2, "cap", 0.84),
    ]
    c = rows(wh, "runs", "c")
    assert [(r["metric"], r["kept_id_value"], r["kept_x"], r["kept_unit_sparsity"], r["chosen_by"]) for r in c] == [
        ("mcc", 0.79, 0.3, 0.3, "keep rule"),
        ("mcc", 0.795, 0.3, 0.3, "keep rule"),
    ]
    assert c[0]["missed_targets"] is None  # 0.62 is within 0.05 of 0.6
    assert c[1]["missed_targets"] == [{"target": 0.6, "expected": 0.9}]
    assert c[1]["kept_ood"] == [{"eval_set": "hans", "value": 0.05}]
    assert [r["chosen_by"] for r in rows(wh, "runs", "e")] == ["cap"]  # exhausted while every step held


def test_id_vs_ood_dots(wh):
    cols = ("run_label", "full_model", "step", "subcase", "id_value", "ood_value")
    got = rows(wh, "id_vs_ood", "c", cols)
    # the full model once (c0 and c1 share it), then each subnetwork (step > 0), by the MCC rows only
    assert got == [
        ("l0 · prune_seed=0, seed=0", True, 0, "all", 0.80, 0.10),
        ("l0 · prune_seed=0, seed=0", False, 1, "all", 0.79, 0.30),
        ("l0 · prune_seed=0, seed=0", False, 2, "all", 0.70, 0.20),
        ("l0 · prune_seed=1, seed=0", False, 1, "all", 0.795, 0.05),
        ("l0 · prune_seed=1, seed=0", False, 2, "all", 0.60, 0.40),
    ]
    a = rows(wh, "id_vs_ood", "a", cols)
    # a1 and a2 prune one fine-tuned model: its star once per (set, subcase), then 2 runs x 2 steps x 2 subcases
    assert len(a) == 2 + 8 and [r[1] for r in a] == [True] + [False] * 4 + [True] + [False] * 4
    assert rows(wh, "id_vs_ood", "e") == []


def test_id_ood_spread(wh):
    cols = (
        "eval_set",
        "subcase",
        "id_low",
        "id_high",
        "n_in_window",
        "n_subnetworks",
        "ood_min",
        "ood_max",
        "ood_spread",
    )
    # c: ID 0.60, 0.70, 0.79, 0.795: the window [0.79, 0.80] holds 0.79 and 0.795, OOD 0.30 and 0.05
    approx_rows(rows(wh, "id_ood_spread", "c", cols), [("hans", "all", 0.79, 0.795, 2, 4, 0.05, 0.30, 0.25)])
    # a, whole set: ID 0.80 (0.60), 0.84 (0.64), 0.86 (0.57), 0.88 (0.55); widest window [0.84, 0.84] or
    # [0.86, 0.86]... windows: 0.80 -> {0.80}; 0.84 -> {0.84}; 0.86 -> {0.86}; 0.88 -> {0.88}: no two within a point
    approx_rows(
        rows(wh, "id_ood_spread", "a", cols),
        [("hans", "all", 0.80, 0.80, 1, 4, 0.60, 0.60, 0.0), ("hans", "lo/ne", 0.80, 0.80, 1, 4, 0.30, 0.30, 0.0)],
    )


def test_accuracy_curves(wh):
    cols = (
        "eval_set",
        "subcase",
        "step",
        "metric",
        "sparsity",
        "mean_value",
        "min_value",
        "max_value",
        "n_seeds",
        "keep_line",
    )
    keep = 0.9 * (0.90 + 0.92) / 2
    approx_rows(
        [r[:4] + r[4:] for r in rows(wh, "accuracy_curves", "a", cols)],
        [
            ("id", "all", 0, "accuracy", 0.0, 0.91, 0.90, 0.92, 2, keep),
            ("id", "all", 1, "accuracy", 0.1, 0.87, 0.86, 0.88, 2, keep),
            ("id", "all", 2, "accuracy", 0.19, 0.82, 0.80, 0.84, 2, keep),
            ("hans", "all", 0, "accuracy", 0.0, 0.51, 0.50, 0.52, 2, keep),
            ("hans", "all", 1, "accuracy", 0.1, 0.56, 0.55, 0.57, 2, keep),
            ("hans", "all", 2, "accuracy", 0.19, 0.62, 0.60, 0.64, 2, keep),
            ("hans", "lo/ne", 0, "accuracy", 0.0, 0.08, 0.06, 0.10, 2, keep),
            ("hans", "lo/ne", 1, "accuracy", 0.1, 0.21, 0.20, 0.22, 2, keep),
            ("hans", "lo/ne", 2, "accuracy", 0.19, 0.39, 0.30, 0.48, 2, keep),
        ],
    )
    c = rows(wh, "accuracy_curves", "c")
    assert {r["metric"] for r in c} == {"mcc"} and c[0]["keep_line"] == pytest.approx(0.80 - 0.03)
    assert [(r["x"], r["sparsity"]) for r in c if r["eval_set"] == "id"] == [
        (0.0, 0.0),
        (0.3, 0.3),
        (0.6, pytest.approx(0.76)),
    ]


def test_subcases(wh):
    cols = (
        "variant",
        "eval_set",
        "subcase",
        "metric",
        "full_value",
        "selected_value",
        "delta",
        "selected_sparsity",
        "n_seeds",
    )
    approx_rows(
        rows(wh, "subcases", "a", cols),
        [
            ("pruned", "id", "all", "accuracy", 0.91, 0.86, -0.05, 0.145, 2),
            ("pruned", "hans", "all", "accuracy", 0.51, 0.595, 0.085, 0.145, 2),
            ("pruned", "hans", "lo/ne", "accuracy", 0.08, 0.34, 0.26, 0.145, 2),
        ],
    )
    c = {(r["variant"], r["eval_set"]): r["selected_value"] for r in rows(wh, "subcases", "c")}
    assert c[("bad", "id")] == pytest.approx(0.15) and c[("retrained", "hans")] == pytest.approx(0.15)


def test_effective_size(wh):
    cols = (
        "method",
        "found_by",
        "seed",
        "prune_seed",
        "eval_set",
        "metric",
        "full_accuracy",
        "effective_size",
        "effective_units",
        "x",
        "accuracy",
        "runs_used",
        "subnetworks_evaluated",
    )
    # c, margin 0.03 on MCC: ID holds at 0.3 for both pruning seeds (0.79, 0.795 >= 0.77), not at 0.6;
    # hans (full 0.10, line 0.07): c0 holds at 0.62 (0.20), c1 at 0.9 (0.40)
    approx_rows(
        rows(wh, "effective_size_of", "c", cols),
        [
            ("l0", "grid", 0, 0, "id", "mcc", 0.80, 0.7, 0.7, 0.3, 0.79, 1, 2),
            ("l0", "grid", 0, 0, "hans", "mcc", 0.10, 0.38, 0.4, 0.6, 0.20, 1, 2),
            ("l0", "grid", 0, 1, "id", "mcc", 0.80, 0.7, 0.7, 0.3, 0.795, 1, 2),
            ("l0", "grid", 0, 1, "hans", "mcc", 0.10, 0.1, 0.4, 0.6, 0.40, 1, 2),
        ],
    )
    # d, a search: ratio 0.9 of 0.85 = 0.765; t0 (0.3) and t1 (0.5) hold on ID, t2 (0.7) does not
    d = rows(
        wh,
        "effective_size_of",
        "d",
        ("found_by", "found_in", "eval_set", "effective_size", "x", "runs_used", "subnetworks_evaluated"),
    )
    # hans: 0.9 x 0.45 = 0.405 holds for t0 and t2 (0.5), both 0.3 sparse: the tie goes to the smaller x
    approx_rows(d, [("search", "s1", "id", 0.5, 0.5, 3, 3), ("search", "s1", "hans", 0.7, 0.3, 3, 3)])
    assert wh.query("SELECT count(*) FROM effective_size")[1] == [(2 * 2 + 2 * 2 + 2 + 1,)]


def test_pareto_front(wh):
    cols = ("study", "trial", "run_label", "x", "sparsity", "id_value", "ood", "on_front")
    assert rows(wh, "pareto_front", "d", cols) == [
        ("s1", 0, "l0 · target=0.3, seed=0", 0.3, 0.3, 0.8, [{"eval_set": "hans", "value": 0.5}], True),
        ("s1", 1, "l0 · target=0.5, seed=0", 0.5, 0.5, 0.8, [{"eval_set": "hans", "value": 0.4}], True),
        ("s1", 2, "l0 · target=0.35, seed=0", 0.35, 0.3, 0.7, [{"eval_set": "hans", "value": 0.5}], False),
    ]
    assert rows(wh, "pareto_front", "a") == []


def test_cka_steps(wh):
    got = {(r["step"], r["layer_base"], r["layer_pruned"]): r for r in rows(wh, "cka_steps", "a")}
    assert len(got) == 3 * 4
    r = got[(1, 0, 1)]  # 1 - 0.1 - 0.05 - 0.01 seed
    assert (r["mean_cka"], r["min_cka"], r["max_cka"], r["n_seeds"], r["kept"]) == (
        pytest.approx(0.845),
        0.84,
        0.85,
        2,
        True,
    )
    r = got[(2, 0, 0)]  # seed 1's cell is degenerate: left out and counted
    assert (r["mean_cka"], r["n_seeds"], r["n_degenerate"], r["kept"], r["sparsity"]) == (
        0.8,
        1,
        1,
        True,
        pytest.approx(0.19),
    )
    assert got[(0, 1, 1)]["kept"] is False and rows(wh, "cka_steps", "c") == []


def test_cka_diagonal(wh):
    cols = ("layer", "step", "mean_cka", "min_cka", "max_cka", "n_seeds")
    approx_rows(
        rows(wh, "cka_diagonal", "a", cols),
        [
            (0, 0, 0.995, 0.99, 1.0, 2),
            (0, 1, 0.895, 0.89, 0.9, 2),
            (0, 2, 0.8, 0.8, 0.8, 1),
            (1, 0, 0.995, 0.99, 1.0, 2),
            (1, 1, 0.895, 0.89, 0.9, 2),
            (1, 2, 0.795, 0.79, 0.8, 2),
        ],
    )


def test_unit_survival(wh):
    cols = (
        "layer",
        "unit_kind",
        "unit_index",
        "units",
        "n_subnetworks",
        "kept_fraction",
        "super_survivors",
        "mean_sparsity",
    )
    approx_rows(
        rows(wh, "unit_survival", "c", cols),
        [
            (0, "head", 0, 1, 2, 1.0, 1, 0.3),
            (0, "head", 1, 1, 2, 0.5, 0, 0.3),
            (0, "mlp", 0, 1, 2, 1.0, 1, 0.3),
            (1, "head", 0, 1, 2, 1.0, 1, 0.3),
            (1, "head", 1, 1, 2, 0.0, 0, 0.3),
            (1, "mlp", 0, 1, 2, 0.5, 0, 0.3),
        ],
    )
    assert rows(wh, "unit_survival", "a") == []


def test_unit_overlap(wh):
    cols = (
        "unit_kind",
        "subnetwork_a",
        "subnetwork_b",
        "n_units",
        "kept_a",
        "kept_b",
        "shared",
        "jaccard",
        "random_jaccard",
        "mean_jaccard",
        "mean_random_jaccard",
        "pairs_above_random",
        "n_pairs",
    )
    a, b = "l0 · prune_seed=0, seed=0", "l0 · prune_seed=1, seed=0"
    # heads: c0 keeps 3 of 4, c1 2 of 4, both L0h0 and L1h0: 2 / 3; random masks share 3 x 2 / 4 = 1.5: 1.5 / 3.5
    # MLPs: c0 keeps 1 of 2, c1 both: 1 / 2; random masks share 1 x 2 / 2 = 1: 1 / 2 (not above)
    approx_rows(
        rows(wh, "unit_overlap", "c", cols),
        [
            ("head", a, b, 4, 3, 2, 2, 2 / 3, 1.5 / 3.5, 2 / 3, 1.5 / 3.5, 1, 1),
            ("mlp", a, b, 2, 1, 2, 1, 0.5, 0.5, 0.5, 0.5, 0, 1),
        ],
    )


def test_controls(wh):
    got = rows(wh, "controls", "c")
    by = {(r["variant"], r["eval_set"]): r for r in got}
    assert [k for k in by] == [
        ("pruned", "id"),
        ("random", "id"),
        ("bad", "id"),
        ("retrained", "id"),
        ("pruned", "hans"),
        ("random", "hans"),
        ("bad", "hans"),
        ("retrained", "hans"),
    ]
    r = by[("random", "id")]
    assert (r["metric"], r["n_seeds"], r["mean_value"], r["min_value"], r["max_value"], r["sparsity"]) == (
        "mcc",
        2,
        pytest.approx(0.45),
        0.40,
        0.50,
        pytest.approx(0.3),
    )
    assert r["sd_value"] == pytest.approx(0.0707106781)  # sample SD of 0.40, 0.50
    assert r["per_seed"] == [
        {"run": "l0 · prune_seed=0, seed=0", "value": 0.40},
        {"run": "l0 · prune_seed=1, seed=0", "value": 0.50},
    ]
    assert by[("pruned", "hans")]["mean_value"] == pytest.approx(0.175)
    assert rows(wh, "controls", "a") == []


def test_shared_models(wh):
    cols = (
        "finetune_fingerprint",
        "experiment",
        "method",
        "eval_set",
        "metric",
        "n_runs",
        "full_value",
        "mean_kept_value",
        "min_kept_value",
        "max_kept_value",
        "mean_kept_sparsity",
    )
    approx_rows(
        rows(wh, "shared_models", cols=cols),
        [
            ("ft1", "a", "magnitude", "id", "accuracy", 2, 0.91, 0.86, 0.84, 0.88, 0.145),
            ("ft1", "c", "l0", "id", "mcc", 2, 0.80, 0.7925, 0.79, 0.795, 0.3),
            ("ft1", "a", "magnitude", "hans", "accuracy", 2, 0.51, 0.595, 0.55, 0.64, 0.145),
            ("ft1", "c", "l0", "hans", "mcc", 2, 0.10, 0.175, 0.05, 0.30, 0.3),
        ],
    )


def test_provenance(wh):
    got = rows(wh, "provenance", "a", ("run_label", "fingerprint", "git_sha", "data_digest", "versions", "config_json"))
    assert got == [
        ("magnitude · rate=0.1, seed=0", "fp-a1", "abc123", "digest-a1", "duckdb 2.0.1, torch 2.13.0", '{"run": "a1"}'),
        ("magnitude · rate=0.1, seed=1", "fp-a2", "abc123", "digest-a2", None, '{"run": "a2"}'),
    ]
    # where each run's duration was measured: a1 recorded its machine, a2 (an older run) did not
    assert rows(wh, "provenance", "a", ("run_id", "machine")) == [
        ("a1", "x86_64, 2 cores, AMD EPYC (family 25, model 1)"),
        ("a2", None),
    ]


def test_named_queries_name_only_the_experiment_parameter():
    """`subnets query --file` and the contract test pass $experiment; a figure's query needs nothing else."""
    import re

    for name in sql_names():
        assert set(re.findall(r"\$([a-z_]+)", load_sql(name))) <= {"experiment"}, name


def _same(v):
    if isinstance(v, float):
        return round(v, 12)
    if isinstance(v, list):
        return [_same(x) for x in v]
    if isinstance(v, dict):
        return {k: _same(x) for k, x in v.items()}
    return v


def test_each_figure_query_over_every_experiment_equals_it_per_experiment(wh):
    """The report runs these once with $experiment NULL and splits the rows by their last column."""
    from reports.build import PER_EXPERIMENT

    experiments = [r["experiment"] for r in rows(wh, "experiments")]
    assert experiments == list("acde")
    for name in PER_EXPERIMENT:
        everything = wh.named(name, experiment=None)
        # the rows name their experiment: in the last column (effective_size_of: the view's own columns)
        assert everything and all(
            list(r)[0 if name == "effective_size_of" else -1] == "experiment" for r in everything
        ), name
        for exp in experiments:
            mine = [_same(r) for r in everything if r["experiment"] == exp]
            assert mine == [_same(r) for r in rows(wh, name, exp)], (name, exp)
