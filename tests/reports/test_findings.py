"""Golden tests of the findings (reports/sql/findings/*.sql and the warehouse's `findings` view) on small fixture
tables written through the results contract (runners' write_table; no MLflow, no torch): every claim with every
verdict (holds, does not hold, not enough data), the exact verdicts and the numbers behind them, worked out by hand
(or with `statistics`) from the fixture below; and the report opening with them."""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import studentized_range

from reports import build
from reports.warehouse import FINDINGS_COLUMNS, TABLES, Sources, Warehouse, findings_names, load_finding
from runners.tracking.tables import write_table

VERDICTS = ("holds", "does not hold", "not enough data")
HANS = "hans"
LO_E, LO_NE = "lexical_overlap/entailment", "lexical_overlap/non_entailment"
SUB_NE, CON_NE = "subsequence/non_entailment", "constituent/non_entailment"
# HANS fine-grained non-entailment subcases (not lexical overlap), scored on few examples: within sampling noise
CN_FEW, SN_FEW = "cn_embedded_under_verb", "sn_NP/S"
HEADS = [(layer, h) for layer in range(2) for h in range(4)]


class Fixture:
    """Runs and their tables, one call per run."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, list[dict]]] = {}

    def run(
        self,
        exp: str,
        n: int,
        *,
        seed: int,
        method: str,
        x_axis: str = "step",
        keep: tuple[str, float] = ("ratio", 0.9),
        ft: str | None = None,
        prune_seed: int | None = None,
        final_step: int = 1,
    ) -> dict:
        ids = dict(
            experiment=exp,
            run_id=f"{exp}-{n}",
            fingerprint=f"fp-{exp}-{n}",
            group_id=f"g-{exp}",
            seed=seed,
            prune_seed=seed if prune_seed is None else prune_seed,
            method=method,
        )
        self.tables[ids["run_id"]] = {
            "runs": [
                dict(
                    ids,
                    label=f"seed={seed}",
                    finetune_fingerprint=ft or f"ft-{exp}-{seed}",
                    model="tiny-bert",
                    task="synthetic-nli",
                    primary_metric="accuracy",
                    x_axis=x_axis,
                    final_step=final_step,
                    keep_rule=keep[0],
                    keep_threshold=keep[1],
                )
            ],
            "steps": [],
            "units": [],
            "cka": [],
        }
        return ids

    def step(self, ids, step, eval_set, value, *, subcase="all", variant="pruned", selected=None, sparsity=None, n=100):
        self.tables[ids["run_id"]]["steps"].append(
            dict(
                ids,
                variant=variant,
                step=step,
                x=float(step),
                sparsity=(0.1 * step) if sparsity is None else sparsity,
                unit_sparsity=(0.1 * step) if sparsity is None else sparsity,
                eval_set=eval_set,
                kind="id" if eval_set == "id" else "ood",
                subcase=subcase,
                metric="accuracy",
                value=value,
                n=n,
                passed=True,
                selected=(variant != "pruned" or step == 1) if selected is None else selected,
            )
        )

    def heads(self, ids, step, kept: set[tuple[int, int]]):
        self.tables[ids["run_id"]]["units"] += [
            dict(ids, variant="pruned", step=step, layer=layer, unit_kind="head", unit_index=h, kept=(layer, h) in kept)
            for layer, h in HEADS
        ]

    def diagonal(self, ids, step, values: list[float]):
        self.tables[ids["run_id"]]["cka"] += [
            dict(
                ids,
                variant="pruned",
                step=step,
                sparsity=0.1 * step,
                representation="layer_output",
                pooling="mean",
                estimator="linear",
                layer_base=layer,
                layer_pruned=layer,
                value=v,
                degenerate=False,
            )
            for layer, v in enumerate(values)
        ]

    def write(self, tmp: Path) -> dict[str, list[Path]]:
        files: dict[str, list[Path]] = {t: [] for t in TABLES}
        for run_id, tables in self.tables.items():
            for name, rows in tables.items():
                path = write_table(tmp / run_id, name, rows)
                if path is not None:
                    files[name].append(path)
        return files


# Claim 1 (m-pruning): full model per seed, the good subnetwork re-fine-tuned per seed
M_PRUNING = {
    "m-holds": ([0.80, 0.82, 0.78], [0.79, 0.80, 0.785]),  # 0.792 >= 0.800 - 0.020
    "m-fails": ([0.80, 0.81, 0.79], [0.70, 0.72, 0.71]),  # 0.710 < 0.800 - 0.010
    "m-no-retrain": ([0.80, 0.81], None),
    "m-one-seed": ([0.80], [0.75]),  # below the full model, and no spread to judge by
}
# Claims 2 and 3 (s-pruning): per seed, each variant's ID score at the kept step
S_PRUNING = {
    "s-holds": {
        "full": [0.80, 0.80],
        "retrained": [0.78, 0.76],
        "random_retrained": [0.74, 0.75],
        "bad": [0.30, 0.32],
        "random": [0.50, 0.52],
        "bad_retrained": [0.60, 0.62],
    },
    "s-random-fails": {  # random re-fine-tuned 0.61 < 0.72; pruned, bad (0.55) is better than random (0.50)
        "full": [0.80, 0.80],
        "retrained": [0.78, 0.78],
        "random_retrained": [0.60, 0.62],
        "bad": [0.55, 0.55],
        "random": [0.50, 0.50],
    },
    "s-no-random": {"full": [0.80], "retrained": [0.79]},
    "s-good-fails": {"full": [0.80], "retrained": [0.50], "bad": [0.20], "random": [0.40]},
}
# Claims 4-6 (the Heuristic Core): L0 subnetworks of one fine-tuned model, one per pruning seed, at step 1
HC = {
    "id": [0.800, 0.803, 0.806, 0.809],  # all within 1 point
    LO_NE: (0.20, [0.05, 0.30, 0.15, 0.40]),  # full model, subnetworks: spread 0.35 -> holds
    SUB_NE: (0.30, [0.28, 0.30, 0.31, 0.33]),  # spread 0.05 -> does not hold
    CON_NE: (0.03, [0.01, 0.02, 0.03, 0.05]),  # the full model does not generalize -> not enough data
    LO_E: (0.95, [0.95, 0.94, 0.96, 0.93]),
    # on 20 examples: spread 0.20, yet 4 equally accurate subnetworks (0.30) range up to 0.378 -> not enough data
    CN_FEW: (0.30, [0.20, 0.35, 0.25, 0.40]),
    # on 50 examples: spread 0.04, but 4 subnetworks at accuracy 0.5 range up to 0.257 by noise -> not enough data
    SN_FEW: (0.30, [0.28, 0.30, 0.32, 0.30]),
    "masks": [
        {(0, 0), (0, 1), (0, 2), (1, 0)},
        {(0, 0), (0, 1), (0, 3), (1, 1)},
        {(0, 0), (0, 1), (1, 2), (1, 3)},
        {(0, 0), (0, 1), (0, 2), (1, 3)},
    ],  # core {L0H0, L0H1}: 2 heads vs 8 x 0.5^4 = 0.5 random
}
HC_EXAMPLES = {CN_FEW: 20, SN_FEW: 50}
# Claim 5 on 10 examples a label (entailment, non-entailment): a wide gap within the noise, and a narrow one
FEW_EXAMPLES = {"hans_few": (0.60, 0.30), "hans_tied": (0.35, 0.30)}
HC_SMALL = {
    "id": [0.71, 0.75, 0.80],  # no two within 1 point
    "masks": [  # 6 of 8 heads each; core {L0H0, L0H1}: 2 < 2 x 8 x 0.75^3 = 6.75
        set(HEADS) - {(0, 2), (0, 3)},
        set(HEADS) - {(1, 0), (1, 1)},
        set(HEADS) - {(1, 2), (1, 3)},
    ],
}
# Claim 7: the CKA diagonal at the kept step (step 2), layer 0 (embeddings) first
CKA = {
    "cka-falls": [1.0, 0.95, 0.90, 0.70, 0.50],
    "cka-rises": [1.0, 0.50, 0.60, 0.80, 0.90],
    "cka-flat": [1.0, 1.0, 1.0, 1.0, 1.0],
}


def build_findings_fixture(tmp: Path) -> dict[str, list[Path]]:
    fx = Fixture()
    for exp, (full, retrained) in M_PRUNING.items():
        for seed, value in enumerate(full):
            i = fx.run(exp, seed, seed=seed, method="magnitude")
            fx.step(i, 0, "id", value)
            fx.step(i, 1, "id", value - 0.02)
            if retrained:
                fx.step(i, 1, "id", retrained[seed], variant="retrained")
    for exp, variants in S_PRUNING.items():
        for seed, value in enumerate(variants["full"]):
            i = fx.run(exp, seed, seed=seed, method="importance")
            fx.step(i, 0, "id", value)
            fx.step(i, 1, "id", value - 0.02)
            for variant, values in variants.items():
                if variant != "full":
                    fx.step(i, 1, "id", values[seed], variant=variant)
            if exp == "s-no-random":  # head masks of one pruning seed: claim 6 has not enough data
                fx.heads(i, 1, set(HEADS[:6]))
    for ps, id_value in enumerate(HC["id"]):
        i = fx.run(
            "hc", ps, seed=0, prune_seed=42 + ps, method="l0", x_axis="target", keep=("margin", 0.03), ft="ft-hc"
        )
        fx.step(i, 0, "id", 0.82, sparsity=0.0)
        fx.step(i, 1, "id", id_value, sparsity=0.5)
        for subcase in (LO_NE, SUB_NE, CON_NE, LO_E, CN_FEW, SN_FEW):
            full, subnetworks = HC[subcase]
            n = HC_EXAMPLES.get(subcase, 1000)  # HANS's 1,000 examples a subcase
            fx.step(i, 0, HANS, full, subcase=subcase, sparsity=0.0, n=n)
            fx.step(i, 1, HANS, subnetworks[ps], subcase=subcase, sparsity=0.5, n=n)
        fx.heads(i, 1, HC["masks"][ps])
    for ps, id_value in enumerate(HC_SMALL["id"]):
        i = fx.run("hc-small", ps, seed=0, prune_seed=ps, method="l0", x_axis="target", keep=("margin", 0.1), ft="ft-s")
        fx.step(i, 0, "id", 0.80, sparsity=0.0)
        fx.step(i, 1, "id", id_value, sparsity=0.25)
        for subcase, full, sub in ((LO_NE, 0.20, 0.20 + 0.1 * ps), (LO_E, 0.30, 0.30)):
            fx.step(i, 0, HANS, full, subcase=subcase, sparsity=0.0)
            fx.step(i, 1, HANS, sub, subcase=subcase, sparsity=0.25)
        for eval_set, (ent, non_ent) in FEW_EXAMPLES.items():  # the full model only, 10 examples a subcase
            fx.step(i, 0, eval_set, ent, subcase=LO_E, sparsity=0.0, n=10)
            fx.step(i, 0, eval_set, non_ent, subcase=LO_NE, sparsity=0.0, n=10)
        fx.heads(i, 1, HC_SMALL["masks"][ps])
    # lexical-overlap non-entailment only: one-shot magnitude (no lottery claim applies)
    i = fx.run("ne-only", 0, seed=0, method="magnitude", x_axis="strength")
    fx.step(i, 0, "id", 0.8)
    fx.step(i, 1, "id", 0.78)
    fx.step(i, 0, HANS, 0.25, subcase=LO_NE)
    fx.step(i, 1, HANS, 0.30, subcase=LO_NE)
    for exp, diagonal in CKA.items():  # every step passes (keep_ratio 0): the last is kept
        i = fx.run(exp, 0, seed=0, method="magnitude", keep=("ratio", 0.0), final_step=2)
        for step in range(3):
            fx.step(i, step, "id", 0.8 - 0.05 * step, selected=step == 2)
            fx.diagonal(i, step, [1.0] * 5 if step == 0 else diagonal)
    return fx.write(tmp)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return build_findings_fixture(tmp_path_factory.mktemp("findings"))


@pytest.fixture(scope="module")
def wh(files):
    with Warehouse(Sources(files=files)) as w:
        yield w


@pytest.fixture(scope="module")
def findings(wh):
    return wh.named_rows("SELECT * FROM findings")


def one(findings, claim_no, experiment, scope=None):
    (row,) = [r for r in findings if (r["claim_no"], r["experiment"]) == (claim_no, experiment) and r["scope"] == scope]
    return row


def f3(x: float) -> str:
    return f"{x:.3f}"


def test_the_view_is_the_union_of_one_file_per_claim_with_the_same_columns(wh, findings):
    assert findings_names() == [
        "lottery_m_pruning",
        "lottery_s_pruning",
        "lottery_bad",
        "heuristic_core_id_ood",
        "heuristic_core_lexical_overlap",
        "heuristic_core_shared_core",
        "cka_early_layers",
    ]
    cols, _ = wh.query("SELECT * FROM findings")
    assert tuple(cols) == FINDINGS_COLUMNS
    for no, name in enumerate(findings_names(), 1):
        text = load_finding(name)
        assert text.startswith(f"-- Finding {no},")
        assert re.search(r"^WITH params AS \(", text, flags=re.M), name  # thresholds named at the top
        # each file runs on its own (as `subnets query --file` runs it), with the view's columns and its own path
        ((file_cols, rows),) = wh.statements(text)
        assert tuple(file_cols) == FINDINGS_COLUMNS, name
        assert rows and {r[-1] for r in rows} == {f"reports/sql/findings/{name}.sql"}
        assert {r[0] for r in rows} == {no}
        assert sorted(rows, key=repr) == sorted((tuple(r.values()) for r in findings if r["claim_no"] == no), key=repr)
    assert {r["verdict"] for r in findings} <= set(VERDICTS)
    assert [r["claim_no"] for r in findings] == sorted(r["claim_no"] for r in findings)


def test_the_view_is_made_when_a_statement_first_names_it(files):
    """Binding the view costs more than loading a small store, so a warehouse makes it only for a query that reads
    it: by any spelling, in any statement of a script."""

    def relations(w):
        return {r[0] for r in w.con.execute("SELECT table_name FROM information_schema.tables").fetchall()}

    with Warehouse(Sources(files=files)) as w:
        assert w.query("SELECT count(*) FROM runs")[1][0][0] > 0 and "findings" not in relations(w)
        first, second = w.statements("SELECT 1; SELECT count(*) FROM Findings")
        assert first == (["1"], [(1,)]) and second[1][0][0] > 0 and "findings" in relations(w)
        assert w.query("SELECT count(*) FROM findings") == second  # made once
    with Warehouse(Sources(files=files)) as w:
        assert w.named_rows('SELECT DISTINCT claim_no FROM "findings" ORDER BY 1') == [
            {"claim_no": no} for no in range(1, 8)
        ]


def test_every_claim_has_every_verdict(findings):
    assert {(r["claim_no"], r["verdict"]) for r in findings} == {(c, v) for c in range(1, 8) for v in VERDICTS}


def test_which_experiments_each_claim_is_checked_on(findings):
    def checked(no):
        return sorted({r["experiment"] for r in findings if r["claim_no"] == no})

    assert checked(1) == sorted(M_PRUNING)  # magnitude with a keep rule; not the one-shot or the CKA runs
    assert checked(2) == sorted(S_PRUNING)
    assert checked(3) == sorted(M_PRUNING) + sorted(S_PRUNING)
    assert checked(4) == ["hc", "hc-small", "ne-only"]  # OOD sets with non-entailment subcases
    assert checked(5) == ["hc", "hc-small", "ne-only"]
    assert checked(6) == ["hc", "hc-small", "s-no-random"]  # head masks logged
    assert checked(7) == sorted(CKA)


def test_claim_1_m_pruned_good_subnetworks_reach_the_full_model(findings):
    full, good = M_PRUNING["m-holds"]
    row = one(findings, 1, "m-holds")
    assert row["verdict"] == "holds" and row["n"] == 3 and row["seeds"] == "seeds 0, 1, 2"
    assert row["numbers"] == (
        f"accuracy in domain: good subnetworks re-fine-tuned {f3(statistics.mean(good))} ± "
        f"{f3(statistics.stdev(good))} (n=3, 10.0% sparse) vs full model 0.800 ± 0.020 (n=3 fine-tuned models)"
    )
    assert row["why"] == "the re-fine-tuned mean 0.792 is within the spread: >= 0.800 - 1.0 SD (0.020) = 0.780"
    assert row["sql_file"] == "reports/sql/findings/lottery_m_pruning.sql"

    row = one(findings, 1, "m-fails")
    assert row["verdict"] == "does not hold" and row["n"] == 3
    assert row["numbers"] == (
        "accuracy in domain: good subnetworks re-fine-tuned 0.710 ± 0.010 (n=3, 10.0% sparse) vs full model "
        "0.800 ± 0.010 (n=3 fine-tuned models)"
    )
    assert row["why"] == (
        "the re-fine-tuned mean 0.710 is 0.090 below the full model's 0.800, outside the spread over seeds: "
        "< 0.800 - 1.0 SD (0.010) = 0.790"
    )

    row = one(findings, 1, "m-no-retrain")
    assert (row["verdict"], row["n"], row["seeds"]) == ("not enough data", 0, "seeds 0, 1")
    assert row["numbers"] == "accuracy in domain: full model 0.805 ± 0.007 (n=2 fine-tuned models)"
    assert row["why"] == "no re-fine-tuned good subnetwork was logged (declare prune.retrain = true)"

    row = one(findings, 1, "m-one-seed")
    assert row["verdict"] == "not enough data"
    assert row["why"] == (
        "the re-fine-tuned subnetworks average 0.750, below the full model's 0.800; whether that is within the "
        "spread over seeds needs at least 2 fine-tuned models (seeds), and 1 was logged"
    )


def test_claim_2_good_and_random_re_fine_tuned_come_close(findings):
    row = one(findings, 2, "s-holds")
    assert (row["verdict"], row["n"], row["seeds"]) == ("holds", 2, "seeds 0, 1")
    assert row["numbers"] == (
        "accuracy in domain: good re-fine-tuned 0.770 ± 0.014 (n=2), random re-fine-tuned 0.745 ± 0.007 (n=2), "
        "10.0% sparse; full model 0.800 ± 0.000 (n=2 fine-tuned models)"
    )
    assert row["why"] == (
        "good (0.770) and random (0.745) re-fine-tuned both reach 0.9 x the full model's 0.800 = 0.720"
    )
    row = one(findings, 2, "s-random-fails")
    assert row["verdict"] == "does not hold"
    assert row["why"] == "the random ones re-fine-tuned reach 0.610, below 0.9 x the full model's 0.800 = 0.720"
    row = one(findings, 2, "s-good-fails")  # the random one is missing, but the good one already fails
    assert row["verdict"] == "does not hold"
    assert row["why"] == "the good subnetworks re-fine-tuned reach 0.500, below 0.9 x the full model's 0.800 = 0.720"
    row = one(findings, 2, "s-no-random")
    assert (row["verdict"], row["n"], row["seeds"]) == ("not enough data", 1, "seed 0")
    assert row["why"] == (
        'no re-fine-tuned random subnetwork was logged (declare prune.controls = ["random", "bad"] and '
        "prune.retrain = true)"
    )


def test_claim_3_bad_subnetworks_are_worse_than_random(findings):
    row = one(findings, 3, "s-holds")
    assert row["verdict"] == "holds"
    assert row["numbers"] == (
        "accuracy in domain at the kept step (10.0% sparse): pruned: bad 0.310 ± 0.014 (n=2) vs random "
        "0.510 ± 0.014 (n=2); re-fine-tuned: bad 0.610 ± 0.014 (n=2) vs random 0.745 ± 0.007 (n=2)"
    )
    assert row["why"] == "bad below random by at least 0.01: pruned by 0.200, re-fine-tuned by 0.135"
    row = one(findings, 3, "s-random-fails")  # decided by the pruned pair, the re-fine-tuned one not logged
    assert row["verdict"] == "does not hold"
    assert row["why"] == (
        "pruned, the bad subnetworks (0.550) are not worse than the random ones (0.500) by 0.01: the gap is -0.050"
    )
    row = one(findings, 3, "s-good-fails")
    assert row["verdict"] == "not enough data"
    assert row["why"].startswith("no re-fine-tuned bad and random pair was logged") and row["why"].endswith(
        "; the other pair is worse, as claimed"
    )
    for exp in [*M_PRUNING, "s-no-random"]:
        row = one(findings, 3, exp)
        assert (row["verdict"], row["n"], row["seeds"]) == ("not enough data", 0, None), exp
        assert row["numbers"] == "score in domain: no control was logged at the kept step"
        assert row["why"] == (
            'no bad and random pair was logged (declare prune.controls = ["random", "bad"]; prune.retrain = true '
            "re-fine-tunes them)"
        )


def range_noise(values: list[float], n: int, p: float | None = None) -> float:
    """The peer of the findings' accuracy_range_noise: scipy's 95% quantile of the range of len(values) standard
    normals (the studentized range, infinite degrees of freedom) x the SD of one accuracy over n examples."""
    p = noise_p(statistics.mean(values) if p is None else p, n)
    return float(studentized_range.ppf(0.95, len(values), math.inf)) * math.sqrt(p * (1 - p) / n)


def noise_p(p: float, n: int) -> float:
    """The accuracy the noise is taken at: one more right and one more wrong answer."""
    return (p * n + 1) / (n + 2)


def difference_noise(p1: float, n1: int, p2: float, n2: int) -> float:
    p1, p2 = noise_p(p1, n1), noise_p(p2, n2)
    return 1.96 * math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)


def test_the_noise_bound_is_where_equally_accurate_subnetworks_range_in_95_percent_of_evaluations(wh):
    """range_q95 (reports/sql/findings/_macros.sql) against scipy's studentized range; then, simulated, k equally
    accurate subnetworks with independent errors on n examples: their accuracies' range exceeds the bound the
    findings use (at the mean accuracy seen) in about 5% of 20,000 evaluations."""

    def sql(expr: str):
        return wh.named_rows(f"SELECT {expr} AS v")[0]["v"]

    for k in range(2, 51):
        assert sql(f"range_q95({k})") == pytest.approx(studentized_range.ppf(0.95, k, math.inf), abs=5e-4), k
    assert sql("range_q95(1)") is None and sql("range_q95(80)") == sql("range_q95(50)")
    assert sql("noise_p(0.3, 200)") == pytest.approx(61 / 202) and sql("noise_p(0.0, 100)") == pytest.approx(1 / 102)
    shrunk = noise_p(0.3, 200)
    assert sql("accuracy_range_noise(4, 0.3, 200)") == pytest.approx(3.633 * math.sqrt(shrunk * (1 - shrunk) / 200))
    assert sql("difference_noise(0.6, 10, 0.3, 10)") == pytest.approx(difference_noise(0.6, 10, 0.3, 10))
    rng = np.random.default_rng(0)
    # (k, n, p): the share of evaluations beyond the bound; at accuracies near 0 (or 1) the shrunk p errs toward noise
    for k, n, p, share in [
        (4, 200, 0.3, (0.035, 0.065)),
        (12, 1000, 0.2, (0.035, 0.065)),
        (3, 100, 0.5, (0.035, 0.065)),
        (6, 50, 0.1, (0.01, 0.05)),
    ]:
        acc = rng.binomial(n, p, size=(20_000, k)) / n
        shrunk = (acc.mean(axis=1) * n + 1) / (n + 2)
        bound = sql(f"range_q95({k})") * np.sqrt(shrunk * (1 - shrunk) / n)
        assert share[0] <= ((acc.max(axis=1) - acc.min(axis=1)) > bound).mean() <= share[1], (k, n, p)


def test_claim_4_equal_id_subnetworks_differ_ood(findings):
    seeds = "seed 0; pruning seeds 42, 43, 44, 45"
    row = one(findings, 4, "hc", f"{HANS} · {LO_NE}")
    assert (row["verdict"], row["n"], row["seeds"]) == ("holds", 4, seeds)
    noise = range_noise(HC[LO_NE][1], 1000)  # 0.048
    assert row["numbers"] == (
        "4 subnetworks within ID accuracy 0.800-0.809 (50.0% sparse; of 4 scored): "
        f"lexical_overlap/non_entailment accuracy 0.050-0.400 on 1000 examples, spread 0.350 (sampling noise up to "
        f"{f3(noise)}); full model 0.200"
    )
    assert row["why"] == (
        f"an OOD spread of 0.350 among 4 subnetworks within 1 point ID (wide: >= 0.10; beyond the {f3(noise)} that "
        "sampling noise reaches)"
    )
    row = one(findings, 4, "hc", f"{HANS} · {SUB_NE}")
    assert row["verdict"] == "does not hold"  # 1,000 examples show a spread of 0.10: noise reaches 0.057 at 0.5
    assert range_noise(HC[SUB_NE][1], 1000, p=0.5) < 0.10
    assert row["why"] == (
        "the widest OOD spread among 4 subnetworks within 1 point ID is 0.050, below 0.10, while the full model "
        "scores 0.300"
    )
    row = one(findings, 4, "hc", f"{HANS} · {CN_FEW}")  # wide, but 20 examples: within the noise
    noise = range_noise(HC[CN_FEW][1], 20)
    assert (row["verdict"], f3(noise)) == ("not enough data", "0.378")
    assert "accuracy 0.200-0.400 on 20 examples, spread 0.200 (sampling noise up to 0.378)" in row["numbers"]
    assert row["why"] == (
        "an OOD spread of 0.200 among 4 subnetworks within 1 point ID is within sampling noise: equally accurate "
        "subnetworks on 20 examples range up to 0.378 (95%); a larger OOD set decides it"
    )
    row = one(findings, 4, "hc", f"{HANS} · {SN_FEW}")  # narrow, but 50 examples could not show a wide one
    assert (row["verdict"], f3(range_noise(HC[SN_FEW][1], 50, p=0.5))) == ("not enough data", "0.257")
    assert row["why"] == (
        "the widest OOD spread among 4 subnetworks within 1 point ID is 0.040, but 50 examples cannot tell a spread "
        "of 0.10 from sampling noise (up to 0.257 at accuracy 0.5); a larger OOD set decides it"
    )
    row = one(findings, 4, "hc", f"{HANS} · {CON_NE}")  # never "does not hold"
    assert row["verdict"] == "not enough data"
    assert row["why"] == (
        "the full model does not generalize on this subcase (0.030 < 0.10), so no subnetwork has any "
        "generalization left to lose"
    )
    assert not [r for r in findings if r["claim_no"] == 4 and r["scope"] and "/entailment" in r["scope"]]
    row = one(findings, 4, "hc-small", f"{HANS} · {LO_NE}")
    assert (row["verdict"], row["n"]) == ("not enough data", 1)
    assert row["why"] == (
        "at most 1 subnetworks lie within 1 point of each other ID; a spread needs 3 (more pruning seeds at one "
        "sparsity: prune_seeds)"
    )
    assert one(findings, 4, "ne-only", f"{HANS} · {LO_NE}")["verdict"] == "not enough data"


def test_claim_5_the_full_model_follows_lexical_overlap(findings):
    row = one(findings, 5, "hc", HANS)
    assert (row["verdict"], row["n"], row["seeds"]) == ("holds", 1, "seed 0")
    noise = difference_noise(0.95, 1000, 0.20, 1000)  # 1.96 x the SD of a difference of two accuracies
    assert row["numbers"] == (
        "full model, hans lexical overlap (accuracy): entailment 0.950, non-entailment 0.200, gap 0.750 "
        f"(n=1 fine-tuned model; sampling noise up to {f3(noise)} on 1000 and 1000 examples)"
    )
    assert row["why"] == f"entailment is 0.750 above non-entailment (far: >= 0.20; beyond the {f3(noise)} that " + (
        "sampling noise reaches)"
    )
    row = one(findings, 5, "hc-small", HANS)
    assert row["verdict"] == "does not hold"  # on 100 examples a label: noise reaches 0.139 at 0.5, below 0.20
    assert row["why"] == (
        "entailment is only 0.100 above non-entailment (far: >= 0.20): the full model does not follow the "
        "lexical-overlap heuristic here"
    )
    row = one(findings, 5, "ne-only", HANS)
    assert (row["verdict"], row["why"]) == ("not enough data", "no lexical-overlap entailment subcase was scored")
    row = one(findings, 5, "hc-small", "hans_few")
    noise = difference_noise(0.60, 10, 0.30, 10)
    assert (row["verdict"], f3(noise)) == ("not enough data", "0.423")
    assert row["why"] == (
        "a gap of 0.300 is within sampling noise: equally accurate labels on 10 and 10 examples differ by up to "
        "0.423 (95%); a larger OOD set decides it"
    )
    row = one(findings, 5, "hc-small", "hans_tied")
    assert row["verdict"] == "not enough data"
    assert row["why"] == (
        "a gap of 0.050, but 10 and 10 examples cannot tell a gap of 0.20 from sampling noise (up to 0.438 at "
        "accuracy 0.5); a larger OOD set decides it"
    )


def test_claim_6_a_core_of_heads_shared_by_every_pruning_seed(findings):
    row = one(findings, 6, "hc", "fine-tuned model seed 0")
    assert (row["verdict"], row["n"], row["seeds"]) == ("holds", 4, "seed 0; pruning seeds 42, 43, 44, 45")
    assert row["numbers"].startswith(
        "4 smallest holding subnetworks, one per pruning seed (50.0% of units removed; 4 of 8 heads kept): "
        "2 heads kept by all (L0H0 L0H1) vs 0.50 expected of random masks of the same sizes; mean pairwise Jaccard "
    )
    masks = HC["masks"]
    pairs = [(a, b) for k, a in enumerate(masks) for b in masks[k + 1 :]]
    jaccard = statistics.mean(len(a & b) / len(a | b) for a, b in pairs)
    random_jaccard = 2 / (4 + 4 - 2)  # expected shared 4 x 4 / 8 = 2
    assert row["numbers"].endswith(f"{f3(jaccard)} vs {f3(random_jaccard)} random")
    assert row["why"] == "a core of 2 heads, >= 2.0 x the 0.50 random masks of the same sizes would share"

    row = one(findings, 6, "hc-small", "fine-tuned model seed 0")
    assert (row["verdict"], row["n"]) == ("does not hold", 3)
    assert "2 heads kept by all (L0H0 L0H1) vs 3.38 expected" in row["numbers"]  # 8 x 0.75^3
    assert row["why"] == (
        "the 2 heads kept by every pruning seed are fewer than 2.0 x the 3.38 random masks of the same sizes "
        "would share"
    )
    row = one(findings, 6, "s-no-random", "fine-tuned model seed 0")
    assert (row["verdict"], row["n"]) == ("not enough data", 1)
    assert row["why"] == (
        "at most 1 pruning seed of one fine-tuned model reached a holding subnetwork; a core kept by every seed "
        "needs 3 (declare prune_seeds)"
    )


def test_claim_7_the_cka_diagonal_falls_with_depth(findings):
    scope = "layer_output, mean, linear"
    row = one(findings, 7, "cka-falls", scope)
    assert (row["verdict"], row["n"], row["seeds"]) == ("holds", 1, "seed 0")
    assert row["numbers"] == (
        "CKA diagonal at the kept step (20.0% sparse; mean over 1 run), by layer L1 0.950, L2 0.900, L3 0.700, "
        "L4 0.500; Spearman rho(layer, CKA) = -1.00"
    )
    assert row["why"] == "CKA falls with depth: rho -1.00 <= -0.5"
    row = one(findings, 7, "cka-rises", scope)
    assert row["verdict"] == "does not hold" and row["numbers"].endswith("rho(layer, CKA) = 1.00")
    row = one(findings, 7, "cka-flat", scope)
    assert row["verdict"] == "not enough data"
    assert row["why"] == (
        "the diagonal is flat (every layer 1.000): pruning at the kept step has not told the layers apart"
    )


def test_with_nothing_to_check_each_claim_says_what_would_decide_it(tmp_path):
    """An experiment no claim applies to (one-shot attribution, in domain only): one row per claim, no experiment,
    not enough data, naming the experiment that would decide it."""
    fx = Fixture()
    i = fx.run("bare", 0, seed=0, method="attribution", x_axis="strength")
    fx.step(i, 0, "id", 0.8)
    fx.step(i, 1, "id", 0.7)
    with Warehouse(Sources(files=fx.write(tmp_path))) as w:
        rows = w.named_rows("SELECT * FROM findings")
    assert [(r["claim_no"], r["experiment"], r["verdict"], r["n"]) for r in rows] == [
        (no, None, "not enough data", 0) for no in range(1, 8)
    ]
    assert "studies/lottery.toml" in rows[0]["why"] and "[experiment.cka]" in rows[6]["why"]


def test_the_report_opens_with_the_findings(wh, findings):
    html = build.render_report(wh, "sqlite:////x/mlflow.db")
    body = html[html.index("<body>") :]
    first = body.index("<section")
    assert body[first:].startswith('<section id="findings">\n<h2>Findings</h2>')
    nav = body[body.index("<nav>") : body.index("</nav>")]
    assert first < body.index("<nav>") and nav.index('href="#findings"') < nav.index('href="#exp-')
    section = body[first : body.index("</section>", first)]
    assert section.count("<tr class=") == len(findings)
    for verdict in VERDICTS:
        cls = verdict.replace(" ", "-")
        assert f'<td class="text verdict {cls}">{verdict}<span class="why">' in section
    counts = {v: sum(r["verdict"] == v for r in findings) for v in VERDICTS}
    assert (
        f"{counts['holds']} hold,\n{counts['does not hold']} do not hold,\n"
        f"{counts['not enough data']} have not enough data."
    ) in section
    # a finding that does not hold says so with its numbers; each names its SQL file and links its experiment
    assert "the re-fine-tuned mean 0.710 is 0.090 below the full model&#39;s 0.800" in section
    assert section.count("reports/sql/findings/") == len({r["sql_file"] for r in findings}) == 7  # once per claim
    assert '<a href="#exp-m-fails">m-fails</a>' in section


def test_hans_fine_grained_subcases_are_classified_by_label_and_heuristic(tmp_path):
    """HANS per fine-grained subcase and label (`subcase = ["subcase", "gold_label"]`): the non-entailment subcases
    get a row each for claim 4; lexical overlap (ln_/le_) alone counts for claim 5."""
    scores = {  # subcase: (full model, the subnetwork)
        "ln_subject/object_swap/non-entailment": (0.05, 0.04),
        "ln_preposition/non-entailment": (0.15, 0.10),
        "le_relative_clause/entailment": (0.97, 0.96),
        "sn_NP/S/non-entailment": (0.20, 0.30),
        "se_PP_on_obj/entailment": (0.99, 0.99),
        "cn_embedded_under_if/non-entailment": (0.40, 0.45),
    }
    fx = Fixture()
    i = fx.run("fine", 0, seed=0, method="l0", x_axis="target", keep=("margin", 0.03))
    fx.step(i, 0, "id", 0.8, sparsity=0.0)
    fx.step(i, 1, "id", 0.79, sparsity=0.5)
    for subcase, (full, sub) in scores.items():
        fx.step(i, 0, HANS, full, subcase=subcase, sparsity=0.0)
        fx.step(i, 1, HANS, sub, subcase=subcase, sparsity=0.5)
    with Warehouse(Sources(files=fx.write(tmp_path))) as w:
        rows = w.named_rows("SELECT * FROM findings WHERE experiment = 'fine'")
    claim_4 = {r["scope"]: r["verdict"] for r in rows if r["claim_no"] == 4}
    assert claim_4 == {
        f"{HANS} · ln_subject/object_swap/non-entailment": "not enough data",  # the full model: 0.05
        f"{HANS} · ln_preposition/non-entailment": "not enough data",  # one subnetwork, no window of 3
        f"{HANS} · sn_NP/S/non-entailment": "not enough data",
        f"{HANS} · cn_embedded_under_if/non-entailment": "not enough data",
    }
    (claim_5,) = [r for r in rows if r["claim_no"] == 5]
    assert claim_5["verdict"] == "holds"  # 0.97 entailment vs (0.05 + 0.15) / 2 non-entailment
    assert "entailment 0.970, non-entailment 0.100, gap 0.870" in claim_5["numbers"]
