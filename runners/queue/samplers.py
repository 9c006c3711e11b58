"""The samplers of a search: the declared one built for a worker (`make_sampler`), how a trial draws a value
of a search-space dimension (`suggest`), and BisectionSampler.

BisectionSampler searches one size knob (an L0 target, a one-shot strength) for the largest value whose
subnetwork still keeps ID performance, assuming accuracy falls as the subnetwork shrinks (close to
monotone on the embedded task and in the Heuristic Core's curves).

It keeps the largest value known to hold (lo) and the smallest known to fail above it (hi) and proposes
the middle of the widest gap between them, counting trials still running as split points, so parallel
workers explore different values. A trial holds when its constraint (threshold - ID accuracy,
`user_attrs["constraint"]`) is <= 0. `finished(study)` says when hi - lo is within the tolerance.

With `warm_start = "siblings"` it also reads the searches of the same fine-tuned model under the other pruning
seeds (they prune one model, so their curves are close). Once a sibling's search has closed its bracket on its own
trials, a new search starts at the siblings' answer (the median) and walks one step from it before it bisects what
is left. It stops after one trial when its value holds and a sibling that did at least as well there (its ID
score as far or farther above the keep rule's threshold) failed one step up: that upper end is borrowed, so this
seed's answer can be low by a step where its curve falls more slowly than its siblings'. Brackets are borrowed
only from searches that closed them on their own trials.
"""

from __future__ import annotations

import statistics
from typing import Any, Callable

import optuna
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from registry.search import Choices, FloatRange, IntRange, SearchSpec

# a search trial that stepped aside before it sampled anything (speculate = false: another worker asked at the same
# moment, and its trial started first); the queue, its budget and its summaries do not count it
WITHDRAWN = "withdrawn"


def withdrawn(trial: FrozenTrial) -> bool:
    return bool(trial.user_attrs.get(WITHDRAWN))


def holds(trial: FrozenTrial) -> bool | None:
    c = trial.user_attrs.get("constraint")
    return None if c is None else all(v <= 0 for v in c)


Evidence = list[tuple[float, float]]  # a search's measured trials: (value, worst constraint); <= 0 held
EPS = 1e-9  # two values of the searched knob within EPS are one value (steps are >= 1e-3 in practice)


def evidence(study: optuna.Study, param: str) -> Evidence:
    """The finished, measured trials of a study: (value of `param`, its worst constraint)."""
    return [
        (t.params[param], max(t.user_attrs["constraint"]))
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if param in t.params and holds(t) is not None
    ]


def bracket_of(done: Evidence) -> tuple[float | None, float | None]:
    """(largest value that held, smallest value above it that failed); None where unknown."""
    lo = max((x for x, c in done if c <= 0), default=None)
    hi = min((x for x, c in done if c > 0 and (lo is None or x > lo)), default=None)
    return lo, hi


def _at(done: Evidence, value: float) -> float | None:
    """The constraint measured at `value`, if it was tried."""
    return next((c for x, c in done if abs(x - value) < EPS), None)


