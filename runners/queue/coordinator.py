"""The coordinator: run once before workers start, it creates the studies, enqueues a grid's runs and opens
each search's MLflow parent (sweep) run.

Grids: each experiment has a grid study; every expanded run that is neither FINISHED in MLflow nor already
waiting or running in the queue is enqueued as a trial carrying its fingerprint. Searches: each expanded
run with `[experiment.search]` is the base of a search study, its trial budget and sweep run recorded on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from registry import tracking as tracked
from registry.schema import RunSpec
from registry.search import study_directions
from registry.studyname import StudyName
from registry.tasks import ood_set_names
from registry.tracking import EXPERIMENT, KIND, RunKind, RunStatus
from runners.queue.storage import open_storage
from runners.tracking.store import Store

PENDING = (TrialState.WAITING, TrialState.RUNNING)


@dataclass
class Prepared:
    studies: list[StudyName]  # studies with work, in order
    enqueued: int = 0  # grid trials added now
    already_done: int = 0  # grid runs FINISHED in MLflow before this call
    pending: int = 0  # grid runs already waiting or running in the queue
    reaped: int = 0  # RUNNING runs whose process on this host was gone, now marked KILLED


def prepare_grid(storage_url: str, store: Store, runs: list[RunSpec]) -> Prepared:
    """Enqueue every run not FINISHED and not already queued, one study per experiment."""
    storage = open_storage(storage_url, create=True)
    out = Prepared([])
    for experiment in dict.fromkeys(r.experiment for r in runs):
        store.experiment_id(experiment)  # created here, once, before any worker fans out
        reaped = store.reap(experiment)  # runs whose process died: KILLED, so they run again
        out.reaped += reaped
        mine = [r for r in runs if r.experiment == experiment]
        done = store.run_status(experiment)
        name = StudyName.grid(experiment)
        study = optuna.create_study(
            study_name=name.format(), storage=storage, load_if_exists=True, direction="minimize"
        )
        queued = {t.user_attrs.get("fingerprint") for t in study.get_trials(deepcopy=False, states=PENDING)}
        for r in mine:
            if done.get(r.fingerprint) == RunStatus.FINISHED:
                out.already_done += 1
            elif r.fingerprint in queued:
                out.pending += 1
            else:
                study.enqueue_trial({}, user_attrs={"fingerprint": r.fingerprint, "label": r.label()})
                out.enqueued += 1
        if out.enqueued or out.pending:
            out.studies.append(name)
    return out


def prepare_search(storage_url: str, store: Store, runs: list[RunSpec], trials: int | None = None) -> Prepared:
    """One study per base run, its trial budget and its MLflow parent (sweep) run recorded on it."""
    storage = open_storage(storage_url, create=True)
    out = Prepared([])
    for base in runs:
        search = base.search
        name = StudyName.of_search(base)
        study = optuna.create_study(
            study_name=name.format(),
            storage=storage,
            load_if_exists=True,
            directions=study_directions(search, ood_set_names(base.task)),
        )
        attrs = study.user_attrs
        budget = trials or attrs.get("trials") or search.trials
        study.set_user_attr("trials", budget)
        study.set_user_attr("experiment", base.experiment)
        study.set_user_attr("base_fingerprint", base.fingerprint)
        study.set_user_attr("label", base.label())
        if "mlflow_parent_run_id" not in attrs:
            parent = store.start_run(
                store.experiment_id(base.experiment),
                f"sweep-{base.fingerprint[:8]}-{base.label()}",
                {
                    KIND: RunKind.SWEEP.value,
                    EXPERIMENT: base.experiment,
                    tracked.STUDY: name.format(),
                    tracked.BASE_FINGERPRINT: base.fingerprint,
                    tracked.SAMPLER: search.sampler,
                    tracked.OBJECTIVE: search.objective,
                    tracked.LABEL: base.label(),
                },
            )
            parent.params(
                {f"search.{k}": v for k, v in search.model_dump(mode="json").items() if k != "space"}
                | {f"search.space.{k}": v.model_dump_json() for k, v in search.space.items()}
            )
            study.set_user_attr("mlflow_parent_run_id", parent.run_id)
        out.studies.append(name)
    return out


__all__ = ["PENDING", "Prepared", "prepare_grid", "prepare_search"]
