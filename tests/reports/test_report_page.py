"""The report page: each section appears where the data has it and is absent with a short note where it does
not; every user-supplied string is escaped; the same data gives the same bytes; the report is logged to MLflow
without being counted as a run; and `subnets query` prints every statement, whole rows, csv/json/parquet, and
cannot write files."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from reports import build
from reports.warehouse import TABLES, Sources, Warehouse
from runners.tracking.tables import write_table
from tests.helpers import PROJECT_ROOT
from tests.reports.test_report_sql import build as build_tables

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _sections(html: str, experiment: str) -> str:
    start = html.index(f'<section id="{build.anchor(experiment)}">')
    return html[start : html.index("</section>", start)]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    files = build_tables(tmp_path_factory.mktemp("tables"))
    with Warehouse(
        Sources(
            files=files,
            tags=[("a1", "subnets.version.torch", "2.13.0"), ("a1", "subnets.machine", "x86_64, 2 cores, AMD EPYC")],
        )
    ) as wh:
        return build.render_report(wh, "sqlite:////store/mlflow.db")


def test_sections_present_where_the_data_has_them(page):
    a, c, d, e = (_sections(page, x) for x in "acde")
    # c: L0 with MCC, controls, units, OOD
    for heading in (
        "1. ID vs OOD",
        "2. Score against sparsity",
        "3. Effective size",
        "5. Unit survival",
        "6. Good, random and bad subnetworks",
        "7. Provenance",
    ):
        assert heading in c
    assert (
        "Super survivors</strong> (kept by every good subnetwork):\nlayer 0 head 0, layer 0 MLP, layer 1 head 0."
    ) in c
    assert "ID mcc" in c and "mcc vs sparsity" in c and "metric: mcc" in c
    assert '<td class="text">mcc</td>' in c and '<td class="text">accuracy</td>' not in c  # judged by MCC only
    assert "0.450 ± 0.071" in c and "l0 · prune_seed=0, seed=0: 0.400; l0 · prune_seed=1, seed=0: 0.500" in c
    assert "L0 sparsity missed its target" in c and "target 0.6 → 90.0%" in c
    assert "0.667" in c and "0.429" in c and "1 of 1" in c  # head Jaccard vs random, pairs above random
    assert "No CKA was logged" in c
    # a: CKA heatmaps per step and the diagonal; no units or controls
    # scatters (hans, hans lo/ne), curves, diagonal, a heatmap per step
    assert "4. CKA" in a and a.count("<svg") == 2 + 2 + 1 + 3
    assert "No unit masks for good subnetworks" in a and "No control or re-fine-tuned subnetworks" in a
    assert '<td class="text cap">cap</td>' in a and '<td class="text ">keep rule</td>' in a
    # d: the search's trials and front
    assert "Search trials and their Pareto front" in d and d.count(">on the front<") == 2 and "dominated" in d
    # e: ID only: every OOD/CKA/unit/control section says why it is empty
    assert "No OOD evaluation set was logged" in e and "No CKA was logged" in e and "No unit masks" in e
    assert "Pareto front" not in e
    # the comparison across a and c, which prune one fine-tuned model
    comparison = page[page.index('<section id="comparison">') :]
    assert "fine-tuned model <code>ft1</code>" in comparison and '<a href="#exp-c">c</a>' in comparison
    assert "0.792 [0.790, 0.795]" in comparison
    for svg in re.findall(r"<svg.*?</svg>", page, flags=re.S):
        ET.fromstring(svg)


def test_every_figure_names_its_query(page):
    named = set(re.findall(r"reports/sql/([a-z_]+)\.sql", page))
    assert {
        "runs",
        "id_vs_ood",
        "id_ood_spread",
        "accuracy_curves",
        "subcases",
        "effective_size_of",
        "pareto_front",
        "cka_steps",
        "cka_diagonal",
        "unit_survival",
        "unit_overlap",
        "controls",
        "provenance",
        "shared_models",
    } <= named
    assert "torch 2.13.0" in page and "digest-a1" in page  # provenance: versions (tags) and data digest
    machine_rows = re.findall(r'<th class="text">machine</th><td class="mono">([^<]*)</td>', page)
    # a1's machine, once; every other run recorded none
    assert machine_rows.count("x86_64, 2 cores, AMD EPYC") == 1 and machine_rows.count("not recorded") >= 1
    assert len(machine_rows) == machine_rows.count("not recorded") + 1


def test_the_same_data_gives_the_same_bytes(tmp_path):
    files = build_tables(tmp_path / "t")
    htmls = []
    for _ in range(2):
        with Warehouse(Sources(files={k: list(reversed(v)) for k, v in files.items()} if htmls else files)) as wh:
            htmls.append(build.render_report(wh, "sqlite:////x/mlflow.db"))
    assert htmls[0] == htmls[1]


def test_user_strings_are_escaped(tmp_path):
    i = dict(experiment="xss", run_id="r1", fingerprint="f1", group_id="g1", seed=0, prune_seed=0, method=XSS)
    write_table(
        tmp_path,
        "runs",
        [
            dict(
                i,
                label=f"seed=0, tag={XSS}",
                description=XSS,
                x_axis="step",
                model=XSS,
                task=XSS,
                config_json=json.dumps({"tags": {"note": XSS}}),
                git_sha=XSS,
                final_step=1,
                primary_metric=XSS,
                stop_reason=XSS,
                keep_rule="ratio",
                keep_threshold=0.9,
            )
        ],
    )
    write_table(
        tmp_path,
        "steps",
        [
            dict(
                i,
                variant="pruned",
                step=k,
                x=float(k),
                sparsity=0.1 * k,
                eval_set=e,
                kind="id" if e == "id" else "ood",
                subcase=sub,
                metric=XSS,
                value=0.5,
                n=1,
                passed=True,
                selected=k == 1,
            )
            for k in (0, 1)
            for e, sub in (("id", "all"), (XSS, "all"), (XSS, XSS))
        ],
    )
    write_table(tmp_path, "units", [dict(i, variant="pruned", step=1, layer=0, unit_kind=XSS, unit_index=0, kept=True)])
    files = {t: [] for t in TABLES}
    for t in ("runs", "steps", "units"):
        files[t].append(tmp_path / TABLES[t][0])
    with Warehouse(Sources(files=files)) as wh:
        html = build.render_report(wh, "sqlite:////x/mlflow.db")
    assert (
        "<script" not in html and "<img" not in html and "onerror=alert" not in html.replace("onerror=alert(1)&gt;", "")
    )
    assert (
        "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
        or "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    )
    for svg in re.findall(r"<svg.*?</svg>", html, flags=re.S):
        ET.fromstring(svg)  # escaped inside charts too (titles, legends, hover text)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A local MLflow store with the fixture runs of tests/reports/test_report_sql.py logged as finished runs."""
    from tests.helpers import mlflow_client

    tmp = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = mlflow_client(tmp / "mlflow.db")
    files = build_tables(tmp / "tables")
    by_run: dict[str, Path] = {}
    for paths in files.values():
        for p in paths:
            by_run[p.parent.name] = p.parent
    exps = {}
    for run_id, folder in sorted(by_run.items()):
        exp = run_id[0]
        if exp not in exps:
            exps[exp] = client.create_experiment(exp, artifact_location=(tmp / "art" / exp).as_uri())
        run = client.create_run(
            exps[exp],
            tags={"subnets.kind": "run", "subnets.fingerprint": f"fp-{run_id}", "subnets.version.torch": "2.13.0"},
        )
        client.log_artifacts(run.info.run_id, str(folder), artifact_path="tables")
        client.set_terminated(run.info.run_id, "FINISHED")
    return {"uri": uri, "tmp": tmp, "client": client}


