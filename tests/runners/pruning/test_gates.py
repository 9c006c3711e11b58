"""Gates, unit means, sparsity and weight masks on tiny BERT / RoBERTa models (every architecture:
tests/runners/pruning/test_model_families.py)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2Model,
    RobertaConfig,
    RobertaForSequenceClassification,
)
from transformers.pytorch_utils import prune_linear_layer

from runners.data.examples import Batch
from runners.pruning.gates import (
    Gates,
    UnitMeans,
    UnsupportedArchitecture,
    apply_weight_masks,
    attach,
    compute_unit_means,
    geometry,
    prunable_weights,
    record_neurons,
    sparsity,
    unit_rows,
    weight_sparsity,
)

TINY = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
INIT = 0.2  # larger than the 0.02 default so logits are O(1) and ablations visibly move them
ARCHS = ["bert", "roberta"]


def make_model(arch: str, dtype=torch.float32) -> nn.Module:
    torch.manual_seed(0)
    if arch == "bert":
        model = BertForSequenceClassification(BertConfig(**TINY, num_labels=3, initializer_range=INIT))
    else:
        model = RobertaForSequenceClassification(
            RobertaConfig(**TINY, num_labels=3, initializer_range=INIT, max_position_embeddings=66, pad_token_id=1)
        )
    return model.to(dtype).eval()


def pad_id(model) -> int:
    return model.config.pad_token_id or 0


def make_batch(model, lengths=(9, 6, 4), seed=1, extra_pad=0) -> Batch:
    """Random token ids (never the pad id) with right padding; `extra_pad` adds padding columns."""
    g = torch.Generator().manual_seed(seed)
    width = max(lengths) + extra_pad
    ids = torch.full((len(lengths), width), pad_id(model), dtype=torch.long)
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for j, n in enumerate(lengths):
        ids[j, :n] = torch.randint(3, 100, (n,), generator=g)
        mask[j, :n] = 1
    tt = torch.zeros_like(ids) if isinstance(model, BertForSequenceClassification) else None
    labels = torch.randint(0, 3, (len(lengths),), generator=g)
    return Batch(ids, mask, tt, labels, [None] * len(lengths))


def logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch.model_inputs()).logits


def remove_heads(model, heads: dict[int, list[int]]) -> None:
    """Physically remove heads, as HF's `prune_heads` did before transformers 5 removed it:
    drop the heads' rows of Q, K, V and their columns of the attention output dense."""
    layers = model.base_model.encoder.layer
    for li, hs in heads.items():
        att = layers[li].attention
        d, n = att.self.attention_head_size, att.self.num_attention_heads
        keep = torch.tensor([h * d + k for h in range(n) if h not in hs for k in range(d)])
        att.self.query = prune_linear_layer(att.self.query, keep)
        att.self.key = prune_linear_layer(att.self.key, keep)
        att.self.value = prune_linear_layer(att.self.value, keep)
        att.output.dense = prune_linear_layer(att.output.dense, keep, dim=1)
        att.self.num_attention_heads = n - len(hs)
        att.self.all_head_size = d * (n - len(hs))


@pytest.mark.parametrize("arch", ARCHS)
def test_all_ones_identical_and_remove_restores(arch):
    model = make_model(arch)
    batch = make_batch(model)
    plain = logits(model, batch)
    gates = Gates.ones(model, neurons=True)
    with attach(model, gates) as handle:
        assert torch.equal(logits(model, batch), plain)
        gates.head = torch.zeros_like(gates.head)  # swapped in without re-attaching
        changed = logits(model, batch)
    assert not torch.allclose(changed, plain, atol=1e-3)
    assert handle._hooks == []
    assert torch.equal(logits(model, batch), plain)
    # soft all-ones gates that need grad are not skipped, and still multiply by exactly 1
    with attach(model, Gates.ones(model, neurons=True, requires_grad=True)):
        assert torch.equal(logits(model, batch), plain)


