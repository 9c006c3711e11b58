"""The work queue under load: N worker processes drain a grid of trivial trials; the queue's own cost per trial.

    python benchmarks/queue_load.py [--trials 200] [--postgres-workers 8] [--sqlite-workers 4] [--postgres URL]

What is real: the queue (an Optuna RDB storage, opened with runners.queue.storage.open_storage), the grid enqueued
by runners.queue.coordinator.prepare_grid, an MLflow store (local SQLite) that the worker asks whether a
fingerprint is FINISHED, and each worker process's loop, runners.queue.worker.Worker.run (look for work, load the
study, optimize one trial: stale-trial check, ask = claim, heartbeat thread, the grid objective, tell = record).

What is replaced: only the run itself. In each worker process the module-level function
runners.queue.worker._execute, which Worker._grid_objective calls to fine-tune, prune and log a run, is replaced by a
function that returns a fixed RunOutcome at once (nothing logged to MLflow). A real run takes seconds to minutes and
would hide the queue's cost; with a no-op run, what remains per trial is the queue's overhead. The storage's
methods are wrapped with timers (they still do their work): Study.ask (claim), RDBStorage.record_heartbeat
(heartbeat), optuna's tell (record), fail_stale_trials (the stale check every ask and every idle look makes).

PostgreSQL: --postgres URL, else a throwaway server (initdb, pg_ctl) when PostgreSQL is installed, else skipped.
The trials are the `--trials` rates of one magnitude-pruning experiment of micro-bert (never trained here).
Workers start, import, open the storage and wait on one start line; the drain is timed from that line to the
last worker's exit. Progress goes to stdout; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from runners.tracking import provenance  # noqa: E402

EXPERIMENTS = """
[defaults]
seeds = [0]

[defaults.model]
name = "micro-bert"

[defaults.task]
name = "synthetic-nli"
max_length = 48
params = {{ n_train = 256, n_id_eval = 64, n_ood_per_subcase = 8 }}

[[experiment]]
name = "load"

