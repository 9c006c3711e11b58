"""Measuring a search trial: which subnetwork of its run counts, its kept fraction and scores, and the
values the trial tells its study (one objective: the kept fraction; a Pareto front: the kept fraction,
the ID score and each OOD score). The same figures come from a run just executed (`measure_steps`) or
read back from a FINISHED one in MLflow (`measure_logged`); `Reporter` reports them step by step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import optuna

from registry import tracking as tracked
from registry.keeprule import kept_fraction
from registry.schema import RunSpec
from registry.search import SearchSpec
from registry.tasks import ood_set_names
from runners.pruning.recipe import PruneStep, StopPruning
from runners.tracking.store import Store


def ood_sets(base: RunSpec) -> list[str]:
    return ood_set_names(base.task)


@dataclass
class Measured:
    """The trial's subnetwork: the kept step of an iterative run, the last step of a one-shot/L0 one (its
    single declared size)."""

    step: int
    kept_fraction: float
    id_score: float  # the task's own metric (accuracy, MCC, F1, Pearson, ...): what the keep rule judges
    full_id_score: float
    ood: dict[str, float] = field(default_factory=dict)  # each OOD set's score on the same metric

    def values(self, base: RunSpec) -> float | tuple[float, ...]:
        """What the trial tells its study, in the order of `directions(base)`."""
        if base.search.seeks_effective_size:
            return self.kept_fraction
        return (self.kept_fraction, self.id_score, *(self.ood.get(n, float("nan")) for n in ood_sets(base)))


def measure_steps(steps: list[PruneStep], kept: PruneStep, base: RunSpec) -> Measured:
    sub = kept if base.prune.params.iterative else steps[-1]
    return Measured(
        sub.step,
        kept_fraction(sub.sparsity, sub.unit_sparsity, base.search.size),
        sub.results["id"].score,
        steps[0].results["id"].score,
        {k: r.score for k, r in sub.results.items() if k != "id"},
    )


def measure_logged(store: Store, run_id: str, base: RunSpec) -> Measured:
    """The same figures read back from a FINISHED run in MLflow (a trial whose fingerprint was done)."""
    client = store.client
    hist = lambda key: {m.step: m.value for m in client.get_metric_history(run_id, key)}  # noqa: E731
    metric = base.primary_metric
    sparsity, score = hist(tracked.STEP_SPARSITY), hist(tracked.id_metric(metric))
    step = int(hist(tracked.SELECTED_STEP)[0]) if base.prune.params.iterative else max(sparsity)
    units = hist(tracked.STEP_UNIT_SPARSITY)  # every step's, as measure_steps reads it
    ood = {name: hist(tracked.ood_metric(name, metric)).get(step) for name in ood_sets(base)}
    return Measured(
        step,
        kept_fraction(sparsity[step], units.get(step), base.search.size),
        score[step],
        score[0],
        {k: v for k, v in ood.items() if v is not None},
    )


class Reporter:
    """Step callback of a search trial: the kept fraction of the sparsest step so far that keeps ID
    performance, reported per step; stop when the pruner says the trial is hopeless."""

    def __init__(self, trial: optuna.Trial, search: SearchSpec, use_pruner: bool):
        self.trial, self.search, self.use_pruner = trial, search, use_pruner
        self.rule = search.keep_rule
        self.full: float | None = None
        self.best = 1.0

    def __call__(self, step: PruneStep) -> None:
        if step.variant != "pruned":
            return
        score = step.results["id"].score  # the task's own metric
        if step.step == 0:  # the full model: the keep rule's reference
            self.full = score
        if self.full is not None and self.rule.holds(score, self.full):
            self.best = min(self.best, kept_fraction(step.sparsity, step.unit_sparsity, self.search.size))
        self.trial.report(self.best, step.step)
        if self.use_pruner and self.trial.should_prune():
            raise StopPruning


__all__ = ["Measured", "Reporter", "measure_logged", "measure_steps", "ood_sets"]
