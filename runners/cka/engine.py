"""Linear CKA between every layer of a baseline and every layer of a compared (pruned) model.

The matrix is (L+1) x (L+1): row i = baseline layer i, column j = compared layer j, index 0 = embeddings.
Cost model: the baseline's side is computed once per run (`BaselineFeatures`), and the compared model's
side rides on the evaluation forward pass a pruning step already makes: `capture` pools every layer
inside that one forward pass, and `CKAAccumulator.update` consumes the batch. Batches are matched by
index, so the evaluation loop must visit the same batches (same examples, same order within a batch)
as the baseline pass; the lengths of the examples are checked.

    base = BaselineFeatures()
    with torch.no_grad(), capture(dense, "layer_output", "mean", max_examples=1024) as cap:
        for i, batch in enumerate(batches):
            dense(**batch.model_inputs()); base.add(i, cap.pop())
    ...each pruning step...
    acc = CKAAccumulator(base, estimator="linear")
    with torch.no_grad(), capture(pruned, "layer_output", "mean", max_examples=1024) as cap:
        for i, batch in enumerate(batches):
            logits = pruned(**batch.model_inputs()).logits   # the evaluation the step makes anyway
            acc.update(i, cap.pop())
    result = acc.result()   # CKAResult: matrix, degenerate flags, estimator, n_examples
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Literal, Sequence

import numpy as np
import torch
from torch import Tensor

from runners.cka.estimators import (
    LinearBaseline,
    LinearState,
    MinibatchBaseline,
    MinibatchState,
    cka_from_terms,
    linear_cka_reference,
    minibatch_cka_reference,
)
from runners.pruning.units import encoder_view, hook_depths

Pooling = Literal["cls", "mean", "tokens"]
Representation = Literal["layer_output", "attention_output"]
Estimator = Literal["linear", "minibatch"]
POOLINGS = ("cls", "mean", "tokens")
REPRESENTATIONS = ("layer_output", "attention_output")
ESTIMATORS = ("linear", "minibatch")

__all__ = [
    "BaselineFeatures",
    "CKAAccumulator",
    "CKAResult",
    "Captured",
    "capture",
    "collect_baseline",
    "linear_cka_reference",
    "minibatch_cka_reference",
    "pool",
    "pool_layers",
]


def pool(hidden: Tensor, attention_mask: Tensor, pooling: Pooling) -> Tensor:
    """[B, T, D] hidden states -> [N, D] rows. cls: the first token (right padding assumed, as BERT);
    mean: mean over real tokens (padding never enters, even if it holds NaN); tokens: every real token,
    example by example."""
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.bool()
    if pooling == "mean":
        count = mask.sum(1, keepdim=True).clamp_min(1).to(hidden.dtype)
        # A masked matmul is ~10x cheaper than masking a copy, but 0 * NaN = NaN: if anything is not
        # finite, redo it by masking so that garbage in padding positions cannot leak in.
        total = (mask[:, None, :].to(hidden.dtype) @ hidden).squeeze(1)
        if not torch.isfinite(total).all():
            total = hidden.masked_fill(~mask[..., None], 0.0).sum(1)
        return total / count
    if pooling == "tokens":
        return hidden[mask]
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


@dataclass
class Captured:
    """One batch of one model: the pooled rows of every layer (layer 0 = embeddings) and each kept
    example's real length (used to check that two passes saw the same batch)."""

    layers: list[Tensor]
    lengths: Tensor | None = None

    @property
    def n_rows(self) -> int:
        return self.layers[0].shape[0]


def pool_layers(hidden_states: Sequence[Tensor], attention_mask: Tensor, pooling: Pooling) -> Captured:
    """For a loop that already asks for `output_hidden_states`: pool HF's tuple of L+1 states."""
    return Captured([pool(h, attention_mask, pooling) for h in hidden_states], attention_mask.sum(1))


def _first(output):
    return output if isinstance(output, Tensor) else output[0]


class Capture:
    """Collects the pooled per-layer rows of each forward pass; see `capture`."""

    def __init__(self, n_layers: int, pooling: Pooling, max_examples: int | None):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.n_layers, self.pooling, self.max_examples = n_layers, pooling, max_examples
        self.seen = 0
        self._rows: list[Tensor | None] = []
        self._mask: Tensor | None = None

    def _start(self, module, args, kwargs):
        # The top-level call: read the 2-D attention mask (kwarg or 2nd positional) and decide how many
        # examples of this batch to keep.
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            ids = kwargs["inputs_embeds"]
        mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
        if mask is None:
            mask = torch.ones(ids.shape[:2], dtype=torch.long, device=ids.device)
        keep = ids.shape[0] if self.max_examples is None else max(0, min(ids.shape[0], self.max_examples - self.seen))
        self.seen += keep
        self._mask = mask[:keep]
        self._rows = [None] * self.n_layers

    def _tap(self, index: int):
        def hook(module, args, output):
            if self._mask is None:
                return
            hidden = _first(output).detach()
            self._rows[index] = pool(hidden[: self._mask.shape[0]], self._mask, self.pooling)

        return hook

    def pop(self) -> Captured:
        """The last forward pass's rows (cleared afterwards)."""
        if self._mask is None or any(r is None for r in self._rows):
            raise RuntimeError(
                "pop() needs exactly one completed forward pass of the captured model since the last pop()"
            )
        out = Captured(self._rows, self._mask.sum(1).cpu())
        self._rows, self._mask = [], None
        return out


