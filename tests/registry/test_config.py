"""experiments.toml validation: every problem at once, with file, line, experiment and key."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from registry.cli import app
from registry.loader import ConfigError, load_runs
from tests.conftest import tiny_toml


def problems(path) -> list:
    with pytest.raises(ConfigError) as e:
        load_runs(path)
    return e.value.problems


def test_tiny_file_is_valid(write_toml):
    runs = load_runs(write_toml(tiny_toml()))
    assert len(runs) == 1
    r = runs[0]
    assert (r.experiment, r.seed, r.model.name, r.task.name, r.prune.method) == (
        "tiny",
        0,
        "micro-bert",
        "synthetic-nli",
        "magnitude",
    )
    assert r.finetune.lr == 1e-3 and r.finetune.epochs == 1.0 and r.finetune.batch_size == 32
    assert r.prune.params.rate == 0.3 and r.prune.params.max_steps == 3
    assert r.task.params == {"n_train": 256, "n_id_eval": 64, "n_ood_per_subcase": 8}


def test_every_problem_reported_with_line_and_did_you_mean(write_toml):
    text = (
        tiny_toml()
        .replace("lr = 1e-3", "lr = 1e-3\nwarmup_ratoi = 2")
        .replace('method = "magnitude"', 'method = "magnitud"')
        .replace('name = "tiny"\n', 'name = "tiny"\nseed = [1]\n')
    )
    text += (
        '\n[[experiment]]\nname = "Bad Name"\nmodel = { name = "tiny-bret" }\ntask = { name = '
        '"synthetic-nil" }\nprune = { method = "magnitude", rate = "high" }\n'
    )
    path = write_toml(text)
    ps = problems(path)
    by_key = {(p.experiment, p.key): p for p in ps}
    lines = text.splitlines()

    p = by_key[(None, "finetune.warmup_ratoi")]  # set in [defaults]: reported there, once
    assert p.in_defaults and "unknown key" in p.message and "did you mean" in p.message
    assert lines[p.line - 1].strip().startswith("warmup_ratoi")  # defaults block: the line of the key
    p = by_key[("tiny", "prune.method")]
    assert "'magnitude'" in p.message and lines[p.line - 1].strip() == 'method = "magnitud"'
    assert "'seeds'" in by_key[("tiny", "seed")].message
    assert "expected a slug" in by_key[("Bad Name", "name")].message
    assert "'tiny-bert'" in by_key[("Bad Name", "model.name")].message
    assert "'synthetic-nli'" in by_key[("Bad Name", "task.name")].message
    assert "expected a number" in by_key[("Bad Name", "prune.rate")].message
    assert all(p.file == str(path) for p in ps)


def test_toml_syntax_error_has_a_line(write_toml):
    path = write_toml('[[experiment]]\nname = "x"\nmodel = { name = "tiny-bert" \n')
    (p,) = problems(path)
    assert p.line == 3 and "not valid TOML" in p.message


def test_method_params_are_strict(write_toml):
    path = write_toml(tiny_toml().replace("max_steps = 3", "max_steps = 3.5\nkeep_ratioo = 1"))
    keys = {p.key: p.message for p in problems(path)}
    assert "expected a whole number" in keys["prune.max_steps"]
    assert "did you mean 'keep_ratio'" in keys["prune.keep_ratioo"]


def test_task_params_validated_and_custom_needs_sources(write_toml):
    text = tiny_toml().replace("n_train = 256", "n_train = -1")
    text += (
        '\n[[experiment]]\nname = "c"\nmodel = { name = "tiny-bert" }\ntask = { name = "custom" '
        '}\nprune = { method = "magnitude" }\n'
    )
    keys = {(p.experiment, p.key) for p in problems(write_toml(text))}
    assert (None, "task.params.n_train") in keys  # set in [defaults]
    assert {("c", "task.labels"), ("c", "task.train"), ("c", "task.eval")} <= keys


def test_duplicate_names_and_unknown_top_level(write_toml):
    text = tiny_toml() + '\n[[experiment]]\nname = "tiny"\nprune = { method = "magnitude" }\n[defautls]\nx = 1\n'
    msgs = [p.message for p in problems(write_toml(text))]
    assert any("duplicate experiment name" in m for m in msgs)
    assert any("did you mean 'defaults'" in m for m in msgs)


def test_cli_validate_exits_2_without_traceback_and_writes_nothing(write_toml, tmp_path):
    path = write_toml(tiny_toml().replace("rate = 0.3", "rate = 3.0"))
    before = set(tmp_path.iterdir())
    result = CliRunner().invoke(app, ["validate", "--file", str(path)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert f"{path}:" in result.output and "experiment 'tiny'" in result.output and "`prune.rate`" in result.output
    assert set(tmp_path.iterdir()) == before
    result = CliRunner().invoke(app, ["run", "--file", str(path), "--store", str(tmp_path / "store")])
    assert result.exit_code == 2 and not (tmp_path / "store").exists()


def test_cli_explain_lists_every_field():
    result = CliRunner().invoke(app, ["validate", "--explain", "--markdown"])
    assert result.exit_code == 0
    for key in ("`keep_ratio`", "`max_length`", "`warmup_ratio`", "`n_ood_per_subcase`", "`pred_map`"):
        assert key in result.output
    assert "| `experiment.finetune` | `lr` | `5e-05` | Peak AdamW learning rate. |" in result.output


def _messages(path) -> list[str]:
    return [f"{p.line}|{p.key}|{p.message}" for p in problems(path)]


def test_a_non_utf8_byte_is_a_located_problem(tmp_path):
    path = tmp_path / "experiments.toml"
    path.write_bytes(tiny_toml().encode().replace(b'description = "tiny', b'description = "t\xe9iny'))
    (msg,) = _messages(path)
    line = tiny_toml().splitlines().index('description = "tiny end-to-end check"') + 1
    assert msg.startswith(f"{line}||not UTF-8 text: byte 0xe9")
    result = CliRunner().invoke(app, ["validate", "--file", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_an_oversized_grid_is_refused_before_it_is_built(write_toml):
    axis = "[" + ", ".join(str(i) for i in range(1, 101)) + "]"
    text = tiny_toml().replace("lr = 1e-3", f"lr = {axis}\nbatch_size = {axis}").replace("batch_size = 32\n", "")
    text = text.replace("seeds = [0]", "seeds = [0, 1]")
    (msg,) = _messages(write_toml(text))
    assert "expands to 20,000 runs; at most 10,000" in msg


def test_duplicate_seeds_are_refused(write_toml):
    (msg,) = _messages(write_toml(tiny_toml().replace("seeds = [0]", "seeds = [0, 0]")))
    assert "seeds|each seed may appear once" in msg


def test_equivalent_spellings_share_one_fingerprint(write_toml):
    one = tiny_toml().replace("rate = 0.3", "strengths = [0.2, 0.5, 0.8]")
    other = tiny_toml().replace("rate = 0.3", "strengths = [0.8, 0.2, 0.5]")
    a, b = load_runs(write_toml(one, "a.toml"))[0], load_runs(write_toml(other, "b.toml"))[0]
    assert a.fingerprint == b.fingerprint and b.prune.params.strengths == [0.2, 0.5, 0.8]


def test_model_config_keys_and_head_geometry_are_checked(write_toml):
    text = tiny_toml().replace(
        'name = "micro-bert"', 'name = "micro-bert"\nconfig = { hiden_size = 48, num_attention_heads = 5 }'
    )
    msgs = _messages(write_toml(text))
    assert any("model.config.hiden_size|not a BertConfig key" in m and "did you mean 'hidden_size'" in m for m in msgs)
    assert any("hidden_size 32 is not a multiple of num_attention_heads 5" in m for m in msgs)


def test_pred_map_and_data_paths_are_checked_before_running(write_toml, tmp_path):
    data = tmp_path / "ood.tsv"
    data.write_text("s\tlabel\nx\t0\n")
    text = tiny_toml().replace(
        "max_length = 48",
        f'max_length = 48\nood = [{{ name = "o", path = "{data}", text_a = "s", pred_map = [0, 1, 2] }},'
        ' { name = "gone", path = "missing.tsv", text_a = "s" }]',
    )
    msgs = _messages(write_toml(text))
    assert any("task.ood.o.pred_map|needs one entry per model label (2), got 3" in m for m in msgs)
    assert any("task.ood.o.pred_map|indices [2] are outside" in m for m in msgs)
    fixed = text.replace("pred_map = [0, 1, 2]", "pred_map = [0, 1]")
    (msg,) = _messages(write_toml(fixed, "b.toml"))
    assert "task.ood.gone.path|data file not found" in msg and msg.endswith("missing.tsv")
