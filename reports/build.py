"""Build the self-contained HTML report from the warehouse: run the figures' queries, shape them (reports.figures),
render the Jinja2 template, write the page and, when asked, publish it to MLflow (reports.publish).

Every number on the page comes from a named query in reports/sql/.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

import jinja2

from registry.files import write_atomic
from registry.tracking import redact
from reports.figures import (
    accuracy_charts,
    cka_diagonal_charts,
    cka_step_maps,
    controls_tables,
    findings_table,
    fmt_acc,
    fmt_delta,
    fmt_num,
    fmt_pct,
    grouped,
    id_ood_scatters,
    overlap_maps,
    overlap_summary,
    subcase_tables,
    survival_map,
)
from reports.publish import Publisher
from reports.warehouse import Warehouse, open_warehouse


def anchor(experiment: str) -> str:
    """The HTML id of an experiment's section."""
    return "exp-" + re.sub(r"[^A-Za-z0-9_-]", "-", experiment)


def _query(name: str) -> str:
    return f"reports/sql/{name}.sql"


# The figures' queries that take $experiment: run once with it NULL (every experiment at once, each row naming
# its experiment) rather than once per experiment, since planning a query costs more here than running it.
PER_EXPERIMENT = (
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
)


def experiment_rows(wh: Warehouse, names: Iterable[str] = PER_EXPERIMENT) -> dict[str, dict[str, list[dict]]]:
    """{query: {experiment: rows}} of each named query, run once over every experiment; each experiment's rows
    keep the query's order (its ORDER BY starts with the experiment)."""
    out: dict[str, dict[str, list[dict]]] = {}
    for name in names:
        by_exp: dict[str, list[dict]] = defaultdict(list)
        for row in wh.named(name, experiment=None):
            by_exp[row["experiment"]].append(row)
        out[name] = dict(by_exp)
    return out


def experiment_section(
    wh: Warehouse, info: dict, rows: dict[str, dict[str, list[dict]]] | None = None
) -> dict[str, Any]:
    """One experiment's section; `rows` (from experiment_rows) saves running each query for it alone."""
    name = info["experiment"]

    def q(query: str) -> list[dict]:
        if rows is not None and query in rows:
            return rows[query].get(name, [])
        return wh.named(query, experiment=name)

    runs = q("runs")
    for run in runs:
        run["ood"] = {d["eval_set"]: d["value"] for d in (run["kept_ood"] or [])}
    metrics = list(dict.fromkeys(r["metric"] for r in runs))
    id_ood = q("id_vs_ood")
    survival = q("unit_survival")
    overlap = q("unit_overlap")
    cka_steps = q("cka_steps")
    return {
        **info,
        "anchor": anchor(name),
        "metric": " / ".join(metrics) or "accuracy",
        "runs": runs,
        "ood_sets": [r["eval_set"] for r in q("ood_sets")],
        "missed_l0": [r for r in runs if r["missed_targets"]],
        "id_ood_charts": id_ood_scatters(name, id_ood),
        "spread": q("id_ood_spread"),
        "accuracy_charts": accuracy_charts(name, q("accuracy_curves")),
        "subcase_tables": subcase_tables(q("subcases")),
        "effective_size": q("effective_size_of"),
        "pareto": q("pareto_front"),
        "cka_steps": cka_step_maps(name, cka_steps),
        "cka_diagonal": cka_diagonal_charts(name, q("cka_diagonal")),
        "survival_map": survival_map(name, survival),
        "super_survivors": [r for r in survival if r["super_survivors"]],
        "units_logged": bool(survival),
        "overlap_maps": overlap_maps(name, overlap),
        "overlap": overlap_summary(overlap),
        "controls": controls_tables(q("controls")),
        "provenance": q("provenance"),
    }


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(acc=fmt_acc, pct=fmt_pct, delta=fmt_delta, num=fmt_num)
    env.globals.update(query=_query, anchor=anchor)
    return env


def render_report(wh: Warehouse, tracking_uri: str, experiments: Iterable[str] | None = None) -> str:
    """The report's HTML for the runs in an open warehouse: the same data gives the same bytes (no clock)."""
    infos = {e["experiment"]: e for e in wh.named("experiments")}
    # Experiments asked for by name are listed even without finished runs, in the order asked.
    names = list(experiments) if experiments is not None else list(infos)
    rows = experiment_rows(wh) if any(n in infos for n in names) else {}
    sections = [
        experiment_section(wh, infos[n], rows) if n in infos else {"experiment": n, "runs": [], "anchor": anchor(n)}
        for n in names
    ]
    shown = set(names)
    shared = [r for r in wh.named("shared_models") if r["experiment"] in shown]
    findings = findings_table(wh.named_rows("SELECT * FROM findings"), {s["experiment"] for s in sections if s["runs"]})
    latest = max((e["last_started_at"] for e in infos.values() if e["last_started_at"]), default=None)
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            latest=latest,
            tracking_uri=redact(tracking_uri),
            sections=sections,
            shared=grouped(shared, "finetune_fingerprint"),
            findings=findings,
            n_runs=sum(infos[n]["n_runs"] for n in names if n in infos),
        )
    )


def build_report(
    tracking_uri: str,
    out_path: Path,
    experiments: list[str] | None = None,
    cache_dir: Path | None = None,
    log_to_mlflow: bool = False,
    warehouse_dir: Path | None = None,
) -> Path:
    """Render the report for all (or the named) experiments to out_path; return the path. With
    log_to_mlflow, also log it to each reported experiment's report run (reports.publish: MLflow is imported only
    where a report run must be created or changed, in a thread while the report is built). `warehouse_dir`: the
    store's warehouse cache (reports.cache)."""
    publisher = Publisher(tracking_uri, experiments) if log_to_mlflow else None
    with open_warehouse(tracking_uri, experiments, cache_dir=cache_dir, warehouse_dir=warehouse_dir) as wh:
        html = render_report(wh, tracking_uri, experiments)
        reported = [e["experiment"] for e in wh.named("experiments")]
    path = write_atomic(Path(out_path), html)
    if publisher is not None:
        publisher.publish(path, reported)
    return path
