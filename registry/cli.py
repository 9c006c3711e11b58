"""The `subnets` command line. It only parses arguments and calls library functions.

It is the composition root: commands import runners/ and reports/ lazily, inside their bodies, so
`validate` and `plan` never load torch, transformers, MLflow or DuckDB. The rest of registry/ imports
neither package."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Declarative experiments on the subnetworks of fine-tuned BERT-family encoders.")
out = Console()
err = Console(stderr=True, soft_wrap=True)

FileOpt = typer.Option(Path("experiments.toml"), "--file", "-f", help="The experiments file.")
StoreOpt = typer.Option(Path("."), "--store", help="Directory holding mlflow.db, mlartifacts/ and the cache (.subnets/).",
                        envvar="SUBNETS_STORE")


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(message, markup=False, highlight=False)
    return typer.Exit(code)


def _load(file: Path, experiment: str | None = None):
    from registry.catalogue import UnknownName
    from registry.loader import ConfigError, load_runs, select

    try:
        return select(load_runs(file), experiment)
    except ConfigError as e:
        err.print(f"[bold red]{len(e.problems)} problem(s) in {file}[/]")
        for p in e.problems:
            err.print(f"  {p}", markup=False, highlight=False)
        raise typer.Exit(2)
    except UnknownName as e:
        raise _fail(f"{file}: {e}")


@app.command()
def validate(file: Path = FileOpt,
             explain: bool = typer.Option(False, "--explain", help="Print every experiments.toml key with its description."),
             markdown: bool = typer.Option(False, "--markdown", help="With --explain: print a Markdown table.")):
    """Check experiments.toml; report every problem at once (exit code 2 on any)."""
    if explain:
        from registry.explain import markdown as md, rows

        if markdown:
            out.print(md(), markup=False, highlight=False, soft_wrap=True)
            return
        table = Table("table", "key", "default", "description", show_lines=False)
        for row in rows():
            table.add_row(*row)
        out.print(table)
        return
    runs = _load(file)
    names = list(dict.fromkeys(r.experiment for r in runs))
    out.print(f"{file}: OK — {len(names)} experiment(s), {len(runs)} run(s)")


@app.command()
def plan(experiment: Optional[str] = typer.Argument(None, help="Only this experiment."),
         file: Path = FileOpt, store: Path = StoreOpt):
    """Print the expanded runs, their fingerprints and whether each is already done."""
    from runners.tracking import Store

    runs = _load(file, experiment)
    st = Store.at(store)
    status = {name: st.run_status(name) for name in dict.fromkeys(r.experiment for r in runs)}
    table = Table("experiment", "method", "run", "fine-tuned model", "status")
    table.add_column("fingerprint", no_wrap=True, min_width=16)
    for r in runs:
        s = status[r.experiment].get(r.fingerprint)
        shown = "[green]done[/]" if s == "FINISHED" else "to run" if s is None else f"[yellow]{s.lower()} (will rerun)[/]"
        table.add_row(r.experiment, r.prune.method, r.label(), r.finetune_fingerprint[:8], shown, r.fingerprint)
    out.print(table)
    done = sum(status[r.experiment].get(r.fingerprint) == "FINISHED" for r in runs)
    models = len({r.finetune_fingerprint for r in runs})
    out.print(f"{len(runs)} run(s) on {models} fine-tuned model(s): {done} done, {len(runs) - done} to run")


def _interrupt(*_):
    raise KeyboardInterrupt


@app.command()
def run(experiment: Optional[str] = typer.Argument(None, help="Only this experiment (default: all)."),
        file: Path = FileOpt, store: Path = StoreOpt,
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars.")):
    """Run every expanded run not already FINISHED (matched by fingerprint) and log it to MLflow."""
    import signal

    from runners.data import SourceError
    from runners.pruning import UnsupportedArchitecture
    from runners.run import execute
    from runners.tracking import Progress, Store
    from runners.training import DeviceError

    runs = _load(file, experiment)
    # a plain `kill` should end the current run as KILLED, like Ctrl-C, not leave it RUNNING
    signal.signal(signal.SIGTERM, _interrupt)
    st = Store.at(store)
    st.ensure()  # create the tracking store once, before any work
    progress = Progress(enabled=not quiet)
    status = {name: st.run_status(name) for name in dict.fromkeys(r.experiment for r in runs)}
    todo = [r for r in runs if status[r.experiment].get(r.fingerprint) != "FINISHED"]
    out.print(f"{len(runs)} run(s), {len(runs) - len(todo)} already done, {len(todo)} to run")
    for i, spec in enumerate(todo, 1):
        out.print(f"[bold]\\[{i}/{len(todo)}] {spec.experiment}[/] {spec.fingerprint} {spec.prune.method} ({spec.label()})")
        try:
            o = execute(spec, st, progress)
        except KeyboardInterrupt:
            raise _fail("interrupted: the current run is marked KILLED; finished runs are kept", 130)
        except (SourceError, OSError, UnsupportedArchitecture, DeviceError) as e:  # missing data, unreachable hub, bad model, no GPU
            raise _fail(f"{file}: experiment {spec.experiment!r}: {e}\n(the run is marked FAILED; finished runs are kept)")
        ood = ", ".join(f"{k} {v.accuracy:.3f}" for k, v in o.selected.results.items() if k != "id")
        out.print(f"  full model: ID {o.baseline['id'].accuracy:.3f}; kept step {o.selected.step} of {o.steps} "
                  f"(sparsity {o.selected.sparsity:.3f}): ID {o.selected.results['id'].accuracy:.3f}"
                  f"{'; ' + ood if ood else ''}")
        out.print(f"  stopped: {o.stop_reason}  [{o.seconds:.0f} s, run {o.run_id}]")
        for v in o.variants:
            vood = ", ".join(f"{k} {r.accuracy:.3f}" for k, r in v.results.items() if k != "id")
            out.print(f"    {v.variant}: ID {v.results['id'].accuracy:.3f}{'; ' + vood if vood else ''}")


@app.command()
def report(store: Path = StoreOpt,
           output: Path = typer.Option(Path("out/report.html"), "--out", "-o", help="Where to write the HTML report."),
           experiment: Optional[list[str]] = typer.Option(None, "--experiment", "-e", help="Only these experiments.")):
    """Write one self-contained HTML report from the logged results (DuckDB over the runs' Parquet tables)."""
    from reports.build import build_report
    from runners.tracking import Store

    st = Store.at(store)
    if not st.exists():
        raise _fail(f"no tracking store at {st.tracking_uri}: run `subnets run` first")
    path = build_report(st.tracking_uri, output, experiment or None)
    out.print(f"report written to {path}")


@app.command()
def query(sql: str = typer.Argument(..., help="SQL over the views runs, steps, units, cka."),
          store: Path = StoreOpt):
    """Run SQL over the warehouse (DuckDB views over every finished run's tables) and print the result."""
    from reports.warehouse import query as run_query
    from runners.tracking import Store

    st = Store.at(store)
    try:
        columns, rows = run_query(st.tracking_uri, sql)
    except Exception as e:  # DuckDB's own message names the problem (parse error, unknown column, ...)
        raise _fail(f"query failed: {e}")
    table = Table(*columns)
    for row in rows:
        table.add_row(*("" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    out.print(table)


@app.command()
def ui(store: Path = StoreOpt, port: int = typer.Option(5000, help="Port on 127.0.0.1.")):
    """Open the MLflow UI on 127.0.0.1 over this project's tracking store."""
    from runners.tracking import Store

    st = Store.at(store)
    os.execvp(sys.executable, [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", st.tracking_uri,
                               "--host", "127.0.0.1", "--port", str(port)])


if __name__ == "__main__":
    app()
