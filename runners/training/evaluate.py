"""Evaluation: accuracy on a set and per subcase, batches padded per batch and sorted by length."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from runners.data.examples import Batch, EvalSet, batches, encode


@dataclass
class EncodedSet:
    """An evaluation set tokenized once, in a fixed length-sorted order (so batches pad little and every
    model sees the same batches in the same order, which CKA relies on)."""

    eval_set: EvalSet
    rows: list[dict]
    order: list[int]

    @classmethod
    def build(cls, tokenizer, eval_set: EvalSet, max_length: int, lead: int | None = None) -> "EncodedSet":
        """`lead`: the first N examples (file order) come first in the evaluation order, so a CKA
        comparison on them rides on the evaluation's own first batches; each part is length-sorted."""
        rows = encode(tokenizer, eval_set.examples, max_length)
        by_len = lambda idx: sorted(idx, key=lambda i: len(rows[i]["input_ids"]))  # noqa: E731
        n = len(rows) if lead is None else min(lead, len(rows))
        return cls(eval_set, rows, by_len(range(n)) + by_len(range(n, len(rows))))

    def batches(self, batch_size: int, pad_id: int):
        return batches(self.rows, batch_size, pad_id, self.order)


@dataclass
class EvalResult:
    name: str
    kind: str
    correct: int
    n: int
    subcases: dict[str, tuple[int, int]] = field(default_factory=dict)  # subcase -> (correct, n)
    cka: object | None = None  # a runners.cka.engine.CKAResult when this pass also compared representations

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else float("nan")


OnBatch = Callable[[int, object, Batch], None]


@torch.no_grad()
def evaluate(model, data: EncodedSet, batch_size: int, pad_id: int, on_batch: OnBatch | None = None,
             output_hidden_states: bool = False) -> EvalResult:
    """Accuracy of `model` on `data`; `on_batch(index, outputs, batch)` sees every forward pass."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pred_map = torch.tensor(data.eval_set.pred_map, device=device) if data.eval_set.pred_map else None
    correct, n, sub = 0, 0, {}
    for i, batch in enumerate(data.batches(batch_size, pad_id)):
        batch = batch.to(device)
        out = model(**batch.model_inputs(), output_hidden_states=output_hidden_states)
        pred = out.logits.argmax(-1)
        if pred_map is not None:
            pred = pred_map[pred]
        hits = (pred == batch.labels).tolist()
        correct += sum(hits)
        n += len(hits)
        for h, s in zip(hits, batch.subcases):
            if s is not None:
                c, m = sub.get(s, (0, 0))
                sub[s] = (c + h, m + 1)
        if on_batch is not None:
            on_batch(i, out, batch)
    model.train(was_training)
    return EvalResult(data.eval_set.name, data.eval_set.kind, correct, n, dict(sorted(sub.items())))


def evaluate_all(model, sets: list[EncodedSet], batch_size: int, pad_id: int) -> dict[str, EvalResult]:
    return {s.eval_set.name: evaluate(model, s, batch_size, pad_id) for s in sets}
