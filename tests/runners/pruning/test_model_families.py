"""Every supported architecture, built from a config (no download): BERT, RoBERTa, DistilBERT, ELECTRA and
ALBERT, each as the built-in tiny-* model shrunk to 2 layers, hidden 32, 4 heads.

Gates are checked against an independent reference: the same model with the unit's weights zeroed by hand.
ALBERT's depths share one layer, so its reference is an unshared copy (one layer group per depth, the
same weights), where one depth's weights can be edited alone. Export, CKA, unit means, weight masks, one
step of every pruning method, the fine-tune/build path and the validate/run checks run on each."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer, GPT2Config

from registry.methods import METHODS
from registry.models import (
    ARCHITECTURES,
    BUILTIN_MODELS,
    GATEABLE_MODEL_TYPES,
    KNOWN_HUB_MODELS,
    check_model_name,
    model_type_of,
)
from registry.schema import FinetuneSpec, ModelSpec
from runners.cka.engine import BaselineFeatures, CKAAccumulator, capture
from runners.data.examples import Batch, batches, encode
from runners.data.synthetic_nli import SyntheticNLIParams, generate, vocabulary
from runners.pruning.export import build_subnetwork, export_subnetwork
from runners.pruning.gates import (
    Gates,
    UnsupportedArchitecture,
    apply_weight_masks,
    attach,
    compute_unit_means,
    encoder_view,
    geometry,
    prunable_weights,
    sparsity,
)
from runners.pruning.recipe import PruneContext
from runners.pruning.recipes import RECIPES
from runners.tracking.progress import Progress
from runners.training.evaluate import EncodedSet, evaluate
from runners.training.finetune import finetune
from runners.training.models import (
    builtin_model,
    check_architecture,
    load_pretrained,
    load_tokenizer,
)

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
ARCHS = {  # model type -> (built-in, overrides giving 2 layers, hidden 32, 4 heads, MLP 64)
    "bert": ("tiny-bert", SMALL),
    "roberta": ("tiny-roberta", SMALL),
    "distilbert": ("tiny-distilbert", dict(dim=32, n_layers=2, n_heads=4, hidden_dim=64)),
    "electra": ("tiny-electra", dict(SMALL, embedding_size=16)),
    "albert": ("tiny-albert", dict(SMALL, embedding_size=16)),
}
NAMES = list(ARCHS)
VOCAB = 100
INIT = 0.2  # larger than the default so logits are O(1) and ablations visibly move them


def test_every_gateable_architecture_is_covered_here():
    assert sorted(NAMES) == sorted(GATEABLE_MODEL_TYPES) == ARCHITECTURES.names()
    assert {BUILTIN_MODELS.get(name).model_type for name, _ in ARCHS.values()} == set(NAMES)


def spec(arch: str, **extra) -> ModelSpec:
    name, overrides = ARCHS[arch]
    return ModelSpec(name=name, config={**overrides, **extra})


def make(arch: str, dtype=torch.float32, seed: int = 0, num_labels: int = 3):
    torch.manual_seed(seed)
    name, overrides = ARCHS[arch]
    return builtin_model(name, {**overrides, "initializer_range": INIT}, num_labels, VOCAB).to(dtype).eval()


def make_batch(model, lengths=(9, 6, 4), seed=1) -> Batch:
    g = torch.Generator().manual_seed(seed)
    pad = model.config.pad_token_id or 0
    ids = torch.full((len(lengths), max(lengths)), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for j, n in enumerate(lengths):
        ids[j, :n] = torch.randint(5, VOCAB, (n,), generator=g)
        mask[j, :n] = 1
    tt = torch.zeros_like(ids) if ARCHITECTURES.get(model.config.model_type).token_types else None
    return Batch(ids, mask, tt, torch.randint(0, 3, (len(lengths),), generator=g), [None] * len(lengths))


def logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch.model_inputs()).logits


def unshared(model):
    """The same function with one module per depth: a deep copy, or for ALBERT one layer group per depth
    holding a copy of the shared layer's weights."""
    if model.config.model_type != "albert":
        return copy.deepcopy(model)
    n = model.config.num_hidden_layers
    config = copy.deepcopy(model.config)
    config.num_hidden_groups = n
    out = type(model)(config).to(next(model.parameters()).dtype).eval()
    groups = model.config.num_hidden_groups
    state = {}
    for k, v in model.state_dict().items():
        if ".albert_layer_groups." not in k:
            state[k] = v
            continue
        head, rest = k.split(".albert_layer_groups.")
        g, tail = rest.split(".", 1)
        for depth in range(n):
            if int(depth / (n / groups)) == int(g):
                state[f"{head}.albert_layer_groups.{depth}.{tail}"] = v
    out.load_state_dict(state, strict=True)
    return out


