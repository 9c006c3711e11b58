"""Many L0 subnetworks in one pass: per-example gates against the examples run one at a time with their own gates,
and K subnetworks trained side by side (L0Stack, train_together, run) against each trained alone (train_target,
run(together=False)), with different seeds and targets (so different noise and schedules)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from runners.pruning.gates import Gates, attach, compute_unit_means
from runners.pruning.recipes import l0
from runners.pruning.teacher import compute_teacher
from tests.runners.pruning.test_gates import make_batch, make_model
from tests.runners.pruning.test_l0 import tiny_model
from tests.runners.pruning.test_l0_teacher import PARAMS, Forwards, context, flat, varied_rows

# Trained together, a subnetwork takes the steps it takes alone, up to the order of float32 sums: the KL gradient of
# a gate is summed over its copy of the batch (n T d products: 16 x <=24 x 8 here) instead of over the whole
# batch, and the stacked forward multiplies k n rows at a time. That moves a gate's gradient by a few ulps (~1e-7
# relative). Adam normalises each update (lr 0.2, divided by sqrt(v)), so a relative change of the gradient changes
# the update by about as much relative; 80-100 updates of at most 0.2 move a log-alpha by at most ~20, so ~2e-6 if
# the changes add up, more where a sampled gate feeds them back (measured: at most 6e-6). LOG_ALPHA_ATOL = 1e-4
# allows 15x the measured. The multipliers take Adam steps of lr 1 (5x), so LAMBDA_ATOL = 5x LOG_ALPHA_ATOL. The
# final masks must be equal: the log-alphas that decide them are more than 10x the tolerance apart (asserted).
LOG_ALPHA_ATOL = 1e-4
LAMBDA_ATOL = 5e-4
# Per-example gates: the same function of each example as its own forward with its own gates, computed in one
# batch of 4 instead of 1 (a matmul may block its sums otherwise for another number of rows): float32 ulps of O(1)
# logits and gradients.
LOGIT_ATOL = 1e-5

TARGETS = [0.3, 0.45, 0.6]  # schedules (warm-up, total) of (80, 82), (88, 91), (95, 99) steps at scale 0.01
# seeds and targets both vary; one target twice (two seeds), given out of target order
SUBNETS = [(0, 0.6), (1, 0.3), (2, 0.45), (3, 0.3)]


def random_gates(batch: int, layers: int, heads: int, inter: int, seed: int = 5) -> Gates:
    """Per-example gates in [0, 1] with exact zeros and ones among them (both ends of a hard-concrete sample)."""
    g = torch.Generator().manual_seed(seed)
    head, mlp = torch.rand(batch, layers, heads, generator=g), torch.rand(batch, layers, generator=g)
    neuron = torch.rand(batch, layers, inter, generator=g)
    head[0, 0, :2], head[1, 1, 3], mlp[2, 0], neuron[3, 1, :10] = 0.0, 1.0, 0.0, 1.0
    return Gates(head.requires_grad_(), mlp.requires_grad_(), neuron.requires_grad_())


@pytest.mark.parametrize("ablation", ["zero", "mean"])
def test_per_example_gates_equal_each_example_alone_with_its_gates(ablation):
    """Logits and gate gradients of a batch of 4 with per-example gates (B, L, H), (B, L), (B, L, I) against each
    example run alone (its row of the padded batch) with gate b as shared gates (L, H), (L,), (L, I)."""
    model = make_model("bert")
    batch = make_batch(model, lengths=(9, 6, 4, 7))
    means = compute_unit_means(model, [batch]) if ablation == "mean" else None
    gates = dataclasses.replace(random_gates(4, 2, 4, 64), ablation=ablation, means=means)
    with attach(model, gates):
        together = model(**batch.model_inputs()).logits
    together.sum().backward()
    with torch.no_grad():
        plain = model(**batch.model_inputs()).logits
    for b in range(4):
        alone_gates = Gates(
            *(t[b].detach().clone().requires_grad_() for t in (gates.head, gates.mlp, gates.neuron)),
            ablation=ablation,
            means=means,
        )
        one = {k: v[b : b + 1] for k, v in batch.model_inputs().items()}
        with attach(model, alone_gates):
            alone = model(**one).logits
        alone.sum().backward()
        assert (together[b] - alone[0]).abs().max() <= LOGIT_ATOL
        assert (together[b] - plain[b]).abs().max() > 1e-2  # the gates did change this example's logits
        for kind in ("head", "mlp", "neuron"):
            mine, own = getattr(gates, kind).grad[b], getattr(alone_gates, kind).grad
            assert (mine - own).abs().max() <= LOGIT_ATOL, kind
            assert own.abs().max() > 1e-3, kind  # example b's gradient, not a zero
    # example 0's gates on example 1 are not example 1's: each row really reads its own gates
    with attach(model, Gates(gates.head[0], gates.mlp[0], gates.neuron[0], ablation, means)), torch.no_grad():
        other = model(**{k: v[1:2] for k, v in batch.model_inputs().items()}).logits
    assert (other[0] - together[1]).abs().max() > 1e-2


@pytest.mark.parametrize("ablation", ["zero", "mean"])
def test_per_example_copies_of_shared_gates_are_the_shared_gates_bitwise(ablation):
    """The same gate on every example: one multiply(-add) per element either way, so bitwise the shared result."""
    model = make_model("bert")
    batch = make_batch(model, lengths=(9, 6, 4))
    means = compute_unit_means(model, [batch]) if ablation == "mean" else None
    shared = random_gates(4, 2, 4, 64)  # example 0's gates, for all
    head, mlp, neuron = (t[0].detach() for t in (shared.head, shared.mlp, shared.neuron))
    with attach(model, Gates(head, mlp, neuron, ablation, means)), torch.no_grad():
        want = model(**batch.model_inputs()).logits
    copies = Gates(*(t.expand(3, *t.shape) for t in (head, mlp, neuron)), ablation=ablation, means=means)
    with attach(model, copies), torch.no_grad():
        got = model(**batch.model_inputs()).logits
    assert torch.equal(got, want)


def test_per_example_gates_must_fit_the_batch_and_every_family():
    model = make_model("bert")
    batch = make_batch(model, lengths=(9, 6, 4))
    with pytest.raises(ValueError, match="per-example head gates are for a batch of 2, this one has 3"):
        with attach(model, Gates(torch.ones(2, 2, 4) * 0.5, torch.ones(2, 2))):
            model(**batch.model_inputs())
    with pytest.raises(ValueError, match="same batch dimension"):
        attach(model, Gates(torch.ones(3, 2, 4), torch.ones(2)))  # per-example heads, shared MLPs
    with pytest.raises(ValueError, match=r"head gates have shape \(3, 3, 4\)"):
        attach(model, Gates(torch.ones(3, 3, 4), torch.ones(3, 2)))


def frozen(model):
    model.eval()
    for q in model.parameters():
        q.requires_grad_(False)
    return model


@pytest.mark.parametrize("cached", [False, True])
def test_subnetworks_trained_together_equal_each_trained_alone(cached):
    """Four subnetworks, (seed, target) all different but one target twice, in one pass against train_target with
    the subnetwork's seed on the same batch sequence: log-alphas within LOG_ALPHA_ATOL, masks equal, multipliers
    and figures close; each leaves the stack when its own schedule ends (yielded in that order)."""
    model, rows = frozen(tiny_model(0)), varied_rows()
    table = compute_teacher(model, rows, pad_id=0) if cached else None
    ctx = context(model, rows, seed=0, teacher=(lambda: table) if cached else None)
    p = l0.Params(**dict(PARAMS, targets=TARGETS))
    means = ctx.unit_means()
    finished = list(l0.train_together(ctx, p, SUBNETS, means, table))
    assert [k for k, _, _ in finished] == [1, 3, 2, 0]  # totals 82, 82, 91, 99 steps
    for k, trainer, figures in finished:
        seed, target = SUBNETS[k]
        alone, want = l0.train_target(dataclasses.replace(ctx, seed=seed), p, target, means, table)
        la = alone.log_alpha.detach()
        assert (trainer.log_alpha.detach() - la).abs().max() <= LOG_ALPHA_ATOL
        gaps = la.sort().values.diff()
        assert gaps[gaps > 0].min() > 10 * LOG_ALPHA_ATOL  # the tolerance cannot swap two units of the mask
        assert torch.equal(trainer.final_keep(target), alone.final_keep(target))
        assert (trainer.lambdas.detach() - alone.lambdas.detach()).abs().max() <= LAMBDA_ATOL
        assert figures["train_steps"] == want["train_steps"] == l0.schedule(p, target)[1]
        assert figures["warmup_steps"] == want["warmup_steps"]
        assert math.isclose(figures["kl_end"], want["kl_end"], rel_tol=1e-4) and want["kl_end"] > 0.01
        assert math.isclose(figures["expected_sparsity_end"], want["expected_sparsity_end"], abs_tol=1e-5)
    # the seeds matter: the two subnetworks at 0.3 (seeds 1 and 3) trained apart
    by_index = {k: trainer for k, trainer, _ in finished}
    assert (by_index[1].log_alpha - by_index[3].log_alpha).abs().max() > 100 * LOG_ALPHA_ATOL


@pytest.mark.parametrize("cached", [False, True])
def test_run_trains_its_targets_in_one_pass_and_yields_the_sequential_steps(cached):
    """run() against run(together=False): the same PruneSteps in order (steps, strengths, masks, evaluations, the
    logged figures within tolerance), one forward (two without a table) a step for all targets together, and a
    resumed run the same as the uninterrupted one's later steps."""
    model, rows = tiny_model(0), varied_rows()
    table = compute_teacher(model, rows, pad_id=0)
    ctx = context(model, rows, seed=0, teacher=(lambda: table) if cached else None)
    p = l0.Params(**dict(PARAMS, targets=[0.6, 0.3, 0.45]))
    per_step = 1 if cached else 2  # the student forward, and without a table the teacher's
    with Forwards(model) as f:
        together = list(l0.run(ctx, p))
    assert f.n == per_step * l0.schedule(p, 0.6)[1] + 3  # the longest schedule, and one evaluation a target
    with Forwards(model) as f:
        alone = list(l0.run(ctx, p, together=False))
    assert f.n == per_step * sum(l0.schedule(p, t)[1] for t in TARGETS) + 3
    resumed = list(l0.run(ctx, p, start=together[0]))
    assert [s.step for s in together] == [s.step for s in alone] == [1, 2, 3]
    assert [s.step for s in resumed] == [2, 3]
    for a, b in [*zip(alone, together), *zip(alone[1:], resumed)]:
        assert a.step == b.step and a.strength == b.strength
        assert (flat(a, "scores") - flat(b, "scores")).abs().max() <= LOG_ALPHA_ATOL
        assert torch.equal(flat(a, "gates"), flat(b, "gates"))
        assert b.gates.head.shape == (2, 4) and b.gates.mlp.shape == (2,)  # the logged mask: shared, not stacked
        assert (a.sparsity, a.unit_sparsity, a.passed) == (b.sparsity, b.unit_sparsity, b.passed)
        assert {k: (r.correct, r.n) for k, r in a.results.items()} == {
            k: (r.correct, r.n) for k, r in b.results.items()
        }
        assert a.extra.keys() == b.extra.keys()
        for key, value in a.extra.items():
            tol = LAMBDA_ATOL if key.startswith("lambda") else 1e-5
            assert math.isclose(b.extra[key], value, rel_tol=1e-4, abs_tol=tol), key
    assert all(q.requires_grad for q in model.parameters()) and not model.training


