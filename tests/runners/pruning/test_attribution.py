"""Attribution pruning (runners/methods/attribution.py): |activation x gradient| against a hand
computation, exact per-layer keep counts, nested masks, step fields, on a tiny float64 BERT."""

from __future__ import annotations

import pytest
import torch

from runners.data.examples import Batch, batches
from runners.pruning.gates import attach
from runners.pruning.recipes import attribution
from runners.pruning.units import geometry, head_params, mlp_params, neuron_params
from tests.helpers import TINY_CFG, random_rows, scripted_context, tiny_float64_bert

make_ctx = scripted_context


def by_hand(model, data, batch_size):
    """sum over batches, non-padding tokens of |a * dL/da|, with a captured by a plain forward hook and
    dL/da from torch.autograd.grad on the captured (non-detached) outputs."""
    layers = model.bert.encoder.layer
    total = torch.zeros(len(layers), TINY_CFG["intermediate_size"], dtype=torch.float64)
    for b in batches(data, batch_size, 0):
        captured = [None] * len(layers)
        hooks = [
            layer.intermediate.register_forward_hook(lambda m, a, o, i=i: captured.__setitem__(i, o))
            for i, layer in enumerate(layers)
        ]
        loss = model(**b.model_inputs(), labels=b.labels).loss
        for h in hooks:
            h.remove()
        grads = torch.autograd.grad(loss, captured)
        mask = b.attention_mask[..., None].double()
        total += torch.stack([(a * g).abs().mul(mask).sum((0, 1)) for a, g in zip(captured, grads)]).detach()
    return total


def test_scores_equal_activation_times_gradient_by_hand():
    model = tiny_float64_bert()
    data = random_rows()
    ours = attribution.neuron_attribution(model, batches(data[:10], 4, 0))
    hand = by_hand(model, data[:10], 4)
    assert ours.shape == (2, 64) and (hand > 0).all()
    assert torch.allclose(ours, hand, rtol=1e-10, atol=1e-14)
    assert all(p.grad is None for p in model.parameters())  # scoring leaves the model's grads alone
    # padding is excluded: the same batch with 5 extra padding columns scores the same
    b = next(batches(data[:10], 10, 0))
    zeros = torch.zeros(10, 5, dtype=torch.long)
    wide = Batch(
        torch.cat([b.input_ids, zeros], 1),
        torch.cat([b.attention_mask, zeros], 1),
        torch.cat([b.token_type_ids, zeros], 1),
        b.labels,
        b.subcases,
    )
    assert torch.allclose(attribution.neuron_attribution(model, [wide]), by_hand(model, data[:10], 10), rtol=1e-9)


def test_keep_counts_per_layer_and_nested_masks():
    model = tiny_float64_bert()
    ctx, seen, probe = make_ctx(model)
    steps = list(
        attribution.run(
            ctx,
            attribution.Params(strengths=[0.5, 0.1, 0.9, 0.3, 0.7], keep_ratio=0.0, scoring_examples=12, batch_size=5),
        )
    )
    assert [s.strength for s in steps] == [0.1, 0.3, 0.5, 0.7, 0.9] and [s.step for s in steps] == [1, 2, 3, 4, 5]
    hand = by_hand(model, random_rows(), 5)
    expected_kept = {0.1: 58, 0.3: 45, 0.5: 32, 0.7: 19, 0.9: 6}  # 64 - round(r x 64)
    g = geometry(model)
    total = g.layers * (g.heads * head_params(g) + mlp_params(g))
    for s, logits in zip(steps, seen):
        assert torch.allclose(s.scores["neuron"], hand, rtol=1e-10)  # computed once, on the full model
        kept = s.gates.neuron.bool()
        assert kept.sum(1).tolist() == [expected_kept[s.strength]] * 2
        for layer in range(2):  # the kept ones are the top scorers of their layer
            sc = s.scores["neuron"][layer]
            assert sc[kept[layer]].min() > sc[~kept[layer]].max()
        assert (s.gates.head == 1).all() and (s.gates.mlp == 1).all() and s.gates.ablation == "zero"
        pruned = 2 * (64 - expected_kept[s.strength])
        assert s.unit_sparsity == pytest.approx(pruned / 128)
        assert s.sparsity == pytest.approx(pruned * neuron_params(g) / total)
        with torch.no_grad(), attach(model, s.gates):  # evaluate() ran with exactly these gates
            assert torch.allclose(logits, model(**probe.model_inputs()).logits)
    for prev, cur in zip(steps, steps[1:]):
        assert (cur.gates.neuron <= prev.gates.neuron).all()  # nested


def test_passed_follows_keep_ratio_and_every_strength_is_evaluated():
    model = tiny_float64_bert()
    ctx, seen, _ = make_ctx(model, accuracies=[0.80, 0.70, 0.75])
    steps = list(attribution.run(ctx, attribution.Params(strengths=[0.2, 0.4, 0.6], scoring_examples=8)))
    assert [s.passed for s in steps] == [True, False, True] and len(seen) == 3  # one-shot: no early stop


def test_mean_ablation_and_params_validation():
    model = tiny_float64_bert()
    ctx, seen, probe = make_ctx(model)
    steps = list(attribution.run(ctx, attribution.Params(strengths=[0.5], ablation="mean", scoring_examples=8)))
    assert steps[0].gates.ablation == "mean"
    assert torch.equal(steps[0].gates.means.neuron, ctx.unit_means().neuron)
    with torch.no_grad(), attach(model, steps[0].gates):
        assert torch.allclose(seen[0], model(**probe.model_inputs()).logits)
    assert attribution.Params().strengths == [0.1, 0.3, 0.5, 0.7, 0.9]
    for bad in ([], [1.5], [-0.1]):
        with pytest.raises(ValueError):
            attribution.Params(strengths=bad)
