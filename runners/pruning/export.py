"""Export a structured subnetwork (binary head/MLP gates) as a physically smaller model.

    info = export_subnetwork(model, gates, "out/subnet", tokenizer=tok)
    small = SubnetBertForSequenceClassification.from_pretrained(info.path)
    small = AutoModelForSequenceClassification.from_pretrained(info.path)  # once runners.pruning.export is imported

The exported model's logits equal `with attach(model, gates): model(...)` (up to float rounding).
Pruned heads lose their rows of Q, K, V and their columns of attention.output.dense; a layer
whose heads are all pruned has no self-attention at all. A pruned MLP keeps zero-width
intermediate/output dense layers, so its output is only the output bias: dropped under zero
ablation, the unit's mean under mean ablation. Under mean ablation a pruned head's constant
contribution W_o[:, head] @ mean_head is folded into attention.output.dense.bias, and a pruned
neuron's W_out[:, n] * mean_n into output.dense.bias.

transformers 5 dropped `prune_heads` and per-layer shapes in BertConfig, so the smaller shapes
live in `Subnet*Config` (model types "subnet_bert", "subnet_roberta", "subnet_electra",
"subnet_distilbert"): `subnet_heads` (kept original head indices per layer), `subnet_intermediate`
(MLP width per layer) and `subnet_mlp_bias` (whether the MLP output dense keeps a bias). Importing
this module registers them with AutoConfig / AutoModelForSequenceClassification (no
trust_remote_code; code must be importable). An exported model is a leaf: the gate API (and so
export) rejects its model type. DistilBERT names its modules differently (q_lin ... out_lin, ffn.lin1,
ffn.lin2); the same rules apply at the same places (runners.pruning.units.LAYOUTS).

ALBERT is not exported: its depths run one shared layer, and per-depth gates keep different units of
those shared weights, so no smaller ALBERT computes the gated model (unsharing the layer would
multiply its parameters by the depth). Its gates, weight masks and CKA work like everyone else's.
"""

from __future__ import annotations

import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from registry.models import ARCHITECTURES, EXPORTABLE_MODEL_TYPES
from runners.pruning.gates import Gates, UnsupportedArchitecture, attach, encoder_view, geometry
from runners.pruning.units import _get

__all__ = [
    "ExportInfo",
    "LatencyComparison",
    "SubnetBertConfig",
    "SubnetBertForSequenceClassification",
    "SubnetDistilBertConfig",
    "SubnetDistilBertForSequenceClassification",
    "SubnetElectraConfig",
    "SubnetElectraForSequenceClassification",
    "SubnetRobertaConfig",
    "SubnetRobertaForSequenceClassification",
    "build_subnetwork",
    "compare_latency",
    "count_params",
    "export_subnetwork",
    "measure_latency",
]


class _NoHeads(nn.Module):
    """Self-attention of a layer with every head pruned: a zero-width context, so
    attention.output.dense (0 input features) returns just its bias."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states.new_zeros(*hidden_states.shape[:-1], 0), None


class _NoHeadsProjected(nn.Module):
    """DistilBERT's self-attention (which holds its output projection) with every head pruned: the
    projection of a zero-width context, i.e. out_lin's bias."""

    def __init__(self, out_lin: nn.Linear):
        super().__init__()
        self.out_lin = out_lin

    def forward(self, hidden_states, *args, **kwargs):
        return self.out_lin(hidden_states.new_zeros(*hidden_states.shape[:-1], 0)), None


def _linear(n_in: int, n_out: int, bias: bool = True) -> nn.Linear:
    with warnings.catch_warnings():  # torch warns that initialising a zero-width weight is a no-op
        warnings.simplefilter("ignore", UserWarning)
        return nn.Linear(n_in, n_out, bias=bias)