[experiment.prune]
method = "magnitude"
rate = {rates}
max_steps = 1
"""
EXPERIMENT = "load"
TIMED = ("claim", "heartbeat", "record", "stale_check", "look", "mlflow_status", "idle_check")


def log(msg: str) -> None:
    print(f"[queue-bench] {msg}", flush=True)


def write_experiments(path: Path, trials: int) -> Path:
    """One experiment whose grid is `trials` distinct rates: `trials` fingerprints."""
    rates = [round(0.001 * (k + 1), 4) for k in range(trials)]
    path.write_text(EXPERIMENTS.format(rates=json.dumps(rates)))
    return path


def fixed_outcome(spec, store, progress, context):
    """The run replaced: a fixed RunOutcome of a run that kept its only step, returned at once."""
    from registry.tracking import StopReason
    from runners.pruning.recipe import PruneStep
    from runners.run.execute import RunOutcome
    from runners.training import EvalResult

    results = {"id": EvalResult("id", "id", 1, 2, metrics={"accuracy": 0.5}, primary="accuracy")}
    step = PruneStep(0, 0.0, results, True)
    return RunOutcome(f"noop-{spec.fingerprint[:12]}", spec.fingerprint, results, step, 0, 0.0, [], StopReason.DECLARED)


def _timed(table: dict, key: str, fn):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            table[key].append(time.perf_counter() - t0)

    return wrapper


def worker_main(config: dict) -> None:
    """One worker process: the real Worker loop with the run replaced (see the module's docstring)."""
    import optuna
    import optuna.study._optimize as optimize_module
    from optuna.storages import RDBStorage

    import runners.queue.worker as worker_module
    from registry.loader import load_runs
    from registry.studyname import StudyName
    from runners.tracking import Progress, Store

    worker_module._execute = fixed_outcome
    times: dict[str, list[float]] = {k: [] for k in TIMED}
    optuna.study.Study.ask = _timed(times, "claim", optuna.study.Study.ask)
    RDBStorage.record_heartbeat = _timed(times, "heartbeat", RDBStorage.record_heartbeat)
    optimize_module._tell_with_warning = _timed(times, "record", optimize_module._tell_with_warning)
    optuna.storages.fail_stale_trials = _timed(times, "stale_check", optuna.storages.fail_stale_trials)
    Worker = worker_module.Worker
    Worker._has_work = _timed(times, "look", Worker._has_work)  # is a trial waiting? (a study load and a read)
    Worker._others_running = _timed(times, "idle_check", Worker._others_running)  # nothing waiting: wait or stop?
    Store.run_status = _timed(times, "mlflow_status", Store.run_status)  # the objective's "FINISHED already?"

    runs = load_runs(Path(config["toml"]))
    store = Store.at(config["root"])
    worker = Worker(runs, config["url"], store, Progress(enabled=False), config["index"], echo=lambda _s: None)
    Path(config["ready"]).touch()
    while not Path(config["go"]).exists():
        time.sleep(0.005)
    started = time.perf_counter()
    worklog = worker.run([StudyName.grid(EXPERIMENT)])
    seconds = time.perf_counter() - started
    Path(config["out"]).write_text(
        json.dumps({"seconds": seconds, "ran": worklog.ran, "trials": worklog.trials, "times": times})
    )


def drain(url: str, workers: int, trials: int, work_dir: Path, timeout_s: float = 600) -> dict:
    """Enqueue `trials` grid trials on the queue at `url`, let `workers` processes drain it; what happened."""
    import optuna
    from optuna.trial import TrialState

    from registry.loader import load_runs
    from registry.studyname import StudyName
    from runners.queue.coordinator import prepare_grid
    from runners.queue.storage import open_storage
    from runners.tracking import Store

    work_dir.mkdir(parents=True, exist_ok=True)
    root, toml = work_dir / "store", write_experiments(work_dir / "experiments.toml", trials)
    specs = load_runs(toml)
    store = Store.at(root)
    store.ensure()
    prepared = prepare_grid(url, store, specs)
    assert prepared.enqueued == trials, f"{prepared.enqueued} of {trials} trials enqueued"
    go = work_dir / "go"
    procs, outs, readies = [], [], []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    for i in range(workers):
        out, ready = work_dir / f"worker{i}.json", work_dir / f"worker{i}.ready"
        config = {"url": url, "root": str(root), "toml": str(toml), "index": i, "ready": str(ready), "go": str(go)}
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, "--worker", json.dumps({**config, "out": str(out)})],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
        outs.append(out)
        readies.append(ready)
    deadline = time.monotonic() + timeout_s
    while not all(r.exists() for r in readies) and all(p.poll() is None for p in procs):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    go.touch()
    outputs = []
    for p in procs:
        try:
            outputs.append(p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
        except subprocess.TimeoutExpired:
            p.kill()
            outputs.append(p.communicate()[0] + "\n(killed: the drain ran past its timeout)")
    seconds = time.perf_counter() - started
    results = [json.loads(o.read_text()) if o.exists() else None for o in outs]
    errors = [
        f"worker {i}: exit {p.returncode}: {text.strip()[-2000:]}"
        for i, (p, text, r) in enumerate(zip(procs, outputs, results))
        if p.returncode != 0 or r is None or "Traceback" in text
    ]
    study = optuna.load_study(study_name=StudyName.grid(EXPERIMENT).format(), storage=open_storage(url))
    all_trials = study.get_trials(deepcopy=False)
    complete = [t.user_attrs.get("fingerprint") for t in all_trials if t.state == TrialState.COMPLETE]
    ran = [fp for r in results if r for (_study, _number, fp) in r["trials"]]
    times = {k: [x for r in results if r for x in r["times"][k]] for k in TIMED}
    loop_s = sum(r["seconds"] for r in results if r)
    n = max(1, len(complete))
    return {
        "storage": url.split(":", 1)[0],
        "workers": workers,
        "trials": trials,
        "enqueued": prepared.enqueued,
        "complete": len(complete),
        "complete_fingerprints": sorted(fp for fp in complete if fp),
        "expected_fingerprints": sorted(s.fingerprint for s in specs),
        "duplicates": len(complete) - len(set(complete)) + len(ran) - len(set(ran)),
        "states": {
            s.name: sum(t.state == s for t in all_trials) for s in TrialState if any(t.state == s for t in all_trials)
        },
        "ran_by_worker": [r["ran"] if r else None for r in results],
        "seconds_by_worker": [round(r["seconds"], 2) if r else None for r in results],
        "errors": errors,
        "seconds": seconds,
        # from the start line to the last worker's loop ending (the wall time above adds the processes' exit)
        "drain_seconds": max((r["seconds"] for r in results if r), default=None),
        "trials_per_s": len(complete) / seconds,
        # a worker's loop time per trial it completed: everything the queue costs a trial (the run is a no-op)
        "overhead_ms_per_trial": 1000 * loop_s / n,
        "split_ms": {
            k: {"calls": len(v), "mean": 1000 * sum(v) / len(v) if v else None, "per_trial": 1000 * sum(v) / n}
            for k, v in times.items()
        },
        "load_avg_start": load_start,
        "load_avg_end": os.getloadavg()[0],
    }


@contextmanager
def throwaway_postgres():
    """A PostgreSQL server in a temp directory on a free port (as the postgres user when run as root), or None."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if not bins:
        yield None
        return
    import socket

    bin_dir = bins[0].parent
    top = Path(tempfile.mkdtemp(prefix="subnets-pg-bench-"))
    data = top / "data"
    data.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    as_user = []
    if os.geteuid() == 0:
        os.chmod(top, 0o755)
        shutil.chown(data, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    run = dict(check=True, capture_output=True)
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "subnets"], **run)
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    subprocess.run(
        [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l", str(data / "log"), "-o", options, "start"],
        **run,
    )
    try:
        subprocess.run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "subnets", "queue"], **run)
        yield f"postgresql://subnets@127.0.0.1:{port}/queue"
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(top, ignore_errors=True)


def summary(result: dict) -> dict:
    """A drain's figures without the fingerprint lists."""
    return {k: v for k, v in result.items() if not k.endswith("_fingerprints")}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker_main(json.loads(sys.argv[2]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--postgres-workers", type=int, default=8)
    ap.add_argument("--sqlite-workers", type=int, default=4)
    ap.add_argument("--postgres", help="a PostgreSQL URL with an empty database (default: a throwaway server)")
    args = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    figures: dict = {
        "config": {"trials": args.trials, "run": "replaced by a no-op (runners.queue.worker._execute)"},
        "environment": {
            "python": platform.python_version(),
            "machine": provenance.machine(),
            "cpu_count": os.cpu_count(),
            "threads_per_worker": 1,
            "commit": commit.stdout.strip(),
            "load_avg_start": os.getloadavg()[0],
        },
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="subnets-queue-bench-") as tmp:
        with throwaway_postgres() if args.postgres is None else nullcontext(args.postgres) as url:
            if url is None or args.postgres_workers == 0:
                log("PostgreSQL is not installed: skipped")
                figures["postgres"] = None
            else:
                log(f"PostgreSQL: {args.postgres_workers} workers, {args.trials} trials")
                figures["postgres"] = summary(drain(url, args.postgres_workers, args.trials, Path(tmp) / "pg"))
                log(json.dumps(figures["postgres"]))
        log(f"SQLite: {args.sqlite_workers} workers, {args.trials} trials")
        sqlite_url = f"sqlite:///{Path(tmp) / 'sqlite' / 'store' / 'optuna.db'}"
        figures["sqlite"] = summary(drain(sqlite_url, args.sqlite_workers, args.trials, Path(tmp) / "sqlite"))
        log(json.dumps(figures["sqlite"]))
    figures["environment"]["load_avg_end"] = os.getloadavg()[0]
    figures["seconds"] = time.perf_counter() - started
    print(json.dumps(figures))


@contextmanager
def nullcontext(value):
    yield value


if __name__ == "__main__":
    main()
