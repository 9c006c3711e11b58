"""The work queue and the search: Optuna studies in one storage that any number of workers share.

Grids: each experiment has a study `subnets/<experiment>/grid`; every expanded run that is neither
FINISHED in MLflow nor already waiting/running in the queue is enqueued as a trial carrying its
fingerprint. A worker pops a trial (Optuna hands each waiting trial to one worker), runs it, and tells
the result; a worker that dies mid-trial stops beating and the trial is retried by another.

Searches: each expanded run of an experiment with `[experiment.search]` is the base of a study
`subnets/<experiment>/search/<fingerprint>`; its trials are runs with sampled method parameters, logged
as child runs of one MLflow parent run per study. The objective is the effective size (the kept fraction
of the trial's subnetwork, with the keep rule as an Optuna constraint) or a Pareto front.

`prepare(...)` runs once in the coordinating process (stores created before workers start);
`work(...)` is a worker's loop; `summarise(...)` reads the studies back.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from registry.methods import METHODS
from registry.schema import PruneSpec, RunSpec
from registry.search import Choices, FloatRange, IntRange, SearchSpec
from registry.tasks import eval_set_names
from runners.pruning.recipe import PruneStep, StopPruning
from runners.queue.samplers import BisectionSampler, holds
from runners.queue.storage import HEARTBEAT_S, open_storage
from runners.run.execute import TrialContext, execute
from runners.tracking.progress import Progress
from runners.tracking.status import owner, owner_gone
from registry import tracking as tracked
from registry.tracking import EXPERIMENT, KIND, RunKind, RunStatus, StopReason
from runners.tracking.store import Store

PENDING = (TrialState.WAITING, TrialState.RUNNING)
SPENT = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


def grid_study(experiment: str) -> str:
    return f"subnets/{experiment}/grid"


def search_study(base: RunSpec) -> str:
    return f"subnets/{base.experiment}/search/{base.fingerprint}"


def study_names(runs: list[RunSpec], grids: bool = True, searches: bool = True) -> list[str]:
    """The studies these runs live in: one grid study per experiment, one search study per searched run."""
    names = [grid_study(e) for e in dict.fromkeys(r.experiment for r in runs)] if grids else []
    return names + ([search_study(r) for r in runs if r.search is not None] if searches else [])


class RunError(Exception):
    """A run could not start or finish for a reason the user can fix (data, hub, model, device)."""

    def __init__(self, spec: RunSpec, cause: BaseException):
        super().__init__(str(cause))
        self.spec, self.cause = spec, cause


def _execute(spec: RunSpec, store: Store, progress: Progress, trial: TrialContext | None = None):
    from runners.data import SourceError
    from runners.pruning import UnsupportedArchitecture
    from runners.training import DeviceError

    try:
        return execute(spec, store, progress, trial)
    except (SourceError, OSError, UnsupportedArchitecture, DeviceError) as e:
        raise RunError(spec, e) from e
    except Exception as e:
        if storage_error(e):  # the tracking store failed to write (a full disk, a server gone): say so plainly
            raise RunError(spec, StorageError(f"the tracking store failed: {storage_error(e)}")) from e
        raise


class StorageError(Exception):
    pass


def storage_error(e: BaseException) -> str | None:
    """The first line of a tracking-store failure (MLflow wraps SQLAlchemy and HTTP errors), else None."""
    from mlflow.exceptions import MlflowException

    chain, seen = e, 0
    while chain is not None and seen < 10:
        if isinstance(chain, MlflowException) or type(chain).__module__.startswith(("sqlalchemy", "sqlite3", "requests")):
            text = str(chain).strip().splitlines()
            return text[0] if text else type(chain).__name__
        chain, seen = chain.__cause__ or chain.__context__, seen + 1
    return None


worker_id = owner  # host:pid, as runs are tagged


# ---- the coordinator: create studies, enqueue the grid, open sweep parent runs --------------------------


@dataclass
class Prepared:
    studies: list[str]  # studies with work, in order
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
        study = optuna.create_study(study_name=grid_study(experiment), storage=storage, load_if_exists=True,
                                    direction="minimize")
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
            out.studies.append(grid_study(experiment))
    return out


def prepare_search(storage_url: str, store: Store, runs: list[RunSpec], trials: int | None = None) -> Prepared:
    """One study per base run, its trial budget and its MLflow parent (sweep) run recorded on it."""
    storage = open_storage(storage_url, create=True)
    out = Prepared([])
    for base in runs:
        search = base.search
        study = optuna.create_study(study_name=search_study(base), storage=storage, load_if_exists=True,
                                    directions=directions(base))
        attrs = study.user_attrs
        budget = trials or attrs.get("trials") or search.trials
        study.set_user_attr("trials", budget)
        study.set_user_attr("experiment", base.experiment)
        study.set_user_attr("base_fingerprint", base.fingerprint)
        study.set_user_attr("label", base.label())
        if "mlflow_parent_run_id" not in attrs:
            parent = store.start_run(store.experiment_id(base.experiment), f"sweep-{base.fingerprint[:8]}-{base.label()}",
                                     {KIND: RunKind.SWEEP.value, EXPERIMENT: base.experiment, tracked.STUDY: study.study_name,
                                      tracked.BASE_FINGERPRINT: base.fingerprint, tracked.SAMPLER: search.sampler,
                                      tracked.OBJECTIVE: search.objective, tracked.LABEL: base.label()})
            parent.params({f"search.{k}": v for k, v in search.model_dump(mode="json").items() if k != "space"}
                          | {f"search.space.{k}": v.model_dump_json() for k, v in search.space.items()})
            study.set_user_attr("mlflow_parent_run_id", parent.run_id)
        out.studies.append(study.study_name)
    return out


def directions(base: RunSpec) -> list[str]:
    if base.search.objective == "effective_size":
        return ["minimize"]
    return ["minimize", "maximize", *("maximize" for _ in ood_sets(base))]


def ood_sets(base: RunSpec) -> list[str]:
    return [n for n in eval_set_names(base.task) if n != "id"]


# ---- samplers --------------------------------------------------------------------------------------------


def make_sampler(search: SearchSpec, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """The declared sampler; parallel workers get distinct seeds (seed + worker index) so they do not
    all propose the same values."""
    seed = search.seed + worker_index
    if search.sampler == "bisection":
        (key, dim), = search.space.items()
        return BisectionSampler(key, dim.low, dim.high, getattr(dim, "step", None), search.tolerance)
    if search.sampler == "grid":
        grid = {k: _grid_values(d) for k, d in search.space.items()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    constraints = (lambda t: t.user_attrs.get("constraint", [0.0])) if search.objective == "effective_size" else None
    return optuna.samplers.TPESampler(seed=seed, constraints_func=constraints, n_startup_trials=min(5, search.trials))


def _grid_values(dim) -> list:
    if isinstance(dim, Choices):
        return list(dim.choices)
    values, x = [], dim.low
    while x <= dim.high + 1e-12:
        values.append(round(x, 10) if isinstance(dim, FloatRange) else int(x))
        x += dim.step
    return values


def suggest(trial: optuna.Trial, key: str, dim) -> Any:
    if isinstance(dim, Choices):
        return trial.suggest_categorical(key, dim.choices)
    if isinstance(dim, IntRange):
        return trial.suggest_int(key, dim.low, dim.high, step=dim.step, log=dim.log)
    return trial.suggest_float(key, dim.low, dim.high, step=dim.step, log=dim.log)


# ---- measuring a trial -----------------------------------------------------------------------------------


@dataclass
class Measured:
    """The trial's subnetwork: the last step of a one-shot/L0 run (its single declared size), the kept
    step of an iterative one."""

    step: int
    kept_fraction: float
    id_score: float  # the task's own metric (accuracy, MCC, F1, Pearson, ...): what the keep rule judges
    full_id_score: float
    ood: dict[str, float] = field(default_factory=dict)  # each OOD set's score on the same metric


def measure_steps(steps: list[PruneStep], kept: PruneStep, base: RunSpec) -> Measured:
    method = METHODS.get(base.prune.method)
    sub = kept if method.x_axis(base.prune.params) == "step" else steps[-1]
    return Measured(sub.step, _kept(sub.sparsity, sub.unit_sparsity, base.search.size),
                    sub.results["id"].score, steps[0].results["id"].score,
                    {k: r.score for k, r in sub.results.items() if k != "id"})


def measure_logged(store: Store, run_id: str, base: RunSpec) -> Measured:
    """The same figures read back from a FINISHED run in MLflow (a trial whose fingerprint was done)."""
    client = store.client
    hist = lambda key: {m.step: m.value for m in client.get_metric_history(run_id, key)}  # noqa: E731
    metric = base.primary_metric
    sparsity, score = hist(tracked.STEP_SPARSITY), hist(tracked.id_metric(metric))
    method = METHODS.get(base.prune.method)
    if method.x_axis(base.prune.params) == "step":
        step = int(hist(tracked.SELECTED_STEP)[0])
    else:
        step = max(sparsity)
    units = hist("unit_sparsity")
    ood = {name: hist(tracked.ood_metric(name, metric)).get(step) for name in ood_sets(base)}
    return Measured(step, _kept(sparsity[step], units.get(step), base.search.size), score[step], score[0],
                    {k: v for k, v in ood.items() if v is not None})


def _kept(sparsity: float, unit_sparsity: float | None, size: str) -> float:
    return 1.0 - (unit_sparsity if size == "units" and unit_sparsity is not None else sparsity)


class Reporter:
    """Step callback of a search trial: the kept fraction of the sparsest step so far that keeps ID
    performance, reported per step; stop when the pruner says the trial is hopeless."""

    def __init__(self, trial: optuna.Trial, search: SearchSpec, use_pruner: bool):
        self.trial, self.search, self.use_pruner = trial, search, use_pruner
        self.full: float | None = None
        self.best = 1.0

    def __call__(self, step: PruneStep) -> None:
        if step.variant != "pruned":
            return
        acc = step.results["id"].score  # the task's own metric
        if step.step == 0:  # the full model: the keep rule's reference
            self.full = acc
        if self.full is not None and acc >= self.search.threshold(self.full):
            self.best = min(self.best, _kept(step.sparsity, step.unit_sparsity, self.search.size))
        self.trial.report(self.best, step.step)
        if self.use_pruner and self.trial.should_prune():
            raise StopPruning


# ---- the worker ------------------------------------------------------------------------------------------


@dataclass
class WorkLog:
    ran: int = 0
    reused: int = 0
    pruned: int = 0
    skipped: int = 0
    trials: list[tuple[str, int, str]] = field(default_factory=list)  # (study, trial, fingerprint)


class Worker:
    """Pops trials from the studies it is given until none has work left."""

    def __init__(self, runs: list[RunSpec], storage_url: str, store: Store, progress: Progress, worker_index: int = 0,
                 echo=print):
        self.runs = {r.fingerprint: r for r in runs}
        self.storage = open_storage(storage_url)
        self.store, self.progress, self.index, self.echo = store, progress, worker_index, echo
        self.log = WorkLog()
        self._samplers: dict[str, optuna.samplers.BaseSampler] = {}

    def run(self, studies: list[str], max_trials: int | None = None) -> WorkLog:
        """Take trials until no study has work. While other workers still run trials, wait: a trial whose
        worker died is failed once its heartbeat is stale and comes back to the queue for us to take."""
        done = 0
        while max_trials is None or done < max_trials:
            name = next((s for s in studies if self._has_work(s)), None)
            if name is None:
                if not self._others_running(studies):
                    break
                if not any(self._has_work(s) for s in studies):  # a retry just enqueued is taken at once
                    time.sleep(HEARTBEAT_S)
                continue
            study = self._load(name)
            objective = self._grid_objective if "/grid" in name else self._search_objective(study)
            # optimize (not ask/tell): it keeps the trial's heartbeat and fails stale trials of dead workers
            study.optimize(objective, n_trials=1, catch=(), gc_after_trial=False)
            done += 1
        return self.log

    def _others_running(self, studies: list[str]) -> bool:
        running = False
        for name in studies:
            study = optuna.load_study(study_name=name, storage=self.storage)
            self._fail_trials_of_dead_workers(study)
            with warnings.catch_warnings():  # experimental since Optuna 2.9, public and documented
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)  # a dead worker's trial: FAILED, and a retry enqueued
            running |= bool(study.get_trials(deepcopy=False, states=PENDING))  # incl. a retry just enqueued
        return running

    def _fail_trials_of_dead_workers(self, study: optuna.Study) -> None:
        """Running trials whose worker was a process of this host that no longer exists (a SIGKILL, a crash):
        failed and retried now, as a stale heartbeat would have them GRACE_S later. A rerun after a kill then
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

    def _sampler(self, name: str) -> optuna.samplers.BaseSampler | None:
        """The search study's sampler, built once per worker (grid studies need none)."""
        if "/search/" not in name:
            return None
        if name not in self._samplers:
            self._samplers[name] = make_sampler(self._base(name).search, self.index)
        return self._samplers[name]

    def _load(self, name: str) -> optuna.Study:
        pruner = None
        if "/search/" in name:  # explicit, not Optuna's default: "none" must never prune
            use_median = self._base(name).search.pruner == "median"
            pruner = optuna.pruners.MedianPruner() if use_median else optuna.pruners.NopPruner()
        return optuna.load_study(study_name=name, storage=self.storage, sampler=self._sampler(name), pruner=pruner)

    def _base(self, name: str) -> RunSpec:
        fp = name.rsplit("/", 1)[-1]
        if fp not in self.runs:
            raise KeyError(f"study {name} searches a run that is not in this experiments file")
        return self.runs[fp]

    def _has_work(self, name: str) -> bool:
        study = optuna.load_study(study_name=name, storage=self.storage)
        if "/grid" in name:
            return any(t.state == TrialState.WAITING for t in study.get_trials(deepcopy=False))
        if name.rsplit("/", 1)[-1] not in self.runs:
            return False
        spent = len(study.get_trials(deepcopy=False, states=SPENT))
        sampler = self._sampler(name)
        finished = isinstance(sampler, BisectionSampler) and sampler.finished(study)
        return spent < study.user_attrs.get("trials", 0) and not finished

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
        copies = [t for t in trial.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                  if t.user_attrs.get("fingerprint") == fp]  # this trial among them
        first = min(copies, key=lambda t: (t.datetime_start, t.number))
        if first.number != trial.number:
            trial.set_user_attr("reason", f"trial {first.number} is running this fingerprint")
            raise optuna.TrialPruned()
        if self.store.run_status(spec.experiment).get(fp) == RunStatus.FINISHED:
            # two coordinators that enqueue at the same moment (two machines starting together) can each enqueue a
            # fingerprint: when another trial holds or has finished it, this copy is a duplicate, not a result
            holder = [t for t in trial.study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE))
                      if t.user_attrs.get("fingerprint") == fp and t.number != trial.number]
            if holder:
                trial.set_user_attr("reason", f"trial {holder[0].number} has this fingerprint (enqueued twice)")
                raise optuna.TrialPruned()
            self.log.reused += 1
            trial.set_user_attr("reused", True)
            return 1.0 - float(self._finished_run(spec).data.metrics.get(tracked.SELECTED_SPARSITY, 0.0))
        self.echo(f"[{spec.experiment}] {spec.prune.method} ({spec.label()}) {fp}")
        outcome = _execute(spec, self.store, self.progress)
        self.log.ran += 1
        self.log.trials.append((trial.study.study_name, trial.number, fp))
        trial.set_user_attr("run_id", outcome.run_id)
        self.echo(_summary(outcome, spec))
        return 1.0 - outcome.selected.sparsity


    # -- search trials: sampled parameters on top of the base run
    def _search_objective(self, study: optuna.Study):
        base = self._base(study.study_name)
        search, method = base.search, METHODS.get(base.prune.method)
        parent = study.user_attrs.get("mlflow_parent_run_id")

        def objective(trial: optuna.Trial):
            trial.set_user_attr("worker", worker_id())
            values = {k: suggest(trial, k, d) for k, d in search.space.items()}
            spec = base.model_copy(update={"prune": PruneSpec(method=base.prune.method,
                                                              params=method.with_values(base.prune.params, values))})
            trial.set_user_attr("fingerprint", spec.fingerprint)
            status = self.store.run_status(spec.experiment).get(spec.fingerprint)
            label = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
            if status == RunStatus.FINISHED:
                run_id = self._finished_run(spec).info.run_id
                measured = measure_logged(self.store, run_id, spec)
                self.log.reused += 1
                trial.set_user_attr("reused", True)
            else:
                self.echo(f"[{spec.experiment}] trial {trial.number} of {study.study_name.rsplit('/', 1)[-1][:8]} ({base.label()}): {label}")
                # intermediate values exist for one objective only (Optuna has no pruning of multi-objective trials)
                reporters = [Reporter(trial, search, search.pruner != "none")] if search.objective == "effective_size" else []
                ctx = TrialContext(parent, study.study_name, trial.number, search.rule(), reporters)
                outcome = _execute(spec, self.store, self.progress, ctx)
                run_id = outcome.run_id
                if outcome.stop_reason == StopReason.CALLBACK:
                    self.log.pruned += 1
                    trial.set_user_attr("run_id", run_id)
                    raise optuna.TrialPruned()
                measured = measure_steps(outcome.pruned_steps, outcome.selected, spec)
                self.log.ran += 1
            self.log.trials.append((study.study_name, trial.number, spec.fingerprint))
            threshold = search.threshold(measured.full_id_score)
            constraint = threshold - measured.id_score
            trial.set_user_attr("constraint", [constraint])
            for k, v in {"run_id": run_id, "step": measured.step, "kept_fraction": measured.kept_fraction,
                         "metric": spec.primary_metric, "id_score": measured.id_score, "full_id_score": measured.full_id_score,
                         "holds": constraint <= 0, **{f"ood.{n}": a for n, a in measured.ood.items()}}.items():
                trial.set_user_attr(k, v)
            self.echo(f"  kept {measured.kept_fraction:.3f}: ID {spec.primary_metric} {measured.id_score:.3f} "
                      f"({'holds' if constraint <= 0 else 'fails'} the keep rule, threshold {threshold:.3f})")
            if search.objective == "effective_size":
                return measured.kept_fraction
            return (measured.kept_fraction, measured.id_score, *(measured.ood.get(n, float("nan")) for n in ood_sets(base)))

        return objective

    def _finished_run(self, spec: RunSpec):
        """The newest FINISHED MLflow run of `spec`'s fingerprint (the one the warehouse counts)."""
        exp = self.store.client.get_experiment_by_name(spec.experiment)
        (run,) = self.store.client.search_runs(
            [exp.experiment_id], max_results=1, order_by=["attributes.start_time DESC"],
            filter_string=f"tags.`{tracked.FINGERPRINT}` = '{spec.fingerprint}' and attributes.status = '{RunStatus.FINISHED}'")
        return run


