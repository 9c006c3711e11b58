"""The prunable units of a BERT-family encoder, and what they own.

Units are attention heads (L x H), whole MLP blocks (L) and, for attribution pruning, MLP
intermediate neurons (L x I). This module finds them in a model, counts the parameters each one
owns, reports sparsity, and does weight-level (unstructured) masking. Gates that switch units on
and off live in `runners.pruning.gates`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from runners.pruning.gates import Gates

SUPPORTED_MODEL_TYPES = ("bert", "roberta")


class UnsupportedArchitecture(ValueError):
    """The model is not an encoder whose units this project knows how to gate."""


@dataclass(frozen=True)
class Geometry:
    layers: int
    heads: int
    head_dim: int
    hidden: int
    intermediate: int


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The encoder's transformer layers, found through the model's base model."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        what = f"model type {model_type!r}" if model_type else f"a {type(model).__name__} without a transformers config"
        raise UnsupportedArchitecture(
            f"cannot gate {what} ({type(model).__name__}); supported model types: "
            f"{', '.join(SUPPORTED_MODEL_TYPES)} (transformers models whose base model has encoder.layer)"
        )
    base = getattr(model, "base_model", model)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise UnsupportedArchitecture(
            f"{type(model).__name__} (model type {model_type!r}) has no base_model.encoder.layer to gate"
        )
    return layers


def geometry(model: nn.Module) -> Geometry:
    """Read from the modules, not the config, so a physically pruned model is described correctly."""
    layers = encoder_layers(model)
    att = layers[0].attention.self
    return Geometry(
        layers=len(layers),
        heads=att.num_attention_heads,
        head_dim=att.attention_head_size,
        hidden=layers[0].attention.output.dense.out_features,
        intermediate=layers[0].intermediate.dense.out_features,
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


def sparsity(model: nn.Module, gates: "Gates", threshold: float = 0.5) -> dict[str, float | int]:
    """Sparsity of the binarised gates (a unit is pruned when its gate < threshold).

    Unit fractions: `units` counts heads and MLPs equally, (pruned heads + pruned MLPs) /
    (L*H + L); `heads`, `mlps` and (when neuron gates exist) `neurons` are per family.
    Parameter fraction `params`: parameters owned by pruned units (see `head_params`,
    `mlp_params`, `neuron_params`) / parameters owned by all heads and MLPs. A neuron inside a
    pruned MLP is not counted twice. Also returns the raw counts.
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


def unit_rows(gates: "Gates", scores: dict[str, torch.Tensor] | None = None, threshold: float = 0.5) -> list[dict]:
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
                    dict(layer=layer, unit_kind=kind, unit_index=i, kept=bool(k),
                         score=None if sc is None else float(sc[layer][i]))
                )
    return rows


# ---- weight-level masks (unstructured pruning) ---------------------------------------------


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """Weight matrices of every Linear inside the encoder layers (Q, K, V, attention output
    dense, intermediate dense, output dense), keyed by their `model.named_parameters()` name.
    Biases, LayerNorms, embeddings, pooler and classifier are excluded."""
    layers = encoder_layers(model)
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
