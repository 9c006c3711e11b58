"""Build the self-contained HTML report from the warehouse.

Every number on the page comes from a named query in reports/sql/; Python here only reshapes
rows into tables and charts and formats numbers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

import jinja2

from registry.tracking import redact
from reports import svg
from reports.warehouse import Warehouse, open_warehouse

log = logging.getLogger(__name__)


def fmt_acc(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def fmt_pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.1f}%"


def fmt_delta(v: float | None) -> str:
    return "—" if v is None else f"{v:+.3f}"


def fmt_num(v: float | None) -> str:
    return "—" if v is None else f"{v:g}"


def _tick_pct(v: float) -> str:
    return f"{v * 100:.2f}".rstrip("0").rstrip(".") + "%"


def _grouped(rows: list[dict], *keys: str) -> dict[tuple, list[dict]]:
    """Rows grouped by the values of keys, in first-seen (i.e. query) order."""
    out: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        out[tuple(row[k] for k in keys)].append(row)
    return dict(out)


def _query(name: str) -> str:
    return f"reports/sql/{name}.sql"


def anchor(experiment: str) -> str:
    """The HTML id of an experiment's section."""
    return "exp-" + re.sub(r"[^A-Za-z0-9_-]", "-", experiment)


def _shade(sparsity: float | None, top: float) -> float:
    return 1.0 if sparsity is None or top <= 0 else sparsity / top


def id_ood_scatters(experiment: str, rows: list[dict]) -> list[str]:
    """One scatter per OOD set and subcase: a dot per subnetwork, colour and shape by method, opacity by
    sparsity, the full model(s) as black stars."""
    charts = []
    top = max((r["sparsity"] or 0.0 for r in rows), default=0.0)
    for (eval_set, subcase), pts in _grouped(rows, "eval_set", "subcase").items():
        metric = pts[0]["metric"]
        dots = [svg.Dot(p["id_value"], p["ood_value"], p["method"], _shade(p["sparsity"], top),
                        tip=(f"full model ({p['run_label']}): ID {fmt_acc(p['id_value'])}, OOD {fmt_acc(p['ood_value'])}"
                             if p["full_model"] else
                             f"{p['run_label']} step {p['step']} ({fmt_pct(p['sparsity'])} sparse"
                             f"{'' if p['x'] is None else ', x ' + fmt_num(p['x'])}): "
                             f"ID {fmt_acc(p['id_value'])}, OOD {fmt_acc(p['ood_value'])}"),
                        highlight=p["full_model"]) for p in pts]
        where = eval_set if subcase == "all" else f"{eval_set} · {subcase}"
        charts.append(svg.scatter(
            dots, title=f"{experiment}: ID vs {where}", subtitle=f"{metric}; one dot per subnetwork",
            x_label=f"ID {metric}", y_label=f"{where} {metric}", highlight_label="full model",
            shade_label="paler = less sparse", x_format=fmt_acc, y_format=fmt_acc))
    return charts


