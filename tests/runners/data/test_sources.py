"""Declared data sources: local csv/tsv/jsonl/parquet with column mapping, and the real shared data."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from registry.schema import OODSpec, SourceSpec, TaskSpec
from runners.data.sources import SourceError, read_rows, to_examples
from runners.data.tasks import build_task

ROWS = [
    {"p": "a cat sat", "h": "a cat", "y": "entailment", "kind": "x"},
    {"p": "the dog ran", "h": "a bird", "y": "contradiction", "kind": "y"},
]


def _write(tmp_path, fmt, rows=ROWS, stem="d"):
    """`rows` as a data file of format `fmt` (with a header row where the format has one)."""
    path = tmp_path / f"{stem}.{fmt}"
    if fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        sep = "\t" if fmt == "tsv" else ","
        path.write_text(sep.join(rows[0]) + "\n" + "\n".join(sep.join(r.values()) for r in rows) + "\n")
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_every_file_format_maps_columns_and_labels(tmp_path, fmt):
    src = SourceSpec(
        path=_write(tmp_path, fmt).name,
        text_a="p",
        text_b="h",
        label="y",
        subcase="kind",
        label_map={"entailment": 0, "contradiction": 1, "neutral": 1},
    )
    ex = to_examples(read_rows(src, str(tmp_path)), src, ["entailment", "non_entailment"], "task.train")
    assert [(e.text_a, e.text_b, e.label, e.subcase) for e in ex] == [
        ("a cat sat", "a cat", 0, "x"),
        ("the dog ran", "a bird", 1, "y"),
    ]


def test_bad_sources_say_what_is_wrong(tmp_path):
    src = SourceSpec(path=_write(tmp_path, "csv").name, text_a="premise", label="y")
    with pytest.raises(SourceError, match="column 'premise' not found"):
        to_examples(read_rows(src, str(tmp_path)), src, ["entailment", "contradiction"], "task.train")
    src = SourceSpec(path=_write(tmp_path, "csv").name, text_a="p", label="y")
    with pytest.raises(SourceError, match="label 'entailment' is not one of"):
        to_examples(read_rows(src, str(tmp_path)), src, ["pos", "neg"], "task.eval")
    with pytest.raises(SourceError, match="not found"):
        read_rows(SourceSpec(path="missing.tsv"), str(tmp_path))


def test_real_sst2_with_yelp_ood(shared_data):
    task = TaskSpec(
        name="custom",
        labels=["negative", "positive"],
        train=SourceSpec(path=str(shared_data / "sst2" / "train.tsv"), text_a="sentence", limit=200),
        eval=SourceSpec(path=str(shared_data / "sst2" / "dev.tsv"), text_a="sentence"),
        ood=[
            OODSpec(name="yelp", path=str(shared_data / "sentiment_ood" / "yelp_textfooler1k.tsv"), text_a="sentence")
        ],
    )
    data = build_task(task, ".")
    assert len(data.train) == 200 and len(data.id_eval.examples) == 872  # SOURCE.md: dev has 872 rows
    assert sum(e.label for e in data.id_eval.examples) == 444  # SOURCE.md: 444 positive
    (yelp,) = data.ood
    assert yelp.name == "yelp" and len(yelp.examples) == 1000 and sum(e.label for e in yelp.examples) == 482


def test_real_cola_headerless_with_its_ood_dev(shared_data):
    cols = dict(text_a="3", label="1", header=False)
    task = TaskSpec(
        name="custom",
        labels=["unacceptable", "acceptable"],
        train=SourceSpec(path=str(shared_data / "cola" / "in_domain_train.tsv"), **cols),
        eval=SourceSpec(path=str(shared_data / "cola" / "in_domain_dev.tsv"), **cols),
        ood=[OODSpec(name="cola-ood", path=str(shared_data / "cola" / "out_of_domain_dev.tsv"), **cols)],
    )
    data = build_task(task, ".")
    assert (len(data.train), len(data.id_eval.examples), len(data.ood[0].examples)) == (8551, 527, 516)
    assert sum(e.label for e in data.id_eval.examples) == 365 and sum(e.label for e in data.ood[0].examples) == 354


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_validation_and_runs_read_a_file_through_one_reader(tmp_path, fmt):
    """check_source and read_rows share registry.datafiles.read_records: the rows a run reads under a limit are
    those validation checked, and a label validation refuses on a line is one the run would refuse too."""
    from registry.datafiles import check_source, read_records

    path = _write(tmp_path, fmt)
    if fmt in ("csv", "tsv"):  # a blank line counts towards the limit and is no row, in both
        lines = path.read_text().splitlines()
        path.write_text("\n".join([lines[0], "", *lines[1:]]) + "\n")
    src = SourceSpec(path=str(path), text_a="p", text_b="h", label="y", subcase="kind", limit=2)
    rows = read_rows(src, str(tmp_path))
    expected = ROWS[:1] if fmt in ("csv", "tsv") else ROWS  # the blank line was the limit's first row
    assert rows == expected
    records = read_records(path, limit=2, columns=["y"])
    assert records.columns == ("p", "h", "y", "kind")
    positions = [(at, row) for at, row in records.rows]
    first_line = {"csv": 3, "tsv": 3, "jsonl": 1, "parquet": 1}[fmt]
    assert positions[0] == (first_line, {"y": "entailment"})
    labels = ["entailment", "neutral"]  # contradiction is not declared: the second row is refused by both
    unlimited = src.model_copy(update={"limit": None})
    problems = check_source(unlimited, labels, False, str(tmp_path))
    assert [k for k, _ in problems] == ["label"] and "'contradiction'" in problems[0][1]
    with pytest.raises(SourceError, match="contradiction"):
        to_examples(read_rows(unlimited, str(tmp_path)), unlimited, labels, "train")


TEN = [
    {"p": f"premise {i}", "h": f"hypothesis {i}", "y": "entailment" if i % 2 else "contradiction"} for i in range(10)
]


def _write_ten(tmp_path, fmt):
    return _write(tmp_path, fmt, TEN, "ten")


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_rows_take_a_range_of_one_file(tmp_path, fmt):
    """`rows = [start, end]` reads rows start..end-1 (0-based after the header), in runs and in validation alike:
    one file gives disjoint train and dev sets."""
    from registry.datafiles import check_source

    path = _write_ten(tmp_path, fmt)
    train = SourceSpec(path=path.name, text_a="p", text_b="h", label="y", rows=[0, 7])
    dev = SourceSpec(path=path.name, text_a="p", text_b="h", label="y", rows=[7, 10])
    assert read_rows(train, str(tmp_path)) == TEN[:7]
    assert read_rows(dev, str(tmp_path)) == TEN[7:]
    assert read_rows(SourceSpec(path=path.name, rows=[3, 5]), str(tmp_path)) == TEN[3:5]
    assert read_rows(SourceSpec(path=path.name, rows=[8, 50]), str(tmp_path)) == TEN[8:]  # an end past the file
    # validation reads the same range: a label outside it is not refused, one inside it is
    labels = ["contradiction"]  # row 1, 3, ... say entailment
    assert (
        check_source(SourceSpec(path=path.name, text_a="p", label="y", rows=[0, 1]), labels, False, str(tmp_path)) == []
    )
    problems = check_source(
        SourceSpec(path=path.name, text_a="p", label="y", rows=[0, 2]), labels, False, str(tmp_path)
    )
    assert [k for k, _ in problems] == ["label"] and "'entailment'" in problems[0][1]


def test_rows_are_checked_and_leave_fingerprints_alone():
    from pydantic import ValidationError

    for bad, says in (([5, 5], "0 <= start < end"), ([-1, 3], "0 <= start < end"), ([1, 2, 3], "start, end")):
        with pytest.raises(ValidationError, match=says):
            SourceSpec(path="x.tsv", rows=bad)
    with pytest.raises(ValidationError, match="not both"):
        SourceSpec(path="x.tsv", rows=[0, 5], limit=5)
    assert SourceSpec(path="x.tsv", rows=[2, 9]).span() == (2, 7)
    assert SourceSpec(path="x.tsv", limit=4).span() == (0, 4)
    assert SourceSpec(path="x.tsv").span() == (0, None)


def test_hub_rows_become_a_split_slice(monkeypatch):
    import sys
    import types

    asked = []
    fake = types.SimpleNamespace(load_dataset=lambda hub, config, split, revision: asked.append(split) or [])
    monkeypatch.setitem(sys.modules, "datasets", fake)
    read_rows(SourceSpec(hub="nyu-mll/glue", config="mnli", split="train", rows=[9000, 10000]), ".")
    read_rows(SourceSpec(hub="nyu-mll/glue", config="mnli", split="train", limit=50), ".")
    read_rows(SourceSpec(hub="nyu-mll/glue", config="mnli", split="train"), ".")
    assert asked == ["train[9000:10000]", "train[:50]", "train"]


def test_overlapping_train_and_eval_rows_are_named(tmp_path):
    from registry.datafiles import overlapping_rows

    path = _write_ten(tmp_path, "tsv").name
    src = dict(path=path, text_a="p", text_b="h", label="y")
    labels = ["entailment", "contradiction"]
    disjoint = TaskSpec(
        name="custom",
        labels=labels,
        train=SourceSpec(**src, rows=[0, 7]),
        eval=SourceSpec(**src, rows=[7, 10]),
    )
    assert overlapping_rows(disjoint, str(tmp_path)) == []
    overlapping = TaskSpec(
        name="custom",
        labels=labels,
        train=SourceSpec(**src, limit=8),
        eval=SourceSpec(**src, rows=[6, 10]),
        ood=[OODSpec(**src, name="again")],
    )
    assert overlapping_rows(overlapping, str(tmp_path)) == [
        f"task.train and task.eval both read {path}, rows 6..7: set disjoint `rows` (or `limit`)",
        f"task.train and task.ood.again both read {path}, rows 0..7: set disjoint `rows` (or `limit`)",
        f"task.eval and task.ood.again both read {path}, rows 6..9: set disjoint `rows` (or `limit`)",
    ]


def test_validate_warns_of_an_eval_set_inside_the_training_rows(tmp_path):
    from typer.testing import CliRunner

    from registry.cli import app

    _write_ten(tmp_path, "tsv")
    toml = tmp_path / "experiments.toml"
    body = """
