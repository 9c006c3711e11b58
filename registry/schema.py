"""The experiments.toml schema: strict pydantic models, one line of description per field.

`subnets validate --explain` prints these descriptions; docs/reference.md is generated from them.
Method-specific prune parameters live in each method's `Params` model (registry/methods.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SerializeAsAny, ValidationInfo, field_validator

from registry.methods import MethodParams
from registry.search import SearchSpec
from registry.tasks import primary_metric
from registry.taskspec import (
    LATER_SOURCE_DEFAULTS,
    SLUG,
    OODSpec,
    SourceSpec,
    Strict,
    TaskSpec,
)

__all__ = [
    "SLUG",
    "SCHEMA_VERSION",
    "TOP_LEVEL_KEYS",
    "CkaSpec",
    "ExperimentSpec",
    "FinetuneSpec",
    "ModelSpec",
    "OODSpec",
    "PruneSpec",
    "RunSpec",
    "RuntimeSpec",
    "Seed",
    "SourceSpec",
    "Strict",
    "TaskSpec",
    "fingerprint",
]

Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # what torch and numpy generators take


class ModelSpec(Strict):
    name: str = Field(
        description="Built-in tiny model (tiny-bert), a local model directory, or a hub id such as bert-base-uncased."
    )
    config: dict[str, int | float | str | bool] = Field(
        default_factory=dict, description="BertConfig overrides for a built-in model, e.g. {num_hidden_layers = 2}."
    )
    revision: str | None = Field(
        default=None, description="Hub revision (branch, tag or commit) when name is a hub id."
    )
    tokenizer: str | None = Field(
        default=None,
        description="Tokenizer (hub id or directory); default: the model's own, or the generated task's "
        "vocabulary for a built-in model.",
    )


class FinetuneSpec(Strict):
    epochs: float = Field(default=3.0, gt=0, description="Training epochs (fractions allowed).")
    lr: float = Field(default=5e-5, gt=0, description="Peak AdamW learning rate.")
    batch_size: int = Field(default=32, ge=1, description="Training batch size.")
    eval_batch_size: int = Field(default=128, ge=1, description="Evaluation batch size.")
    warmup_ratio: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Fraction of steps with linear learning-rate warm-up (then linear decay to 0).",
    )
    weight_decay: float = Field(
        default=0.01, ge=0, description="AdamW weight decay (not applied to biases and LayerNorm)."
    )
    max_grad_norm: float = Field(default=1.0, gt=0, description="Gradient clipping norm.")
    max_train_examples: int | None = Field(default=None, ge=1, description="Use at most this many training examples.")
    length_grouped: bool = Field(
        default=False,
        description="Batch examples of similar length together (random groups of 50 batches sorted by length, "
        "batches shuffled): less padding; 2.4x faster training on SST-2 with MiniLM "
        "(benchmarks/trainer.py). Off by default, as in transformers.Trainer.",
    )


class RuntimeSpec(Strict):
    device: str = Field(
        default="auto",
        pattern=r"^(auto|cpu|cuda|cuda:[0-9]+|mps)$",
        description="Where fine-tuning, evaluation, scoring, L0 training and CKA run: auto (CUDA when "
        "available, else CPU), cpu, cuda, cuda:N or mps.",
    )
    precision: Literal["fp32", "bf16"] = Field(
        default="fp32",
        description="fp32, or bf16 autocast (CUDA only; changes the numbers, so it is part of the run's fingerprint).",
    )

    @field_validator("precision")
    @classmethod
    def _bf16_on_cuda(cls, v: str, info: ValidationInfo) -> str:
        device = info.data.get("device", "auto")  # absent when device itself was refused
        if v == "bf16" and not (device == "auto" or device.startswith("cuda")):
            raise ValueError(f"bf16 autocast runs on CUDA only; device {device!r} is not a CUDA device")
        return v


class PruneSpec(Strict):
    method: str = Field(
        description="Pruning method (see `subnets validate --explain`); its parameters sit beside it in this table."
    )
    params: SerializeAsAny[MethodParams] = Field(
        description="The method's parameters, validated by the method's own schema."
    )

    def resolved(self) -> dict[str, Any]:
        return {"method": self.method, **self.params.model_dump(mode="json")}


class CkaSpec(Strict):
    representation: Literal["layer_output", "attention_output"] = Field(
        default="layer_output",
        description="Which representation of each layer: its output, or its attention block's output (after "
        "LayerNorm); layer 0 is the embeddings.",
    )
    pooling: Literal["cls", "mean", "tokens"] = Field(
        default="mean",
        description="Rows compared: the CLS vector, the mean over real tokens, or every real token (padding excluded).",
    )
    examples: int | None = Field(
        default=1024,
        ge=4,
        description="Compare on the first N examples (file order) of the split; all of them when omitted.",
    )
    split: str = Field(
        default="id", description="Evaluation set whose examples are compared: id, or the name of an OOD set."
    )
    every: int = Field(
        default=1,
        ge=1,
        description="Compare at pruning steps every, 2*every, ...; controls and re-fine-tuned variants are "
        "always compared.",
    )
    estimator: Literal["linear", "minibatch"] = Field(
        default="linear",
        description="Full-data linear CKA from streamed float64 cross-products, or the minibatch unbiased-HSIC "
        "estimator (Nguyen et al. 2021).",
    )


class ExperimentSpec(Strict):
    name: str = Field(
        pattern=SLUG,
        description="Experiment name: a slug (lower-case letters, digits, - and _); also the MLflow experiment name.",
    )
    description: str = Field(default="", description="What the experiment asks; shown in reports.")
    model: ModelSpec = Field(description="The encoder to fine-tune and prune.")
    task: TaskSpec = Field(description="The task: training data, in-domain evaluation and out-of-domain sets.")
    finetune: FinetuneSpec = Field(
        default_factory=FinetuneSpec, description="Fine-tuning settings; a list value sweeps a grid."
    )
    prune: PruneSpec = Field(
        description="Pruning method and its parameters; a list value for a scalar parameter sweeps a grid."
    )
    cka: CkaSpec | None = Field(
        default=None,
        description="Compare every layer of the fine-tuned model with every layer of each pruned model (linear "
        "CKA); omit to skip.",
    )
    seeds: list[Seed] = Field(
        default_factory=lambda: [0],
        min_length=1,
        description="Fine-tuning seeds; every grid point fine-tunes (or reuses) one model per seed.",
    )
    prune_seeds: list[Seed] | None = Field(
        default=None,
        min_length=1,
        description="Pruning seeds (L0 gate noise, random controls, L0 batch order), each applied to every "
        "fine-tuned model; omitted: each run prunes with its fine-tuning seed.",
    )
    runtime: RuntimeSpec = Field(
        default_factory=RuntimeSpec, description="Device and precision of every computation of the run."
    )
    search: SearchSpec | None = Field(
        default=None,
        description="An Optuna search over the method's parameters toward the effective size (`subnets "
        "sweep`); omit for a plain grid.",
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Free-form tags copied onto every MLflow run.")


TOP_LEVEL_KEYS = ("defaults", "tasks", "experiment")  # [tasks.NAME]: a task table experiments name as task = "NAME"


SCHEMA_VERSION = 1


class RunSpec(Strict):
    """One expanded run: a grid point of an experiment for one seed. Its fingerprint decides if it is done."""

    experiment: str
    description: str
    tags: dict[str, str]
    seed: int  # the fine-tuning seed
    prune_seed: int  # the pruning seed (equal to `seed` unless prune_seeds were declared)
    model: ModelSpec
    task: TaskSpec
    finetune: FinetuneSpec
    prune: PruneSpec
    cka: CkaSpec | None = None
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    search: SearchSpec | None = None  # how `subnets sweep` searches around this run (not part of its identity)
    axes: dict[str, Any] = Field(default_factory=dict)  # the grid values that define this point
    base_dir: str = "."  # directory of experiments.toml; relative data paths resolve against it

    def identity(self) -> dict[str, Any]:
        """Everything that changes the results (not the name, description, tags, file location or device).

        Keys that hold their default are left out (a separate pruning seed, bf16), so a run declared
        before they existed keeps its fingerprint."""
        return {
            "schema": SCHEMA_VERSION,
            "model": self.model.model_dump(mode="json"),
            "task": self._task_identity(),
            **({"metric": m} if (m := self.primary_metric) != "accuracy" else {}),
            "finetune": self.finetune.model_dump(
                mode="json", exclude=set() if self.finetune.length_grouped else {"length_grouped"}
            ),
            "prune": self.prune.resolved(),
            "seed": self.seed,
            **({"prune_seed": self.prune_seed} if self.prune_seed != self.seed else {}),
            **({"cka": self.cka.model_dump(mode="json")} if self.cka is not None else {}),
            **({"precision": self.runtime.precision} if self.runtime.precision != "fp32" else {}),
        }

    def _task_identity(self) -> dict[str, Any]:
        """The task without its `metric` (the resolved primary metric is its own key, so spelling out a
        task's default metric keeps the fingerprint, and fine-tuning never depends on it) and without
        `builtin_ood` when it holds its default."""
        task = self.task.model_dump(mode="json", exclude={"metric"})
        if task.get("builtin_ood") is None:
            task.pop("builtin_ood", None)
        for source in [task.get("train"), task.get("eval"), *task.get("ood", [])]:
            for key, default in LATER_SOURCE_DEFAULTS.items():
                if source is not None and source.get(key, default) == default:
                    source.pop(key, None)
        return task

    @property
    def primary_metric(self) -> str:
        """The task's own metric (registry.tasks): what the keep rule and the effective size judge by."""
        return primary_metric(self.task)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.identity())

    @property
    def group(self) -> str:
        """The grid point without its seeds: runs that differ only in their seeds share it."""
        return fingerprint({k: v for k, v in self.identity().items() if k not in ("seed", "prune_seed")})

    @property
    def finetune_fingerprint(self) -> str:
        """Identity of the fine-tuned model alone: runs that differ only in pruning share it."""
        ident = self.identity()
        keys = ("schema", "model", "task", "finetune", "seed", "precision")
        return fingerprint({k: ident[k] for k in keys if k in ident})

    def label(self) -> str:
        """How a person tells this run from its siblings: its grid values and seeds."""
        seeds = [f"seed={self.seed}"] + ([f"prune_seed={self.prune_seed}"] if self.prune_seed != self.seed else [])
        return ", ".join([*(f"{k.split('.', 1)[-1]}={_short(v)}" for k, v in self.axes.items()), *seeds])

    def resolved_config(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "description": self.description,
            "tags": self.tags,
            **self.identity(),
            "prune_seed": self.prune_seed,
            "runtime": self.runtime.model_dump(mode="json"),
        }


def _short(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def fingerprint(obj: Any) -> str:
    import hashlib
    import json

    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
