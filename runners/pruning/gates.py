"""Gates on the units of a BERT-family encoder: the one mask API every pruning method uses.

    gates = Gates.ones(model, requires_grad=True)          # importance: |dL/d gate|
    with attach(model, gates):
        loss = model(**batch.model_inputs(), labels=batch.labels).loss
    loss.backward(); gates.head.grad                         # (L, H)

Where each gate acts (BERT, RoBERTa, ELECTRA; DistilBERT and ALBERT at the same places of their own
modules, see `runners.pruning.units.LAYOUTS`):
- head h of layer l: the head's context vector, i.e. its slice of the input of
  `layer.attention.output.dense` (before the output projection);
- MLP of layer l: the output of `layer.output.dense` (before dropout, residual and LayerNorm);
- neuron n of layer l (optional): the output of `layer.intermediate` (after the activation).
ALBERT runs one shared layer at every depth: its gates are still per depth, applied at run time by
hooks that know which depth is running; the shared weights are never edited.

A gate g in [0, 1] gives g * out with ablation "zero", g * out + (1 - g) * mean with ablation
"mean" (means from `compute_unit_means`). Hooks read `gates.head` / `.mlp` / `.neuron` at call
time, so a caller may assign freshly sampled tensors (e.g. hard-concrete L0 gates) every step
without re-attaching. Each hooked module costs one fused multiply(-add) per forward; a layer whose
gates are all ones and need no gradient is skipped.

Per-example gates: a gate tensor with a leading batch dimension, head (B, L, H), mlp (B, L), neuron
(B, L, I), applies gate b to example b of a batch of B (every family of one Gates with the same B, or
without one). Subnetworks that share every weight then run side by side in one forward pass, each on
its own copy of the batch (runners.pruning.recipes.l0.L0Stack).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Iterable, Iterator

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from runners.pruning.units import (  # re-exported: one import site for the whole unit API
    Geometry,
    UnsupportedArchitecture,
    apply_weight_masks,
    encoder_layers,
    encoder_view,
    geometry,
    hook_depths,
    prunable_weights,
    sparsity,
    unit_rows,
    weight_sparsity,
)

__all__ = [
    "Gates",
    "UnitMeans",
    "GateHandle",
    "NeuronRecorder",
    "attach",
    "compute_unit_means",
    "record_neurons",
    "Geometry",
    "UnsupportedArchitecture",
    "apply_weight_masks",
    "encoder_layers",
    "encoder_view",
    "geometry",
    "prunable_weights",
    "sparsity",
    "unit_rows",
    "weight_sparsity",
]

ABLATIONS = ("zero", "mean")
# each family's shared gate shape; per-example gates put a batch dimension in front
_SHAPES = {
    "head": lambda geom: (geom.layers, geom.heads),
    "mlp": lambda geom: (geom.layers,),
    "neuron": lambda geom: (geom.layers, geom.intermediate),
}


@dataclass
class UnitMeans:
    """Mean output of every unit over non-padding training tokens.

    head (L, H*d): mean input of attention.output.dense (head h is columns h*d:(h+1)*d);
    mlp (L, hidden): mean output of output.dense; neuron (L, I): mean output of intermediate.
    """

    head: torch.Tensor
    mlp: torch.Tensor
    neuron: torch.Tensor
    tokens: int = 0
    metadata: dict[str, str] = field(default_factory=dict)

    def save(self, path) -> None:
        meta = {**self.metadata, "tokens": str(self.tokens)}
        tensors = {k: getattr(self, k).detach().cpu().contiguous() for k in ("head", "mlp", "neuron")}
        save_file(tensors, str(path), metadata=meta)

    @classmethod
    def load(cls, path, device: torch.device | str | None = None) -> "UnitMeans":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        t = load_file(str(path), device=str(device) if device is not None else "cpu")
        tokens = int(meta.pop("tokens", 0))
        return cls(t["head"], t["mlp"], t["neuron"], tokens=tokens, metadata=meta)


@dataclass
class Gates:
    """Gate tensors: head (L, H), mlp (L,), optional neuron (L, I); 1 = keep, 0 = ablate. Per example: a
    leading batch dimension B on every family (see the module docstring)."""

    head: torch.Tensor
    mlp: torch.Tensor
    neuron: torch.Tensor | None = None
    ablation: str = "zero"
    means: UnitMeans | None = None

    @classmethod
    def ones(
        cls,
        model: nn.Module,
        *,
        neurons: bool = False,
        requires_grad: bool = False,
        ablation: str = "zero",
        means: UnitMeans | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> "Gates":
        g = geometry(model)
        device = next(model.parameters()).device

        def one(*shape):
            return torch.ones(shape, dtype=dtype, device=device, requires_grad=requires_grad)

        return cls(
            one(g.layers, g.heads), one(g.layers), one(g.layers, g.intermediate) if neurons else None, ablation, means
        )

    def binarise(self, threshold: float = 0.5) -> "Gates":
        """Detached copy with every gate set to 1.0 if >= threshold else 0.0."""

        def b(t):
            return None if t is None else (t.detach() >= threshold).to(t.dtype)

        return replace(self, head=b(self.head), mlp=b(self.mlp), neuron=b(self.neuron))

    def to(self, device: torch.device | str) -> "Gates":
        """Detached copy on `device` (means included)."""

        def mv(t):
            return None if t is None else t.detach().to(device)

        means = (
            None
            if self.means is None
            else replace(self.means, head=mv(self.means.head), mlp=mv(self.means.mlp), neuron=mv(self.means.neuron))
        )
        return replace(self, head=mv(self.head), mlp=mv(self.mlp), neuron=mv(self.neuron), means=means)

    def zero_grad(self) -> None:
        for t in (self.head, self.mlp, self.neuron):
            if t is not None and t.grad is not None:
                t.grad = None


class GateHandle:
    """Hooks that apply `gates` to `model`; `.remove()` (or leaving the `with` block) restores it."""

    def __init__(self, model: nn.Module, gates: Gates):
        self.gates = gates
        self._geom = geometry(model)
        self._device = next(model.parameters()).device
        self._plan: dict[str, list] = {}
        view = encoder_view(model)
        _check(gates, self._geom)
        self._hooks = [view.root.register_forward_pre_hook(self._prepare)]
        self._hooks += hook_depths(view, "attn_out", lambda i: self._pre_hook("head", i), pre=True)
        self._hooks += hook_depths(view, "mlp_out", lambda i: self._out_hook("mlp", i))
        self._hooks += hook_depths(view, "neurons", lambda i: self._out_hook("neuron", i))

    def _prepare(self, module, args) -> None:
        """Once per forward: per-layer (scale, shift) so each hook is one addcmul (or mul)."""
        g = self.gates
        _check(g, self._geom)
        mean = g.ablation == "mean"
        d = self._geom.head_dim
        # per family: the gate tensor, how one layer's gates widen to the hooked features, the unit means
        families = {
            "head": (g.head, lambda t: t.repeat_interleave(d, dim=-1), g.means.head if mean else None),
            "mlp": (g.mlp, lambda t: t[..., None], g.means.mlp if mean else None),
            "neuron": (g.neuron, lambda t: t, g.means.neuron if mean else None),
        }
        self._plan = {}
        for kind, (gate, expand, mu) in families.items():
            if gate is None:
                continue
            # gates built elsewhere (a control's, a loaded step's) may sit on the CPU
            gate = gate.to(self._device)
            per_example = gate.dim() > len(_SHAPES[kind](self._geom))
            if per_example:
                gate = gate.movedim(0, 1)  # (L, B, ...): layer first, as for shared gates
            layers = len(gate)
            # one host sync per family per forward decides which layers can be skipped
            skip = [False] * layers if gate.requires_grad else (gate == 1).reshape(layers, -1).all(1).tolist()
            scale = expand(gate)  # (L, F) shared, (L, B, F) per example; F: the features, or 1 (a whole MLP)
            if per_example:
                scale = scale.unsqueeze(-2)  # (L, B, 1, F): example b's gates on every one of its tokens
            shift = None
            if mu is not None:
                mu = mu.to(scale.device).view(layers, *[1] * (scale.dim() - 2), mu.shape[-1])
                shift = (1 - scale) * mu
            self._plan[kind] = [
                None if skip[i] else (scale[i], None if shift is None else shift[i]) for i in range(layers)
            ]

    def _apply(self, kind: str, i: int, x: torch.Tensor) -> torch.Tensor | None:
        plan = self._plan.get(kind)
        step = plan[i] if plan else None
        if step is None:
            return None
        scale, shift = step
        if scale.dim() == 3 and scale.shape[0] != x.shape[0]:
            raise ValueError(f"per-example {kind} gates are for a batch of {scale.shape[0]}, this one has {x.shape[0]}")
        scale = scale.to(x.dtype)
        return x * scale if shift is None else torch.addcmul(shift.to(x.dtype), scale, x)

    def _pre_hook(self, kind: str, i: int):
        def hook(module, args):
            y = self._apply(kind, i, args[0])
            return None if y is None else (y, *args[1:])

        return hook

    def _out_hook(self, kind: str, i: int):
        def hook(module, args, output):
            return self._apply(kind, i, output)

        return hook

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks, self._plan = [], {}

    def __enter__(self) -> "GateHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def attach(model: nn.Module, gates: Gates) -> GateHandle:
    """Apply `gates` to `model` in every forward until the handle is removed (no model copy)."""
    return GateHandle(model, gates)


def _check(g: Gates, geom: Geometry) -> None:
    leading = set()  # per family: its batch size (per-example gates) or None (shared)
    for kind, shape_of in _SHAPES.items():
        t = getattr(g, kind)
        if t is None:
            continue
        shape, got = shape_of(geom), tuple(t.shape)
        if got[len(got) - len(shape) :] != shape or len(got) > len(shape) + 1:
            raise ValueError(f"{kind} gates have shape {got}, this model needs {shape} (or (batch, *{shape}))")
        leading.add(got[0] if len(got) > len(shape) else None)
    if len(leading) > 1:
        raise ValueError("per-example gates need the same batch dimension on every family (shared gates: none)")
    if g.ablation not in ABLATIONS:
        raise ValueError(f"ablation must be one of {ABLATIONS}, got {g.ablation!r}")
    if g.ablation == "mean":
        if g.means is None:
            raise ValueError("mean ablation needs gates.means (see compute_unit_means)")
        m = g.means
        if (tuple(m.head.shape), tuple(m.mlp.shape), tuple(m.neuron.shape)) != (
            (geom.layers, geom.heads * geom.head_dim),
            (geom.layers, geom.hidden),
            (geom.layers, geom.intermediate),
        ):
            raise ValueError("unit means were computed for a model of a different shape")


@torch.no_grad()
def compute_unit_means(model: nn.Module, batches: Iterable) -> UnitMeans:
    """Mean output of every unit over the non-padding tokens of `batches` (objects with
    `.model_inputs()` and `.attention_mask`, like runners.data.examples.Batch), in eval mode.
    Run it on the plain model: with gates attached the means would be of the gated outputs."""
    view = encoder_view(model)
    layers = view.layers
    device = next(model.parameters()).device
    sums: dict[tuple[str, int], torch.Tensor] = {}
    keep: list[torch.Tensor] = []  # the current batch's (B, T) padding mask, read by the hooks

    def add(kind, i, x):
        s = (x.double() * keep[0][..., None]).sum(dim=(0, 1))
        sums[kind, i] = sums[kind, i] + s if (kind, i) in sums else s

    hooks = hook_depths(view, "attn_out", lambda i: lambda m, a: add("head", i, a[0]), pre=True)
    hooks += hook_depths(view, "mlp_out", lambda i: lambda m, a, o: add("mlp", i, o))
    hooks += hook_depths(view, "neurons", lambda i: lambda m, a, o: add("neuron", i, o))
    was_training, tokens = model.training, 0
    model.eval()
    try:
        for batch in batches:
            keep[:] = [batch.attention_mask.to(device=device, dtype=torch.float64)]
            tokens += int(keep[0].sum())
            model(**{k: v.to(device) for k, v in batch.model_inputs().items()})
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if tokens == 0:
        raise ValueError("compute_unit_means got no non-padding tokens")
    dtype = next(model.parameters()).dtype

    def stack(kind):
        return torch.stack([sums[kind, i] for i in range(len(layers))]).div(tokens).to(dtype)

    return UnitMeans(stack("head"), stack("mlp"), stack("neuron"), tokens=tokens)


class NeuronRecorder:
    """Activations (after the MLP activation function) and their gradients, per layer, for the
    last forward/backward: `activations[l]`, `grads[l]` are (B, T, I)."""

    def __init__(self, model: nn.Module):
        view = encoder_view(model)
        self.activations: list[torch.Tensor | None] = [None] * len(view.layers)
        self.grads: list[torch.Tensor | None] = [None] * len(view.layers)
        self._hooks = hook_depths(view, "neurons", self._hook)

    def _hook(self, i):
        def hook(module, args, output):
            self.activations[i] = output.detach()
            if output.requires_grad:
                output.register_hook(lambda grad: self.grads.__setitem__(i, grad.detach()))

        return hook

    def attribution(self, attention_mask: torch.Tensor | None = None, absolute: bool = False) -> torch.Tensor:
        """(L, I): sum over non-padding tokens of activation x gradient (|.| per token if
        `absolute`). Signed, it equals d loss / d neuron-gate at gates = 1."""
        out = []
        for a, g in zip(self.activations, self.grads):
            if a is None or g is None:
                raise RuntimeError("run a forward and a backward pass inside record_neurons first")
            ag = a * g
            ag = ag.abs() if absolute else ag
            if attention_mask is not None:
                ag = ag * attention_mask.to(ag.device, ag.dtype)[..., None]
            out.append(ag.sum(dim=(0, 1)))
        return torch.stack(out)

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []


@contextmanager
def record_neurons(model: nn.Module) -> Iterator[NeuronRecorder]:
    """Record MLP-neuron activations and gradients (for activation x gradient attribution)."""
    rec = NeuronRecorder(model)
    try:
        yield rec
    finally:
        rec.remove()
