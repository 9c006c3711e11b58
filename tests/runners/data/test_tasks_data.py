"""Local data checked up front by `subnets validate` and `subnets run`: missing file, missing column, a
label outside the declared set, a label_map index out of range; every format; nothing written."""

from __future__ import annotations

import json
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from registry.cli import app
from registry.loader import ConfigError, load_runs

ROWS = [
    {"text": "a fine film", "other": "x", "y": "pos"},
    {"text": "dull", "other": "y", "y": "neg"},
    {"text": "great", "other": "z", "y": "pos"},
]


def _write(path, rows, fmt):
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        sep = "\t" if fmt == "tsv" else ","
        path.write_text(sep.join(rows[0]) + "\n" + "".join(sep.join(map(str, r.values())) + "\n" for r in rows))
    return path


def _toml(train, eval_, ood="", labels='["neg", "pos"]', extra=""):
    return f"""
[[experiment]]
name = "local"
model = {{ name = "bert-base-uncased" }}
prune = {{ method = "magnitude" }}

[experiment.task]
name = "custom"
labels = {labels}
train = {{ {train} }}
eval = {{ {eval_} }}
{ood}
{extra}
"""


def _problems(path) -> dict[str, str]:
    with pytest.raises(ConfigError) as e:
        load_runs(path)
    assert all(p.experiment == "local" and p.file == str(path) for p in e.value.problems)
    return {p.key: p.message for p in e.value.problems}


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_every_format_is_checked_for_columns_and_labels(tmp_path, write_toml, fmt):
    good = _write(tmp_path / f"good.{fmt}", ROWS, fmt)
    bad = _write(tmp_path / f"bad.{fmt}", ROWS + [{"text": "meh", "other": "w", "y": "neutral"}], fmt)
    ok = write_toml(
        _toml(
            f'path = "{good.name}", text_a = "text", label = "y"', f'path = "{good.name}", text_a = "text", label = "y"'
        )
    )
    assert len(load_runs(ok)) == 1
    path = write_toml(
        _toml(
            f'path = "{good.name}", text_a = "sentence", label = "y"',
            f'path = "{bad.name}", text_a = "text", text_b = "other", label = "y"',
        ),
        "bad.toml",
    )
    found = _problems(path)
    assert set(found) == {"task.train.text_a", "task.eval.label"}
    assert found["task.train.text_a"] == f"{good}: column 'sentence' not found (columns: text, other, y)"
    where = "row 4" if fmt == "parquet" else ("line 4" if fmt == "jsonl" else "line 5")
    assert found["task.eval.label"].startswith(f"{bad}: {where}: label 'neutral' is not one of ['neg', 'pos']")


def test_a_label_map_must_cover_every_label_and_stay_in_range(tmp_path, write_toml):
    data = _write(tmp_path / "d.tsv", ROWS, "tsv")
    src = f'path = "{data}", text_a = "text", label = "y"'
    path = write_toml(
        _toml(
            src + ", label_map = { pos = 1 }",
            src + ", label_map = { pos = 1, neg = 2 }",
            ood=f'ood = [{{ name = "o", {src}, labels = ["a", "b", "c"], label_map = {{ pos = 2, neg = 3 }} }}]',
        )
    )
    found = _problems(path)
    assert "line 3: label 'neg' is not a key of its label_map ('pos')" in found["task.train.label"]
    assert found["task.eval.label_map"] == "maps { neg = 2 } outside the 2 labels of this set (indices 0..1)"
    assert found["task.ood.o.label_map"] == "maps { neg = 3 } outside the 3 labels of this set (indices 0..2)"


def test_headerless_files_rows_without_a_field_and_limits(tmp_path, write_toml):
    """CoLA's release files have no header (columns 0..3); a short row is named by its line; `limit`
    checks only the rows a run reads; unlabelled rows (GLUE test splits) are not errors."""
    data = tmp_path / "cola.tsv"
    data.write_text(
        "src\t1\t\tgood sentence .\nsrc\t0\t*\tbad sentence .\nsrc\t1\nsrc\t-1\t\tunlabelled .\nsrc\t7\t\tx\n"
    )
    cols = f'path = "{data}", header = false, text_a = "3", label = "1"'
    text = _toml(cols, cols, labels='["unacceptable", "acceptable"]').replace(
        'name = "custom"\nlabels = ["unacceptable", "acceptable"]', 'name = "cola"'
    )
    found = _problems(write_toml(text))
    assert found["task.train.text_a"] == f"{data}: line 3 has no '3' field (1 such row(s))"
    assert "line 5: label '7' is not one of ['unacceptable', 'acceptable']" in found["task.train.label"]
    limited = text.replace(cols, cols + ", limit = 2")
    assert len(load_runs(write_toml(limited, "limited.toml"))) == 1
    missing = text.replace('label = "1"', 'label = "label"', 1)
    msg = _problems(write_toml(missing, "m.toml"))["task.train.label"]
    assert "column 'label' not found (columns: 0, 1, 2, 3) (header = false: columns are numbered 0, 1, ...)" in msg


def test_cli_exit_2_names_file_experiment_and_key_and_writes_nothing(tmp_path, write_toml):
    data = _write(tmp_path / "d.csv", ROWS, "csv")
    path = write_toml(
        _toml(f'path = "{data}", text_a = "text", label = "y"', f'path = "{data}", text_a = "text", label = "other"')
    )
    before = set(tmp_path.iterdir())
    for args in (["validate"], ["run", "--store", str(tmp_path / "store")]):
        result = CliRunner().invoke(app, [*args, "--file", str(path)])
        assert result.exit_code == 2, result.output
        assert (
            "Traceback" not in result.output and f"{path}:" in result.output and "experiment 'local'" in result.output
        )
        assert "`task.eval.label`" in result.output and "label 'x' is not one of" in result.output
    assert set(tmp_path.iterdir()) == before


def test_validating_real_data_reads_only_what_it_needs(shared_data, write_toml):
    """SST-2's 67,349 training rows: header and label column only, well under a second."""
    src = f'path = "{shared_data}/sst2/train.tsv", text_a = "sentence"'
    path = write_toml(_toml(src, src, labels='["negative", "positive"]'))
    from registry import datafiles

    datafiles._CACHE.clear()
    started = time.perf_counter()
    load_runs(path)
    assert time.perf_counter() - started < 1.5
    (scan,) = datafiles._CACHE.values()  # train and eval: one read of the file
    assert {k: n for k, (_, n) in scan.labels.items()} == {"1": 37569, "0": 29780}  # SOURCE.md's counts