@contextmanager
def capture(
    model, representation: Representation = "layer_output", pooling: Pooling = "mean", max_examples: int | None = None
) -> Iterator[Capture]:
    """Hook a HF BERT-family model (runners.pruning.units: BERT, RoBERTa, ELECTRA, DistilBERT, ALBERT) so
    each forward pass leaves its L+1 pooled layer representations in `cap.pop()`. layer_output = each
    encoder layer's output (HF's hidden_states); attention_output = each layer's attention block output
    (after its LayerNorm); layer 0 is the first layer's input in both cases (the embeddings' output,
    projected to the hidden width where ELECTRA and ALBERT project it). ALBERT's depths share one layer:
    each depth is still captured on its own. Pooling happens inside the hooks, so full [B, T, D] states
    are not kept. `max_examples` keeps only the first examples seen since the `with` began (later batches give
    0 rows). The attention mask must be passed as `attention_mask=` or as the second positional input."""
    if representation not in REPRESENTATIONS:
        raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {representation!r}")
    view = encoder_view(model)
    cap = Capture(len(view.layers) + 1, pooling, max_examples)
    handles = [
        model.register_forward_pre_hook(cap._start, with_kwargs=True),
        view.embeddings.register_forward_hook(cap._tap(0)),
    ]
    part = "layer" if representation == "layer_output" else "attention_block"
    handles += hook_depths(view, part, lambda i: cap._tap(i + 1))
    try:
        yield cap
    finally:
        for h in handles:
            h.remove()


def _as_captured(feats: Captured | Sequence[Tensor]) -> Captured:
    return feats if isinstance(feats, Captured) else Captured(list(feats))


def _flat(c: Captured) -> Tensor:
    """[n, L*D] on the CPU: the layout every estimator consumes."""
    widths = {t.shape[1] for t in c.layers}
    if len(widths) != 1:
        raise ValueError(f"all layers of one model must have the same width, got {sorted(widths)}")
    return torch.cat([t.detach().cpu() for t in c.layers], dim=1)


class BaselineFeatures:
    """The baseline's side, built once per run and reused at every pruning step. Add each batch's rows
    with `add(batch_index, captured)`; the per-estimator state (centred features and self terms for
    "linear", per-batch Gram summaries for "minibatch") is built on first use. Features are kept in the
    dtype the model gave (float32; float64 input stays float64)."""

    def __init__(self, estimators: Sequence[Estimator] = ("linear",)):
        unknown = set(estimators) - set(ESTIMATORS)
        if unknown:
            raise ValueError(f"unknown estimator(s) {sorted(unknown)}; choose from {ESTIMATORS}")
        self.estimators = tuple(estimators)
        self.n_layers: int | None = None
        self.n_examples = 0
        self._raw: dict[int, Tensor] = {}
        self.rows: dict[int, int] = {}
        self.lengths: dict[int, Tensor | None] = {}
        self.sides: dict[str, LinearBaseline | MinibatchBaseline] = {}

    @classmethod
    def from_batches(cls, batches: Sequence[Captured | Sequence[Tensor]], **kw) -> "BaselineFeatures":
        base = cls(**kw)
        for i, b in enumerate(batches):
            base.add(i, b)
        return base.finalize()

    def add(self, batch_index: int, feats: Captured | Sequence[Tensor]) -> None:
        if self.sides:
            raise RuntimeError("BaselineFeatures is already finalized")
        if batch_index in self.rows:
            raise ValueError(f"baseline batch {batch_index} added twice")
        c = _as_captured(feats)
        if self.n_layers is None:
            self.n_layers = len(c.layers)
        elif len(c.layers) != self.n_layers:
            raise ValueError(f"expected {self.n_layers} layers, got {len(c.layers)}")
        self.rows[batch_index] = c.n_rows
        self.lengths[batch_index] = c.lengths
        self.n_examples += len(c.lengths) if c.lengths is not None else c.n_rows
        if c.n_rows:
            self._raw[batch_index] = _flat(c)

    def finalize(self) -> "BaselineFeatures":
        if self.sides:
            return self
        if not self._raw:
            raise ValueError("the baseline has no rows")
        raw, self._raw = self._raw, {}
        if "minibatch" in self.estimators:
            self.sides["minibatch"] = MinibatchBaseline(raw, self.n_layers)
        if "linear" in self.estimators:
            self.sides["linear"] = LinearBaseline(raw, self.n_layers)  # consumes `raw`
        return self

    @property
    def n_rows(self) -> int:
        return sum(self.rows.values())

    def nbytes(self) -> int:
        return sum(s.nbytes() for s in self.sides.values())


