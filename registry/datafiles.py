"""Local data files: the one reader of csv/tsv/jsonl/parquet rows, and the checks run on it before anything
runs (the file exists and has a known format, every declared column is there, and every label is one the task
declares or its label_map covers).

Validation and the runners read a file through the same `read_records` with the same label rules
(runners/data/sources.py imports them), so what validation accepts is what a run reads. Validation asks
only for the columns it checks, so `subnets validate` stays fast on real data (SST-2's 67k training rows:
~0.1 s, cached per file while it is unchanged).
"""

from __future__ import annotations

import csv
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

FORMATS = (".csv", ".tsv", ".jsonl", ".parquet")
UNLABELLED = ("", "-", "-1")  # rows without a gold label (GLUE test splits, SNLI's "-"): skipped, not errors


def parse_label(
    raw: Any, label_map: dict[str, int] | None, labels: list[str], regression: bool = False
) -> int | float | None:
    """A raw label value as a label index (or a float score for a regression task); None when it is
    not one the set declares (then `is_unlabelled` tells a skipped row from an error)."""
    key = str(raw).strip()
    if regression:
        if key in UNLABELLED:
            return None
        try:
            return float(key)
        except ValueError:
            return None
    if label_map is not None:
        return label_map.get(key)
    if key in labels:
        return labels.index(key)
    try:
        value = int(float(key))
    except ValueError:
        return None
    return value if 0 <= value < len(labels) else None


def is_unlabelled(raw: Any) -> bool:
    return raw is None or str(raw).strip() in UNLABELLED


def subcase_columns(source) -> list[str]:
    if source.subcase is None:
        return []
    return [source.subcase] if isinstance(source.subcase, str) else list(source.subcase)


