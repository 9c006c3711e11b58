"""report, query and ui: reading what the runs logged."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from registry.cli.common import StoreOpt, TrackingOpt, app, err, fail, open_store, out


@app.command()
def report(
    store: Path = StoreOpt,
    output: Path = typer.Option(Path("out/report.html"), "--out", "-o", help="Where to write the HTML report."),
    experiment: Optional[list[str]] = typer.Option(None, "--experiment", "-e", help="Only these experiments."),
    tracking_uri: Optional[str] = TrackingOpt,
    mlflow_log: bool = typer.Option(
        True,
        "--mlflow/--no-mlflow",
        help="Also log report.html to a run tagged subnets.kind=report in each reported MLflow experiment.",
    ),
):
    """Write one self-contained HTML report from the logged results (DuckDB over the runs' Parquet tables).

    The same data gives the same bytes. Every figure names the reports/sql query behind it (rerun it with
    `subnets query --file`)."""
    from reports.build import build_report

    st = open_store(store, tracking_uri)
    path = build_report(
        st.tracking_uri,
        output,
        experiment or None,
        cache_dir=st.root / ".subnets" / "tables",
        log_to_mlflow=mlflow_log,
        warehouse_dir=st.root / ".subnets" / "warehouse",
    )
    out.print(
        f"report written to {path} ({path.stat().st_size:,} bytes)"
        + ("; logged to MLflow (runs tagged subnets.kind=report)" if mlflow_log else "")
    )


@app.command()
def query(
    sql: Optional[str] = typer.Argument(
        None,
        help="SQL over the views runs, axes, steps, units, cka, run_tags, run_versions, run_machines, primary_steps, "
        "run_groups, effective_size.",
    ),
    file: Optional[Path] = typer.Option(
        None,
        "--file",
        "-f",
        help="Run the SQL in this file instead, e.g. reports/sql/runs.sql (a figure's named query).",
    ),
    param: Optional[list[str]] = typer.Option(
        None, "--param", "-p", help="NAME=VALUE for a $NAME in the SQL, e.g. --param experiment=demo (repeatable)."
    ),
    fmt: str = typer.Option(
        "table",
        "--format",
        help="table (whole rows, aligned), csv, json (one array of row objects per statement, one per "
        "line) or parquet (needs --output).",
    ),
    output: Optional[Path] = typer.Option(
        None,
        "--output",
        "-o",
        help="Write here instead of printing (required for parquet; several statements: NAME.1.parquet, ...).",
    ),
    store: Path = StoreOpt,
    tracking_uri: Optional[str] = TrackingOpt,
):
    """Run SQL over the warehouse and print every statement's result (read-only).

    The warehouse is an in-memory DuckDB loaded from the finished runs' Parquet tables (and their MLflow tags);
    once loaded it has no file access, so a query cannot change the store (COPY ... TO, ATTACH, read_parquet('...')
    and INSTALL fail). It can only read the loaded tables and create temporary in-memory tables that vanish when the
    command ends."""
    from reports.output import FORMATS, write_parquet, write_text
    from reports.warehouse import query_all

    if (sql is None) == (file is None):
        raise fail("give the SQL as an argument or --file FILE.sql (one of them)")
    if fmt not in FORMATS:
        raise fail(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt == "parquet" and output is None:
        raise fail("--format parquet needs --output FILE.parquet")
    params = {}
    for item in param or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise fail(f"--param {item!r}: expected NAME=VALUE, e.g. experiment=demo")
        params[name.strip()] = value
    if file is not None:
        try:
            sql = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise fail(f"{file}: cannot read: {e}")
    st = open_store(store, tracking_uri)
    try:
        results = query_all(
            st.tracking_uri,
            sql,
            params,
            cache_dir=st.root / ".subnets" / "tables",
            warehouse_dir=st.root / ".subnets" / "warehouse",
        )
    except Exception as e:  # DuckDB's own message names the problem (parse error, unknown column, ...)
        raise fail(f"query failed{f' ({file})' if file else ''}: {e}")
    if fmt == "parquet":
        for path in write_parquet(results, output):
            err.print(f"wrote {path}", markup=False, highlight=False)
    elif output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        with open(output, "w", encoding="utf-8", newline="") as f:
            write_text(results, fmt, f)
    else:
        write_text(results, fmt, sys.stdout)


@app.command()
def ui(
    store: Path = StoreOpt,
    port: int = typer.Option(5000, help="Port."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (127.0.0.1: this machine only)."),
):
    """Open the MLflow UI over this project's tracking store (one process: stopping it stops everything)."""
    from runners.tracking.ui import serve_ui

    st = open_store(store)
    out.print(f"MLflow UI on http://{host}:{port} over {st.tracking_uri} (Ctrl-C stops it)")
    serve_ui(st, port, host)


if __name__ == "__main__":
    app()
