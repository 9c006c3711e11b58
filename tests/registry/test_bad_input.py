"""The bad-input corpus (tests/data/bad/): every malformed experiments file is refused by `subnets validate`
and by `subnets run` before anything is written, with one message in the README's words that names the
file, the line, the experiment and the dotted key; exit code 2, no traceback, no store, no cache.

Each case is a file; the line a problem must point at is the one marked `# <-` (CASES gives it only where
the file cannot carry a marker). CASES gives the experiment (None: the file itself; "[defaults]": reported
once, at [defaults]), the dotted key, how many problems the file holds, and a fragment of the message.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from registry.cli import app
from registry.loader import ConfigError, load_runs
from tests.helpers import PROJECT_ROOT, TEST_DATA

BAD = TEST_DATA / "bad"
ROOT = PROJECT_ROOT
DEFAULTS = "[defaults]"

CASES: dict[str, tuple[str | None, str, int, str]] = {
    # TOML syntax and encodings
    "01-toml-unclosed-inline-table": (None, "", 1, "not valid TOML: Unclosed inline table (column 33)"),
    "02-toml-key-defined-twice": (None, "", 1, "not valid TOML: a key is set twice"),
    "03-toml-bare-string": (None, "", 1, 'text needs quotes, e.g. name = "demo"'),
    "04-encoding-latin1-byte": (None, "", 1, "not UTF-8 text: byte 0xe9 at column 19 (save the file as UTF-8)"),
    "05-encoding-utf16-bom": (None, "", 1, "UTF-16 text (it starts with a UTF-16 byte-order mark)"),
    "06-encoding-nul-byte": (None, "", 1, "control character \\x00 is not allowed in TOML text (column 17)"),
    "07-empty-file": (None, "experiment", 1, "no [[experiment]] declared (the file is empty)"),
    "08-top-level-unknown-table": (None, "defautls", 1, "unknown top-level table; did you mean 'defaults'?"),
    "09-experiment-is-a-table": (None, "experiment", 1, "write each experiment under its own [[experiment]] header"),
    "10-top-level-unknown-key": (
        None,
        "seed",
        1,
        "unknown top-level key; did you mean 'seeds', under [defaults] or an [[experiment]]?",
    ),
    # wrong types
    "11-type-lr-text": ("bad", "finetune.lr", 1, 'expected a number (got "fast")'),
    "12-type-max-steps-fraction": ("bad", "prune.max_steps", 1, "expected a whole number (got 3.5)"),
    "13-type-seeds-not-list": ("bad", "seeds", 1, "expected a list [...] (got 0)"),
    "14-type-model-is-text": ("bad", "model", 1, 'expected a table (got "micro-bert")'),
    "15-type-precision-literal": ("bad", "runtime.precision", 1, 'expected one of "fp32", "bf16" (got "fp16")'),
    "16-type-max-length-bool": ("bad", "task.max_length", 1, "expected a whole number (got true)"),
    "17-type-cka-not-table": ("bad", "cka", 1, "expected a table (got true)"),
    "18-type-tag-value-number": ("bad", "tags.owner", 1, "expected text in quotes (got 1)"),
    "19-type-model-config-list": (
        "bad",
        "model.config.num_hidden_layers",
        1,
        "expected a number, text in quotes or true or false (got [2])",
    ),
    "20-type-ood-not-list": ("bad", "task.ood", 1, "expected a list [...] (got a table)"),
    "21-type-search-dimension-number": ("bad", "search.space.target", 1, "expected a table (got 0.5)"),
    # unknown keys at every level, with "did you mean"
    "22-unknown-defaults-key-two-experiments": (DEFAULTS, "seed", 1, "unknown key; did you mean 'seeds'?"),
    "23-unknown-experiment-key": ("bad", "descripton", 1, "unknown key; did you mean 'description'?"),
    "24-unknown-model-key": ("bad", "model.revison", 1, "unknown key; did you mean 'revision'?"),
    "25-unknown-model-config-key": (
        "bad",
        "model.config.hiden_size",
        1,
        "not a BertConfig key micro-bert takes; did you mean 'hidden_size'",
    ),
    "26-unknown-task-key": ("bad", "task.max_len", 1, "unknown key; did you mean 'max_length'?"),
    "27-unknown-task-params-key": ("bad", "task.params.n_trian", 1, "unknown key; did you mean 'n_train'"),
    "28-unknown-source-key": ("bad", "task.train.text", 1, "unknown key; did you mean 'text_b' or 'text_a'?"),
    "29-unknown-ood-key": ("bad", "task.ood.o.pred_mapp", 1, "unknown key; did you mean 'pred_map'?"),
    "30-unknown-finetune-key": ("bad", "finetune.warmup", 1, "unknown key; did you mean 'warmup_ratio'?"),
    "31-unknown-prune-key": ("bad", "prune.keep_ration", 1, "unknown key; did you mean 'keep_ratio'?"),
    "32-prune-key-of-another-method": (
        "bad",
        "prune.rate",
        1,
        "rate is a parameter of magnitude, not of l0 (l0 takes: controls,",
    ),
    "33-unknown-cka-key": ("bad", "cka.pool", 1, "unknown key; did you mean 'pooling'?"),
    "34-unknown-runtime-key": ("bad", "runtime.devices", 1, "unknown key; did you mean 'device'?"),
    "35-unknown-search-key": ("bad", "search.trial", 1, "unknown key; did you mean 'trials'?"),
    "36-search-space-not-a-parameter": (
        "bad",
        "search.space.rat",
        1,
        "magnitude has no searchable parameter 'rat'; did you mean 'rate'?",
    ),
    "37-unknown-search-range-key": ("bad", "search.space.target.lo", 1, "unknown key; did you mean 'low'"),
    # impossible values
    "38-negative-rate": ("bad", "prune.rate", 1, "must be more than 0 (got -0.1)"),
    "39-keep-ratio-above-one": ("bad", "prune.keep_ratio", 1, "must be at most 1 (got 1.5)"),
    "40-max-steps-zero": ("bad", "prune.max_steps", 1, "must be at least 1 (got 0)"),
    "41-empty-strengths": ("bad", "prune.strengths", 1, "needs at least 1 value (got [])"),
    "42-empty-magnitude-strengths": (
        "bad",
        "prune.strengths",
        1,
        "give at least one strength (or leave strengths out to prune iteratively)",
    ),
    "43-target-outside-unit-interval": ("bad", "prune.targets", 1, "item 2 of the list (1.2): must be less than 1"),
    "44-epochs-zero": ("bad", "finetune.epochs", 1, "must be more than 0 (got 0)"),
    "45-batch-size-zero": ("bad", "finetune.batch_size", 1, "must be at least 1 (got 0)"),
    "46-max-length-beyond-positions": (
        "bad",
        "task.max_length",
        1,
        "512 tokens do not fit model 'micro-bert': its position embeddings hold at most 64",
    ),
    "47-unknown-device": (
        "bad",
        "runtime.device",
        1,
        'expected auto, cpu, cuda, cuda:N (a GPU number) or mps (got "gpu")',
    ),
    "48-bf16-on-cpu": (
        "bad",
        "runtime.precision",
        1,
        "bf16 autocast runs on CUDA only; device 'cpu' is not a CUDA device",
    ),
    "49-task-param-out-of-range": ("bad", "task.params.n_nouns", 1, "must be at most 40 (got 100)"),
    "50-controls-twice": ("bad", "prune.controls", 1, "each control may be named once"),
    "51-unknown-control": (
        "bad",
        "prune.controls",
        1,
        'item 1 of the list ("randon"): expected one of "random", "bad"; did you mean \'random\'?',
    ),
    # grids, names and seeds
    "52-empty-grid": ("bad", "finetune.lr", 1, "an empty list sweeps nothing; give at least one value"),
    "53-oversized-grid": (
        "bad",
        "finetune.lr",
        1,
        "the grid expands to 100,000,000,000 runs; at most 10,000 per experiment",
    ),
    "54-duplicate-experiment-names": ("bad", "name", 1, "duplicate experiment name"),
    "55-duplicate-seeds": ("bad", "seeds", 1, "each seed may appear once (got [0, 0])"),
    "56-duplicate-prune-seeds": ("bad", "prune_seeds", 1, "each seed may appear once (got [1, 2, 1])"),
    "57-name-escapes-path": (
        "../x",
        "name",
        1,
        'expected a slug: 1 to 64 lower-case letters, digits, - and _, starting with a letter or digit (got "../x")',
    ),
    "58-name-with-slash": (
        "a/b",
        "name",
        1,
        'expected a slug: 1 to 64 lower-case letters, digits, - and _, starting with a letter or digit (got "a/b")',
    ),
    "59-name-empty": (
        "#1",
        "name",
        1,
        'expected a slug: 1 to 64 lower-case letters, digits, - and _, starting with a letter or digit (got "")',
    ),
    "60-name-too-long": ("x" * 100, "name", 1, "expected a slug: 1 to 64 lower-case letters"),
    "61-name-control-character": (
        "a\x07b",
        "name",
        1,
        "expected a slug: 1 to 64 lower-case letters, digits, - and _, starting with a letter or "
        'digit (got "a\\u0007b")',
    ),
    "62-name-missing": ("#1", "name", 1, "required key is missing"),
    "63-ood-name-escapes-path": (
        "bad",
        "task.ood.0.name",
        1,
        'expected a slug: 1 to 64 lower-case letters, digits, - and _, starting with a letter or digit (got "../etc")',
    ),
    # custom data, read up front
    "64-data-file-missing": ("bad", "task.train.path", 1, "data file not found: {bad}/data/nowhere.tsv"),
    "65-data-column-missing": (
        "bad",
        "task.eval.text_a",
        1,
        "{bad}/data/train.tsv: column 'text' not found (columns: sentence, label)",
    ),
    "66-data-label-not-declared": (
        "bad",
        "task.eval.label",
        1,
        "{bad}/data/neutral.tsv: line 3: label 'neutral' is not one of ['neg', 'pos']",
    ),
    "67-data-label-map-out-of-range": (
        "bad",
        "task.eval.label_map",
        1,
        "maps { pos = 2 } outside the 2 labels of this set (indices 0..1)",
    ),
    "68-data-file-empty": ("bad", "task.eval.path", 1, "{bad}/data/empty.tsv: the file is empty"),
    "69-data-header-only": ("bad", "task.eval.path", 1, "{bad}/data/header-only.tsv: no data rows (only a header)"),
    "70-data-wrong-extension": (
        "bad",
        "task.eval.path",
        1,
        "unsupported data file type '.txt' ({bad}/data/notes.txt); use .csv, .tsv, .jsonl, .parquet",
    ),
    "71-data-subcase-looks-like-path": (
        "bad",
        "task.ood.o.subcase",
        1,
        "{bad}/data/subcase-paths.tsv: line 3: subcase value 'x/../../etc' cannot be part of a metric name",
    ),
    "72-custom-task-without-sources": ("bad", "task.train", 2, "required for a custom task"),
    "73-data-source-path-and-hub": (
        "bad",
        "task.train",
        1,
        "give exactly one of `path` (local file) or `hub` (hub dataset id)",
    ),
    # models
    "74-model-unknown-builtin": (
        "bad",
        "model.name",
        1,
        "unknown model 'micro-bret'; did you mean the built-in 'micro-bert'?",
    ),
    "75-model-heads-do-not-divide-hidden": (
        "bad",
        "model.config",
        1,
        "hidden_size 32 is not a multiple of num_attention_heads 5",
    ),
    "76-model-builtin-custom-task-no-tokenizer": (
        "bad",
        "model.tokenizer",
        1,
        "built-in model 'micro-bert' has no tokenizer of its own and task 'custom' brings none",
    ),
    "77-model-config-on-hub-model": ("bad", "model.config", 1, "config overrides apply to built-in models only"),
    "78-model-export-albert": (
        "bad",
        "prune.export",
        1,
        "'tiny-albert' is model type 'albert', which cannot be exported",
    ),
    "79-model-unsupported-architecture": (
        "bad",
        "model.name",
        1,
        "'models/gpt2' is model type 'gpt2', which the gates do not support",
    ),
    "80-model-directory-without-config": ("bad", "model.name", 1, "model directory '{bad}/data' has no config.json"),
    # pred_map, evaluation sets, names in catalogues
    "81-pred-map-wrong-length": ("bad", "task.ood.o.pred_map", 1, "needs one entry per model label (2), got 3"),
    "82-pred-map-out-of-range": ("bad", "task.ood.o.pred_map", 1, "indices [2] are outside this set's 2 labels"),
    "83-cka-split-unknown": ("bad", "cka.split", 1, "no evaluation set 'hans_lik'; did you mean 'hans_like'?"),
    "84-task-metric-unknown": ("bad", "task.metric", 1, "unknown metric 'acc'; did you mean 'mcc' or 'accuracy'?"),
    "85-task-unknown": ("bad", "task.name", 1, "unknown task 'synthetic-nil'; did you mean 'synthetic-nli'?"),
    "86-method-unknown": ("bad", "prune.method", 1, "unknown pruning method 'magnitud'; did you mean 'magnitude'?"),
    "87-prune-missing": ("bad", "prune.method", 1, 'required: a [experiment.prune] table with `method = "..."`'),
    # search
    "88-search-range-low-above-high": ("bad", "search.space.target", 1, "low (0.9) must be below high (0.1)"),
    "89-search-trials-zero": ("bad", "search.trials", 1, "must be at least 1 (got 0)"),
    "90-search-unknown-sampler": ("bad", "search.sampler", 1, "(got \"tpee\"); did you mean 'tpe'?"),
    "91-search-range-outside-method": (
        "bad",
        "search.space.target",
        1,
        "1.5 is not a valid target: must be less than 1",
    ),
    # [defaults] once, seeds, numbers, shapes
    "92-defaults-mistake-reported-once": (DEFAULTS, "finetune.lr", 1, "must be more than 0 (got -1.0)"),
    "93-seed-negative": ("bad", "seeds", 1, "item 2 of the list (-1): must be at least 0"),
    "94-lr-infinite": ("bad", "finetune.lr", 1, "must be a finite number (got inf)"),
    "95-method-not-text": (
        "bad",
        "prune.method",
        1,
        "expected the method's name in quotes: attribution, importance, l0, magnitude (got 3)",
    ),
    "96-defaults-not-a-table": (None, "defaults", 1, "expected a table [defaults]"),
    "97-ood-items-not-tables": ("bad", "task.ood", 1, 'item 1 of the list ("yelp"): expected a table'),
    "98-max-length-below-minimum": ("bad", "task.max_length", 1, "must be at least 8 (got 4)"),
}

# Words a message must never show: raw pydantic phrases, schema class names, Python type names, regexes.
FORBIDDEN = re.compile(
    r"Traceback|Extra inputs|Input should|should match pattern|literal_error|Value error|pydantic|"
    r"\[type=|\w+Spec\b|\w+Params\b|\b(dict|str|int|float|bool|NoneType|list\[\w+\])\b|\^\[|\{0,63\}"
)


def case_path(stem: str) -> Path:
    return BAD / f"{stem}.toml"


def marked_line(path: Path) -> int | None:
    """The line marked `# <-` (the file decoded as it was written: UTF-8, UTF-16 or Latin-1)."""
    raw = path.read_bytes()
    text = raw.decode("utf-16") if raw.startswith(b"\xff\xfe") else raw.decode("utf-8", errors="replace")
    marked = [i for i, line in enumerate(text.splitlines(), 1) if line.rstrip().endswith("# <-")]
    assert len(marked) <= 1, f"{path.name}: more than one line marked"
    return marked[0] if marked else None


def expected(stem: str):
    experiment, key, count, fragment = CASES[stem]
    return experiment, key, count, fragment.replace("{bad}", str(BAD.resolve()))


def the_problem(stem: str):
    """(all problems, the one the case is about) from the library call."""
    path = case_path(stem)
    with pytest.raises(ConfigError) as e:
        load_runs(path)
    experiment, key, count, fragment = expected(stem)
    problems = e.value.problems
    hits = [p for p in problems if p.key == key and fragment in p.message]
    assert hits, f"{stem}: no problem at `{key}` saying {fragment!r}; got:\n" + "\n".join(map(str, problems))
    return problems, hits[0]


def _bare(output: str) -> str:
    """Output without the file paths it names (their letters are not message words)."""
    output = output.replace(str(BAD.resolve()), "<bad>").replace(str(BAD), "<bad>")
    return re.sub(r"<bad>/[\w./-]+", "<file>", output)


def test_the_corpus_is_complete():
    files = sorted(p.stem for p in BAD.glob("*.toml"))
    assert files == sorted(CASES), "every file in tests/data/bad has a CASES entry and every entry a file"
    assert len(files) >= 40


@pytest.mark.parametrize("stem", sorted(CASES))
def test_each_case_is_one_located_problem_in_plain_words(stem):
    problems, p = the_problem(stem)
    experiment, key, count, _ = expected(stem)
    assert len(problems) == count, "\n".join(map(str, problems))
    assert all(q.file == str(case_path(stem)) for q in problems)
    if experiment == DEFAULTS:
        assert p.in_defaults and p.experiment is None
    else:
        assert p.experiment == experiment and not p.in_defaults
    assert p.line == marked_line(case_path(stem)), f"{stem}: {p}"
    for q in problems:
        assert not FORBIDDEN.search(_bare(str(q))), str(q)


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("stem", sorted(CASES))
def test_validate_and_run_refuse_before_writing_anything(stem, command, tmp_path, monkeypatch):
    _, p = the_problem(stem)
    monkeypatch.chdir(tmp_path)  # whatever a command writes by accident lands here or in the store
    store = tmp_path / "store"
    before = sorted(x.name for x in BAD.rglob("*"))
    args = [command, "--file", str(case_path(stem))] + (["--store", str(store)] if command == "run" else [])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert str(p) in result.output  # file:line: experiment '...', key `...`: message
    assert not FORBIDDEN.search(_bare(result.output)), result.output
    if p.in_defaults:
        assert result.output.count(f"[defaults], key `{p.key}`") == 1
    assert list(tmp_path.iterdir()) == []  # no store, no mlflow.db, no mlartifacts, no .subnets, no optuna.db
    assert sorted(x.name for x in BAD.rglob("*")) == before


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "registry.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "stem", ["04-encoding-latin1-byte", "22-unknown-defaults-key-two-experiments", "71-data-subcase-looks-like-path"]
)
def test_a_real_process_refuses_without_a_traceback(stem, tmp_path):
    _, p = the_problem(stem)
    store = tmp_path / "store"
    for args in (
        ["validate", "--file", str(case_path(stem))],
        ["run", "--file", str(case_path(stem)), "--store", str(store)],
    ):
        proc = _cli(*args, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert str(p) in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
        assert list(tmp_path.iterdir()) == []


def test_run_refuses_before_torch_is_imported(tmp_path):
    """`subnets run` on a bad file answers from the registry alone: torch, MLflow and Optuna stay unloaded."""
    code = (
        "import sys\nfrom registry.cli import app\ntry:\n    app(sys.argv[1:])\nexcept SystemExit as e:\n"
        "    print(sorted(m for m in ('torch', 'transformers', 'mlflow', 'optuna') if m in "
        "sys.modules), file=sys.stderr)\n"
        "    raise\n"
    )
    path = case_path("38-negative-rate")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code, "run", "--file", str(path), "--store", str(tmp_path / "s")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "`prune.rate`: must be more than 0" in proc.stderr
    assert proc.stderr.strip().endswith("[]"), proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    text = (BAD / "38-negative-rate.toml").read_text().replace("rate = -0.1", "rate = 0.1")
    path = tmp_path / "experiments.toml"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    (run,) = load_runs(path)
    assert run.prune.params.rate == 0.1


def test_a_defaults_mistake_is_reported_once_however_many_experiments_inherit_it(tmp_path):
    path = case_path("92-defaults-mistake-reported-once")
    problems, p = the_problem("92-defaults-mistake-reported-once")
    assert len(problems) == 1 and str(p).startswith(f"{path}:5: [defaults], key `finetune.lr`: must be more than 0")
    # an experiment that sets the key itself is reported as that experiment, at its own line
    text = path.read_text().replace('name = "bad2"\n', 'name = "bad2"\nfinetune = { lr = -2.0 }\n')
    (tmp_path / "x.toml").write_text(text)
    with pytest.raises(ConfigError) as e:
        load_runs(tmp_path / "x.toml")
    shown = [(q.experiment, q.in_defaults, q.line, q.message) for q in e.value.problems]
    line = text.splitlines().index("finetune = { lr = -2.0 }") + 1
    assert sorted(shown, key=str) == [
        ("bad2", False, line, "must be more than 0 (got -2.0)"),
        (None, True, 5, "must be more than 0 (got -1.0)"),
    ]


TRICKY = '''# a comment
[defaults]
"seeds" = [0,
  1]   # a list over two lines
[defaults.task]
name = 'syn#thetic'
params.n_train = 5

[[experiment]]
name = "a\\"b"
description = """two
lines # not a comment
"""
model.name = "x"
[[experiment.task.ood]]
name = "o1"
pred_map = [0, 1]
[[experiment.task.ood]]
name = "o2"
pred_map = [
  0,
  2,
]
[experiment.prune]
method = "l0"
targets = [0.1, 0.2]
'''


@pytest.mark.parametrize(
    "path, line",
    [
        (("defaults", "seeds"), 3),
        (("defaults", "task", "params", "n_train"), 7),
        (("experiment", 0, "description"), 11),
        (("experiment", 0, "model", "name"), 14),
        (("experiment", 0, "task"), 15),
        (("experiment", 0, "task", "ood", "o2", "pred_map"), 20),
        (("experiment", 0, "task", "ood", 1, "pred_map", 1), 22),
        (("experiment", 0, "task", "ood", "o1", "name"), 16),
        (("experiment", 0, "prune", "targets"), 26),
        (("experiment", 0, "prune", "missing"), 24),  # a missing key: its table's header
        (("nowhere", "name"), None),
    ],
)
def test_lines_are_found_in_every_toml_shape(path, line):
    """Quoted and dotted keys, lists over several lines, multi-line strings, '#' inside strings, arrays of
    tables under an array of tables (an element named by position or by its `name`)."""
    from registry.problems import locate

    assert locate(TRICKY, path) == line