def test_prune_heads_is_gone_in_this_transformers():
    # The peer check below uses a manual head removal because of this.
    assert not hasattr(make_model("bert"), "prune_heads")


@pytest.mark.parametrize("arch", ARCHS)
def test_zero_ablating_heads_equals_removing_them(arch):
    model = make_model(arch)
    batch = make_batch(model)
    heads = {0: [1, 3], 1: [2]}
    pruned = copy.deepcopy(model)
    remove_heads(pruned, heads)
    assert pruned.base_model.encoder.layer[0].attention.self.query.out_features == 16
    gates = Gates.ones(model)
    for li, hs in heads.items():
        gates.head[li, hs] = 0
    with attach(model, gates):
        gated = logits(model, batch)
    ref = logits(pruned, batch)
    assert torch.allclose(gated, ref, atol=1e-5)
    assert not torch.allclose(gated, logits(model, batch), atol=1e-3)


@pytest.mark.parametrize("arch", ARCHS)
def test_zero_ablating_mlp_equals_zeroing_its_output_dense(arch):
    model = make_model(arch)
    batch = make_batch(model)
    manual = copy.deepcopy(model)
    dense = manual.base_model.encoder.layer[1].output.dense
    with torch.no_grad():
        dense.weight.zero_()
        dense.bias.zero_()
    gates = Gates.ones(model)
    gates.mlp[1] = 0
    with attach(model, gates):
        gated = logits(model, batch)
    assert torch.allclose(gated, logits(manual, batch), atol=1e-6)
    assert not torch.allclose(gated, logits(model, batch), atol=1e-3)


