"""Write a run's tidy Parquet tables (the warehouse's input) through the results contract (registry.results)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from registry.results import RESULTS_VERSION, TABLE_KEY, TABLES, VERSION_KEY

_ARROW = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


def arrow_schema(name: str) -> pa.Schema:
    table = TABLES[name]
    return pa.schema(
        [(c.name, _ARROW[c.type]) for c in table.columns], metadata={VERSION_KEY: str(RESULTS_VERSION), TABLE_KEY: name}
    )


def write_table(directory: Path, name: str, rows: list[dict]) -> Path | None:
    """Write `rows` as <directory>/<file> with the contract's columns; nothing for an empty table.
    A row key the contract does not declare is an error (it would silently never reach the warehouse)."""
    if not rows:
        return None
    schema = arrow_schema(name)
    unknown = set().union(*rows) - set(schema.names)
    if unknown:
        raise KeyError(f"table {name!r} has no column(s) {sorted(unknown)} in the results contract")
    table = pa.Table.from_pylist([{f: r.get(f) for f in schema.names} for r in rows], schema=schema)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / TABLES[name].file
    pq.write_table(table, path)
    return path


def step_rows(ids: dict, step, x: float | None, selected: bool) -> list[dict]:
    """One row per evaluation set, subcase and metric: accuracy on the whole set (subcase "all") and per
    subcase, and each of the task's own metrics (mcc, f1, pearson, ...) on the whole set. A regression
    task has no accuracy rows."""
    rows = []
    for res in step.results.values():
        base = dict(
            ids,
            variant=step.variant,
            step=step.step,
            x=x,
            sparsity=step.sparsity,
            unit_sparsity=step.unit_sparsity,
            expected_unit_sparsity=step.extra.get("expected_sparsity_end"),
            eval_set=res.name,
            kind=res.kind,
            passed=step.passed,
            selected=selected,
        )
        if not res.regression:
            rows.append(dict(base, subcase="all", metric="accuracy", value=res.accuracy, n=res.n))
            rows += [
                dict(base, subcase=name, metric="accuracy", value=c / n, n=n) for name, (c, n) in res.subcases.items()
            ]
        rows += [
            dict(base, subcase="all", metric=name, value=value, n=res.n)
            for name, value in res.metrics.items()
            if name != "accuracy"
        ]
    return rows


def axis_rows(ids: dict, axes: dict) -> list[dict]:
    """One row per grid axis (name, value as text, value as a number when it is one)."""
    rows = []
    for axis, value in axes.items():
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        rows.append(dict(ids, axis=axis, value=str(value), number=number))
    return rows
