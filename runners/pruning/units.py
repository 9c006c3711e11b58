"""The prunable units of a BERT-family encoder, and what they own.

Units are attention heads (L x H), whole MLP blocks (L) and, for attribution pruning, MLP
intermediate neurons (L x I), per depth. This module finds them in a model of any supported
architecture (BERT, RoBERTa, ELECTRA: one layout; DistilBERT and ALBERT: their own; ALBERT's depths
share one layer's modules, so hooks ask which depth is running), counts the parameters each one
owns, reports sparsity, and does weight-level (unstructured) masking. Gates that switch units on
and off live in `runners.pruning.gates`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch
from torch import nn

from registry.models import GATEABLE_MODEL_TYPES


class GateValues(Protocol):
    """What sparsity and unit rows read of a set of gates (runners.pruning.gates.Gates is one): declared here so
    that units, which gates build on, never import gates."""

    head: torch.Tensor  # (L, H)
    mlp: torch.Tensor  # (L,)
    neuron: torch.Tensor | None  # (L, I)

    def binarise(self, threshold: float = 0.5) -> "GateValues": ...


SUPPORTED_MODEL_TYPES = GATEABLE_MODEL_TYPES  # declared in the registry, beside each architecture's config keys


class UnsupportedArchitecture(ValueError):
    """The model is not an encoder whose units this project knows how to gate (or export)."""


@dataclass(frozen=True)
class Geometry:
    layers: int
    heads: int
    head_dim: int
    hidden: int
    intermediate: int


@dataclass(frozen=True)
class Layout:
    """Where one architecture keeps the parts of a layer, as attribute paths from the layer module.

    attn_out's input is the concatenation of the heads' context vectors (head h = columns h*d:(h+1)*d);
    mlp_out's output is the MLP block's output before dropout, residual and LayerNorm; neurons' output is
    the MLP's intermediate activations (after the activation function); attention_block's output is the
    attention block's output after its LayerNorm (CKA's attention_output)."""

    layers: str  # from the base model: the ModuleList of layers (ALBERT: its layer groups)
    query: str
    key: str
    value: str
    attn_out: str
    mlp_in: str
    neurons: str
    mlp_out: str
    attention_block: str
    heads_owner: str  # the module holding the head count and size
    heads_attr: str
    no_heads: str | None  # the module an export replaces when a layer keeps no head (None: not exported)
    no_heads_has_out: bool  # whether that module also holds attn_out (DistilBERT), else attn_out stays


_BERT = Layout(
    "encoder.layer",
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "intermediate",
    "output.dense",
    "attention",
    "attention.self",
    "num_attention_heads",
    "attention.self",
    False,
)
_DISTILBERT = Layout(
    "transformer.layer",
    "attention.q_lin",
    "attention.k_lin",
    "attention.v_lin",
    "attention.out_lin",
    "ffn.lin1",
    "ffn.activation",
    "ffn.lin2",
    "sa_layer_norm",
    "attention",
    "n_heads",
    "attention",
    True,
)
_ALBERT = Layout(
    "encoder.albert_layer_groups",
    "attention.query",
    "attention.key",
    "attention.value",
    "attention.dense",
    "ffn",
    "activation",
    "ffn_output",
    "attention",
    "attention",
    "num_attention_heads",
    None,
    False,
)  # its attention module holds residual + LayerNorm too
LAYOUTS = {"bert": _BERT, "roberta": _BERT, "electra": _BERT, "distilbert": _DISTILBERT, "albert": _ALBERT}
assert set(LAYOUTS) == set(SUPPORTED_MODEL_TYPES), "every gateable architecture needs a layout"


def _get(module: nn.Module, path: str) -> nn.Module:
    for name in path.split("."):
        module = getattr(module, name)
    return module


@dataclass(frozen=True)
class EncoderView:
    """An encoder seen depth by depth. `layers[i]` is the module run at depth i: for ALBERT the same shared
    module repeats, so hooks on it must ask which depth is running (see `hook_depths`)."""

    model_type: str
    layout: Layout
    root: nn.Module  # runs every layer once per forward pass
    embeddings: nn.Module  # its output is the first layer's input (CKA's layer 0)
    layers: tuple[nn.Module, ...]

    def part(self, depth: int, name: str) -> nn.Module:
        return _get(self.layers[depth], getattr(self.layout, name))

    def parts(self, name: str) -> list[nn.Module]:
        return [self.part(i, name) for i in range(len(self.layers))]

    def distinct_layers(self) -> list[nn.Module]:
        return list({id(m): m for m in self.layers}.values())

    @property
    def shared(self) -> bool:
        return len(self.distinct_layers()) < len(self.layers)


def encoder_view(model: nn.Module, as_type: str | None = None) -> EncoderView:
    """The model's encoder, depth by depth; UnsupportedArchitecture (naming what is supported) otherwise.
    `as_type` reads it with another architecture's layout (an exported subnet building its own shapes)."""
    config = getattr(model, "config", None)
    model_type = as_type or getattr(config, "model_type", None)
    if model_type not in LAYOUTS:
        what = f"model type {model_type!r}" if model_type else f"a {type(model).__name__} without a transformers config"
        raise UnsupportedArchitecture(
            f"cannot gate {what} ({type(model).__name__}); supported model types: "
            f"{', '.join(SUPPORTED_MODEL_TYPES)} (transformers sequence classifiers of the BERT family)"
        )
    layout = LAYOUTS[model_type]
    base = getattr(model, "base_model", model)
    try:
        stack = _get(base, layout.layers)
    except AttributeError:
        stack = None
    if not isinstance(stack, nn.ModuleList) or len(stack) == 0:
        raise UnsupportedArchitecture(
            f"{type(model).__name__} (model type {model_type!r}) has no base_model.{layout.layers} to gate"
        )
    root = _get(base, layout.layers.rsplit(".", 1)[0])
    embeddings = base.embeddings
    if model_type == "albert":
        n, groups = config.num_hidden_layers, len(stack)
        if any(len(g.albert_layers) != 1 for g in stack):
            raise UnsupportedArchitecture(
                "ALBERT with inner_group_num > 1 (several layers per depth) is not "
                "supported: the gates follow ALBERT's depths with one layer each"
            )
        # the depth -> group rule of AlbertTransformer.forward
        layers = tuple(stack[int(i / (n / groups))].albert_layers[0] for i in range(n))
        embeddings = root.embedding_hidden_mapping_in  # projects the embeddings to the hidden width
    else:
        layers = tuple(stack)
        embeddings = getattr(base, "embeddings_project", embeddings)  # ELECTRA with embedding_size != hidden_size
    return EncoderView(model_type, layout, root, embeddings, layers)


