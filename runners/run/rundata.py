"""The evaluation and training-data plumbing a run hands to its pruning recipe (PruneContext)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch

from registry.files import locked, replacing
from registry.schema import RunSpec
from runners.cka.tracker import CKATracker
from runners.data.examples import Batch, TaskData, batches, encode
from runners.pruning.gates import UnitMeans, compute_unit_means
from runners.pruning.teacher import cached_teacher, rows_digest
from runners.training.evaluate import EncodedSet, EvalResult, evaluate

MEAN_EXAMPLES = 2048  # training examples whose tokens define each unit's mean output (mean ablation)


class RunData:
    """Tokenized evaluation sets (built once) and lazily tokenized training rows."""

    def __init__(self, spec: RunSpec, task: TaskData, tokenizer, pad: int):
        self.spec, self.task, self.tokenizer, self.pad = spec, task, tokenizer, pad
        cka = spec.cka
        self.cka = CKATracker(cka) if cka is not None else None
        self.sets = [
            EncodedSet.build(
                tokenizer,
                s,
                spec.task.max_length,
                lead=cka.examples if cka is not None and s.name == cka.split else None,
            )
            for s in task.eval_sets
        ]
        self._train: list[dict] | None = None

    @property
    def train_rows(self) -> list[dict]:
        if self._train is None:
            self._train = encode(self.tokenizer, self.task.train, self.spec.task.max_length)
        return self._train

    def evaluate(self, model, variant: bool = False) -> dict[str, EvalResult]:
        """Every evaluation set; the CKA split's pass also feeds the CKA comparison when one is due
        (the first call builds the baseline's side; `variant` = controls/re-fine-tuned, always compared)."""
        bs = self.spec.finetune.eval_batch_size
        out = {}
        for s in self.sets:
            name = s.eval_set.name
            if self.cka is not None and name == self.cka.spec.split and self.cka.wants(force=variant):
                with self.cka.observe(model) as (on_batch, result):
                    out[name] = evaluate(model, s, bs, self.pad, on_batch=on_batch)
                    out[name].cka = result()
            else:
                out[name] = evaluate(model, s, bs, self.pad)
        return out

    def train_batches(
        self, n_examples: int | None = None, batch_size: int = 32, shuffle: bool = False, epoch: int = 0
    ) -> Iterator[Batch]:
        """Training batches: the first n examples in file order, or a seeded shuffle per epoch."""
        rows = self.train_rows[:n_examples] if n_examples else self.train_rows
        order = None
        if shuffle:
            gen = torch.Generator().manual_seed(self.spec.prune_seed * 100_003 + epoch)
            order = torch.randperm(len(rows), generator=gen).tolist()
        return batches(rows, batch_size, self.pad, order)

    def unit_means(self, model, cache_dir: Path) -> UnitMeans:
        """Mean unit outputs of the (unpruned) fine-tuned model, cached per fine-tuned model + task."""
        path = cache_dir / f"{self.spec.finetune_fingerprint}.safetensors"
        device = next(model.parameters()).device
        if path.exists():
            return UnitMeans.load(path, device=device)
        with locked(cache_dir / f"{self.spec.finetune_fingerprint}.lock"):  # workers at once: one computes
            if path.exists():
                return UnitMeans.load(path, device=device)
            means = compute_unit_means(model, self.train_batches(MEAN_EXAMPLES, 64))
            with replacing(path) as tmp:  # atomic: a kill never leaves a half-written cache entry
                means.save(tmp)
        return means

    def teacher(self, model, cache_dir: Path, progress=None) -> torch.Tensor:
        """The frozen model's log-probabilities on every training row (runners.pruning.teacher), cached per
        fine-tuned model, training rows and max_length; checked against the model's weights when read."""
        name = f"{self.spec.finetune_fingerprint}-{rows_digest(self.train_rows)}-{self.spec.task.max_length}"
        return cached_teacher(model, self.train_rows, self.pad, cache_dir / f"{name}.safetensors", progress)
