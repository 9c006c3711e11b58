"""Exporting a structured subnetwork as a physically smaller model (tiny BERT / RoBERTa)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    GPT2Config,
    GPT2Model,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from runners.data.examples import Batch
from runners.data.tokenizer import build_word_tokenizer
from runners.pruning.export import (
    SubnetBertForSequenceClassification,
    SubnetRobertaForSequenceClassification,
    build_subnetwork,
    compare_latency,
    count_params,
    export_subnetwork,
    measure_latency,
)
from runners.pruning.gates import (
    Gates,
    UnsupportedArchitecture,
    attach,
    compute_unit_means,
)
from runners.pruning.units import geometry, head_params, mlp_params

TINY = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    intermediate_size=64,
    initializer_range=0.2,
    num_labels=3,
)
ARCHS = ["bert", "roberta"]
SUBNET = {"bert": SubnetBertForSequenceClassification, "roberta": SubnetRobertaForSequenceClassification}


def make_model(arch: str):
    torch.manual_seed(0)
    if arch == "bert":
        return BertForSequenceClassification(BertConfig(**TINY)).eval()
    cfg = RobertaConfig(**TINY, max_position_embeddings=66, pad_token_id=1)
    return RobertaForSequenceClassification(cfg).eval()


def make_batch(model, lengths=(9, 6, 4), seed=1) -> Batch:
    g = torch.Generator().manual_seed(seed)
    pad = model.config.pad_token_id
    ids = torch.full((len(lengths), max(lengths)), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for j, n in enumerate(lengths):
        ids[j, :n] = torch.randint(3, 100, (n,), generator=g)
        mask[j, :n] = 1
    tt = torch.zeros_like(ids) if model.config.model_type == "bert" else None
    return Batch(ids, mask, tt, torch.zeros(len(lengths), dtype=torch.long), [None] * len(lengths))


def logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch.model_inputs()).logits


def gated_logits(model, gates, batch) -> torch.Tensor:
    with attach(model, gates):
        return logits(model, batch)


def pruned_gates(model, ablation="zero") -> Gates:
    """Some heads of layers 0 and 2, every head of layer 1, and the MLP of layer 2."""
    means = compute_unit_means(model, [make_batch(model, seed=s) for s in (2, 3)]) if ablation == "mean" else None
    gates = Gates.ones(model, ablation=ablation, means=means)
    gates.head[0, [1, 3]] = 0
    gates.head[1, :] = 0
    gates.head[2, 0] = 0
    gates.mlp[2] = 0
    return gates


@pytest.mark.parametrize("ablation", ["zero", "mean"])
@pytest.mark.parametrize("arch", ARCHS)
def test_exported_logits_equal_gated_logits(arch, ablation):
    model = make_model(arch)
    batch = make_batch(model)
    gates = pruned_gates(model, ablation)
    ref = gated_logits(model, gates, batch)
    assert not torch.allclose(ref, logits(model, batch), atol=1e-3)  # the pruning does change the output
    small = build_subnetwork(model, gates)
    layers = small.base_model.encoder.layer
    assert layers[0].attention.self.query.out_features == 16
    assert layers[0].attention.output.dense.in_features == 16
    assert layers[0].attention.self.num_attention_heads == 2
    assert not hasattr(layers[1].attention.self, "query")  # no heads left at all
    assert layers[1].attention.output.dense.in_features == 0
    assert layers[2].intermediate.dense.out_features == 0
    assert (layers[2].output.dense.bias is None) == (ablation == "zero")
    assert small.config.subnet_heads == [[0, 2], [], [1, 2, 3]]
    assert small.config.subnet_intermediate == [64, 64, 0]
    out = logits(small, batch)
    assert torch.allclose(out, ref, atol=1e-5), (out - ref).abs().max()


@pytest.mark.parametrize("arch", ARCHS)
def test_mean_ablated_neurons_fold_into_the_output_bias(arch):
    model = make_model(arch)
    batch = make_batch(model)
    means = compute_unit_means(model, [make_batch(model, seed=2)])
    gates = Gates.ones(model, neurons=True, ablation="mean", means=means)
    gates.neuron[0, ::2] = 0
    gates.neuron[1, :] = 0
    gates.head[2, 1] = 0
    ref = gated_logits(model, gates, batch)
    small = build_subnetwork(model, gates)
    assert small.config.subnet_intermediate == [32, 0, 64]
    assert small.config.subnet_mlp_bias == [True, True, True]
    assert torch.allclose(logits(small, batch), ref, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_from_pretrained_round_trip(arch, tmp_path):
    model = make_model(arch)
    batch = make_batch(model)
    gates = pruned_gates(model, "mean")
    tok = build_word_tokenizer(["alpha", "beta"])
    info = export_subnetwork(model, gates, tmp_path / "sub", tokenizer=tok)
    assert info.path == tmp_path / "sub"
    assert (info.path / "model.safetensors").is_file()
    assert (info.path / "tokenizer.json").is_file()
    cfg = json.loads((info.path / "config.json").read_text())
    assert cfg["model_type"] == f"subnet_{arch}"
    assert cfg["subnet_heads"] == [[0, 2], [], [1, 2, 3]]
    exported = logits(info.model, batch)
    direct = SUBNET[arch].from_pretrained(info.path).eval()
    auto = AutoModelForSequenceClassification.from_pretrained(info.path).eval()
    assert type(auto) is SUBNET[arch]
    assert count_params(direct) == count_params(auto) == info.params_exported
    assert torch.equal(logits(direct, batch), exported)
    assert torch.equal(logits(auto, batch), exported)
    assert torch.allclose(exported, gated_logits(model, gates, batch), atol=1e-5)


def test_parameter_count_by_hand():
    model = make_model("bert")  # hidden 32, 4 heads of 8, MLP width 64
    gates = pruned_gates(model)  # 2 + 4 + 1 = 7 heads and 1 MLP pruned
    info = export_subnetwork(model, gates, None)
    # a head: Q, K, V rows 3 * (8*32 + 8) and output columns 32*8
    head = 3 * (8 * 32 + 8) + 32 * 8
    # an MLP: intermediate 64*32 + 64, output 32*64 + 32
    mlp = (64 * 32 + 64) + (32 * 64 + 32)
    assert (head, mlp) == (1048, 4192)
    assert (head, mlp) == (head_params(geometry(model)), mlp_params(geometry(model)))
    assert info.params_full == count_params(model) == 46499
    assert info.params_exported == 46499 - 7 * head - mlp == count_params(info.model)
    assert (info.heads_kept, info.mlps_kept) == (5, 2)
    # mean ablation keeps the pruned MLP's mean as its output bias: 32 parameters more
    mean = export_subnetwork(model, pruned_gates(model, "mean"), None)
    assert mean.params_exported == info.params_exported + 32


@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_count_matches_unit_ownership(arch):
    model = make_model(arch)
    g = geometry(model)
    gates = Gates.ones(model)
    gates.head[0, 0] = gates.head[2, :3] = 0
    gates.mlp[0] = gates.mlp[1] = 0
    info = export_subnetwork(model, gates, None)
    assert info.params_full - info.params_exported == 4 * head_params(g) + 2 * mlp_params(g)


@pytest.mark.parametrize("arch", ARCHS)
def test_all_ones_export_is_the_original_model(arch):
    model = make_model(arch)
    batch = make_batch(model)
    small = build_subnetwork(model, Gates.ones(model))
    full, sub = model.state_dict(), small.state_dict()
    assert full.keys() == sub.keys()
    assert all(torch.equal(full[k], sub[k]) for k in full)
    assert count_params(small) == count_params(model)
    assert torch.equal(logits(small, batch), logits(model, batch))


def test_unsupported_architectures_and_bad_gates():
    gpt2 = GPT2Model(GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100, bos_token_id=0, eos_token_id=0))
    with pytest.raises(UnsupportedArchitecture):
        build_subnetwork(gpt2, Gates(torch.ones(2, 4), torch.ones(2)))
    bare = BertModel(BertConfig(**TINY))  # a supported encoder, but no classifier to export
    with pytest.raises(UnsupportedArchitecture):
        build_subnetwork(bare, Gates.ones(bare))
    model = make_model("bert")
    soft = Gates.ones(model)
    soft.head[0, 0] = 0.3
    with pytest.raises(ValueError, match="binary"):
        build_subnetwork(model, soft)
    with pytest.raises(ValueError, match="means"):
        build_subnetwork(model, Gates.ones(model, ablation="mean"))
    small = build_subnetwork(model, pruned_gates(model))
    with pytest.raises(UnsupportedArchitecture):  # an export is not re-exportable (nor gateable)
        build_subnetwork(small, Gates.ones(model))


def test_latency_helpers():
    model = make_model("bert")
    small = build_subnetwork(model, pruned_gates(model))
    threads = torch.get_num_threads()
    ms = measure_latency(model, (2, 16), reps=3, warmup=1)
    assert ms > 0 and torch.get_num_threads() == threads
    assert measure_latency(model, [make_batch(model)], reps=2, warmup=0) > 0
    cmp = compare_latency(model, small, (2, 16), reps=3, warmup=1)
    assert cmp.full_ms > 0 and cmp.exported_ms > 0
    assert cmp.ratio == pytest.approx(cmp.exported_ms / cmp.full_ms)
    assert cmp.speedup == pytest.approx(1 / cmp.ratio)
