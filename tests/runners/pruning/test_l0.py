"""L0 pruning (runners/methods/l0.py): the hard-concrete distribution against Monte Carlo, the
Lagrangian's directions, the target schedule, and short runs on a tiny BERT."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError
from transformers import BertConfig, BertForSequenceClassification

from runners.data.examples import Batch
from runners.pruning.gates import Gates, attach, compute_unit_means
from runners.pruning.recipe import PruneContext
from runners.pruning.recipes import l0
from runners.tracking.progress import Progress
from runners.training.evaluate import EvalResult

T, LEFT, RIGHT = 2 / 3, -0.1, 1.1


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    # initializer_range 0.3 (not BERT's 0.02): random units then matter enough for the KL to rank them
    cfg = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=3,
        initializer_range=0.3,
    )
    return BertForSequenceClassification(cfg).eval()


def random_batches(n_batches: int, size: int = 16, width: int = 12, seed: int = 0) -> list[Batch]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        mask = torch.ones(size, width, dtype=torch.long)
        mask[size // 2 :, width - 4 :] = 0  # half the rows padded
        ids = torch.randint(1, 100, (size, width), generator=g) * mask
        out.append(Batch(ids, mask, None, torch.randint(0, 3, (size,), generator=g), [None] * size))
    return out


def tiny_ctx(model, seed: int = 0) -> PruneContext:
    train, (held_out,) = random_batches(4), random_batches(1, size=64, seed=1)

    def train_batches(n_examples=None, batch_size=32, shuffle=False, epoch=0):
        order = (
            torch.randperm(len(train), generator=torch.Generator().manual_seed(epoch)).tolist()
            if shuffle
            else range(len(train))
        )
        return (train[i] for i in order)

    def evaluate():
        with torch.no_grad():
            pred = model(**held_out.model_inputs()).logits.argmax(-1)
        return {"id": EvalResult("id", "id", int((pred == held_out.labels).sum()), len(pred))}

    means = compute_unit_means(model, train)
    return PruneContext(
        model=model,
        evaluate=evaluate,
        baseline=evaluate(),
        progress=Progress(enabled=False),
        seed=seed,
        train_batches=train_batches,
        unit_means=lambda: means,
    )


def test_expected_l0_matches_monte_carlo():
    """Peer check: the closed form P(z != 0) and P(z == 1) against 200k sampled gates per log-alpha."""
    log_alpha = torch.tensor([-4.0, -1.5, 0.0, 0.7, 2.0, 5.0])
    n = 200_000
    u = torch.rand(n, len(log_alpha), generator=torch.Generator().manual_seed(0)) * (1 - 2 * l0.EPS) + l0.EPS
    z = l0.sample_gates(log_alpha.expand(n, -1), u, T, LEFT, RIGHT)
    p_one = torch.sigmoid(log_alpha - T * math.log((1 - LEFT) / (RIGHT - 1)))  # P(stretched s >= 1)
    for closed, observed in (
        (l0.p_nonzero(log_alpha, T, LEFT, RIGHT), (z != 0).double().mean(0)),
        (p_one, (z == 1).double().mean(0)),
    ):
        se = torch.sqrt(closed * (1 - closed) / n)
        assert torch.all((observed - closed).abs() <= 5 * se + 1e-12), (observed, closed)
    # the formula itself: P(z != 0) = sigmoid(log_alpha - beta log(-l/r)), by hand for log_alpha 0
    assert float(l0.p_nonzero(torch.tensor(0.0), T, LEFT, RIGHT)) == pytest.approx(1 / (1 + (1 / 11) ** T), abs=1e-7)


def test_samples_in_unit_interval_with_point_masses_and_deterministic_gate():
    log_alpha = torch.zeros(100_000)
    u = torch.rand(len(log_alpha), generator=torch.Generator().manual_seed(1)) * (1 - 2 * l0.EPS) + l0.EPS
    z = l0.sample_gates(log_alpha, u, T, LEFT, RIGHT)
    assert float(z.min()) == 0.0 and float(z.max()) == 1.0
    exact0, exact1 = float((z == 0).double().mean()), float((z == 1).double().mean())
    assert 0.1 < exact0 < 0.4 and 0.1 < exact1 < 0.4  # point masses: ~0.17 each at log_alpha 0
    assert 0.3 < float(((z > 0) & (z < 1)).double().mean()) < 0.8  # and a continuous part between
    for la in (-3.0, -0.2, 0.0, 0.3, 1.0, 10.0):
        want = min(1.0, max(0.0, 1 / (1 + math.exp(-la)) * (RIGHT - LEFT) + LEFT))
        assert float(l0.deterministic_gates(torch.tensor(la), LEFT, RIGHT)) == pytest.approx(want, abs=1e-6)


def test_target_schedule_is_linear_over_warmup_then_flat_and_scales_with_target():
    assert [l0.target_at(s, 4, 0.6) for s in range(7)] == pytest.approx([0, 0.15, 0.3, 0.45, 0.6, 0.6, 0.6])
    # at scale 1 the paper's MNLI rule: warm-up 6500 + 50 T, total warm-up + 6 T (T in percent)
    assert l0.schedule(l0.Params(schedule_scale=1.0), 0.5) == (9000, 9300)
    w1, n1 = l0.schedule(l0.Params(), 0.2)
    w2, n2 = l0.schedule(l0.Params(), 0.6)
    assert (w1, n1) == (375, 381) and (w2, n2) == (475, 493)


def _trainer(model, p: l0.Params, seed: int = 0):
    gates = Gates.ones(model, ablation="mean", means=compute_unit_means(model, random_batches(2)))
    return l0.L0Trainer(model, gates, p, torch.Generator().manual_seed(seed)), gates


def test_kl_is_zero_at_initialisation_with_all_gates_one():
    model = tiny_model()
    trainer, gates = _trainer(model, l0.Params())
    inputs = random_batches(1)[0].model_inputs()
    with attach(model, gates):
        kl, expected = trainer.step(inputs, 0.0)
    assert torch.equal(gates.head, torch.ones(2, 4)) and torch.equal(gates.mlp, torch.ones(2))  # sampled, all 1
    assert gates.head.requires_grad  # the student saw the sampled tensors, not the constant ones
    assert float(kl) == 0.0
    assert float(expected) == pytest.approx(1 - float(torch.sigmoid(torch.tensor(10 - T * math.log(1 / 11)))), abs=1e-7)


@pytest.mark.parametrize("init,target,sign", [(10.0, 0.5, +1), (-5.0, 0.3, -1)])
def test_multipliers_ascend_and_push_expected_sparsity_toward_target(init, target, sign):
    """s < t: lambda1 grows (ascent on t - s > 0), log-alphas fall, s rises; s > t: the reverse."""
    model = tiny_model()
    trainer, gates = _trainer(model, l0.Params(init_log_alpha=init))
    inputs = random_batches(1)[0].model_inputs()
    s0 = float(trainer.expected_sparsity().detach())
    assert (target - s0) * sign > 0
    with attach(model, gates):
        for _ in range(5):
            trainer.step(inputs, target)
    lam1, lam2 = trainer.lambdas.tolist()
    assert lam1 * sign > 1.0 and lam2 > 1.0  # Adam, lr 1: ~1 per step in the ascent direction
    assert torch.all((trainer.log_alpha.detach() - init) * sign < 0)
    assert (float(trainer.expected_sparsity().detach()) - s0) * sign > 0


def test_trainer_is_deterministic_given_the_seed():
    model = tiny_model()
    inputs = random_batches(1)[0].model_inputs()
    runs = []
    for seed in (3, 3, 4):
        trainer, gates = _trainer(model, l0.Params(init_log_alpha=1.0), seed)
        with attach(model, gates):
            for i in range(5):
                trainer.step(inputs, 0.5)
        runs.append(trainer.log_alpha.detach().clone())
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_short_run_reaches_targets_with_weights_untouched():
    model = tiny_model()
    ctx = tiny_ctx(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # a quick schedule (~90 steps a target): gates start nearer the decision range and move faster
    p = l0.Params(targets=[0.6, 0.3], schedule_scale=0.01, init_log_alpha=5.0, lr=0.2)
    steps = list(l0.run(ctx, p))
    n_units = 2 * 4 + 2
    assert [s.step for s in steps] == [1, 2] and [s.strength for s in steps] == [0.3, 0.6]
    for s in steps:
        t = s.extra["target_sparsity"]
        assert s.unit_sparsity == s.extra["realised_unit_sparsity"] == round(t * n_units) / n_units
        assert abs(s.extra["expected_sparsity_end"] - t) < 0.1  # the Lagrangian held E[s] near the target
        assert s.extra["lambda2"] > 0
        g = s.gates
        assert g.ablation == "mean" and g.means is not None
        assert set(torch.cat([g.head.flatten(), g.mlp]).tolist()) <= {0.0, 1.0}
        assert s.scores["head"].shape == (2, 4) and s.scores["mlp"].shape == (2,)
        # the pruned units are those with the lowest log-alpha
        la, keep = torch.cat([s.scores["head"].flatten(), s.scores["mlp"]]), torch.cat([g.head.flatten(), g.mlp]).bool()
        assert la[~keep].max() <= la[keep].min()
        assert 0 < s.sparsity < 1
        assert s.passed == (s.results["id"].accuracy >= 0.9 * ctx.baseline["id"].accuracy)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # bitwise
    assert all(q.requires_grad for q in model.parameters()) and not model.training


def test_params_validate_targets_and_l0_is_registered():
    from registry.methods import METHODS
    from runners.pruning.recipes import RECIPES

    with pytest.raises(ValidationError):
        l0.Params(targets=[0.0, 0.5])
    with pytest.raises(ValidationError):
        l0.Params(targets=[0.5, 0.5])
    with pytest.raises(ValidationError):
        l0.Params(stretch_left=0.1)
    assert METHODS.get("l0").params is l0.Params and RECIPES.get("l0").run is l0.run
