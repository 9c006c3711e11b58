"""The model catalogue: built-in tiny BERTs (built from a config, no download), and how a model name is
checked: a built-in, an existing local directory (relative to experiments.toml), or a hub id."""
from __future__ import annotations

import re
from pathlib import Path

from registry.catalogue import Catalogue
from registry.schema import ModelSpec

BUILTIN_MODELS: Catalogue[dict] = Catalogue("built-in model")
BUILTIN_MODELS.add("tiny-bert", dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512,
                                     max_position_embeddings=128), "4 layers, 4 heads, hidden 128, randomly initialised")
BUILTIN_MODELS.add("micro-bert", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                      max_position_embeddings=64), "2 layers, 4 heads, hidden 32 (tests)")
# BertConfig keys a built-in model may override (a typo would otherwise be dropped and the default trained)
CONFIG_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
               "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size",
               "initializer_range", "layer_norm_eps", "classifier_dropout")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def resolve_path(name: str, base_dir: str) -> Path | None:
    """The local model directory `name` points to, if any (relative to experiments.toml)."""
    p = Path(name).expanduser()
    p = p if p.is_absolute() else Path(base_dir) / p
    return p if p.is_dir() else None


def check_model_name(spec: ModelSpec, base_dir: str) -> list[tuple[str, str]]:
    """Problems with a model spec as (dotted key, message); empty when it names something loadable."""
    if spec.name in BUILTIN_MODELS:
        from registry.catalogue import did_you_mean

        problems = [(f"model.config.{k}", f"not a BertConfig key a built-in model takes{did_you_mean(k, CONFIG_KEYS)} "
                     f"(keys: {', '.join(CONFIG_KEYS)})") for k in spec.config if k not in CONFIG_KEYS]
        cfg = {**BUILTIN_MODELS.get(spec.name), **spec.config}
        hidden, heads = cfg.get("hidden_size"), cfg.get("num_attention_heads")
        if isinstance(hidden, int) and isinstance(heads, int) and heads > 0 and hidden % heads:
            problems.append(("model.config", f"hidden_size {hidden} is not a multiple of num_attention_heads {heads}"))
        return problems
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