def test_on_the_cpu_a_step_runs_its_members_in_passes_that_keep_activations_small(monkeypatch):
    """Members split into passes (CPU_PASS_ELEMENTS, CPU_PASS_BYTES) train as they do in one: whole copies a pass,
    or one member over slices of the batch's rows (gradients summed), with the same log-alphas and masks."""
    model, rows = frozen(tiny_model(0)), varied_rows()
    table = compute_teacher(model, rows, pad_id=0)
    ctx = context(model, rows, seed=0, teacher=lambda: table)
    p = l0.Params(**dict(PARAMS, targets=TARGETS))
    stack = l0.L0Stack(model, Gates.ones(model))
    # a row's largest activation at 24 tokens: the attention scores, 24 x (4 heads x 24) = 2304 elements
    assert stack.rows_per_pass(16, 24, 8) == 128 and stack.passes(8, 16, 24) == [(range(0, 8), 0, 16)]
    monkeypatch.setattr(l0, "CPU_PASS_ELEMENTS", 32 * 2304)
    assert stack.rows_per_pass(16, 24, 8) == 32 and stack.rows_per_pass(16, 12, 8) == 96  # 12 tokens: 12 x 64 a row
    assert stack.passes(3, 16, 24) == [(range(0, 2), 0, 16), (range(2, 3), 0, 16)]
    monkeypatch.setattr(l0, "CPU_PASS_ELEMENTS", 12 * 2304)  # 12 rows: slices of 8 + 8, not 12 + 4
    assert stack.passes(2, 16, 24) == [
        (range(0, 1), 0, 8),
        (range(0, 1), 8, 16),
        (range(1, 2), 0, 8),
        (range(1, 2), 8, 16),
    ]
    monkeypatch.setattr(l0, "CPU_PASS_ELEMENTS", 2**23)
    monkeypatch.setattr(l0, "CPU_PASS_BYTES", stack._row_bytes(24) * 5)  # the bytes bound alone: 5 rows a pass
    assert stack.rows_per_pass(16, 24, 8) == 5 and [b - a for _, a, b in stack.passes(1, 16, 24)] == [4, 4, 4, 4]
    means = ctx.unit_means()  # the bytes bound: 5 rows a pass, so each member over slices of its batch
    members = SUBNETS[:2]  # two members of different seeds and targets (the four: the test above)
    with Forwards(model) as f:
        finished = {k: trainer for k, trainer, _ in l0.train_together(ctx, p, members, means, table)}
    assert f.n > sum(l0.schedule(p, t)[1] for _, t in members)  # several slices of rows per member a step
    for k, (seed, target) in enumerate(members):
        alone, _ = l0.train_target(dataclasses.replace(ctx, seed=seed), p, target, means, table)
        assert (finished[k].log_alpha - alone.log_alpha).abs().max() <= LOG_ALPHA_ATOL
        assert torch.equal(finished[k].final_keep(target), alone.final_keep(target))


def test_finished_subnetworks_are_handed_on_in_index_order():
    """run() names its steps by target order; train_together hands subnetworks on as their schedules end."""
    finished = [(2, "c", {}), (0, "a", {}), (3, "d", {}), (1, "b", {})]
    assert [t for t, _ in l0._in_order(iter(finished))] == ["a", "b", "c", "d"]
