"""run, sweep, slurm and the hidden work: the queue's workers, here, as N local processes or as a Slurm array."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from registry.cli.common import (
    FileOpt,
    StorageOpt,
    StoreOpt,
    ThreadsOpt,
    TrackingOpt,
    WorkersOpt,
    app,
    fail,
    load,
    main,
    open_store,
    out,
    print_studies,
)
from registry.studyname import StudyName


def check_hub_models(runs, file: Path) -> None:
    """A hub id that is neither cached nor on the hub is refused in seconds, before anything is written."""
    from registry.models import hub_model_ids

    if not hub_model_ids(runs):  # none: nothing to resolve, and torch is not imported before the store is checked
        return
    from runners.training.hub import check_hub_models

    problems = check_hub_models(runs)
    if problems:
        raise fail("\n".join(f"{file}: experiment {p.experiment!r}, key {p.key}: {p.message}" for p in problems))


# What a local worker imports before its first trial: its forkserver imports them once (runners.queue.local). The
# last three are imported by MLflow and Optuna only when a worker first opens a SQLite store and queue (~0.6 s of CPU
# in every worker; a worker on a tracking server or PostgreSQL imports the rest of what it needs itself).
WORKER_MODULES = [
    "registry.cli",
    "runners.queue.worker",
    "runners.training.cache",
    "mlflow.store.tracking.sqlalchemy_store",
    "optuna.storages._rdb.models",
    "sqlalchemy.dialects.sqlite",
]


def work_process(argv: list[str]) -> None:
    """A local worker process's body: `subnets work ...` (spawn's entry; exits with the command's code)."""
    main(argv)


def _queue_setup(store: Path, tracking_uri: str | None, storage: str | None):
    from runners.queue.local import start_method
    from runners.tracking import Store
    from runners.tracking.store import StoreUnavailable

    try:  # how local workers start (an environment variable): refused before anything is written
        start_method()
    except ValueError as e:
        raise fail(str(e))

    try:  # a tracking server that does not answer is said first, before the queue's (heavy) imports
        Store.at(store, tracking_uri).check_reachable()
    except StoreUnavailable as e:
        raise fail(f"store: {e}")
    from runners.queue import default_url, open_storage, redact
    from runners.queue.storage import StorageUnusable, check_reachable

    if storage:  # a server that does not answer is refused before the store is created
        try:
            check_reachable(storage)
        except Exception as e:
            reason = f"{type(e).__name__}: {str(e).splitlines()[0]}"
            raise fail(f"cannot reach the queue storage {redact(storage)}: {reason}")
    st = open_store(store, tracking_uri, create=True)  # created once, before any worker starts (and before torch loads)
    url = storage or default_url(st.root)
    try:
        open_storage(url, create=True)  # likewise the queue's tables
    except StorageUnusable as e:
        raise fail(str(e))
    except Exception as e:  # a wrong URL, an unreachable server, a missing driver: say so, no traceback
        raise fail(f"cannot open the queue storage {redact(url)}: {type(e).__name__}: {str(e).splitlines()[0]}")
    return st, url


def _finetune_first(runs, st, workers: int, quiet: bool) -> None:
    """With fewer models to fine-tune than workers, fine-tune them here first with every core: otherwise one worker
    trains a shared model on its share of the cores while the others wait on its lock, their cores idle."""
    finished = {name: st.run_status(name) for name in dict.fromkeys(r.experiment for r in runs)}
    todo = [r for r in runs if finished[r.experiment].get(r.fingerprint) != "FINISHED" or r.search is not None]
    cache = st.root / ".subnets"
    missing = {
        r.finetune_fingerprint
        for r in todo
        if not (cache / "finetuned" / r.finetune_fingerprint / "record.json").exists()
    }
    if not missing or len(missing) >= workers:
        return  # nothing to train, or enough models that the workers train them side by side
    import torch  # only now: a coordinator with nothing to fine-tune imports neither torch nor transformers

    from runners.tracking import Progress
    from runners.tracking.progress import install_stop_handlers, stop_finished
    from runners.tracking.provenance import usable_cores
    from runners.training.cache import finetune_first

    cores = usable_cores()  # this process's allocation, not the node's
    torch.set_num_threads(cores)
    out.print(f"fine-tuning {len(missing)} shared model(s) first, on all {cores} cores; the workers then load them")
    install_stop_handlers()
    try:
        finetune_first(todo, cache, Progress(enabled=not quiet))
    except KeyboardInterrupt:
        stop_finished()
        raise fail("interrupted while fine-tuning; the next run resumes from its last epoch", 130)
    except Exception as e:  # bad data, a model that cannot load: each worker's run then says so in its own words
        out.print(f"note: fine-tuning first failed ({type(e).__name__}); the workers fine-tune as they run")


