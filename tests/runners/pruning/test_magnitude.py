"""m-pruning masks against torch.nn.utils.prune (the peer implementation), and mask files."""

from __future__ import annotations

import copy

import torch
from torch.nn.utils import prune
from transformers import BertConfig, BertForSequenceClassification

from runners.pruning.masks import load_weight_masks, save_weight_masks
from runners.pruning.recipe import PruneContext
from runners.pruning.recipes import magnitude
from runners.pruning.units import apply_weight_masks, prunable_weights
from runners.tracking.progress import Progress


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    return BertForSequenceClassification(cfg).eval()


def torch_prune_masks(model, amount: float, steps: int) -> dict[str, torch.Tensor]:
    """The same pruning with torch.nn.utils.prune.global_unstructured(L1Unstructured), `steps` times."""
    names = list(prunable_weights(model))
    modules = dict(model.named_modules())
    params = [(modules[n.rsplit(".", 1)[0]], "weight") for n in names]
    for _ in range(steps):
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
    return {n: m.weight_mask.bool() for n, (m, _) in zip(names, params)}


def test_iterative_masks_equal_torch_global_unstructured():
    model = tiny_model()
    peer = copy.deepcopy(model)
    weights = prunable_weights(model)
    masks = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    for step in range(1, 6):
        masks = magnitude.global_magnitude_step(weights, masks, 0.1)
        apply_weight_masks(model, masks)
        expected = torch_prune_masks(copy.deepcopy(peer), 0.1, step)
        for name in masks:
            assert torch.equal(masks[name], expected[name]), (step, name)
    total = sum(m.numel() for m in masks.values())
    remaining = total
    for _ in range(5):
        remaining -= round(0.1 * remaining)
    assert magnitude.sparsity_of(masks) == 1 - remaining / total


def _ctx(model, accuracies):
    """A context whose evaluate() returns the next scripted ID accuracy."""
    from runners.training.evaluate import EvalResult

    it = iter(accuracies)

    def evaluate():
        return {"id": EvalResult("id", "id", int(next(it) * 100), 100)}

    return PruneContext(
        model=model,
        evaluate=evaluate,
        baseline={"id": EvalResult("id", "id", 80, 100)},
        progress=Progress(enabled=False),
        seed=0,
    )


def test_iterative_stops_at_first_step_below_keep_ratio():
    steps = list(magnitude.run(_ctx(tiny_model(), [0.79, 0.75, 0.70, 0.9]), magnitude.Params(rate=0.2, keep_ratio=0.9)))
    assert [s.passed for s in steps] == [True, True, False]  # 0.70 < 0.9 * 0.80 stops; 4th never runs
    assert steps[-1].step == 3 and steps[1].sparsity > steps[0].sparsity


def test_one_shot_strengths_remove_exact_fractions_of_the_finetuned_weights():
    model = tiny_model()
    original = {n: w.detach().clone() for n, w in prunable_weights(model).items()}
    steps = list(
        magnitude.run(_ctx(model, [0.8, 0.8, 0.1]), magnitude.Params(strengths=[0.5, 0.2, 0.9], keep_ratio=0.5))
    )
    assert [s.strength for s in steps] == [0.2, 0.5, 0.9]
    total = sum(w.numel() for w in original.values())
    flat = torch.cat([w.abs().reshape(-1) for w in original.values()])
    for s in steps:
        assert s.sparsity == round(s.strength * total) / total
        # one-shot from the fine-tuned weights: the same as a single global L1 step at that strength
        peer = tiny_model()
        expected = torch_prune_masks(peer, s.strength, 1)
        assert all(torch.equal(s.weight_masks[n], expected[n]) for n in expected)
    kept = torch.cat([m.reshape(-1) for m in steps[-1].weight_masks.values()])
    assert flat[~kept].max() <= flat[kept].min()
    assert [s.passed for s in steps] == [True, True, False]


def test_mask_files_round_trip_bit_packed(tmp_path):
    weights = prunable_weights(tiny_model())
    masks = {n: torch.rand_like(w) > 0.3 for n, w in weights.items()}
    path = tmp_path / "m.safetensors"
    save_weight_masks(path, masks, {"step": "3"})
    back = load_weight_masks(path)
    assert back.keys() == masks.keys() and all(torch.equal(back[n], masks[n]) for n in masks)
    assert path.stat().st_size < sum(m.numel() for m in masks.values()) / 3  # packed bits (+ header), not a byte each