# ---- the catalogue: config keys fit each config class -------------------------------------------------


@pytest.mark.parametrize("arch", NAMES)
def test_config_keys_are_fields_of_the_architectures_config_class(arch):
    a = ARCHITECTURES.get(arch)
    config = getattr(transformers, a.config_class)()
    assert config.model_type == arch
    missing = [k for k in (*a.config_keys, a.hidden_key, a.heads_key, a.layers_key) if not hasattr(config, k)]
    assert missing == []
    assert check_model_name(spec(arch), ".") == []
    for k, v in BUILTIN_MODELS.get(ARCHS[arch][0]).config.items():  # the built-in's own config is applied
        assert getattr(make(arch).config, k) == (v if k not in ARCHS[arch][1] else ARCHS[arch][1][k])


def test_config_keys_are_checked_per_architecture():
    ((key, msg),) = check_model_name(ModelSpec(name="tiny-distilbert", config={"num_hidden_layers": 2}), ".")
    assert key == "model.config.num_hidden_layers" and "DistilBertConfig" in msg and "n_layers" in msg
    ((key, msg),) = check_model_name(ModelSpec(name="tiny-distilbert", config={"dim": 30, "n_heads": 4}), ".")
    assert key == "model.config" and "dim 30 is not a multiple of n_heads 4" in msg
    assert check_model_name(ModelSpec(name="tiny-albert", config={"num_hidden_groups": 2}), ".") == []
    ((key, msg),) = check_model_name(ModelSpec(name="tiny-albert", config={"num_hidden_groups": 5}), ".")
    assert key == "model.config.num_hidden_groups"


# ---- gates ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", NAMES)
def test_fully_kept_gates_give_identical_logits(arch):
    model = make(arch)
    batch = make_batch(model)
    ref = logits(model, batch)
    for requires_grad in (False, True):  # skipped layers, and hooks that really multiply by 1
        with attach(model, Gates.ones(model, neurons=True, requires_grad=requires_grad)):
            assert torch.equal(logits(model, batch), ref)
    g = geometry(model)
    assert (g.layers, g.heads, g.head_dim, g.hidden, g.intermediate) == (2, 4, 8, 32, 64)


def _zeroed(model, depth: int, kind: str, index: int | list[int] = 0):
    """The unshared copy with one unit's weights zeroed by hand at one depth (the gate's ground truth)."""
    ref = unshared(model)
    view = encoder_view(ref)
    d = geometry(ref).head_dim
    with torch.no_grad():
        if kind == "head":
            view.part(depth, "attn_out").weight[:, index * d : (index + 1) * d] = 0
        elif kind == "mlp":
            view.part(depth, "mlp_out").weight.zero_()
            view.part(depth, "mlp_out").bias.zero_()
        else:
            view.part(depth, "mlp_out").weight[:, index] = 0
    return ref


