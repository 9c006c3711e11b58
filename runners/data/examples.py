"""Task data as plain Python objects, and batching with per-batch dynamic padding.

Every task (built-in, local files, hub) is turned into a `TaskData`: a training list, one in-domain
evaluation set and zero or more out-of-domain evaluation sets. Examples carry an optional `subcase`
(e.g. a HANS heuristic) so accuracy can be reported per subcase.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch


@dataclass(frozen=True)
class Example:
    text_a: str
    text_b: str | None
    label: int | float  # a label index, or a regression task's score
    subcase: str | None = None


@dataclass
class EvalSet:
    name: str  # "id" for the in-domain set, the declared OOD name otherwise
    kind: str  # "id" | "ood"
    examples: list[Example]
    pred_map: list[int] | None = None  # model label index -> this set's label index (MNLI -> HANS)
    metrics: tuple[str, ...] = ("accuracy",)  # computed on every evaluation (registry.tasks.task_metrics)
    primary: str = "accuracy"  # the one the keep rule judges by
    regression: bool = False  # predictions are the model's single output, not an argmax
    labels: tuple[str, ...] = ()  # this set's label names (binary metrics need two)


@dataclass
class TaskData:
    train: list[Example]
    id_eval: EvalSet
    ood: list[EvalSet] = field(default_factory=list)
    label_names: list[str] = field(default_factory=list)
    regression: bool = False

    @property
    def num_labels(self) -> int:
        """Outputs of the classifier head: one per label, or one score for a regression task."""
        return 1 if self.regression else len(self.label_names)

    @property
    def eval_sets(self) -> list[EvalSet]:
        return [self.id_eval, *self.ood]


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor | None
    labels: torch.Tensor
    subcases: list[str | None]
    # each row's position in the encoded rows the batch was cut from (`batches`): what per-example caches are
    # looked up by (L0's teacher predictions); None for batches built by hand
    indices: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> "Batch":
        """The batch's tensors on `device` (the same batch when they are there already)."""
        if self.input_ids.device == torch.device(device):
            return self
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch(
            move(self.input_ids),
            move(self.attention_mask),
            move(self.token_type_ids),
            move(self.labels),
            self.subcases,
            move(self.indices),
        )

    def model_inputs(self) -> dict[str, torch.Tensor]:
        out = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.token_type_ids is not None:
            out["token_type_ids"] = self.token_type_ids
        return out


def encode(tokenizer, examples: Sequence[Example], max_length: int) -> list[dict]:
    """Tokenize once, without padding; padding happens per batch in `batches`."""
    a = [e.text_a for e in examples]
    b = [e.text_b for e in examples] if examples and examples[0].text_b is not None else None
    enc = tokenizer(a, b, truncation=True, max_length=max_length, padding=False)
    keys = [k for k in ("input_ids", "token_type_ids") if k in enc]
    return [{**{k: enc[k][i] for k in keys}, "label": e.label, "subcase": e.subcase} for i, e in enumerate(examples)]


# A no_grad forward on the CPU holds at most this many padded tokens (evaluation, the teacher table): its activations
# then stay ~200 MB for a MiniLM-sized model, where 128 rows of 128 tokens held ~480 MB at a worker's peak (measured
# by benchmarks/memory.py); the CPU computes as fast in the smaller batches (matrix products of 4,096 rows)
CPU_FORWARD_TOKENS = 4096


def batches(
    encoded: Sequence[dict],
    batch_size: int,
    pad_id: int,
    order: Sequence[int] | None = None,
    max_tokens: int | None = None,
) -> Iterator[Batch]:
    """Yield batches padded to the longest sequence of each batch (not to the maximum length); each batch says
    which rows of `encoded` it holds (`Batch.indices`). With `max_tokens`, a batch also ends before its rows x its
    longest row would pass it (one row at least)."""
    idx = list(order) if order is not None else list(range(len(encoded)))
    for picked in _groups(encoded, idx, batch_size, max_tokens):
        rows = [encoded[i] for i in picked]
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        has_tt = "token_type_ids" in rows[0]
        tt = torch.zeros((len(rows), width), dtype=torch.long) if has_tt else None
        for j, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[j, :n] = torch.tensor(r["input_ids"])
            mask[j, :n] = 1
            if has_tt:
                tt[j, :n] = torch.tensor(r["token_type_ids"])
        floats = isinstance(rows[0]["label"], float)  # a regression task's scores (MSE loss in transformers)
        labels = torch.tensor([r["label"] for r in rows], dtype=torch.float if floats else torch.long)
        yield Batch(ids, mask, tt, labels, [r["subcase"] for r in rows], torch.tensor(picked, dtype=torch.long))


def batch_count(
    encoded: Sequence[dict], batch_size: int, order: Sequence[int] | None = None, max_tokens: int | None = None
) -> int:
    """How many batches `batches` yields for these arguments."""
    idx = list(order) if order is not None else list(range(len(encoded)))
    return sum(1 for _ in _groups(encoded, idx, batch_size, max_tokens))


def _groups(encoded: Sequence[dict], idx: list[int], batch_size: int, max_tokens: int | None) -> Iterator[list[int]]:
    if max_tokens is None:
        for start in range(0, len(idx), batch_size):
            yield idx[start : start + batch_size]
        return
    group: list[int] = []
    width = 0
    for i in idx:
        n = len(encoded[i]["input_ids"])
        if group and (len(group) == batch_size or (len(group) + 1) * max(width, n) > max_tokens):
            yield group
            group, width = [], 0
        group.append(i)
        width = max(width, n)
    if group:
        yield group