def encoder_layers(model: nn.Module) -> tuple[nn.Module, ...]:
    """The module run at each depth of the encoder (ALBERT: its shared layer, repeated)."""
    return encoder_view(model).layers


class _DepthTracker:
    """Which depth is running, for hooks on modules shared between depths: reset when the encoder starts,
    advanced whenever one of its layers starts (layers run in depth order); -1 outside the encoder."""

    def __init__(self, view: EncoderView):
        self.depth, self.active = -1, False
        self.handles = [view.root.register_forward_pre_hook(self._start), view.root.register_forward_hook(self._stop)]
        self.handles += [m.register_forward_pre_hook(self._advance) for m in view.distinct_layers()]

    def _start(self, module, args) -> None:
        self.depth, self.active = -1, True

    def _stop(self, module, args, output) -> None:
        self.depth, self.active = -1, False

    def _advance(self, module, args) -> None:
        if self.active:
            self.depth += 1


def hook_depths(view: EncoderView, part: str, hook_at: Callable[[int], Callable], pre: bool = False) -> list:
    """Register `hook_at(depth)` as a forward hook (or pre-hook) on `part` of every depth; returns the
    handles. Where depths share a module (ALBERT) one hook per module asks a depth tracker which depth
    is running, so each depth still gets its own hook; elsewhere each depth's module is hooked directly."""
    modules = view.parts(part) if part != "layer" else list(view.layers)
    register = (lambda m, h: m.register_forward_pre_hook(h)) if pre else (lambda m, h: m.register_forward_hook(h))
    if len({id(m) for m in modules}) == len(modules):
        return [register(m, hook_at(i)) for i, m in enumerate(modules)]
    tracker = _DepthTracker(view)
    hooks = [hook_at(i) for i in range(len(modules))]

    def dispatch(*args):
        if not 0 <= tracker.depth < len(hooks):  # e.g. a layer called on its own, or recomputed (checkpointing)
            raise RuntimeError(
                f"a shared layer ran as depth {tracker.depth} of {len(hooks)}: hooked layers must "
                "run inside one forward pass of their encoder, once per depth"
            )
        return hooks[tracker.depth](*args)

    return tracker.handles + [register(m, dispatch) for m in {id(m): m for m in modules}.values()]


def geometry(model: nn.Module) -> Geometry:
    """Read from the modules, not the config, so a physically pruned model is described correctly."""
    view = encoder_view(model)
    owner = view.part(0, "heads_owner")
    return Geometry(
        layers=len(view.layers),
        heads=getattr(owner, view.layout.heads_attr),
        head_dim=owner.attention_head_size,
        hidden=view.part(0, "attn_out").out_features,
        intermediate=view.part(0, "mlp_in").out_features,
    )


# ---- parameter ownership -------------------------------------------------------------------


def head_params(g: Geometry) -> int:
    """Parameters one head owns: its d rows of the Q, K and V weights (d x hidden each) and
    biases (d each), plus its d columns of the attention output dense weight (hidden x d).
    The attention output bias and the LayerNorms belong to no unit."""
    return 3 * (g.head_dim * g.hidden + g.head_dim) + g.hidden * g.head_dim