@pytest.mark.parametrize("arch", NAMES)
@pytest.mark.parametrize("depth", [0, 1])
def test_zero_ablation_of_each_unit_kind_at_each_depth_equals_zeroing_its_weights(arch, depth):
    model = make(arch)
    batch = make_batch(model)
    full = logits(model, batch)
    assert torch.allclose(logits(unshared(model), batch), full, atol=1e-6)  # the reference is the same function
    for kind, index in (("head", 2), ("mlp", 0), ("neuron", [3, 17, 40])):
        gates = Gates.ones(model, neurons=True)
        if kind == "head":
            gates.head[depth, index] = 0
        elif kind == "mlp":
            gates.mlp[depth] = 0
        else:
            gates.neuron[depth, index] = 0
        with attach(model, gates):
            gated = logits(model, batch)
        assert torch.allclose(gated, logits(_zeroed(model, depth, kind, index), batch), atol=1e-5), kind
        assert not torch.allclose(gated, full, atol=1e-4), kind
    # the other depth is untouched: gating depth 0 and depth 1 are different subnetworks
    a, b = Gates.ones(model), Gates.ones(model)
    a.head[0, 1], b.head[1, 1] = 0, 0
    with attach(model, a):
        la = logits(model, make_batch(model))
    with attach(model, b):
        lb = logits(model, make_batch(model))
    assert not torch.allclose(la, lb, atol=1e-4)


@pytest.mark.parametrize("arch", NAMES)
def test_unit_means_and_mean_ablation_are_per_depth(arch):
    model = make(arch)
    ref = unshared(model)
    data = [make_batch(model, seed=s) for s in range(3)]
    means, ref_means = compute_unit_means(model, data), compute_unit_means(ref, data)
    assert means.tokens == 3 * (9 + 6 + 4)
    for kind in ("head", "mlp", "neuron"):
        assert torch.allclose(getattr(means, kind), getattr(ref_means, kind), atol=1e-6)
        assert not torch.allclose(getattr(means, kind)[0], getattr(means, kind)[1], atol=1e-3)  # depths differ
    gates = Gates.ones(model, neurons=True, ablation="mean", means=means)
    gates.head[1, [0, 3]] = 0
    gates.mlp[0] = 0
    gates.neuron[1, :20] = 0
    batch = make_batch(model, seed=7)
    with attach(model, gates):
        gated = logits(model, batch)
    with attach(ref, Gates(gates.head, gates.mlp, gates.neuron, "mean", ref_means)):
        assert torch.allclose(gated, logits(ref, batch), atol=1e-5)


# ---- sparsity, weight masks ---------------------------------------------------------------------------


@pytest.mark.parametrize("arch", NAMES)
def test_weight_masks_prune_real_parameters(arch):
    model = make(arch)
    weights = prunable_weights(model)
    shared = arch == "albert"
    assert len(weights) == (6 if shared else 12)  # Q, K, V, attention output, MLP in, MLP out per layer module
    assert all(p.ndim == 2 for p in weights.values())
    assert not any("embedding" in n or "classifier" in n for n in weights)
    g = torch.Generator().manual_seed(0)
    masks = {n: torch.rand(p.shape, generator=g) > 0.4 for n, p in weights.items()}
    ref = unshared(model)
    apply_weight_masks(model, masks)
    assert all(bool((weights[n][~m] == 0).all()) for n, m in masks.items())
    # a masked shared weight is gone at every depth: the unshared copy with the mask at each depth agrees
    with torch.no_grad():
        view, ref_view = encoder_view(model), encoder_view(ref)
        names = {id(p): n for n, p in model.named_parameters()}
        for depth in range(2):
            for part in ("query", "key", "value", "attn_out", "mlp_in", "mlp_out"):
                mask = masks[names[id(view.part(depth, part).weight)]]
                ref_view.part(depth, part).weight.mul_(mask)
    batch = make_batch(model)
    assert torch.allclose(logits(model, batch), logits(ref, batch), atol=1e-5)


def test_sparsity_counts_each_depths_use_of_shared_weights():
    """ALBERT's sparsity is per depth (the compute removed), so it reads like an unshared model's."""
    albert, bert = make("albert"), make("bert")
    assert geometry(albert) == geometry(bert)
    for head, mlp in (([(0, 1)], []), ([(0, 1), (1, 1), (1, 3)], [1])):
        figures = []
        for model in (albert, bert):
            gates = Gates.ones(model)
            for layer, h in head:
                gates.head[layer, h] = 0
            gates.mlp[mlp] = 0
            figures.append(sparsity(model, gates))
        assert figures[0] == figures[1] and figures[0]["params"] > 0
        assert figures[0]["heads_pruned"] == len(head) and figures[0]["mlps_pruned"] == len(mlp)


