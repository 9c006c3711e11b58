"""Evaluation: accuracy and the task's own metrics on a set, accuracy per subcase; batches padded per
batch and sorted by length."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from runners.data.examples import CPU_FORWARD_TOKENS, Batch, EvalSet, batches, encode
from runners.training.metrics import compute


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

    def batches(self, batch_size: int, pad_id: int, max_tokens: int | None = None):
        return batches(self.rows, batch_size, pad_id, self.order, max_tokens)


@dataclass
class EvalResult:
    name: str
    kind: str
    correct: int
    n: int
    subcases: dict[str, tuple[int, int]] = field(default_factory=dict)  # subcase -> (correct, n)
    cka: object | None = None  # a runners.cka.engine.CKAResult when this pass also compared representations
    metrics: dict[str, float] = field(default_factory=dict)  # the task's metrics on the whole set (accuracy included)
    primary: str = "accuracy"  # the task's own metric: what `score` is
    regression: bool = False

    @property
    def accuracy(self) -> float:
        """Fraction correct (NaN for a regression task, which has no labels to hit)."""
        return self.correct / self.n if self.n and not self.regression else float("nan")

    @property
    def score(self) -> float:
        """The primary metric: what the keep rule, the search and the effective size judge by."""
        return self.accuracy if self.primary == "accuracy" else self.metrics.get(self.primary, float("nan"))


OnBatch = Callable[[int, object, Batch], None]


@torch.no_grad()
def evaluate(
    model,
    data: EncodedSet,
    batch_size: int,
    pad_id: int,
    on_batch: OnBatch | None = None,
    output_hidden_states: bool = False,
) -> EvalResult:
    """Accuracy and the task's metrics of `model` on `data`; `on_batch(index, outputs, batch)` sees every
    forward pass. A regression set's predictions are the model's single output (no accuracy)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    es = data.eval_set
    pred_map = torch.tensor(es.pred_map, device=device) if es.pred_map else None
    correct, n, sub = 0, 0, {}
    preds, golds = [], []
    max_tokens = CPU_FORWARD_TOKENS if device.type == "cpu" else None  # the CPU's memory: see CPU_FORWARD_TOKENS
    for i, batch in enumerate(data.batches(batch_size, pad_id, max_tokens)):
        batch = batch.to(device)
        out = model(**batch.model_inputs(), output_hidden_states=output_hidden_states)
        if es.regression:
            pred = out.logits[:, 0].float()
        else:
            pred = out.logits.argmax(-1)
            if pred_map is not None:
                pred = pred_map[pred]
            hits = (pred == batch.labels).tolist()
            correct += sum(hits)
            for h, s in zip(hits, batch.subcases):
                if s is not None:
                    c, m = sub.get(s, (0, 0))
                    sub[s] = (c + h, m + 1)
        preds += pred.tolist()
        golds += batch.labels.tolist()
        n += len(batch.labels)
        if on_batch is not None:
            on_batch(i, out, batch)
    model.train(was_training)
    values = compute(es.metrics, preds, golds, None if es.regression else len(es.labels) or None) if n else {}
    return EvalResult(
        es.name,
        es.kind,
        correct,
        n,
        dict(sorted(sub.items())),
        metrics=values,
        primary=es.primary,
        regression=es.regression,
    )


def evaluate_all(model, sets: list[EncodedSet], batch_size: int, pad_id: int) -> dict[str, EvalResult]:
    return {s.eval_set.name: evaluate(model, s, batch_size, pad_id) for s in sets}
