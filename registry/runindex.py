"""The run index: every read of subnets' runs out of MLflow, in one place, with two backends (as optuna has one
BaseStorage with several): ClientRunIndex asks the MLflow client (any tracking URI); LocalRunIndex reads a local
`sqlite:///.../mlflow.db` store read-only with sqlite3, because importing MLflow and opening its store costs
seconds of CPU that `subnets plan` and `subnets report` should not pay.

MLflow's private SQLite schema is read here and nowhere else (tables `experiments`, `runs`, `tags`, stable since
MLflow 1.x), and never written: tests/registry/test_runindex.py writes a store with the installed MLflow and checks that
both backends return the same records. Runs are written by runners.tracking.Store and reports.publish through the
MLflow client, which this module hands out (mlflow_client).

MLflow is imported lazily, inside the functions that need it, so the registry (and `subnets validate` / `plan`)
loads without it; this is the one registry module allowed to name it.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from registry.files import read_sqlite
from registry.tracking import FINGERPRINT, KIND, RunKind, RunStatus

__all__ = [
    "ClientRunIndex",
    "LocalRunIndex",
    "RunIndex",
    "RunRecord",
    "download_artifacts",
    "local_artifact_path",
    "mlflow_client",
    "open_index",
    "sqlite_path",
]

log = logging.getLogger(__name__)

PAGE = 1000  # runs per search_runs page (MLflow's default maximum)


@dataclass(frozen=True)
class RunRecord:
    """One MLflow run as subnets reads it: its ids, status, start time (ms), artifact location and every tag."""

    run_id: str
    experiment_id: str
    experiment: str  # the experiment's name
    status: RunStatus
    start_time: int | None
    artifact_uri: str
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str | None:
        return self.tags.get(FINGERPRINT)


class RunIndex:
    """What subnets reads about its runs. Backends implement `experiments`, `runs` and `experiments_with`; the
    rules built on them (which run counts for a fingerprint, which report run is reused) are written here once."""

    def experiments(self) -> dict[str, str]:
        """{experiment id: name} of the active experiments."""
        raise NotImplementedError

    def runs(
        self,
        kind: RunKind,
        experiments: Sequence[str] | None = None,
        status: RunStatus | None = None,
        fingerprint: str | None = None,
    ) -> list[RunRecord]:
        """Active runs tagged `kind` of the active experiments (all, or those named), optionally only those with
        `status` and `fingerprint`; newest first (start time descending, then run id, as MLflow orders them)."""
        raise NotImplementedError

    def experiments_with(self, kind: RunKind, status: RunStatus) -> set[str]:
        """Names of the active experiments holding at least one active run tagged `kind` with `status`."""
        raise NotImplementedError

    def parent_runs(self, experiment: str, fingerprint: str | None = None) -> list[RunRecord]:
        """Every parent run (kind "run") of one experiment, or of one fingerprint in it, newest first."""
        return self.runs(RunKind.RUN, [experiment], fingerprint=fingerprint)

    def finished_runs(self, experiments: Sequence[str] | None = None) -> list[RunRecord]:
        """The runs the warehouse counts: FINISHED parent runs of all (or the named) experiments, newest first,
        one per (experiment, fingerprint). A fingerprint decides whether a run is done, so a second finished run
        of it (a forced rerun) supersedes the older one instead of being counted twice."""
        if experiments is not None:
            known = set(self.experiments().values())
            for name in experiments:
                if name not in known:
                    log.warning("no MLflow experiment named %r", name)
        seen, kept = set(), []
        for run in self.runs(RunKind.RUN, experiments, RunStatus.FINISHED):
            key = (run.experiment_id, run.tags.get(FINGERPRINT, run.run_id))
            if key not in seen:
                seen.add(key)
                kept.append(run)
        return kept

    def report_runs(self) -> dict[str, RunRecord | None]:
        """{experiment: its newest report run (kind "report"), or None} for each active experiment with FINISHED
        parent runs, i.e. each one a report describes; reports.publish reuses that run."""
        newest: dict[str, RunRecord] = {}
        for run in self.runs(RunKind.REPORT):
            newest.setdefault(run.experiment, run)
        return {name: newest.get(name) for name in sorted(self.experiments_with(RunKind.RUN, RunStatus.FINISHED))}


def _filter(kind: RunKind, status: RunStatus | None, fingerprint: str | None) -> str:
    """An MLflow search filter for the runs `RunIndex.runs` selects."""
    parts = [f"tags.`{KIND}` = '{kind.value}'"]
    if status is not None:
        parts.append(f"attributes.status = '{status.value}'")
    if fingerprint is not None:
        parts.append(f"tags.`{FINGERPRINT}` = '{fingerprint}'")
    return " and ".join(parts)


class ClientRunIndex(RunIndex):
    """The run index over the MLflow client: any tracking URI (a local store, a tracking server)."""

    def __init__(self, tracking_uri: str, client: Any = None):
        self.tracking_uri = tracking_uri
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = mlflow_client(self.tracking_uri)
        return self._client

    def experiments(self) -> dict[str, str]:
        out, token = {}, None
        while True:
            page = self.client.search_experiments(max_results=PAGE, page_token=token)  # active ones only
            out.update({e.experiment_id: e.name for e in page})
            token = page.token
            if not token:
                return out

    def _ids(self, experiments: Sequence[str] | None) -> dict[str, str]:
        if experiments is None:
            return self.experiments()
        ids = {}
        for name in experiments:
            exp = self.client.get_experiment_by_name(name)
            if exp is not None and exp.lifecycle_stage == "active":
                ids[exp.experiment_id] = exp.name
        return ids

    def _search(self, ids: Iterable[str], filter_string: str, limit: int | None = None) -> list[Any]:
        ids, runs, token = list(ids), [], None
        while ids:
            page = self.client.search_runs(
                ids,
                filter_string=filter_string,
                max_results=min(PAGE, limit or PAGE),
                order_by=["attributes.start_time DESC"],
                page_token=token,
            )
            runs += list(page)
            token = page.token
            if not token or (limit is not None and len(runs) >= limit):
                break
        return runs

    def runs(
        self,
        kind: RunKind,
        experiments: Sequence[str] | None = None,
        status: RunStatus | None = None,
        fingerprint: str | None = None,
    ) -> list[RunRecord]:
        names = self._ids(experiments)
        return [
            RunRecord(
                r.info.run_id,
                r.info.experiment_id,
                names[r.info.experiment_id],
                RunStatus(r.info.status),
                r.info.start_time,
                r.info.artifact_uri,
                dict(r.data.tags),
            )
            for r in self._search(names, _filter(kind, status, fingerprint))
        ]

    def experiments_with(self, kind: RunKind, status: RunStatus) -> set[str]:
        return {
            name
            for exp_id, name in self.experiments().items()
            if self._search([exp_id], _filter(kind, status, None), limit=1)
        }


# MLflow's SQLite schema: runs(run_uuid, experiment_id, status, start_time, lifecycle_stage, artifact_uri),
# tags(run_uuid, key, value), experiments(experiment_id, name, lifecycle_stage).
_ACTIVE_EXPERIMENTS = "SELECT experiment_id, name FROM experiments WHERE lifecycle_stage = 'active'"

_RUNS = """
SELECT r.run_uuid, r.experiment_id, e.name, r.status, r.start_time, r.artifact_uri, t.key, t.value
FROM runs AS r
JOIN experiments AS e ON e.experiment_id = r.experiment_id
JOIN tags AS kind ON kind.run_uuid = r.run_uuid AND kind.key = ? AND kind.value = ?
LEFT JOIN tags AS t ON t.run_uuid = r.run_uuid
WHERE r.lifecycle_stage = 'active' AND e.lifecycle_stage = 'active'{where}
ORDER BY r.start_time IS NULL, r.start_time DESC, r.run_uuid, t.key
"""

_EXPERIMENTS_WITH = """
SELECT DISTINCT e.name
FROM runs AS r
JOIN experiments AS e ON e.experiment_id = r.experiment_id
JOIN tags AS kind ON kind.run_uuid = r.run_uuid AND kind.key = ? AND kind.value = ?
WHERE r.lifecycle_stage = 'active' AND e.lifecycle_stage = 'active' AND r.status = ?
"""


class LocalRunIndex(RunIndex):
    """The run index over a local MLflow SQLite store, read-only with sqlite3 (no MLflow import). A store not
    created yet (no file, no tables) holds no runs."""

    def __init__(self, db: Path):
        self.db = Path(db)

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        if not self.db.is_file():
            return []
        try:
            return read_sqlite(self.db, sql, tuple(params))
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise

    def experiments(self) -> dict[str, str]:
        return {str(exp_id): name for exp_id, name in self._rows(_ACTIVE_EXPERIMENTS)}

    def runs(
        self,
        kind: RunKind,
        experiments: Sequence[str] | None = None,
        status: RunStatus | None = None,
        fingerprint: str | None = None,
    ) -> list[RunRecord]:
        where, params = "", [KIND, kind.value]
        if experiments is not None:
            where += f" AND e.name IN ({', '.join('?' * len(experiments))})"
            params += list(experiments)
        if status is not None:
            where += " AND r.status = ?"
            params.append(status.value)
        if fingerprint is not None:
            where += (
                " AND EXISTS (SELECT 1 FROM tags AS fp WHERE fp.run_uuid = r.run_uuid AND fp.key = ? AND fp.value = ?)"
            )
            params += [FINGERPRINT, fingerprint]
        records: dict[str, RunRecord] = {}  # in query order: newest first
        for run_id, exp_id, name, run_status, start, artifact_uri, key, value in self._rows(
            _RUNS.format(where=where), params
        ):
            run = records.get(run_id)
            if run is None:
                run = records[run_id] = RunRecord(run_id, str(exp_id), name, RunStatus(run_status), start, artifact_uri)
            if key is not None:
                run.tags[key] = value
        return list(records.values())

    def experiments_with(self, kind: RunKind, status: RunStatus) -> set[str]:
        return {name for (name,) in self._rows(_EXPERIMENTS_WITH, (KIND, kind.value, status.value))}


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a local `sqlite:///...` tracking URI; None for any other URI."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri.removeprefix("sqlite:///"))
    return None


def open_index(tracking_uri: str, client: Any = None) -> RunIndex:
    """The run index of a tracking URI: read with sqlite3 for a local SQLite store, else through the MLflow client
    (`client`, or one made on first use)."""
    db = sqlite_path(tracking_uri)
    return LocalRunIndex(db) if db is not None else ClientRunIndex(tracking_uri, client)


def mlflow_client(tracking_uri: str) -> Any:
    """An MLflow client (importing MLflow takes seconds: only call this where a run must be written or an artifact
    fetched from a tracking server)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def download_artifacts(tracking_uri: str, run_id: str, artifact_path: str, dst: Path) -> Path:
    """Fetch a run's artifact (file or directory) into `dst` through MLflow; the local path of the copy."""
    import mlflow.artifacts

    return Path(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=artifact_path, dst_path=str(dst), tracking_uri=tracking_uri
        )
    )


def local_artifact_path(artifact_uri: str) -> Path | None:
    """A local directory for an artifact URI, or None when it is not on a local file store."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        raw = Path(url2pathname(parsed.path))
        # MLflow does not always percent-encode file URIs; prefer the literal path if it exists.
        return raw if raw.exists() else Path(url2pathname(unquote(parsed.path)))
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # plain path (or a Windows drive letter)
        return Path(artifact_uri)
    return None