# ---- export --------------------------------------------------------------------------------------------


def _structured_gates(model, means=None):
    gates = Gates.ones(model, neurons=True, ablation="mean" if means is not None else "zero", means=means)
    gates.head[0, :] = 0  # a layer with no head left
    gates.head[1, [1, 2]] = 0
    gates.mlp[1] = 0
    gates.neuron[0, ::3] = 0
    return gates


@pytest.mark.parametrize("arch", [a for a in NAMES if ARCHITECTURES.get(a).export])
@pytest.mark.parametrize("ablation", ["zero", "mean"])
def test_export_removes_units_and_keeps_the_gated_logits(arch, ablation, tmp_path):
    model = make(arch)
    batch = make_batch(model)
    means = compute_unit_means(model, [make_batch(model, seed=s) for s in range(2)]) if ablation == "mean" else None
    gates = _structured_gates(model, means)
    with attach(model, gates):
        gated = logits(model, batch)
    info = export_subnetwork(model, gates, tmp_path / "subnet")
    assert info.heads_kept == 2 and info.mlps_kept == 1
    assert info.params_exported < info.params_full
    assert (logits(info.model, batch) - gated).abs().max() < 1e-5
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "subnet").eval()
    assert reloaded.config.model_type == f"subnet_{arch}"
    assert (logits(reloaded, batch) - gated).abs().max() < 1e-5
    assert (logits(build_subnetwork(model, Gates.ones(model)), batch) - logits(model, batch)).abs().max() == 0


def test_albert_is_not_exported_and_says_why():
    model = make("albert")
    with pytest.raises(UnsupportedArchitecture, match=r"'albert'.*shares one layer.*export supports bert, roberta"):
        build_subnetwork(model, Gates.ones(model))


# ---- CKA -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", NAMES)
def test_cka_capture_and_a_model_compared_with_itself(arch):
    model = make(arch)
    data = [make_batch(model, lengths=(9, 6, 4, 8, 5), seed=s) for s in range(3)]
    for representation in ("layer_output", "attention_output"):
        with torch.no_grad(), capture(model, representation, "tokens") as cap:
            feats = []
            for b in data:
                out = model(**b.model_inputs(), output_hidden_states=True)
                feats.append(cap.pop())
                keep = b.attention_mask.bool()
                if representation == "layer_output":  # the captured layers are HF's hidden states
                    assert [torch.equal(h[keep], f) for h, f in zip(out.hidden_states, feats[-1].layers)] == [True] * 3
        acc = CKAAccumulator(BaselineFeatures.from_batches(feats))
        for i, f in enumerate(feats):
            acc.update(i, f)
        matrix = acc.result().matrix
        assert matrix.shape == (3, 3)
        assert abs(matrix.diagonal() - 1).max() < 1e-6
        assert (matrix[0, 1:] < 0.999).all()  # layers differ from the embeddings
    base = BaselineFeatures.from_batches(_pooled(model, data))
    pruned = Gates.ones(model)
    pruned.head[1, :] = 0
    pruned.mlp[1] = 0
    acc = CKAAccumulator(base)
    with torch.no_grad(), attach(model, pruned), capture(model, "layer_output", "mean") as cap:
        for i, b in enumerate(data):
            model(**b.model_inputs())
            acc.update(i, cap.pop())
    diag = acc.result().matrix.diagonal()
    assert abs(diag[:2] - 1).max() < 1e-6 and diag[2] < 0.999  # only the gated layer's representation moved


def _pooled(model, data) -> list:
    with torch.no_grad(), capture(model, "layer_output", "mean") as cap:
        out = []
        for b in data:
            model(**b.model_inputs())
            out.append(cap.pop())
    return out


# ---- one step of every pruning method -----------------------------------------------------------------

