"""Print or save query results (`subnets query`): every statement's result, whole rows, as a plain table,
CSV, JSON or Parquet."""

from __future__ import annotations

import csv
import json
import math
from datetime import date, datetime
from pathlib import Path
from typing import Any, TextIO

Result = tuple[list[str], list[tuple]]
FORMATS = ("table", "csv", "json", "parquet")


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, (list, dict)):
        return json.dumps(v, default=str, sort_keys=True)
    return str(v)


def plain_table(columns: list[str], rows: list[tuple]) -> str:
    """Aligned text with every column whole (nothing cut to a terminal's width)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()  # noqa: E731
    out = [line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells]
    out.append(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")
    return "\n".join(out)


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    return v


def write_text(results: list[Result], fmt: str, stream: TextIO) -> None:
    """table: aligned text per result; csv: a header and rows per result, results separated by a blank
    line; json: one JSON array of row objects per result, one result per line."""
    shown = [r for r in results if r[0]]  # statements without a result set (CREATE ...) print nothing
    for i, (columns, rows) in enumerate(shown):
        if fmt == "table":
            stream.write(("\n" if i else "") + plain_table(columns, rows) + "\n")
        elif fmt == "csv":
            if i:
                stream.write("\n")
            writer = csv.writer(stream, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows(
                [_cell(v) if isinstance(v, (list, dict, datetime, date)) else v for v in row] for row in rows
            )
        elif fmt == "json":
            objs = [{c: _jsonable(v) for c, v in zip(columns, row)} for row in rows]
            stream.write(json.dumps(objs, default=str) + "\n")
        else:
            raise ValueError(f"unknown format {fmt!r}")


def write_parquet(results: list[Result], output: Path) -> list[Path]:
    """Each result with columns as a Parquet file: `output` for one, output's stem.N.parquet for several."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shown = [r for r in results if r[0]]
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (columns, rows) in enumerate(shown, 1):
        path = output if len(shown) == 1 else output.with_name(f"{output.stem}.{i}{output.suffix or '.parquet'}")
        names = [c if columns.count(c) == 1 else f"{c}_{j}" for j, c in enumerate(columns)]
        table = pa.Table.from_pylist(
            [dict(zip(names, row)) for row in rows], schema=None if rows else pa.schema([(n, pa.null()) for n in names])
        )
        pq.write_table(table, path)
        paths.append(path)
    return paths
