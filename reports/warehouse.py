"""The DuckDB warehouse: views over the Parquet tables that runners log to MLflow.

MLflow is the system of record; this module only reads it. Each FINISHED parent run (tag ``subnets.kind`` = "run", as
the run index lists them: registry.runindex) carries ``tables/*.parquet`` artifacts (reports.sources finds them); the
warehouse is an in-memory DuckDB connection with one table per contract table (loaded once from those files by
reports.loading, through the store's warehouse cache, reports.cache, when given), the runs' MLflow tags as ``run_tags``
(run_id, key, value), their package versions as ``run_versions`` (run_id, package, version), the machine each ran on as
``run_machines`` (run_id, machine), and the derived views of reports/sql, so it can be rebuilt from MLflow at any time.
Runs tagged otherwise (a logged report is ``subnets.kind`` = "report") are never counted.

Read-only: once loaded, the connection loses file-system access (DuckDB's enable_external_access, locked),
so a query cannot read or write files (COPY ... TO, ATTACH, read_parquet('...'), INSTALL all fail); it
can only read the loaded tables and create temporary in-memory tables that vanish with the process.
"""

from __future__ import annotations

import logging
import re
import warnings
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import duckdb

from registry.keeprule import KEEP_LINE_SQL
from reports import cache, loading
from reports.sources import TABLES, Sources, find_tables, run_of, without

log = logging.getLogger(__name__)

__all__ = [
    "DERIVED_VIEWS",
    "FINDINGS_COLUMNS",
    "TABLES",
    "Sources",
    "Warehouse",
    "connect",
    "findings_names",
    "findings_sql",
    "load_finding",
    "load_sql",
    "open_warehouse",
    "query",
    "query_all",
    "sql_names",
]

# Derived views, defined in reports/sql/<name>.sql, created after the table views.
DERIVED_VIEWS = ("primary_steps", "run_groups", "effective_size")


# The findings view: one file per claim in reports/sql/findings/ (reports/sql/findings/_macros.sql holds the text
# helpers and the table macros they share), each yielding these columns in this order; the view is their union.
FINDINGS_COLUMNS = (
    "claim_no",
    "study",
    "claim",
    "experiment",
    "scope",
    "numbers",
    "n",
    "seeds",
    "verdict",
    "why",
    "sql_file",
)


def sql_names() -> list[str]:
    """Every named query in reports/sql/."""
    return sorted(
        p.name.removesuffix(".sql") for p in (resources.files("reports") / "sql").iterdir() if p.name.endswith(".sql")
    )


def load_sql(name: str) -> str:
    """The text of reports/sql/<name>.sql."""
    return (resources.files("reports") / "sql" / f"{name}.sql").read_text(encoding="utf-8")


def _findings_dir():
    return resources.files("reports") / "sql" / "findings"


def findings_names() -> list[str]:
    """The findings' SQL files, reports/sql/findings/<name>.sql, one per claim, in claim order."""
    names = [p.name.removesuffix(".sql") for p in _findings_dir().iterdir() if p.name.endswith(".sql")]
    return sorted((n for n in names if not n.startswith("_")), key=lambda n: (_claim_no(load_finding(n)), n))


def load_finding(name: str) -> str:
    """The text of reports/sql/findings/<name>.sql."""
    return (_findings_dir() / f"{name}.sql").read_text(encoding="utf-8")


def _claim_no(text: str) -> int:
    found = re.search(r"^-- Finding (\d+)", text, flags=re.M)
    return int(found.group(1)) if found else 1_000


def findings_sql() -> str:
    """The findings view's query: the union of the findings' files, by claim, experiment and scope."""
    parts = [f"SELECT * FROM (\n{load_finding(n).strip().rstrip(';')}\n)" for n in findings_names()]
    return "SELECT * FROM (\n" + "\nUNION ALL\n".join(parts) + "\n)\nORDER BY claim_no, experiment NULLS LAST, scope"