class BisectionSampler(BaseSampler):
    def __init__(
        self,
        param: str,
        low: float,
        high: float,
        step: float | None = None,
        tolerance: float | None = None,
        siblings: Callable[[], list[Evidence]] | None = None,
    ):
        self.param, self.low, self.high, self.step = param, low, high, step
        self.tolerance = tolerance if tolerance is not None else (step if step else (high - low) / 32)
        self.siblings = siblings  # warm start: the evidence of the sibling searches, read when needed

    # one independent parameter: no relative search space
    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        return {}

    def bracket(self, study: optuna.Study) -> tuple[float | None, float | None]:
        """(largest value that held, smallest value above it that failed); None where unknown."""
        return bracket_of(evidence(study, self.param))

    def closed(self, lo: float | None, hi: float | None) -> bool:
        """Whether a bracket pins the answer down to the tolerance."""
        if lo is None:  # nothing held yet: done only once the lowest value itself failed
            return hi is not None and hi <= self.low + EPS
        if hi is None:  # nothing failed above lo: done only once the highest value held
            return lo >= self.high - EPS
        return hi - lo <= self.tolerance + EPS

    def finished(self, study: optuna.Study) -> bool:
        done = evidence(study, self.param)
        lo, hi = bracket_of(done)
        return self.closed(lo, hi) or self._borrowed_top(done, lo, hi)

    def _sibling_evidence(self) -> tuple[list[float], list[Evidence]]:
        """The answers of the sibling searches that closed their brackets on their own trials, and each
        sibling's evidence."""
        if self.siblings is None:
            return [], []
        found = self.siblings()
        answers = [lo for lo, hi in map(bracket_of, found) if lo is not None and self.closed(lo, hi)]
        return answers, found

    def _borrowed_top(self, done: Evidence, lo: float | None, hi: float | None) -> bool:
        """lo held here and nothing above it was tried here, and a sibling that did at least as well at lo (its
        constraint there no larger) failed one step above it: this seed's next step is taken to fail too."""
        if lo is None or hi is not None or self.siblings is None:
            return False
        own = _at(done, lo)
        _, siblings = self._sibling_evidence()
        for done in siblings:
            there, above = _at(done, lo), _at(done, lo + self.tolerance)
            if there is not None and above is not None and there <= own and above > 0:
                return True
        return False

    def _warm_value(self, lo: float | None, hi: float | None, tried: int) -> float | None:
        """Where a warm-started search tries next: the siblings' answer first, then one step beyond it; None
        (bisect) without a sibling answer, or after those two trials (this seed's curve is not its siblings')."""
        answers, _ = self._sibling_evidence()
        if not answers or tried >= 2:
            return None
        if lo is None and hi is None:
            return statistics.median_low(answers)
        if hi is None and lo + self.tolerance <= self.high + EPS:
            return lo + self.tolerance
        if lo is None and hi - self.tolerance >= self.low - EPS:
            return hi - self.tolerance
        return None

    def sample_independent(self, study, trial, param_name: str, param_distribution: BaseDistribution) -> Any:
        if param_name != self.param:
            raise ValueError(f"BisectionSampler searches {self.param!r} only, not {param_name!r}")
        done = evidence(study, self.param)
        lo, hi = bracket_of(done)
        left = self.low if lo is None else lo
        right = self.high if hi is None else hi
        running = [
            t.params[self.param]
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t.number != trial.number and self.param in t.params
        ]
        warm = self._warm_value(lo, hi, len(done))
        if warm is not None and not any(abs(v - warm) < EPS for v in running):
            return self._snap(warm, param_distribution)
        # near an untested end of the range, test the end itself: its answer is the result
        if lo is None and right - self.low <= self.tolerance + EPS:
            return self._snap(self.low, param_distribution)
        if hi is None and self.high - left <= self.tolerance + EPS:
            return self._snap(self.high, param_distribution)
        pending = sorted(v for v in running if left < v < right)
        points = [left, *pending, right]
        for _, a, b in sorted(((b - a, a, b) for a, b in zip(points, points[1:])), reverse=True):
            value = self._snap((a + b) / 2, param_distribution)
            if a < value < b:
                return value
        return self._snap((left + right) / 2, param_distribution)

    def _snap(self, value: float, dist: BaseDistribution) -> float:
        if isinstance(dist, (FloatDistribution, IntDistribution)) and dist.step is not None:
            k = round((value - dist.low) / dist.step)
            value = dist.low + k * dist.step
            value = min(max(value, dist.low), dist.high)
            return int(value) if isinstance(dist, IntDistribution) else round(value, 10)
        return value


def make_sampler(
    search: SearchSpec, worker_index: int = 0, siblings: Callable[[], list[Evidence]] | None = None
) -> BaseSampler:
    """The declared sampler; parallel workers get distinct seeds (seed + worker index) so they do not
    all propose the same values. `siblings` reads the sibling searches' evidence (warm_start = "siblings")."""
    seed = search.seed + worker_index
    if search.sampler == "bisection":
        ((key, dim),) = search.space.items()
        warm = siblings if search.warm_start == "siblings" else None
        return BisectionSampler(key, dim.low, dim.high, getattr(dim, "step", None), search.tolerance, warm)
    if search.sampler == "grid":
        grid = {k: _grid_values(d) for k, d in search.space.items()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # the keep rule as TPE's constraint (user_attrs["constraint"], set by the worker once a trial is measured)
    constraints = (lambda t: t.user_attrs.get("constraint", [0.0])) if search.seeks_effective_size else None
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
