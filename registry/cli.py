"""The `subnets` command line. It only parses arguments and calls library functions.

It is the composition root: commands import runners/ and reports/ lazily, inside their bodies, so
`validate` and `plan` never load torch, transformers, MLflow or DuckDB. The rest of registry/ imports
neither package."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from registry.studyname import StudyName

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Declarative experiments on the subnetworks of fine-tuned BERT-family encoders.")
out = Console()
err = Console(stderr=True, soft_wrap=True)

FileOpt = typer.Option(Path("experiments.toml"), "--file", "-f", help="The experiments file.")
StoreOpt = typer.Option(Path("."), "--store", help="Directory holding mlflow.db, mlartifacts/ and the cache (.subnets/).",
                        envvar="SUBNETS_STORE")


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(message, markup=False, highlight=False, soft_wrap=True)  # a path or key is never cut across lines
    return typer.Exit(code)


def _open_store(store: Path, tracking_uri: str | None = None, create: bool = False):
    """The project's store: created (run, sweep) or required to exist (read-only commands never create one).
    An unreachable tracking server or an unwritable directory is a clear error before any work."""
    from runners.tracking import Store
    from runners.tracking.store import StoreUnavailable

    st = Store.at(store, tracking_uri)
    try:
        if create:
            st.ensure()
        elif not st.exists():  # a mistyped --store is not "0 rows"
            raise _fail(f"no tracking store at {st.tracking_uri}: check --store, or run `subnets run` first")
    except StoreUnavailable as e:
        raise _fail(f"store: {e}")
    return st


def _load(file: Path, experiment: str | None = None):
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
    from registry.models import unknown_hub_id_note

    notes = {(r.experiment, note) for r in runs if (note := unknown_hub_id_note(r.model, r.base_dir))}
    for experiment, note in sorted(notes):
        out.print(f"note: experiment {experiment!r}, key model.name: {note}", markup=False, highlight=False,
                  soft_wrap=True)


@app.command()
def plan(experiment: Optional[str] = typer.Argument(None, help="Only this experiment."),
         file: Path = FileOpt, store: Path = StoreOpt,
         storage: Optional[str] = typer.Option(None, "--storage", envvar="SUBNETS_STORAGE", help="Optuna storage URL (default: sqlite under --store)."),
         tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking URI.")):
    """Print the expanded runs, the fine-tuned model each uses, their fingerprints and what is done; and
    the queue's studies (grids and searches) with their trials."""
    from runners.tracking import Store
    from registry.tracking import RunStatus
    from runners.tracking.store import StoreUnavailable

    runs = _load(file, experiment)
    st = Store.at(store, tracking_uri)
    try:
        status = {name: st.run_status(name) for name in dict.fromkeys(r.experiment for r in runs)}
    except StoreUnavailable as e:
        raise _fail(f"store: {e}")
    table = Table("experiment", "method", "run", "fine-tuned model", "status")
    table.add_column("fingerprint", no_wrap=True, min_width=16)
    for r in runs:
        s = status[r.experiment].get(r.fingerprint)
        shown = ("[green]done[/]" if s == RunStatus.FINISHED else "to run" if s is None
                 else "[yellow]process gone (will rerun)[/]" if s == "GONE" else f"[yellow]{s.lower()} (will rerun)[/]")
        table.add_row(r.experiment, r.prune.method, r.label(), r.finetune_fingerprint[:8], shown, r.fingerprint)
    out.print(table)
    done = sum(status[r.experiment].get(r.fingerprint) == RunStatus.FINISHED for r in runs)
    models = len({r.finetune_fingerprint for r in runs})
    out.print(f"{len(runs)} run(s) on {models} fine-tuned model(s): {done} done, {len(runs) - done} to run")
    _plan_queue(runs, st.root, storage)


def _plan_queue(runs, root: Path, storage: str | None) -> None:
    """The studies of these runs in the queue's storage, when it exists (a fresh store has none)."""
    searched = [r for r in runs if r.search is not None]
    url = storage or f"sqlite:///{Path(root).resolve() / 'optuna.db'}"
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        if searched:
            out.print(f"{len(searched)} search(es) declared, none started: `subnets sweep EXPERIMENT`")
        return
    from runners.queue import redact, study_names, summarise

    summaries = summarise(url, study_names(runs))
    out.print(f"queue: {redact(url)}")
    if summaries:
        _print_studies(summaries)