def test_report_is_logged_to_mlflow_and_never_counted(store, tmp_path):
    from registry.runindex import LocalRunIndex

    out = build.build_report(store["uri"], tmp_path / "report.html", log_to_mlflow=True)
    build.build_report(store["uri"], tmp_path / "again.html", log_to_mlflow=True)  # reuses the report runs
    client = store["client"]
    for name in "acde":
        exp = client.get_experiment_by_name(name)
        reports = client.search_runs([exp.experiment_id], "tags.`subnets.kind` = 'report'")
        assert len(reports) == 1 and reports[0].info.status == "FINISHED"
        assert [a.path for a in client.list_artifacts(reports[0].info.run_id)] == ["report.html"]
        logged = Path(reports[0].info.artifact_uri.removeprefix("file://")) / "report.html"
        assert logged.read_bytes() == out.read_bytes()
    # the warehouse and `plan` (the run index's parent runs) count runs only
    from reports.warehouse import open_warehouse

    with open_warehouse(store["uri"]) as wh:
        assert wh.query("SELECT count(*) FROM runs")[1] == [(8,)]
    db = Path(store["uri"].removeprefix("sqlite:///"))
    assert len(LocalRunIndex(db).parent_runs("a")) == 2


def _cli(args, store):
    from typer.testing import CliRunner

    from registry.cli import app

    return CliRunner().invoke(app, ["query", *args, "--tracking-uri", store["uri"], "--store", str(store["tmp"])])


def test_query_prints_every_statement_and_whole_rows(store):
    wide = "x" * 150
    r = _cli(
        [
            f"SELECT count(*) AS n FROM runs; SELECT '{wide}' AS wide, experiment FROM runs WHERE run_id IN "
            "(SELECT min(run_id) FROM runs) ORDER BY 2"
        ],
        store,
    )
    assert r.exit_code == 0, r.output
    assert re.search(r"^n\s*$", r.output, flags=re.M) and re.search(r"^8\s*$", r.output, flags=re.M)
    assert wide in r.output  # not cut to 80 columns


