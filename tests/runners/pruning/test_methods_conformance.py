"""One conformance suite over every registered pruning method.

Each method runs on a tiny model with a real evaluation (a small synthetic task) and must honour the
recipe contract of runners/pruning/recipe.py: steps numbered 1..n, one evaluation per step, a mask or
gates that really are what the step reports (sparsity, results), weights untouched by gate methods.
"""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from registry.methods import METHODS
from registry.tracking import StopReason
from runners.data.examples import batches, encode
from runners.data.synthetic_nli import SyntheticNLIParams, generate, vocabulary
from runners.data.tokenizer import build_word_tokenizer
from runners.pruning.gates import attach, compute_unit_means
from runners.pruning.gates import sparsity as gate_sparsity
from runners.pruning.masks import load_step, save_gate_masks, save_weight_masks
from runners.pruning.recipe import PruneContext, PruneStep, keeps_id
from runners.pruning.recipes import RECIPES
from runners.pruning.units import prunable_weights
from runners.tracking.progress import Progress
from runners.training.evaluate import EncodedSet, evaluate

# quick settings per method; a method registered without an entry here fails the suite on purpose
QUICK = {
    "magnitude": dict(rate=0.3, max_steps=3, keep_ratio=0.0),
    "importance": dict(max_steps=3, keep_ratio=0.0, scoring_examples=32, batch_size=16),
    "attribution": dict(strengths=[0.25, 0.5], keep_ratio=0.0, scoring_examples=32, batch_size=16),
    "l0": dict(targets=[0.25, 0.5], keep_ratio=0.0, schedule_scale=0.002, batch_size=16),
}


@pytest.fixture(scope="module")
def setting():
    params = SyntheticNLIParams(n_train=64, n_id_eval=48, n_ood_per_subcase=4)
    task = generate(params, 0)
    tok = build_word_tokenizer(vocabulary(params))
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        initializer_range=0.2,
    )
    model = BertForSequenceClassification(cfg).eval()
    sets = [EncodedSet.build(tok, s, 48) for s in task.eval_sets]
    rows = encode(tok, task.train, 48)
    return model, sets, rows, tok.pad_token_id


def make_ctx(model, sets, rows, pad, calls):
    def evaluate_all():
        calls.append(1)
        return {s.eval_set.name: evaluate(model, s, 64, pad) for s in sets}

    def train_batches(n_examples=None, batch_size=32, shuffle=False, epoch=0):
        use = rows[:n_examples] if n_examples else rows
        order = torch.randperm(len(use), generator=torch.Generator().manual_seed(epoch)).tolist() if shuffle else None
        return batches(use, batch_size, pad, order)

    means = {}

    def unit_means():
        if "m" not in means:
            means["m"] = compute_unit_means(model, train_batches(64, 32))
        return means["m"]

    baseline = evaluate_all()
    calls.clear()
    return PruneContext(
        model=model,
        evaluate=evaluate_all,
        baseline=baseline,
        progress=Progress(enabled=False),
        seed=0,
        train_batches=train_batches,
        unit_means=unit_means,
    )


def test_every_method_has_quick_settings():
    assert sorted(QUICK) == METHODS.names()


def test_every_declared_method_has_its_recipe():
    assert RECIPES.names() == METHODS.names()
    for name in METHODS.names():
        assert RECIPES.get(name).params is METHODS.get(name).params