MISSED_TARGET = 0.05  # an L0 target the gates' expected sparsity ended this far from is flagged (as in the report)


def run_notes(o, spec: RunSpec) -> list[str]:
    """What a reader of the summary must not miss: a keep rule that cannot judge anything (the full model
    scored <= 0 on its metric, e.g. MCC 0 of a model that predicts one class) and L0 targets missed."""
    notes = []
    full = o.baseline["id"]
    if full.score <= 0:
        notes.append(f"the full model's ID {full.primary} is {full.score:.3f}: it did not learn the task, so a keep rule "
                     f"relative to it passes every step; these subnetworks say nothing about what the task needs")
    if METHODS.get(spec.prune.method).x_axis(spec.prune.params) == "target":
        for s in o.pruned_steps or []:
            expected = s.extra.get("expected_sparsity_end")
            if s.step > 0 and s.strength is not None and expected is not None and abs(expected - s.strength) > MISSED_TARGET:
                notes.append(f"L0 target {s.strength:.2f}: the gates' expected unit sparsity ended at {expected:.3f}, more "
                             f"than {MISSED_TARGET} away; the mask was cut to the target anyway, so the schedule was too "
                             f"short (raise schedule_scale)")
    return notes


def _summary(o, spec: RunSpec | None = None) -> str:
    metric = o.baseline["id"].primary
    ood = ", ".join(f"{k} {v.score:.3f}" for k, v in o.selected.results.items() if k != "id")
    # named again: with several workers another run's start line may sit between this run's start and its end
    head = f"[{spec.experiment}] {spec.prune.method} ({spec.label()}) done\n" if spec is not None else ""
    text = head + (f"  full model: ID {metric} {o.baseline['id'].score:.3f}; kept step {o.selected.step} of {o.steps} "
            f"(sparsity {o.selected.sparsity:.3f}): ID {o.selected.results['id'].score:.3f}"
            f"{'; ' + ood if ood else ''}\n  stopped: {o.stop_reason}  [{o.seconds:.0f} s, run {o.run_id}]")
    for v in o.variants:
        vood = ", ".join(f"{k} {r.score:.3f}" for k, r in v.results.items() if k != "id")
        text += f"\n    {v.variant}: ID {v.results['id'].score:.3f}{'; ' + vood if vood else ''}"
    for note in run_notes(o, spec) if spec is not None else []:
        text += f"\n  note: {note}"
    return text


