"""Materialise a declared task (registry.tasks) into training, in-domain and out-of-domain examples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from registry.schema import OODSpec, TaskSpec
from registry.tasks import CUSTOM, TASKS, builtin_ood, is_regression, label_names, task_metrics
from runners.data import synthetic_nli
from runners.data.examples import EvalSet, TaskData
from runners.data.sources import read_rows, to_examples

GENERATED_DATA_SEED = 0  # run seeds vary init/order/dropout; generated data stay the same across seeds


@dataclass(frozen=True)
class Generator:
    """How a generated built-in task makes its data and the words its tokenizer needs."""

    generate: Callable[[object, int], TaskData]
    vocabulary: Callable[[object], list[str]]


GENERATORS: dict[str, Generator] = {
    "synthetic-nli": Generator(synthetic_nli.generate, synthetic_nli.vocabulary),
}


def task_words(task: TaskSpec) -> list[str] | None:
    """The vocabulary of a generated task (its built-in tokenizer's words), else None."""
    if task.name not in GENERATORS:
        return None
    return GENERATORS[task.name].vocabulary(TASKS.get(task.name).params.model_validate(task.params))


def build_task(task: TaskSpec, base_dir: str) -> TaskData:
    """Materialise the task's training, in-domain and out-of-domain data; every evaluation set carries
    the task's metrics (registry.tasks.task_metrics)."""
    labels = label_names(task)
    regression = is_regression(task)
    entry = TASKS.get(task.name) if task.name != CUSTOM else None
    if entry is not None and entry.generated:
        data = GENERATORS[task.name].generate(entry.params.model_validate(task.params), GENERATED_DATA_SEED)
        data.ood = [s for s in data.ood if task.builtin_ood is None or s.name in task.builtin_ood]
    else:
        train_src = task.train or entry.train
        eval_src = task.eval or entry.eval
        data = TaskData(
            train=to_examples(read_rows(train_src, base_dir), train_src, labels, "task.train", regression),
            id_eval=EvalSet(
                "id", "id", to_examples(read_rows(eval_src, base_dir), eval_src, labels, "task.eval", regression)
            ),
            ood=[_ood_set(spec, labels, base_dir, regression) for spec in builtin_ood(task)],
            label_names=labels,
            regression=regression,
        )
    data.ood += [_ood_set(spec, labels, base_dir, regression) for spec in task.ood]
    primary, metrics = task_metrics(task)
    for s in data.eval_sets:
        s.metrics, s.primary, s.regression = tuple(metrics), primary, regression
        s.labels = s.labels or tuple(labels)
    return data


def _ood_set(spec: OODSpec, labels: list[str], base_dir: str, regression: bool) -> EvalSet:
    own = spec.labels or labels
    examples = to_examples(read_rows(spec, base_dir), spec, own, f"task.ood.{spec.name}", regression)
    return EvalSet(spec.name, "ood", examples, pred_map=spec.pred_map, labels=tuple(own))