@pytest.mark.parametrize("name", METHODS.names())
def test_method_honours_the_recipe_contract(name, setting):
    import copy

    model, sets, rows, pad = setting
    model = copy.deepcopy(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    recipe = RECIPES.get(name)
    params = recipe.params.model_validate(QUICK[name])
    calls: list = []
    ctx = make_ctx(model, sets, rows, pad, calls)
    steps: list[PruneStep] = list(recipe.run(ctx, params))

    assert steps and [s.step for s in steps] == list(range(1, len(steps) + 1))
    assert len(calls) == len(steps)  # one evaluation per step
    assert all(0.0 < s.sparsity < 1.0 for s in steps)
    assert [s.sparsity for s in steps] == sorted(s.sparsity for s in steps)
    for s in steps:
        assert (s.weight_masks is None) != (s.gates is None), "a step carries weight masks or gates"
        assert set(s.results) == {x.eval_set.name for x in sets}
        assert s.passed == keeps_id(s.results, ctx.baseline, params.keep_rule) or name == "magnitude"
        assert s.variant == "pruned"
        if s.weight_masks is not None:
            kept = sum(int(m.sum()) for m in s.weight_masks.values())
            assert s.sparsity == pytest.approx(1 - kept / sum(m.numel() for m in s.weight_masks.values()))
        else:
            g = s.gates
            for fam in ("head", "mlp", "neuron"):
                t = getattr(g, fam)
                assert t is None or bool(((t == 0) | (t == 1)).all()), "gates in a step are binary"
                if t is not None and s.scores is not None and fam in s.scores:
                    assert s.scores[fam].shape == t.shape
            fig = gate_sparsity(model, g)
            assert s.sparsity == pytest.approx(fig["params"])
            assert s.unit_sparsity in (pytest.approx(fig["units"]), pytest.approx(fig.get("neurons", -1)))
    last = steps[-1]
    # the reported results are what the reported mask gives
    if last.gates is not None:
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "gate methods keep weights"
        with attach(model, last.gates):
            again = {s.eval_set.name: evaluate(model, s, 64, pad) for s in sets}
    else:
        weights = prunable_weights(model)
        assert all(bool((weights[n][~m] == 0).all()) for n, m in last.weight_masks.items())
        again = {s.eval_set.name: evaluate(model, s, 64, pad) for s in sets}
    assert {k: v.correct for k, v in again.items()} == {k: v.correct for k, v in last.results.items()}


def _through_disk(step: PruneStep, tmp_path) -> PruneStep:
    """The step as a resumed run gets it back: from its logged mask file."""
    meta = {
        "step": str(step.step),
        "variant": step.variant,
        "sparsity": repr(step.sparsity),
        "passed": str(step.passed).lower(),
    }
    path = tmp_path / f"step_{step.step}.safetensors"
    if step.weight_masks is not None:
        save_weight_masks(path, step.weight_masks, meta)
    else:
        fams = {k: getattr(step.gates, k) for k in ("head", "mlp", "neuron") if getattr(step.gates, k) is not None}
        save_gate_masks(path, fams, step.scores, {**meta, "ablation": step.gates.ablation})
    return load_step(path)


@pytest.mark.parametrize("name", METHODS.names())
def test_starting_from_a_logged_step_reproduces_the_rest(name, setting, tmp_path):
    """A recipe started from step k with the state it logged there yields exactly the steps k+1.. of an
    uninterrupted run (results, sparsity, masks, scores): the seam a killed run resumes through."""
    import copy

    model, sets, rows, pad = setting
    recipe = RECIPES.get(name)
    params = recipe.params.model_validate(QUICK[name])
    whole_model = copy.deepcopy(model)
    whole = list(recipe.run(make_ctx(whole_model, sets, rows, pad, []), params))
    assert len(whole) >= 2
    k = 1
    start = _through_disk(whole[k - 1], tmp_path)
    resumed_model = copy.deepcopy(model)
    calls: list = []
    rest = list(recipe.run(make_ctx(resumed_model, sets, rows, pad, calls), params, start))
    assert len(calls) == len(rest)  # no step before k was recomputed
    assert [s.step for s in rest] == [s.step for s in whole[k:]]
    for a, b in zip(whole[k:], rest):
        assert a.sparsity == b.sparsity and a.passed == b.passed and a.strength == b.strength
        assert {n: (r.correct, r.subcases) for n, r in a.results.items()} == {
            n: (r.correct, r.subcases) for n, r in b.results.items()
        }
        if a.weight_masks is not None:
            assert all(torch.equal(a.weight_masks[n], b.weight_masks[n]) for n in a.weight_masks)
        else:
            for fam in ("head", "mlp", "neuron"):
                x, y = getattr(a.gates, fam), getattr(b.gates, fam)
                assert (x is None and y is None) or torch.equal(x, y)
            assert set(a.scores) == set(b.scores) and all(torch.equal(a.scores[f], b.scores[f]) for f in a.scores)
    if whole[-1].weight_masks is not None:  # the resumed model ends pruned exactly like the uninterrupted one
        assert all(torch.equal(p, q) for p, q in zip(whole_model.parameters(), resumed_model.parameters()))


def test_execute_hands_every_step_to_callbacks_and_applies_the_keep_rule(setting):
    import copy

    from runners.pruning.recipe import StopPruning

    model, sets, rows, pad = setting
    recipe = RECIPES.get("magnitude")
    params = recipe.params.model_validate(dict(rate=0.3, max_steps=3, keep_ratio=0.0))
    ctx = make_ctx(copy.deepcopy(model), sets, rows, pad, [])
    full = PruneStep(0, 0.0, ctx.baseline, True)
    seen: list[int] = []
    outcome = recipe.execute(ctx, params, done=[full], callbacks=[lambda s: seen.append(s.step)])
    assert seen == [1, 2, 3] and [s.step for s in outcome.steps] == [0, 1, 2, 3]
    assert outcome.kept.step == 3 and outcome.stop_reason is StopReason.MAX_STEPS

    def stop_after_two(step):
        if step.step == 2:
            raise StopPruning

    ctx = make_ctx(copy.deepcopy(model), sets, rows, pad, [])
    outcome = recipe.execute(ctx, params, done=[full], callbacks=[stop_after_two])
    assert [s.step for s in outcome.steps] == [0, 1, 2] and outcome.stop_reason is StopReason.CALLBACK


def test_keep_rule_and_stop_reason():
    from runners.pruning.recipe import kept_step, stop_reason

    iterative = RECIPES.get("magnitude").params.model_validate(dict(max_steps=3))
    one_shot = RECIPES.get("magnitude").params.model_validate(dict(strengths=[0.2, 0.5]))
    s = lambda i, sp, ok: PruneStep(i, sp, {}, ok)  # noqa: E731
    failing = [s(0, 0.0, True), s(1, 0.1, True), s(2, 0.2, False)]
    assert kept_step(failing).step == 1 and stop_reason(failing, iterative) is StopReason.KEEP_RULE
    capped = [s(0, 0.0, True), s(1, 0.1, True), s(2, 0.2, True), s(3, 0.3, True)]
    assert kept_step(capped).step == 3 and stop_reason(capped, iterative) is StopReason.MAX_STEPS
    assert stop_reason(capped[:3], iterative) is StopReason.EXHAUSTED  # ended before max_steps with every step passing
    # one-shot: every strength is evaluated; the sparsest passing one is kept, wherever it lies
    shots = [s(0, 0.0, True), s(1, 0.2, True), s(2, 0.5, False)]
    assert kept_step(shots).step == 1 and stop_reason(shots, one_shot) is StopReason.DECLARED
    assert kept_step([s(0, 0.0, True), s(1, 0.3, False)]).step == 0  # the full model always passes


# what each method declares about itself: (size knob, x-axis of its defaults, iterative); magnitude's
# axis follows its `strengths`
DECLARED = {
    "magnitude": (("strength", "strengths"), "step", True),
    "importance": (None, "step", True),
    "attribution": (("strength", "strengths"), "strength", False),
    "l0": (("target", "targets"), "target", False),
}


@pytest.mark.parametrize("name", sorted(METHODS.names()))
def test_each_method_declares_its_size_knob_axis_and_iterativeness(name):
    from registry.methods import XAxis

    method, params = METHODS.get(name), METHODS.get(name).params()
    knob, axis, iterative = DECLARED[name]
    assert (tuple(method.size_knob) if method.size_knob else None, params.x_axis, params.iterative) == (
        knob,
        axis,
        iterative,
    )
    assert isinstance(params.x_axis, XAxis)
    if method.size_knob:  # a searched knob value becomes a one-element list of the declared field
        searched = method.with_values(params, {method.size_knob.key: 0.5})
        assert getattr(searched, method.size_knob.field) == [0.5] and method.size_knob.key in method.searchable()
        assert searched.x_axis is (XAxis.TARGET if name == "l0" else XAxis.STRENGTH) and not searched.iterative
    one_shot = METHODS.get("magnitude").params(strengths=[0.2])
    assert (one_shot.x_axis, one_shot.iterative) == (XAxis.STRENGTH, False)


def test_stop_reason_follows_the_declared_iterativeness():
    from runners.pruning.recipe import stop_reason

    s = lambda i, ok: PruneStep(i, 0.1 * i, {}, ok)  # noqa: E731
    failing = [s(0, True), s(1, False)]
    for name in METHODS.names():  # a failing last step stops an iterative method only
        params = METHODS.get(name).params()
        assert stop_reason(failing, params) is (StopReason.KEEP_RULE if params.iterative else StopReason.DECLARED)