@dataclass
class CKAResult:
    matrix: np.ndarray  # float64 [Lx, Ly]; rows = baseline layers, columns = compared layers, 0 = embeddings
    degenerate: np.ndarray  # bool [Lx, Ly]; True where the value is the documented 0.0, not a CKA
    estimator: str
    n_examples: int
    n_rows: int  # rows behind each entry (tokens for token pooling)
    n_batches: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "matrix": self.matrix.tolist(),
            "degenerate": self.degenerate.tolist(),
            "estimator": self.estimator,
            "n_examples": self.n_examples,
            "n_rows": self.n_rows,
            "n_batches": self.n_batches,
            "notes": self.notes,
        }


class CKAAccumulator:
    """One comparison (one pruning step). `update(batch_index, feats)` with each evaluation batch's
    captured rows; `result()` once every baseline batch has been seen exactly once. Batches that the
    baseline kept 0 rows of (beyond `max_examples`) are ignored. `rtol` sets the degeneracy test."""

    def __init__(self, baseline: BaselineFeatures, estimator: Estimator = "linear", rtol: float = 1e-12):
        if estimator not in baseline.estimators:
            raise ValueError(f"the baseline was built for {baseline.estimators}, not {estimator!r}")
        self.baseline, self.estimator, self.rtol = baseline.finalize(), estimator, rtol
        side = baseline.sides[estimator]
        self._state = LinearState(side) if estimator == "linear" else MinibatchState(side)
        self._seen: set[int] = set()

    def update(self, batch_index: int, feats: Captured | Sequence[Tensor]) -> None:
        c = _as_captured(feats)
        b = self.baseline
        if b.rows.get(batch_index, 0) == 0:
            if c.n_rows == 0:
                return
            raise KeyError(f"batch {batch_index} has rows but the baseline has none for it")
        if batch_index in self._seen:
            raise ValueError(f"batch {batch_index} updated twice")
        if len(c.layers) == 0 or c.n_rows != b.rows[batch_index]:
            raise ValueError(f"batch {batch_index}: {c.n_rows} rows, the baseline has {b.rows[batch_index]}")
        ref = b.lengths[batch_index]
        if ref is not None and c.lengths is not None and not torch.equal(ref, c.lengths.cpu()):
            raise ValueError(
                f"batch {batch_index}: example lengths differ from the baseline's (different batch order?)"
            )
        self._state.update(batch_index, _flat(c), len(c.layers))
        self._seen.add(batch_index)

    def result(self) -> CKAResult:
        expected = {k for k, r in self.baseline.rows.items() if r}
        missing = sorted(expected - self._seen)
        if missing:
            raise ValueError(f"{len(missing)} baseline batch(es) never updated, e.g. {missing[:5]}")
        matrix, flags, notes = cka_from_terms(self._state.terms(), self.rtol)
        n_batches = len(expected)
        if self.estimator == "minibatch":
            skipped = self.baseline.sides["minibatch"].skipped
            if skipped:
                notes.append(f"{len(skipped)} batch(es) under 4 rows left out of the minibatch average")
            n_batches -= len(skipped)
        return CKAResult(
            matrix, flags, self.estimator, self.baseline.n_examples, self.baseline.n_rows, n_batches, notes
        )

    def nbytes(self) -> int:
        return self._state.nbytes()


def collect_baseline(
    model,
    batches,
    representation: Representation = "layer_output",
    pooling: Pooling = "mean",
    max_examples: int | None = None,
    estimators: Sequence[Estimator] = ("linear",),
) -> BaselineFeatures:
    """Run the baseline once over `batches` (dicts of model inputs, or objects with `.model_inputs()`).
    Prefer capturing during an evaluation pass the run makes anyway (see the module docstring)."""
    base = BaselineFeatures(estimators)
    with torch.no_grad(), capture(model, representation, pooling, max_examples) as cap:
        for i, batch in enumerate(batches):
            model(**(batch.model_inputs() if hasattr(batch, "model_inputs") else batch))
            base.add(i, cap.pop())
    return base.finalize()