def _shrink(model: nn.Module, config) -> None:
    """Replace the full-size layer modules built by the parent __init__ with the subnet's shapes."""
    if config.subnet_heads is None:
        return
    hidden = config.hidden_size
    view = encoder_view(model, as_type=SUBNET_MODEL_TYPES[config.model_type])
    lay = view.layout

    def put(layer, path: str, module: nn.Module) -> None:
        owner, _, name = path.rpartition(".")
        setattr(_get(layer, owner) if owner else layer, name, module)

    for i, layer in enumerate(view.layers):
        owner = _get(layer, lay.heads_owner)
        k, d = len(config.subnet_heads[i]), owner.attention_head_size
        if k == 0:
            put(layer, lay.no_heads, _NoHeadsProjected(_linear(0, hidden)) if lay.no_heads_has_out else _NoHeads())
        else:
            setattr(owner, lay.heads_attr, k)
            if hasattr(owner, "all_head_size"):
                owner.all_head_size = k * d
            for name in (lay.query, lay.key, lay.value):
                put(layer, name, _linear(hidden, k * d))
        if k or not lay.no_heads_has_out:
            put(layer, lay.attn_out, _linear(k * d, hidden))
        width = config.subnet_intermediate[i]
        put(layer, lay.mlp_in, _linear(hidden, width))
        put(layer, lay.mlp_out, _linear(width, hidden, bias=config.subnet_mlp_bias[i]))


@strict
class SubnetBertConfig(BertConfig):
    model_type = "subnet_bert"
    subnet_heads: list | None = None
    subnet_intermediate: list | None = None
    subnet_mlp_bias: list | None = None


@strict
class SubnetRobertaConfig(RobertaConfig):
    model_type = "subnet_roberta"
    subnet_heads: list | None = None
    subnet_intermediate: list | None = None
    subnet_mlp_bias: list | None = None


@strict
class SubnetElectraConfig(ElectraConfig):
    model_type = "subnet_electra"
    subnet_heads: list | None = None
    subnet_intermediate: list | None = None
    subnet_mlp_bias: list | None = None


@strict
class SubnetDistilBertConfig(DistilBertConfig):
    model_type = "subnet_distilbert"
    subnet_heads: list | None = None
    subnet_intermediate: list | None = None
    subnet_mlp_bias: list | None = None


class SubnetBertForSequenceClassification(BertForSequenceClassification):
    config_class = SubnetBertConfig

    def __init__(self, config: SubnetBertConfig):
        super().__init__(config)
        _shrink(self, config)


class SubnetRobertaForSequenceClassification(RobertaForSequenceClassification):
    config_class = SubnetRobertaConfig

    def __init__(self, config: SubnetRobertaConfig):
        super().__init__(config)
        _shrink(self, config)


class SubnetElectraForSequenceClassification(ElectraForSequenceClassification):
    config_class = SubnetElectraConfig

    def __init__(self, config: SubnetElectraConfig):
        super().__init__(config)
        _shrink(self, config)


class SubnetDistilBertForSequenceClassification(DistilBertForSequenceClassification):
    config_class = SubnetDistilBertConfig

    def __init__(self, config: SubnetDistilBertConfig):
        super().__init__(config)
        _shrink(self, config)


# exact classes only: a subclass may add modules or change the forward in ways we cannot see
_SUBNET_OF = {
    BertForSequenceClassification: SubnetBertForSequenceClassification,
    RobertaForSequenceClassification: SubnetRobertaForSequenceClassification,
    ElectraForSequenceClassification: SubnetElectraForSequenceClassification,
    DistilBertForSequenceClassification: SubnetDistilBertForSequenceClassification,
}
# the model type each subnet class is laid out like (read by runners.pruning.units for its own shapes)
SUBNET_MODEL_TYPES = {sub.config_class.model_type: full.config_class.model_type for full, sub in _SUBNET_OF.items()}

for _cls in _SUBNET_OF.values():
    AutoConfig.register(_cls.config_class.model_type, _cls.config_class, exist_ok=True)
    AutoModelForSequenceClassification.register(_cls.config_class, _cls, exist_ok=True)


@dataclass
class ExportInfo:
    params_full: int
    params_exported: int
    heads_kept: int
    mlps_kept: int
    path: Path | None
    model: nn.Module | None = field(default=None, repr=False)  # the exported model, in memory


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _binary(t: torch.Tensor | None, shape: tuple, kind: str) -> torch.Tensor | None:
    if t is None:
        return None
    t = t.detach().cpu()
    if tuple(t.shape) != shape:
        raise ValueError(f"{kind} gates have shape {tuple(t.shape)}, this model needs {shape}")
    if not ((t == 0) | (t == 1)).all():
        raise ValueError(f"export needs binary {kind} gates (0 or 1); call gates.binarise() first")
    return t.bool()


