"""The worker: pops trials from the queue's studies and runs them until no study has work left.

A grid trial carries the fingerprint of the expanded run it stands for; a search trial is a run of the
searched base run with sampled method parameters, logged as a child of the study's sweep run and measured
for its study (measure.py). Optuna hands each waiting trial to one worker; a worker that dies mid-trial
stops beating and its trial is failed and retried by another.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import optuna
from mlflow.exceptions import MlflowException
from optuna.trial import TrialState

from registry import tracking as tracked
from registry.keeprule import kept_fraction
from registry.methods import METHODS
from registry.schema import PruneSpec, RunSpec
from registry.studyname import StudyName
from registry.tracking import RunStatus, StopReason
from runners.data import SourceError
from runners.pruning import UnsupportedArchitecture
from runners.queue.coordinator import PENDING
from runners.queue.measure import Reporter, measure_logged, measure_steps
from runners.queue.outage import Outage, QueueUnreachable, unreachable
from runners.queue.samplers import WITHDRAWN, BisectionSampler, Evidence, evidence, make_sampler, suggest, withdrawn
from runners.queue.storage import StorageUnusable, heartbeat_s, open_storage
from runners.queue.text import run_summary, run_title
from runners.run.context import RunContext
from runners.run.execute import execute
from runners.tracking.progress import Progress, release_interrupted
from runners.tracking.status import owner, owner_gone
from runners.tracking.store import Store
from runners.training import DeviceError

WAIT_POLL_S = 0.5  # how often a worker with nothing to do looks whether the others' trials have ended
SPENT = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)

worker_id = owner  # host:pid, as runs are tagged


class RunError(Exception):
    """A run could not start or finish for a reason the user can fix (data, hub, model, device)."""

    def __init__(self, spec: RunSpec, cause: BaseException):
        super().__init__(str(cause))
        self.spec, self.cause = spec, cause


class StorageError(Exception):
    pass


def storage_error(e: BaseException) -> str | None:
    """The first line of a tracking-store failure (MLflow wraps SQLAlchemy and HTTP errors), else None."""
    chain, seen = e, 0
    while chain is not None and seen < 10:
        if isinstance(chain, MlflowException) or type(chain).__module__.startswith(
            ("sqlalchemy", "sqlite3", "requests")
        ):
            text = str(chain).strip().splitlines()
            return text[0] if text else type(chain).__name__
        chain, seen = chain.__cause__ or chain.__context__, seen + 1
    return None


def _execute(spec: RunSpec, store: Store, progress: Progress, context: RunContext):
    try:
        return execute(spec, store, progress, context)
    except (SourceError, OSError, UnsupportedArchitecture, DeviceError) as e:
        raise RunError(spec, e) from e
    except Exception as e:
        if unreachable(e):  # the queue's database, not the tracking store (a search trial reports to it mid-run)
            raise
        if storage_error(e):  # the tracking store failed to write (a full disk, a server gone): say so plainly
            raise RunError(spec, StorageError(f"the tracking store failed: {storage_error(e)}")) from e
        raise


@dataclass
class WorkLog:
    ran: int = 0
    reused: int = 0
    pruned: int = 0
    skipped: int = 0
    trials: list[tuple[str, int, str]] = field(default_factory=list)  # (study, trial, fingerprint)


class Worker:
    """Pops trials from the studies it is given until none has work left."""

    def __init__(
        self, runs: list[RunSpec], storage_url: str, store: Store, progress: Progress, worker_index: int = 0, echo=print
    ):
        self.runs = {r.fingerprint: r for r in runs}
        self.store, self.progress, self.index, self.echo = store, progress, worker_index, echo
        self.prefix = f"[worker {worker_index}] " if worker_index else ""
        # a database restart or outage is ridden through for a bounded time (runners/queue/outage.py)
        self.outage = Outage(echo, self.prefix)
        try:
            self.storage = open_storage(storage_url, outage=self.outage)
        except QueueUnreachable as e:
            self._give_up(e)
        except StorageUnusable as e:  # damaged, or made by another Optuna: one line, exit code 2, no traceback
            self.echo(str(e))
            raise SystemExit(2) from None
        self.log = WorkLog()
        self._samplers: dict[StudyName, optuna.samplers.BaseSampler] = {}

    def _give_up(self, e: QueueUnreachable):
        """The database stayed unreachable past the bound: one line, exit code 2, no traceback. The trial in
        hand stays RUNNING until its heartbeat is stale, then it is failed and retried (a finished run reused)."""
        self.echo(str(e))
        raise SystemExit(2) from None

    def run(self, studies: list[StudyName], max_trials: int | None = None) -> WorkLog:
        """Take trials until no study has work. While other workers still run trials, wait: a trial whose
        worker died is failed once its heartbeat is stale and comes back to the queue for us to take."""
        try:
            return self._run(studies, max_trials)
        except Exception as e:
            # Optuna may raise another error while handling ours (an UnboundLocalError in its _run_trial)
            if (cause := unreachable(e)) is None:
                raise
            self._give_up(cause)

    def _run(self, studies: list[StudyName], max_trials: int | None) -> WorkLog:
        done = 0
        while max_trials is None or done < max_trials:
            name = self._next_study(studies)
            if name is None:
                if not self._others_running(studies):
                    break
                if not any(self._has_work(s) for s in studies):  # a retry just enqueued is taken at once
                    self._wait_for_a_change(studies)
                continue
            study = self._load(name)
            objective = self._grid_objective if name.is_grid else self._search_objective(name, study)
            taken: list[int] = []
            returned: list[bool] = []

            def tracked(trial: optuna.Trial, objective=objective):
                taken.append(trial._trial_id)  # the storage's key of the trial, for the retry below
                value = objective(trial)
                returned.append(True)
                return value

            # optimize (not ask/tell): it keeps the trial's heartbeat and fails stale trials of dead workers
            try:
                study.optimize(tracked, n_trials=1, catch=(), gc_after_trial=False)
            except KeyboardInterrupt as stop:  # Ctrl-C, SIGTERM, scancel: the trial goes back to the queue
                release_interrupted(stop)
                self._retry(study, taken)
                raise
            except Exception as e:
                if unreachable(e) or not (taken and returned and self.outage.outages):
                    raise
                trial = self.storage.get_trial(taken[-1])
                if not trial.state.is_finished():
                    raise
                # Optuna's tell found the trial already finished: after an outage longer than the grace period
                # another worker failed it as stale before our result was recorded; it enqueued a retry, which
                # finds this fingerprint's FINISHED run and completes as reused
                self.echo(
                    f"{self.prefix}trial {trial.number}: its result could not be recorded (the trial was marked "
                    f"{trial.state.name} while the queue storage was unreachable); its retry reuses the finished run"
                )
            done += 1
        return self.log

    def _next_study(self, studies: list[StudyName]) -> StudyName | None:
        """The first study with work, a search that no other worker is running before one that another is: a
        second trial of a running search speculates on a bracket still moving, another seed's search does not."""
        busy = None
        for name in studies:
            if not self._has_work(name):
                continue
            if name.is_grid:
                return name
            study = optuna.load_study(study_name=name.format(), storage=self.storage)
            if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                return name
            busy = busy or name
        return busy

    def _retry(self, study: optuna.Study, taken: list[int]) -> None:
        """Optuna marks the trial of a stopped worker FAIL; enqueue its retry now (as a dead worker's stale trial
        gets one), so the other workers, or the next run, take it instead of leaving it failed."""
        retry = self.storage.get_heartbeat_stale_trial_callback()
        if not taken or retry is None:
            return
        trial = self.storage.get_trial(taken[-1])
        if trial.state == TrialState.FAIL:
            retry(study, trial)

    def _others_running(self, studies: list[StudyName]) -> bool:
        for name in studies:
            study = optuna.load_study(study_name=name.format(), storage=self.storage)
            self._fail_trials_of_dead_workers(study)
            with warnings.catch_warnings():  # experimental since Optuna 2.9, public and documented
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)  # a dead worker's trial: FAILED, and a retry enqueued
        return bool(self._pending(studies))  # incl. a retry just enqueued

    def _pending(self, studies: list[StudyName]) -> set[tuple[str, int]]:
        """The trials of these studies waiting or running now: one query a study."""
        found = set()
        for name in studies:
            study_id = self.storage.get_study_id_from_name(name.format())
            trials = self.storage.get_all_trials(study_id, deepcopy=False, states=PENDING)
            found |= {(name.format(), t.number) for t in trials}
        return found

    def _wait_for_a_change(self, studies: list[StudyName]) -> None:
        """Wait while the trials other workers run go on: until one ends or another is enqueued (looked at every
        WAIT_POLL_S), at most a heartbeat interval, after which the caller looks for a dead worker's stale trial
        again. Sleeping a whole interval kept a worker with nothing left to do up to 5 s after the last trial."""
        before = self._pending(studies)
        if not before:  # they ended since the caller looked
            return
        names = {study for study, _ in before}
        watched = [n for n in studies if n.format() in names]  # a retry joins the study of the trial it retries
        deadline = time.monotonic() + heartbeat_s()
        while time.monotonic() < deadline:
            time.sleep(min(WAIT_POLL_S, max(0.0, deadline - time.monotonic())))
            if self._pending(watched) != before:
                return

    def _fail_trials_of_dead_workers(self, study: optuna.Study) -> None:
        """Running trials whose worker was a process of this host that no longer exists (a SIGKILL, a crash):
        failed and retried now, as a stale heartbeat would have them grace_s() later. A rerun after a kill then
        starts at once (measured: the wait for the grace period made a resumed rerun slower than a fresh run)."""
        retry = self.storage.get_heartbeat_stale_trial_callback()
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if not owner_gone(trial.user_attrs.get("worker")):
                continue
            try:  # _trial_id: the storage's key of the trial, as optuna.storages.fail_stale_trials uses it
                failed = self.storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker got there first
            if failed and retry is not None:
                retry(study, self.storage.get_trial(trial._trial_id))

    def _sampler(self, name: StudyName) -> optuna.samplers.BaseSampler | None:
        """The search study's sampler, built once per worker (grid studies need none)."""
        if name.is_grid:
            return None
        if name not in self._samplers:
            search = self._base(name).search
            siblings = self._siblings(name) if search.warm_start == "siblings" else None
            self._samplers[name] = make_sampler(search, self.index, siblings)
        return self._samplers[name]

    def _siblings(self, name: StudyName) -> Callable[[], list[Evidence]]:
        """Reads the evidence of the searches of the same fine-tuned model and grid point under the other pruning
        seeds (a warm start's prior)."""
        base = self._base(name)
        (param,) = base.search.space  # bisection: one dimension
        model = (base.experiment, base.group, base.finetune_fingerprint)
        names = [
            StudyName.of_search(r)
            for r in self.runs.values()
            if r.fingerprint != base.fingerprint
            and r.search is not None
            and (r.experiment, r.group, r.finetune_fingerprint) == model
        ]

        def read() -> list[Evidence]:
            found = []
            for sibling in names:
                try:
                    found.append(evidence(optuna.load_study(study_name=sibling.format(), storage=self.storage), param))
                except KeyError:  # not created yet
                    continue
            return found

        return read

    def _load(self, name: StudyName) -> optuna.Study:
        pruner = None
        if not name.is_grid:  # explicit, not Optuna's default: "none" must never prune
            use_median = self._base(name).search.pruner == "median"
            pruner = optuna.pruners.MedianPruner() if use_median else optuna.pruners.NopPruner()
        return optuna.load_study(
            study_name=name.format(), storage=self.storage, sampler=self._sampler(name), pruner=pruner
        )

    def _base(self, name: StudyName) -> RunSpec:
        if name.fingerprint not in self.runs:
            raise KeyError(f"study {name} searches a run that is not in this experiments file")
        return self.runs[name.fingerprint]

    def _has_work(self, name: StudyName) -> bool:
        study = optuna.load_study(study_name=name.format(), storage=self.storage)
        if name.is_grid:
            return any(t.state == TrialState.WAITING for t in study.get_trials(deepcopy=False))
        if name.fingerprint not in self.runs:
            return False
        spent = [t for t in study.get_trials(deepcopy=False, states=SPENT) if not withdrawn(t)]
        sampler = self._sampler(name)
        if isinstance(sampler, BisectionSampler):
            if sampler.finished(study):
                return False
            if not self._base(name).search.speculate and any(t.state == TrialState.RUNNING for t in spent):
                return False  # its next value waits for the running trial's answer
        return len(spent) < study.user_attrs.get("trials", 0)

    # -- grid trials: the fingerprint rides on the enqueued trial
    def _grid_objective(self, trial: optuna.Trial) -> float:
        fp = trial.user_attrs.get("fingerprint")
        trial.set_user_attr("worker", worker_id())
        if fp is None:  # another worker took the last waiting trial between our look and our ask
            trial.set_user_attr("reason", "the queue was empty when this worker asked")
            raise optuna.TrialPruned()
        spec = self.runs.get(fp)
        if spec is None:
            self.log.skipped += 1
            trial.set_user_attr("reason", "fingerprint not in this worker's experiments file")
            raise optuna.TrialPruned()
        # enqueued twice by two coordinators at once: the copy that started first has it (start time, then number:
        # one order that every worker sees alike, so exactly one of two copies popped together goes on)
        copies = [
            t
            for t in trial.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t.user_attrs.get("fingerprint") == fp
        ]  # this trial among them
        first = min(copies, key=lambda t: (t.datetime_start, t.number))
        if first.number != trial.number:
            trial.set_user_attr("reason", f"trial {first.number} is running this fingerprint")
            raise optuna.TrialPruned()
        if self.store.run_status(spec.experiment).get(fp) == RunStatus.FINISHED:
            # two coordinators that enqueue at the same moment (two machines starting together) can each enqueue a
            # fingerprint: when another trial holds or has finished it, this copy is a duplicate, not a result
            holder = [
                t
                for t in trial.study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE))
                if t.user_attrs.get("fingerprint") == fp and t.number != trial.number
            ]
            if holder:
                trial.set_user_attr("reason", f"trial {holder[0].number} has this fingerprint (enqueued twice)")
                raise optuna.TrialPruned()
            self.log.reused += 1
            trial.set_user_attr("reused", True)
            logged = self.store.client.get_run(self._finished_run(spec)).data.metrics
            sparsity = float(logged.get(tracked.SELECTED_SPARSITY, 0.0))
            return kept_fraction(sparsity, None, "params")
        title = run_title(spec, trial.number)
        self.echo(f"{title}: started (fingerprint {fp})")
        with self.progress.about(f"{title}: "):
            outcome = _execute(spec, self.store, self.progress, RunContext.grid_run(spec))
        self.log.ran += 1
        self.log.trials.append((trial.study.study_name, trial.number, fp))
        trial.set_user_attr("run_id", outcome.run_id)
        self.echo(run_summary(outcome, spec, trial.number))
        return kept_fraction(outcome.selected.sparsity, None, "params")  # a grid trial's value: its kept parameters

    # -- search trials: sampled parameters on top of the base run
    def _search_objective(self, name: StudyName, study: optuna.Study):
        base = self._base(name)
        search, method = base.search, METHODS.get(base.prune.method)
        rule = search.keep_rule
        parent = study.user_attrs.get("mlflow_parent_run_id")

        def objective(trial: optuna.Trial):
            trial.set_user_attr("worker", worker_id())
            if not search.speculate:
                # two workers that looked at once (no trial running) each asked for one: the trial that started
                # first goes on, this one steps aside before sampling a value (the second waits for its answer)
                running = [
                    t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if not withdrawn(t)
                ]  # this trial among them
                first = min(running, key=lambda t: (t.datetime_start, t.number))
                if first.number != trial.number:
                    trial.set_user_attr(WITHDRAWN, True)
                    trial.set_user_attr("reason", f"trial {first.number} of this search is running (speculate = false)")
                    raise optuna.TrialPruned()
            values = {k: suggest(trial, k, d) for k, d in search.space.items()}
            spec = base.model_copy(
                update={
                    "prune": PruneSpec(method=base.prune.method, params=method.with_values(base.prune.params, values))
                }
            )
            trial.set_user_attr("fingerprint", spec.fingerprint)
            status = self.store.run_status(spec.experiment).get(spec.fingerprint)
            label = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
            where = f"[{spec.experiment}] trial {trial.number} of {name.fingerprint[:8]} ({base.label()})"
            if status == RunStatus.FINISHED:
                run_id = self._finished_run(spec)
                measured = measure_logged(self.store, run_id, spec)
                self.log.reused += 1
                trial.set_user_attr("reused", True)
            else:
                self.echo(f"{where}: {label}")
                # intermediate values exist for one objective only (Optuna has no pruning of multi-objective trials)
                reporters = (Reporter(trial, search, search.pruner != "none"),) if search.seeks_effective_size else ()
                ctx = RunContext.search_trial(name, trial.number, rule, parent, reporters, values)
                with self.progress.about(f"{where}: "):
                    outcome = _execute(spec, self.store, self.progress, ctx)
                run_id = outcome.run_id
                if outcome.stop_reason is StopReason.CALLBACK:
                    self.log.pruned += 1
                    trial.set_user_attr("run_id", run_id)
                    raise optuna.TrialPruned()
                measured = measure_steps(outcome.pruned_steps, outcome.selected, spec)
                self.log.ran += 1
            self.log.trials.append((study.study_name, trial.number, spec.fingerprint))
            threshold = rule.threshold(measured.full_id_score)
            constraint = threshold - measured.id_score  # <= 0: holds (TPE's and BisectionSampler's convention)
            trial.set_user_attr("constraint", [constraint])
            for k, v in {
                "run_id": run_id,
                "step": measured.step,
                "kept_fraction": measured.kept_fraction,
                "metric": spec.primary_metric,
                "id_score": measured.id_score,
                "full_id_score": measured.full_id_score,
                "holds": constraint <= 0,
                **{f"ood.{n}": a for n, a in measured.ood.items()},
            }.items():
                trial.set_user_attr(k, v)
            self.echo(
                f"{where}: kept {measured.kept_fraction:.3f}: ID {spec.primary_metric} {measured.id_score:.3f} "
                f"({'holds' if constraint <= 0 else 'fails'} the keep rule, threshold {threshold:.3f})"
            )
            return measured.values(base)

        return objective

    def _finished_run(self, spec: RunSpec) -> str:
        """The id of the newest FINISHED run of `spec`'s fingerprint (the one the warehouse counts)."""
        return next(
            r.run_id
            for r in self.store.index.parent_runs(spec.experiment, spec.fingerprint)
            if r.status is RunStatus.FINISHED
        )


__all__ = ["RunError", "StorageError", "WorkLog", "Worker", "storage_error", "worker_id"]
