"""The task catalogue: typed entries for every built-in task (the embedded generated task and the GLUE
tasks with their out-of-domain sets, as hub presets), by the name experiments.toml uses, and the metric
catalogue they are judged by. Loading the data is the runners' job (runners/data/tasks.py); this module only
declares what each task is, so validation and planning need no torch or datasets.

Every built-in's sources can be replaced by local files (`task.train`, `task.eval`, `task.ood`), and
`task.builtin_ood` picks which of its own OOD sets to evaluate, so a catalogue task runs offline too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from registry.catalogue import Catalogue, UnknownName, did_you_mean
from registry.problems import describe, toml_value
from registry.taskspec import OODSpec, SourceSpec, TaskSpec

CUSTOM = "custom"
SYNTHETIC_NLI_LABELS = ["entailment", "non_entailment"]
SYNTHETIC_NLI_OOD = "hans_like"


# The upper bounds are the sizes of the generator's word lists (a test keeps them equal).
class SyntheticNLIParams(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    n_train: int = Field(16000, ge=1, le=1_000_000, description="Number of training examples.")
    n_id_eval: int = Field(1000, ge=1, le=1_000_000, description="Number of in-domain evaluation examples.")
    n_ood_per_subcase: int = Field(200, ge=1, le=100_000, description="OOD examples per heuristic/label subcase.")
    id_hard_fraction: float = Field(
        0.1, ge=0.0, le=0.5, description="Fraction of ID examples that fully overlap yet are not entailed."
    )
    n_nouns: int = Field(40, ge=8, le=40, description="How many person nouns the vocabulary uses.")
    n_transitive: int = Field(20, ge=4, le=20, description="How many transitive verbs are used.")
    n_intransitive: int = Field(12, ge=3, le=12, description="How many intransitive verbs are used.")
    n_adjectives: int = Field(12, ge=2, le=12, description="How many adjectives are used.")
    adjective_prob: float = Field(0.15, ge=0.0, le=1.0, description="Chance that a noun phrase gets an adjective.")
    modifier_prob: float = Field(
        0.15, ge=0.0, le=1.0, description="Chance that an ID noun phrase gets a PP, relative clause or conjunct."
    )
    single_clause_prob: float = Field(
        0.8, ge=0.0, le=1.0, description="Share of ID premises with one clause (else: conj, adverb, 'that')."
    )
    new_word_prob: float = Field(
        1.0, ge=0.0, le=1.0, description="Chance each content word of a new-word negative is replaced (>= 1 is)."
    )


@dataclass(frozen=True)
class MetricEntry:
    """A metric a task can be judged by (computed in runners/training/metrics.py; a test keeps both equal)."""

    name: str
    summary: str
    kind: Literal["classification", "regression"]
    binary: bool = False  # defined for two classes only (the positive class is label index 1)


METRICS: Catalogue[MetricEntry] = Catalogue("metric")
for _m in (
    MetricEntry("accuracy", "Fraction of examples whose predicted label is the gold label.", "classification"),
    MetricEntry(
        "mcc",
        "Matthews correlation of predicted and gold labels (multi-class: Gorodkin's R_K); 0 when undefined.",
        "classification",
    ),
    MetricEntry(
        "f1",
        "F1 of the positive class (label index 1); 0 when there is no positive prediction or gold label.",
        "classification",
        binary=True,
    ),
    MetricEntry(
        "pearson", "Pearson correlation of predicted and gold scores; 0 when either is constant.", "regression"
    ),
    MetricEntry(
        "spearman", "Spearman rank correlation (ties get their mean rank); 0 when either is constant.", "regression"
    ),
):
    METRICS.add(_m.name, _m, _m.summary)


@dataclass(frozen=True)
class TaskEntry:
    """A built-in task: its labels and metrics, and either a generator's parameters or preset sources.

    `metrics` lists the task's own metrics, its primary one (the keep rule's, the effective size's and the
    report's) first; classification tasks also always report accuracy. A regression task (STS-B) has no
    labels: the model gets one output (num_labels = 1) trained with MSE on float labels."""

    name: str
    summary: str
    labels: tuple[str, ...]
    metrics: tuple[str, ...] = ("accuracy",)
    regression: bool = False
    params: type[BaseModel] | None = None  # generated tasks: the schema of `task.params`
    generated_ood: tuple[str, ...] = ()  # OOD sets a generated task makes itself
    train: SourceSpec | None = None  # preset sources (hub)
    eval: SourceSpec | None = None
    ood: tuple[OODSpec, ...] = field(default_factory=tuple)

    @property
    def generated(self) -> bool:
        return self.params is not None

    @property
    def metric(self) -> str:
        return self.metrics[0]


TASKS: Catalogue[TaskEntry] = Catalogue("task")
_GLUE = "nyu-mll/glue"
# HANS on the hub is still a loading script (hans.py), which datasets >= 4 refuses to run; the hub's parquet
# export of it (the same 30,000 evaluation rows, 30 subcases, columns premise, hypothesis, label, heuristic,
# subcase, template and the parses) loads without one.
HANS_PARQUET = dict(hub="jhu-cogsci/hans", revision="refs/convert/parquet", config="plain_text", split="validation")


def _glue(
    config: str, text_a: str, text_b: str | None = None, split: str = "validation"
) -> tuple[SourceSpec, SourceSpec]:
    """(train, in-domain evaluation) of a GLUE task on the hub; GLUE's test labels are hidden, so its
    validation split is the in-domain evaluation set."""
    return (
        SourceSpec(hub=_GLUE, config=config, split="train", text_a=text_a, text_b=text_b),
        SourceSpec(hub=_GLUE, config=config, split=split, text_a=text_a, text_b=text_b),
    )


def _task(name: str, summary: str, labels: tuple[str, ...], sources: tuple[SourceSpec, SourceSpec], **kw) -> TaskEntry:
    return TaskEntry(name, summary, labels, train=sources[0], eval=sources[1], **kw)


_NLI = ("entailment", "not_entailment")
for _t in (
    TaskEntry(
        "synthetic-nli",
        "Embedded NLI-like task: lexical overlap predicts entailment in-domain; a HANS-like OOD "
        "set is balanced against it.",
        tuple(SYNTHETIC_NLI_LABELS),
        params=SyntheticNLIParams,
        generated_ood=(SYNTHETIC_NLI_OOD,),
    ),
    _task(
        "cola",
        "GLUE CoLA acceptability (Matthews correlation). Its out-of-domain dev set is not on the "
        "hub: declare it under task.ood from the CoLA release's out_of_domain_dev.tsv (see "
        "docs/configuration.md).",
        ("unacceptable", "acceptable"),
        _glue("cola", "sentence"),
        metrics=("mcc",),
    ),
    _task(
        "sst2",
        "GLUE SST-2 sentiment, evaluated out of domain on IMDb and Yelp polarity reviews (hub test splits).",
        ("negative", "positive"),
        _glue("sst2", "sentence"),
        ood=(
            OODSpec(name="imdb", hub="stanfordnlp/imdb", split="test", text_a="text"),
            OODSpec(name="yelp", hub="fancyzhx/yelp_polarity", split="test", text_a="text"),
        ),
    ),
    _task(
        "mrpc",
        "GLUE MRPC paraphrase (F1 of the paraphrase class, and accuracy).",
        ("not_equivalent", "equivalent"),
        _glue("mrpc", "sentence1", "sentence2"),
        metrics=("f1",),
    ),
    _task(
        "qqp",
        "GLUE Quora Question Pairs (F1 of the duplicate class, and accuracy), evaluated out of "
        "domain on PAWS (Wiki, labeled_final test; per label). The Heuristic Core used PAWS-QQP, "
        "which must be built from QQP with the PAWS scripts: declare it under task.ood as a local "
        "file.",
        ("not_duplicate", "duplicate"),
        _glue("qqp", "question1", "question2"),
        metrics=("f1",),
        ood=(
            OODSpec(
                name="paws",
                hub="google-research-datasets/paws",
                config="labeled_final",
                split="test",
                text_a="sentence1",
                text_b="sentence2",
                subcase="label",
            ),
        ),
    ),
    _task(
        "stsb",
        "GLUE STS-B sentence similarity, a regression task (one output, MSE loss, float labels "
        "0-5; Pearson, and Spearman).",
        (),
        _glue("stsb", "sentence1", "sentence2"),
        metrics=("pearson", "spearman"),
        regression=True,
    ),
    _task(
        "mnli",
        "GLUE MultiNLI: matched validation in-domain; mismatched validation as a second evaluation "
        "set; HANS out of domain per heuristic and label (neutral + contradiction -> "
        "non-entailment).",
        ("entailment", "neutral", "contradiction"),
        _glue("mnli", "premise", "hypothesis", split="validation_matched"),
        ood=(
            OODSpec(
                name="mismatched",
                hub=_GLUE,
                config="mnli",
                split="validation_mismatched",
                text_a="premise",
                text_b="hypothesis",
            ),
            OODSpec(
                name="hans",
                **HANS_PARQUET,
                text_a="premise",
                text_b="hypothesis",
                subcase=["heuristic", "label"],
                labels=["entailment", "non_entailment"],
                pred_map=[0, 1, 1],
            ),
        ),
    ),
    _task("qnli", "GLUE QNLI question answering as NLI.", _NLI, _glue("qnli", "question", "sentence")),
    _task("rte", "GLUE RTE textual entailment.", _NLI, _glue("rte", "sentence1", "sentence2")),
    _task(
        "wnli",
        "GLUE WNLI (Winograd schemas as NLI; its dev set is adversarial to the training set).",
        ("not_entailment", "entailment"),
        _glue("wnli", "sentence1", "sentence2"),
    ),
):
    TASKS.add(_t.name, _t, _t.summary)


# Methods a regression task (one output, no classes) cannot be pruned with, and why (`subnets validate` says so).
REFUSED_FOR_REGRESSION = {
    "l0": "its objective is the KL divergence to the full model's class distribution, which a one-output "
    "regression head does not have (magnitude, importance and attribution prune STS-B)",
}


def is_regression(task: TaskSpec) -> bool:
    return task.name in TASKS and TASKS.get(task.name).regression


def task_metrics(task: TaskSpec) -> tuple[str, list[str]]:
    """(the primary metric, every metric reported): accuracy for classification, the task's own metrics,
    and `task.metric` when declared (which then is the primary one)."""
    entry = TASKS.get(task.name) if task.name in TASKS else None
    own = list(entry.metrics) if entry is not None else ["accuracy"]
    primary = task.metric or own[0]
    reported = ([] if is_regression(task) else ["accuracy"]) + own + [primary]
    return primary, list(dict.fromkeys(reported))


def primary_metric(task: TaskSpec) -> str:
    return task_metrics(task)[0]


def check_task(task: TaskSpec) -> list[tuple[str, str]]:
    """Problems with a task spec as (dotted key, message); empty when it can be built."""
    known = task.name == CUSTOM or task.name in TASKS
    problems = (
        _check_ood_maps(task) + _check_label_maps(task) + _check_metric(task) + _check_builtin_ood(task)
        if known
        else []
    )
    return problems + _check_task_name(task)


def _check_metric(task: TaskSpec) -> list[tuple[str, str]]:
    if task.metric is None:
        return []
    if task.metric not in METRICS:
        return [("task.metric", str(UnknownName("metric", task.metric, METRICS.names())))]
    m = METRICS.get(task.metric)
    kind = "regression" if is_regression(task) else "classification"
    if m.kind != kind:
        fits = [e.name for e in METRICS.entries() if e.value.kind == kind]
        return [
            (
                "task.metric",
                f"{task.metric} is a {m.kind} metric and {task.name} is a {kind} task (use {', '.join(fits)})",
            )
        ]
    if m.binary and not (task.name == CUSTOM and task.labels is None) and len(label_names(task)) != 2:
        return [
            (
                "task.metric",
                f"{task.metric} needs two labels (the positive one second); this task has {len(label_names(task))}",
            )
        ]
    return []


def _check_builtin_ood(task: TaskSpec) -> list[tuple[str, str]]:
    if task.builtin_ood is None:
        return []
    entry = TASKS.get(task.name) if task.name in TASKS else None
    own = [o.name for o in entry.ood] + list(entry.generated_ood) if entry is not None else []
    return [
        (
            "task.builtin_ood",
            f"{task.name} has no OOD set {name!r}{did_you_mean(name, own)} (its own: {', '.join(own) or 'none'})",
        )
        for name in task.builtin_ood
        if name not in own
    ]


def _check_label_maps(task: TaskSpec) -> list[tuple[str, str]]:
    """label_map values are label indices of the set they read into."""
    if (task.name == CUSTOM and task.labels is None) or is_regression(task):
        return []
    n_task = len(label_names(task))
    sources = [
        ("task.train", task.train, n_task),
        ("task.eval", task.eval, n_task),
        *((f"task.ood.{o.name}", o, len(o.labels or label_names(task))) for o in task.ood),
    ]
    out = []
    for key, source, n in sources:
        if source is None or source.label_map is None:
            continue
        bad = {raw: i for raw, i in source.label_map.items() if not 0 <= i < n}
        if bad:
            out.append(
                (f"{key}.label_map", f"maps {toml_value(bad)} outside the {n} labels of this set (indices 0..{n - 1})")
            )
    return out


def _check_ood_maps(task: TaskSpec) -> list[tuple[str, str]]:
    """pred_map: one entry per model label, each an index into the OOD set's labels."""
    if (task.name == CUSTOM and task.labels is None) or is_regression(task):
        return []
    n_model = len(label_names(task))
    out = []
    for o in task.ood:
        if o.pred_map is None:
            continue
        n_set = len(o.labels or label_names(task))
        if len(o.pred_map) != n_model:
            out.append(
                (f"task.ood.{o.name}.pred_map", f"needs one entry per model label ({n_model}), got {len(o.pred_map)}")
            )
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
    out = []
    if entry.regression and task.labels is not None:
        out.append(("task.labels", f"{task.name} is a regression task: it has scores, not labels"))
    if entry.params is None:
        return out + ([("task.params", "this task takes no params")] if task.params else [])
    try:
        entry.params.model_validate(task.params)
    except ValidationError as e:
        fields = list(entry.params.model_fields)
        return out + [("task.params." + ".".join(map(str, err["loc"])), describe(err, fields)) for err in e.errors()]
    return out


