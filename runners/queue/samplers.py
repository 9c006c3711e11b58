"""The samplers of a search: the declared one built for a worker (`make_sampler`), how a trial draws a value
of a search-space dimension (`suggest`), and BisectionSampler.

BisectionSampler searches one size knob (an L0 target, a one-shot strength) for the largest value whose
subnetwork still keeps ID performance, assuming accuracy falls as the subnetwork shrinks (close to
monotone on the embedded task and in the Heuristic Core's curves).

It keeps the largest value known to hold (lo) and the smallest known to fail above it (hi) and proposes
the middle of the widest gap between them, counting trials still running as split points, so parallel
workers explore different values. A trial holds when its constraint (threshold - ID accuracy,
`user_attrs["constraint"]`) is <= 0. `finished(study)` says when hi - lo is within the tolerance.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from registry.search import Choices, FloatRange, IntRange, SearchSpec


def holds(trial: FrozenTrial) -> bool | None:
    c = trial.user_attrs.get("constraint")
    return None if c is None else all(v <= 0 for v in c)


class BisectionSampler(BaseSampler):
    def __init__(self, param: str, low: float, high: float, step: float | None = None, tolerance: float | None = None):
        self.param, self.low, self.high, self.step = param, low, high, step
        self.tolerance = tolerance if tolerance is not None else (step if step else (high - low) / 32)

    # one independent parameter: no relative search space
    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        return {}

    def bracket(self, study: optuna.Study) -> tuple[float | None, float | None]:
        """(largest value that held, smallest value above it that failed); None where unknown."""
        done = [
            (t.params[self.param], holds(t))
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if self.param in t.params and holds(t) is not None
        ]
        lo = max((x for x, ok in done if ok), default=None)
        hi = min((x for x, ok in done if not ok and (lo is None or x > lo)), default=None)
        return lo, hi

    def finished(self, study: optuna.Study) -> bool:
        lo, hi = self.bracket(study)
        eps = 1e-12
        if lo is None:  # nothing held yet: done only once the lowest value itself failed
            return hi is not None and hi <= self.low + eps
        if hi is None:  # nothing failed above lo: done only once the highest value held
            return lo >= self.high - eps
        return hi - lo <= self.tolerance + eps

    def sample_independent(self, study, trial, param_name: str, param_distribution: BaseDistribution) -> Any:
        if param_name != self.param:
            raise ValueError(f"BisectionSampler searches {self.param!r} only, not {param_name!r}")
        lo, hi = self.bracket(study)
        left = self.low if lo is None else lo
        right = self.high if hi is None else hi
        eps = 1e-12
        # near an untested end of the range, test the end itself: its answer is the result
        if lo is None and right - self.low <= self.tolerance + eps:
            return self._snap(self.low, param_distribution)
        if hi is None and self.high - left <= self.tolerance + eps:
            return self._snap(self.high, param_distribution)
        pending = sorted(
            t.params[self.param]
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t.number != trial.number and self.param in t.params and left < t.params[self.param] < right
        )
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


def make_sampler(search: SearchSpec, worker_index: int = 0) -> BaseSampler:
    """The declared sampler; parallel workers get distinct seeds (seed + worker index) so they do not
    all propose the same values."""
    seed = search.seed + worker_index
    if search.sampler == "bisection":
        ((key, dim),) = search.space.items()
        return BisectionSampler(key, dim.low, dim.high, getattr(dim, "step", None), search.tolerance)
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
