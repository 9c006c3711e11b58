"""The DuckDB warehouse: views over the Parquet tables that runners log to MLflow.

MLflow is the system of record; this module only reads it. Each FINISHED parent run (tag
``subnets.kind`` = "run") carries ``tables/*.parquet`` artifacts; the warehouse is an in-memory
DuckDB connection with one table per contract table (loaded once from those files), the runs' MLflow
tags as ``run_tags`` (run_id, key, value), and the derived views of reports/sql, so it can be rebuilt
from MLflow at any time. Runs tagged otherwise (a logged report is ``subnets.kind`` = "report") are
never counted.

A store's warehouse cache (`.subnets/warehouse/` under the store, when given): finished runs never change, so
their tables are kept merged, one Parquet file per table, with a manifest of the runs they hold (per run and
table the file's size, mtime and contract version). A report reads the merged files plus only the new runs'
files and rewrites the merge (under a lock, files then manifest, each by rename); a run no longer among the
store's finished runs (superseded by a rerun of its fingerprint, deleted) or whose files changed drops out,
and a new contract version starts the merge over. Losing the cache only costs time.

Read-only: once loaded, the connection loses file-system access (DuckDB's enable_external_access, locked),
so a query cannot read or write files (COPY ... TO, ATTACH, read_parquet('...'), INSTALL all fail); it
can only read the loaded tables and create temporary in-memory tables that vanish with the process.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import duckdb

from registry.results import RESULTS_VERSION, VERSION_KEY
from registry.results import TABLES as CONTRACT

log = logging.getLogger(__name__)

_DUCKDB = {"string": "VARCHAR", "int64": "BIGINT", "float64": "DOUBLE", "bool": "BOOLEAN", "timestamp": "TIMESTAMPTZ"}

# view name -> (artifact file under tables/, declared columns), from the results contract. The declared
# columns always exist in the view (NULL where an older file lacks them).
TABLES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    name: (table.file, [(c.name, _DUCKDB[c.type]) for c in table.columns]) for name, table in CONTRACT.items()
}

# Derived views, defined in reports/sql/<name>.sql, created after the table views.
DERIVED_VIEWS = ("primary_steps", "run_groups", "effective_size")

RUN_FILTER = "tags.`subnets.kind` = 'run' and attributes.status = 'FINISHED'"


def sql_names() -> list[str]:
    """Every named query in reports/sql/."""
    return sorted(p.name.removesuffix(".sql") for p in (resources.files("reports") / "sql").iterdir()
                  if p.name.endswith(".sql"))


def load_sql(name: str) -> str:
    """The text of reports/sql/<name>.sql."""
    return (resources.files("reports") / "sql" / f"{name}.sql").read_text(encoding="utf-8")


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


def _local_path(artifact_uri: str) -> Path | None:
    """A local directory for an artifact URI, or None when it is not on a local file store."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        raw = Path(url2pathname(parsed.path))
        # MLflow does not always percent-encode file URIs; prefer the literal path if it exists.
        return raw if raw.exists() else Path(url2pathname(unquote(parsed.path)))
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # plain path (or a Windows drive letter)
        return Path(artifact_uri)
    return None


def _experiment_ids(client: Any, experiments: Sequence[str] | None) -> list[str]:
    if experiments is not None:
        ids = []
        for name in experiments:
            exp = client.get_experiment_by_name(name)
            if exp is None or exp.lifecycle_stage != "active":
                log.warning("no MLflow experiment named %r", name)
            else:
                ids.append(exp.experiment_id)
        return ids
    ids, token = [], None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        ids += [e.experiment_id for e in page]
        token = page.token
        if not token:
            return ids