def builtin_ood(task: TaskSpec) -> list[OODSpec]:
    """The built-in task's own OOD sets that this experiment evaluates (task.builtin_ood, default all)."""
    if task.name not in TASKS:
        return []
    own = TASKS.get(task.name).ood
    return [o for o in own if task.builtin_ood is None or o.name in task.builtin_ood]


def eval_set_names(task: TaskSpec) -> list[str]:
    """ "id" and the names of every OOD set the task will have (built-in ones and declared ones)."""
    own: list[str] = []
    if task.name in TASKS:
        entry = TASKS.get(task.name)
        own = [o.name for o in builtin_ood(task)]
        own += [n for n in entry.generated_ood if task.builtin_ood is None or n in task.builtin_ood]
    return ["id", *own, *(o.name for o in task.ood)]


def ood_set_names(task: TaskSpec) -> list[str]:
    """The names of the task's OOD sets (`eval_set_names` without "id")."""
    return [n for n in eval_set_names(task) if n != "id"]


def label_names(task: TaskSpec) -> list[str]:
    """The model's label names in index order ([] for a regression task)."""
    return list(task.labels) if task.name == CUSTOM or task.labels else list(TASKS.get(task.name).labels)


__all__ = [
    "TASKS",
    "TaskEntry",
    "REFUSED_FOR_REGRESSION",
    "METRICS",
    "MetricEntry",
    "CUSTOM",
    "SyntheticNLIParams",
    "check_task",
    "eval_set_names",
    "ood_set_names",
    "label_names",
    "task_metrics",
    "primary_metric",
    "is_regression",
    "builtin_ood",
]