# ---- reading the studies back ----------------------------------------------------------------------------


@dataclass
class StudySummary:
    name: str
    label: str
    states: dict[str, int]
    budget: int | None
    best_kept: float | None  # effective size: the smallest kept fraction that holds
    best_params: dict[str, Any] | None
    running: list[tuple[int, str, float]]  # (trial, worker, seconds running)
    pareto: int | None = None  # trials on the Pareto front


def summarise(storage_url: str, names: list[str]) -> list[StudySummary]:
    storage = open_storage(storage_url)
    out = []
    for name in names:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            continue
        trials = study.get_trials(deepcopy=False)
        states: dict[str, int] = {}
        for t in trials:
            states[t.state.name] = states.get(t.state.name, 0) + 1
        now = time.time()
        running = [(t.number, t.user_attrs.get("worker", "?"), now - t.datetime_start.timestamp())
                   for t in trials if t.state == TrialState.RUNNING and t.datetime_start]
        feasible = [t for t in trials if t.state == TrialState.COMPLETE and holds(t)]
        best = min(feasible, key=lambda t: t.values[0], default=None)
        pareto = None
        if len(study.directions) > 1:
            pareto = len(study.best_trials)
        out.append(StudySummary(name, study.user_attrs.get("label", ""), states, study.user_attrs.get("trials"),
                                best.values[0] if best else None, dict(best.params) if best else None, running, pareto))
    return out


def finish_sweeps(storage_url: str, store: Store, names: list[str]) -> None:
    """Log each study's summary on its MLflow parent run; FINISHED once the study has no work left."""
    storage = open_storage(storage_url)
    for s in summarise(storage_url, names):
        study = optuna.load_study(study_name=s.name, storage=storage)
        parent = study.user_attrs.get("mlflow_parent_run_id")
        if not parent:
            continue
        metrics = {"trials.complete": s.states.get("COMPLETE", 0), "trials.pruned": s.states.get("PRUNED", 0),
                   "trials.failed": s.states.get("FAIL", 0)}
        if s.best_kept is not None:
            metrics[tracked.EFFECTIVE_SIZE] = s.best_kept
        from runners.tracking.store import RunLog

        log = RunLog(store, parent, "")
        log.metrics(metrics, step=0)
        if s.best_params:
            log.tags({f"{tracked.BEST_PREFIX}{k}": str(v) for k, v in s.best_params.items()})
        log.flush()
        if not s.running and not s.states.get("WAITING"):
            store.client.set_terminated(parent, RunStatus.FINISHED.value)
