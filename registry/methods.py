"""The pruning-method catalogue: each method's parameters (its keys in `[experiment.prune]`), summary and
what it declares about itself: the x-axis its steps are declared on and whether it iterates (properties of
its parameters, since magnitude is iterative or one-shot by its `strengths`), and its size knob (the
one-value-per-subnetwork parameter a search may name). Generic code reads these declarations and never a
method's name. The recipes that execute the methods live in runners/pruning/recipes/; a conformance test
keeps the two catalogues equal.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator

from registry.catalogue import Catalogue
from registry.keeprule import KeepRule
from registry.tracking import Name

Ablation = Literal["zero", "mean"]


def keep_ratio_field(stop_rule: str) -> Any:
    """The lottery-ticket keep rule shared by every method; `stop_rule` says what a failing step does."""
    return Field(
        default=0.9,
        ge=0,
        le=1,
        description=f"A step passes while its ID score (the task's metric: accuracy, MCC, F1, Pearson) >= "
        f"keep_ratio x the full model's; {stop_rule}",
    )


def ablation_field(default: Ablation, unit: str, how: str) -> Any:
    return Field(default=default, description=f"What a {unit} outputs: zero, or its mean {how} over training tokens.")


def scoring_fields(what: str, batch_note: str) -> tuple[Any, Any]:
    return (
        Field(default=512, ge=1, le=1_000_000, description=f"Training examples (fixed order) over which {what}."),
        Field(default=32, ge=1, le=4096, description=f"Batch size of the scoring passes{batch_note}."),
    )


def _ascending(v: list[float] | None) -> list[float] | None:
    """Strengths and targets are evaluated in ascending order; storing them so makes every spelling of one
    experiment one fingerprint."""
    return None if v is None else sorted(v)


class XAxis(Name):
    """What a step's declared x is (the runs table's `x_axis` column)."""

    STEP = "step"  # the iteration number: an iterative method
    STRENGTH = "strength"  # a declared one-shot strength
    TARGET = "target"  # a declared L0 target sparsity


class MethodParams(BaseModel):
    """Keys every method accepts besides its own. Each method's parameters also declare `x_axis`; every
    method has a `keep_ratio` (keep_ratio_field), its own keep rule."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)

    controls: list[Literal["random", "bad"]] = Field(
        default_factory=list,
        description="Control subnetworks of the kept mask's size: random (same keep rate per unit family / "
        "weight matrix) and bad (the least important units).",
    )
    retrain: bool = Field(
        default=False,
        description="Also re-fine-tune each kept subnetwork (and control) from the pre-trained weights with "
        "its mask applied.",
    )
    export: bool = Field(
        default=False,
        description="Structured methods: physically remove the kept subnetwork's pruned units, log the smaller "
        "model directory, its parameter count and CPU latency.",
    )

    @field_validator("controls")
    @classmethod
    def _distinct_controls(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("each control may be named once")
        return v

    @property
    def x_axis(self) -> XAxis:
        raise NotImplementedError(f"{type(self).__name__} must declare its x_axis")

    @property
    def iterative(self) -> bool:
        """Iterative (prune, evaluate, stop at the first failing step) or one-shot (every declared strength or
        target is evaluated): the one place this is decided."""
        return self.x_axis is XAxis.STEP

    @property
    def keep_rule(self) -> KeepRule:
        """The run's own keep rule: ID score >= keep_ratio x the full model's (a search judges by its own)."""
        return KeepRule.ratio(self.keep_ratio)  # type: ignore[attr-defined] - every method declares keep_ratio


class MagnitudeParams(MethodParams):
    rate: float = Field(
        default=0.1, gt=0, lt=1, description="Iterative: fraction of the remaining prunable weights removed per step."
    )
    keep_ratio: float = keep_ratio_field("iterative pruning stops at the first failing step (0: every step passes).")
    max_steps: int = Field(default=30, ge=1, le=200, description="Iterative: at most this many pruning steps.")
    strengths: list[float] | None = Field(
        default=None,
        description="One-shot: prune these fractions of all prunable weights (each from the fine-tuned "
        "weights) instead of iterating.",
    )

    @field_validator("strengths")
    @classmethod
    def _one_shot(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and not v:
            raise ValueError("give at least one strength (or leave strengths out to prune iteratively)")
        if v is not None and not all(0 < s < 1 for s in v):
            raise ValueError(f"every strength must lie strictly between 0 and 1 (got {v})")
        return _ascending(v)

    @field_validator("export")
    @classmethod
    def _structured_only(cls, v: bool) -> bool:
        if v:
            raise ValueError(
                "export removes whole heads/MLPs/neurons; magnitude masks single weights (use importance, "
                "attribution or l0)"
            )
        return v

    @property
    def x_axis(self) -> XAxis:
        return XAxis.STEP if self.strengths is None else XAxis.STRENGTH


_IMPORTANCE_SCORING = scoring_fields(
    "importance is accumulated at every step",
    "; importance sums |gradient| per batch, so 1 gives the per-example definition",
)


class ImportanceParams(MethodParams):
    head_rate: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="Fraction of all heads masked per step (rounded, at least 1), the least important still-kept ones.",
    )
    mlps_per_step: int = Field(
        default=1, ge=0, le=1000, description="Number of still-kept MLPs masked per step, the least important ones."
    )
    keep_ratio: float = keep_ratio_field("pruning stops at the first failing step.")
    max_steps: int = Field(default=30, ge=1, le=500, description="At most this many pruning steps.")
    scoring_examples: int = _IMPORTANCE_SCORING[0]
    batch_size: int = _IMPORTANCE_SCORING[1]
    ablation: Ablation = ablation_field("zero", "masked unit", "output")

    @property
    def x_axis(self) -> XAxis:
        return XAxis.STEP


Strength = Annotated[float, Field(ge=0, le=1)]
_ATTRIBUTION_SCORING = scoring_fields("attributions are summed", " (the sum over tokens does not depend on it)")


class AttributionParams(MethodParams):
    strengths: list[Strength] = Field(
        default=[0.1, 0.3, 0.5, 0.7, 0.9],
        min_length=1,
        description="Fractions of each layer's MLP neurons to prune, one step per strength (ascending), each "
        "from the fine-tuned model.",
    )
    _sorted = field_validator("strengths")(classmethod(lambda cls, v: _ascending(v)))
    keep_ratio: float = keep_ratio_field("every strength is still evaluated.")
    scoring_examples: int = _ATTRIBUTION_SCORING[0]
    batch_size: int = _ATTRIBUTION_SCORING[1]
    ablation: Ablation = ablation_field("zero", "pruned neuron", "activation")

    @property
    def x_axis(self) -> XAxis:
        return XAxis.STRENGTH


Target = Annotated[float, Field(gt=0, lt=1)]


class L0Params(MethodParams):
    targets: list[Target] = Field(
        default=[0.2, 0.4, 0.6],
        min_length=1,
        max_length=100,
        description="Target unit sparsities (fraction of heads + MLPs removed); one subnetwork per target, "
        "each from fresh gates, ascending.",
    )
    keep_ratio: float = keep_ratio_field("every target is still trained.")
    ablation: Ablation = ablation_field("mean", "gated-off unit", "output (the paper's choice)")
    batch_size: int = Field(default=32, ge=1, le=4096, description="Training examples per gate-update step.")
    schedule_scale: float = Field(
        default=0.05,
        gt=0,
        le=100,
        description="Multiplies the paper's step schedule (warm-up and total steps below); 1.0 is the paper's.",
    )
    warmup_base: int = Field(
        default=6500,
        ge=0,
        le=10_000_000,
        description="Warm-up steps at target 0 (before scaling); the target rises linearly from 0 over the warm-up.",
    )
    warmup_per_target: int = Field(
        default=5000,
        ge=0,
        le=10_000_000,
        description="Extra warm-up steps per unit of target sparsity (before scaling).",
    )
    settle_per_target: int = Field(
        default=600,
        ge=0,
        le=10_000_000,
        description="Steps after the warm-up, per unit of target sparsity (before scaling), at the full target.",
    )
    lr: float = Field(default=0.1, gt=0, le=100, description="Adam learning rate of the log-alphas (gate parameters).")
    lambda_lr: float = Field(
        default=1.0, gt=0, le=1000, description="Adam learning rate of the Lagrange multipliers (gradient ascent)."
    )
    temperature: float = Field(default=2 / 3, gt=0, le=10, description="Hard-concrete temperature beta.")
    stretch_left: float = Field(
        default=-0.1,
        ge=-10,
        lt=0,
        description="Hard-concrete stretch lower limit l (< 0, so a gate has a point mass at 0).",
    )
    stretch_right: float = Field(
        default=1.1,
        gt=1,
        le=10,
        description="Hard-concrete stretch upper limit r (> 1, so a gate has a point mass at 1).",
    )
    init_log_alpha: float = Field(
        default=10.0, ge=-50, le=50, description="Initial log-alpha of every gate (10: all gates ~1, the full model)."
    )

    @field_validator("targets")
    @classmethod
    def _distinct(cls, v: list[float]) -> list[float]:
        if len(set(v)) != len(v):
            raise ValueError("targets must be distinct")
        return _ascending(v)

    @property
    def x_axis(self) -> XAxis:
        return XAxis.TARGET


class SizeKnob(NamedTuple):
    """The one-value-per-subnetwork size knob: a search names `key` (one value per trial); it becomes the
    one-element list `field` of the method's parameters."""

    key: str
    field: str


@dataclass(frozen=True)
class Method:
    """A pruning method as experiments.toml declares it."""

    name: str
    params: type[MethodParams]
    summary: str
    structured: bool  # prunes whole heads/MLPs/neurons (gates) rather than single weights
    size_knob: SizeKnob | None = None  # None: no single size parameter (an iterative-only method)

    def searchable(self) -> list[str]:
        """Keys a search space may name: every scalar parameter, and the size knob."""
        scalar = [
            k
            for k, f in self.params.model_fields.items()
            if typing.get_origin(f.annotation) not in (list, tuple)
            and k not in ("retrain", "export")
            and "list" not in str(f.annotation)
        ]
        return sorted(scalar + ([self.size_knob.key] if self.size_knob else []))

    def with_values(self, params: MethodParams, values: dict) -> MethodParams:
        """`params` with searched values applied (the size knob becomes a one-element list); validated."""
        update = dict(values)
        if self.size_knob and self.size_knob.key in update:
            update[self.size_knob.field] = [float(update.pop(self.size_knob.key))]
        return self.params.model_validate({**params.model_dump(), **update})


METHODS: Catalogue[Method] = Catalogue("pruning method")
for _m in (
    Method(
        "magnitude",
        MagnitudeParams,
        "Global magnitude pruning of encoder weights: iterative m-pruning, or one-shot at declared strengths.",
        False,
        SizeKnob("strength", "strengths"),
    ),
    Method(
        "importance",
        ImportanceParams,
        "s-pruning: iteratively mask the least important heads and MLPs (|dL/d gate|, Michel et al. 2019).",
        True,
    ),
    Method(
        "attribution",
        AttributionParams,
        "One-shot per-layer pruning of MLP neurons by |activation x gradient| at declared strengths.",
        True,
        SizeKnob("strength", "strengths"),
    ),
    Method(
        "l0",
        L0Params,
        "Structured L0 pruning of heads and MLPs with hard-concrete gates, KL to the full model "
        "and a Lagrangian sparsity target.",
        True,
        SizeKnob("target", "targets"),
    ),
):
    METHODS.add(_m.name, _m, _m.summary)

__all__ = [
    "METHODS",
    "Method",
    "MethodParams",
    "SizeKnob",
    "MagnitudeParams",
    "ImportanceParams",
    "AttributionParams",
    "L0Params",
    "XAxis",
]
