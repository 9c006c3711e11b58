"""Reading the studies back: per study, its trials by state, what is running, the best subnetwork found
(`summarise`, for `plan`, `status` and `sweep`), and each search's summary logged on its MLflow sweep run
(`finish_sweeps`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from registry import tracking as tracked
from registry.studyname import StudyName
from registry.tracking import RunStatus
from runners.queue.samplers import holds, withdrawn
from runners.queue.storage import open_storage
from runners.tracking.store import RunLog, Store


@dataclass
class StudySummary:
    name: StudyName
    label: str
    states: dict[TrialState, int]
    budget: int | None
    best_kept: float | None  # effective size: the smallest kept fraction that holds
    best_params: dict[str, Any] | None
    running: list[tuple[int, str, float]]  # (trial, worker, seconds running)
    pareto: int | None = None  # trials on the Pareto front
    remaining: int = 0  # trials still to finish: waiting and running (a search: its budget less those finished)
    mean_trial_s: float | None = None  # mean wall time of the finished trials so far

    @property
    def eta_s(self) -> float | None:
        """Seconds left: the remaining trials x the mean trial time so far, shared by the workers running now
        (None before a trial has finished)."""
        if self.mean_trial_s is None:
            return None
        return self.remaining * self.mean_trial_s / max(1, len(self.running))

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain data (`subnets status --format json`)."""
        return {
            "study": self.name.format(),
            "kind": self.name.kind.value,
            "experiment": self.name.experiment,
            "run": self.label,
            "trials": {k.name: v for k, v in sorted(self.states.items(), key=lambda kv: kv[0].name)},
            "budget": self.budget,
            "remaining": self.remaining,
            "mean_trial_s": self.mean_trial_s,
            "eta_s": self.eta_s,
            "running": [{"trial": n, "worker": w, "seconds": sec} for n, w, sec in self.running],
            "effective_size": self.best_kept,
            "best": self.best_params,
            "pareto_front": self.pareto,
        }

    @property
    def has_work(self) -> bool:
        """Trials waiting or running."""
        return bool(self.states.get(TrialState.WAITING) or self.states.get(TrialState.RUNNING))


def summarise(storage_url: str, names: list[StudyName]) -> list[StudySummary]:
    """The summaries of the studies among `names` that exist, in order."""
    storage = open_storage(storage_url)
    out = []
    for name in names:
        try:
            study = optuna.load_study(study_name=name.format(), storage=storage)
        except KeyError:
            continue
        trials = [t for t in study.get_trials(deepcopy=False) if not withdrawn(t)]
        states: dict[TrialState, int] = {}
        for t in trials:
            states[t.state] = states.get(t.state, 0) + 1
        now = time.time()
        running = [
            (t.number, t.user_attrs.get("worker", "?"), now - t.datetime_start.timestamp())
            for t in trials
            if t.state == TrialState.RUNNING and t.datetime_start
        ]
        feasible = [t for t in trials if t.state == TrialState.COMPLETE and holds(t)]
        best = min(feasible, key=lambda t: t.values[0], default=None)
        pareto = None
        if len(study.directions) > 1:
            pareto = len(study.best_trials)
        ended = [
            (t.datetime_complete - t.datetime_start).total_seconds()
            for t in trials
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.datetime_start and t.datetime_complete
        ]
        budget = study.user_attrs.get("trials")
        pending = states.get(TrialState.WAITING, 0) + states.get(TrialState.RUNNING, 0)
        remaining = max(0, budget - len(ended)) if budget and not name.is_grid else pending
        out.append(
            StudySummary(
                name,
                study.user_attrs.get("label", ""),
                states,
                budget,
                best.values[0] if best else None,
                dict(best.params) if best else None,
                running,
                pareto,
                remaining,
                sum(ended) / len(ended) if ended else None,
            )
        )
    return out


def finish_sweeps(storage_url: str, store: Store, names: list[StudyName]) -> None:
    """Log each study's summary on its MLflow parent run; FINISHED once the study has no work left."""
    storage = open_storage(storage_url)
    for s in summarise(storage_url, names):
        study = optuna.load_study(study_name=s.name.format(), storage=storage)
        parent = study.user_attrs.get("mlflow_parent_run_id")
        if not parent:
            continue
        metrics = {
            tracked.SWEEP_TRIALS_COMPLETE: s.states.get(TrialState.COMPLETE, 0),
            tracked.SWEEP_TRIALS_PRUNED: s.states.get(TrialState.PRUNED, 0),
            tracked.SWEEP_TRIALS_FAILED: s.states.get(TrialState.FAIL, 0),
        }
        if s.best_kept is not None:
            metrics[tracked.EFFECTIVE_SIZE] = s.best_kept
        log = RunLog(store, parent, "")
        log.metrics(metrics, step=0)
        if s.best_params:
            log.tags({f"{tracked.BEST_PREFIX}{k}": str(v) for k, v in s.best_params.items()})
        log.flush()
        if not s.running and not s.states.get(TrialState.WAITING):
            store.client.set_terminated(parent, RunStatus.FINISHED.value)


__all__ = ["StudySummary", "finish_sweeps", "summarise"]