def mlp_params(g: Geometry) -> int:
    """Parameters one MLP block owns: intermediate dense weight + bias and output dense
    weight + bias (the LayerNorm after it belongs to no unit)."""
    return (g.intermediate * g.hidden + g.intermediate) + (g.hidden * g.intermediate + g.hidden)


def neuron_params(g: Geometry) -> int:
    """Parameters one intermediate neuron owns: its row of the intermediate dense weight and its
    bias, and its column of the output dense weight."""
    return 2 * g.hidden + 1


def sparsity(model: nn.Module, gates: GateValues, threshold: float = 0.5) -> dict[str, float | int]:
    """Sparsity of the binarised gates (a unit is pruned when its gate < threshold).

    Unit fractions: `units` counts heads and MLPs equally, (pruned heads + pruned MLPs) /
    (L*H + L); `heads`, `mlps` and (when neuron gates exist) `neurons` are per family.
    Parameter fraction `params`: parameters owned by pruned units (see `head_params`,
    `mlp_params`, `neuron_params`) / parameters owned by all heads and MLPs. A neuron inside a
    pruned MLP is not counted twice. Counted per depth: where depths share one layer's weights
    (ALBERT) this is the fraction of the layer applications' parameters removed (the compute), as
    if each depth had its own copy; the stored shared weights shrink only for a unit pruned at
    every depth. Also returns the raw counts.
    """
    g = geometry(model)
    b = gates.binarise(threshold)
    head_off = int((b.head == 0).sum())
    mlp_off_by_layer = b.mlp == 0
    mlp_off = int(mlp_off_by_layer.sum())
    pruned = head_off * head_params(g) + mlp_off * mlp_params(g)
    out: dict[str, float | int] = {}
    if b.neuron is not None:
        neuron_off = b.neuron == 0
        out["neurons"] = float(neuron_off.float().mean())
        pruned += int(neuron_off[~mlp_off_by_layer].sum()) * neuron_params(g)
    total = g.layers * (g.heads * head_params(g) + mlp_params(g))
    out.update(
        units=(head_off + mlp_off) / (g.layers * g.heads + g.layers),
        heads=head_off / (g.layers * g.heads),
        mlps=mlp_off / g.layers,
        params=pruned / total,
        heads_pruned=head_off,
        mlps_pruned=mlp_off,
        params_pruned=pruned,
        params_total=total,
    )
    return out


def unit_rows(gates: GateValues, scores: dict[str, torch.Tensor] | None = None, threshold: float = 0.5) -> list[dict]:
    """One row per unit: layer, unit_kind ("head" | "mlp" | "neuron"), unit_index, kept (bool,
    from the binarised gates) and score (float, from `scores[kind]` shaped like the gate, else None).
    MLP rows have unit_index 0."""
    b = gates.binarise(threshold)
    scores = scores or {}
    rows = []
    for kind in ("head", "mlp", "neuron"):
        kept = getattr(b, kind)
        if kept is None:
            continue
        kept = kept.reshape(kept.shape[0], -1).tolist()
        sc = scores.get(kind)
        sc = sc.detach().reshape(len(kept), -1).tolist() if sc is not None else None
        for layer, row in enumerate(kept):
            for i, k in enumerate(row):
                rows.append(
                    dict(
                        layer=layer,
                        unit_kind=kind,
                        unit_index=i,
                        kept=bool(k),
                        score=None if sc is None else float(sc[layer][i]),
                    )
                )
    return rows


# ---- weight-level masks (unstructured pruning) ---------------------------------------------


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """Weight matrices of every Linear inside the encoder layers (Q, K, V, attention output
    dense, intermediate dense, output dense), keyed by their `model.named_parameters()` name.
    Biases, LayerNorms, embeddings (and their projection), pooler and classifier are excluded.
    A layer shared between depths (ALBERT) has its matrices once: masking one of its weights
    removes it at every depth."""
    layers = encoder_view(model).distinct_layers()
    wanted = {id(m.weight) for layer in layers for m in layer.modules() if isinstance(m, nn.Linear)}
    return {name: p for name, p in model.named_parameters() if id(p) in wanted}


def apply_weight_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero, in place, the entries whose mask is False (True = keep). Masks are keyed like
    `prunable_weights`. Training updates zeroed weights again, so re-apply after optimizer steps."""
    weights = prunable_weights(model)
    for name, mask in masks.items():
        if name not in weights:
            raise KeyError(f"{name!r} is not a prunable weight of this model")
        w = weights[name]
        if mask.shape != w.shape:
            raise ValueError(f"mask for {name} has shape {tuple(mask.shape)}, weight has {tuple(w.shape)}")
        with torch.no_grad():
            w.mul_(mask.to(device=w.device, dtype=torch.bool))


def weight_sparsity(model: nn.Module, masks: dict[str, torch.Tensor]) -> float:
    """Fraction of all prunable weight entries that the masks remove (missing names = all kept)."""
    weights = prunable_weights(model)
    total = sum(w.numel() for w in weights.values())
    return sum(int((~m.bool()).sum()) for m in masks.values()) / total
