"""Tidy Parquet tables of a run (the warehouse's input), with fixed schemas.

The column contract is shared with reports/ (which reads these files through MLflow); keep them in sync.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

_ID = [("experiment", pa.string()), ("run_id", pa.string()), ("fingerprint", pa.string()), ("seed", pa.int64()),
       ("method", pa.string())]
SCHEMAS = {
    "run": pa.schema(_ID + [
        ("model", pa.string()), ("task", pa.string()), ("description", pa.string()), ("config_json", pa.string()),
        ("git_sha", pa.string()), ("started_at", pa.timestamp("us", tz="UTC")), ("duration_s", pa.float64()),
        ("baseline_id_accuracy", pa.float64()), ("final_step", pa.int64()), ("final_sparsity", pa.float64()),
    ]),
    "steps": pa.schema(_ID + [
        ("variant", pa.string()), ("step", pa.int64()), ("sparsity", pa.float64()), ("unit_sparsity", pa.float64()),
        ("eval_set", pa.string()), ("kind", pa.string()), ("subcase", pa.string()), ("metric", pa.string()),
        ("value", pa.float64()), ("n", pa.int64()), ("selected", pa.bool_()),
    ]),
    "units": pa.schema(_ID + [
        ("variant", pa.string()), ("step", pa.int64()), ("layer", pa.int64()), ("unit_kind", pa.string()),
        ("unit_index", pa.int64()), ("kept", pa.bool_()), ("score", pa.float64()),
    ]),
    "cka": pa.schema(_ID + [
        ("variant", pa.string()), ("step", pa.int64()), ("sparsity", pa.float64()), ("representation", pa.string()),
        ("pooling", pa.string()), ("estimator", pa.string()), ("layer_base", pa.int64()), ("layer_pruned", pa.int64()),
        ("value", pa.float64()), ("degenerate", pa.bool_()),
    ]),
}


def step_rows(ids: dict, step, selected: bool) -> list[dict]:
    """One row per evaluation set (subcase "all") and per subcase, for accuracy."""
    rows = []
    for res in step.results.values():
        base = dict(ids, variant=step.variant, step=step.step, sparsity=step.sparsity, unit_sparsity=step.unit_sparsity,
                    eval_set=res.name, kind=res.kind, metric="accuracy", selected=selected)
        rows.append(dict(base, subcase="all", value=res.accuracy, n=res.n))
        rows += [dict(base, subcase=name, value=c / n, n=n) for name, (c, n) in res.subcases.items()]
    return rows


def write_table(directory: Path, name: str, rows: list[dict]) -> Path | None:
    """Write `rows` as <directory>/<name>.parquet with the fixed schema; nothing for an empty table."""
    if not rows:
        return None
    schema = SCHEMAS[name]
    table = pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.parquet"
    pq.write_table(table, path)
    return path