@torch.no_grad()
def build_subnetwork(model: nn.Module, gates: Gates) -> nn.Module:
    """The smaller model (eval mode, same dtype and device) computing what `model` computes under `gates`."""
    # UnsupportedArchitecture for anything the gates do not support, an exported subnet included
    view = encoder_view(model)
    arch = ARCHITECTURES.get(view.model_type)
    if not arch.export:
        raise UnsupportedArchitecture(
            f"cannot export model type {view.model_type!r}: {arch.note}; export "
            f"supports {', '.join(EXPORTABLE_MODEL_TYPES)}"
        )
    sub_cls = _SUBNET_OF.get(type(model))
    if sub_cls is None:
        raise UnsupportedArchitecture(
            f"cannot export a {type(model).__name__}; supported: {', '.join(c.__name__ for c in _SUBNET_OF)}"
        )
    g = geometry(model)
    L, H, d = g.layers, g.heads, g.head_dim
    head = _binary(gates.head, (L, H), "head")
    mlp = _binary(gates.mlp, (L,), "mlp")
    neuron = _binary(gates.neuron, (L, g.intermediate), "neuron")
    mean = gates.ablation == "mean"
    if gates.ablation not in ("zero", "mean") or (mean and gates.means is None):
        raise ValueError(f"ablation must be 'zero' or 'mean' (with gates.means), got {gates.ablation!r}")
    means = gates.means

    dev = next(model.parameters()).device
    state = dict(model.state_dict())  # indexing copies; untouched tensors are copied by load_state_dict

    def fold(bias: str, weight: str, off: torch.Tensor, mu: torch.Tensor) -> None:
        """bias += W[:, off] @ mu: the constant that ablated inputs `off` feed into this Linear."""
        b, w = state[bias], state[weight]
        state[bias] = (b.double() + w[:, off].double() @ mu.to(dev, torch.float64)[off]).to(b.dtype)

    names = {id(m): n for n, m in model.named_modules()}

    def param(i: int, part: str, t: str) -> str:  # state-dict key of a part's weight/bias at depth i
        return f"{names[id(view.part(i, part))]}.{t}"

    heads_kept, widths, mlp_bias = [], [], []
    for i in range(L):
        kept = [h for h in range(H) if head[i, h]]
        cols = head[i].to(dev).repeat_interleave(d)  # (H*d,) bool: the kept heads' rows/columns
        for name in ("query", "key", "value"):
            for t in ("weight", "bias"):
                key = param(i, name, t)
                state[key] = state[key][cols]
                if not kept:
                    del state[key]  # the no-heads module has no Q, K, V
        w_o, b_o = param(i, "attn_out", "weight"), param(i, "attn_out", "bias")
        if mean and not cols.all():
            fold(b_o, w_o, ~cols, means.head[i])
        state[w_o] = state[w_o][:, cols]

        wi, bi = param(i, "mlp_in", "weight"), param(i, "mlp_in", "bias")
        wo, bo = param(i, "mlp_out", "weight"), param(i, "mlp_out", "bias")
        if not mlp[i]:
            keep_n = torch.zeros(g.intermediate, dtype=torch.bool, device=dev)
            if mean:  # the whole block's output becomes its mean vector
                state[bo] = means.mlp[i].to(state[bo])
            else:
                del state[bo]
        else:
            keep_n = torch.ones(g.intermediate, dtype=torch.bool) if neuron is None else neuron[i]
            keep_n = keep_n.to(dev)
            if mean and not keep_n.all():
                fold(bo, wo, ~keep_n, means.neuron[i])
        state[wi], state[bi], state[wo] = state[wi][keep_n], state[bi][keep_n], state[wo][:, keep_n]
        heads_kept.append(kept)
        widths.append(int(keep_n.sum()))
        mlp_bias.append(bo in state)

    cfg = model.config.to_dict()
    for k in ("model_type", "architectures", "transformers_version"):
        cfg.pop(k, None)
    config = sub_cls.config_class(**cfg, subnet_heads=heads_kept, subnet_intermediate=widths, subnet_mlp_bias=mlp_bias)
    config._attn_implementation = model.config._attn_implementation
    small = sub_cls(config).to(device=dev, dtype=next(model.parameters()).dtype)
    small.load_state_dict(state, strict=True)
    return small.eval()


def export_subnetwork(model: nn.Module, gates: Gates, out_dir, tokenizer=None) -> ExportInfo:
    """Build the smaller model, save config + safetensors (+ tokenizer) to `out_dir` (None: don't save)."""
    small = build_subnetwork(model, gates)
    path = None
    if out_dir is not None:
        path = Path(out_dir)
        small.save_pretrained(path)
        if tokenizer is not None:
            tokenizer.save_pretrained(path)
    heads_kept = sum(len(h) for h in small.config.subnet_heads)
    mlps_kept = int(gates.mlp.detach().cpu().bool().sum())
    return ExportInfo(count_params(model), count_params(small), heads_kept, mlps_kept, path, small)


