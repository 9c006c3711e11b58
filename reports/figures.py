"""The report's figures and tables, shaped from query rows: SVG charts (reports.svg) and table rows grouped as the
template shows them, plus the number formats the page uses. Every number comes from a named query in
reports/sql/; this module only reshapes rows and formats numbers.
"""

from __future__ import annotations

from collections import defaultdict

from reports import svg


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


def grouped(rows: list[dict], *keys: str) -> dict[tuple, list[dict]]:
    """Rows grouped by the values of keys, in first-seen (i.e. query) order."""
    out: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        out[tuple(row[k] for k in keys)].append(row)
    return dict(out)


def _shade(sparsity: float | None, top: float) -> float:
    return 1.0 if sparsity is None or top <= 0 else sparsity / top


def id_ood_scatters(experiment: str, rows: list[dict]) -> list[str]:
    """One scatter per OOD set and subcase: a dot per subnetwork, colour and shape by method, opacity by
    sparsity, the full model(s) as black stars."""
    charts = []
    top = max((r["sparsity"] or 0.0 for r in rows), default=0.0)
    for (eval_set, subcase), pts in grouped(rows, "eval_set", "subcase").items():
        metric = pts[0]["metric"]
        dots = [
            svg.Dot(
                p["id_value"],
                p["ood_value"],
                p["method"],
                _shade(p["sparsity"], top),
                tip=(
                    f"full model ({p['run_label']}): ID {fmt_acc(p['id_value'])}, OOD {fmt_acc(p['ood_value'])}"
                    if p["full_model"]
                    else f"{p['run_label']} step {p['step']} ({fmt_pct(p['sparsity'])} sparse"
                    f"{'' if p['x'] is None else ', x ' + fmt_num(p['x'])}): "
                    f"ID {fmt_acc(p['id_value'])}, OOD {fmt_acc(p['ood_value'])}"
                ),
                highlight=p["full_model"],
            )
            for p in pts
        ]
        where = eval_set if subcase == "all" else f"{eval_set} · {subcase}"
        charts.append(
            svg.scatter(
                dots,
                title=f"{experiment}: ID vs {where}",
                subtitle=f"{metric}; one dot per subnetwork",
                x_label=f"ID {metric}",
                y_label=f"{where} {metric}",
                highlight_label="full model",
                shade_label="paler = less sparse",
                x_format=fmt_acc,
                y_format=fmt_acc,
            )
        )
    return charts