[[experiment]]
name = "nli"
seeds = [0]
[experiment.model]
name = "tiny-bert"
tokenizer = "bert-base-uncased"
[experiment.task]
name = "custom"
labels = ["entailment", "contradiction"]
train = {{ path = "ten.tsv", text_a = "p", text_b = "h", label = "y", rows = [0, {end}] }}
eval = {{ path = "ten.tsv", text_a = "p", text_b = "h", label = "y", rows = [7, 10] }}
[experiment.prune]
method = "magnitude"
"""
    toml.write_text(body.format(end=7))
    result = CliRunner().invoke(app, ["validate", "--file", str(toml)])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    toml.write_text(body.format(end=9))
    result = CliRunner().invoke(app, ["validate", "--file", str(toml)])
    assert result.exit_code == 0, result.output  # a warning, not an error: a researcher may mean it
    assert (
        "warning: experiment 'nli': task.train and task.eval both read ten.tsv, rows 7..8: set disjoint `rows`"
    ) in " ".join(result.output.split())


@pytest.mark.parametrize("fmt", ["tsv", "parquet"])
def test_every_keeps_a_systematic_sample_in_runs_and_validation(tmp_path, fmt):
    from registry.datafiles import check_source

    path = _write_ten(tmp_path, fmt)
    src = SourceSpec(path=path.name, text_a="p", text_b="h", label="y", every=2)
    assert read_rows(src, str(tmp_path)) == TEN[::2]  # rows 0, 2, ...: all of them say contradiction
    assert read_rows(src.model_copy(update={"rows": [1, 9], "every": 3}), str(tmp_path)) == [TEN[1], TEN[4], TEN[7]]
    assert check_source(src, ["contradiction"], False, str(tmp_path)) == []  # validation reads the same rows
    problems = check_source(src.model_copy(update={"every": None}), ["contradiction"], False, str(tmp_path))
    assert [k for k, _ in problems] == ["label"]
