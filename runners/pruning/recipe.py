"""The recipe contract: what every pruning recipe receives, yields, and how a run of it is executed.

A recipe module (runners/pruning/recipes/) has `Params` (its schema in registry.methods) and
`run(ctx, params, start=None) -> Iterator[PruneStep]`. It prunes `ctx.model` in place (weight masks) or
through gates (`runners.pruning.gates.attach`), calls `ctx.evaluate()` after each step with its masks/gates
in effect, and yields one PruneStep per step. Given `start` (a logged step with its state: its weight
masks, or its binary gates and scores), it continues with steps start.step + 1, ... exactly as an
uninterrupted run would: that is how a killed run resumes.

`Recipe.execute` drives a recipe: it hands every step to the callbacks as it comes (logging is one, a
search's intermediate values another; a callback raising StopPruning ends the run early), then applies
the recipe's keep rule (`kept`) and says why the run stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol, Sequence

import torch

from registry.keeprule import KeepRule
from registry.methods import MethodParams
from registry.tracking import StopReason
from runners.data.examples import Batch
from runners.tracking.progress import Progress
from runners.training.evaluate import EvalResult


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
    # The frozen full model's predictions on every training example: an (N, C) float32 tensor of log-probabilities
    # (CPU), row i for the example train_batches calls index i (Batch.indices), computed once per fine-tuned model
    # and training data (runners.pruning.teacher). None: L0 runs the full model on every step's batch instead.
    teacher: Callable[[], torch.Tensor] | None = None


@dataclass
class PruneStep:
    step: int
    sparsity: float  # fraction of prunable parameters removed (weights, or parameters owned by gated-off units)
    results: dict[str, EvalResult]
    passed: bool  # whether this step keeps ID performance (the method's stop rule)
    weight_masks: dict[str, torch.Tensor] | None = None  # unstructured: True = keep
    gates: object | None = None  # structured: a binary runners.pruning.gates.Gates
    # per-unit scores ("head" (L,H), "mlp" (L,), "neuron" (L,I)); higher = more important
    scores: dict[str, torch.Tensor] | None = None
    unit_sparsity: float | None = None  # fraction of units (heads + MLPs, or neurons) removed
    variant: str = "pruned"
    strength: float | None = None  # the declared strength of a one-shot step
    # method-specific figures logged as metrics (e.g. target sparsity)
    extra: dict[str, float] = field(default_factory=dict)


def keeps_id(results: dict[str, EvalResult], baseline: dict[str, EvalResult], rule: KeepRule) -> bool:
    """The keep rule (registry.keeprule; a method's own: ID score >= keep_ratio x the full model's) on the
    task's own metric (`EvalResult.score`: accuracy, MCC for CoLA, F1, Pearson for STS-B)."""
    return rule.holds(results["id"].score, baseline["id"].score)


def kept_step(steps: Sequence[PruneStep]) -> PruneStep:
    """The keep rule of every method so far: the sparsest step that passed (the later one on a tie);
    whether a step passed was judged on the task's own metric (`keeps_id`). Step 0, the full model,
    always passes, so there is always one."""
    return max((s for s in steps if s.passed), key=lambda s: (s.sparsity, s.step))


class StopPruning(Exception):
    """Raised by a step callback to end the recipe after the step it was handed (e.g. a hopeless trial)."""


class StepCallback(Protocol):
    def __call__(self, step: PruneStep) -> None: ...


@dataclass
class RecipeOutcome:
    steps: list[PruneStep]  # step 0 (the full model) and every pruning step, in order
    kept: PruneStep
    stop_reason: StopReason


@dataclass(frozen=True)
class Recipe:
    name: str
    params: type[MethodParams]
    run: Callable[..., Iterator[PruneStep]]  # run(ctx, params, start=None)
    kept: Callable[[Sequence[PruneStep]], PruneStep] = kept_step
    # whether a run of it maps its large blocks from the OS while it prunes (runners.training.memory.bounded_heap):
    # a recipe that trains many steps of changing shapes, whose freed activations would pile up on glibc's heap
    bounded_heap: bool = False

    def execute(
        self, ctx: PruneContext, params: MethodParams, done: Sequence[PruneStep], callbacks: Sequence[StepCallback] = ()
    ) -> RecipeOutcome:
        """Run the recipe after the steps in `done` (at least step 0; more when resuming, the last one
        carrying its state), hand each new step to every callback, then pick the kept step."""
        steps = list(done)
        start = steps[-1] if len(steps) > 1 else None
        reason: StopReason | None = None
        try:
            for step in self.run(ctx, params, start):
                steps.append(step)
                for callback in callbacks:
                    callback(step)
        except StopPruning:
            reason = StopReason.CALLBACK
        return RecipeOutcome(steps, self.kept(steps), reason or stop_reason(steps, params))


def stop_reason(steps: Sequence[PruneStep], params: MethodParams) -> StopReason:
    """Why a recipe ended: its last step failed the keep rule (iterative methods stop there), it hit
    max_steps, the declared strengths/targets ran out, or there was nothing left to prune."""
    last = steps[-1]
    if not params.iterative:
        return StopReason.DECLARED
    if not last.passed:
        return StopReason.KEEP_RULE
    return StopReason.MAX_STEPS if last.step >= params.max_steps else StopReason.EXHAUSTED  # type: ignore[attr-defined]


__all__ = [
    "PruneContext",
    "PruneStep",
    "Recipe",
    "RecipeOutcome",
    "StepCallback",
    "StopPruning",
    "keeps_id",
    "kept_step",
    "stop_reason",
]