def connect(sources: Sources, strict: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection over the runs' tables (see `_connect`). A run whose table file cannot be read
    (truncated, overwritten, damaged) is named with its file and left out; the others load."""
    while True:
        try:
            return _connect(sources, strict)
        except duckdb.Error as e:
            bad = run_of(sources, str(e))
            if bad is None:
                raise
            run_id, path = bad
            log.warning("run %s: %s cannot be read (%s); the run is left out", run_id, path, str(e).splitlines()[0])
            sources = without(sources, run_id)


def _connect(sources: Sources, strict: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one table per contract table, loaded from the given files (through
    the warehouse cache when sources.cache is set).

    Normally every declared column exists in its table (NULL where an older file lacks it, an empty typed
    table where no run logged it), and the connection is then locked read-only (see the module docstring).
    `strict` builds views from the files alone, so a query naming a column the runners did not write
    fails: the check that runners and reports still agree. Files of a newer contract are left out."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")  # timestamps read the same on every machine
    loading.insert_tags(con, sources.tags)
    if strict:
        newer = loading.newer_than_contract([p for paths in sources.files.values() for p in paths], con)
        for view in TABLES:
            files = [p for p in sources.files.get(view) or [] if p not in newer]
            if files:
                con.execute(
                    f'CREATE VIEW "{view}" AS SELECT * FROM read_parquet([{loading.listing(files)}], '
                    "union_by_name = true)"
                )
    elif sources.cache is not None and sources.runs:
        cache.load_cached(con, sources)
    else:
        newer = loading.newer_than_contract([p for paths in sources.files.values() for p in paths], con)
        loading.create_tables(con, {v: [p for p in paths if p not in newer] for v, paths in sources.files.items()})
    con.execute(KEEP_LINE_SQL)  # the keep rule, as registry.keeprule declares it
    for view in DERIVED_VIEWS:  # materialised too (they are the same for every query), except in strict mode
        con.execute(f'CREATE {"VIEW" if strict else "TABLE"} "{view}" AS {load_sql(view)}')
    # the findings' helpers: after the derived views, since DuckDB binds a table macro's body (over runs and
    # primary_steps) when it is created
    con.execute(load_finding("_macros"))
    # The findings view: at once in strict mode (the check that the findings bind to the logged columns), else
    # by the Warehouse when a statement first names it (binding it takes longer than loading a small store's
    # tables, and most queries never read it)
    if strict:
        _create_findings(con, strict)
    else:
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    return con


def _relations(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}


def _create_findings(con: duckdb.DuckDBPyConnection, strict: bool = False) -> None:
    """The findings view (a view: computed when read). Strict mode builds views only over the tables some run logged,
    so there it exists only when every contract table does (and then checks the findings' columns)."""
    if not strict or all(view in _relations(con) for view in TABLES):
        con.execute(f"CREATE VIEW findings AS {findings_sql()}")


_NAMES_FINDINGS = re.compile(r"\bfindings\b", re.IGNORECASE)


class Warehouse:
    """An open warehouse; use as a context manager or call close()."""

    def __init__(self, sources: Sources, strict: bool = False):
        self.sources = sources
        self.con = connect(sources, strict)
        self._findings = strict  # created yet (strict mode makes it at once)

    def _before(self, sql: str) -> None:
        """Create the findings view before the first statement that names it (or a word spelled so: no harm)."""
        if not self._findings and _NAMES_FINDINGS.search(sql):
            _create_findings(self.con)
            self._findings = True

    def query(self, sql: str, params: dict[str, Any] | None = None) -> tuple[list[str], list[tuple]]:
        """Run SQL; return (column names, rows)."""
        self._before(sql)
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

    def statements(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[list[str], list[tuple]]]:
        """Run every statement of a script; (column names, rows) of each, in order. A statement is given
        the parameters it names ($experiment); one naming a parameter not given fails with its name."""
        self._before(sql)
        results = []
        for statement in self.con.extract_statements(sql):
            names = set(statement.named_parameters)
            missing = sorted(names - set(params or {}))
            if missing:
                raise ValueError(
                    f"the query needs parameter(s) {', '.join(missing)}: pass --param "
                    + " --param ".join(f"{m}=..." for m in missing)
                )
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


def open_warehouse(
    tracking_uri: str,
    experiments: Iterable[str] | None = None,
    strict: bool = False,
    cache_dir: Path | None = None,
    warehouse_dir: Path | None = None,
) -> Warehouse:
    """Build the warehouse from MLflow: FINISHED parent runs of all (or the named) experiments; through the
    warehouse cache in `warehouse_dir` when given (never in strict mode, which reads the runs' own files)."""
    names = list(experiments) if experiments is not None else None
    return Warehouse(find_tables(tracking_uri, names, cache_dir, None if strict else warehouse_dir), strict)


def query(
    tracking_uri: str,
    sql: str,
    experiments: Iterable[str] | None = None,
    cache_dir: Path | None = None,
    warehouse_dir: Path | None = None,
) -> tuple[list[str], list[tuple]]:
    """One-shot query: (column names, rows) of its last statement."""
    with open_warehouse(tracking_uri, experiments, cache_dir=cache_dir, warehouse_dir=warehouse_dir) as wh:
        return wh.query(sql)


def query_all(
    tracking_uri: str,
    sql: str,
    params: dict[str, Any] | None = None,
    cache_dir: Path | None = None,
    warehouse_dir: Path | None = None,
) -> list[tuple[list[str], list[tuple]]]:
    """The CLI's `subnets query`: (column names, rows) of every statement of `sql`, in order."""
    with open_warehouse(tracking_uri, cache_dir=cache_dir, warehouse_dir=warehouse_dir) as wh:
        return wh.statements(sql, params)
