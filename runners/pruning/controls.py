"""Controls and re-fine-tuned variants of the kept subnetwork ("When BERT plays the lottery").

- random: the same number of kept units per family (heads, MLPs, neurons), or of kept weights per
  weight matrix, chosen uniformly at random (seeded by the run's seed);
- bad: the same counts, keeping the *least* important units (lowest scores) or the lowest-|w| weights;
- retrained: the mask applied to the pre-trained (not fine-tuned) weights, then fine-tuned again with
  the mask held fixed (weights re-zeroed after every optimiser step; gated units zero-ablated, since
  mean activations of the old fine-tuned model do not describe the new one).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import torch

from runners.pruning.gates import Gates, attach
from runners.pruning.masks import split_like
from runners.pruning.recipe import PruneStep
from runners.pruning.units import apply_weight_masks, prunable_weights


def _same_count(scores: torch.Tensor | None, keep: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """A mask with as many True entries as `keep`: chosen at random (gen), or the lowest `scores`."""
    k = int(keep.sum())
    if gen is not None:
        idx = torch.topk(torch.rand(keep.numel(), generator=gen), k).indices
    else:
        idx = torch.topk(scores.reshape(-1).float(), k, largest=False).indices
    out = torch.zeros(keep.numel(), dtype=torch.bool)
    out[idx] = True
    return out.view_as(keep)


def control_gates(step: PruneStep, kind: str, seed: int) -> Gates:
    gates: Gates = step.gates
    gen = torch.Generator().manual_seed(seed) if kind == "random" else None
    if kind == "bad" and step.scores is None:
        raise ValueError("a 'bad' control needs the step's unit scores")
    new = {}
    for fam in ("head", "mlp", "neuron"):
        g = getattr(gates, fam)
        if g is None:
            continue
        keep = g.detach() >= 0.5
        if bool(keep.all()):
            new[fam] = g.detach().clone()  # a family the method did not prune stays whole
            continue
        scores = None if gen is not None else step.scores[fam]
        new[fam] = _same_count(scores, keep, gen).to(device=g.device, dtype=g.dtype)  # the model's device
    return replace(gates, **new)


def control_weight_masks(step: PruneStep, kind: str, seed: int, finetuned_weights: dict[str, torch.Tensor]) -> dict:
    gen = torch.Generator().manual_seed(seed) if kind == "random" else None
    if gen is not None:  # random: the same count per weight matrix
        return {n: _same_count(None, m, gen) for n, m in step.weight_masks.items()}
    # bad: the globally lowest-|w| weights of the fine-tuned model, as many as the kept mask holds
    names = list(step.weight_masks)
    flat = torch.cat([finetuned_weights[n].detach().abs().reshape(-1) for n in names])
    keep = torch.cat([step.weight_masks[n].reshape(-1) for n in names])
    return split_like(_same_count(flat, keep, None), step.weight_masks)


def evaluate_subnetwork(model, step: PruneStep, evaluate: Callable) -> dict:
    if step.weight_masks is not None:
        apply_weight_masks(model, step.weight_masks)
    if step.gates is None:
        return evaluate(model)
    with attach(model, step.gates):
        return evaluate(model)


def build_controls(
    selected: PruneStep,
    kinds: list[str],
    seed: int,
    load_finetuned: Callable,
    evaluate: Callable,
    done: dict[str, PruneStep] | None = None,
):
    """One PruneStep per control, evaluated on a fresh copy of the fine-tuned model; controls in `done`
    (finished by a killed attempt of the run) are taken as they are."""
    out = []
    for i, kind in enumerate(kinds):
        if done and kind in done:
            out.append(done[kind])
            continue
        model = load_finetuned()
        if selected.gates is not None:
            # same count per family: every head (MLP, neuron) owns as many parameters as any other, so
            # the sparsity figures equal the selected step's
            step = replace(selected, gates=control_gates(selected, kind, seed + 7919 * (i + 1)), weight_masks=None)
        else:
            weights = {n: w.detach().clone() for n, w in prunable_weights(model).items()}
            step = replace(selected, weight_masks=control_weight_masks(selected, kind, seed + 7919 * (i + 1), weights))
        step = replace(step, variant=kind, results=evaluate_subnetwork(model, step, evaluate))
        out.append(step)
    return out


def retrain(step: PruneStep, load_pretrained: Callable, finetune: Callable, evaluate: Callable) -> PruneStep:
    """Re-fine-tune the subnetwork from the pre-trained weights with its mask held fixed."""
    model = load_pretrained()
    masks = step.weight_masks
    after = (lambda: apply_weight_masks(model, masks)) if masks is not None else None
    gates = replace(step.gates, ablation="zero", means=None) if step.gates is not None else None
    handle = attach(model, gates) if gates is not None else None
    try:
        finetune(model, after)
        results = evaluate(model)
    finally:
        if handle is not None:
            handle.remove()
    return replace(step, variant=retrained_name(step), gates=gates, results=results)


def retrained_name(step: PruneStep) -> str:
    """The variant name of `step` re-fine-tuned: retrained, random_retrained, ..."""
    return "retrained" if step.variant == "pruned" else f"{step.variant}_retrained"