StorageOpt = typer.Option(None, "--storage", envvar="SUBNETS_STORAGE",
                          help="Optuna storage URL: the work queue and search record (default: sqlite under --store; "
                               "a postgresql:// URL to share it between machines).")
TrackingOpt = typer.Option(None, "--tracking-uri", envvar="MLFLOW_TRACKING_URI",
                           help="MLflow tracking URI (default: sqlite under --store; an http:// tracking server for many machines).")
WorkersOpt = typer.Option(1, "--workers", "-w", min=1, help="Local worker processes pulling from the queue.")
ThreadsOpt = typer.Option(None, "--threads", min=1, envvar="SUBNETS_THREADS",
                         help="torch threads per worker (default: cores / workers; recorded with every run).")


def _check_hub_models(runs, file: Path) -> None:
    """A hub id that is neither cached nor on the hub is refused in seconds, before anything is written."""
    from runners.training.hub import check_hub_models

    problems = check_hub_models(runs)
    if problems:
        raise _fail("\n".join(f"{file}: experiment {p.experiment!r}, key {p.key}: {p.message}" for p in problems))


def _queue_setup(store: Path, tracking_uri: str | None, storage: str | None):
    st = _open_store(store, tracking_uri, create=True)  # created once, before any worker starts (and before torch loads)
    from runners.queue import default_url, open_storage, redact

    url = storage or default_url(st.root)
    try:
        open_storage(url, create=True)  # likewise the queue's tables
    except Exception as e:  # a wrong URL, an unreachable server, a missing driver: say so, no traceback
        raise _fail(f"cannot open the queue storage {redact(url)}: {type(e).__name__}: {str(e).splitlines()[0]}")
    return st, url


def _work(runs, st, url: str, studies: list[StudyName], workers: int, threads: int | None, quiet: bool, file: Path,
          experiment: str | None, mode: str, store: Path) -> None:
    """Run the queue's work: in this process for one worker, else in N worker processes."""
    from runners.queue import spawn, threads_per_worker

    threads = threads or threads_per_worker(workers)
    if workers == 1:
        _work_here(runs, st, url, studies, threads, quiet, file, 0)
        return
    args = ["--file", str(file), "--store", str(store), "--storage", url, "--tracking-uri", st.tracking_uri,
            "--mode", mode, *(["--quiet"] if quiet else []), *([experiment] if experiment else [])]
    codes = spawn(workers, args, threads, echo=out.print)
    from runners.queue import summarise

    failed = [c for c in codes if c > 0]
    if failed:  # a worker stopped on an error (it printed why) or on Ctrl-C
        raise typer.Exit(max(failed))
    left = [s for s in summarise(url, studies) if s.has_work]
    died = [c for c in codes if c < 0]
    if died:
        out.print(f"{len(died)} worker(s) were killed (signal {', '.join(str(-c) for c in died)}); "
                  + ("the others took over their trials." if not left else "work is left: run the same command again."))
    if left:
        raise typer.Exit(1)


def _work_here(runs, st, url: str, studies: list[StudyName], threads: int, quiet: bool, file: Path, index: int) -> None:
    import torch

    from runners.queue import RunError, Worker
    from runners.tracking import Progress
    from runners.tracking.progress import install_stop_handlers, stop_finished

    torch.set_num_threads(threads)
    # MLflow logs a database error with its whole traceback before raising it; the run's error says it in one line
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    # a plain `kill` ends the current run as KILLED, like Ctrl-C, not leave it RUNNING; a second signal
    # lets that bookkeeping finish (runners/tracking/progress.py)
    install_stop_handlers()
    prefix = f"[worker {index}] " if index else ""
    worker = Worker(runs, url, st, Progress(enabled=not quiet, prefix=prefix), index,
                    echo=lambda s: out.print(s, markup=False, highlight=False))
    try:
        worker.run(studies)
    except KeyboardInterrupt:
        stop_finished()  # the run is marked KILLED: a late signal must not change the exit code
        raise _fail("interrupted: the current run is marked KILLED; finished runs are kept", 130)
    except RunError as e:  # missing data, unreachable hub, bad model, no GPU
        raise _fail(f"{file}: experiment {e.spec.experiment!r}: {e.cause}\n(the run is marked FAILED; finished runs are kept)")