def _finished_runs(client: Any, experiment_ids: list[str]) -> list[Any]:
    """FINISHED parent runs, newest first, one per (experiment, fingerprint).

    A fingerprint decides whether a run is done, so a second finished run of the same fingerprint
    (a forced rerun) supersedes the older one instead of being counted twice.
    """
    runs, token = [], None
    while experiment_ids:
        page = client.search_runs(experiment_ids, filter_string=RUN_FILTER, max_results=1000,
                                  order_by=["attributes.start_time DESC"], page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            break
    seen, kept = set(), []
    for run in runs:
        key = (run.info.experiment_id, run.data.tags.get("subnets.fingerprint", run.info.run_id))
        if key not in seen:
            seen.add(key)
            kept.append(run)
    return kept


@dataclass
class _Info:
    run_id: str
    experiment_id: str
    artifact_uri: str


@dataclass
class _Data:
    tags: dict[str, str]


@dataclass
class _Run:
    """The parts of an MLflow Run the warehouse reads, from a local SQLite store."""

    info: _Info
    data: _Data


# MLflow's SQLite schema (tables runs, tags, experiments; stable since MLflow 1.x): the FINISHED, active parent
# runs tagged subnets.kind = run of active experiments, newest first, with every tag.
_SQLITE_RUNS = """
SELECT r.run_uuid, r.experiment_id, e.name, r.artifact_uri, t.key, t.value
FROM runs AS r
JOIN experiments AS e ON e.experiment_id = r.experiment_id
JOIN tags AS kind ON kind.run_uuid = r.run_uuid AND kind.key = 'subnets.kind' AND kind.value = 'run'
LEFT JOIN tags AS t ON t.run_uuid = r.run_uuid
WHERE r.status = 'FINISHED' AND r.lifecycle_stage = 'active' AND e.lifecycle_stage = 'active'
ORDER BY r.start_time DESC, r.run_uuid, t.key
"""


def _sqlite_finished_runs(db: Path, experiments: Sequence[str] | None) -> list[_Run]:
    """What _finished_runs returns, read from a local MLflow SQLite store with sqlite3 (read-only): the
    same runs without importing MLflow or opening its store (seconds of CPU before any query)."""
    import sqlite3

    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        rows = con.execute(_SQLITE_RUNS).fetchall()
    finally:
        con.close()
    runs: dict[str, _Run] = {}
    names: dict[str, str] = {}
    for run_id, exp_id, name, artifact_uri, key, value in rows:
        run = runs.get(run_id)
        if run is None:
            run = runs[run_id] = _Run(_Info(run_id, str(exp_id), artifact_uri), _Data({}))
            names[run_id] = name
        if key is not None:
            run.data.tags[key] = value
    if experiments is not None:
        known = set(names.values())
        for name in experiments:
            if name not in known:
                log.warning("no finished runs in an MLflow experiment named %r", name)
    seen, kept = set(), []
    for run_id, run in runs.items():  # newest first
        if experiments is not None and names[run_id] not in experiments:
            continue
        key = (run.info.experiment_id, run.data.tags.get("subnets.fingerprint", run_id))
        if key not in seen:
            seen.add(key)
            kept.append(run)
    return kept


def _local_sqlite(tracking_uri: str) -> Path | None:
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        return db if db.is_file() else None
    return None


def find_tables(tracking_uri: str, experiments: Sequence[str] | None = None, cache_dir: Path | None = None,
                warehouse_dir: Path | None = None) -> Sources:
    """Locate the Parquet tables of FINISHED parent runs (optionally of the named experiments).

    A local SQLite store is read with sqlite3; other stores through the MLflow client. Tables of runs on a
    remote artifact store (a tracking server) are downloaded through the MLflow client, into
    `cache_dir/<run_id>` when given: a finished run's tables never change, so each is fetched once.
    `warehouse_dir` is the store's warehouse cache (see the module docstring)."""
    db = _local_sqlite(tracking_uri)
    if db is not None:
        runs = _sqlite_finished_runs(db, experiments)
    else:
        from mlflow import MlflowClient  # imported lazily: mlflow is slow to import

        client = MlflowClient(tracking_uri=tracking_uri)
        runs = _finished_runs(client, _experiment_ids(client, experiments))
    src = Sources(cache=Path(warehouse_dir) if warehouse_dir is not None else None, complete=experiments is None)
    for run in runs:
        tables_dir = _tables_dir(run, tracking_uri, src, cache_dir)
        if tables_dir is None or not tables_dir.is_dir():
            log.warning("finished run %s has no tables/ artifacts; skipped", run.info.run_id)
            continue
        run_id = run.info.run_id
        tables_dir = Path(os.path.abspath(tables_dir))  # no per-file resolve(): a thousand runs' worth of syscalls
        src.run_ids.append(run_id)
        src.tags += [(run_id, k, v) for k, v in sorted(run.data.tags.items())]
        held = src.runs[run_id] = {}
        for view, (filename, _) in TABLES.items():
            path = tables_dir / filename
            try:
                st = os.stat(path)
            except OSError:
                continue
            held[view] = (path, st.st_size, st.st_mtime_ns)
            src.files[view].append(path)
    return src


def _versions(paths: list[Path], con: duckdb.DuckDBPyConnection | None = None) -> dict[str, int]:
    """{file: its results contract version}, read in one DuckDB pass over the Parquet footers (a file without
    the stamp predates versions: 1)."""
    if not paths:
        return {}
    listing = ", ".join(_sql_str(str(p)) for p in paths)
    own = con is None
    con = duckdb.connect(":memory:") if own else con
    try:
        rows = con.execute(f"SELECT file_name, decode(value) FROM parquet_kv_metadata([{listing}]) "
                           f"WHERE decode(key) = {_sql_str(VERSION_KEY)}").fetchall()
    finally:
        if own:
            con.close()
    versions = {str(p): 1 for p in paths}
    versions.update({name: int(version) for name, version in rows})
    return versions


def _newer_than_contract(paths: list[Path], con: duckdb.DuckDBPyConnection | None = None) -> set[Path]:
    """Files written by a newer subnets (contract version above ours), each logged."""
    newer = set()
    for name, version in _versions(paths, con).items():
        if version > RESULTS_VERSION:
            log.warning("%s was written by a newer subnets (results contract v%s > v%d); skipped", name, version,
                        RESULTS_VERSION)
            newer.add(Path(name))
    return newer


def results_version(path: Path) -> int:
    """The contract version stamped in a table file (1: written before versions were stamped)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return int(meta.get(VERSION_KEY.encode(), b"1"))


def _tables_dir(run: Any, tracking_uri: str, src: Sources, cache_dir: Path | None = None) -> Path | None:
    local = _local_path(run.info.artifact_uri)
    if local is not None and local.exists():
        return local / "tables"
    import mlflow.artifacts  # remote artifact store: download into a directory we own

    if cache_dir is not None:
        done = Path(cache_dir) / run.info.run_id / "tables"
        if done.is_dir():
            return done
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache_dir))
        try:
            got = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="tables",
                                                           dst_path=str(staging), tracking_uri=tracking_uri))
            (done.parent).mkdir(exist_ok=True)
            os.replace(got, done)  # atomic: a half-downloaded run is never taken for a cached one
            return done
        except Exception as exc:  # noqa: BLE001 - a run without tables is skipped, not fatal
            log.warning("could not download tables of run %s: %s", run.info.run_id, exc)
            return None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if src.tmpdir is None:
        src.tmpdir = tempfile.TemporaryDirectory(prefix="subnets-warehouse-")
    dst = Path(src.tmpdir.name) / run.info.run_id
    dst.mkdir()
    try:
        return Path(mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="tables", dst_path=str(dst),
            tracking_uri=tracking_uri))
    except Exception as exc:  # noqa: BLE001 - a run without tables is skipped, not fatal
        log.warning("could not download tables of run %s: %s", run.info.run_id, exc)
        return None


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _insert_tags(con: duckdb.DuckDBPyConnection, tags: list[tuple[str, str, str]]) -> None:
    con.execute("CREATE TABLE run_tags (run_id VARCHAR, key VARCHAR, value VARCHAR)")
    if tags:  # one statement with three list parameters: executemany costs a round trip per tag
        run_ids, keys, values = (list(col) for col in zip(*tags))
        con.execute("INSERT INTO run_tags SELECT unnest($1::VARCHAR[]), unnest($2::VARCHAR[]), unnest($3::VARCHAR[])",
                    [run_ids, keys, values])


def _listing(paths: Iterable[Path | str]) -> str:
    return ", ".join(_sql_str(str(p)) for p in paths)


def _create_tables(con: duckdb.DuckDBPyConnection, files: dict[str, list[Path]],
                   merged: dict[str, Path] | None = None, keep: bool = False) -> None:
    """One table per contract table: the declared columns (NULL where an older file lacks one, an empty typed
    table where no run logged it), from the given files plus, per table, a merged file of the warehouse cache
    (only its rows whose run_id is in the temporary table _keep when `keep`)."""
    for view, (_, columns) in TABLES.items():
        cols = ", ".join(f'"{name}" {typ}' for name, typ in columns)
        # The typed empty table fixes the view's columns even when no run has this table yet.
        con.execute(f'CREATE TABLE "_empty_{view}" ({cols})')
        body = f'SELECT * FROM "_empty_{view}"'
        if merged and view in merged:
            body += f" UNION ALL BY NAME SELECT * FROM read_parquet({_sql_str(str(merged[view]))})"
            if keep:
                body += " WHERE run_id IN (SELECT run_id FROM _keep)"
        if files.get(view):
            body += f" UNION ALL BY NAME SELECT * FROM read_parquet([{_listing(files[view])}], union_by_name = true)"
        # Loaded once: every figure's query then reads memory, not a thousand files again. Sorted, so the rows
        # are in one order whatever order the files (or the cache's merge) came in: the same data gives the same
        # bytes even where a query's result depends on row order (ties, the last bits of a float sum).
        con.execute(f'CREATE TABLE "{view}" AS SELECT * FROM ({body}) ORDER BY ALL')
        con.execute(f'DROP TABLE "_empty_{view}"')


def connect(sources: Sources, strict: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one table per contract table, loaded from the given files (through
    the warehouse cache when sources.cache is set).

    Normally every declared column exists in its table (NULL where an older file lacks it, an empty typed
    table where no run logged it), and the connection is then locked read-only (see the module docstring).
    `strict` builds views from the files alone, so a query naming a column the runners did not write
    fails: the check that runners and reports still agree. Files of a newer contract are left out."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")  # timestamps read the same on every machine
    _insert_tags(con, sources.tags)
    if strict:
        newer = _newer_than_contract([p for paths in sources.files.values() for p in paths], con)
        for view in TABLES:
            files = [p for p in sources.files.get(view) or [] if p not in newer]
            if files:
                con.execute(f'CREATE VIEW "{view}" AS SELECT * FROM read_parquet([{_listing(files)}], union_by_name = true)')
    elif sources.cache is not None and sources.runs:
        _load_cached(con, sources)
    else:
        newer = _newer_than_contract([p for paths in sources.files.values() for p in paths], con)
        _create_tables(con, {v: [p for p in paths if p not in newer] for v, paths in sources.files.items()})
    for view in DERIVED_VIEWS:  # materialised too (they are the same for every query), except in strict mode
        con.execute(f'CREATE {"VIEW" if strict else "TABLE"} "{view}" AS {load_sql(view)}')
    if not strict:
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    return con


# The warehouse cache (see the module docstring). Its manifest names the merged file of each table and, per run,
# the files it holds: {view: [size, mtime_ns, contract version]}. A different FORMAT, contract version or set of
# declared columns starts the merge over.
CACHE_FORMAT = 1
MANIFEST = "manifest.json"


def _declared() -> dict[str, list[list[str]]]:
    return {view: [list(c) for c in columns] for view, (_, columns) in TABLES.items()}


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """An exclusive lock on the warehouse cache (released by the OS if its holder dies)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _read_manifest(cache: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((cache / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("warehouse cache %s: unreadable manifest (%s); rebuilt from the runs' files", cache, exc)
        return {}
    if (not isinstance(manifest, dict) or manifest.get("format") != CACHE_FORMAT
            or manifest.get("results_version") != RESULTS_VERSION or manifest.get("columns") != _declared()):
        return {}
    return manifest


def _fresh_files(sources: Sources, run_ids: list[str], con: duckdb.DuckDBPyConnection
                 ) -> tuple[dict[str, list[Path]], dict[str, int]]:
    """The files of the given runs per table, less those of a newer contract (each logged); and every file's
    contract version."""
    versions = _versions([path for run_id in run_ids for path, _, _ in sources.runs[run_id].values()], con)
    for name, version in versions.items():
        if version > RESULTS_VERSION:
            log.warning("%s was written by a newer subnets (results contract v%s > v%d); skipped", name, version,
                        RESULTS_VERSION)
    files: dict[str, list[Path]] = {view: [] for view in TABLES}
    for run_id in run_ids:
        for view, (path, _, _) in sources.runs[run_id].items():
            if versions[str(path)] <= RESULTS_VERSION:
                files[view].append(path)
    return files, versions


def _load_cached(con: duckdb.DuckDBPyConnection, sources: Sources) -> None:
    """Load the tables from the warehouse cache's merged files (the runs it holds, their files unchanged) plus
    the other runs' own files; then, when these are all the store's finished runs and the merge lacks some or
    holds others, rewrite it. Without a usable cache (read-only store, full disk, a damaged merged file) the
    tables come from every run's own files."""
    cache = Path(sources.cache)
    try:
        with _locked(cache):
            manifest = _read_manifest(cache)
            held = manifest.get("runs", {})
            merged = {view: cache / name for view, name in manifest.get("files", {}).items()}

            def same(run_id: str) -> bool:
                files = sources.runs[run_id]
                return ({v: tuple(f[:2]) for v, f in held[run_id].items()}
                        == {v: (size, mtime) for v, (_, size, mtime) in files.items()})

            reuse = [run_id for run_id in sources.runs if run_id in held and same(run_id)]
            fresh = [run_id for run_id in sources.runs if not (run_id in held and same(run_id))]
            files, versions = _fresh_files(sources, fresh, con)
            keep = len(reuse) < len(held)  # the merge holds runs not to be read
            if keep:
                con.execute("CREATE TEMP TABLE _keep AS SELECT unnest($1::VARCHAR[]) AS run_id", [reuse])
            try:
                con.execute("BEGIN")
                _create_tables(con, files, merged if reuse else None, keep)
                con.execute("COMMIT")
            except duckdb.Error as exc:  # a merged file lost or damaged: every run's own files instead
                con.execute("ROLLBACK")
                log.warning("warehouse cache %s: %s; read from the runs' files instead", cache, exc)
                reuse, fresh = [], list(sources.runs)
                files, versions = _fresh_files(sources, fresh, con)
                _create_tables(con, files)
            finally:
                if keep:
                    con.execute("DROP TABLE _keep")
            if sources.complete and (fresh or len(reuse) < len(held)):
                runs = {run_id: held[run_id] for run_id in reuse}
                runs.update({run_id: {v: [size, mtime, versions[str(path)]]
                                      for v, (path, size, mtime) in sources.runs[run_id].items()
                                      if versions[str(path)] <= RESULTS_VERSION} for run_id in fresh})
                try:
                    _write_merge(con, cache, runs)
                except (OSError, duckdb.Error) as exc:  # the report goes on; the next one tries again
                    log.warning("warehouse cache %s not updated: %s", cache, exc)
    except OSError as exc:  # no cache directory or lock here (a read-only store, say)
        log.info("warehouse cache %s not usable (%s); reading every run's files", cache, exc)
        if not _has_tables(con):
            files, _ = _fresh_files(sources, list(sources.runs), con)
            _create_tables(con, files)


def _has_tables(con: duckdb.DuckDBPyConnection) -> bool:
    names = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    return all(view in names for view in TABLES)


def _write_merge(con: duckdb.DuckDBPyConnection, cache: Path, runs: dict[str, Any]) -> None:
    """Write each loaded table as the cache's new merged file, then the manifest naming them (renamed into place:
    a reader sees the old merge or the new one), then remove files no manifest names (old merges, leftovers of a
    writer that died). Called under the cache's lock."""
    token = secrets.token_hex(6)
    files = {}
    for view in TABLES:
        if con.execute(f'SELECT count(*) FROM "{view}"').fetchone()[0]:
            files[view] = f"{view}.{token}.parquet"
            con.execute(f'COPY "{view}" TO {_sql_str(str(cache / files[view]))} (FORMAT parquet)')
    manifest = {"format": CACHE_FORMAT, "results_version": RESULTS_VERSION, "columns": _declared(),
                "files": files, "runs": runs}
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=f".{MANIFEST}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(manifest, f, sort_keys=True)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the merge from the store's other readers
        os.replace(tmp, cache / MANIFEST)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    for path in cache.iterdir():
        if path.name not in files.values() and path.name not in (MANIFEST, ".lock"):
            path.unlink(missing_ok=True)


class Warehouse:
    """An open warehouse; use as a context manager or call close()."""

    def __init__(self, sources: Sources, strict: bool = False):
        self.sources = sources
        self.con = connect(sources, strict)

    def query(self, sql: str, params: dict[str, Any] | None = None
              ) -> tuple[list[str], list[tuple]]:
        """Run SQL; return (column names, rows)."""
        return self._fetch(self.con.execute(sql, params) if params else self.con.execute(sql))

    @staticmethod
    def _fetch(cur: duckdb.DuckDBPyConnection) -> tuple[list[str], list[tuple]]:
        if cur.description is None:
            return [], []
        cols = [d[0] for d in cur.description]
        if not any("WITH TIME ZONE" in str(d[1]) for d in cur.description):
            return cols, cur.fetchall()
        # DuckDB turns TIMESTAMPTZ into Python values only through pytz, which is not a dependency;
        # Arrow's conversion uses zoneinfo. Columns are zipped by position (names may repeat).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Arrow output on a DB-API result makes a copy"
            table = cur.to_arrow_table()
        return cols, list(zip(*(c.to_pylist() for c in table.columns)))

    def named_rows(self, sql: str) -> list[dict[str, Any]]:
        """Rows of any SQL as dicts."""
        cols, rows = self.query(sql)
        return [dict(zip(cols, row)) for row in rows]

    def statements(self, sql: str, params: dict[str, Any] | None = None
                   ) -> list[tuple[list[str], list[tuple]]]:
        """Run every statement of a script; (column names, rows) of each, in order. A statement is given
        the parameters it names ($experiment); one naming a parameter not given fails with its name."""
        results = []
        for statement in self.con.extract_statements(sql):
            names = set(statement.named_parameters)
            missing = sorted(names - set(params or {}))
            if missing:
                raise ValueError(f"the query needs parameter(s) {', '.join(missing)}: pass --param "
                                 + " --param ".join(f"{m}=..." for m in missing))
            given = {k: v for k, v in (params or {}).items() if k in names}
            results.append(self._fetch(self.con.execute(statement, given) if given else self.con.execute(statement)))
        return results

    def named(self, name: str, **params: Any) -> list[dict[str, Any]]:
        """Run reports/sql/<name>.sql with $-named parameters; rows as dicts."""
        cols, rows = self.query(load_sql(name), params or None)
        return [dict(zip(cols, row)) for row in rows]

    def close(self) -> None:
        self.con.close()
        if self.sources.tmpdir is not None:
            self.sources.tmpdir.cleanup()

    def __enter__(self) -> "Warehouse":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_warehouse(tracking_uri: str, experiments: Iterable[str] | None = None, strict: bool = False,
                   cache_dir: Path | None = None, warehouse_dir: Path | None = None) -> Warehouse:
    """Build the warehouse from MLflow: FINISHED parent runs of all (or the named) experiments; through the
    warehouse cache in `warehouse_dir` when given (never in strict mode, which reads the runs' own files)."""
    names = list(experiments) if experiments is not None else None
    return Warehouse(find_tables(tracking_uri, names, cache_dir, None if strict else warehouse_dir), strict)


def query(tracking_uri: str, sql: str, experiments: Iterable[str] | None = None, cache_dir: Path | None = None,
          warehouse_dir: Path | None = None) -> tuple[list[str], list[tuple]]:
    """One-shot query: (column names, rows) of its last statement."""
    with open_warehouse(tracking_uri, experiments, cache_dir=cache_dir, warehouse_dir=warehouse_dir) as wh:
        return wh.query(sql)


def query_all(tracking_uri: str, sql: str, params: dict[str, Any] | None = None,
              cache_dir: Path | None = None, warehouse_dir: Path | None = None) -> list[tuple[list[str], list[tuple]]]:
    """The CLI's `subnets query`: (column names, rows) of every statement of `sql`, in order."""
    with open_warehouse(tracking_uri, cache_dir=cache_dir, warehouse_dir=warehouse_dir) as wh:
        return wh.statements(sql, params)