@pytest.mark.parametrize("arch", ARCHS)
def test_mean_ablation_outputs_the_stored_mean(arch):
    model = make_model(arch)
    means = compute_unit_means(model, [make_batch(model, seed=s) for s in range(3)])
    assert means.tokens == 3 * (9 + 6 + 4)
    gates = Gates.ones(model, neurons=True, ablation="mean", means=means)
    gates.head[1, 2] = 0
    gates.mlp[0] = 0
    gates.neuron[1, [5, 7]] = 0
    gates.mlp[1] = 0.25  # soft: 0.25 * out + 0.75 * mean
    seen = {}
    layers = model.base_model.encoder.layer
    with attach(model, gates):
        # registered after attach's hooks, so they see the gated tensors
        hooks = [
            layers[1].attention.output.dense.register_forward_pre_hook(lambda m, a: seen.update(head=a[0])),
            layers[0].output.dense.register_forward_hook(lambda m, a, o: seen.update(mlp0=o)),
            layers[1].intermediate.register_forward_hook(lambda m, a, o: seen.update(neuron=o)),
        ]
        logits(model, make_batch(model, seed=7))
        for h in hooks:
            h.remove()
    d = geometry(model).head_dim
    assert torch.allclose(seen["head"][..., 2 * d : 3 * d], means.head[1, 2 * d : 3 * d].expand(3, 9, d))
    assert torch.allclose(seen["mlp0"], means.mlp[0].expand(3, 9, 32))
    assert torch.allclose(seen["neuron"][..., [5, 7]], means.neuron[1, [5, 7]].expand(3, 9, 2))
    # kept units are untouched: neuron 6 differs from its mean
    assert not torch.allclose(seen["neuron"][..., 6], means.neuron[1, 6].expand(3, 9))

    raw = {}
    h = layers[1].output.dense.register_forward_hook(lambda m, a, o: raw.update(out=o))
    batch = make_batch(model, seed=7)
    logits(model, batch)  # ungated; below only the layer-1 MLP gate differs
    h.remove()
    with attach(model, Gates.ones(model, ablation="mean", means=means)) as handle:
        handle.gates.mlp[1] = 0.25
        h = layers[1].output.dense.register_forward_hook(lambda m, a, o: raw.update(soft=o))
        logits(model, batch)
        h.remove()
    assert torch.allclose(raw["soft"], 0.25 * raw["out"] + 0.75 * means.mlp[1], atol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_unit_means_exclude_padding(arch, tmp_path):
    model = make_model(arch)
    tight = compute_unit_means(model, [make_batch(model, seed=s) for s in range(2)])
    padded = compute_unit_means(model, [make_batch(model, seed=s, extra_pad=5) for s in range(2)])
    assert tight.tokens == padded.tokens
    for kind in ("head", "mlp", "neuron"):
        assert torch.allclose(getattr(tight, kind), getattr(padded, kind), atol=1e-5)

    # the check is sensitive: a mean over all positions (padding included) differs
    batch = make_batch(model, seed=0, extra_pad=5)
    out = {}
    h = model.base_model.encoder.layer[0].output.dense.register_forward_hook(lambda m, a, o: out.update(o=o))
    logits(model, batch)
    h.remove()
    one = compute_unit_means(model, [batch])
    assert torch.allclose(one.mlp[0], out["o"][batch.attention_mask.bool()].mean(0), atol=1e-5)
    assert not torch.allclose(one.mlp[0], out["o"].mean(dim=(0, 1)), atol=1e-3)

    # cached per model + task as safetensors
    tight.metadata["fingerprint"] = "abc"
    tight.save(tmp_path / "means.safetensors")
    back = UnitMeans.load(tmp_path / "means.safetensors")
    assert back.tokens == tight.tokens and back.metadata == {"fingerprint": "abc"}
    assert all(torch.equal(getattr(back, k), getattr(tight, k)) for k in ("head", "mlp", "neuron"))


def test_head_gate_gradients_match_finite_differences():
    """float64, central differences with eps=1e-6: truncation error ~eps^2 * f''' ~ 1e-12 and
    rounding error ~1e-16 * |loss| / eps ~ 1e-10, so agreement to rtol 1e-6 / atol 1e-8 is a
    strict test (a wrong hook point or a missing factor would be off by O(1))."""
    model = make_model("bert", torch.float64)
    batch = make_batch(model)
    gates = Gates.ones(model, requires_grad=True, dtype=torch.float64)
    with torch.no_grad():
        gates.head.mul_(0.7)  # soft gates, away from the all-ones point
        gates.head[0, 1] = 0.3

    def loss_at(head):
        with attach(model, Gates(head, gates.mlp.detach())):
            return model(**batch.model_inputs(), labels=batch.labels).loss

    with attach(model, gates):
        model(**batch.model_inputs(), labels=batch.labels).loss.backward()
    eps = 1e-6
    for li, h in [(0, 0), (0, 1), (1, 2), (1, 3)]:
        with torch.no_grad():
            up, down = gates.head.detach().clone(), gates.head.detach().clone()
            up[li, h] += eps
            down[li, h] -= eps
            fd = (loss_at(up) - loss_at(down)) / (2 * eps)
        assert abs(fd) > 1e-6  # the check is not vacuous
        assert torch.allclose(gates.head.grad[li, h], fd, rtol=1e-6, atol=1e-8)
    assert gates.mlp.grad is not None and gates.mlp.grad.abs().sum() > 0


def test_neuron_attribution_equals_neuron_gate_gradient():
    model = make_model("bert", torch.float64)
    batch = make_batch(model)
    gates = Gates.ones(model, neurons=True, requires_grad=True, dtype=torch.float64)
    with record_neurons(model) as rec, attach(model, gates):
        model(**batch.model_inputs(), labels=batch.labels).loss.backward()
    attr = rec.attribution(batch.attention_mask)
    assert attr.shape == (2, 64)
    assert torch.allclose(attr, gates.neuron.grad, rtol=1e-9, atol=1e-12)
    assert rec.activations[0].shape == (3, 9, 64)
    assert (rec.attribution(batch.attention_mask, absolute=True) >= attr.abs() - 1e-12).all()


def test_sparsity_matches_hand_counts():
    model = make_model("bert")
    gates = Gates.ones(model, neurons=True)
    gates.head[0, [0, 1]] = 0.2  # below threshold -> pruned
    gates.head[1, 3] = 0.0
    gates.head[1, 0] = 0.6  # above threshold -> kept
    gates.mlp[1] = 0
    gates.neuron[0, :4] = 0  # layer 0 MLP kept: 4 neurons count
    gates.neuron[1, :10] = 0  # inside the pruned MLP: not counted twice
    s = sparsity(model, gates)
    # hidden 32, head_dim 8, intermediate 64
    head = 3 * (8 * 32 + 8) + 32 * 8  # 1048
    mlp = 64 * 32 + 64 + 32 * 64 + 32  # 4192
    neuron = 2 * 32 + 1  # 65
    total = 2 * (4 * head + mlp)  # 16768
    assert s["units"] == pytest.approx(4 / 10)
    assert s["heads"] == pytest.approx(3 / 8)
    assert s["mlps"] == pytest.approx(1 / 2)
    assert s["neurons"] == pytest.approx(14 / 128)
    assert s["params_total"] == total
    assert s["params_pruned"] == 3 * head + mlp + 4 * neuron
    assert s["params"] == pytest.approx((3 * 1048 + 4192 + 4 * 65) / 16768)

    rows = unit_rows(gates, scores={"head": torch.arange(8.0).reshape(2, 4)})
    assert len(rows) == 8 + 2 + 128
    assert rows[0] == dict(layer=0, unit_kind="head", unit_index=0, kept=False, score=0.0)
    assert rows[4] == dict(layer=1, unit_kind="head", unit_index=0, kept=True, score=4.0)
    mlp_rows = [r for r in rows if r["unit_kind"] == "mlp"]
    assert [(r["layer"], r["unit_index"], r["kept"], r["score"]) for r in mlp_rows] == [
        (0, 0, True, None),
        (1, 0, False, None),
    ]


@pytest.mark.parametrize("arch", ARCHS)
def test_weight_masks(arch):
    model = make_model(arch)
    weights = prunable_weights(model)
    assert len(weights) == 2 * 6
    assert all(n.split(".encoder.layer.")[1].endswith(".weight") for n in weights)
    assert not any(k in n for n in weights for k in ("embeddings", "pooler", "classifier", "LayerNorm"))
    suffixes = {n.split(".encoder.layer.1.")[1] for n in weights if ".encoder.layer.1." in n}
    assert suffixes == {
        "attention.self.query.weight",
        "attention.self.key.weight",
        "attention.self.value.weight",
        "attention.output.dense.weight",
        "intermediate.dense.weight",
        "output.dense.weight",
    }
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    g = torch.Generator().manual_seed(0)
    masks = {n: torch.rand(p.shape, generator=g) > 0.3 for n, p in list(weights.items())[:4]}
    apply_weight_masks(model, masks)
    for n, p in model.named_parameters():
        if n in masks:
            assert torch.equal(p[~masks[n]], torch.zeros_like(p[~masks[n]]))
            assert torch.equal(p[masks[n]], before[n][masks[n]])
        else:
            assert torch.equal(p, before[n])
    assert weight_sparsity(model, masks) == pytest.approx(
        sum(int((~m).sum()) for m in masks.values()) / sum(w.numel() for w in weights.values())
    )
    with pytest.raises(KeyError):
        apply_weight_masks(model, {"classifier.weight": torch.ones(1, dtype=torch.bool)})


def test_unsupported_architectures_are_named():
    with pytest.raises(UnsupportedArchitecture, match=r"'gpt2'.*bert, roberta, distilbert, electra, albert"):
        Gates.ones(GPT2Model(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)))
    with pytest.raises(UnsupportedArchitecture, match=r"Linear.*bert, roberta"):
        attach(nn.Linear(2, 2), None)


def test_bad_gate_shapes_and_missing_means_are_rejected():
    model = make_model("bert")
    with pytest.raises(ValueError, match="head gates have shape"):
        attach(model, Gates(torch.ones(3, 4), torch.ones(2)))
    with pytest.raises(ValueError, match="needs gates.means"):
        attach(model, Gates.ones(model, ablation="mean"))