def accuracy_charts(experiment: str, rows: list[dict]) -> list[str]:
    """Per seed group: one chart of the whole sets (ID with the keep rule's line, each OOD set), and one
    per OOD set with subcases."""
    charts = []
    for (group,), group_rows in _grouped(rows, "group_label").items():
        metric = group_rows[0]["metric"]
        banded = any(r["n_seeds"] > 1 for r in group_rows)
        note = "mean over seeds; band = min/max across seeds" if banded else "one seed"
        whole = [r for r in group_rows if r["subcase"] == "all"]
        panels = [("whole sets", whole, "eval_set")]
        for (eval_set,), rs in _grouped([r for r in group_rows if r["kind"] == "ood"], "eval_set").items():
            if any(r["subcase"] != "all" for r in rs):
                panels.append((f"{eval_set} by subcase", rs, "subcase"))
        for title, panel_rows, key in panels:
            names = list(dict.fromkeys(r[key] for r in panel_rows))
            series = [svg.Series(
                name=name if key == "subcase" else (f"{name} (ID)" if pts[0]["kind"] == "id" else name),
                points=[(p["sparsity"], p["mean_value"]) for p in pts],
                lower=[p["min_value"] for p in pts] if banded else None,
                upper=[p["max_value"] for p in pts] if banded else None,
                color=svg.PALETTE[names.index(name) % len(svg.PALETTE)],
                dash=svg.DASHES[(names.index(name) // len(svg.PALETTE)) % len(svg.DASHES)])
                for (name,), pts in _grouped(panel_rows, key).items()]
            keep = group_rows[0]["keep_line"] if key == "eval_set" else None
            charts.append(svg.line_chart(
                series, title=f"{experiment} · {group}: {metric} vs sparsity, {title}", subtitle=note,
                x_label="sparsity (fraction of prunable parameters removed)", y_label=metric,
                x_format=_tick_pct, y_format=fmt_acc,
                hlines=[(keep, "keep rule (ID)")] if keep is not None else ()))
    return charts


def subcase_tables(rows: list[dict]) -> list[dict]:
    """Per seed group and variant: the subcase rows of the full-vs-selected comparison."""
    return [{"group": g, "variant": v, "sparsity": rs[0]["selected_sparsity"],
             "n_seeds": max(r["n_seeds"] for r in rs), "rows": rs}
            for (g, v), rs in _grouped(rows, "group_label", "variant").items()]


def _matrix(cells: list[dict], row_key: str, col_key: str, value_key: str, tip) -> tuple[list, list, list, list]:
    rows_ = sorted({c[row_key] for c in cells})
    cols = sorted({c[col_key] for c in cells})
    at = {(c[row_key], c[col_key]): c for c in cells}
    matrix = [[at[(r, c)][value_key] if (r, c) in at else None for c in cols] for r in rows_]
    tips = [[tip(r, c, at.get((r, c))) for c in cols] for r in rows_]
    return rows_, cols, matrix, tips


def cka_step_maps(experiment: str, rows: list[dict]) -> list[dict]:
    """Per seed group and CKA setting: small heatmaps, one per step (then per control/retrained variant)."""
    out = []
    keys = ("group_label", "representation", "pooling", "estimator")
    for (group, rep, pooling, est), cells in _grouped(rows, *keys).items():
        maps = []
        for (variant, step), step_cells in _grouped(cells, "variant", "step").items():
            bases, pruned, matrix, tips = _matrix(step_cells, "layer_base", "layer_pruned", "mean_cka", _cka_tip)
            kept = " (kept)" if step_cells[0]["kept"] and variant == "pruned" else ""
            name = f"step {step}{kept}" if variant == "pruned" else f"{variant}, step {step}"
            maps.append(svg.heatmap(matrix, bases, pruned, title=name,
                                    subtitle=f"{fmt_pct(step_cells[0]['sparsity'])} sparse",
                                    x_label="pruned layer", y_label="full layer", cell_titles=tips,
                                    cell=14, scale_bar=False))
        out.append({"title": f"{group}: {rep}, {pooling}, {est}", "maps": maps})
    return out


def _cka_tip(base: int, pruned: int, cell: dict | None) -> str:
    if cell is None:
        return f"full L{base} vs pruned L{pruned}: not logged"
    if cell["mean_cka"] is None:
        return f"full L{base} vs pruned L{pruned}: degenerate in all {cell['n_degenerate']} seeds"
    return (f"full L{base} vs pruned L{pruned}: {fmt_acc(cell['mean_cka'])} "
            f"(min {fmt_acc(cell['min_cka'])}, max {fmt_acc(cell['max_cka'])}, "
            f"{cell['n_seeds']} seeds, {cell['n_degenerate']} degenerate)")


def cka_diagonal_charts(experiment: str, rows: list[dict]) -> list[str]:
    """Per seed group and CKA setting: each layer's CKA with itself against sparsity."""
    charts = []
    keys = ("group_label", "representation", "pooling", "estimator")
    for (group, rep, pooling, est), group_rows in _grouped(rows, *keys).items():
        group_rows = [r for r in group_rows if r["variant"] == "pruned"]
        banded = any(r["n_seeds"] > 1 for r in group_rows)
        series = []
        layers = list(dict.fromkeys(r["layer"] for r in group_rows))
        for (layer,), pts in _grouped(group_rows, "layer").items():
            i = layers.index(layer)
            series.append(svg.Series(
                name=f"layer {layer}" + (" (embeddings)" if layer == 0 else ""),
                points=[(p["sparsity"], p["mean_cka"]) for p in pts],
                lower=[p["min_cka"] for p in pts] if banded else None,
                upper=[p["max_cka"] for p in pts] if banded else None,
                color=svg.PALETTE[i % len(svg.PALETTE)],
                dash=svg.DASHES[(i // len(svg.PALETTE)) % len(svg.DASHES)]))
        if series:
            charts.append(svg.line_chart(
                series, title=f"{experiment} · {group}: CKA diagonal vs sparsity",
                subtitle=f"{rep}, {pooling}, {est}; mean over seeds" + ("; band = min/max" if banded else ""),
                x_label="sparsity (fraction of prunable parameters removed)", y_label="CKA (layer vs same layer)",
                y_domain=(0.0, 1.0), x_format=_tick_pct, y_format=fmt_acc))
    return charts


def survival_map(experiment: str, rows: list[dict]) -> str | None:
    """Layers x (heads, MLP, neurons): the fraction of good subnetworks that keep each unit."""
    if not rows:
        return None
    def col(r: dict) -> tuple[int, str]:
        order = {"head": 0, "mlp": 1, "neuron": 2}[r["unit_kind"]] if r["unit_kind"] in ("head", "mlp", "neuron") else 3
        name = (f"h{r['unit_index']}" if r["unit_kind"] == "head" else "MLP" if r["unit_kind"] == "mlp"
                else "neurons" if r["unit_kind"] == "neuron" else f"{r['unit_kind']} {r['unit_index']}")
        return (order, r["unit_index"] or 0), name
    cols = sorted({col(r) for r in rows})
    names = [n for _, n in cols]
    layers = sorted({r["layer"] for r in rows})
    at = {(r["layer"], col(r)[1]): r for r in rows}
    matrix = [[at[(l, n)]["kept_fraction"] if (l, n) in at else None for n in names] for l in layers]

    def tip(layer: int, name: str) -> str:
        r = at.get((layer, name))
        if r is None:
            return f"layer {layer} {name}: not a unit of these subnetworks"
        what = (f"{r['units']} neurons, mean kept fraction" if r["unit_kind"] == "neuron" else "kept by")
        return (f"layer {layer} {name}: {what} {fmt_pct(r['kept_fraction'])} of {r['n_subnetworks']} "
                f"subnetworks; super survivors: {r['super_survivors']}")
    tips = [[tip(l, n) for n in names] for l in layers]
    sparsity = sum(r["mean_sparsity"] or 0 for r in rows) / len(rows)
    return svg.heatmap(matrix, layers, names, title=f"{experiment}: unit survival",
                       subtitle=f"fraction of good subnetworks keeping each unit (mean sparsity {fmt_pct(sparsity)})",
                       x_label="unit", y_label="layer", cell_titles=tips)


def overlap_maps(experiment: str, rows: list[dict], limit: int = 40) -> list[str]:
    """Per unit kind, the subnetworks x subnetworks Jaccard matrix (when at most `limit` subnetworks)."""
    maps = []
    for (kind,), pairs in _grouped(rows, "unit_kind").items():
        names = sorted({p["subnetwork_a"] for p in pairs} | {p["subnetwork_b"] for p in pairs})
        if len(names) > limit:
            continue
        at = {}
        for p in pairs:
            at[(p["subnetwork_a"], p["subnetwork_b"])] = at[(p["subnetwork_b"], p["subnetwork_a"])] = p
        matrix = [[1.0 if a == b else (at[(a, b)]["jaccard"] if (a, b) in at else None) for b in names] for a in names]
        tips = [[f"{a} vs {b}: " + ("itself" if a == b else
                 f"Jaccard {fmt_acc(at[(a, b)]['jaccard'])}, random masks of these sizes "
                 f"{fmt_acc(at[(a, b)]['random_jaccard'])}, {at[(a, b)]['shared']} shared units"
                 if (a, b) in at else "not compared") for b in names] for a in names]
        idx = list(range(len(names)))
        maps.append(svg.heatmap(matrix, idx, idx, title=f"{experiment}: {kind} overlap (Jaccard)",
                                subtitle="subnetworks numbered as in the list below; hover for names",
                                x_label="subnetwork", y_label="subnetwork", cell_titles=tips,
                                cell=max(10, min(26, 400 // max(len(names), 1)))))
    return maps


def overlap_summary(rows: list[dict]) -> list[dict]:
    return [{k: rs[0][k] for k in ("unit_kind", "mean_jaccard", "mean_random_jaccard", "pairs_above_random",
                                    "n_pairs")} | {"names": sorted({p["subnetwork_a"] for p in rs} | {p["subnetwork_b"] for p in rs})}
            for (_,), rs in _grouped(rows, "unit_kind").items()]


def controls_tables(rows: list[dict]) -> list[dict]:
    """Per seed group: rows = evaluation sets, columns = variants (good, random, bad; re-fine-tuned)."""
    tables = []
    for (group,), rs in _grouped(rows, "group_label").items():
        variants = list(dict.fromkeys(r["variant"] for r in rs))
        sets = [{"eval_set": e, "kind": cells[0]["kind"], "cells": {c["variant"]: c for c in cells}}
                for (e,), cells in _grouped(rs, "eval_set").items()]
        tables.append({"group": group, "variants": variants, "sets": sets, "metric": rs[0]["metric"],
                       "sparsity": rs[0]["sparsity"]})
    return tables


# The figures' queries that take $experiment: run once with it NULL (every experiment at once, each row naming
# its experiment) rather than once per experiment, since planning a query costs more here than running it.
PER_EXPERIMENT = ("runs", "id_vs_ood", "id_ood_spread", "accuracy_curves", "subcases", "effective_size_of",
                  "pareto_front", "cka_steps", "cka_diagonal", "unit_survival", "unit_overlap", "controls",
                  "provenance")


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


def experiment_section(wh: Warehouse, info: dict, rows: dict[str, dict[str, list[dict]]] | None = None
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
    env = jinja2.Environment(loader=jinja2.PackageLoader("reports", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters.update(acc=fmt_acc, pct=fmt_pct, delta=fmt_delta, num=fmt_num)
    env.globals.update(query=_query, anchor=anchor)
    return env


def render_report(wh: Warehouse, tracking_uri: str,
                  experiments: Iterable[str] | None = None) -> str:
    """The report's HTML for the runs in an open warehouse: the same data gives the same bytes (no clock)."""
    infos = {e["experiment"]: e for e in wh.named("experiments")}
    # Experiments asked for by name are listed even without finished runs, in the order asked.
    names = list(experiments) if experiments is not None else list(infos)
    rows = experiment_rows(wh) if any(n in infos for n in names) else {}
    sections = [experiment_section(wh, infos[n], rows) if n in infos
                else {"experiment": n, "runs": [], "anchor": anchor(n)}
                for n in names]
    shown = set(names)
    shared = [r for r in wh.named("shared_models") if r["experiment"] in shown]
    latest = max((e["last_started_at"] for e in infos.values() if e["last_started_at"]), default=None)
    return _environment().get_template("report.html.j2").render(
        latest=latest, tracking_uri=redact(tracking_uri), sections=sections, shared=_grouped(shared, "finetune_fingerprint"),
        n_runs=sum(infos[n]["n_runs"] for n in names if n in infos))


def write_atomic(out_path: Path, text: str) -> Path:
    """Write text to out_path via a temp file in the same directory and a rename."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a report is meant to be read by others
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out_path


REPORT_KIND = "report"  # the tag subnets.kind of the run a report is logged to (never counted as a run)


def _mlflow_client(tracking_uri: str, box: dict) -> None:
    """Import MLflow and open its store (seconds), meant to run in a thread while the report is built."""
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri)
        client.search_experiments(max_results=1)
        box["client"] = client
    except Exception as exc:  # noqa: BLE001 - raised again in the caller's thread
        box["error"] = exc


def log_report(tracking_uri: str, html_path: Path, experiments: Iterable[str], client: Any = None) -> list[str]:
    """Log the report (as report.html) to one run tagged subnets.kind = report in each named MLflow
    experiment, reusing that run on the next report, so it opens in the MLflow UI next to the runs it
    describes. The warehouse, `plan` and `status` count only runs tagged subnets.kind = run. Returns the
    report runs' ids."""
    if client is None:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri)
    ids = []
    with tempfile.TemporaryDirectory(prefix="subnets-report-") as tmp:
        staged = Path(tmp) / "report.html"
        staged.write_bytes(Path(html_path).read_bytes())
        for name in experiments:
            exp = client.get_experiment_by_name(name)
            if exp is None or exp.lifecycle_stage != "active":
                continue
            found = client.search_runs([exp.experiment_id], filter_string=f"tags.`subnets.kind` = '{REPORT_KIND}'",
                                       max_results=1, order_by=["attributes.start_time DESC"])
            if found:
                run_id = found[0].info.run_id
            else:
                run_id = client.create_run(exp.experiment_id, run_name="report", tags={
                    "subnets.kind": REPORT_KIND, "subnets.experiment": name,
                    "mlflow.note.content": "The subnets report of this experiment: open report.html under Artifacts "
                                           "(rebuilt by `subnets report`)."}).info.run_id
            client.log_artifact(run_id, str(staged))
            client.set_terminated(run_id, "FINISHED")
            ids.append(run_id)
    return ids


# Per active experiment: its newest active run tagged subnets.kind = report (the run log_report reuses, found as
# MLflow's search_runs orders them), and whether it has finished parent runs to report on.
_SQLITE_REPORT_RUNS = """
SELECT e.name, rr.run_uuid, rr.artifact_uri,
       EXISTS (SELECT 1 FROM runs AS r
               JOIN tags AS t ON t.run_uuid = r.run_uuid AND t.key = 'subnets.kind' AND t.value = 'run'
               WHERE r.experiment_id = e.experiment_id AND r.status = 'FINISHED' AND r.lifecycle_stage = 'active')
FROM experiments AS e
LEFT JOIN (
    SELECT r.experiment_id, r.run_uuid, r.artifact_uri,
           row_number() OVER (PARTITION BY r.experiment_id ORDER BY r.start_time DESC, r.run_uuid) AS newest
    FROM runs AS r
    JOIN tags AS t ON t.run_uuid = r.run_uuid AND t.key = 'subnets.kind' AND t.value = ?
    WHERE r.lifecycle_stage = 'active'
) AS rr ON rr.experiment_id = e.experiment_id AND rr.newest = 1
WHERE e.lifecycle_stage = 'active'
"""


def _report_runs(tracking_uri: str) -> tuple[dict[str, tuple[str, Path]], set[str]] | None:
    """For a local SQLite store: {experiment: (its report run, that run's local artifact directory)}, and the
    experiments with finished runs but no such run (log_report creates one, through the MLflow client). None
    for any other store."""
    import sqlite3

    from reports.warehouse import _local_path, _local_sqlite

    db = _local_sqlite(tracking_uri)
    if db is None:
        return None
    try:
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            rows = con.execute(_SQLITE_REPORT_RUNS, (REPORT_KIND,)).fetchall()
        finally:
            con.close()
    except sqlite3.Error as exc:  # a schema this query does not know: MLflow's client knows it
        log.info("report runs not read with sqlite3 (%s); logging through MLflow", exc)
        return None
    found, missing = {}, set()
    for name, run_id, artifact_uri, has_runs in rows:
        local = _local_path(artifact_uri) if run_id is not None else None
        if local is not None and local.is_absolute():
            found[name] = (run_id, local)
        elif has_runs:
            missing.add(name)
    return found, missing


def _log_report_locally(tracking_uri: str, html_path: Path, runs: dict[str, tuple[str, Path]]) -> list[str]:
    """What log_report does for report runs that exist on a local store, without MLflow (seconds to import):
    report.html replaced in each run's artifact directory (a temporary file renamed into place), then the run
    marked FINISHED with its end time, as MLflow's set_terminated does."""
    import sqlite3
    import time

    from reports.warehouse import _local_sqlite

    html = Path(html_path).read_bytes()
    written: Path | None = None  # the first copy; the others are hard links to it where the file system allows
    for run_id, artifacts in runs.values():
        artifacts.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=artifacts, prefix=".report.html.", suffix=".tmp")
        try:
            linked = False
            if written is not None:
                with contextlib.suppress(OSError):  # another file system: a copy instead
                    os.unlink(tmp)
                    os.link(written, tmp)
                    linked = True
            if not linked:
                with open(tmp, "wb") as f:
                    f.write(html)
                os.chmod(tmp, 0o644)
            os.close(fd)
            os.replace(tmp, artifacts / "report.html")  # never written in place, so links share no later change
            written = written or artifacts / "report.html"
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    con = sqlite3.connect(str(_local_sqlite(tracking_uri)), timeout=30)
    try:
        with con:
            now = int(time.time() * 1000)
            con.executemany("UPDATE runs SET status = 'FINISHED', end_time = ? WHERE run_uuid = ? "
                            "AND lifecycle_stage = 'active'", [(now, run_id) for run_id, _ in runs.values()])
    finally:
        con.close()
    return [run_id for run_id, _ in runs.values()]


def build_report(tracking_uri: str, out_path: Path, experiments: list[str] | None = None,
                 cache_dir: Path | None = None, log_to_mlflow: bool = False, warehouse_dir: Path | None = None) -> Path:
    """Render the report for all (or the named) experiments to out_path; return the path. With
    log_to_mlflow, also log it to each reported experiment (see log_report). On a local store whose reported
    experiments all have their report run, that is done without MLflow (_log_report_locally); otherwise MLflow
    is imported in a thread meanwhile (the warehouse reads a local store without it), so logging adds little to
    the wall time. `warehouse_dir`: the store's warehouse cache (reports.warehouse)."""
    box: dict[str, Any] = {}
    local = _report_runs(tracking_uri) if log_to_mlflow else None
    wanted = set(experiments) if experiments is not None else None
    need_client = log_to_mlflow and (local is None or bool(local[1] if wanted is None else local[1] & wanted))
    warm = threading.Thread(target=_mlflow_client, args=(tracking_uri, box), daemon=True) if need_client else None
    if warm is not None:
        warm.start()
    with open_warehouse(tracking_uri, experiments, cache_dir=cache_dir, warehouse_dir=warehouse_dir) as wh:
        html = render_report(wh, tracking_uri, experiments)
        reported = [e["experiment"] for e in wh.named("experiments")]
    path = write_atomic(Path(out_path), html)
    if not log_to_mlflow:
        return path
    if local is not None and all(name in local[0] for name in reported):
        _log_report_locally(tracking_uri, path, {name: local[0][name] for name in reported})
        return path
    if warm is None:  # a report run went missing meanwhile: MLflow after all
        warm = threading.Thread(target=_mlflow_client, args=(tracking_uri, box), daemon=True)
        warm.start()
    warm.join()
    if "error" in box:
        raise box["error"]
    log_report(tracking_uri, path, reported, box["client"])
    return path