QUICK = {
    "magnitude": dict(rate=0.3, max_steps=1, keep_ratio=0.0),
    "importance": dict(max_steps=1, keep_ratio=0.0, scoring_examples=16, batch_size=16),
    "attribution": dict(strengths=[0.5], keep_ratio=0.0, scoring_examples=16, batch_size=16),
    "l0": dict(targets=[0.5], keep_ratio=0.0, schedule_scale=0.001, batch_size=16, ablation="mean"),
}


@pytest.fixture(scope="module")
def task():
    params = SyntheticNLIParams(n_train=32, n_id_eval=24, n_ood_per_subcase=2)
    return generate(params, 0), vocabulary(params)


@pytest.mark.parametrize("method", METHODS.names())
@pytest.mark.parametrize("arch", NAMES)
def test_one_step_of_every_method(arch, method, task):
    data, words = task
    tok = load_tokenizer(spec(arch), ".", words)
    model = load_pretrained(spec(arch, initializer_range=INIT), ".", data.num_labels, len(tok), 0).eval()
    pad = tok.pad_token_id
    sets = [EncodedSet.build(tok, s, 32) for s in data.eval_sets]
    rows = encode(tok, data.train, 32)
    assert ("token_type_ids" in rows[0]) == ARCHITECTURES.get(arch).token_types

    def evaluate_all():
        return {s.eval_set.name: evaluate(model, s, 32, pad) for s in sets}

    def train_batches(n_examples=None, batch_size=32, shuffle=False, epoch=0):
        use = rows[:n_examples] if n_examples else rows
        order = torch.randperm(len(use), generator=torch.Generator().manual_seed(epoch)).tolist() if shuffle else None
        return batches(use, batch_size, pad, order)

    means = {}
    ctx = PruneContext(
        model=model,
        evaluate=evaluate_all,
        baseline=evaluate_all(),
        progress=Progress(enabled=False),
        seed=0,
        train_batches=train_batches,
        unit_means=lambda: means.setdefault("m", compute_unit_means(model, train_batches(32, 16))),
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    recipe = RECIPES.get(method)
    step = next(iter(recipe.run(ctx, recipe.params.model_validate(QUICK[method]))))
    assert step.step == 1 and 0.0 < step.sparsity < 1.0
    if step.gates is not None:
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        assert step.sparsity == pytest.approx(sparsity(model, step.gates)["params"])
        with attach(model, step.gates):
            again = evaluate_all()
    else:
        weights = prunable_weights(model)
        assert set(step.weight_masks) == set(weights)
        assert all(bool((weights[n][~m] == 0).all()) for n, m in step.weight_masks.items())
        again = evaluate_all()
    assert {k: v.correct for k, v in again.items()} == {k: v.correct for k, v in step.results.items()}


# ---- the fine-tune / build path ------------------------------------------------------------------------


@pytest.mark.parametrize("arch", NAMES)
def test_builtin_builds_fine_tunes_saves_and_reloads(arch, task, tmp_path):
    data, words = task
    tok = load_tokenizer(spec(arch), ".", words)
    model = load_pretrained(spec(arch), ".", data.num_labels, len(tok), 3)
    again = load_pretrained(spec(arch), ".", data.num_labels, len(tok), 3)
    assert model.config.model_type == arch and type(model).__name__ == ARCHITECTURES.get(arch).model_class
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    rows = encode(tok, data.train, 32)
    history = finetune(
        model, rows, FinetuneSpec(epochs=1.0, lr=1e-3, batch_size=16), 0, tok.pad_token_id, Progress(enabled=False)
    )
    assert history.steps == 2 and all(torch.isfinite(torch.tensor(v)) for _, v in history.loss)
    assert not all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    model.eval().save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    s = EncodedSet.build(tok2, data.id_eval, 32)
    assert ("token_type_ids" in s.rows[0]) == ARCHITECTURES.get(arch).token_types
    batch = next(s.batches(8, tok2.pad_token_id))
    assert torch.equal(logits(reloaded, batch), logits(model, batch))
    assert evaluate(reloaded, s, 8, tok2.pad_token_id).correct == evaluate(model, s, 8, tok.pad_token_id).correct


# ---- validate and run: what is supported, said up front -------------------------------------------------


def _model_dir(tmp_path, model_type: str | None, name: str = "m"):
    d = tmp_path / name
    d.mkdir()
    if model_type == "gpt2":
        GPT2Config(n_layer=1, n_embd=16, n_head=2).save_pretrained(d)  # a real config.json, no weights
    elif model_type is not None:
        (d / "config.json").write_text(json.dumps({"model_type": model_type}))
    return d


def test_validate_names_what_the_gates_support(tmp_path):
    gpt2 = _model_dir(tmp_path, "gpt2")
    ((key, msg),) = check_model_name(ModelSpec(name=str(gpt2)), ".")
    assert key == "model.name" and "'gpt2'" in msg and "bert, roberta, distilbert, electra, albert" in msg
    ((key, msg),) = check_model_name(ModelSpec(name="m"), str(tmp_path))  # relative to experiments.toml
    assert "'gpt2'" in msg
    ((key, msg),) = check_model_name(ModelSpec(name=str(_model_dir(tmp_path, None, "empty"))), ".")
    assert "no config.json" in msg
    albert = _model_dir(tmp_path, "albert", "albert")
    assert check_model_name(ModelSpec(name=str(albert)), ".") == []
    ((key, msg),) = check_model_name(ModelSpec(name=str(albert)), ".", export=True)
    assert key == "prune.export" and "export supports bert, roberta, distilbert, electra" in msg


def test_known_hub_encoders_are_recognised_without_a_download():
    for name, model_type in (
        ("bert-base-uncased", "bert"),
        ("roberta-base", "roberta"),
        ("distilbert-base-uncased", "distilbert"),
        ("google/electra-base-discriminator", "electra"),
        ("albert-base-v2", "albert"),
    ):
        assert name in KNOWN_HUB_MODELS
        assert model_type_of(ModelSpec(name=name), ".") == model_type
        assert check_model_name(ModelSpec(name=name), ".") == []
        assert check_architecture(ModelSpec(name=name), ".") == model_type  # no config fetched: none reachable here
    assert [k for k, _ in check_model_name(ModelSpec(name="albert-base-v2"), ".", export=True)] == ["prune.export"]
    assert model_type_of(ModelSpec(name="someone/some-encoder"), ".") is None
    assert check_model_name(ModelSpec(name="someone/some-encoder"), ".") == []  # any other hub id, as before


def test_run_time_check_comes_before_any_weights(tmp_path, monkeypatch):
    gpt2 = _model_dir(tmp_path, "gpt2")
    with pytest.raises(UnsupportedArchitecture, match="supported model types: bert, roberta"):
        load_pretrained(ModelSpec(name=str(gpt2)), ".", 2, 100, 0)  # the directory has no weights to load
    with pytest.raises(UnsupportedArchitecture, match="cannot be exported"):
        check_architecture(ModelSpec(name=str(_model_dir(tmp_path, "albert", "a"))), ".", export=True)
    # a hub id outside the catalogue: its config (only) is read
    import runners.training.models as models

    class FakeAutoConfig:
        @staticmethod
        def from_pretrained(name, revision=None):
            return GPT2Config() if name == "someone/gpt" else transformers.DistilBertConfig()

    monkeypatch.setattr(models, "AutoConfig", FakeAutoConfig)
    with pytest.raises(UnsupportedArchitecture, match=r"'someone/gpt' is model type 'gpt2'"):
        check_architecture(ModelSpec(name="someone/gpt"), ".")
    assert check_architecture(ModelSpec(name="someone/distil"), ".") == "distilbert"


def test_validate_reports_an_unsupported_local_model_with_its_experiment(tmp_path, write_toml):
    from registry.loader import ConfigError, load_runs
    from tests.conftest import tiny_toml

    _model_dir(tmp_path, "gpt2", "gpt")
    path = write_toml(tiny_toml().replace('name = "micro-bert"', 'name = "gpt"'))
    with pytest.raises(ConfigError) as e:
        load_runs(path)
    (p,) = [p for p in e.value.problems if p.key == "model.name"]
    # the model is named in [defaults.model]: reported once, there, for every experiment that inherits it
    assert p.in_defaults and p.experiment is None and "'gpt2'" in p.message and "supported model types" in p.message


def test_known_minilm_entry_matches_the_shared_copy(minilm):
    cfg = json.loads((minilm / "config.json").read_text())
    entry = KNOWN_HUB_MODELS.get("sentence-transformers/all-MiniLM-L6-v2")
    assert (entry.model_type, entry.layers, entry.heads, entry.hidden) == (
        cfg["model_type"],
        cfg["num_hidden_layers"],
        cfg["num_attention_heads"],
        cfg["hidden_size"],
    )
    assert check_architecture(ModelSpec(name=str(minilm)), ".") == "bert"


# ---- through `subnets run`: the cache, evaluation, CKA and export of a real run -----------------------


def _arch_toml(arch: str, prune: str) -> str:
    from tests.conftest import tiny_toml

    name, overrides = ARCHS[arch]
    config = ", ".join(f"{k} = {v}" for k, v in overrides.items())
    text = tiny_toml().replace('name = "micro-bert"', f'name = "{name}"\nconfig = {{ {config} }}')
    text = text.replace('method = "magnitude"\nrate = 0.3\nkeep_ratio = 0.0\nmax_steps = 3', prune)
    return text + "\n[experiment.cka]\nexamples = 32\n"


def test_a_distilbert_run_prunes_exports_and_compares_layers(write_toml, tmp_path):
    import pyarrow.parquet as pq

    from tests.helpers import run_cli

    prune = 'method = "importance"\nkeep_ratio = 0.0\nmax_steps = 1\nscoring_examples = 32\nexport = true'
    store, run, art = run_cli(write_toml(_arch_toml("distilbert", prune)), tmp_path / "s")
    m = store.client.get_run(run.info.run_id).data.metrics
    assert m["export.max_logit_diff"] < 1e-4 and m["export.params_exported"] < m["export.params_full"]
    exported = AutoModelForSequenceClassification.from_pretrained(art / "export")
    assert exported.config.model_type == "subnet_distilbert"
    cka = pq.read_table(art / "tables" / "cka.parquet").to_pylist()
    assert len([r for r in cka if r["variant"] == "pruned" and r["step"] == 1]) == 3 * 3  # embeddings + 2 layers
    units = pq.read_table(art / "tables" / "units.parquet").to_pylist()
    assert sum(1 for r in units if r["step"] == 1 and r["unit_kind"] == "head" and not r["kept"]) == 1


def test_an_albert_run_gates_per_depth_and_export_is_refused_up_front(write_toml, tmp_path):
    from typer.testing import CliRunner

    from registry.cli import app
    from tests.helpers import run_cli

    prune = 'method = "importance"\nkeep_ratio = 0.0\nmax_steps = 2\nscoring_examples = 32'
    store, run, art = run_cli(write_toml(_arch_toml("albert", prune)), tmp_path / "s")
    m = store.client.get_run(run.info.run_id).data.metrics
    assert 0 < m["sparsity"] < 1 and "cka.layer_2" in m
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--file",
            str(write_toml(_arch_toml("albert", prune + "\nexport = true"), name="export.toml")),
            "--store",
            str(tmp_path / "t"),
            "--quiet",
        ],
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "prune.export" in result.output and "export supports bert, roberta, distilbert, electra" in result.output
    assert not (tmp_path / "t").exists()


def test_a_shared_layer_run_outside_its_encoder_is_an_error_not_a_wrong_depth():
    model = make("albert")
    view = encoder_view(model)
    with attach(model, Gates.ones(model, requires_grad=True)):
        with pytest.raises(RuntimeError, match="depth -1 of 2"):
            view.layers[0](torch.zeros(1, 3, 32))
        logits(model, make_batch(model))  # inside a forward pass it works