@app.command()
def run(experiment: Optional[str] = typer.Argument(None, help="Only this experiment (default: all)."),
        file: Path = FileOpt, store: Path = StoreOpt,
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
        workers: int = WorkersOpt, storage: Optional[str] = StorageOpt, tracking_uri: Optional[str] = TrackingOpt,
        threads: Optional[int] = ThreadsOpt):
    """Run every expanded run not already FINISHED (by fingerprint): each is a trial in the work queue, so
    several workers, here or on other machines pointed at the same --storage and --tracking-uri, share it."""
    runs = _load(file, experiment)
    searched = list(dict.fromkeys(r.experiment for r in runs if r.search is not None))
    if searched:  # a search's declared run is only its starting point: `sweep` runs its trials
        out.print(f"declaring a search, run with `subnets sweep`: {', '.join(searched)}")
        runs = [r for r in runs if r.search is None]
        if not runs:
            return
    _check_hub_models(runs, file)  # before the store, the queue or the run exist
    st, url = _queue_setup(store, tracking_uri, storage)
    from runners.queue import prepare_grid, redact

    prep = prepare_grid(url, st, runs)
    todo = prep.enqueued + prep.pending
    if prep.reaped:
        out.print(f"{prep.reaped} run(s) marked KILLED: their process is gone (they run again)")
    out.print(f"{len(runs)} run(s), {prep.already_done} already done, {todo} to run  (queue: {redact(url)})")
    if todo:
        _work(runs, st, url, prep.studies, workers, threads, quiet, file, experiment, "grid", store)


@app.command()
def sweep(experiment: str = typer.Argument(..., help="The experiment whose [experiment.search] to run."),
          file: Path = FileOpt, store: Path = StoreOpt,
          trials: Optional[int] = typer.Option(None, "--trials", "-n", min=1, help="Trials per searched run (default: search.trials)."),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
          workers: int = WorkersOpt, storage: Optional[str] = StorageOpt, tracking_uri: Optional[str] = TrackingOpt,
          threads: Optional[int] = ThreadsOpt):
    """Search the method's parameters toward the effective size (Optuna); several processes may join one study."""
    runs = _load(file, experiment)
    searched = [r for r in runs if r.search is not None]
    if not searched:
        raise _fail(f"{file}: experiment {experiment!r} declares no [experiment.search] table")
    _check_hub_models(runs, file)  # before the store, the queue or the run exist
    st, url = _queue_setup(store, tracking_uri, storage)
    from runners.queue import finish_sweeps, prepare_search, redact, summarise

    prep = prepare_search(url, st, searched, trials)
    out.print(f"{len(prep.studies)} search(es) of {experiment!r}  (storage: {redact(url)})")
    _work(searched, st, url, prep.studies, workers, threads, quiet, file, experiment, "search", store)
    finish_sweeps(url, st, prep.studies)
    _print_studies(summarise(url, prep.studies))


@app.command()
def slurm(experiment: Optional[str] = typer.Argument(None, help="Only this experiment (default: all)."),
          file: Path = FileOpt, store: Path = StoreOpt, storage: Optional[str] = StorageOpt,
          tracking_uri: Optional[str] = TrackingOpt,
          array_size: int = typer.Option(..., "--array-size", "-n", min=1, help="Array elements: one worker each."),
          partition: Optional[str] = typer.Option(None, "--partition", "-p", help="Slurm partition."),
          time_limit: Optional[str] = typer.Option(None, "--time", "-t", help="Time limit per element (Slurm's --time)."),
          gpus_per_task: int = typer.Option(0, "--gpus-per-task", min=0, help="GPUs per element."),
          cpus_per_task: int = typer.Option(1, "--cpus-per-task", "-c", min=1, help="CPUs (torch threads) per element."),
          mem: Optional[str] = typer.Option(None, "--mem", help="Memory per element (Slurm's --mem, e.g. 16G)."),
          search: bool = typer.Option(False, "--search", help="Work the experiment's search (as `sweep`), not its grid."),
          trials: Optional[int] = typer.Option(None, "--trials", min=1, help="With --search: trials per searched run."),
          dry_run: bool = typer.Option(False, "--dry-run", help="Print the sbatch script; submit nothing.")):
    """Submit queue workers as a Slurm job array on the same --storage and --tracking-uri (use a PostgreSQL URL
    and a tracking server when the elements run on several nodes); each run executes once."""
    from runners.cluster import ArrayJob, SlurmError, script, submit

    runs = _load(file, experiment)
    runs = [r for r in runs if (r.search is not None) == search]
    if not runs:
        raise _fail(f"{file}: nothing to {'search' if search else 'run'}" + (" (no [experiment.search] table)" if search else ""))
    job = ArrayJob(Path(file).resolve(), Path(store).resolve(), "search" if search else "grid", array_size, experiment,
                   partition, time_limit, gpus_per_task, cpus_per_task, mem)
    if dry_run:
        out.print(script(job), markup=False, highlight=False, soft_wrap=True, end="")
        return
    _check_hub_models(runs, file)  # before the store, the queue or the job exist
    st, url = _queue_setup(store, tracking_uri, storage)
    from runners.queue import prepare_grid, prepare_search, redact

    prep = prepare_search(url, st, runs, trials) if search else prepare_grid(url, st, runs)
    if not search:
        out.print(f"{len(runs)} run(s), {prep.already_done} already done, {prep.enqueued + prep.pending} to run")
        if not prep.enqueued + prep.pending:
            return
    if url.startswith("sqlite:///") or st.local:
        out.print("note: the queue or the tracking store is a local SQLite file: every element must see this "
                  "directory (one node, or a shared filesystem); across nodes use --storage postgresql://... and "
                  "--tracking-uri http://...")
    try:
        job_id, path = submit(job, url, st.tracking_uri)
    except SlurmError as e:
        raise _fail(str(e))
    out.print(f"submitted job {job_id}: {array_size} worker(s) on the queue {redact(url)}; script {path}; "
              f"logs {job.logs()}; watch with `subnets status` or `squeue -j {job_id}`", soft_wrap=True)


