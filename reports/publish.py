"""Publishing a built report to MLflow: report.html logged to one run tagged subnets.kind = report in each reported
experiment, reused by the next report, so the report opens in the MLflow UI next to the runs it describes. The
warehouse, `plan` and `status` count only runs tagged subnets.kind = run.

Importing MLflow costs seconds, so it is imported only where a report run must be created or changed: a local
store's FINISHED report run gets its new report.html written straight into its artifact directory (an artifact is a
file MLflow only lists; its database is not touched). Otherwise (a new report run, one not FINISHED, a tracking
server) the MLflow client logs the file and ends the run, imported in a thread while the report is built.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterable, Sequence

from registry.files import locked, replacing
from registry.runindex import (
    ClientRunIndex,
    LocalRunIndex,
    RunRecord,
    local_artifact_path,
    mlflow_client,
    open_index,
    sqlite_path,
)
from registry.tracking import EXPERIMENT, KIND, RunKind, RunStatus

REPORT_FILE = "report.html"
MLFLOW_NOTE = "mlflow.note.content"  # MLflow's own tag: the run's description in its UI
NOTE = f"The subnets report of this experiment: open {REPORT_FILE} under Artifacts (rebuilt by `subnets report`)."


def log_report(tracking_uri: str, html_path: Path, experiments: Iterable[str], client: Any = None) -> list[str]:
    """Log the report (as report.html) through the MLflow client to the report run of each named experiment,
    creating it when there is none, and mark it FINISHED. Returns the report runs' ids."""
    client = client if client is not None else mlflow_client(tracking_uri)
    index = ClientRunIndex(tracking_uri, client)
    ids = []
    with tempfile.TemporaryDirectory(prefix="subnets-report-") as tmp:
        staged = Path(tmp) / REPORT_FILE  # the artifact's name, whatever the report file is called
        staged.write_bytes(Path(html_path).read_bytes())
        for name in experiments:
            exp = client.get_experiment_by_name(name)
            if exp is None or exp.lifecycle_stage != "active":
                continue
            with _creating(tracking_uri):
                found = index.runs(RunKind.REPORT, [name])
                run_id = found[0].run_id if found else _create_report_run(client, index, exp.experiment_id, name)
            client.log_artifact(run_id, str(staged))
            client.set_terminated(run_id, RunStatus.FINISHED.value)
            ids.append(run_id)
    return ids


@contextlib.contextmanager
def _creating(tracking_uri: str):
    """On a local store, reports that start together find or create the report run one at a time (a lock file beside
    mlflow.db); against a tracking server `_create_report_run` settles it without a lock."""
    db = sqlite_path(tracking_uri)
    if db is None:
        yield
        return
    with locked(db.parent / ".report-run.lock"):
        yield


def _create_report_run(client: Any, index: ClientRunIndex, experiment_id: str, name: str) -> str:
    """A new report run for experiment `name`, unless another report created one at the same moment: reports
    started together each found none and each created one (seen: 3 report runs from 3 reports at once). After
    creating, every creator lists the report runs and keeps the oldest (start time, then id: one choice all of
    them make alike); a creator whose run is not that one deletes its own and logs to the oldest. Against a
    tracking server this holds when the creations are visible to each other's listing (their start times are the
    clients'); a local store also takes a lock (`_creating`), so there it always holds."""
    mine = client.create_run(
        experiment_id,
        run_name=RunKind.REPORT.value,
        tags={KIND: RunKind.REPORT.value, EXPERIMENT: name, MLFLOW_NOTE: NOTE},
    ).info.run_id
    found = index.runs(RunKind.REPORT, [name])
    oldest = min(found, key=lambda r: (r.start_time or 0, r.run_id), default=None)
    if oldest is None or oldest.run_id == mine:
        return mine
    client.delete_run(mine)
    return oldest.run_id


def write_locally(html_path: Path, runs: Sequence[RunRecord]) -> list[str]:
    """report.html replaced in each (FINISHED, local) report run's artifact directory, renamed into place; the
    copies after the first are hard links to it where the file system allows. Returns the runs' ids."""
    html = Path(html_path).read_bytes()
    written: Path | None = None
    for run in runs:
        target = local_artifact_path(run.artifact_uri) / REPORT_FILE
        with replacing(target) as tmp:  # never written in place, so linked copies share no later change
            linked = False
            if written is not None:
                with contextlib.suppress(OSError):  # another file system: a copy instead
                    os.link(written, tmp)
                    linked = True
            if not linked:
                tmp.write_bytes(html)
        written = written or target
    return [run.run_id for run in runs]


def _local_ready(run: RunRecord | None) -> bool:
    """A report run whose report.html can be replaced without MLflow: FINISHED, artifacts in a local directory."""
    if run is None or run.status != RunStatus.FINISHED:
        return False
    local = local_artifact_path(run.artifact_uri)
    return local is not None and local.is_absolute()


class Publisher:
    """Made before the report is built: it reads the report runs of a local store (sqlite3, no MLflow) and, when
    some reported experiment will need the MLflow client, starts importing MLflow in a thread, so logging adds
    little to the wall time."""

    def __init__(self, tracking_uri: str, experiments: Sequence[str] | None = None):
        self.tracking_uri = tracking_uri
        index = open_index(tracking_uri)
        self.found = index.report_runs() if isinstance(index, LocalRunIndex) else None
        wanted = set(experiments) if experiments is not None else None
        self._box: dict[str, Any] = {}
        self._warm: threading.Thread | None = None
        if self.found is None or any(
            not _local_ready(run) for name, run in self.found.items() if wanted is None or name in wanted
        ):
            self._start()

    def _start(self) -> None:
        def warm() -> None:
            try:
                client = mlflow_client(self.tracking_uri)
                client.search_experiments(max_results=1)  # opens (and checks) the store
                self._box["client"] = client
            except Exception as exc:  # noqa: BLE001 - raised again in the caller's thread
                self._box["error"] = exc

        self._warm = threading.Thread(target=warm, daemon=True)
        self._warm.start()

    def publish(self, html_path: Path, reported: Sequence[str]) -> list[str]:
        """Log the report to each reported experiment's report run; the runs' ids."""
        runs = self.found or {}
        local = [runs[name] for name in reported if _local_ready(runs.get(name))]
        ids = write_locally(html_path, local)
        rest = [name for name in reported if not _local_ready(runs.get(name))]
        if not rest:
            return ids
        if self._warm is None:  # a report run went missing meanwhile: MLflow after all
            self._start()
        self._warm.join()
        if "error" in self._box:
            raise self._box["error"]
        return ids + log_report(self.tracking_uri, html_path, rest, self._box["client"])
