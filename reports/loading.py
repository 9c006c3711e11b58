"""Loading the runs' Parquet files into DuckDB: one table per contract table with every declared column, the runs'
tags as `run_tags` (their package versions as `run_versions`), and the contract version each file was written
under (files of a newer contract are left out).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

import duckdb

from registry.results import RESULTS_VERSION, VERSION_KEY
from registry.tracking import MACHINE, VERSION_PREFIX
from reports.sources import TABLES, Sources

log = logging.getLogger(__name__)


def sql_str(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def listing(paths: Iterable[Path | str]) -> str:
    """Paths as a comma-separated list of SQL string literals."""
    return ", ".join(sql_str(str(p)) for p in paths)


def versions(paths: list[Path], con: duckdb.DuckDBPyConnection | None = None) -> dict[str, int]:
    """{file: its results contract version}, read in one DuckDB pass over the Parquet footers (a file without
    the stamp predates versions: 1)."""
    if not paths:
        return {}
    own = con is None
    con = duckdb.connect(":memory:") if own else con
    try:
        rows = con.execute(
            f"SELECT file_name, decode(value) FROM parquet_kv_metadata([{listing(paths)}]) "
            f"WHERE decode(key) = {sql_str(VERSION_KEY)}"
        ).fetchall()
    finally:
        if own:
            con.close()
    found = {str(p): 1 for p in paths}
    found.update({name: int(version) for name, version in rows})
    return found


def _newer(found: dict[str, int]) -> set[str]:
    """The files of a newer contract than ours, each logged."""
    newer = set()
    for name, version in found.items():
        if version > RESULTS_VERSION:
            log.warning(
                "%s was written by a newer subnets (results contract v%s > v%d); skipped",
                name,
                version,
                RESULTS_VERSION,
            )
            newer.add(name)
    return newer


def newer_than_contract(paths: list[Path], con: duckdb.DuckDBPyConnection | None = None) -> set[Path]:
    """Files written by a newer subnets (contract version above ours), each logged."""
    return {Path(name) for name in _newer(versions(paths, con))}


def results_version(path: Path) -> int:
    """The contract version stamped in a table file (1: written before versions were stamped)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return int(meta.get(VERSION_KEY.encode(), b"1"))


def fresh_files(
    sources: Sources, run_ids: list[str], con: duckdb.DuckDBPyConnection
) -> tuple[dict[str, list[Path]], dict[str, int]]:
    """The files of the given runs per table, less those of a newer contract (each logged); and every file's
    contract version."""
    found = versions([path for run_id in run_ids for path, _, _ in sources.runs[run_id].values()], con)
    newer = _newer(found)
    files: dict[str, list[Path]] = {view: [] for view in TABLES}
    for run_id in run_ids:
        for view, (path, _, _) in sources.runs[run_id].items():
            if str(path) not in newer:
                files[view].append(path)
    return files, found


def insert_tags(con: duckdb.DuckDBPyConnection, tags: list[tuple[str, str, str]]) -> None:
    """The run_tags table, (run_id, key, value) of every run, and two views over it: run_versions, (run_id, package,
    version) of each package version a run recorded (its tags named registry.tracking.VERSION_PREFIX + package), and
    run_machines, (run_id, machine) of each run that recorded where it ran (registry.tracking.MACHINE)."""
    con.execute("CREATE TABLE run_tags (run_id VARCHAR, key VARCHAR, value VARCHAR)")
    if tags:  # one statement with three list parameters: executemany costs a round trip per tag
        run_ids, keys, values = (list(col) for col in zip(*tags))
        con.execute(
            "INSERT INTO run_tags SELECT unnest($1::VARCHAR[]), unnest($2::VARCHAR[]), unnest($3::VARCHAR[])",
            [run_ids, keys, values],
        )
    prefix = sql_str(VERSION_PREFIX)
    con.execute(
        f"CREATE VIEW run_versions AS SELECT run_id, substr(key, length({prefix}) + 1) AS package, "
        f"value AS version FROM run_tags WHERE starts_with(key, {prefix})"
    )
    con.execute(
        f"CREATE VIEW run_machines AS SELECT run_id, value AS machine FROM run_tags WHERE key = {sql_str(MACHINE)}"
    )


def create_tables(
    con: duckdb.DuckDBPyConnection,
    files: dict[str, list[Path]],
    merged: dict[str, Path] | None = None,
    keep: bool = False,
) -> None:
    """One table per contract table: the declared columns (NULL where an older file lacks one, an empty typed
    table where no run logged it), from the given files plus, per table, a merged file of the warehouse cache
    (only its rows whose run_id is in the temporary table _keep when `keep`)."""
    for view, (_, columns) in TABLES.items():
        cols = ", ".join(f'"{name}" {typ}' for name, typ in columns)
        # The typed empty table fixes the view's columns even when no run has this table yet.
        con.execute(f'CREATE TABLE "_empty_{view}" ({cols})')
        body = f'SELECT * FROM "_empty_{view}"'
        if merged and view in merged:
            body += f" UNION ALL BY NAME SELECT * FROM read_parquet({sql_str(str(merged[view]))})"
            if keep:
                body += " WHERE run_id IN (SELECT run_id FROM _keep)"
        if files.get(view):
            body += f" UNION ALL BY NAME SELECT * FROM read_parquet([{listing(files[view])}], union_by_name = true)"
        # Loaded once: every figure's query then reads memory, not a thousand files again. Sorted, so the rows
        # are in one order whatever order the files (or the cache's merge) came in: the same data gives the same
        # bytes even where a query's result depends on row order (ties, the last bits of a float sum).
        con.execute(f'CREATE TABLE "{view}" AS SELECT * FROM ({body}) ORDER BY ALL')
        con.execute(f'DROP TABLE "_empty_{view}"')


def has_tables(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether every contract table is loaded."""
    names = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    return all(view in names for view in TABLES)