def test_query_file_with_parameter_and_formats(store, tmp_path):
    sql = PROJECT_ROOT / "reports" / "sql" / "runs.sql"
    r = _cli(["--file", str(sql), "--param", "experiment=c", "--format", "json"], store)
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output.strip().splitlines()[-1])
    assert [(x["run_label"], x["metric"], x["kept_id_value"]) for x in rows] == [
        ("l0 · prune_seed=0, seed=0", "mcc", 0.79),
        ("l0 · prune_seed=1, seed=0", "mcc", 0.795),
    ]
    r = _cli(["--file", str(sql), "--param", "experiment=a", "--format", "csv"], store)
    assert r.exit_code == 0 and r.output.splitlines()[0].startswith("run_id,fingerprint_short,run_label")
    assert len(r.output.strip().splitlines()) == 3
    out = tmp_path / "r.parquet"
    r = _cli(["--file", str(sql), "-p", "experiment=a", "--format", "parquet", "--output", str(out)], store)
    import pyarrow.parquet as pq

    assert r.exit_code == 0 and pq.read_table(out).column("final_step").to_pylist() == [1, 2]
    r = _cli(["--file", str(sql)], store)  # the $experiment parameter not given
    assert r.exit_code == 2 and "--param experiment=" in r.output
    r = _cli(["SELECT 1", "--format", "parquet"], store)
    assert r.exit_code == 2 and "needs --output" in r.output


def test_query_cannot_touch_files(store, tmp_path):
    target = tmp_path / "leak.csv"
    for sql in (
        f"COPY runs TO '{target}'",
        f"ATTACH '{tmp_path / 'x.db'}' AS x",
        f"SELECT * FROM read_csv('{Path(store['uri'].removeprefix('sqlite:///'))}')",
        "SET enable_external_access = true",
    ):
        r = _cli([sql], store)
        assert r.exit_code == 2 and "query failed" in r.output, (sql, r.output)
    assert not target.exists() and not (tmp_path / "x.db").exists()
    r = _cli(["CREATE TEMP TABLE t AS SELECT 1 AS a; SELECT a FROM t"], store)  # memory only
    assert r.exit_code == 0 and re.search(r"^1\s*$", r.output, flags=re.M)


def test_a_finished_report_run_is_updated_without_importing_mlflow_or_writing_its_database(
    store, tmp_path, monkeypatch
):
    import hashlib
    import sys

    first = build.build_report(store["uri"], tmp_path / "first.html", log_to_mlflow=True)  # creates or reuses
    client = store["client"]
    runs = {}
    for name in "acde":
        exp = client.get_experiment_by_name(name)
        (run,) = client.search_runs([exp.experiment_id], "tags.`subnets.kind` = 'report'")
        assert run.info.status == "FINISHED"
        logged = Path(run.info.artifact_uri.removeprefix("file://")) / "report.html"
        logged.write_text("stale")
        runs[run.info.run_id] = logged
    db = Path(store["uri"].removeprefix("sqlite:///"))
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now fails
    out = build.build_report(store["uri"], tmp_path / "second.html", log_to_mlflow=True)
    monkeypatch.undo()
    assert out.read_bytes() == first.read_bytes()
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before  # MLflow's database untouched
    for run_id, logged in runs.items():
        assert logged.read_bytes() == out.read_bytes()
        assert [p.name for p in logged.parent.iterdir()] == ["report.html"]  # no temporary file left
        info = client.get_run(run_id).info  # and MLflow reads them so
        assert info.status == "FINISHED" and [a.path for a in client.list_artifacts(run_id)] == ["report.html"]


def test_a_report_run_left_unfinished_is_ended_through_mlflow(store, tmp_path):
    build.build_report(store["uri"], tmp_path / "first.html", log_to_mlflow=True)
    client = store["client"]
    exp = client.get_experiment_by_name("c")
    (run,) = client.search_runs([exp.experiment_id], "tags.`subnets.kind` = 'report'")
    client.set_terminated(run.info.run_id, "KILLED", end_time=1)
    logged = Path(run.info.artifact_uri.removeprefix("file://")) / "report.html"
    logged.write_text("stale")
    out = build.build_report(store["uri"], tmp_path / "second.html", log_to_mlflow=True)
    info = client.get_run(run.info.run_id).info
    assert info.status == "FINISHED" and info.end_time > 1 and logged.read_bytes() == out.read_bytes()
    assert len(client.search_runs([exp.experiment_id], "tags.`subnets.kind` = 'report'")) == 1  # reused, not new
