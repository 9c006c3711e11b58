"""Magnitude pruning of encoder weights, global across every encoder Linear (embeddings excluded).

Iterative (m-pruning, "When BERT plays the lottery", Prasanna et al. 2020): each step removes the
`rate` fraction of the *remaining* weights with the lowest |w|, evaluates, and stops as soon as ID
accuracy falls below `keep_ratio` of the full model's; the runner keeps the last passing mask.
One-shot (when `strengths` is given): for each declared strength s, remove the fraction s of all
prunable weights with the lowest |w| of the fine-tuned model. Lowest-|w| sets are nested as s grows,
so pruning the strengths in ascending order in place needs no copy of the model.

Masks equal torch.nn.utils.prune.global_unstructured(L1Unstructured) on the same parameters
(tests/test_magnitude.py): same concatenation order, same rounding (Python's round), same topk.
"""
from __future__ import annotations

from typing import Iterator

import torch
from pydantic import Field, model_validator

from runners.methods.base import Params as BaseParams
from runners.methods.base import PruneContext, PruneStep, keeps_id
from runners.units import apply_weight_masks, prunable_weights

SUMMARY = "Global magnitude pruning of encoder weights: iterative m-pruning, or one-shot at declared strengths."


class Params(BaseParams):
    rate: float = Field(default=0.1, gt=0, lt=1, description="Iterative: fraction of the remaining prunable weights removed per step.")
    keep_ratio: float = Field(default=0.9, ge=0, le=1, description="A step passes while ID accuracy >= keep_ratio x the full model's (0: every step passes); iterative pruning stops at the first failing step.")
    max_steps: int = Field(default=30, ge=1, le=200, description="Iterative: at most this many pruning steps.")
    strengths: list[float] | None = Field(default=None, description="One-shot: prune these fractions of all prunable weights (each from the fine-tuned weights) instead of iterating.")

    @model_validator(mode="after")
    def _structured_only(self):
        if self.export:
            raise ValueError("export removes whole heads/MLPs/neurons; magnitude masks single weights (use importance, attribution or l0)")
        if self.strengths is not None and not all(0 < s < 1 for s in self.strengths):
            raise ValueError("every strength must lie strictly between 0 and 1")
        return self


def global_magnitude_step(weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], amount: float) -> dict[str, torch.Tensor]:
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


def split_like(flat: torch.Tensor, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cut a flat tensor (the concatenation of `like`'s tensors, in order) back into their shapes."""
    out, offset = {}, 0
    for n, t in like.items():
        out[n] = flat[offset : offset + t.numel()].view_as(t)
        offset += t.numel()
    return out


def sparsity_of(masks: dict[str, torch.Tensor]) -> float:
    total = sum(m.numel() for m in masks.values())
    return 1.0 - sum(int(m.sum()) for m in masks.values()) / total


def run(ctx: PruneContext, p: Params) -> Iterator[PruneStep]:
    weights = prunable_weights(ctx.model)
    masks = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    if p.strengths is not None:
        total = sum(w.numel() for w in weights.values())
        with ctx.progress.task("one-shot magnitude", total=len(p.strengths)) as advance:
            for i, s in enumerate(sorted(p.strengths), start=1):
                # the increment that brings the nested mask from its current size to strength s
                remaining = sum(int(m.sum()) for m in masks.values())
                target_removed = round(s * total)
                amount = (target_removed - (total - remaining)) / remaining if remaining else 0.0
                masks = global_magnitude_step(weights, masks, max(0.0, amount))
                apply_weight_masks(ctx.model, masks)
                results = ctx.evaluate()
                advance(1, f"s={s:.2f} id={results['id'].accuracy:.3f}")
                yield PruneStep(i, sparsity_of(masks), results, keeps_id(results, ctx.baseline, p.keep_ratio),
                                weight_masks=masks, strength=s)
        return
    with ctx.progress.task("m-pruning", total=p.max_steps) as advance:
        for step in range(1, p.max_steps + 1):
            masks = global_magnitude_step(weights, masks, p.rate)
            apply_weight_masks(ctx.model, masks)
            results = ctx.evaluate()
            passed = keeps_id(results, ctx.baseline, p.keep_ratio)
            advance(1, f"sparsity {sparsity_of(masks):.2f} id={results['id'].accuracy:.3f}")
            yield PruneStep(step, sparsity_of(masks), results, passed, weight_masks=masks)
            if not passed:
                return
