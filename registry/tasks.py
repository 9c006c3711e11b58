"""The task catalogue: typed entries for every built-in task (the embedded generated task and hub
presets), by the name experiments.toml uses. Loading the data is the runners' job (runners/data/tasks.py);
this module only declares what each task is, so validation and planning need no torch or datasets.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from registry.catalogue import Catalogue, UnknownName
from registry.schema import OODSpec, SourceSpec, TaskSpec

CUSTOM = "custom"
SYNTHETIC_NLI_LABELS = ["entailment", "non_entailment"]
SYNTHETIC_NLI_OOD = "hans_like"


# The upper bounds are the sizes of the generator's word lists (a test keeps them equal).
class SyntheticNLIParams(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    n_train: int = Field(16000, ge=1, le=1_000_000, description="Number of training examples.")
    n_id_eval: int = Field(1000, ge=1, le=1_000_000, description="Number of in-domain evaluation examples.")
    n_ood_per_subcase: int = Field(200, ge=1, le=100_000, description="OOD examples per heuristic/label subcase.")
    id_hard_fraction: float = Field(0.1, ge=0.0, le=0.5,
                                    description="Fraction of ID examples that fully overlap yet are not entailed.")
    n_nouns: int = Field(40, ge=8, le=40, description="How many person nouns the vocabulary uses.")
    n_transitive: int = Field(20, ge=4, le=20, description="How many transitive verbs are used.")
    n_intransitive: int = Field(12, ge=3, le=12, description="How many intransitive verbs are used.")
    n_adjectives: int = Field(12, ge=2, le=12, description="How many adjectives are used.")
    adjective_prob: float = Field(0.15, ge=0.0, le=1.0, description="Chance that a noun phrase gets an adjective.")
    modifier_prob: float = Field(0.15, ge=0.0, le=1.0,
                                 description="Chance that an ID noun phrase gets a PP, relative clause or conjunct.")
    single_clause_prob: float = Field(0.8, ge=0.0, le=1.0,
                                      description="Share of ID premises with one clause (else: conj, adverb, 'that').")
    new_word_prob: float = Field(1.0, ge=0.0, le=1.0,
                                 description="Chance each content word of a new-word negative is replaced (>= 1 is).")


@dataclass(frozen=True)
class TaskEntry:
    """A built-in task: its labels and metric, and either a generator's parameters or preset sources."""

    name: str
    summary: str
    labels: tuple[str, ...]
    metric: str = "accuracy"
    params: type[BaseModel] | None = None  # generated tasks: the schema of `task.params`
    generated_ood: tuple[str, ...] = ()  # OOD sets a generated task makes itself
    train: SourceSpec | None = None  # preset sources (hub)
    eval: SourceSpec | None = None
    ood: tuple[OODSpec, ...] = field(default_factory=tuple)

    @property
    def generated(self) -> bool:
        return self.params is not None


TASKS: Catalogue[TaskEntry] = Catalogue("task")
_GLUE = "nyu-mll/glue"
for _t in (
    TaskEntry("synthetic-nli", "Embedded NLI-like task: lexical overlap predicts entailment in-domain; a HANS-like OOD set is balanced against it.",
              tuple(SYNTHETIC_NLI_LABELS), params=SyntheticNLIParams, generated_ood=(SYNTHETIC_NLI_OOD,)),
    TaskEntry("mnli", "MultiNLI from the hub, evaluated out of domain on HANS (neutral + contradiction -> non-entailment).",
              ("entailment", "neutral", "contradiction"),
              train=SourceSpec(hub=_GLUE, config="mnli", split="train", text_a="premise", text_b="hypothesis"),
              eval=SourceSpec(hub=_GLUE, config="mnli", split="validation_matched", text_a="premise", text_b="hypothesis"),
              ood=(OODSpec(name="hans", hub="jhu-cogsci/hans", split="validation", text_a="premise", text_b="hypothesis",
                           subcase="heuristic", labels=["entailment", "non_entailment"], pred_map=[0, 1, 1]),)),
    TaskEntry("qqp", "Quora Question Pairs from the hub, evaluated out of domain on PAWS.",
              ("not_duplicate", "duplicate"),
              train=SourceSpec(hub=_GLUE, config="qqp", split="train", text_a="question1", text_b="question2"),
              eval=SourceSpec(hub=_GLUE, config="qqp", split="validation", text_a="question1", text_b="question2"),
              ood=(OODSpec(name="paws", hub="google-research-datasets/paws", config="labeled_final", split="test",
                           text_a="sentence1", text_b="sentence2"),)),
    TaskEntry("sst2", "SST-2 sentiment from the hub (declare OOD sets, e.g. IMDb or Yelp files, under task.ood).",
              ("negative", "positive"),
              train=SourceSpec(hub=_GLUE, config="sst2", split="train", text_a="sentence"),
              eval=SourceSpec(hub=_GLUE, config="sst2", split="validation", text_a="sentence")),
):
    TASKS.add(_t.name, _t, _t.summary)


def check_task(task: TaskSpec) -> list[tuple[str, str]]:
    """Problems with a task spec as (dotted key, message); empty when it can be built."""
    problems = _check_ood_maps(task) if task.name == CUSTOM or task.name in TASKS else []
    return problems + _check_task_name(task)


def _check_ood_maps(task: TaskSpec) -> list[tuple[str, str]]:
    """pred_map: one entry per model label, each an index into the OOD set's labels."""
    if task.name == CUSTOM and task.labels is None:
        return []
    n_model = len(label_names(task))
    out = []
    for o in task.ood:
        if o.pred_map is None:
            continue
        n_set = len(o.labels or label_names(task))
        if len(o.pred_map) != n_model:
            out.append((f"task.ood.{o.name}.pred_map", f"needs one entry per model label ({n_model}), got {len(o.pred_map)}"))
        bad = [i for i in o.pred_map if not 0 <= i < n_set]
        if bad:
            out.append((f"task.ood.{o.name}.pred_map", f"indices {bad} are outside this set's {n_set} labels"))
    return out


def _check_task_name(task: TaskSpec) -> list[tuple[str, str]]:
    if task.name == CUSTOM:
        missing = [k for k in ("labels", "train", "eval") if getattr(task, k) is None]
        return [(f"task.{k}", "required for a custom task") for k in missing]
    if task.name not in TASKS:
        return [("task.name", str(UnknownName("task", task.name, [*TASKS.names(), CUSTOM])))]
    entry = TASKS.get(task.name)
    if entry.params is None:
        return [("task.params", "this task takes no params")] if task.params else []
    try:
        entry.params.model_validate(task.params)
    except ValidationError as e:
        return [("task.params." + ".".join(map(str, err["loc"])), err["msg"]) for err in e.errors()]
    return []


def eval_set_names(task: TaskSpec) -> list[str]:
    """"id" and the names of every OOD set the task will have (built-in ones and declared ones)."""
    own: list[str] = []
    if task.name in TASKS:
        entry = TASKS.get(task.name)
        own = [o.name for o in entry.ood] + list(entry.generated_ood)
    return ["id", *own, *(o.name for o in task.ood)]


def label_names(task: TaskSpec) -> list[str]:
    return list(task.labels) if task.name == CUSTOM or task.labels else list(TASKS.get(task.name).labels)


__all__ = ["TASKS", "TaskEntry", "CUSTOM", "SyntheticNLIParams", "check_task", "eval_set_names", "label_names"]
