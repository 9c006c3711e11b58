"""The task catalogue: every GLUE task with its hub ids, columns, labels and metric, each one validated,
and each one materialised from local files in its own columns (no hub): the conformance suite over tasks."""

from __future__ import annotations

import pytest

from registry.loader import ConfigError, load_runs
from registry.schema import SourceSpec, TaskSpec
from registry.tasks import (
    CUSTOM,
    METRICS,
    TASKS,
    eval_set_names,
    label_names,
    task_metrics,
)
from runners.data.sources import to_examples
from runners.data.tasks import build_task

GLUE = {  # name: (columns, labels, primary metric, every metric reported)
    "cola": (("sentence",), ("unacceptable", "acceptable"), "mcc", ["accuracy", "mcc"]),
    "sst2": (("sentence",), ("negative", "positive"), "accuracy", ["accuracy"]),
    "mrpc": (("sentence1", "sentence2"), ("not_equivalent", "equivalent"), "f1", ["accuracy", "f1"]),
    "qqp": (("question1", "question2"), ("not_duplicate", "duplicate"), "f1", ["accuracy", "f1"]),
    "stsb": (("sentence1", "sentence2"), (), "pearson", ["pearson", "spearman"]),
    "mnli": (("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), "accuracy", ["accuracy"]),
    "qnli": (("question", "sentence"), ("entailment", "not_entailment"), "accuracy", ["accuracy"]),
    "rte": (("sentence1", "sentence2"), ("entailment", "not_entailment"), "accuracy", ["accuracy"]),
    "wnli": (("sentence1", "sentence2"), ("not_entailment", "entailment"), "accuracy", ["accuracy"]),
}
OOD = {"sst2": ["imdb", "yelp"], "qqp": ["paws"], "mnli": ["mismatched", "hans"], "synthetic-nli": ["hans_like"]}


def test_every_glue_task_with_its_hub_source_columns_labels_and_metric():
    assert set(GLUE) | {"synthetic-nli"} == set(TASKS.names())
    for name, (columns, labels, primary, metrics) in GLUE.items():
        entry = TASKS.get(name)
        for src in (entry.train, entry.eval):
            assert (src.hub, src.config, (src.text_a, src.text_b)[: len(columns)]) == ("nyu-mll/glue", name, columns)
            assert src.text_b is None if len(columns) == 1 else True
        assert entry.train.split == "train"
        assert entry.eval.split == ("validation_matched" if name == "mnli" else "validation")
        assert entry.labels == labels and entry.regression == (name == "stsb")
        assert task_metrics(TaskSpec(name=name)) == (primary, metrics)
        assert all(m in METRICS for m in entry.metrics)
        assert eval_set_names(TaskSpec(name=name)) == ["id", *OOD.get(name, [])]


def test_the_ood_sets_of_the_catalogue():
    mnli = {o.name: o for o in TASKS.get("mnli").ood}
    assert (mnli["mismatched"].hub, mnli["mismatched"].config, mnli["mismatched"].split) == (
        "nyu-mll/glue",
        "mnli",
        "validation_mismatched",
    )
    hans = mnli["hans"]
    assert (hans.hub, hans.split, hans.subcase, hans.labels, hans.pred_map) == (
        "jhu-cogsci/hans",
        "validation",
        ["heuristic", "label"],
        ["entailment", "non_entailment"],
        [0, 1, 1],
    )
    (paws,) = TASKS.get("qqp").ood
    assert (paws.hub, paws.config, paws.split, paws.text_a, paws.text_b) == (
        "google-research-datasets/paws",
        "labeled_final",
        "test",
        "sentence1",
        "sentence2",
    )
    imdb, yelp = TASKS.get("sst2").ood
    assert (imdb.hub, imdb.split, imdb.text_a, yelp.hub, yelp.split, yelp.text_a) == (
        "stanfordnlp/imdb",
        "test",
        "text",
        "fancyzhx/yelp_polarity",
        "test",
        "text",
    )


def test_hans_rows_as_the_hub_gives_them_become_heuristic_label_subcases():
    hans = next(o for o in TASKS.get("mnli").ood if o.name == "hans")
    rows = [
        {
            "premise": "The doctor saw the lawyer .",
            "hypothesis": "The lawyer saw the doctor .",
            "label": 1,
            "heuristic": "lexical_overlap",
            "subcase": "ln_subject/object_swap",
        },
        {
            "premise": "The judge , who ran , slept .",
            "hypothesis": "The judge slept .",
            "label": 0,
            "heuristic": "constituent",
            "subcase": "ce_embedded_under_verb",
        },
    ]
    ex = to_examples(rows, hans, hans.labels, "task.ood.hans")
    assert [(e.label, e.subcase) for e in ex] == [(1, "lexical_overlap/non_entailment"), (0, "constituent/entailment")]


TOML = """
[[experiment]]
name = "{task}-{method}"
model = {{ name = "bert-base-uncased" }}
task = {{ name = "{task}"{extra} }}
prune = {{ method = "{method}" }}
"""


@pytest.mark.parametrize("task", sorted(GLUE))
def test_each_task_validates_with_every_method_it_supports(write_toml, task):
    """The hub presets validate without a download; a regression task refuses only L0, with a reason."""
    for method in ("magnitude", "importance", "attribution", "l0"):
        path = write_toml(TOML.format(task=task, method=method, extra=""), f"{task}-{method}.toml")
        if task == "stsb" and method == "l0":
            with pytest.raises(ConfigError) as e:
                load_runs(path)
            (p,) = e.value.problems
            assert (
                p.key == "prune.method" and "cannot prune a regression task (stsb)" in p.message and "KL" in p.message
            )
            continue
        (run,) = load_runs(path)
        assert run.primary_metric == GLUE[task][2]


def test_task_metric_and_builtin_ood_are_checked(write_toml):
    def keys(extra):
        with pytest.raises(ConfigError) as e:
            load_runs(write_toml(TOML.format(task=extra[0], method="magnitude", extra=extra[1])))
        return {p.key: p.message for p in e.value.problems}

    assert "did you mean 'mcc'" in keys(("cola", ', metric = "mmc"'))["task.metric"]
    assert (
        "pearson is a regression metric and cola is a classification task"
        in keys(("cola", ', metric = "pearson"'))["task.metric"]
    )
    assert "accuracy is a classification metric" in keys(("stsb", ', metric = "accuracy"'))["task.metric"]
    assert "f1 needs two labels" in keys(("mnli", ', metric = "f1"'))["task.metric"]
    assert (
        "mnli has no OOD set 'han'; did you mean 'hans'?"
        in keys(("mnli", ', builtin_ood = ["han"]'))["task.builtin_ood"]
    )
    assert "a regression task" in keys(("stsb", ', labels = ["a"]'))["task.labels"]


def test_metric_overrides_and_builtin_ood_choices_change_what_runs_but_spelling_the_default_does_not(write_toml):
    def run(task, extra=""):
        (r,) = load_runs(
            write_toml(TOML.format(task=task, method="magnitude", extra=extra), f"{abs(hash(extra))}.toml")
        )
        return r

    qqp, qqp_acc, qqp_f1 = run("qqp"), run("qqp", ', metric = "accuracy"'), run("qqp", ', metric = "f1"')
    assert qqp_acc.primary_metric == "accuracy" and qqp_acc.fingerprint != qqp.fingerprint == qqp_f1.fingerprint
    assert qqp_acc.finetune_fingerprint == qqp.finetune_fingerprint  # the metric never changes the fine-tuning
    sst2, only_yelp = run("sst2"), run("sst2", ', builtin_ood = ["yelp"]')
    assert eval_set_names(only_yelp.task) == ["id", "yelp"] and only_yelp.fingerprint != sst2.fingerprint
    assert "builtin_ood" not in sst2.identity()["task"] and "metric" not in sst2.identity()


def _rows(task: str, n: int) -> str:
    """A TSV in the task's own hub columns: n rows with labels cycling over the task's labels (STS-B: scores)."""
    columns, labels, _, _ = GLUE[task]
    lines = ["\t".join([*columns, "label"])]
    for i in range(n):
        label = f"{(i * 1.3) % 5:.2f}" if not labels else labels[i % len(labels)]
        lines.append("\t".join([*(f"text {c} {i}" for c in columns), label]))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("task", sorted(GLUE))
def test_each_task_reads_local_files_in_its_own_columns(tmp_path, task):
    """A catalogue task runs offline: its sources replaced by local files, its hub OOD sets left out."""
    path = tmp_path / f"{task}.tsv"
    path.write_text(_rows(task, 7))
    entry = TASKS.get(task)
    local = lambda src: SourceSpec(path=str(path), text_a=src.text_a, text_b=src.text_b)  # noqa: E731
    spec = TaskSpec(name=task, train=local(entry.train), eval=local(entry.eval), builtin_ood=[])
    data = build_task(spec, str(tmp_path))
    assert len(data.train) == len(data.id_eval.examples) == 7 and data.ood == []
    labels = GLUE[task][1]
    assert data.num_labels == (1 if task == "stsb" else len(labels)) and data.label_names == list(labels)
    assert [e.label for e in data.train[:3]] == (
        [0.0, 1.3, 2.6] if task == "stsb" else [i % len(labels) for i in range(3)]
    )
    assert (data.train[0].text_b is None) == (len(GLUE[task][0]) == 1)
    primary, metrics = task_metrics(spec)
    assert (data.id_eval.primary, list(data.id_eval.metrics), data.id_eval.regression) == (
        primary,
        metrics,
        task == "stsb",
    )


def test_custom_tasks_default_to_accuracy_and_take_a_metric(tmp_path):
    src = SourceSpec(path="x.tsv", text_a="s")
    custom = TaskSpec(name=CUSTOM, labels=["unacceptable", "acceptable"], train=src, eval=src)
    assert task_metrics(custom) == ("accuracy", ["accuracy"]) and label_names(custom) == ["unacceptable", "acceptable"]
    assert task_metrics(custom.model_copy(update={"metric": "mcc"})) == ("mcc", ["accuracy", "mcc"])