@app.command(hidden=True)
def work(experiment: Optional[str] = typer.Argument(None), file: Path = FileOpt, store: Path = StoreOpt,
         storage: str = typer.Option(..., "--storage", envvar="SUBNETS_STORAGE"),
         tracking_uri: str = typer.Option(..., "--tracking-uri", envvar="MLFLOW_TRACKING_URI"),
         mode: str = typer.Option("grid", "--mode"), threads: int = typer.Option(1, "--threads"),
         worker_index: int = typer.Option(0, "--worker-index"), quiet: bool = typer.Option(False, "--quiet", "-q")):
    """One worker process (started by `run`/`sweep --workers N`): pull trials until the queue is empty."""
    from runners.queue import study_names
    from runners.tracking import Store

    runs = _load(file, experiment)
    st = Store.at(store, tracking_uri)
    if mode == "grid":
        runs = [r for r in runs if r.search is None]
    else:
        runs = [r for r in runs if r.search is not None]
    studies = study_names(runs, grids=mode == "grid", searches=mode != "grid")
    _work_here(runs, st, storage, studies, threads, quiet, file, worker_index + 1)


def _print_studies(summaries) -> None:
    table = Table("study", "run", "trials", "running (worker, s)", "effective size", "best")
    for s in summaries:
        states = ", ".join(f"{k.lower()} {v}" for k, v in sorted((k.name, v) for k, v in s.states.items())) or "none yet"
        budget = f" of {s.budget}" if s.budget else ""
        running = "; ".join(f"#{n} {w} {sec:.0f}" for n, w, sec in s.running) or "—"
        best = "—" if s.best_kept is None else f"{s.best_kept:.3f}"
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in (s.best_params or {}).items())
        if s.pareto is not None:
            params = f"{s.pareto} on the Pareto front"
        table.add_row(s.name.short(), s.label or "—", states + budget, running, best, params or "—")
    out.print(table)


@app.command()
def status(experiment: Optional[str] = typer.Argument(None, help="Only this experiment."),
           file: Path = FileOpt, store: Path = StoreOpt, storage: Optional[str] = StorageOpt):
    """What the queue holds: per study, trials by state, what each worker is running, and what is left."""
    from runners.queue import default_url, study_names, summarise

    runs = _load(file, experiment)
    url = storage or default_url(store)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise _fail(f"no queue at {url}: nothing has been run or swept with this store yet", 1)
    _print_studies(summarise(url, study_names(runs)))


@app.command()
def dashboard(store: Path = StoreOpt, storage: Optional[str] = StorageOpt,
              port: int = typer.Option(8080, help="Port on 127.0.0.1.")):
    """Open optuna-dashboard on the study storage, bound to 127.0.0.1."""
    from runners.queue.storage import default_url

    url = storage or default_url(store)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise _fail(f"no study storage at {url}: run `subnets run` or `subnets sweep` first", 1)
    # exec, single-process server: the dashboard is this process, so stopping it (even by SIGKILL) leaves
    # nothing serving (gunicorn, which it would pick when installed, forks workers that outlive a killed master)
    os.execvp(sys.executable, [sys.executable, "-c", "from optuna_dashboard._cli import main; main()", url,
                               "--host", "127.0.0.1", "--port", str(port), "--server", "wsgiref"])


