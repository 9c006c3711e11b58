"""Models and tokenizers: built-in tiny BERTs (no download), local directories, hub ids."""
from __future__ import annotations

import re
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification

from runners.catalogue import Catalogue

BUILTIN_MODELS: Catalogue[dict] = Catalogue("built-in model")
BUILTIN_MODELS.add("tiny-bert", dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512,
                                     max_position_embeddings=128), "4 layers, 4 heads, hidden 128, randomly initialised")
BUILTIN_MODELS.add("micro-bert", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                      max_position_embeddings=64), "2 layers, 4 heads, hidden 32 (tests)")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def resolve_path(name: str, base_dir: str) -> Path | None:
    """The local model directory `name` points to, if any (relative to experiments.toml)."""
    p = Path(name).expanduser()
    p = p if p.is_absolute() else Path(base_dir) / p
    return p if p.is_dir() else None


def check_model_name(spec, base_dir: str) -> list[tuple[str, str]]:
    if spec.name in BUILTIN_MODELS:
        return []
    problems = []
    if spec.config:
        problems.append(("model.config", "config overrides apply to built-in models only"))
    if resolve_path(spec.name, base_dir) is not None:
        return problems
    close = BUILTIN_MODELS.close_match(spec.name)
    if close:
        problems.append(("model.name", f"unknown model {spec.name!r}; did you mean the built-in {close!r}?"))
    elif spec.name.startswith((".", "/", "~")) or not _HUB_ID.match(spec.name):
        problems.append(("model.name", f"{spec.name!r} is neither a built-in ({', '.join(BUILTIN_MODELS.names())}), "
                                       "an existing directory, nor a hub id"))
    return problems


def load_tokenizer(spec, base_dir: str, words: list[str] | None):
    if spec.tokenizer is not None:
        local = resolve_path(spec.tokenizer, base_dir)
        return AutoTokenizer.from_pretrained(str(local) if local else spec.tokenizer)
    if spec.name in BUILTIN_MODELS:
        if words is None:
            raise ValueError(f"built-in model {spec.name!r} has no tokenizer of its own: use a generated task "
                             "(it brings its vocabulary) or set model.tokenizer")
        from runners.tokenizer import build_word_tokenizer

        return build_word_tokenizer(words)
    local = resolve_path(spec.name, base_dir)
    return AutoTokenizer.from_pretrained(str(local) if local else spec.name, revision=spec.revision)


def load_pretrained(spec, base_dir: str, num_labels: int, vocab_size: int, seed: int) -> torch.nn.Module:
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
