"""s-pruning (runners/methods/importance.py): importance vs finite differences, normalisation by hand,
the step schedule and the stop rule, on a tiny float64 BERT."""

from __future__ import annotations

import pytest
import torch

from runners.data.examples import batches
from runners.pruning.gates import Gates, attach
from runners.pruning.recipes import importance
from tests.helpers import random_rows, scripted_context, tiny_float64_bert

make_ctx = scripted_context


def loss_at(model, batch, head, mlp):
    with torch.no_grad(), attach(model, Gates(head, mlp)):
        return model(**batch.model_inputs(), labels=batch.labels).loss


def test_head_importance_equals_finite_differences_per_batch():
    """Peer check: |dL/dg| at g = 1 against central differences (float64, eps 1e-6: truncation ~eps^2,
    rounding ~1e-10), summed over batches of |per-batch difference| (not |difference of the sum|)."""
    model = tiny_float64_bert()
    data = random_rows()
    gates = Gates.ones(model, requires_grad=True, dtype=torch.float64)
    head, mlp = importance.gate_importance(model, gates, batches(data, 4, 0))
    ones_h, ones_m = torch.ones(2, 4, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    eps = 1e-6
    for li, h in [(0, 0), (0, 3), (1, 1), (1, 2)]:
        up, down = ones_h.clone(), ones_h.clone()
        up[li, h] += eps
        down[li, h] -= eps
        per_batch = [
            float(loss_at(model, b, up, ones_m) - loss_at(model, b, down, ones_m)) / (2 * eps)
            for b in batches(data, 4, 0)
        ]
        fd = sum(abs(d) for d in per_batch)
        assert fd - abs(sum(per_batch)) > 1e-3  # signs differ across batches: |.| per batch matters here
        assert float(head[li, h]) == pytest.approx(fd, rel=1e-6, abs=1e-9)
    for li in range(2):  # and the MLP gates
        up, down = ones_m.clone(), ones_m.clone()
        up[li] += eps
        down[li] -= eps
        fd = sum(
            abs(float(loss_at(model, b, ones_h, up) - loss_at(model, b, ones_h, down))) / (2 * eps)
            for b in batches(data, 4, 0)
        )
        assert float(mlp[li]) == pytest.approx(fd, rel=1e-6, abs=1e-9)
    assert all(p.grad is None for p in model.parameters())  # scoring leaves the model's grads alone


def test_normalisation_by_hand():
    head = torch.tensor([[3.0, 4.0, 12.0, 0.0], [1.0, 2.0, 2.0, 4.0]], dtype=torch.float64)
    mlp = torch.tensor([2.0, 6.0], dtype=torch.float64)
    all_h, all_m = torch.ones(2, 4, dtype=torch.bool), torch.ones(2, dtype=torch.bool)
    s = importance.normalise(head, mlp, all_h, all_m)
    # layer L2 norms 13 and 5 -> [3, 4, 12, 0]/13 and [.2, .4, .4, .8]; min 0, max 12/13
    expected = torch.tensor(
        [[3 / 12, 4 / 12, 1.0, 0.0], [0.2 * 13 / 12, 0.4 * 13 / 12, 0.4 * 13 / 12, 0.8 * 13 / 12]], dtype=torch.float64
    )
    assert torch.allclose(s["head"], expected)
    assert torch.allclose(s["mlp"], torch.tensor([0.0, 1.0], dtype=torch.float64))
    # pruned units score 0 and leave their layer's norm: layer 1 without head 3 -> [1, 2, 2, 0] / 3
    kept = all_h.clone()
    kept[1, 3] = False
    s = importance.normalise(head, mlp, kept, torch.tensor([True, False]))
    layer1 = torch.tensor([1 / 3, 2 / 3, 2 / 3, 0.0], dtype=torch.float64)
    top = 12 / 13
    assert torch.allclose(s["head"][1], layer1 / top) and torch.allclose(s["head"][0], head[0] / 13 / top)
    assert torch.equal(s["mlp"], torch.tensor([1.0, 0.0], dtype=torch.float64))
    # a fully pruned layer (norm 0) and a constant family give zeros, not NaN
    s = importance.normalise(head, mlp, torch.zeros(2, 4, dtype=torch.bool), all_m.clone().fill_(False))
    assert torch.equal(s["head"], torch.zeros(2, 4, dtype=torch.float64)) and not s["mlp"].isnan().any()


@pytest.mark.parametrize("rate, per_step", [(0.1, 1), (0.05, 1), (0.25, 2), (0.375, 3)])
def test_schedule_counts_and_pruned_units_never_return(rate, per_step):
    model = tiny_float64_bert()
    ctx, _, _ = make_ctx(model)
    steps = list(
        importance.run(ctx, importance.Params(head_rate=rate, keep_ratio=0.0, max_steps=20, scoring_examples=8))
    )
    heads = [int((s.gates.head == 0).sum()) for s in steps]
    mlps = [int((s.gates.mlp == 0).sum()) for s in steps]
    n = len(steps)
    assert heads == [min(8, per_step * k) for k in range(1, n + 1)] and heads[-1] == 8
    assert mlps == [min(2, k) for k in range(1, n + 1)]
    assert n == -(-8 // per_step)  # stops once nothing is left to prune
    for prev, cur in zip(steps, steps[1:]):
        assert (cur.gates.head <= prev.gates.head).all() and (cur.gates.mlp <= prev.gates.mlp).all()
    for s, h, m in zip(steps, heads, mlps):
        assert s.unit_sparsity == pytest.approx((h + m) / 10)
        assert s.extra == {"head_sparsity": h / 8, "mlp_sparsity": m / 2}
        assert s.passed and s.gates.ablation == "zero" and not s.gates.head.requires_grad


def test_logged_scores_decided_the_step_and_were_taken_at_the_previous_mask():
    model = tiny_float64_bert()
    ctx, seen, probe = make_ctx(model)
    steps = list(
        importance.run(
            ctx, importance.Params(head_rate=0.25, keep_ratio=0.0, max_steps=3, scoring_examples=8, batch_size=4)
        )
    )
    prev_h, prev_m = torch.ones(2, 4), torch.ones(2)
    for s, logits in zip(steps, seen):
        gates = Gates(prev_h.double().requires_grad_(), prev_m.double().requires_grad_())
        raw = importance.gate_importance(model, gates, ctx.train_batches(n_examples=8, batch_size=4))
        expected = importance.normalise(*raw, prev_h.bool(), prev_m.bool())
        assert torch.allclose(s.scores["head"], expected["head"]) and torch.allclose(s.scores["mlp"], expected["mlp"])
        newly_h = (prev_h == 1) & (s.gates.head == 0)
        still_h = s.gates.head == 1
        assert int(newly_h.sum()) == 2 and s.scores["head"][newly_h].max() <= s.scores["head"][still_h].min()
        newly_m = (prev_m == 1) & (s.gates.mlp == 0)
        assert int(newly_m.sum()) == min(1, int(prev_m.sum()))  # step 3: both MLPs already gone
        if (s.gates.mlp == 1).any():
            assert s.scores["mlp"][newly_m].max() <= s.scores["mlp"][s.gates.mlp == 1].min()
        with torch.no_grad(), attach(model, s.gates):  # evaluate() ran with exactly these gates
            assert torch.allclose(logits, model(**probe.model_inputs()).logits)
        prev_h, prev_m = s.gates.head.float(), s.gates.mlp.float()


def test_stop_rule_and_step_cap():
    model = tiny_float64_bert()
    ctx, _, _ = make_ctx(model, accuracies=[0.80, 0.75, 0.70, 0.79])
    steps = list(importance.run(ctx, importance.Params(keep_ratio=0.9, scoring_examples=8)))
    assert [s.passed for s in steps] == [True, True, False]  # 0.70 < 0.9 x 0.80: stop, 4th never runs
    ctx, _, _ = make_ctx(model)
    assert len(list(importance.run(ctx, importance.Params(keep_ratio=0.9, max_steps=2, scoring_examples=8)))) == 2


def test_mean_ablation_gates_carry_the_unit_means():
    model = tiny_float64_bert()
    ctx, seen, probe = make_ctx(model)
    steps = list(
        importance.run(
            ctx, importance.Params(ablation="mean", head_rate=0.25, keep_ratio=0.0, max_steps=2, scoring_examples=8)
        )
    )
    means = ctx.unit_means()
    for s, logits in zip(steps, seen):
        assert s.gates.ablation == "mean" and torch.equal(s.gates.means.head, means.head)
        with torch.no_grad(), attach(model, s.gates):
            assert torch.allclose(logits, model(**probe.model_inputs()).logits)
    # mean ablation changes the gradients of pruned-then-rescored gates: step 2's scores differ from zero's
    ctx0, _, _ = make_ctx(model)
    zero = list(
        importance.run(ctx0, importance.Params(head_rate=0.25, keep_ratio=0.0, max_steps=2, scoring_examples=8))
    )
    assert not torch.allclose(steps[1].scores["head"], zero[1].scores["head"])
