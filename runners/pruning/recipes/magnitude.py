"""Magnitude pruning of encoder weights, global across every encoder Linear (embeddings excluded).

Iterative (m-pruning, "When BERT plays the lottery", Prasanna et al. 2020): each step removes the
`rate` fraction of the *remaining* weights with the lowest |w|, evaluates, and stops as soon as ID
accuracy falls below `keep_ratio` of the full model's; the runner keeps the last passing mask.
One-shot (when `strengths` is given): for each declared strength s, remove the fraction s of all
prunable weights with the lowest |w| of the fine-tuned model. Lowest-|w| sets are nested as s grows,
so pruning the strengths in ascending order in place needs no copy of the model.

Masks equal torch.nn.utils.prune.global_unstructured(L1Unstructured) on the same parameters
(tests/runners/pruning/test_magnitude.py): same concatenation order, same rounding (Python's round), same topk.
"""

from __future__ import annotations

from typing import Iterator

import torch

from registry.methods import MagnitudeParams as Params
from runners.pruning.masks import mask_sparsity as sparsity_of
from runners.pruning.masks import split_like
from runners.pruning.recipe import PruneContext, PruneStep, keeps_id
from runners.pruning.units import apply_weight_masks, prunable_weights


def global_magnitude_step(
    weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], amount: float
) -> dict[str, torch.Tensor]:
    """New masks that additionally remove round(amount x remaining) lowest-|w| remaining weights."""
    names = list(weights)
    flat_w = torch.cat([weights[n].detach().reshape(-1).abs() for n in names])
    flat_m = torch.cat([masks[n].reshape(-1) for n in names])
    remaining = flat_m.nonzero().squeeze(1)
    k = round(amount * remaining.numel())
    new = flat_m.clone()
    if k > 0:
        lowest = torch.topk(flat_w[remaining], k, largest=False).indices
        new[remaining[lowest]] = False
    return split_like(new, weights)


def run(ctx: PruneContext, p: Params, start: PruneStep | None = None) -> Iterator[PruneStep]:
    """Steps start.step + 1, ... from the logged mask of `start` (a resumed run), or from the full model."""
    weights = prunable_weights(ctx.model)
    if start is not None:
        masks = {n: m.to(weights[n].device) for n, m in start.weight_masks.items()}
        apply_weight_masks(ctx.model, masks)
    else:
        masks = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    first = start.step + 1 if start is not None else 1
    if p.strengths is not None:
        total = sum(w.numel() for w in weights.values())
        strengths = sorted(p.strengths)
        with ctx.progress.task("one-shot magnitude", total=len(strengths)) as advance:
            advance(first - 1, "resumed" if start is not None else "")
            for i, s in enumerate(strengths[first - 1 :], start=first):
                # the increment that brings the nested mask from its current size to strength s
                remaining = sum(int(m.sum()) for m in masks.values())
                target_removed = round(s * total)
                amount = (target_removed - (total - remaining)) / remaining if remaining else 0.0
                masks = global_magnitude_step(weights, masks, max(0.0, amount))
                apply_weight_masks(ctx.model, masks)
                results = ctx.evaluate()
                advance(1, f"s={s:.2f} id={results['id'].accuracy:.3f}")
                yield PruneStep(
                    i,
                    sparsity_of(masks),
                    results,
                    keeps_id(results, ctx.baseline, p.keep_rule),
                    weight_masks=masks,
                    strength=s,
                )
        return
    if start is not None and not start.passed:
        return  # the keep rule already stopped this run
    with ctx.progress.task("m-pruning", total=p.max_steps) as advance:
        advance(first - 1, "resumed" if start is not None else "")
        for step in range(first, p.max_steps + 1):
            masks = global_magnitude_step(weights, masks, p.rate)
            apply_weight_masks(ctx.model, masks)
            results = ctx.evaluate()
            passed = keeps_id(results, ctx.baseline, p.keep_rule)
            advance(1, f"sparsity {sparsity_of(masks):.2f} id={results['id'].accuracy:.3f}")
            yield PruneStep(step, sparsity_of(masks), results, passed, weight_masks=masks)
            if not passed:
                return
