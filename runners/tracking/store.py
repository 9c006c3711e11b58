"""MLflow as the system of record: one store per project directory, batched logging.

The store is `sqlite:///<root>/mlflow.db` with artifacts under `<root>/mlartifacts/<experiment>` unless
MLFLOW_TRACKING_URI says otherwise. `Store.ensure()` creates the database once, before anything fans
out (several processes creating a fresh SQLite store at once corrupt it).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from registry.files import locked, replacing, sqlite_damage
from registry.runindex import RunIndex, open_index
from registry.tracking import (
    ENDED_BY,
    EXPERIMENT,
    FINGERPRINT,
    GROUP,
    KIND,
    METHOD,
    OWNER,
    SEED,
    RunState,
    RunStatus,
    redact,
)

__all__ = [
    "EXPERIMENT",
    "FINGERPRINT",
    "GROUP",
    "KIND",
    "METHOD",
    "OWNER",
    "SEED",
    "RunLog",
    "Store",
    "StoreUnavailable",
    "create_sqlite_atomically",
    "flatten",
    "redact",
    "store_lock",
]
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100  # MLflow's per-request limits for log_batch
REACH_TIMEOUT_S = 5.0  # how long a tracking server may take to answer its health check

# A tracking server that restarts or drops off the network for up to about a minute is ridden through: a refused
# or failed request is retried 5 times with exponential backoff (2, 4, 8, 16, 32 s: about a minute in all).
# One that stops answering altogether fails the run in about three minutes (6 attempts x 20 s, plus the
# backoff), not the ~20 minutes MLflow's defaults (120 s timeout, 7 retries) take. A user's own settings win.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")


class StoreUnavailable(RuntimeError):
    """The store cannot be used: an unreachable tracking server, a directory that cannot be written."""


def store_lock(root: Path) -> contextlib.AbstractContextManager[None]:
    """An exclusive lock on the store directory (released by the OS if its holder dies)."""
    return locked(Path(root) / ".store.lock")


def create_sqlite_atomically(db: Path, create: Callable[[str], object]) -> None:
    """Run `create(url)` on a temporary database next to `db`, then rename it to `db`."""
    from runners.tracking.status import pid_alive

    # named after this process, so a temporary left by a killed one is known for stale below
    with replacing(db, tmp=db.with_name(f".{db.name}.creating-{os.getpid()}"), mode=None) as tmp:
        create(f"sqlite:///{tmp}")
    for stale in db.parent.glob(f".{db.name}.creating-*"):  # left by a process killed mid-creation
        if not pid_alive(int(stale.name.rsplit("-", 1)[1])):
            stale.unlink(missing_ok=True)


def _mlflow_client(url: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=url)


def _mlflow_tables(url: str) -> None:
    """MLflow's tables in a new SQLite database: MLflow's own migrations, the way it makes them."""
    _mlflow_client(url).search_experiments(max_results=1)


def new_mlflow_db(url: str) -> None:
    """A new MLflow SQLite database at `url`, copied from the empty one of this MLflow version (templates.py). The copy
    is what MLflow would have made here, its Default experiment's artifact location and times included (the only
    row that depends on where and when)."""
    import sqlite3

    from runners.tracking.templates import copy_template

    target = Path(url.removeprefix("sqlite:///"))
    if not copy_template(target, "mlflow", _mlflow_tables):
        return  # made here by MLflow itself
    now = int(time.time() * 1000)
    location = os.path.join(os.path.abspath("mlruns"), "0")  # MLflow's default artifact root, as it resolves it
    with contextlib.closing(sqlite3.connect(target)) as con, con:
        con.execute(
            "UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ? "
            "WHERE experiment_id = 0",
            (location, now, now),
        )


@dataclass
class Store:
    root: Path
    tracking_uri: str

    @classmethod
    def at(cls, root: str | Path, tracking_uri: str | None = None) -> "Store":
        """The store under `root` (caches always live there); tracking in `tracking_uri`, else
        MLFLOW_TRACKING_URI, else `sqlite:///<root>/mlflow.db`."""
        root = Path(root).resolve()
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlflow.db'}"
        return cls(root, uri)

    @property
    def local(self) -> bool:
        """Tracking in a local database whose artifacts this machine writes under <root>/mlartifacts."""
        return self.tracking_uri.startswith("sqlite:///")

    @property
    def client(self):
        """MLflow's client of this store. A local database that does not exist yet is made first, as ensure()
        makes it (copied from the template, renamed into place), not by MLflow's migrations on first use: the
        same tables in 0.04 s of CPU instead of ~2 s, and no half-made database if the process is killed."""
        from mlflow.tracking import MlflowClient

        if not hasattr(self, "_client"):
            if self.local:
                self._create_local_db()
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def _create_local_db(self) -> None:
        db = Path(self.tracking_uri.removeprefix("sqlite:///"))
        if db.exists():
            return
        db.parent.mkdir(parents=True, exist_ok=True)  # as MLflow makes the directories of a new database
        self.root.mkdir(parents=True, exist_ok=True)
        with store_lock(self.root):  # processes started at once: one makes it, the others find it made
            if not db.exists():
                create_sqlite_atomically(db, new_mlflow_db)

    @property
    def index(self) -> RunIndex:
        """The run index of this store: sqlite3 over a local store (no MLflow import), else the client."""
        return open_index(self.tracking_uri, None if self.local else self.client)

    def exists(self) -> bool:
        """Whether there is a store to read (a tracking server must answer, a local database must read:
        StoreUnavailable if not)."""
        if self.tracking_uri.startswith("sqlite:///"):
            db = Path(self.tracking_uri.removeprefix("sqlite:///"))
            self.check_readable(db)
            return db.exists()
        self.check_reachable()
        return True

    @staticmethod
    def check_readable(db: Path) -> None:
        """An existing local tracking database reads as SQLite; a damaged one is one clear error, and never written."""
        damage = sqlite_damage(db) if db.exists() else None
        if damage is not None:
            raise StoreUnavailable(
                f"the tracking database {db} is damaged ({damage}): restore it from a backup or "
                "move it aside (nothing was written to it)"
            )

    def check_reachable(self, timeout: float = REACH_TIMEOUT_S) -> None:
        """An http(s) tracking server answers its health check within `timeout` seconds (MLflow's client
        would retry for minutes before saying anything)."""
        import urllib.error
        import urllib.request

        if not self.tracking_uri.startswith(("http://", "https://")):
            return
        url = self.tracking_uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                r.read(64)
        except urllib.error.HTTPError as e:
            if e.code in (401, 403):  # there is a server; it wants credentials MLflow's client will send
                return
            raise StoreUnavailable(f"the tracking server {redact(self.tracking_uri)} answered {e.code} to {url}") from e
        except (OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise StoreUnavailable(
                f"the tracking server {redact(self.tracking_uri)} does not answer ({reason}); "
                f"check --tracking-uri / MLFLOW_TRACKING_URI"
            ) from e

    def check_writable(self) -> None:
        """The store directory and its cache can be written (before any work: a fine-tuning is not lost to a
        read-only cache found at its end)."""
        for directory in (self.root, self.root / ".subnets"):
            try:
                directory.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryFile(dir=directory) as f:
                    f.write(b"0" * 4096)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                raise StoreUnavailable(f"cannot write to {directory}: {e.strerror or e}") from e

    def ensure(self) -> None:
        """Create (or migrate) the tracking database now, before any worker fans out.

        A local database is created under a temporary name and renamed into place, holding the store's
        lock: processes started at once wait for one another, and a process killed while MLflow creates
        its tables (seconds) leaves no half-made store behind, only a temporary file. A directory that cannot
        be written or a tracking server that does not answer is a StoreUnavailable, before any work."""
        self.check_writable()
        self.check_reachable()
        if self.local:
            db = Path(self.tracking_uri.removeprefix("sqlite:///"))
            self.check_readable(db)
            self._create_local_db()
        self.client.search_experiments(max_results=1)  # migrates an older store

    def experiment_id(self, name: str, create: bool = True) -> str | None:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        if not create:
            return None
        # a tracking server keeps artifacts where it was told to; a local store keeps them beside it
        location = (self.root / "mlartifacts" / name).as_uri() if self.local else None
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except Exception:  # another process created it first: MLflow says RESOURCE_ALREADY_EXISTS
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def run_status(self, experiment: str) -> dict[str, RunState]:
        """fingerprint -> the best state of its parent runs (FINISHED wins), without creating anything. A RUNNING
        run whose process on this host is gone is GONE (reap() marks it KILLED in MLflow).

        Read through the run index: a local SQLite store with sqlite3 (read-only), so `subnets plan` needs no
        MLflow import (seconds of CPU); other stores through the MLflow client."""
        from runners.tracking.status import owner_gone

        if not self.exists():
            return {}
        index = self.index
        out: dict[str, RunState] = {}
        for r in index.parent_runs(experiment):
            if not r.fingerprint or r.status.value not in RunState.__members__:
                continue  # SCHEDULED: no process of ours made it
            state = RunState(r.status.value)
            if state is RunState.RUNNING and owner_gone(r.tags.get(OWNER)):
                state = RunState.GONE
            if r.fingerprint not in out or state.rank > out[r.fingerprint].rank:
                out[r.fingerprint] = state
        return out

    def reap(self, experiment: str) -> int:
        """Mark KILLED the RUNNING runs (and sweep runs) of `experiment` whose process on this host is gone."""
        from runners.tracking.status import owner_gone

        exp_id = self.experiment_id(experiment, create=False)
        if exp_id is None:
            return 0
        running = self.client.search_runs(
            [exp_id], filter_string=f"attributes.status = '{RunStatus.RUNNING.value}'", max_results=50000
        )
        stale = [r for r in running if owner_gone(r.data.tags.get(OWNER))]
        for r in stale:
            self.client.set_tag(r.info.run_id, ENDED_BY, "its process was gone (killed)")
            self.client.set_terminated(r.info.run_id, RunStatus.KILLED.value)
        return len(stale)

    def start_run(self, experiment_id: str, name: str, tags: dict[str, str], parent: str | None = None) -> "RunLog":
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        from runners.tracking.status import owner

        tags = {**tags, OWNER: owner()}
        if parent:
            tags = {**tags, MLFLOW_PARENT_RUN_ID: parent}
        run = self.client.create_run(experiment_id, run_name=name, tags=tags)
        return RunLog(self, run.info.run_id, run.info.artifact_uri)

    def reopen(self, run_id: str, artifact_uri: str, tags: dict[str, str]) -> "RunLog":
        """A KILLED or FAILED run made RUNNING again by this process (a resumed run keeps its id)."""
        from runners.tracking.status import owner

        self.client.update_run(run_id, status=RunStatus.RUNNING.value)
        run = RunLog(self, run_id, artifact_uri)
        run.tags({**tags, OWNER: owner()})
        return run


@dataclass
class RunLog:
    """Buffers metrics and flushes them with log_batch (one SQLite transaction per 1000 metrics)."""

    store: Store
    run_id: str
    artifact_uri: str
    _metrics: list = field(default_factory=list)

    def metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._metrics += [Metric(k, float(v), now, step) for k, v in values.items()]
        if len(self._metrics) >= MAX_METRICS:
            self.flush()

    def flush(self) -> None:
        while self._metrics:
            chunk, self._metrics = self._metrics[:MAX_METRICS], self._metrics[MAX_METRICS:]
            self.store.client.log_batch(self.run_id, metrics=chunk)

    def params(self, values: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, _short(v)) for k, v in values.items()]
        for i in range(0, len(items), MAX_PARAMS):
            self.store.client.log_batch(self.run_id, params=items[i : i + MAX_PARAMS])

    def tags(self, values: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, _short(v)) for k, v in values.items()]
        for i in range(0, len(items), MAX_TAGS):
            self.store.client.log_batch(self.run_id, tags=items[i : i + MAX_TAGS])

    def artifact(self, local: str | Path, artifact_path: str | None = None) -> None:
        local = Path(local)
        if local.is_dir():
            self.store.client.log_artifacts(self.run_id, str(local), artifact_path)
        else:
            self.store.client.log_artifact(self.run_id, str(local), artifact_path)

    def json_artifact(self, name: str, obj: Any, tmp: Path) -> None:
        path = tmp / name
        path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
        self.artifact(path)

    def finish(self, status: RunStatus = RunStatus.FINISHED) -> None:
        self.flush()
        self.store.client.set_terminated(self.run_id, RunStatus(status).value)


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: the resolved config as MLflow params."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out or ({prefix[:-1]: "{}"} if prefix else {})
    return {prefix[:-1]: json.dumps(obj) if isinstance(obj, (list, tuple)) else obj}


def _short(v: Any) -> str:
    s = "" if v is None else str(v)
    return s if len(s) <= 6000 else s[:5997] + "..."
