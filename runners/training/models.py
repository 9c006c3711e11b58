"""Models and tokenizers: built-in tiny encoders of each supported architecture (no download), local
directories, hub ids; and the check that a model's architecture is one the gates support."""

from __future__ import annotations

import torch
import transformers
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from registry.models import (
    ARCHITECTURES,
    BUILTIN_MODELS,
    check_model_name,
    model_type_of,
    resolve_path,
    unsupported_message,
)
from registry.schema import ModelSpec
from runners.pruning.units import UnsupportedArchitecture


def load_tokenizer(spec: ModelSpec, base_dir: str, words: list[str] | None):
    if spec.tokenizer is not None:
        local = resolve_path(spec.tokenizer, base_dir)
        return AutoTokenizer.from_pretrained(str(local) if local else spec.tokenizer)
    if spec.name in BUILTIN_MODELS:
        if words is None:
            raise ValueError(
                f"built-in model {spec.name!r} has no tokenizer of its own: use a generated task "
                "(it brings its vocabulary) or set model.tokenizer"
            )
        from runners.data.tokenizer import build_word_tokenizer

        return build_word_tokenizer(words, token_types=BUILTIN_MODELS.get(spec.name).architecture.token_types)
    local = resolve_path(spec.name, base_dir)
    return AutoTokenizer.from_pretrained(str(local) if local else spec.name, revision=spec.revision)


def builtin_model(name: str, overrides: dict, num_labels: int, vocab_size: int) -> torch.nn.Module:
    """A randomly initialised built-in model (the caller seeds torch first)."""
    entry = BUILTIN_MODELS.get(name)
    arch = entry.architecture
    config_cls, model_cls = getattr(transformers, arch.config_class), getattr(transformers, arch.model_class)
    return model_cls(config_cls(vocab_size=vocab_size, num_labels=num_labels, **{**entry.config, **overrides}))


def load_pretrained(spec: ModelSpec, base_dir: str, num_labels: int, vocab_size: int, seed: int) -> torch.nn.Module:
    """The pre-trained (not fine-tuned) model with a fresh classifier head; deterministic given the seed."""
    torch.manual_seed(seed)
    if spec.name in BUILTIN_MODELS:
        return builtin_model(spec.name, spec.config, num_labels, vocab_size)
    check_architecture(spec, base_dir)  # a config read, before any weights are fetched
    local = resolve_path(spec.name, base_dir)
    # transformers prints a "LOAD REPORT" table per load saying the classifier head is new: it always is here
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            str(local) if local else spec.name, num_labels=num_labels, revision=spec.revision
        )
    finally:
        hf_logging.set_verbosity(level)


def check_architecture(spec: ModelSpec, base_dir: str, export: bool = False) -> str:
    """The model's type, or UnsupportedArchitecture naming what is supported (and, with `export`, when the
    architecture cannot be exported). Reads only a config: the catalogue's, a local config.json, or the
    hub's config file (cached by transformers) for a hub id the catalogue does not know."""
    problems = check_model_name(spec, base_dir, export=export)
    if problems:
        raise UnsupportedArchitecture("; ".join(f"model {spec.name!r}: {msg}" for _, msg in problems))
    model_type = model_type_of(spec, base_dir)
    if model_type is None:  # a hub id outside the catalogue
        model_type = AutoConfig.from_pretrained(spec.name, revision=spec.revision).model_type
        if model_type not in ARCHITECTURES:
            raise UnsupportedArchitecture(unsupported_message(model_type, repr(spec.name)))
        if export and not ARCHITECTURES.get(model_type).export:
            raise UnsupportedArchitecture(
                f"{spec.name!r} is model type {model_type!r}, which cannot be exported: "
                f"{ARCHITECTURES.get(model_type).note}"
            )
    return model_type


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
