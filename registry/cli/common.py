"""What every command shares: the Typer app, the consoles, the common options, the one-line failure and loading
the experiments file with every problem printed."""

from __future__ import annotations

import csv
import gc
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Declarative experiments on the subnetworks of fine-tuned BERT-family encoders.",
)
# A command's start-up is mostly imports: torch, transformers, MLflow and Optuna make ~600k objects, none of them
# garbage. At CPython's default thresholds (700, 10, 10) the cyclic collector walks them again and again as they
# are made: 1.3-1.7 s of the ~9 s a worker's imports take here. At these it still runs (so reference cycles are
# still freed) but ~15 times less often, and takes ~0.5 s of them.
GC_THRESHOLDS = (10_000, 10, 10)


def main(argv: list[str] | None = None) -> None:
    """The `subnets` command: the console script, `python -m registry.cli` and each local worker (`argv`)."""
    gc.set_threshold(*GC_THRESHOLDS)
    if argv is None:
        app()
    else:
        app(args=argv, prog_name="subnets")


# Off a terminal (a pipe, a file, a scheduler's log) nothing is cut to 80 columns: `plan | grep` finds every name.
out = Console() if sys.stdout.isatty() else Console(width=100_000)
err = Console(stderr=True, soft_wrap=True)

FileOpt = typer.Option(Path("experiments.toml"), "--file", "-f", help="The experiments file.")
StoreOpt = typer.Option(
    Path("."),
    "--store",
    help="Directory holding mlflow.db, mlartifacts/ and the cache (.subnets/).",
    envvar="SUBNETS_STORE",
)


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(message, markup=False, highlight=False, soft_wrap=True)  # a path or key is never cut across lines
    return typer.Exit(code)


def open_store(store: Path, tracking_uri: str | None = None, create: bool = False):
    """The project's store: created (run, sweep) or required to exist (read-only commands never create one).
    An unreachable tracking server or an unwritable directory is a clear error before any work."""
    from runners.tracking import Store
    from runners.tracking.store import StoreUnavailable

    st = Store.at(store, tracking_uri)
    try:
        if create:
            st.ensure()
        elif not st.exists():  # a mistyped --store is not "0 rows"
            raise fail(f"no tracking store at {st.tracking_uri}: check --store, or run `subnets run` first")
    except StoreUnavailable as e:
        raise fail(f"store: {e}")
    return st


def load(file: Path, experiment: str | None = None):
    from registry.catalogue import UnknownName
    from registry.loader import ConfigError, load_runs, select

    try:
        return select(load_runs(file), experiment)
    except ConfigError as e:
        err.print(f"[bold red]{len(e.problems)} problem(s) in {escape(str(file))}[/]")
        for p in e.problems:
            err.print(f"  {p}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    except UnknownName as e:
        raise fail(f"{file}: {e}")


StorageOpt = typer.Option(
    None,
    "--storage",
    envvar="SUBNETS_STORAGE",
    help="Optuna storage URL: the work queue and search record (default: sqlite under --store; "
    "a postgresql:// URL to share it between machines).",
)
TrackingOpt = typer.Option(
    None,
    "--tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    help="MLflow tracking URI (default: sqlite under --store; an http:// tracking server for many machines).",
)


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


FormatOpt = typer.Option(Format.table, "--format", help="table (for people), json or csv (for scripts).")


def emit(rows: list[dict[str, Any]], fmt: Format, document: Any = None) -> None:
    """Rows for a script: JSON (`document` when given, else the rows) or CSV (nested values as JSON)."""
    if fmt is Format.json:
        sys.stdout.write(json.dumps(document if document is not None else rows, indent=2, default=str) + "\n")
        return
    columns = list(dict.fromkeys(k for r in rows for k in r))
    writer = csv.DictWriter(sys.stdout, columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()})


WorkersOpt = typer.Option(1, "--workers", "-w", min=1, help="Local worker processes pulling from the queue.")
ThreadsOpt = typer.Option(
    None,
    "--threads",
    min=1,
    envvar="SUBNETS_THREADS",
    help="torch threads per worker (default: the cores this process may use / workers; recorded with every run).",
)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return (
        f"{seconds:.0f} s"
        if seconds < 120
        else f"{seconds / 60:.0f} min"
        if seconds < 7200
        else f"{seconds / 3600:.1f} h"
    )


def print_studies(summaries) -> None:
    table = Table("study", "run", "trials", "running (worker, s)", "ETA", "effective size", "best")
    for s in summaries:
        states = (
            ", ".join(f"{k.lower()} {v}" for k, v in sorted((k.name, v) for k, v in s.states.items())) or "none yet"
        )
        budget = f" of {s.budget}" if s.budget else ""
        running = "; ".join(f"#{n} {w} {sec:.0f}" for n, w, sec in s.running) or "—"
        best = "—" if s.best_kept is None else f"{s.best_kept:.3f}"
        params = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in (s.best_params or {}).items()
        )
        if s.pareto is not None:
            params = f"{s.pareto} on the Pareto front"
        eta = _duration(s.eta_s) if s.remaining else "done"
        table.add_row(s.name.short(), s.label or "—", states + budget, running, eta, best, params or "—")
    out.print(table)


def queue_summaries(url: str, studies) -> list:
    """The queue's summaries of these studies; a damaged or incompatible queue database is one line (exit 2), not a
    traceback."""
    from runners.queue import summarise
    from runners.queue.storage import StorageUnusable

    try:
        return summarise(url, studies)
    except StorageUnusable as e:
        raise fail(str(e))
