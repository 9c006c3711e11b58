"""The task catalogue: the embedded generated task, hub presets, and custom (declared sources)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel, ValidationError

from runners.catalogue import Catalogue
from runners.data import EvalSet, TaskData
from runners.tasks import synthetic_nli
from runners.tasks.sources import SourceError, read_rows, to_examples

GENERATED_DATA_SEED = 0  # run seeds vary init/order/dropout; generated data stay the same across seeds


@dataclass(frozen=True)
class TaskDef:
    labels: list[str]
    params: type[BaseModel] | None = None  # generated tasks only
    generate: Callable[[Any, int], TaskData] | None = None
    vocabulary: Callable[[Any], list[str]] | None = None  # generated tasks bring their own words
    train: dict | None = None  # preset sources (hub) for the SourceSpec fields
    eval: dict | None = None
    ood: list[dict] = field(default_factory=list)
    generated_ood: tuple[str, ...] = ()  # names of the OOD sets a generated task makes itself


TASKS: Catalogue[TaskDef] = Catalogue("task")
TASKS.add("synthetic-nli", TaskDef(
    labels=["entailment", "non_entailment"], params=synthetic_nli.SyntheticNLIParams,
    generate=synthetic_nli.generate, vocabulary=synthetic_nli.vocabulary, generated_ood=(synthetic_nli.OOD_NAME,),
), "Embedded NLI-like task: lexical overlap predicts entailment in-domain; a HANS-like OOD set is balanced against it.")
_GLUE = "nyu-mll/glue"
TASKS.add("mnli", TaskDef(
    labels=["entailment", "neutral", "contradiction"],
    train={"hub": _GLUE, "config": "mnli", "split": "train", "text_a": "premise", "text_b": "hypothesis"},
    eval={"hub": _GLUE, "config": "mnli", "split": "validation_matched", "text_a": "premise", "text_b": "hypothesis"},
    ood=[{"name": "hans", "hub": "jhu-cogsci/hans", "split": "validation", "text_a": "premise", "text_b": "hypothesis",
          "subcase": "heuristic", "labels": ["entailment", "non_entailment"], "pred_map": [0, 1, 1]}],
), "MultiNLI from the hub, evaluated out of domain on HANS (neutral + contradiction -> non-entailment).")
TASKS.add("qqp", TaskDef(
    labels=["not_duplicate", "duplicate"],
    train={"hub": _GLUE, "config": "qqp", "split": "train", "text_a": "question1", "text_b": "question2"},
    eval={"hub": _GLUE, "config": "qqp", "split": "validation", "text_a": "question1", "text_b": "question2"},
    ood=[{"name": "paws", "hub": "google-research-datasets/paws", "config": "labeled_final", "split": "test",
          "text_a": "sentence1", "text_b": "sentence2"}],
), "Quora Question Pairs from the hub, evaluated out of domain on PAWS.")
TASKS.add("sst2", TaskDef(
    labels=["negative", "positive"],
    train={"hub": _GLUE, "config": "sst2", "split": "train", "text_a": "sentence"},
    eval={"hub": _GLUE, "config": "sst2", "split": "validation", "text_a": "sentence"},
), "SST-2 sentiment from the hub (declare OOD sets, e.g. IMDb or Yelp files, under task.ood).")
CUSTOM = "custom"


def check_task(task) -> list[tuple[str, str]]:
    """Problems with a task spec as (dotted key, message); empty when it can be built."""
    if task.name == CUSTOM:
        missing = [k for k in ("labels", "train", "eval") if getattr(task, k) is None]
        return [(f"task.{k}", "required for a custom task") for k in missing]
    if task.name not in TASKS:
        from runners.catalogue import UnknownName

        return [("task.name", str(UnknownName("task", task.name, [*TASKS.names(), CUSTOM])))]
    definition = TASKS.get(task.name)
    if definition.params is None:
        return [("task.params", "this task takes no params")] if task.params else []
    try:
        definition.params.model_validate(task.params)
    except ValidationError as e:
        return [("task.params." + ".".join(map(str, err["loc"])), err["msg"]) for err in e.errors()]
    return []


def eval_set_names(task) -> list[str]:
    """"id" and the names of every OOD set the task will have (built-in ones and declared ones)."""
    own = []
    if task.name in TASKS:
        d = TASKS.get(task.name)
        own = [o["name"] for o in d.ood] + (list(d.generated_ood) if d.generate else [])
    return ["id", *own, *(o.name for o in task.ood)]


def label_names(task) -> list[str]:
    return list(task.labels) if task.name == CUSTOM or task.labels else TASKS.get(task.name).labels


def build_task(task, base_dir: str) -> TaskData:
    """Materialise the task's training, in-domain and out-of-domain data."""
    from registry.schema import OODSpec, SourceSpec

    labels = label_names(task)
    definition = TASKS.get(task.name) if task.name != CUSTOM else TaskDef(labels=labels)
    if definition.generate is not None:
        data = definition.generate(definition.params.model_validate(task.params), GENERATED_DATA_SEED)
    else:
        train_src = task.train or SourceSpec(**definition.train)
        eval_src = task.eval or SourceSpec(**definition.eval)
        data = TaskData(
            train=to_examples(read_rows(train_src, base_dir), train_src, labels, "task.train"),
            id_eval=EvalSet("id", "id", to_examples(read_rows(eval_src, base_dir), eval_src, labels, "task.eval")),
            ood=[_ood_set(OODSpec(**d), labels, base_dir) for d in definition.ood],
            label_names=labels,
        )
    data.ood += [_ood_set(spec, labels, base_dir) for spec in task.ood]
    return data


def _ood_set(spec, labels: list[str], base_dir: str) -> EvalSet:
    own = spec.labels or labels
    examples = to_examples(read_rows(spec, base_dir), spec, own, f"task.ood.{spec.name}")
    return EvalSet(spec.name, "ood", examples, pred_map=spec.pred_map)


__all__ = ["TASKS", "CUSTOM", "check_task", "build_task", "label_names", "SourceError"]
