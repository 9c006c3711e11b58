"""The fine-tuned model of a run, trained once and cached by its fine-tune fingerprint.

Runs that differ only in pruning share one fine-tuned model. The cache lives under
<store root>/.subnets/finetuned/<fingerprint>/ and is written atomically (temp dir + rename), so a
killed fine-tuning leaves no half-written model behind.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from registry.files import locked, replacing
from registry.schema import RunSpec
from runners.data.examples import TaskData, encode
from runners.data.tasks import task_words
from runners.tracking.progress import Progress
from runners.training.evaluate import EncodedSet, evaluate
from runners.training.finetune import Checkpoint, finetune
from runners.training.hub import resolved_revision
from runners.training.memory import release_memory
from runners.training.models import load_pretrained, load_tokenizer


@dataclass
class Finetuned:
    model: torch.nn.Module
    tokenizer: object
    record: dict  # seconds, steps, loss curve, per-epoch evaluation; logged by the runner
    cached: bool


def pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def pretrained(spec: RunSpec, task: TaskData, device: torch.device | str = "cpu"):
    """(tokenizer, pre-trained model on `device`) before fine-tuning; also the start of re-fine-tuning."""
    tokenizer = load_tokenizer(spec.model, spec.base_dir, task_words(spec.task))
    model = load_pretrained(spec.model, spec.base_dir, task.num_labels, len(tokenizer), spec.seed)
    return tokenizer, model.to(device)


def get_finetuned(
    spec: RunSpec, task: TaskData, cache_root: Path, progress: Progress, device: torch.device | str = "cpu"
) -> Finetuned:
    hf_logging.disable_progress_bar()  # a "Loading weights" bar per cached load is noise between our own bars
    target = cache_root / "finetuned" / spec.finetune_fingerprint
    if (target / "record.json").exists():
        return _load_cached(target, device, progress)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Workers that need the same fine-tuned model at once: one trains, the others wait and load it.
    with locked(target.parent / f"{spec.finetune_fingerprint}.lock"):
        if (target / "record.json").exists():
            return _load_cached(target, device, progress)
        return _train(spec, task, target, progress, device)


def finetune_first(specs: list[RunSpec], cache_root: Path, progress: Progress) -> int:
    """Fine-tune, one after the other and with this process's torch threads, the models these runs use that are not
    cached yet, so that the workers started next load them instead of one training while the others wait on its
    lock with their cores idle. Returns how many were trained."""
    from runners.data import build_task
    from runners.training.device import precision, resolve_device

    trained, seen = 0, set()
    for spec in specs:
        fp = spec.finetune_fingerprint
        if fp in seen or (cache_root / "finetuned" / fp / "record.json").exists():
            continue
        seen.add(fp)
        device = resolve_device(spec.runtime)
        with precision(spec.runtime, device):  # as the run itself would fine-tune it
            get_finetuned(spec, build_task(spec.task, spec.base_dir), cache_root, progress, device)
        trained += 1
    release_memory()
    return trained


def _load_cached(target: Path, device, progress: Progress) -> Finetuned:
    model = AutoModelForSequenceClassification.from_pretrained(target).to(device)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(target)
    progress.log(f"fine-tuned model from cache {target}")
    return Finetuned(model, tokenizer, json.loads((target / "record.json").read_text()), cached=True)


def _train(spec: RunSpec, task: TaskData, target: Path, progress: Progress, device) -> Finetuned:
    tokenizer, model = pretrained(spec, task, device)
    revision = resolved_revision(spec.model.name, spec.model.revision, spec.base_dir)  # the commit a hub id loaded
    pad = pad_id(tokenizer)
    rows = encode(tokenizer, task.train, spec.task.max_length)
    sets = [EncodedSet.build(tokenizer, s, spec.task.max_length) for s in task.eval_sets]
    per_epoch: list[dict] = []

    def on_epoch(epoch: int) -> None:
        # the task's metric
        results = {s.eval_set.name: evaluate(model, s, spec.finetune.eval_batch_size, pad).score for s in sets}
        per_epoch.append({"epoch": epoch, **results})
        progress.log(f"epoch {epoch}: " + ", ".join(f"{k} {v:.3f}" for k, v in results.items()))

    # a kill loses at most the epoch in progress: the next run resumes from this checkpoint
    checkpoint = Checkpoint(
        target.parent / f".{target.name}.checkpoint.pt",
        extra=lambda: per_epoch,
        restore=lambda saved: per_epoch.extend(saved or []),
    )
    history = finetune(model, rows, spec.finetune, spec.seed, pad, progress, on_epoch=on_epoch, checkpoint=checkpoint)
    record = {
        "seconds": history.seconds,
        "steps": history.steps,
        "loss": history.loss,
        "epochs": per_epoch,
        "train_examples": len(rows),
        "resumed_after_epoch": history.resumed_epoch,
        "model_revision": revision,
        "torch_threads": torch.get_num_threads(),  # the fused optimizer's last bits depend on it
    }
    for stale in target.parent.glob(f".tmp-{target.name}-*"):  # a writer killed mid-save (we hold its lock now)
        shutil.rmtree(stale, ignore_errors=True)
    # we hold the fingerprint's lock and found no record: nobody else writes `target`, and a directory there
    # without a record is no model
    shutil.rmtree(target, ignore_errors=True)
    with replacing(target, tmp=target.parent / f".tmp-{target.name}-{os.getpid()}", mode=None) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "record.json").write_text(json.dumps(record))
    checkpoint.clear()
    return Finetuned(model, tokenizer, record, cached=False)
