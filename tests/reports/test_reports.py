"""Tests of reports/: the DuckDB warehouse over MLflow-logged Parquet tables, SQL, SVG and HTML."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

import pytest

from registry.runindex import local_artifact_path
from reports import build, svg
from reports.warehouse import TABLES, open_warehouse, query
from runners.tracking.tables import write_table

EXP_A = "nli-magnitude"
EXP_B = "b<&>"  # a name that must be escaped everywhere it is printed

# Known accuracies: ACC[seed][(eval_set, subcase)] = values at steps 0, 1, 2.
SPARSITY = [0.0, 0.1, 0.19]
ACC = {
    0: {
        ("id", "all"): [0.90, 0.88, 0.80],
        ("hans", "all"): [0.52, 0.5512, 0.60],
        ("hans", "lexical_overlap/entailment"): [0.95, 0.90, 0.85],
        ("hans", "lexical_overlap/non_entailment"): [0.09, 0.20, 0.35],
    },
    1: {
        ("id", "all"): [0.92, 0.86, 0.84],
        ("hans", "all"): [0.50, 0.57, 0.6434],
        ("hans", "lexical_overlap/entailment"): [0.97, 0.93, 0.80],
        ("hans", "lexical_overlap/non_entailment"): [0.03, 0.21, 0.48],
    },
}
SELECTED = {0: 1, 1: 2}  # the step whose mask each seed's run kept


def cka_value(seed: int, step: int, base: int, pruned: int) -> float:
    off_diagonal = 0.05 * (base != pruned)
    return round(1.0 - 0.1 * step * (1 + abs(base - pruned)) - 0.01 * seed - off_diagonal, 4)


def write_tables(directory: Path, tables: dict[str, list[dict]]) -> None:
    """Through the results contract, as runners write them (a column it lacks fails here)."""
    for name, rows in tables.items():
        write_table(directory, name, rows)


def make_tables(
    exp: str,
    run_id: str,
    fp: str,
    seed: int,
    method: str,
    acc: dict,
    selected: int,
    variants=("pruned",),
    cka: bool = False,
    units: bool = False,
):
    # the seeds of one configuration share a group fingerprint
    ident = dict(
        experiment=exp,
        run_id=run_id,
        fingerprint=fp,
        group_id=f"group-{exp}-{method}",
        seed=seed,
        prune_seed=seed,
        method=method,
    )
    config = {"method": method, "lr": 2e-5, "seed": seed, "data": {"seed": seed}}
    run = [
        dict(
            ident,
            label=f"seed={seed}",
            model="tiny-bert",
            task="synthetic-nli",
            description=f"{exp} <desc> & more",
            config_json=json.dumps(config, sort_keys=True),
            git_sha="abc123",
            started_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
            duration_s=12.5,
            baseline_id_accuracy=acc[("id", "all")][0],
            final_step=selected,
            keep_rule="ratio",
            keep_threshold=0.9,
            final_sparsity=SPARSITY[selected],
        )
    ]
    steps = []
    for variant in variants:
        for (eval_set, subcase), values in acc.items():
            for step, value in enumerate(values):
                if variant != "pruned" and step not in (0, selected):
                    continue
                steps.append(
                    dict(
                        ident,
                        variant=variant,
                        step=step,
                        sparsity=SPARSITY[step],
                        unit_sparsity=None,
                        eval_set=eval_set,
                        kind="id" if eval_set == "id" else "ood",
                        subcase=subcase,
                        metric="accuracy",
                        # retraining changes the selected step, not the full model
                        value=value + 0.01 * (variant != "pruned" and step > 0),
                        n=100,
                        selected=step == selected,
                    )
                )
    tables = {"runs": run, "steps": steps}
    if units:
        tables["units"] = [
            dict(
                ident, variant="pruned", step=1, layer=layer, unit_kind="head", unit_index=h, kept=h != 0, score=0.1 * h
            )
            for layer in range(2)
            for h in range(3)
        ]
    if cka:
        tables["cka"] = [
            dict(
                ident,
                variant="pruned",
                step=step,
                sparsity=SPARSITY[step],
                representation="hidden",
                pooling="cls",
                estimator="linear",
                layer_base=b,
                layer_pruned=p,
                # one degenerate cell: seed 1's layer 0 at its selected step
                degenerate=(seed, step, b, p) == (1, 2, 0, 0),
                value=(float("nan") if (seed, step, b, p) == (1, 2, 0, 0) else cka_value(seed, step, b, p)),
            )
            for step in range(3)
            for b in range(3)
            for p in range(3)
        ]
    return tables


def add_run(
    client,
    tmp: Path,
    exp_id: str,
    exp: str,
    seed: int,
    fp: str,
    method: str,
    acc: dict,
    selected: int,
    status: str | None = "FINISHED",
    start: int = 1000,
    **kw,
) -> str:
    run = client.create_run(
        exp_id,
        start_time=start,
        tags={
            "subnets.kind": "run",
            "subnets.fingerprint": fp,
            "subnets.experiment": exp,
            "subnets.method": method,
            "subnets.seed": str(seed),
        },
    )
    rid = run.info.run_id
    local = tmp / "staging" / rid
    write_tables(local, make_tables(exp, rid, fp, seed, method, acc, selected, **kw))
    client.log_artifacts(rid, str(local), artifact_path="tables")
    if status:
        client.set_terminated(rid, status=status)
    return rid


def shifted(acc: dict, value: float) -> dict:
    return {k: [value] * len(v) for k, v in acc.items()}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from tests.helpers import mlflow_client

    tmp = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = mlflow_client(tmp / "mlflow.db")
    client.search_experiments()  # creates the schema; keep a copy as the empty store
    shutil.copy(tmp / "mlflow.db", tmp / "empty.db")

    a = client.create_experiment(EXP_A, artifact_location=(tmp / "art a").as_uri())
    ids = {}
    for seed in (0, 1):
        ids[seed] = add_run(
            client,
            tmp,
            a,
            EXP_A,
            seed,
            f"fa{seed}" + "0" * 14,
            "magnitude",
            ACC[seed],
            SELECTED[seed],
            cka=True,
            units=seed == 0,
        )
    child = client.create_run(a, tags={"subnets.kind": "step", "mlflow.parentRunId": ids[0]})
    client.set_terminated(child.info.run_id, "FINISHED")
    # Unfinished runs, whose tables must never reach the warehouse.
    add_run(client, tmp, a, EXP_A, 2, "fa2" + "0" * 14, "magnitude", shifted(ACC[0], 0.1111), 1, status=None)
    add_run(client, tmp, a, EXP_A, 3, "fa3" + "0" * 14, "magnitude", shifted(ACC[0], 0.2222), 1, status="FAILED")

    b = client.create_experiment(EXP_B, artifact_location=str(tmp / "art_b"))
    acc_b = {("id", "all"): [0.81, 0.7723, 0.70], ("paws", "all"): [0.40, 0.4321, 0.45]}
    # An older finished run of the same fingerprint: superseded by the newer one, not counted.
    add_run(client, tmp, b, EXP_B, 0, "fb0" + "0" * 14, "s-pruning", shifted(acc_b, 0.3333), 1, start=500)
    ids["b"] = add_run(
        client, tmp, b, EXP_B, 0, "fb0" + "0" * 14, "s-pruning", acc_b, 1, start=2000, variants=("pruned", "retrained")
    )
    return {"uri": uri, "tmp": tmp, "ids": ids, "empty_uri": f"sqlite:///{tmp / 'empty.db'}"}


@pytest.fixture(scope="module")
def wh(store):
    with open_warehouse(store["uri"]) as w:
        yield w


def test_views_hold_finished_parent_runs_only(wh, store):
    cols, rows = wh.query("SELECT experiment, seed, run_id FROM runs ORDER BY experiment, seed")
    assert cols == ["experiment", "seed", "run_id"]
    assert rows == [(EXP_B, 0, store["ids"]["b"]), (EXP_A, 0, store["ids"][0]), (EXP_A, 1, store["ids"][1])]
    # 2 seeds x 4 (set, subcase) x 3 steps; b: pruned 2 x 3 + retrained 2 x 2
    assert wh.query("SELECT count(*) FROM steps")[1] == [(2 * 4 * 3 + 2 * 3 + 2 * 2,)]
    assert wh.query("SELECT count(*), count(DISTINCT run_id) FROM units")[1] == [(6, 1)]
    assert wh.query("SELECT count(*) FROM cka")[1] == [(2 * 3 * 9,)]
    # Values of unfinished (RUNNING, FAILED) and superseded runs never appear.
    assert wh.query("SELECT count(*) FROM steps WHERE round(value, 4) IN (0.1111, 0.2222, 0.3333) OR seed IN (2, 3)")[
        1
    ] == [(0,)]


def test_absent_table_is_an_empty_typed_view(wh):
    cols, rows = wh.query("SELECT * FROM axes")  # the fixture's runs log no grid axes
    assert rows == [] and cols == [c for c, _ in TABLES["axes"][1]]
    types = dict(wh.query("SELECT column_name, column_type FROM (DESCRIBE cka)")[1])
    assert types["layer_base"] == "BIGINT" and types["degenerate"] == "BOOLEAN"


def test_started_at_is_a_utc_timestamp(wh):
    assert wh.query("SELECT DISTINCT typeof(started_at) FROM runs")[1] == [("TIMESTAMP WITH TIME ZONE",)]
    # TIMESTAMPTZ values come back as aware datetimes (through Arrow: no pytz needed).
    ((when,),) = wh.query("SELECT min(started_at) FROM runs")[1]
    assert when == datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_seed_groups_ignore_seed_keys(wh):
    rows = wh.query(
        "SELECT experiment, count(DISTINCT group_key), any_value(group_label) "
        "FROM run_groups GROUP BY experiment ORDER BY experiment"
    )[1]
    assert rows == [(EXP_B, 1, "s-pruning"), (EXP_A, 1, "magnitude")]


def test_experiment_filter_and_query_helper(store):
    with open_warehouse(store["uri"], [EXP_B, "no-such-experiment"]) as w:
        assert w.query("SELECT DISTINCT experiment FROM steps")[1] == [(EXP_B,)]
    cols, rows = query(store["uri"], f"SELECT count(*) AS n FROM runs WHERE experiment = '{EXP_A}'")
    assert (cols, rows) == (["n"], [(2,)])


def test_report_html(store, tmp_path):
    out = build.build_report(store["uri"], tmp_path / "sub" / "report.html")
    html = out.read_text(encoding="utf-8")
    assert EXP_A in html and "b&lt;&amp;&gt;" in html and EXP_B not in html
    assert "nli-magnitude &lt;desc&gt; &amp; more" in html
    assert store["uri"] in html and "No finished runs" not in html
    # Runs table: full model, kept sparsity, kept ID and OOD accuracy (formatted query values).
    for text in ("0.900", "0.920", "10.0%", "19.0%", "0.880", "0.840", "0.551", "0.643", "0.432"):
        assert f"<td>{text}</td>" in html, text
    # Subcase table: non_entailment full 0.060 -> kept 0.340 (+0.280); hans all mean 0.597
    assert "<td>0.060</td><td>0.340</td>" in html and "+0.280" in html
    assert "0.597" in html
    # Charts. a: ID vs hans, vs each of its 2 subcases (3 scatters); score curves of the whole sets and of
    # hans by subcase (2); the CKA diagonal (1) and a heatmap per step (3). b: ID vs paws, one curve chart.
    assert html.count("<svg") == 11
    assert "0.870" in html  # a chart point: mean ID accuracy at step 1
    assert "magnitude · seed=0" in html and "[fa0000" not in html  # runs named by their label, not a hash
    for tag in re.findall(r"<svg.*?</svg>", html, flags=re.S):
        ET.fromstring(tag)  # each chart is well-formed XML
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", html, flags=re.I)
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # no temp file left


def test_report_for_one_experiment_without_cka(store, tmp_path):
    html = build.build_report(store["uri"], tmp_path / "r.html", [EXP_B]).read_text()
    assert html.count("<svg") == 2 and EXP_A not in html and "No CKA was logged" in html
    assert "paws" in html and "retrained" in html


def test_empty_store_renders(store, tmp_path):
    html = build.build_report(store["empty_uri"], tmp_path / "e.html").read_text()
    assert "No finished runs" in html and "<svg" not in html
    html = build.build_report(store["uri"], tmp_path / "f.html", ["missing"]).read_text()
    assert "No finished runs for this experiment" in html


def test_failed_render_keeps_old_report(store, tmp_path, monkeypatch):
    out = tmp_path / "report.html"
    out.write_text("old")

    def boom(*a, **k):
        raise RuntimeError("render failed")

    monkeypatch.setattr(build, "render_report", boom)
    with pytest.raises(RuntimeError):
        build.build_report(store["uri"], out)
    assert out.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_svg_escapes_text():
    name = 'a<&>"b'
    chart = svg.line_chart(
        [svg.Series(name, [(0.0, 0.5), (0.1, None), (0.2, 0.7)], lower=[0.4, None, 0.6], upper=[0.6, None, 0.8])],
        title=name,
        x_label=name,
        y_label=name,
    )
    assert "a&lt;&amp;&gt;&quot;b" in chart and name not in chart
    ET.fromstring(chart)
    hm = svg.heatmap([[0.5, None], [1.0, 0.0]], ["<r>", "r&1"], ["c0", "c1"], title=name)
    assert "&lt;r&gt;" in hm and "r&amp;1" in hm and "<r>" not in hm
    root = ET.fromstring(hm)
    fills = [r.get("fill") for r in root.iter("rect")]
    assert svg.color_for(1.0) in fills and svg.color_for(0.0) in fills and "#cccccc" in fills


def test_nice_ticks_and_colours():
    assert svg.nice_ticks(0.0, 0.19) == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    assert svg.nice_ticks(0.5, 0.5)[0] < 0.5 < svg.nice_ticks(0.5, 0.5)[-1]
    assert svg.color_for(0.0) == "#440154" and svg.color_for(1.0) == "#fde725"
    assert svg.color_for(2.0) == svg.color_for(1.0)  # clamped


def test_local_artifact_paths(tmp_path):
    d = tmp_path / "with space"
    d.mkdir()
    assert local_artifact_path(d.as_uri()) == d  # percent-encoded file URI
    assert local_artifact_path(f"file://{d}") == d  # MLflow's unencoded form
    assert local_artifact_path(str(d)) == d
    assert local_artifact_path("s3://bucket/x") is None


def test_effective_size_view(wh):
    """Per seed, the largest sparsity whose ID accuracy is >= 0.9 x the full model's: seed 0 holds at step 1
    only (0.88 >= 0.81, 0.80 < 0.81), seed 1 at both steps (0.84 >= 0.828)."""
    rows = {(r["seed"], r["eval_set"]): r for r in wh.named("effective_size_of", experiment=EXP_A)}
    assert rows[(0, "id")]["effective_size"] == pytest.approx(0.9) and rows[(0, "id")]["x"] is None
    assert rows[(1, "id")]["effective_size"] == pytest.approx(0.81)
    assert rows[(0, "id")]["found_by"] == "grid" and rows[(0, "id")]["subnetworks_evaluated"] == 2
    # hans: full 0.52, threshold 0.468; both steps hold for seed 0 (0.5512, 0.60)
    assert rows[(0, "hans")]["effective_size"] == pytest.approx(0.81)


def test_sqlite_reader_matches_the_mlflow_client(store):
    """A local store is read with sqlite3 (no MLflow import); it finds the runs the MLflow client finds: FINISHED
    parent runs tagged subnets.kind = run, newest per fingerprint, with their tags and artifact locations."""
    from registry.runindex import ClientRunIndex, LocalRunIndex

    client = ClientRunIndex(store["uri"])
    local = LocalRunIndex(Path(store["uri"].removeprefix("sqlite:///")))
    for names in (None, [EXP_B]):
        expected = client.finished_runs(names)
        assert local.finished_runs(names) == expected
        assert [r.artifact_uri for r in expected] == [
            client.client.get_run(r.run_id).info.artifact_uri for r in expected
        ]
    assert len(local.finished_runs(None)) == 3


def test_files_of_a_newer_contract_are_skipped(tmp_path):
    import pyarrow.parquet as pq

    from registry.results import RESULTS_VERSION, VERSION_KEY
    from reports.loading import newer_than_contract

    ours = write_table(tmp_path / "a", "axes", [dict(experiment="e", run_id="r", axis="seed", value="0", number=0.0)])
    table = pq.read_table(ours)
    newer = tmp_path / "b" / "axes.parquet"
    newer.parent.mkdir()
    pq.write_table(table.replace_schema_metadata({VERSION_KEY: str(RESULTS_VERSION + 1)}), newer)
    unstamped = tmp_path / "c.parquet"
    pq.write_table(table.replace_schema_metadata({}), unstamped)
    assert newer_than_contract([ours, newer, unstamped]) == {newer}