def resolve(path: str, base_dir: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(base_dir) / p


@dataclass
class Records:
    """A data file's column names and its rows, read lazily: (position, {column: value}), the position being
    the file line (csv/tsv/jsonl) or the 1-based row (parquet) that error messages name. A row lacks the key
    of a column it has no field for (a short csv line, a jsonl record without it)."""

    columns: tuple[str, ...]
    rows: Iterator[tuple[int, dict[str, Any]]]


def read_records(
    path: Path,
    header: bool = True,
    limit: int | None = None,
    columns: Sequence[str] | None = None,
    start: int = 0,
) -> Records:
    """The rows of a local csv/tsv/jsonl/parquet file: `limit` of them (None: all) from row `start` (0-based, after
    any header; SourceSpec.span gives both); with `columns`, only those
    columns of each row (a parquet file reads no other). A TSV is read without quote handling: GLUE-style
    TSVs hold unbalanced quotes inside sentences. Raises ValueError for a file type that is not one of
    FORMATS, or a jsonl line that is not an object."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _delimited_records(path, "\t" if suffix == ".tsv" else ",", header, start, limit, columns)
    if suffix == ".jsonl":
        return _jsonl_records(path, start, limit, columns)
    if suffix == ".parquet":
        return _parquet_records(path, start, limit, columns)
    raise ValueError(f"unsupported data file type {suffix!r} ({path}); use {', '.join(FORMATS)}")


def _delimited_records(
    path: Path, delimiter: str, header: bool, start: int, limit: int | None, columns: Sequence[str] | None
) -> Records:
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with path.open(newline="", encoding="utf-8") as f:
        first = next(csv.reader(f, delimiter=delimiter, quoting=quoting), None)
    if first is None:
        return Records((), iter(()))
    names = tuple(first) if header else tuple(str(i) for i in range(len(first)))
    wanted = [(c, names.index(c)) for c in (columns if columns is not None else names) if c in names]

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter=delimiter, quoting=quoting)
            if header:
                next(reader, None)
            # a blank line is no row, but counts as one towards start and limit (as the runners have always read it)
            for count, (line, row) in enumerate(enumerate(reader, 2 if header else 1), 1 - start):
                if count < 1:
                    continue
                if row:
                    yield line, {c: row[j] for c, j in wanted if j < len(row)}
                if limit and count >= limit:
                    return

    return Records(names, rows())


def _jsonl_records(path: Path, start: int, limit: int | None, columns: Sequence[str] | None) -> Records:
    def records() -> Iterator[tuple[int, dict[str, Any]]]:
        n = 0
        with path.open(encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                n += 1
                if n <= start:
                    continue
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError(f"line {i} is not a JSON object")
                yield i, record
                if limit and n - start >= limit:
                    return

    every = records()
    first = next(every, None)
    if first is None:
        return Records((), iter(()))

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        for i, record in _then(first, every):
            yield i, record if columns is None else {c: record[c] for c in columns if c in record}

    return Records(tuple(first[1]), rows())  # the first record's keys name the columns


def _then(first, rest):
    yield first
    yield from rest


def _parquet_records(path: Path, start: int, limit: int | None, columns: Sequence[str] | None) -> Records:
    import pyarrow.parquet as pq  # only when a parquet file is read (validation stays light otherwise)

    names = tuple(pq.read_schema(path).names)
    read = [c for c in (columns if columns is not None else names) if c in names]
    table = pq.read_table(path, columns=list(dict.fromkeys(read)))
    if start or limit:
        table = table.slice(start, limit)
    return Records(names, enumerate(table.to_pylist(), start + 1))


@dataclass(frozen=True)
class _Scan:
    columns: tuple[str, ...]
    labels: dict[str, tuple[int, int]]  # raw label value -> (first line/row number, count)
    short: dict[str, tuple[int, int]] | None = None  # column -> (first line whose row lacks it, count)
    # subcase value that is no safe metric-name part -> (first line, count)
    unsafe: dict[str, tuple[int, int]] | None = None


def unsafe_subcase(value: Any) -> bool:
    """Subcase values become parts of MLflow metric keys, which may become file paths: a '.' or '..'
    part, a leading '/' or a control character is refused (`x/../../etc`)."""
    text = "" if value is None else str(value)
    return text.startswith("/") or any(seg in (".", "..") for seg in text.split("/")) or any(ord(c) < 32 for c in text)


_CACHE: dict[tuple, _Scan] = {}


def check_source(source, labels: list[str], regression: bool, base_dir: str) -> list[tuple[str, str]]:
    """Problems with one local source as (key under the source, message); [] for a hub source."""
    if source.path is None:
        return []
    path = resolve(source.path, base_dir)
    if not path.is_file():
        return [("path", f"data file not found: {path}")]
    if path.suffix.lower() not in FORMATS:
        return [("path", f"unsupported data file type {path.suffix!r} ({path}); use {', '.join(FORMATS)}")]
    try:
        scan = _scan(path, source)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return [("path", f"cannot read {path}: {type(e).__name__}: {e}")]
    if not scan.columns:
        return [("path", f"{path}: the file is empty")]
    shown = ", ".join(scan.columns) if len(scan.columns) <= 20 else ", ".join(scan.columns[:20]) + ", ..."
    problems = []
    for key, columns in (
        ("text_a", [source.text_a]),
        ("text_b", [source.text_b]),
        ("label", [source.label]),
        ("subcase", subcase_columns(source)),
    ):
        for col in columns:
            if col is not None and col not in scan.columns:
                hint = " (header = false: columns are numbered 0, 1, ...)" if not source.header else ""
                problems.append((key, f"{path}: column {col!r} not found (columns: {shown}){hint}"))
    if any(k == "label" for k, _ in problems):
        return problems
    if not scan.labels and not scan.short:
        return problems + [
            (
                "path",
                f"{path}: no data rows"
                + (" (only a header)" if source.header and path.suffix.lower() in (".csv", ".tsv") else ""),
            )
        ]
    where = "line" if path.suffix.lower() != ".parquet" else "row"
    for col, (line, count) in (scan.short or {}).items():
        key = next(
            k
            for k, cols in (
                ("label", [source.label]),
                ("text_a", [source.text_a]),
                ("text_b", [source.text_b]),
                ("subcase", subcase_columns(source)),
            )
            if col in cols
        )
        problems.append((key, f"{path}: {where} {line} has no {col!r} field ({count} such row(s))"))
    for raw, (line, count) in sorted((scan.unsafe or {}).items(), key=lambda kv: kv[1])[:1]:
        problems.append(
            (
                "subcase",
                f"{path}: {where} {line}: subcase value {raw!r} cannot be part of a metric name "
                f"('.' or '..' parts, a leading '/' and control characters are refused; {count} such row(s))",
            )
        )
    bad = {
        raw: at
        for raw, at in scan.labels.items()
        if parse_label(raw, source.label_map, labels, regression) is None and not is_unlabelled(raw)
    }
    if bad:
        first = min(bad.values())
        raw = next(r for r, at in bad.items() if at == first)
        values = ", ".join(f"{r!r} x{n}" for r, (_, n) in sorted(bad.items(), key=lambda kv: kv[1][0])[:5])
        if regression:
            expected = "a number (a regression task's score)"
        elif source.label_map is not None:
            expected = f"a key of its label_map ({', '.join(map(repr, source.label_map))})"
        else:
            expected = f"one of {labels} or an index 0..{len(labels) - 1}"
        problems.append(
            (
                "label",
                f"{path}: {where} {first[0]}: label {raw!r} is not {expected} "
                f"(unexpected values: {values}); declare the labels or a label_map",
            )
        )
    return problems


def _scan(path: Path, source) -> _Scan:
    stat = path.stat()
    key = (
        str(path.resolve()),
        stat.st_mtime_ns,
        stat.st_size,
        source.header,
        source.label,
        source.span(),
        source.every,
        tuple(_needed(source)),
    )
    if key not in _CACHE:
        _CACHE[key] = _scan_records(path, source)
    return _CACHE[key]


def _needed(source) -> list[str]:
    """Every column a row must have."""
    return [c for c in (source.text_a, source.text_b, source.label, *subcase_columns(source)) if c is not None]


def _short(short: dict[str, tuple[int, int]], col: str, position: int) -> None:
    at, n = short.get(col, (position, 0))
    short[col] = (at, n + 1)


def _tally(labels: dict[str, tuple[int, int]], raw: Any, position: int) -> None:
    """Count one raw label value: value (as text) -> (first line/row, count)."""
    k = "" if raw is None else str(raw).strip()
    at, n = labels.get(k, (position, 0))
    labels[k] = (at, n + 1)


def _scan_records(path: Path, source) -> _Scan:
    """What the checks need of a file, read with `read_records` as the runners read it: its columns, each raw
    label value (first position, count), rows lacking a declared column, unsafe subcase values."""
    start, count = source.span()
    records = read_records(path, source.header, count, _needed(source), start)
    labels: dict[str, tuple[int, int]] = {}
    short: dict[str, tuple[int, int]] = {}
    unsafe: dict[str, tuple[int, int]] = {}
    if source.label not in records.columns:
        return _Scan(records.columns, {})
    needed = [c for c in _needed(source) if c in records.columns]
    subcases = [c for c in subcase_columns(source) if c in records.columns]
    for position, row in itertools.islice(records.rows, 0, None, source.every):
        for c in needed:
            if c not in row:
                _short(short, c, position)
        if source.label in row:
            _tally(labels, row[source.label], position)
        for c in subcases:
            if c in row and unsafe_subcase(row[c]):
                _tally(unsafe, row[c], position)
    return _Scan(records.columns, labels, short, unsafe)


def overlapping_rows(task, base_dir: str) -> list[str]:
    """A sentence for each pair of a task's sources (train, eval, ood sets) that read overlapping rows of one file
    or hub split: an evaluation on rows the model trained on. Empty when they are disjoint."""
    sources = [("task.train", task.train), ("task.eval", task.eval), *((f"task.ood.{o.name}", o) for o in task.ood)]
    spans = []
    for key, source in sources:
        if source is None:
            continue
        if source.path is not None:
            origin = str(resolve(source.path, base_dir).resolve())
        else:
            origin = f"{source.hub} ({source.config}, {source.split or 'train'}, {source.revision})"
        start, count = source.span()
        spans.append((key, origin, source.path or source.hub, start, None if count is None else start + count))
    found = []
    for i, (key_a, origin_a, shown, start_a, end_a) in enumerate(spans):
        for key_b, origin_b, _, start_b, end_b in spans[i + 1 :]:
            low, high = max(start_a, start_b), min(e for e in (end_a, end_b, float("inf")) if e is not None)
            if origin_a == origin_b and low < high:
                rows = "every row from " + str(low) if high == float("inf") else f"rows {low}..{int(high) - 1}"
                found.append(f"{key_a} and {key_b} both read {shown}, {rows}: set disjoint `rows` (or `limit`)")
    return found


__all__ = [
    "overlapping_rows",
    "parse_label",
    "is_unlabelled",
    "subcase_columns",
    "unsafe_subcase",
    "check_source",
    "resolve",
    "read_records",
    "Records",
    "FORMATS",
    "UNLABELLED",
]
