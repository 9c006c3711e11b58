"""s-pruning: mask the least important attention heads and MLPs, step by step.

"When BERT plays the lottery" (Prasanna, Rogers, Rumshisky 2020), with importance as in Michel, Levy
and Neubig (2019): a unit's importance is |dL/d gate| for a gate on its output, at the current mask,
accumulated over the scoring data. Each step
  1. scores every head and MLP with the current mask applied (pruned units keep gate 0);
  2. normalises head scores by the L2 norm of their layer (Michel et al.), then each family (heads,
     MLPs) min-max to [0, 1] separately;
  3. masks the `head_rate` fraction of *all* heads (rounded, at least 1) with the lowest scores among
     the still-kept heads, and the `mlps_per_step` lowest-scoring still-kept MLPs;
  4. evaluates with the new mask, and stops at the first step whose ID accuracy is below `keep_ratio`
     x the full model's, after `max_steps`, or when nothing is left to prune.
Masked units are zero- or mean-ablated (`ablation`) and never come back. Each PruneStep carries the
binary gates after the step and the normalised scores that decided it.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import torch

from registry.methods import ImportanceParams as Params
from runners.data.examples import Batch
from runners.pruning.gates import Gates, attach, sparsity
from runners.pruning.recipe import PruneContext, PruneStep, keeps_id


def gate_importance(
    model: torch.nn.Module, gates: Gates, batches: Iterable[Batch]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw importance (head (L, H), mlp (L,)): the sum over batches of |dL/d gate| at `gates`, L being
    the batch's mean cross-entropy.

    Per batch, not per example: Michel et al. define E_x |dL(x)/dg|, but per-example gradients cost one
    backward per example; the absolute batch gradient is what the widely used implementation
    (transformers' bertology example, which the lottery-ticket paper builds on) accumulates, at one
    backward per batch. `batch_size=1` recovers the per-example definition exactly.
    Eval mode (no dropout), so the scores are a deterministic function of mask and data.
    """
    device = next(model.parameters()).device
    head = torch.zeros(gates.head.shape, dtype=torch.float64, device=device)
    mlp = torch.zeros(gates.mlp.shape, dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    try:
        with attach(model, gates):
            for batch in batches:
                inputs = {k: v.to(device) for k, v in batch.model_inputs().items()}
                loss = model(**inputs, labels=batch.labels.to(device)).loss
                # autograd.grad: only the gate gradients, nothing accumulates in the model's .grad
                g_head, g_mlp = torch.autograd.grad(loss, [gates.head, gates.mlp])
                head += g_head.abs().double()
                mlp += g_mlp.abs().double()
    finally:
        model.train(was_training)
    return head, mlp


def normalise(
    head: torch.Tensor, mlp: torch.Tensor, head_kept: torch.Tensor, mlp_kept: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Scores of kept units, pruned ones set to 0 (they no longer contribute, so they count neither in
    their layer's L2 norm nor as candidates): heads divided by the L2 norm of their layer, then each
    family min-max scaled to [0, 1] over all its units."""
    head = head * head_kept
    mlp = mlp * mlp_kept
    norm = head.norm(dim=1, keepdim=True)
    head = head / torch.where(norm > 0, norm, torch.ones_like(norm))

    def min_max(t: torch.Tensor) -> torch.Tensor:
        span = t.max() - t.min()
        return (t - t.min()) / span if span > 0 else torch.zeros_like(t)

    return {"head": min_max(head), "mlp": min_max(mlp)}


def lowest_kept(scores: torch.Tensor, kept: torch.Tensor, k: int) -> torch.Tensor:
    """Flat indices of the k lowest-scoring kept units (ties: lower flat index first)."""
    candidates = kept.reshape(-1).nonzero().squeeze(1)
    order = torch.sort(scores.reshape(-1)[candidates], stable=True).indices
    return candidates[order[: min(k, candidates.numel())]]


def run(ctx: PruneContext, p: Params, start: PruneStep | None = None) -> Iterator[PruneStep]:
    """Steps start.step + 1, ... from the logged gates of `start` (a resumed run), or from the full model."""
    if start is not None and not start.passed:
        return  # the keep rule already stopped this run
    model = ctx.model
    means = ctx.unit_means() if p.ablation == "mean" else None
    # float64 gates for a float64 model (exact gradient checks), float32 otherwise
    dtype = torch.float64 if next(model.parameters()).dtype == torch.float64 else torch.float32
    soft = Gates.ones(model, requires_grad=True, ablation=p.ablation, means=means, dtype=dtype)
    head_kept = torch.ones(soft.head.shape, dtype=torch.bool, device=soft.head.device)
    mlp_kept = torch.ones(soft.mlp.shape, dtype=torch.bool, device=soft.mlp.device)
    if start is not None:
        head_kept = start.gates.head.detach().to(head_kept.device) >= 0.5
        mlp_kept = start.gates.mlp.detach().to(mlp_kept.device) >= 0.5
    heads_per_step = max(1, round(p.head_rate * head_kept.numel()))
    first = start.step + 1 if start is not None else 1

    with ctx.progress.task("s-pruning", total=p.max_steps) as advance:
        advance(first - 1, "resumed" if start is not None else "")
        for step in range(first, p.max_steps + 1):
            if not head_kept.any() and (p.mlps_per_step == 0 or not mlp_kept.any()):
                return  # nothing left to prune
            with torch.no_grad():  # the current mask; gradients are taken at these values
                soft.head.copy_(head_kept.to(dtype))
                soft.mlp.copy_(mlp_kept.to(dtype))
            batches = ctx.train_batches(n_examples=p.scoring_examples, batch_size=p.batch_size, shuffle=False)
            scores = normalise(*gate_importance(model, soft, batches), head_kept, mlp_kept)

            head_kept = head_kept.clone()
            head_kept.view(-1)[lowest_kept(scores["head"], head_kept, heads_per_step)] = False
            mlp_kept = mlp_kept.clone()
            mlp_kept.view(-1)[lowest_kept(scores["mlp"], mlp_kept, p.mlps_per_step)] = False

            gates = Gates(head_kept.to(dtype), mlp_kept.to(dtype), None, p.ablation, means)
            with attach(model, gates):
                results = ctx.evaluate()
            passed = keeps_id(results, ctx.baseline, p.keep_rule)
            sp = sparsity(model, gates)
            advance(1, f"heads {sp['heads']:.2f} mlps {sp['mlps']:.2f} id={results['id'].accuracy:.3f}")
            yield PruneStep(
                step,
                sp["params"],
                results,
                passed,
                gates=gates,
                scores={k: v.cpu() for k, v in scores.items()},
                unit_sparsity=sp["units"],
                extra={"head_sparsity": sp["heads"], "mlp_sparsity": sp["mlps"]},
            )
            if not passed:
                return
