"""Attribution pruning of MLP neurons: one-shot, per layer, by |activation x gradient|.

Every intermediate neuron (the output of `layer.intermediate`, after the activation) is scored once,
on the full fine-tuned model, by the absolute value of activation x d loss / d activation, summed over
the non-padding tokens of the scoring examples (a first-order estimate of how much the loss moves
when the neuron is removed at that token). For each declared strength r, in ascending order, each
layer prunes its round(r x I) lowest-scoring neurons and keeps the top I - round(r x I). The scores
are computed once, so the kept sets are nested as r grows. Pruned neurons are gated (zero or mean
ablation); heads and MLP blocks stay whole.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import torch

from registry.methods import AttributionParams as Params
from runners.data.examples import Batch
from runners.pruning.gates import Gates, attach, encoder_view, record_neurons, sparsity
from runners.pruning.recipe import PruneContext, PruneStep, keeps_id


def neuron_attribution(model: torch.nn.Module, batches: Iterable[Batch]) -> torch.Tensor:
    """(L, I): sum over scoring examples and non-padding tokens of |activation x dL/d activation|,
    L being each batch's mean cross-entropy, in eval mode (no dropout).

    Absolute per token, because signed contributions cancel: a neuron that lowers the loss on some
    tokens and raises it on others would look unused, yet removing it changes the model a lot.
    """
    device = next(model.parameters()).device
    # Differentiating w.r.t. each intermediate bias makes autograd compute the gradient of every
    # intermediate output (the recorder's tensor hooks fire) without touching the model's .grad.
    # (The bias gradient is cheap; every supported architecture's MLP input dense has one; ALBERT's
    # depths share one.)
    targets = [m.bias for m in {id(m): m for m in encoder_view(model).parts("mlp_in")}.values()]
    if not all(t is not None and t.requires_grad for t in targets):
        raise ValueError("attribution needs the intermediate dense biases to require grad")
    total = None
    was_training = model.training
    model.eval()
    try:
        with record_neurons(model) as rec:
            for batch in batches:
                inputs = {k: v.to(device) for k, v in batch.model_inputs().items()}
                loss = model(**inputs, labels=batch.labels.to(device)).loss
                torch.autograd.grad(loss, targets)
                a = rec.attribution(batch.attention_mask.to(device), absolute=True).double()
                total = a if total is None else total + a
    finally:
        model.train(was_training)
    if total is None:
        raise ValueError("attribution got no scoring batches")
    return total


def keep_mask(scores: torch.Tensor, strength: float) -> torch.Tensor:
    """(L, I) bool: per layer, all but the round(strength x I) lowest-scoring neurons (ties: the
    lower index is pruned first, so masks for growing strengths are nested)."""
    n_prune = round(strength * scores.shape[1])
    order = torch.sort(scores, dim=1, stable=True).indices  # ascending: least important first
    keep = torch.ones_like(scores, dtype=torch.bool)
    keep.scatter_(1, order[:, :n_prune], False)
    return keep


def run(ctx: PruneContext, p: Params, start: PruneStep | None = None) -> Iterator[PruneStep]:
    """One step per strength, each from the fine-tuned model; a resumed run skips the strengths up to
    start.step (the scores are a deterministic function of the fine-tuned model and the data)."""
    model = ctx.model
    batches = ctx.train_batches(n_examples=p.scoring_examples, batch_size=p.batch_size, shuffle=False)
    scores = neuron_attribution(model, batches)
    means = ctx.unit_means() if p.ablation == "mean" else None
    dtype = torch.float64 if next(model.parameters()).dtype == torch.float64 else torch.float32
    strengths = sorted(set(p.strengths))
    first = start.step + 1 if start is not None else 1
    with ctx.progress.task("attribution pruning", total=len(strengths)) as advance:
        advance(first - 1, "resumed" if start is not None else "")
        for i, r in enumerate(strengths[first - 1 :], start=first):
            ones = Gates.ones(model, ablation=p.ablation, means=means, dtype=dtype)
            gates = Gates(ones.head, ones.mlp, keep_mask(scores, r).to(dtype), p.ablation, means)
            with attach(model, gates):
                results = ctx.evaluate()
            sp = sparsity(model, gates)
            advance(1, f"r={r:.2f} id={results['id'].accuracy:.3f}")
            yield PruneStep(
                i,
                sp["params"],
                results,
                keeps_id(results, ctx.baseline, p.keep_rule),
                gates=gates,
                scores={"neuron": scores.cpu()},
                unit_sparsity=sp["neurons"],
                strength=r,
            )
