"""Fine-tuning: AdamW, linear warm-up then linear decay, per-batch padding, gradient clipping.

Deterministic on CPU given the seed: the shuffling generator and torch's global RNG (dropout, the
classifier head's init) are both seeded from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from registry.files import replacing
from registry.schema import FinetuneSpec
from runners.data.examples import batches
from runners.tracking.progress import Progress


@dataclass
class FinetuneHistory:
    loss: list[tuple[int, float]] = field(default_factory=list)  # (step, mean loss since the last entry)
    steps: int = 0
    seconds: float = 0.0
    resumed_epoch: int | None = None  # the epoch a checkpoint resumed from


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and LayerNorm weights (the usual BERT recipe)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def linear_schedule(optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class Checkpoint:
    """Where fine-tuning saves its whole state at the end of every epoch, so a killed fine-tuning resumes
    from its last epoch and ends bit-identical to an uninterrupted one (model, optimiser, schedule, the
    shuffling generator and torch's RNG, the loss curve, and the caller's `extra` records)."""

    path: Path
    extra: Callable[[], Any] = lambda: None  # the caller's state to keep (e.g. per-epoch evaluations)
    restore: Callable[[Any], None] = lambda extra: None  # gives that state back when training resumes

    def save(self, state: dict) -> None:
        # atomic: a kill mid-save keeps the previous epoch's checkpoint
        with replacing(self.path, tmp=self.path.with_name(self.path.name + ".tmp")) as tmp:
            torch.save({**state, "extra": self.extra()}, tmp)

    def load(self) -> dict | None:
        return torch.load(self.path, weights_only=True) if self.path.exists() else None

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


GROUP_BATCHES = 50  # batches per length-sorted group, as transformers' LengthGroupedSampler


def length_grouped(order: list[int], lengths: list[int], batch_size: int, gen: torch.Generator) -> list[int]:
    """`order` cut into groups of GROUP_BATCHES batches, each sorted by length, then the batches shuffled:
    a batch holds examples of similar length (little padding), and long and short batches stay mixed over
    the epoch instead of coming longest first."""
    size = GROUP_BATCHES * batch_size
    grouped = [i for k in range(0, len(order), size) for i in sorted(order[k : k + size], key=lambda i: -lengths[i])]
    cut = [grouped[k : k + batch_size] for k in range(0, len(grouped), batch_size)]
    return [i for b in torch.randperm(len(cut), generator=gen).tolist() for i in cut[b]]


def train_step(model: torch.nn.Module, batch, opt: torch.optim.Optimizer, sched, max_grad_norm: float) -> torch.Tensor:
    """One optimizer step on one batch: the loss, its gradients clipped to `max_grad_norm`, AdamW and the
    schedule stepped. Returns the loss (benchmarks/trainer.py times this same step)."""
    loss = model(**batch.model_inputs(), labels=batch.labels).loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    opt.step()
    sched.step()
    return loss


def finetune(
    model,
    train_rows: list[dict],
    spec: FinetuneSpec,
    seed: int,
    pad_id: int,
    progress: Progress,
    on_epoch: Callable[[int], None] | None = None,
    log_every: int = 20,
    after_step: Callable[[], None] | None = None,
    label: str = "fine-tuning",
    checkpoint: Checkpoint | None = None,
) -> FinetuneHistory:
    """Train `model` in place on tokenized rows (see runners.data.examples.encode).

    `after_step` runs after every optimiser step (re-fine-tuning re-applies weight masks there). With a
    `checkpoint`, training resumes from the one saved there (history.resumed_epoch) and saves one per epoch."""
    import time

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rows = train_rows[: spec.max_train_examples] if spec.max_train_examples else train_rows
    per_epoch = math.ceil(len(rows) / spec.batch_size)
    total = max(1, math.ceil(spec.epochs * per_epoch))
    # fused: one kernel for all parameters (CPU and CUDA, torch >= 2.4), as transformers.Trainer uses; the
    # per-tensor loop cost 30% of a step on short, length-grouped batches (benchmarks/trainer.py)
    opt = torch.optim.AdamW(param_groups(model, spec.weight_decay), lr=spec.lr, fused=True)
    sched = linear_schedule(opt, int(spec.warmup_ratio * total), total)
    history = FinetuneHistory()
    started = time.perf_counter()
    model.train()
    device = next(model.parameters()).device
    step, running, count, epoch = 0, 0.0, 0, 0
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        gen.set_state(saved["generator"])
        torch.set_rng_state(saved["rng"])
        step, running, count, epoch = (
            int(saved["step"]),
            float(saved["running"]),
            int(saved["count"]),
            int(saved["epoch"]),
        )
        history.loss = [(int(s), float(v)) for s, v in saved["loss"]]
        history.resumed_epoch = epoch
        checkpoint.restore(saved.get("extra"))
        started -= float(saved["seconds"])
        progress.log(f"{label}: resumed after epoch {epoch} (step {step} of {total}) from {checkpoint.path.name}")
    if after_step is not None:
        after_step()
    with progress.task(label, total=total) as advance:
        advance(step, "resumed" if saved is not None else "")
        while step < total:
            order = torch.randperm(len(rows), generator=gen).tolist()
            if spec.length_grouped:
                order = length_grouped(order, [len(r["input_ids"]) for r in rows], spec.batch_size, gen)
            for batch in batches(rows, spec.batch_size, pad_id, order):
                loss = train_step(model, batch.to(device), opt, sched, spec.max_grad_norm)
                if after_step is not None:
                    after_step()
                step += 1
                running += loss.item()
                count += 1
                if step % log_every == 0 or step == total:
                    history.loss.append((step, running / count))
                    running, count = 0.0, 0
                advance(1, f"loss {history.loss[-1][1]:.3f}" if history.loss else "")
                if step >= total:
                    break
            epoch += 1
            if on_epoch is not None:
                on_epoch(epoch)
            if checkpoint is not None and step < total:
                checkpoint.save(
                    {
                        "model": model.state_dict(),
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(),
                        "generator": gen.get_state(),
                        "rng": torch.get_rng_state(),
                        "step": step,
                        "epoch": epoch,
                        "running": running,
                        "count": count,
                        "loss": history.loss,
                        "seconds": time.perf_counter() - started,
                    }
                )
    model.eval()
    history.steps = step
    history.seconds = time.perf_counter() - started
    return history
