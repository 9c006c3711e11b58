"""What every pruning recipe receives and yields.

A recipe is a module with `Params` (a strict pydantic model deriving from `Params` here: its fields are
the method's keys in experiments.toml), `SUMMARY` (one line) and `run(ctx, params) -> Iterator[PruneStep]`.
It prunes `ctx.model` in place (weight masks) or through gates (`runners.gates.attach`), calls
`ctx.evaluate()` after each step with its masks/gates in effect, and yields one PruneStep per step.
The runner logs every step as it comes, keeps the highest-sparsity step that passed, then builds the
controls (`controls`) and re-fine-tuned variants (`retrain`) of that step (runners/variants.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from runners.data import Batch
from runners.evaluate import EvalResult
from runners.progress import Progress


class Params(BaseModel):
    """Keys every method accepts besides its own."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    controls: list[Literal["random", "bad"]] = Field(default_factory=list, description="Control subnetworks of the kept mask's size: random (same keep rate per unit family / weight matrix) and bad (the least important units).")
    retrain: bool = Field(default=False, description="Also re-fine-tune each kept subnetwork (and control) from the pre-trained weights with its mask applied.")
    export: bool = Field(default=False, description="Structured methods: physically remove the kept subnetwork's pruned units, log the smaller model directory, its parameter count and CPU latency.")


@dataclass
class PruneContext:
    model: torch.nn.Module  # the fine-tuned model; recipes prune it in place or gate it
    evaluate: Callable[[], dict[str, EvalResult]]  # ID + every OOD set on the current (masked/gated) model
    baseline: dict[str, EvalResult]  # the full fine-tuned model's results (step 0)
    progress: Progress
    seed: int
    # Training batches in a fixed order for scoring (importance, attribution) or, with shuffle, an epoch
    # of L0 training: train_batches(n_examples=None, batch_size=32, shuffle=False, epoch=0).
    train_batches: Callable[..., Iterator[Batch]] = None  # type: ignore[assignment]
    # Mean output of every unit over training tokens (padding excluded), cached per fine-tuned model + task.
    unit_means: Callable[[], "object"] = None  # type: ignore[assignment]


@dataclass
class PruneStep:
    step: int
    sparsity: float  # fraction of prunable parameters removed (weights, or parameters owned by gated-off units)
    results: dict[str, EvalResult]
    passed: bool  # whether this step keeps ID performance (the method's stop rule)
    weight_masks: dict[str, torch.Tensor] | None = None  # unstructured: True = keep
    gates: object | None = None  # structured: a binary runners.gates.Gates
    scores: dict[str, torch.Tensor] | None = None  # per-unit scores ("head" (L,H), "mlp" (L,), "neuron" (L,I)); higher = more important
    unit_sparsity: float | None = None  # fraction of units (heads + MLPs, or neurons) removed
    variant: str = "pruned"
    strength: float | None = None  # the declared strength of a one-shot step
    extra: dict[str, float] = field(default_factory=dict)  # method-specific figures logged as metrics (e.g. target sparsity)


def keeps_id(results: dict[str, EvalResult], baseline: dict[str, EvalResult], ratio: float) -> bool:
    """The lottery-ticket rule: ID accuracy at least `ratio` times the full model's."""
    return results["id"].accuracy >= ratio * baseline["id"].accuracy


__all__ = ["Params", "PruneContext", "PruneStep", "keeps_id", "BaseModel"]
