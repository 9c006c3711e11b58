"""Where the warehouse's data lies: the `tables/*.parquet` artifacts of each finished run the run index lists
(registry.runindex), as local files, with the run's tags.

A run on a local artifact store is read in place; a run on a remote one (a tracking server) has its tables
downloaded through MLflow, into a cache directory when given (a finished run's tables never change, so each is
fetched once) or into a temporary directory kept until the warehouse closes.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from registry.files import replacing
from registry.results import TABLES as CONTRACT
from registry.runindex import RunRecord, download_artifacts, local_artifact_path, open_index

log = logging.getLogger(__name__)

_DUCKDB = {"string": "VARCHAR", "int64": "BIGINT", "float64": "DOUBLE", "bool": "BOOLEAN", "timestamp": "TIMESTAMPTZ"}

# view name -> (artifact file under tables/, declared columns), from the results contract. The declared
# columns always exist in the view (NULL where an older file lacks them).
TABLES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    name: (table.file, [(c.name, _DUCKDB[c.type]) for c in table.columns]) for name, table in CONTRACT.items()
}


REQUIRED_VIEWS = ("runs", "steps")  # every finished run of every contract version logs these two


@dataclass
class Sources:
    """Local Parquet files per view, plus where downloaded artifacts live (kept until close)."""

    files: dict[str, list[Path]] = field(default_factory=lambda: {t: [] for t in TABLES})
    run_ids: list[str] = field(default_factory=list)
    tags: list[tuple[str, str, str]] = field(default_factory=list)  # (run_id, key, value) of each run
    tmpdir: tempfile.TemporaryDirectory | None = None
    # For the warehouse cache: each run's files, {run_id: {view: (path, size, mtime_ns)}}; the cache directory;
    # and whether the runs are all the store's finished runs (no experiment filter), so the merge may be rewritten.
    runs: dict[str, dict[str, tuple[Path, int, int]]] = field(default_factory=dict)
    cache: Path | None = None
    complete: bool = False


def find_tables(
    tracking_uri: str,
    experiments: Sequence[str] | None = None,
    cache_dir: Path | None = None,
    warehouse_dir: Path | None = None,
) -> Sources:
    """Locate the Parquet tables of the runs the warehouse counts (RunIndex.finished_runs: FINISHED parent runs,
    one per fingerprint) of all or the named experiments. Tables on a remote artifact store are downloaded, into
    `cache_dir/<run_id>` when given. `warehouse_dir` is the store's warehouse cache (reports.cache)."""
    src = Sources(cache=Path(warehouse_dir) if warehouse_dir is not None else None, complete=experiments is None)
    for run in open_index(tracking_uri).finished_runs(experiments):
        tables_dir = _tables_dir(run, tracking_uri, src, cache_dir)
        if tables_dir is None or not tables_dir.is_dir():
            log.warning("finished run %s has no tables/ artifacts; skipped", run.run_id)
            continue
        run_id = run.run_id
        tables_dir = Path(os.path.abspath(tables_dir))  # no per-file resolve(): a thousand runs' worth of syscalls
        held = {}
        for view, (filename, _) in TABLES.items():
            path = tables_dir / filename
            try:
                st = os.stat(path)
            except OSError:
                continue
            held[view] = (path, st.st_size, st.st_mtime_ns)
        missing = [TABLES[v][0] for v in REQUIRED_VIEWS if v not in held]
        if missing:
            log.warning("run %s (%s): tables/%s is missing; the run is left out", run_id, run.experiment, missing[0])
            continue
        src.run_ids.append(run_id)
        src.tags += [(run_id, k, v) for k, v in sorted(run.tags.items())]
        src.runs[run_id] = held
        for view, (path, _, _) in held.items():
            src.files[view].append(path)
    return src


def without(src: Sources, run_id: str) -> Sources:
    """The same sources without one run (a run whose table file cannot be read is left out of the warehouse)."""
    return replace(
        src,
        files={view: [p for p in paths if not _holds(src, run_id, p)] for view, paths in src.files.items()},
        run_ids=[r for r in src.run_ids if r != run_id],
        tags=[t for t in src.tags if t[0] != run_id],
        runs={r: held for r, held in src.runs.items() if r != run_id},
    )


def _holds(src: Sources, run_id: str, path: Path) -> bool:
    return any(p == path for p, _, _ in src.runs.get(run_id, {}).values())


def run_of(src: Sources, text: str) -> tuple[str, Path] | None:
    """The run and the file named in `text` (a reader's error message), if it names one of the runs' files."""
    for run_id, held in src.runs.items():
        for path, _, _ in held.values():
            if str(path) in text:
                return run_id, path
    return None


def _tables_dir(run: RunRecord, tracking_uri: str, src: Sources, cache_dir: Path | None = None) -> Path | None:
    local = local_artifact_path(run.artifact_uri)
    if local is not None and local.exists():
        return local / "tables"
    try:
        if cache_dir is not None:
            done = Path(cache_dir) / run.run_id
            if (done / "tables").is_dir():
                return done / "tables"
            try:
                with replacing(done) as staging:  # renamed whole: a half-downloaded run is never taken for a cached one
                    staging.mkdir()
                    download_artifacts(tracking_uri, run.run_id, "tables", staging)
            except OSError:
                if not (done / "tables").is_dir():  # not another process that cached it first
                    raise
            return done / "tables"
        if src.tmpdir is None:
            src.tmpdir = tempfile.TemporaryDirectory(prefix="subnets-warehouse-")
        dst = Path(src.tmpdir.name) / run.run_id
        dst.mkdir()
        return download_artifacts(tracking_uri, run.run_id, "tables", dst)
    except Exception as exc:  # noqa: BLE001 - a run without tables is skipped, not fatal
        log.warning("could not download tables of run %s: %s", run.run_id, exc)
        return None
