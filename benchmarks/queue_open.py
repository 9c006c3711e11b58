"""What opening the queue costs: every `subnets` command and every worker opens the Optuna storage, and every fresh
store creates one.

    python benchmarks/queue_open.py [--repeats 20]

- open: `open_storage(url)` on an existing SQLite queue (the schema revision compared with the one this Optuna
  makes, read once a process from its template) against Optuna's own check on open (`RDBStorage(url)`, which loads
  its ~130 migration scripts each time);
- create: a fresh store's queue database copied from the template against Optuna creating its tables.

Both variants alternate, `--repeats` times each, in one process (the imports and the template made first); each
figure is the median CPU time (user + system) of one call. Progress goes to stdout; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from runners.tracking import provenance  # noqa: E402


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _timed(fn) -> float:
    start = _cpu()
    fn()
    return _cpu() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    import optuna
    from optuna.storages import RDBStorage

    from runners.queue.storage import _new_optuna_db, _optuna_tables, open_storage, schema_head

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    times: dict[str, list[float]] = {"open_ours": [], "open_optuna": [], "create_template": [], "create_optuna": []}
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{scratch}/optuna.db"
        open_storage(url, create=True).engine.dispose()
        schema_head()  # the template, made once (as the first command on a machine does)
        for i in range(args.repeats):
            times["open_ours"].append(_timed(lambda: open_storage(url).engine.dispose()))
            times["open_optuna"].append(_timed(lambda: RDBStorage(url, skip_table_creation=True).engine.dispose()))
            times["create_template"].append(_timed(lambda: _new_optuna_db(f"sqlite:///{scratch}/t{i}.db")))
            times["create_optuna"].append(_timed(lambda: _optuna_tables(f"sqlite:///{scratch}/o{i}.db")))
            print(f"repeat {i + 1}/{args.repeats}", flush=True)
    median = {k: round(statistics.median(v), 4) for k, v in times.items()}
    print(
        json.dumps(
            {
                "benchmark": "queue_open",
                "machine": f"{provenance.machine()}, 1 process",
                "optuna": optuna.__version__,
                "repeats": args.repeats,
                **{f"{k}_cpu_s": v for k, v in median.items()},
                "open_ratio": round(median["open_ours"] / median["open_optuna"], 3),
                "create_ratio": round(median["create_template"] / median["create_optuna"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
