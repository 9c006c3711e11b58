"""L0's teacher: the frozen fine-tuned model's predictions on every training example, computed once.

The full model is frozen and in eval mode (no dropout) while L0 trains its gates, so its output distribution on a
training example never changes. One no_grad pass over the training rows (sorted by length, so batches pad little)
gives an (N, C) float32 table of log-probabilities, row i for encoded training row i (`Batch.indices` looks rows
up). It is kept on disk beside the fine-tuned model cache,

    <store>/.subnets/teacher/<finetune fingerprint>-<training rows digest>-<max_length>.safetensors

and shared by every target, pruning seed, search trial and worker of that fine-tuned model. The file also records
a digest of the model's weights: a file written for other weights (a fine-tuned model trained again under the
same fingerprint, whose last bits moved) is never read; it is computed again and replaced. Writers hold a lock
(registry.files.locked), so two workers never compute one file at once, and write whole files only
(registry.files.replacing), so a reader never sees half of one.
"""

from __future__ import annotations

import hashlib
from array import array
from contextlib import nullcontext
from itertools import chain
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from registry.files import locked, replacing
from runners.data.examples import CPU_FORWARD_TOKENS, batch_count, batches

__all__ = ["TEACHER_BATCH", "cached_teacher", "compute_teacher", "rows_digest", "weights_digest"]

TEACHER_BATCH = 64  # rows per no_grad forward (sorted by length); only the last bits depend on it
FORMAT = "1"


@torch.no_grad()
def compute_teacher(
    model: torch.nn.Module, rows: Sequence[dict], pad_id: int, batch_size: int = TEACHER_BATCH, progress=None
) -> torch.Tensor:
    """(len(rows), C) float32 log-probabilities of `model` (eval mode, as L0's teacher sees it: no gates attached)
    on the encoded `rows`, on the CPU. `progress` (runners.tracking.progress.Progress) shows the pass."""
    if not rows:
        raise ValueError("no training rows to compute teacher predictions on")
    device = next(model.parameters()).device
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))  # stable: ties in file order
    out: torch.Tensor | None = None
    was_training = model.training
    model.eval()
    max_tokens = CPU_FORWARD_TOKENS if device.type == "cpu" else None  # the CPU's memory
    steps = batch_count(rows, batch_size, order, max_tokens)
    task = progress.task("teacher predictions", total=steps) if progress is not None else nullcontext(None)
    try:
        with task as advance:
            for batch in batches(rows, batch_size, pad_id, order, max_tokens):
                inputs = {k: v.to(device) for k, v in batch.model_inputs().items()}
                log_probs = F.log_softmax(model(**inputs).logits.float(), dim=-1).cpu()
                if out is None:
                    out = torch.empty(len(rows), log_probs.shape[-1], dtype=torch.float32)
                out[batch.indices] = log_probs
                if advance is not None:
                    advance(1, "")
    finally:
        model.train(was_training)
    return out


def weights_digest(model: torch.nn.Module) -> str:
    """A hash of every tensor of the model's state (names, dtypes, shapes, bytes): which weights a table is of."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}\x1f{t.dtype}\x1f{tuple(t.shape)}\x1e".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:16]


def rows_digest(rows: Sequence[dict]) -> str:
    """A hash of the encoded training rows (token ids, token types, in order): the data, the tokenizer and the
    truncation length the table's rows are for."""
    h = hashlib.sha256()
    h.update(array("q", [len(r["input_ids"]) for r in rows]).tobytes())
    h.update(array("q", chain.from_iterable(r["input_ids"] for r in rows)).tobytes())
    h.update(array("q", chain.from_iterable(r.get("token_type_ids", ()) for r in rows)).tobytes())
    return h.hexdigest()[:16]


def _read(path: Path, weights: str, n_rows: int) -> torch.Tensor | None:
    """The table at `path` if it is there and was computed from these weights on this many rows."""
    if not path.exists():
        return None
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT or meta.get("weights") != weights:
            return None
        table = f.get_tensor("log_probs")
    return table if table.shape[0] == n_rows else None


def cached_teacher(
    model: torch.nn.Module,
    rows: Sequence[dict],
    pad_id: int,
    path: Path,
    progress=None,
    batch_size: int = TEACHER_BATCH,
) -> torch.Tensor:
    """The teacher table of `model` on `rows` (see `compute_teacher`), read from `path` when a table of these
    weights is there, else computed and written there (under a lock: a worker that waited reads the other's)."""
    path = Path(path)
    weights = weights_digest(model)
    table = _read(path, weights, len(rows))
    if table is not None:
        return table
    with locked(path.parent / f"{path.stem}.lock"):
        table = _read(path, weights, len(rows))  # written by the worker we waited for
        if table is not None:
            return table
        table = compute_teacher(model, rows, pad_id, batch_size, progress)
        meta = {"format": FORMAT, "weights": weights, "rows": rows_digest(rows), "batch_size": str(batch_size)}
        with replacing(path) as tmp:
            save_file({"log_probs": table.contiguous()}, str(tmp), metadata=meta)
    return table
