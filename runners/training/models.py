"""Models and tokenizers: built-in tiny BERTs (no download), local directories, hub ids."""
from __future__ import annotations

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification

from registry.models import BUILTIN_MODELS, resolve_path
from registry.schema import ModelSpec

def load_tokenizer(spec: ModelSpec, base_dir: str, words: list[str] | None):
    if spec.tokenizer is not None:
        local = resolve_path(spec.tokenizer, base_dir)
        return AutoTokenizer.from_pretrained(str(local) if local else spec.tokenizer)
    if spec.name in BUILTIN_MODELS:
        if words is None:
            raise ValueError(f"built-in model {spec.name!r} has no tokenizer of its own: use a generated task "
                             "(it brings its vocabulary) or set model.tokenizer")
        from runners.data.tokenizer import build_word_tokenizer

        return build_word_tokenizer(words)
    local = resolve_path(spec.name, base_dir)
    return AutoTokenizer.from_pretrained(str(local) if local else spec.name, revision=spec.revision)


def load_pretrained(spec: ModelSpec, base_dir: str, num_labels: int, vocab_size: int, seed: int) -> torch.nn.Module:
    """The pre-trained (not fine-tuned) model with a fresh classifier head; deterministic given the seed."""
    torch.manual_seed(seed)
    if spec.name in BUILTIN_MODELS:
        cfg = {**BUILTIN_MODELS.get(spec.name), **spec.config}
        return BertForSequenceClassification(BertConfig(vocab_size=vocab_size, num_labels=num_labels, **cfg))
    local = resolve_path(spec.name, base_dir)
    return AutoModelForSequenceClassification.from_pretrained(
        str(local) if local else spec.name, num_labels=num_labels, revision=spec.revision)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