def _work(
    runs,
    st,
    url: str,
    studies: list[StudyName],
    workers: int,
    threads: int | None,
    quiet: bool,
    file: Path,
    experiment: str | None,
    mode: str,
    store: Path,
) -> None:
    """Run the queue's work: in this process for one worker, else in N worker processes."""
    from runners.queue import spawn, threads_per_worker
    from runners.queue.local import start_forkserver, start_method

    threads = threads or threads_per_worker(workers)
    if workers == 1:
        _work_here(runs, st, url, studies, threads, quiet, file, 0)
        return
    method = start_method()  # checked in _queue_setup, before anything was written
    start_forkserver(WORKER_MODULES, method)  # the workers' imports, on another core while this fine-tunes first
    args = [
        "--file",
        str(file),
        "--store",
        str(store),
        "--storage",
        url,
        "--tracking-uri",
        st.tracking_uri,
        "--mode",
        mode,
        *(["--quiet"] if quiet else []),
        *([experiment] if experiment else []),
    ]
    _finetune_first(runs, st, workers, quiet)
    codes = spawn(workers, work_process, args, threads, method, echo=out.print)
    from runners.queue import summarise

    failed = [c for c in codes if c > 0]
    if failed:  # a worker stopped on an error (it printed why) or on Ctrl-C
        raise typer.Exit(max(failed))
    left = [s for s in summarise(url, studies) if s.has_work]
    died = [c for c in codes if c < 0]
    if died:
        out.print(
            f"{len(died)} worker(s) were killed (signal {', '.join(str(-c) for c in died)}); "
            + ("the others took over their trials." if not left else "work is left: run the same command again.")
        )
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
    worker = Worker(
        runs,
        url,
        st,
        Progress(enabled=not quiet, prefix=prefix),
        index,
        echo=lambda s: out.print(s, markup=False, highlight=False),
    )
    try:
        worker.run(studies)
    except KeyboardInterrupt:
        stop_finished()  # the run is marked KILLED: a late signal must not change the exit code
        raise fail("interrupted: the current run is marked KILLED; finished runs are kept", 130)
    except RunError as e:  # missing data, unreachable hub, bad model, no GPU
        raise fail(
            f"{file}: experiment {e.spec.experiment!r}: {e.cause}\n(the run is marked FAILED; finished runs are kept)"
        )