def accuracy_charts(experiment: str, rows: list[dict]) -> list[str]:
    """Per seed group: one chart of the whole sets (ID with the keep rule's line, each OOD set), and one
    per OOD set with subcases."""
    charts = []
    for (group,), group_rows in grouped(rows, "group_label").items():
        metric = group_rows[0]["metric"]
        banded = any(r["n_seeds"] > 1 for r in group_rows)
        note = "mean over seeds; band = min/max across seeds" if banded else "one seed"
        whole = [r for r in group_rows if r["subcase"] == "all"]
        panels = [("whole sets", whole, "eval_set")]
        for (eval_set,), rs in grouped([r for r in group_rows if r["kind"] == "ood"], "eval_set").items():
            if any(r["subcase"] != "all" for r in rs):
                panels.append((f"{eval_set} by subcase", rs, "subcase"))
        for title, panel_rows, key in panels:
            names = list(dict.fromkeys(r[key] for r in panel_rows))
            series = [
                svg.Series(
                    name=name if key == "subcase" else (f"{name} (ID)" if pts[0]["kind"] == "id" else name),
                    points=[(p["sparsity"], p["mean_value"]) for p in pts],
                    lower=[p["min_value"] for p in pts] if banded else None,
                    upper=[p["max_value"] for p in pts] if banded else None,
                    color=svg.PALETTE[names.index(name) % len(svg.PALETTE)],
                    dash=svg.DASHES[(names.index(name) // len(svg.PALETTE)) % len(svg.DASHES)],
                )
                for (name,), pts in grouped(panel_rows, key).items()
            ]
            keep = group_rows[0]["keep_line"] if key == "eval_set" else None
            charts.append(
                svg.line_chart(
                    series,
                    title=f"{experiment} · {group}: {metric} vs sparsity, {title}",
                    subtitle=note,
                    x_label="sparsity (fraction of prunable parameters removed)",
                    y_label=metric,
                    x_format=_tick_pct,
                    y_format=fmt_acc,
                    hlines=[(keep, "keep rule (ID)")] if keep is not None else (),
                )
            )
    return charts


def subcase_tables(rows: list[dict]) -> list[dict]:
    """Per seed group and variant: the subcase rows of the full-vs-selected comparison."""
    return [
        {
            "group": g,
            "variant": v,
            "sparsity": rs[0]["selected_sparsity"],
            "n_seeds": max(r["n_seeds"] for r in rs),
            "rows": rs,
        }
        for (g, v), rs in grouped(rows, "group_label", "variant").items()
    ]


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
    for (group, rep, pooling, est), cells in grouped(rows, *keys).items():
        maps = []
        for (variant, step), step_cells in grouped(cells, "variant", "step").items():
            bases, pruned, matrix, tips = _matrix(step_cells, "layer_base", "layer_pruned", "mean_cka", _cka_tip)
            kept = " (kept)" if step_cells[0]["kept"] and variant == "pruned" else ""
            name = f"step {step}{kept}" if variant == "pruned" else f"{variant}, step {step}"
            maps.append(
                svg.heatmap(
                    matrix,
                    bases,
                    pruned,
                    title=name,
                    subtitle=f"{fmt_pct(step_cells[0]['sparsity'])} sparse",
                    x_label="pruned layer",
                    y_label="full layer",
                    cell_titles=tips,
                    cell=14,
                    scale_bar=False,
                )
            )
        out.append({"title": f"{group}: {rep}, {pooling}, {est}", "maps": maps})
    return out


def _cka_tip(base: int, pruned: int, cell: dict | None) -> str:
    if cell is None:
        return f"full L{base} vs pruned L{pruned}: not logged"
    if cell["mean_cka"] is None:
        return f"full L{base} vs pruned L{pruned}: degenerate in all {cell['n_degenerate']} seeds"
    return (
        f"full L{base} vs pruned L{pruned}: {fmt_acc(cell['mean_cka'])} "
        f"(min {fmt_acc(cell['min_cka'])}, max {fmt_acc(cell['max_cka'])}, "
        f"{cell['n_seeds']} seeds, {cell['n_degenerate']} degenerate)"
    )


def cka_diagonal_charts(experiment: str, rows: list[dict]) -> list[str]:
    """Per seed group and CKA setting: each layer's CKA with itself against sparsity."""
    charts = []
    keys = ("group_label", "representation", "pooling", "estimator")
    for (group, rep, pooling, est), group_rows in grouped(rows, *keys).items():
        group_rows = [r for r in group_rows if r["variant"] == "pruned"]
        banded = any(r["n_seeds"] > 1 for r in group_rows)
        series = []
        layers = list(dict.fromkeys(r["layer"] for r in group_rows))
        for (layer,), pts in grouped(group_rows, "layer").items():
            i = layers.index(layer)
            series.append(
                svg.Series(
                    name=f"layer {layer}" + (" (embeddings)" if layer == 0 else ""),
                    points=[(p["sparsity"], p["mean_cka"]) for p in pts],
                    lower=[p["min_cka"] for p in pts] if banded else None,
                    upper=[p["max_cka"] for p in pts] if banded else None,
                    color=svg.PALETTE[i % len(svg.PALETTE)],
                    dash=svg.DASHES[(i // len(svg.PALETTE)) % len(svg.DASHES)],
                )
            )
        if series:
            charts.append(
                svg.line_chart(
                    series,
                    title=f"{experiment} · {group}: CKA diagonal vs sparsity",
                    subtitle=f"{rep}, {pooling}, {est}; mean over seeds" + ("; band = min/max" if banded else ""),
                    x_label="sparsity (fraction of prunable parameters removed)",
                    y_label="CKA (layer vs same layer)",
                    y_domain=(0.0, 1.0),
                    x_format=_tick_pct,
                    y_format=fmt_acc,
                )
            )
    return charts


def survival_map(experiment: str, rows: list[dict]) -> str | None:
    """Layers x (heads, MLP, neurons): the fraction of good subnetworks that keep each unit."""
    if not rows:
        return None

    def col(r: dict) -> tuple[int, str]:
        order = {"head": 0, "mlp": 1, "neuron": 2}[r["unit_kind"]] if r["unit_kind"] in ("head", "mlp", "neuron") else 3
        name = (
            f"h{r['unit_index']}"
            if r["unit_kind"] == "head"
            else "MLP"
            if r["unit_kind"] == "mlp"
            else "neurons"
            if r["unit_kind"] == "neuron"
            else f"{r['unit_kind']} {r['unit_index']}"
        )
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
        what = f"{r['units']} neurons, mean kept fraction" if r["unit_kind"] == "neuron" else "kept by"
        return (
            f"layer {layer} {name}: {what} {fmt_pct(r['kept_fraction'])} of {r['n_subnetworks']} "
            f"subnetworks; super survivors: {r['super_survivors']}"
        )

    tips = [[tip(l, n) for n in names] for l in layers]
    sparsity = sum(r["mean_sparsity"] or 0 for r in rows) / len(rows)
    return svg.heatmap(
        matrix,
        layers,
        names,
        title=f"{experiment}: unit survival",
        subtitle=f"fraction of good subnetworks keeping each unit (mean sparsity {fmt_pct(sparsity)})",
        x_label="unit",
        y_label="layer",
        cell_titles=tips,
    )


def overlap_maps(experiment: str, rows: list[dict], limit: int = 40) -> list[str]:
    """Per unit kind, the subnetworks x subnetworks Jaccard matrix (when at most `limit` subnetworks)."""
    maps = []
    for (kind,), pairs in grouped(rows, "unit_kind").items():
        names = sorted({p["subnetwork_a"] for p in pairs} | {p["subnetwork_b"] for p in pairs})
        if len(names) > limit:
            continue
        at = {}
        for p in pairs:
            at[(p["subnetwork_a"], p["subnetwork_b"])] = at[(p["subnetwork_b"], p["subnetwork_a"])] = p
        matrix = [[1.0 if a == b else (at[(a, b)]["jaccard"] if (a, b) in at else None) for b in names] for a in names]
        tips = [
            [
                f"{a} vs {b}: "
                + (
                    "itself"
                    if a == b
                    else f"Jaccard {fmt_acc(at[(a, b)]['jaccard'])}, random masks of these sizes "
                    f"{fmt_acc(at[(a, b)]['random_jaccard'])}, {at[(a, b)]['shared']} shared units"
                    if (a, b) in at
                    else "not compared"
                )
                for b in names
            ]
            for a in names
        ]
        idx = list(range(len(names)))
        maps.append(
            svg.heatmap(
                matrix,
                idx,
                idx,
                title=f"{experiment}: {kind} overlap (Jaccard)",
                subtitle="subnetworks numbered as in the list below; hover for names",
                x_label="subnetwork",
                y_label="subnetwork",
                cell_titles=tips,
                cell=max(10, min(26, 400 // max(len(names), 1))),
            )
        )
    return maps


def overlap_summary(rows: list[dict]) -> list[dict]:
    return [
        {k: rs[0][k] for k in ("unit_kind", "mean_jaccard", "mean_random_jaccard", "pairs_above_random", "n_pairs")}
        | {"names": sorted({p["subnetwork_a"] for p in rs} | {p["subnetwork_b"] for p in rs})}
        for (_,), rs in grouped(rows, "unit_kind").items()
    ]


def controls_tables(rows: list[dict]) -> list[dict]:
    """Per seed group: rows = evaluation sets, columns = variants (good, random, bad; re-fine-tuned)."""
    tables = []
    for (group,), rs in grouped(rows, "group_label").items():
        variants = list(dict.fromkeys(r["variant"] for r in rs))
        sets = [
            {"eval_set": e, "kind": cells[0]["kind"], "cells": {c["variant"]: c for c in cells}}
            for (e,), cells in grouped(rs, "eval_set").items()
        ]
        tables.append(
            {
                "group": group,
                "variants": variants,
                "sets": sets,
                "metric": rs[0]["metric"],
                "sparsity": rs[0]["sparsity"],
            }
        )
    return tables


def findings_table(rows: list[dict], reported: set[str]) -> dict:
    """The Findings section: the findings view's rows grouped by claim (in claim order), each row marked with
    whether its experiment has a section to link to, and how many rows hold, do not hold or lack data."""
    claims = [
        {"claim_no": no, "claim": rs[0]["claim"], "study": rs[0]["study"], "rows": rs}
        for (no,), rs in grouped(rows, "claim_no").items()
    ]
    for row in rows:
        row["linked"] = row["experiment"] in reported
        row["verdict_class"] = row["verdict"].replace(" ", "-")
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("holds", "does not hold", "not enough data")}
    return {"claims": claims, "counts": counts, "n_rows": len(rows)}
