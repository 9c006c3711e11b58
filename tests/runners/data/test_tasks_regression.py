"""STS-B as a regression task end to end (no hub): local files in STS-B's columns with float scores, a
one-output head trained with MSE, Pearson/Spearman as the task's metrics, the keep rule on Pearson,
magnitude and importance pruning; L0 refused at validation."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from registry.cli import app
from runners.data.tokenizer import build_word_tokenizer
from tests.helpers import run_cli

WORDS = "the a cat dog bird man woman child runs sleeps eats sings red big small old".split()


MARKED = ("red", "big", "old")


def _stsb_like(path: Path, n: int, seed: int) -> None:
    """Pairs whose score (0-4.5) is 1.5 x how many of three marked words the second sentence holds."""
    rng = random.Random(seed)
    lines = ["sentence1\tsentence2\tlabel"]
    for _ in range(n):
        a, b = rng.sample(WORDS, 5), rng.sample(WORDS, 5)
        lines.append(f"{' '.join(a)}\t{' '.join(b)}\t{1.5 * sum(w in MARKED for w in b):.1f}")
    path.write_text("\n".join(lines) + "\n")


def test_stsb_regression_fine_tunes_evaluates_and_prunes(tmp_path, write_toml):
    _stsb_like(tmp_path / "train.tsv", 256, 0)
    _stsb_like(tmp_path / "dev.tsv", 64, 1)
    build_word_tokenizer(WORDS).save_pretrained(tmp_path / "tok")
    toml = write_toml(f"""
[defaults]
model = {{ name = "micro-bert", tokenizer = "{tmp_path / "tok"}" }}
finetune = {{ epochs = 8.0, lr = 5e-3, batch_size = 32, eval_batch_size = 64 }}

[defaults.task]
name = "stsb"
max_length = 32
train = {{ path = "train.tsv", text_a = "sentence1", text_b = "sentence2" }}
eval = {{ path = "dev.tsv", text_a = "sentence1", text_b = "sentence2" }}

[[experiment]]
name = "tiny"
prune = {{ method = "magnitude", rate = 0.5, keep_ratio = 0.5, max_steps = 2 }}

[[experiment]]
name = "tiny-importance"
prune = {{ method = "importance", max_steps = 1, keep_ratio = 0.0, scoring_examples = 32, controls = ["random"] }}
""")
    store, run, art = run_cli(toml, tmp_path / "s", "tiny")
    runs = pq.read_table(art / "tables" / "run.parquet").to_pylist()
    assert runs[0]["primary_metric"] == "pearson" and runs[0]["task"] == "stsb"
    steps = pq.read_table(art / "tables" / "steps.parquet").to_pylist()
    assert {r["metric"] for r in steps} == {"pearson", "spearman"} and {r["n"] for r in steps} == {64}
    pearson = {r["step"]: r for r in steps if r["metric"] == "pearson"}
    assert pearson[0]["value"] > 0.3  # the one-output head learned the score
    assert all(-1.0 <= r["value"] <= 1.0 for r in steps)
    for step, r in pearson.items():  # the keep rule judged Pearson: >= 0.5 x the full model's
        assert r["passed"] == (step == 0 or r["value"] >= 0.5 * pearson[0]["value"])
    (cfg,) = (tmp_path / "s" / ".subnets" / "finetuned").glob("*/config.json")
    config = json.loads(cfg.read_text())
    assert len(config["id2label"]) == 1 and config["problem_type"] == "regression"  # one output, MSE loss
    metrics = store.client.get_run(run.info.run_id).data.metrics
    assert any(k.endswith("id.pearson") for k in metrics) and not any(k.endswith("id.accuracy") for k in metrics)

    exp = store.client.get_experiment_by_name("tiny-importance")
    (other,) = store.client.search_runs([exp.experiment_id], filter_string="tags.`subnets.kind` = 'run'")
    art2 = Path(other.info.artifact_uri.removeprefix("file://"))
    rows = pq.read_table(art2 / "tables" / "steps.parquet").to_pylist()
    assert {(r["variant"], r["step"]) for r in rows if r["metric"] == "pearson"} == {
        ("pruned", 0),
        ("pruned", 1),
        ("random", 1),
    }


def test_stsb_refuses_l0_before_anything_is_written(tmp_path, write_toml):
    toml = write_toml("""
[[experiment]]
name = "sts-l0"
model = { name = "bert-base-uncased" }
task = { name = "stsb" }
prune = { method = "l0" }
""")
    result = CliRunner().invoke(app, ["run", "--file", str(toml), "--store", str(tmp_path / "s")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "`prune.method`: l0 cannot prune a regression task (stsb)" in result.output and not (tmp_path / "s").exists()
