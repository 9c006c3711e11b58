"""Build the self-contained HTML report from the warehouse.

Every number on the page comes from a named query in reports/sql/; Python here only reshapes
rows into tables and charts and formats numbers.
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlparse

import jinja2

from reports import svg
from reports.warehouse import Warehouse, open_warehouse


def fmt_acc(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def fmt_pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.1f}%"


def fmt_delta(v: float | None) -> str:
    return "—" if v is None else f"{v:+.3f}"


def _tick_pct(v: float) -> str:
    return f"{v * 100:.2f}".rstrip("0").rstrip(".") + "%"


def redact(uri: str) -> str:
    """The tracking URI without a password, so a report can be shared."""
    p = urlparse(uri)
    if p.password:
        host = p.hostname or ""
        netloc = f"{p.username}:***@{host}" + (f":{p.port}" if p.port else "")
        return p._replace(netloc=netloc).geturl()
    return uri


def _grouped(rows: list[dict], *keys: str) -> dict[tuple, list[dict]]:
    """Rows grouped by the values of keys, in first-seen (i.e. query) order."""
    out: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        out[tuple(row[k] for k in keys)].append(row)
    return dict(out)


def accuracy_charts(experiment: str, rows: list[dict]) -> list[str]:
    """One chart per seed group: a series per evaluation set (and variant, if several)."""
    charts = []
    for (group,), group_rows in _grouped(rows, "group_label").items():
        eval_sets = list(dict.fromkeys(r["eval_set"] for r in group_rows))
        variants = list(dict.fromkeys(r["variant"] for r in group_rows))
        banded = any(r["n_seeds"] > 1 for r in group_rows)
        series = []
        for (eval_set, variant), pts in _grouped(group_rows, "eval_set", "variant").items():
            name = eval_set if len(variants) == 1 else f"{eval_set} · {variant}"
            series.append(svg.Series(
                name=name, points=[(p["sparsity"], p["mean_accuracy"]) for p in pts],
                lower=[p["min_accuracy"] for p in pts] if banded else None,
                upper=[p["max_accuracy"] for p in pts] if banded else None,
                color=svg.PALETTE[eval_sets.index(eval_set) % len(svg.PALETTE)],
                dash=svg.DASHES[variants.index(variant) % len(svg.DASHES)]))
        note = "mean over seeds; band = min/max across seeds" if banded else "one seed"
        charts.append(svg.line_chart(
            series, title=f"{experiment} · {group}: accuracy vs sparsity", subtitle=note,
            x_label="sparsity (fraction of prunable weights removed)", y_label="accuracy",
            x_format=_tick_pct, y_format=fmt_acc))
    return charts


def subcase_tables(rows: list[dict]) -> list[dict]:
    """Per seed group and variant: the subcase rows of the full-vs-selected comparison."""
    return [{"group": g, "variant": v, "sparsity": rs[0]["selected_sparsity"],
             "n_seeds": max(r["n_seeds"] for r in rs), "rows": rs}
            for (g, v), rs in _grouped(rows, "group_label", "variant").items()]


def cka_heatmaps(experiment: str, rows: list[dict]) -> list[str]:
    """One heatmap per seed group, variant and CKA setting at the selected step."""
    maps = []
    keys = ("group_label", "variant", "representation", "pooling", "estimator")
    for (group, variant, rep, pooling, est), cells in _grouped(rows, *keys).items():
        bases = sorted({c["layer_base"] for c in cells})
        pruned = sorted({c["layer_pruned"] for c in cells})
        at = {(c["layer_base"], c["layer_pruned"]): c for c in cells}
        matrix, tips = [], []
        for b in bases:
            matrix.append([at[(b, p)]["mean_cka"] if (b, p) in at else None for p in pruned])
            tips.append([_cka_tip(b, p, at.get((b, p))) for p in pruned])
        maps.append(svg.heatmap(
            matrix, bases, pruned, title=f"{experiment} · {group} · {variant}: CKA",
            subtitle=(f"selected step, mean sparsity {fmt_pct(cells[0]['sparsity'])}; "
                      f"{rep}, {pooling}, {est}"),
            x_label="pruned layer", y_label="base layer", cell_titles=tips))
    return maps


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
        variants = list(dict.fromkeys(r["variant"] for r in group_rows))
        banded = any(r["n_seeds"] > 1 for r in group_rows)
        series = []
        for (variant, layer), pts in _grouped(group_rows, "variant", "layer").items():
            series.append(svg.Series(
                name=f"layer {layer}" + ("" if len(variants) == 1 else f" · {variant}"),
                points=[(p["sparsity"], p["mean_cka"]) for p in pts],
                lower=[p["min_cka"] for p in pts] if banded else None,
                upper=[p["max_cka"] for p in pts] if banded else None,
                dash=svg.DASHES[variants.index(variant) % len(svg.DASHES)]))
        charts.append(svg.line_chart(
            series, title=f"{experiment} · {group}: CKA diagonal vs sparsity",
            subtitle=f"{rep}, {pooling}, {est}; mean over seeds" + ("; band = min/max" if banded
                                                                   else ""),
            x_label="sparsity", y_label="CKA (layer vs same layer)",
            y_domain=(0.0, 1.0), x_format=_tick_pct, y_format=fmt_acc))
    return charts


def experiment_section(wh: Warehouse, info: dict) -> dict[str, Any]:
    name = info["experiment"]
    runs = wh.named("runs", experiment=name)
    for run in runs:
        run["ood"] = {d["eval_set"]: d["accuracy"] for d in (run["final_ood"] or [])}
    return {
        **info,
        "runs": runs,
        "ood_sets": [r["eval_set"] for r in wh.named("ood_sets", experiment=name)],
        "accuracy_charts": accuracy_charts(name, wh.named("accuracy_curves", experiment=name)),
        "subcase_tables": subcase_tables(wh.named("subcases", experiment=name)),
        "cka_heatmaps": cka_heatmaps(name, wh.named("cka_selected", experiment=name)),
        "cka_diagonal": cka_diagonal_charts(name, wh.named("cka_diagonal", experiment=name)),
        "effective_size": wh.named("effective_size_of", experiment=name),
    }


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("reports", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters.update(acc=fmt_acc, pct=fmt_pct, delta=fmt_delta)
    return env


def render_report(wh: Warehouse, tracking_uri: str,
                  experiments: Iterable[str] | None = None,
                  generated_at: datetime | None = None) -> str:
    """The report's HTML for the runs in an open warehouse."""
    infos = {e["experiment"]: e for e in wh.named("experiments")}
    # Experiments asked for by name are listed even without finished runs, in the order asked.
    names = list(experiments) if experiments is not None else list(infos)
    sections = [experiment_section(wh, infos[n]) if n in infos
                else {"experiment": n, "runs": []} for n in names]
    when = (generated_at or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M:%S %Z")
    return _environment().get_template("report.html.j2").render(
        generated_at=when, tracking_uri=redact(tracking_uri), sections=sections,
        n_runs=sum(e["n_runs"] for e in infos.values()))


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


def build_report(tracking_uri: str, out_path: Path,
                 experiments: list[str] | None = None, cache_dir: Path | None = None) -> Path:
    """Render the report for all (or the named) experiments to out_path; return the path."""
    with open_warehouse(tracking_uri, experiments, cache_dir=cache_dir) as wh:
        html = render_report(wh, tracking_uri, experiments)
    return write_atomic(Path(out_path), html)
