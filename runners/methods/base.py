"""What every pruning recipe receives and yields.

A recipe is a module with `Params` (a strict pydantic model: its fields are the method's keys in
experiments.toml), `SUMMARY` (one line) and `run(ctx, params) -> Iterator[PruneStep]`. It prunes
`ctx.model` in place, calls `ctx.evaluate()` after each step, and yields one PruneStep per step;
the runner logs every step and keeps the last step that passed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from pydantic import BaseModel, ConfigDict

from runners.evaluate import EvalResult
from runners.progress import Progress


class Params(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


@dataclass
class PruneContext:
    model: torch.nn.Module  # the fine-tuned model; recipes prune it in place
    evaluate: Callable[[], dict[str, EvalResult]]  # ID + every OOD set on the current model
    baseline: dict[str, EvalResult]  # the full fine-tuned model's results (step 0)
    progress: Progress
    seed: int


@dataclass
class PruneStep:
    step: int
    sparsity: float  # fraction of prunable weights removed
    results: dict[str, EvalResult]
    passed: bool  # whether this step keeps ID performance (the method's stop rule)
    weight_masks: dict[str, torch.Tensor] | None = None
    unit_sparsity: float | None = None
    variant: str = "pruned"
    strength: float | None = None  # the declared strength of a one-shot step
    extra: dict[str, float] = field(default_factory=dict)


def keeps_id(results: dict[str, EvalResult], baseline: dict[str, EvalResult], ratio: float) -> bool:
    """The lottery-ticket rule: ID accuracy at least `ratio` times the full model's."""
    return results["id"].accuracy >= ratio * baseline["id"].accuracy


__all__ = ["Params", "PruneContext", "PruneStep", "keeps_id", "BaseModel"]