@app.command()
def report(store: Path = StoreOpt,
           output: Path = typer.Option(Path("out/report.html"), "--out", "-o", help="Where to write the HTML report."),
           experiment: Optional[list[str]] = typer.Option(None, "--experiment", "-e", help="Only these experiments."),
           tracking_uri: Optional[str] = TrackingOpt,
           mlflow_log: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Also log report.html to a run tagged subnets.kind=report in each reported MLflow experiment.")):
    """Write one self-contained HTML report from the logged results (DuckDB over the runs' Parquet tables); the same
    data gives the same bytes. Every figure names the reports/sql query behind it (rerun it with `subnets query --file`)."""
    from reports.build import build_report

    st = _open_store(store, tracking_uri)
    path = build_report(st.tracking_uri, output, experiment or None, cache_dir=st.root / ".subnets" / "tables",
                        log_to_mlflow=mlflow_log, warehouse_dir=st.root / ".subnets" / "warehouse")
    out.print(f"report written to {path} ({path.stat().st_size:,} bytes)"
              + ("; logged to MLflow (runs tagged subnets.kind=report)" if mlflow_log else ""))


@app.command()
def query(sql: Optional[str] = typer.Argument(None, help="SQL over the views runs, axes, steps, units, cka, run_tags, run_versions, primary_steps, run_groups, effective_size."),
          file: Optional[Path] = typer.Option(None, "--file", "-f", help="Run the SQL in this file instead, e.g. reports/sql/runs.sql (a figure's named query)."),
          param: Optional[list[str]] = typer.Option(None, "--param", "-p", help="NAME=VALUE for a $NAME in the SQL, e.g. --param experiment=demo (repeatable)."),
          fmt: str = typer.Option("table", "--format", help="table (whole rows, aligned), csv, json (one array of row objects per statement, one per line) or parquet (needs --output)."),
          output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here instead of printing (required for parquet; several statements: NAME.1.parquet, ...)."),
          store: Path = StoreOpt, tracking_uri: Optional[str] = TrackingOpt):
    """Run SQL over the warehouse and print every statement's result. Read-only: the warehouse is an in-memory
    DuckDB loaded from the finished runs' Parquet tables (and their MLflow tags); once loaded it has no file access,
    so a query cannot change the store (COPY ... TO, ATTACH, read_parquet('...') and INSTALL fail). It can only
    read the loaded tables and create temporary in-memory tables that vanish when the command ends."""
    from reports.output import FORMATS, write_parquet, write_text
    from reports.warehouse import query_all

    if (sql is None) == (file is None):
        raise _fail("give the SQL as an argument or --file FILE.sql (one of them)")
    if fmt not in FORMATS:
        raise _fail(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt == "parquet" and output is None:
        raise _fail("--format parquet needs --output FILE.parquet")
    params = {}
    for item in param or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise _fail(f"--param {item!r}: expected NAME=VALUE, e.g. experiment=demo")
        params[name.strip()] = value
    if file is not None:
        try:
            sql = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise _fail(f"{file}: cannot read: {e}")
    st = _open_store(store, tracking_uri)
    try:
        results = query_all(st.tracking_uri, sql, params, cache_dir=st.root / ".subnets" / "tables",
                            warehouse_dir=st.root / ".subnets" / "warehouse")
    except Exception as e:  # DuckDB's own message names the problem (parse error, unknown column, ...)
        raise _fail(f"query failed{f' ({file})' if file else ''}: {e}")
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
def ui(store: Path = StoreOpt, port: int = typer.Option(5000, help="Port."),
       host: str = typer.Option("127.0.0.1", help="Address to bind (127.0.0.1: this machine only).")):
    """Open the MLflow UI over this project's tracking store (one process: stopping it stops everything)."""
    from runners.tracking.ui import serve_ui

    st = _open_store(store)
    out.print(f"MLflow UI on http://{host}:{port} over {st.tracking_uri} (Ctrl-C stops it)")
    serve_ui(st, port, host)


if __name__ == "__main__":
    app()
