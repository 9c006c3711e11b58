"""A store's warehouse cache (`.subnets/warehouse/` under the store): the finished runs' tables kept merged.

Finished runs never change, so their tables are kept merged, one Parquet file per table, with a manifest of the
runs they hold (per run and table the file's size, mtime and contract version). A report reads the merged files
plus only the new runs' files and rewrites the merge (under a lock, files then manifest, the manifest renamed into
place); a run no longer among the store's finished runs (superseded by a rerun of its fingerprint, deleted) or
whose files changed drops out, and a new contract version starts the merge over. Losing the cache only costs time.
"""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path
from typing import Any

import duckdb

from registry.files import locked, write_atomic
from registry.results import RESULTS_VERSION
from reports import loading
from reports.sources import TABLES, Sources

log = logging.getLogger(__name__)

# The manifest names the merged file of each table and, per run, the files it holds: {view: [size, mtime_ns,
# contract version]}. A different FORMAT, contract version or set of declared columns starts the merge over.
CACHE_FORMAT = 1
MANIFEST = "manifest.json"
LOCK = ".lock"


def _declared() -> dict[str, list[list[str]]]:
    return {view: [list(c) for c in columns] for view, (_, columns) in TABLES.items()}


def _read_manifest(cache: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((cache / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("warehouse cache %s: unreadable manifest (%s); rebuilt from the runs' files", cache, exc)
        return {}
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != CACHE_FORMAT
        or manifest.get("results_version") != RESULTS_VERSION
        or manifest.get("columns") != _declared()
    ):
        return {}
    return manifest


def load_cached(con: duckdb.DuckDBPyConnection, sources: Sources) -> None:
    """Load the tables from the warehouse cache's merged files (the runs it holds, their files unchanged) plus
    the other runs' own files; then, when these are all the store's finished runs and the merge lacks some or
    holds others, rewrite it. Without a usable cache (read-only store, full disk, a damaged merged file) the
    tables come from every run's own files."""
    cache = Path(sources.cache)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with locked(cache / LOCK):
            _load_locked(con, sources, cache)
    except OSError as exc:  # no cache directory or lock here (a read-only store, say)
        log.info("warehouse cache %s not usable (%s); reading every run's files", cache, exc)
        if not loading.has_tables(con):
            files, _ = loading.fresh_files(sources, list(sources.runs), con)
            loading.create_tables(con, files)


def _load_locked(con: duckdb.DuckDBPyConnection, sources: Sources, cache: Path) -> None:
    manifest = _read_manifest(cache)
    held = manifest.get("runs", {})
    merged = {view: cache / name for view, name in manifest.get("files", {}).items()}

    def same(run_id: str) -> bool:
        files = sources.runs[run_id]
        return {v: tuple(f[:2]) for v, f in held[run_id].items()} == {
            v: (size, mtime) for v, (_, size, mtime) in files.items()
        }

    reuse = [run_id for run_id in sources.runs if run_id in held and same(run_id)]
    fresh = [run_id for run_id in sources.runs if not (run_id in held and same(run_id))]
    files, versions = loading.fresh_files(sources, fresh, con)
    keep = len(reuse) < len(held)  # the merge holds runs not to be read
    if keep:
        con.execute("CREATE TEMP TABLE _keep AS SELECT unnest($1::VARCHAR[]) AS run_id", [reuse])
    try:
        con.execute("BEGIN")
        loading.create_tables(con, files, merged if reuse else None, keep)
        con.execute("COMMIT")
    except duckdb.Error as exc:  # a merged file lost or damaged: every run's own files instead
        con.execute("ROLLBACK")
        log.warning("warehouse cache %s: %s; read from the runs' files instead", cache, exc)
        reuse, fresh = [], list(sources.runs)
        files, versions = loading.fresh_files(sources, fresh, con)
        loading.create_tables(con, files)
    finally:
        if keep:
            con.execute("DROP TABLE _keep")
    if sources.complete and (fresh or len(reuse) < len(held)):
        runs = {run_id: held[run_id] for run_id in reuse}
        runs.update(
            {
                run_id: {
                    v: [size, mtime, versions[str(path)]]
                    for v, (path, size, mtime) in sources.runs[run_id].items()
                    if versions[str(path)] <= RESULTS_VERSION
                }
                for run_id in fresh
            }
        )
        try:
            _write_merge(con, cache, runs)
        except (OSError, duckdb.Error) as exc:  # the report goes on; the next one tries again
            log.warning("warehouse cache %s not updated: %s", cache, exc)


def _write_merge(con: duckdb.DuckDBPyConnection, cache: Path, runs: dict[str, Any]) -> None:
    """Write each loaded table as the cache's new merged file, then the manifest naming them (renamed into place:
    a reader sees the old merge or the new one), then remove files no manifest names (old merges, leftovers of a
    writer that died). Called under the cache's lock."""
    token = secrets.token_hex(6)
    files = {}
    for view in TABLES:
        if con.execute(f'SELECT count(*) FROM "{view}"').fetchone()[0]:
            files[view] = f"{view}.{token}.parquet"
            con.execute(f'COPY "{view}" TO {loading.sql_str(str(cache / files[view]))} (FORMAT parquet)')
    manifest = {
        "format": CACHE_FORMAT,
        "results_version": RESULTS_VERSION,
        "columns": _declared(),
        "files": files,
        "runs": runs,
    }
    write_atomic(cache / MANIFEST, json.dumps(manifest, sort_keys=True))
    for path in cache.iterdir():
        if path.name not in files.values() and path.name not in (MANIFEST, LOCK):
            path.unlink(missing_ok=True)
