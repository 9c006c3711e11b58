"""The evaluation and training-data plumbing a run hands to its pruning recipe (PruneContext)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch

from runners.data import Batch, TaskData, batches, encode
from runners.evaluate import EncodedSet, EvalResult, evaluate
from runners.gates import UnitMeans, compute_unit_means

MEAN_EXAMPLES = 2048  # training examples whose tokens define each unit's mean output (mean ablation)


class RunData:
    """Tokenized evaluation sets (built once) and lazily tokenized training rows."""

    def __init__(self, spec, task: TaskData, tokenizer, pad: int):
        self.spec, self.task, self.tokenizer, self.pad = spec, task, tokenizer, pad
        self.sets = [EncodedSet.build(tokenizer, s, spec.task.max_length) for s in task.eval_sets]
        self._train: list[dict] | None = None

    @property
    def train_rows(self) -> list[dict]:
        if self._train is None:
            self._train = encode(self.tokenizer, self.task.train, self.spec.task.max_length)
        return self._train

    def evaluate(self, model, on_batch=None, output_hidden_states: bool = False) -> dict[str, EvalResult]:
        bs = self.spec.finetune.eval_batch_size
        return {s.eval_set.name: evaluate(model, s, bs, self.pad, on_batch=on_batch if s.eval_set.kind == "id" else None,
                                          output_hidden_states=output_hidden_states and s.eval_set.kind == "id")
                for s in self.sets}

    def train_batches(self, n_examples: int | None = None, batch_size: int = 32, shuffle: bool = False,
                      epoch: int = 0) -> Iterator[Batch]:
        """Training batches: the first n examples in file order, or a seeded shuffle per epoch."""
        rows = self.train_rows[:n_examples] if n_examples else self.train_rows
        order = None
        if shuffle:
            gen = torch.Generator().manual_seed(self.spec.seed * 100_003 + epoch)
            order = torch.randperm(len(rows), generator=gen).tolist()
        return batches(rows, batch_size, self.pad, order)

    def unit_means(self, model, cache_dir: Path) -> UnitMeans:
        """Mean unit outputs of the (unpruned) fine-tuned model, cached per fine-tuned model + task."""
        path = cache_dir / f"{self.spec.finetune_fingerprint}.safetensors"
        if path.exists():
            return UnitMeans.load(path)
        means = compute_unit_means(model, self.train_batches(MEAN_EXAMPLES, 64))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        means.save(tmp)
        tmp.replace(path)  # atomic: a kill never leaves a half-written cache entry
        return means