# ---- CPU latency -------------------------------------------------------------------------


def _inputs(model: nn.Module, batches, seed: int = 0) -> list[dict]:
    """`batches`: (batch_size, seq_len) for random full-length token ids, or an iterable of
    dicts / objects with `.model_inputs()` (runners.data.examples.Batch)."""
    if isinstance(batches, tuple) and len(batches) == 2 and all(isinstance(x, int) for x in batches):
        gen = torch.Generator().manual_seed(seed)
        ids = torch.randint(5, model.config.vocab_size, batches, generator=gen)
        return [{"input_ids": ids, "attention_mask": torch.ones_like(ids)}]
    return [b.model_inputs() if hasattr(b, "model_inputs") else dict(b) for b in batches]


def _timed(models: list[nn.Module], batches, reps: int, warmup: int, threads: int) -> list[float]:
    """Median ms per forward of each model; reps interleave the models so load spikes hit all alike."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    modes = [m.training for m in models]
    times: list[list[float]] = [[] for _ in models]
    try:
        inputs = _inputs(models[0], batches)  # once: `batches` may be a one-shot iterator
        with torch.no_grad():
            for m in models:
                m.eval()
            for r in range(warmup + reps):
                for j, m in enumerate(models):
                    start = time.perf_counter()
                    for x in inputs:
                        m(**x)
                    if r >= warmup:
                        times[j].append((time.perf_counter() - start) * 1000 / len(inputs))
    finally:
        torch.set_num_threads(old)
        for m, mode in zip(models, modes):
            m.train(mode)
    return [statistics.median(t) for t in times]


def measure_latency(
    model: nn.Module, batches: Iterable | tuple[int, int] = (8, 128), reps: int = 20, warmup: int = 3, threads: int = 1
) -> float:
    """Median CPU milliseconds per forward pass (torch.no_grad, eval mode, `threads` threads)."""
    return _timed([model], batches, reps, warmup, threads)[0]


@dataclass
class LatencyComparison:
    full_ms: float
    exported_ms: float

    @property
    def ratio(self) -> float:  # exported / full: below 1 means the export is faster
        return self.exported_ms / self.full_ms

    @property
    def speedup(self) -> float:
        return self.full_ms / self.exported_ms


def compare_latency(
    full: nn.Module,
    exported: nn.Module,
    batches: Iterable | tuple[int, int] = (8, 128),
    reps: int = 20,
    warmup: int = 3,
    threads: int = 1,
) -> LatencyComparison:
    """CPU latency of the full (ungated) model vs the exported one, measured interleaved."""
    full_ms, exported_ms = _timed([full, exported], batches, reps, warmup, threads)
    return LatencyComparison(full_ms, exported_ms)


# ---- export inside a run: check the exported logits against the gated model, time both ---------------

# A run's latency is a quick figure beside its export (measure_latency times a model with more repetitions): the
# median of 10 forwards of the first batch, each model in turn, after 2 untimed ones. It costs ~24 forwards a run,
# not the ~180 that 20 repetitions of 4 batches took (a minute of a MiniLM run on one CPU core).
LATENCY_REPS = 10
LATENCY_WARMUP = 2


def export_and_measure(model, gates, tokenizer, out_dir: Path, batches: list) -> dict[str, float]:
    """Export, check the exported logits against the gated model on real batches, time both on CPU (on the first)."""
    info = export_subnetwork(model, gates, out_dir, tokenizer=tokenizer)
    with torch.no_grad():
        diffs = []
        for b in batches:
            exported = info.model(**b.model_inputs()).logits
            with attach(model, gates):
                gated = model(**b.model_inputs()).logits
            diffs.append(float((exported - gated).abs().max()))
    timing = compare_latency(model, info.model, batches[:1], reps=LATENCY_REPS, warmup=LATENCY_WARMUP)
    return {
        "export.params_full": info.params_full,
        "export.params_exported": info.params_exported,
        "export.max_logit_diff": max(diffs),
        "export.latency_full_ms": timing.full_ms,
        "export.latency_exported_ms": timing.exported_ms,
        "export.speedup": timing.speedup,
    }