@app.command()
def run(
    experiment: Optional[str] = typer.Argument(None, help="Only this experiment (default: all)."),
    file: Path = FileOpt,
    store: Path = StoreOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    workers: int = WorkersOpt,
    storage: Optional[str] = StorageOpt,
    tracking_uri: Optional[str] = TrackingOpt,
    threads: Optional[int] = ThreadsOpt,
):
    """Run every expanded run not already FINISHED (by fingerprint): each is a trial in the work queue, so
    several workers, here or on other machines pointed at the same --storage and --tracking-uri, share it."""
    runs = load(file, experiment)
    searched = list(dict.fromkeys(r.experiment for r in runs if r.search is not None))
    if searched:  # a search's declared run is only its starting point: `sweep` runs its trials
        out.print(f"declaring a search, run with `subnets sweep`: {', '.join(searched)}")
        runs = [r for r in runs if r.search is None]
        if not runs:
            return
    check_hub_models(runs, file)  # before the store, the queue or the run exist
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
def sweep(
    experiment: str = typer.Argument(..., help="The experiment whose [experiment.search] to run."),
    file: Path = FileOpt,
    store: Path = StoreOpt,
    trials: Optional[int] = typer.Option(
        None, "--trials", "-n", min=1, help="Trials per searched run (default: search.trials)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    workers: int = WorkersOpt,
    storage: Optional[str] = StorageOpt,
    tracking_uri: Optional[str] = TrackingOpt,
    threads: Optional[int] = ThreadsOpt,
):
    """Search the method's parameters toward the effective size (Optuna); several processes may join one study."""
    runs = load(file, experiment)
    searched = [r for r in runs if r.search is not None]
    if not searched:
        raise fail(f"{file}: experiment {experiment!r} declares no [experiment.search] table")
    check_hub_models(runs, file)  # before the store, the queue or the run exist
    st, url = _queue_setup(store, tracking_uri, storage)
    from runners.queue import finish_sweeps, prepare_search, redact, summarise

    prep = prepare_search(url, st, searched, trials)
    out.print(f"{len(prep.studies)} search(es) of {experiment!r}  (storage: {redact(url)})")
    _work(searched, st, url, prep.studies, workers, threads, quiet, file, experiment, "search", store)
    finish_sweeps(url, st, prep.studies)
    print_studies(summarise(url, prep.studies))


@app.command()
def slurm(
    experiment: Optional[str] = typer.Argument(None, help="Only this experiment (default: all)."),
    file: Path = FileOpt,
    store: Path = StoreOpt,
    storage: Optional[str] = StorageOpt,
    tracking_uri: Optional[str] = TrackingOpt,
    array_size: int = typer.Option(..., "--array-size", "-n", min=1, help="Array elements: one worker each."),
    partition: Optional[str] = typer.Option(None, "--partition", "-p", help="Slurm partition."),
    time_limit: Optional[str] = typer.Option(None, "--time", "-t", help="Time limit per element (Slurm's --time)."),
    gpus_per_task: int = typer.Option(0, "--gpus-per-task", min=0, help="GPUs per element."),
    cpus_per_task: int = typer.Option(1, "--cpus-per-task", "-c", min=1, help="CPUs (torch threads) per element."),
    mem: Optional[str] = typer.Option(None, "--mem", help="Memory per element (Slurm's --mem, e.g. 16G)."),
    search: bool = typer.Option(False, "--search", help="Work the experiment's search (as `sweep`), not its grid."),
    trials: Optional[int] = typer.Option(None, "--trials", min=1, help="With --search: trials per searched run."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the sbatch script; submit nothing."),
):
    """Submit queue workers as a Slurm job array on the same --storage and --tracking-uri (use a PostgreSQL URL
    and a tracking server when the elements run on several nodes); each run executes once."""
    from runners.cluster import ArrayJob, SlurmError, script, submit

    runs = load(file, experiment)
    runs = [r for r in runs if (r.search is not None) == search]
    if not runs:
        raise fail(
            f"{file}: nothing to {'search' if search else 'run'}"
            + (" (no [experiment.search] table)" if search else "")
        )
    job = ArrayJob(
        Path(file).resolve(),
        Path(store).resolve(),
        "search" if search else "grid",
        array_size,
        experiment,
        partition,
        time_limit,
        gpus_per_task,
        cpus_per_task,
        mem,
    )
    if dry_run:
        out.print(script(job), markup=False, highlight=False, soft_wrap=True, end="")
        return
    check_hub_models(runs, file)  # before the store, the queue or the job exist
    st, url = _queue_setup(store, tracking_uri, storage)
    from runners.queue import prepare_grid, prepare_search, redact

    prep = prepare_search(url, st, runs, trials) if search else prepare_grid(url, st, runs)
    if not search:
        out.print(f"{len(runs)} run(s), {prep.already_done} already done, {prep.enqueued + prep.pending} to run")
        if not prep.enqueued + prep.pending:
            return
    if url.startswith("sqlite:///") or st.local:
        out.print(
            "note: the queue or the tracking store is a local SQLite file: every element must see this "
            "directory (one node, or a shared filesystem); across nodes use --storage postgresql://... and "
            "--tracking-uri http://..."
        )
    try:
        job_id, path = submit(job, url, st.tracking_uri)
    except SlurmError as e:
        raise fail(str(e))
    out.print(
        f"submitted job {job_id}: {array_size} worker(s) on the queue {redact(url)}; script {path}; "
        f"logs {job.logs()}; watch with `subnets status` or `squeue -j {job_id}`",
        soft_wrap=True,
    )


@app.command(hidden=True)
def work(
    experiment: Optional[str] = typer.Argument(None),
    file: Path = FileOpt,
    store: Path = StoreOpt,
    storage: str = typer.Option(..., "--storage", envvar="SUBNETS_STORAGE"),
    tracking_uri: str = typer.Option(..., "--tracking-uri", envvar="MLFLOW_TRACKING_URI"),
    mode: str = typer.Option("grid", "--mode"),
    threads: int = typer.Option(1, "--threads"),
    worker_index: int = typer.Option(0, "--worker-index"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """One worker process (started by `run`/`sweep --workers N`): pull trials until the queue is empty."""
    from runners.queue import study_names
    from runners.tracking import Store

    runs = load(file, experiment)
    st = Store.at(store, tracking_uri)
    if mode == "grid":
        runs = [r for r in runs if r.search is None]
    else:
        runs = [r for r in runs if r.search is not None]
    studies = study_names(runs, grids=mode == "grid", searches=mode != "grid")
    _work_here(runs, st, storage, studies, threads, quiet, file, worker_index + 1)
