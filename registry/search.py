"""`[experiment.search]`: an Optuna search over a pruning method's hyperparameters toward the effective
size (the smallest subnetwork that keeps in-domain performance), or a Pareto front.

Each expanded run of the experiment (grid point x fine-tuning seed x pruning seed) is searched on its own:
its effective size is a per-seed figure, as in "The Heuristic Core". A trial is an ordinary run whose
method parameters are the sampled ones, so it has a fingerprint, is logged like any run and is never
computed twice.

The objective and the keep rule are read through `SearchSpec.objective_kind` / `.keep_rule`: typed,
parsed from the declared strings in one place.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from registry.keeprule import KeepKind, KeepRule
from registry.tracking import Name


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


def _check_range(low: float, high: float, log: bool) -> None:
    if not low < high:
        raise ValueError(f"low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise ValueError("a log-scale range needs low > 0")


class FloatRange(_Strict):
    low: float = Field(description="Lower bound.")
    high: float = Field(description="Upper bound.")
    log: bool = Field(default=False, description="Sample on a log scale.")
    step: float | None = Field(default=None, gt=0, description="Quantise to multiples of step above low.")

    @model_validator(mode="after")
    def _ordered(self):
        _check_range(self.low, self.high, self.log)
        if self.log and self.step is not None:
            raise ValueError("give either log or step, not both")
        return self


class IntRange(_Strict):
    low: int = Field(description="Lower bound.")
    high: int = Field(description="Upper bound (inclusive).")
    log: bool = Field(default=False, description="Sample on a log scale.")
    step: int = Field(default=1, ge=1, description="Quantise to multiples of step above low.")

    @model_validator(mode="after")
    def _ordered(self):
        _check_range(self.low, self.high, self.log)
        return self


class Choices(_Strict):
    choices: list[Union[bool, int, float, str]] = Field(min_length=1, description="The values to choose from.")


def _dimension_kind(v) -> str:
    """{choices = [...]} is a category; {low, high} with two integers an int range; else a float range."""
    if isinstance(v, BaseModel):
        return {Choices: "choices", IntRange: "int"}.get(type(v), "float")
    if isinstance(v, dict) and "choices" in v:
        return "choices"
    if isinstance(v, dict) and all(
        isinstance(v.get(k), int) and not isinstance(v.get(k), bool) for k in ("low", "high")
    ):
        return "int"
    return "float"


Dimension = Annotated[
    Union[Annotated[IntRange, Tag("int")], Annotated[FloatRange, Tag("float")], Annotated[Choices, Tag("choices")]],
    Discriminator(_dimension_kind),
]

Sampler = Literal["bisection", "tpe", "random", "grid"]


class Objective(Name):
    """What a search optimises (the declared `objective`, and the sweep run's OBJECTIVE tag)."""

    EFFECTIVE_SIZE = "effective_size"  # minimise the kept fraction; the keep rule is a constraint
    PARETO = "pareto"  # the front over kept fraction, the ID score and each OOD score


class SearchSpec(_Strict):
    space: dict[str, Dimension] = Field(
        min_length=1,
        description="Method parameters to search: {low, high[, log, step]} for numbers, {choices = [...]} for "
        "categories; `target` (l0) or `strength` (one-shot) searches one subnetwork size.",
    )
    trials: int = Field(
        default=12,
        ge=1,
        le=10_000,
        description="Trials per searched run (a grid point x fine-tuning seed x pruning seed); the bisection "
        "sampler may stop earlier.",
    )
    sampler: Sampler = Field(
        default="bisection",
        description="bisection (one size knob; assumes accuracy falls as sparsity grows; beat TPE in "
        "benchmarks/search.py), tpe, random, or grid (every combination of choices/stepped ranges).",
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Sampler seed.")
    objective: Literal["effective_size", "pareto"] = Field(
        default="effective_size",
        description="effective_size: minimise the kept fraction subject to the keep rule; pareto: the front "
        "over kept fraction, the ID and each OOD score (the task's metric).",
    )
    size: Literal["units", "params"] = Field(
        default="units",
        description="What the kept fraction counts: units (heads + MLPs, or neurons; weights for magnitude) or "
        "prunable parameters.",
    )
    keep: Literal["ratio", "margin"] = Field(
        default="ratio",
        description="The keep rule on the task's metric: ID score >= keep_ratio x the full model's (the "
        "lottery study), or >= the full model's - margin (the Heuristic Core).",
    )
    keep_ratio: float = Field(default=0.9, gt=0, le=1, description='With keep = "ratio".')
    margin: float = Field(
        default=0.03,
        ge=0,
        le=1,
        description='With keep = "margin": absolute score (accuracy, MCC, ...) the subnetwork may lose.',
    )
    tolerance: float | None = Field(
        default=None,
        gt=0,
        description="Bisection stops once the largest holding value is known to within this (default: the "
        "space's step, or 1/32 of its range).",
    )
    warm_start: Literal["none", "siblings"] = Field(
        default="none",
        description="bisection: siblings starts each pruning seed's search at the answer of the other pruning "
        "seeds of the same fine-tuned model and borrows the failure they found one step above it.",
    )
    speculate: bool = Field(
        default=True,
        description="bisection with several workers: a worker may try a second value of a search whose trial is "
        "still running (sooner answers, some trials spent on guesses); false: it takes another search or waits.",
    )
    pruner: Literal["none", "median"] = Field(
        default="none",
        description="Stop hopeless trials early from the value reported after each pruning step (iterative methods).",
    )

    @model_validator(mode="after")
    def _combinations(self):
        if self.sampler == "bisection":
            if not self.seeks_effective_size:
                raise ValueError("the bisection sampler searches the effective size; use tpe or random for pareto")
            if len(self.space) != 1 or isinstance(next(iter(self.space.values())), Choices):
                raise ValueError("the bisection sampler searches exactly one numeric dimension (the size knob)")
        if self.warm_start != "none" and self.sampler != "bisection":
            raise ValueError("warm_start needs the bisection sampler")
        if not self.speculate and self.sampler != "bisection":
            raise ValueError("speculate = false needs the bisection sampler (the others draw values independently)")
        if self.sampler == "grid":
            for key, dim in self.space.items():
                if isinstance(dim, FloatRange) and dim.step is None:
                    raise ValueError(f"the grid sampler needs a finite grid: give space.{key} a step or choices")
        return self

    @property
    def objective_kind(self) -> Objective:
        return Objective(self.objective)

    @property
    def seeks_effective_size(self) -> bool:
        """One objective (the kept fraction) with the keep rule as a constraint; else a multi-objective front
        (no intermediate values, no pruning of trials: Optuna has neither for several objectives)."""
        return self.objective_kind is Objective.EFFECTIVE_SIZE

    @property
    def keep_rule(self) -> KeepRule:
        """The rule a trial's subnetwork is judged by (and recorded with, in the runs table)."""
        kind = KeepKind(self.keep)
        return KeepRule(kind, self.keep_ratio if kind is KeepKind.RATIO else self.margin)


__all__ = ["SearchSpec", "FloatRange", "IntRange", "Choices", "Dimension", "Objective", "Sampler"]


def study_directions(search: SearchSpec, ood_sets: list[str]) -> list[str]:
    """A search study's Optuna directions: the kept fraction alone (effective size), or the front over it, the ID
    score and each OOD set's score, in `ood_sets` order (a trial's values are in that order)."""
    if search.seeks_effective_size:
        return ["minimize"]
    return ["minimize", "maximize", *("maximize" for _ in ood_sets)]
