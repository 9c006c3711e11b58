"""The model catalogue: the encoder architectures the gates support, built-in tiny models (built from a
config, no download), well-known hub encoders, and how a model name is checked: a built-in, an existing
local directory (relative to experiments.toml; its config.json says its architecture), or a hub id."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from registry.catalogue import Catalogue, did_you_mean
from registry.schema import ModelSpec

# Keys every BERT-layout config class (BertConfig, RobertaConfig, ElectraConfig, AlbertConfig) shares.
_BERT_KEYS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "type_vocab_size",
    "initializer_range",
    "layer_norm_eps",
)


@dataclass(frozen=True)
class Architecture:
    """An encoder family the gates know: where its units are is runners.pruning.units' business; what a
    config is called, which keys a built-in may override and what the tokenizer feeds it is declared here."""

    model_type: str  # transformers' config.model_type
    config_class: str  # transformers class names, resolved by the runners
    model_class: str
    config_keys: tuple[str, ...]  # keys a built-in model of this architecture may override
    hidden_key: str = "hidden_size"
    heads_key: str = "num_attention_heads"
    layers_key: str = "num_hidden_layers"
    token_types: bool = True  # whether inputs carry token_type_ids (segment ids)
    export: bool = True  # whether a structured subnetwork can be exported as a smaller model
    note: str = ""  # how the gates follow this architecture, when it is not the plain BERT layout


ARCHITECTURES: Catalogue[Architecture] = Catalogue("architecture")
ARCHITECTURES.add(
    "bert",
    Architecture("bert", "BertConfig", "BertForSequenceClassification", _BERT_KEYS + ("classifier_dropout",)),
    "BERT (also MiniLM and other BertModels)",
)
ARCHITECTURES.add(
    "roberta",
    Architecture(
        "roberta",
        "RobertaConfig",
        "RobertaForSequenceClassification",
        _BERT_KEYS + ("classifier_dropout",),
        token_types=False,
    ),
    "RoBERTa",
)
ARCHITECTURES.add(
    "distilbert",
    Architecture(
        "distilbert",
        "DistilBertConfig",
        "DistilBertForSequenceClassification",
        (
            "dim",
            "n_layers",
            "n_heads",
            "hidden_dim",
            "activation",
            "dropout",
            "attention_dropout",
            "max_position_embeddings",
            "initializer_range",
            "seq_classif_dropout",
            "sinusoidal_pos_embds",
        ),
        hidden_key="dim",
        heads_key="n_heads",
        layers_key="n_layers",
        token_types=False,
    ),
    "DistilBERT",
)
ARCHITECTURES.add(
    "electra",
    Architecture(
        "electra",
        "ElectraConfig",
        "ElectraForSequenceClassification",
        _BERT_KEYS + ("embedding_size", "classifier_dropout"),
    ),
    "ELECTRA (the discriminator)",
)
ARCHITECTURES.add(
    "albert",
    Architecture(
        "albert",
        "AlbertConfig",
        "AlbertForSequenceClassification",
        _BERT_KEYS + ("embedding_size", "num_hidden_groups", "classifier_dropout_prob"),
        export=False,
        note="ALBERT shares one layer's weights across depth: gates act per depth at run time (the shared weights "
        "are never edited; sparsity counts each depth's use of them), weight masks prune the shared matrices "
        "(a pruned weight is gone at every depth), and a subnetwork cannot be exported as a smaller model "
        "(its depths keep different units of one shared layer)",
    ),
    "ALBERT (shared layers)",
)
# the order names are listed in messages
GATEABLE_MODEL_TYPES = ("bert", "roberta", "distilbert", "electra", "albert")
EXPORTABLE_MODEL_TYPES = tuple(t for t in GATEABLE_MODEL_TYPES if ARCHITECTURES.get(t).export)


def unsupported_message(model_type: str | None, what: str) -> str:
    """One wording for an architecture the gates do not support, wherever it is found."""
    kind = f"model type {model_type!r}" if model_type else "a model without a model_type"
    return (
        f"{what} is {kind}, which the gates do not support; supported model types: "
        f"{', '.join(GATEABLE_MODEL_TYPES)} (sequence classifiers of the BERT family)"
    )


@dataclass(frozen=True)
class BuiltinModel:
    """A randomly initialised model built from a config (no download); its tokenizer comes from the task."""

    model_type: str
    config: dict = field(default_factory=dict)

    @property
    def architecture(self) -> Architecture:
        return ARCHITECTURES.get(self.model_type)


BUILTIN_MODELS: Catalogue[BuiltinModel] = Catalogue("built-in model")
BUILTIN_MODELS.add(
    "tiny-bert",
    BuiltinModel(
        "bert",
        dict(
            hidden_size=128,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=512,
            max_position_embeddings=128,
        ),
    ),
    "BERT: 4 layers, 4 heads, hidden 128, randomly initialised",
)
BUILTIN_MODELS.add(
    "micro-bert",
    BuiltinModel(
        "bert",
        dict(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=64
        ),
    ),
    "BERT: 2 layers, 4 heads, hidden 32 (tests)",
)
# RoBERTa counts positions from pad_token_id + 1: the word tokenizer's [PAD] is 0, and 130 positions hold 128 tokens
BUILTIN_MODELS.add(
    "tiny-roberta",
    BuiltinModel(
        "roberta",
        dict(
            hidden_size=128,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=512,
            max_position_embeddings=130,
            pad_token_id=0,
            type_vocab_size=1,
        ),
    ),
    "RoBERTa: 4 layers, 4 heads, hidden 128, no segment ids",
)
BUILTIN_MODELS.add(
    "tiny-distilbert",
    BuiltinModel("distilbert", dict(dim=128, n_layers=4, n_heads=4, hidden_dim=512, max_position_embeddings=128)),
    "DistilBERT: 4 layers, 4 heads, dim 128, no segment ids",
)
BUILTIN_MODELS.add(
    "tiny-electra",
    BuiltinModel(
        "electra",
        dict(
            hidden_size=128,
            embedding_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=512,
            max_position_embeddings=128,
        ),
    ),
    "ELECTRA discriminator: 4 layers, 4 heads, hidden 128, embeddings 64",
)
BUILTIN_MODELS.add(
    "tiny-albert",
    BuiltinModel(
        "albert",
        dict(
            hidden_size=128,
            embedding_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=512,
            max_position_embeddings=128,
        ),
    ),
    "ALBERT: 4 layers sharing one, 4 heads, hidden 128, embeddings 64",
)


@dataclass(frozen=True)
class HubModel:
    """A well-known hub encoder: its architecture (so validate knows it without a download) and its shape."""

    model_type: str
    layers: int
    heads: int
    hidden: int
    positions: int = 512  # tokens an input may hold (max_position_embeddings; RoBERTa's less its offset of 2)


KNOWN_HUB_MODELS: Catalogue[HubModel] = Catalogue("known hub model")
for _names, _entry, _summary in (
    (("bert-base-uncased", "google-bert/bert-base-uncased"), HubModel("bert", 12, 12, 768), "BERT base, uncased"),
    (("bert-base-cased", "google-bert/bert-base-cased"), HubModel("bert", 12, 12, 768), "BERT base, cased"),
    (("bert-large-uncased", "google-bert/bert-large-uncased"), HubModel("bert", 24, 16, 1024), "BERT large, uncased"),
    (("roberta-base", "FacebookAI/roberta-base"), HubModel("roberta", 12, 12, 768), "RoBERTa base"),
    (("roberta-large", "FacebookAI/roberta-large"), HubModel("roberta", 24, 16, 1024), "RoBERTa large"),
    (
        ("distilbert-base-uncased", "distilbert/distilbert-base-uncased"),
        HubModel("distilbert", 6, 12, 768),
        "DistilBERT base, uncased",
    ),
    (("google/electra-small-discriminator",), HubModel("electra", 12, 4, 256), "ELECTRA small discriminator"),
    (("google/electra-base-discriminator",), HubModel("electra", 12, 12, 768), "ELECTRA base discriminator"),
    (("google/electra-large-discriminator",), HubModel("electra", 24, 16, 1024), "ELECTRA large discriminator"),
    (("albert-base-v2", "albert/albert-base-v2"), HubModel("albert", 12, 12, 768), "ALBERT base v2 (shared layers)"),
    (("sentence-transformers/all-MiniLM-L6-v2",), HubModel("bert", 6, 12, 384), "MiniLM-L6 (a 6-layer BERT)"),
):
    for _name in _names:
        KNOWN_HUB_MODELS.add(_name, _entry, _summary)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def resolve_path(name: str, base_dir: str) -> Path | None:
    """The local model directory `name` points to, if any (relative to experiments.toml)."""
    p = Path(name).expanduser()
    p = p if p.is_absolute() else Path(base_dir) / p
    return p if p.is_dir() else None


def local_model_type(directory: Path) -> str | None:
    """model_type from a model directory's config.json (None when absent or unreadable)."""
    try:
        value = json.loads((directory / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def model_type_of(spec: ModelSpec, base_dir: str) -> str | None:
    """The model's architecture when it is knowable without a download: a built-in, a local directory's
    config.json, or a known hub encoder; None for any other hub id."""
    if spec.name in BUILTIN_MODELS:
        return BUILTIN_MODELS.get(spec.name).model_type
    local = resolve_path(spec.name, base_dir)
    if local is not None:
        return local_model_type(local)
    return KNOWN_HUB_MODELS.get(spec.name).model_type if spec.name in KNOWN_HUB_MODELS else None


def max_tokens(spec: ModelSpec, base_dir: str) -> int | None:
    """How many tokens an input of this model may hold, when knowable without a download: its position
    embeddings (RoBERTa's count from pad_token_id + 1, so two fewer hold tokens)."""
    if spec.name in BUILTIN_MODELS:
        model = BUILTIN_MODELS.get(spec.name)
        config, model_type = {**model.config, **spec.config}, model.model_type
    elif (local := resolve_path(spec.name, base_dir)) is not None:
        try:
            config = json.loads((local / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        model_type = config.get("model_type") if isinstance(config, dict) else None
    else:
        return KNOWN_HUB_MODELS.get(spec.name).positions if spec.name in KNOWN_HUB_MODELS else None
    positions = config.get("max_position_embeddings") if isinstance(config, dict) else None
    if not isinstance(positions, int) or isinstance(positions, bool):
        return None
    return positions - 2 if model_type == "roberta" else positions


def _builtin_problems(spec: ModelSpec) -> list[tuple[str, str]]:
    model = BUILTIN_MODELS.get(spec.name)
    arch = model.architecture
    keys = arch.config_keys
    problems = [
        (
            f"model.config.{k}",
            f"not a {arch.config_class} key {spec.name} takes{did_you_mean(k, keys)} (keys: {', '.join(keys)})",
        )
        for k in spec.config
        if k not in keys
    ]
    cfg = {**model.config, **spec.config}
    hidden, heads = cfg.get(arch.hidden_key), cfg.get(arch.heads_key)
    if isinstance(hidden, int) and isinstance(heads, int) and heads > 0 and hidden % heads:
        problems.append(("model.config", f"{arch.hidden_key} {hidden} is not a multiple of {arch.heads_key} {heads}"))
    groups, layers = cfg.get("num_hidden_groups"), cfg.get(arch.layers_key)
    if isinstance(groups, int) and isinstance(layers, int) and not 1 <= groups <= layers:
        problems.append(("model.config.num_hidden_groups", f"{groups} groups for {layers} layers: use 1..{layers}"))
    return problems


def check_model_name(spec: ModelSpec, base_dir: str, export: bool = False) -> list[tuple[str, str]]:
    """Problems with a model spec as (dotted key, message); empty when it names something loadable whose
    architecture (where it is knowable without a download) the gates support, and exportable if `export`."""
    if spec.name in BUILTIN_MODELS:
        problems = _builtin_problems(spec)
    else:
        problems = []
        if spec.config:
            problems.append(("model.config", "config overrides apply to built-in models only"))
        local = resolve_path(spec.name, base_dir)
        if local is not None:
            if not (local / "config.json").is_file():
                problems.append(("model.name", f"model directory {str(local)!r} has no config.json"))
                return problems
        elif spec.name not in KNOWN_HUB_MODELS:
            close = BUILTIN_MODELS.close_match(spec.name)
            if close:
                problems.append(("model.name", f"unknown model {spec.name!r}; did you mean the built-in {close!r}?"))
            elif spec.name.startswith((".", "/", "~")) or not _HUB_ID.match(spec.name):
                problems.append(
                    (
                        "model.name",
                        f"{spec.name!r} is neither a built-in ({', '.join(BUILTIN_MODELS.names())}), "
                        "an existing directory, nor a hub id",
                    )
                )
            return problems  # any other hub id: its architecture is checked when the run loads its config
    model_type = model_type_of(spec, base_dir)
    if model_type not in ARCHITECTURES:
        problems.append(("model.name", unsupported_message(model_type, repr(spec.name))))
    elif export and not ARCHITECTURES.get(model_type).export:
        problems.append(
            (
                "prune.export",
                f"{spec.name!r} is model type {model_type!r}, which cannot be exported: "
                f"{ARCHITECTURES.get(model_type).note}; export supports "
                f"{', '.join(EXPORTABLE_MODEL_TYPES)}",
            )
        )
    return problems


def nearest_encoder(name: str) -> str:
    """ "; did you mean ..." naming the closest built-in or known hub encoder, or ""."""
    builtin = BUILTIN_MODELS.close_match(name, cutoff=0.6)
    if builtin:
        return f"; did you mean the built-in {builtin!r}?"
    known = KNOWN_HUB_MODELS.close_match(name, cutoff=0.6)
    return f"; did you mean {known!r}?" if known else ""


def unknown_hub_id_note(spec: ModelSpec, base_dir: str) -> str | None:
    """What validate says of a model name it can only take for a hub id outside the catalogue (it cannot look it
    up without the network: `subnets run` does, before writing anything); None for any other name."""
    if spec.name in BUILTIN_MODELS or spec.name in KNOWN_HUB_MODELS or resolve_path(spec.name, base_dir) is not None:
        return None
    return (
        f"{spec.name!r} is no built-in or known hub encoder: `subnets run` looks it up on the hub (or in the "
        f"Hugging Face cache) before it writes anything{nearest_encoder(spec.name)}"
    )


def hub_model_ids(runs) -> dict[tuple[str, str | None], tuple[str, str]]:
    """{(hub id, revision): (first experiment, key)} of every model and tokenizer these runs name by a hub id (not a
    built-in, not a local directory): what `subnets run` resolves before it writes anything."""
    found: dict[tuple[str, str | None], tuple[str, str]] = {}
    for r in runs:
        for key, name in (("model.name", r.model.name), ("model.tokenizer", r.model.tokenizer)):
            if name is None or name in BUILTIN_MODELS or resolve_path(name, r.base_dir) is not None:
                continue
            found.setdefault((name, r.model.revision), (r.experiment, key))
    return found
