"""A tiny experiment end to end: run -> MLflow -> Parquet -> report; then a rerun skips it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from registry.cli import app
from runners.tracking import provenance
from runners.tracking.store import FINGERPRINT, KIND, Store
from tests.conftest import tiny_toml
from tests.helpers import run_cli


def test_tiny_experiment_end_to_end(write_toml, tmp_path):
    started = time.perf_counter()
    toml = write_toml(tiny_toml(max_steps=3))
    store_dir = tmp_path / "store"
    runner = CliRunner()
    result = runner.invoke(app, ["run", "--file", str(toml), "--store", str(store_dir), "--quiet"])
    assert result.exit_code == 0, result.output

    store = Store.at(store_dir)
    exp = store.client.get_experiment_by_name("tiny")
    (run,) = store.client.search_runs([exp.experiment_id], filter_string=f"tags.`{KIND}` = 'run'")
    assert run.info.status == "FINISHED"
    from registry.loader import load_runs

    spec = load_runs(toml)[0]
    assert run.data.tags[FINGERPRINT] == spec.fingerprint
    assert run.data.params["prune.rate"] == "0.3" and run.data.params["finetune.lr"] == "0.001"
    assert run.data.tags["subnets.version.torch"].startswith("2.")
    assert run.data.tags["subnets.machine"] == provenance.machine()  # where its timings were measured
    history = store.client.get_metric_history(run.info.run_id, "step/sparsity")
    assert [m.step for m in history] == [0, 1, 2, 3]
    assert [round(m.value, 6) for m in history][0] == 0.0 and history[-1].value > 0.6  # 1 - 0.7^3 = 0.657

    art = Path(run.info.artifact_uri.removeprefix("file://"))
    assert sorted(p.name for p in (art / "masks").iterdir()) == [f"step_00{i}.safetensors" for i in (1, 2, 3)]
    steps = pq.read_table(art / "tables" / "steps.parquet").to_pylist()
    ids = [r for r in steps if r["eval_set"] == "id" and r["subcase"] == "all"]
    assert [r["step"] for r in ids] == [0, 1, 2, 3]
    acc = store.client.get_metric_history(run.info.run_id, "step/id.accuracy")
    assert [r["value"] for r in ids] == [m.value for m in acc]  # the table and MLflow agree
    ood = {r["subcase"] for r in steps if r["eval_set"] == "hans_like"}
    assert {"all", "subsequence/non_entailment", "lexical_overlap/entailment"} <= ood
    assert sum(r["selected"] for r in ids) == 1 and ids[-1]["selected"]  # keep_ratio 0: every step passes
    config = json.loads((art / "config.json").read_text())
    assert config["fingerprint"] == spec.fingerprint and config["prune"]["rate"] == 0.3 and "git_sha" in config
    assert config["machine"] == provenance.machine()

    # rerun: the FINISHED fingerprint is skipped; the plan says it is done
    result = runner.invoke(app, ["run", "--file", str(toml), "--store", str(store_dir), "--quiet"])
    assert result.exit_code == 0 and "1 already done, 0 to run" in result.output
    result = runner.invoke(app, ["plan", "--file", str(toml), "--store", str(store_dir)])
    assert "done" in result.output and spec.fingerprint in result.output

    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", "--store", str(store_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "tiny" in html and "<svg" in html and "hans_like" in html
    result = runner.invoke(
        app, ["query", "SELECT count(*) AS n FROM steps WHERE subcase = 'all'", "--store", str(store_dir)]
    )
    assert result.exit_code == 0 and "8" in result.output  # 4 steps x (id + hans_like)
    assert time.perf_counter() - started < 60


def test_controls_and_retrain_variants_are_logged(write_toml, tmp_path):
    text = tiny_toml(rate=0.5, max_steps=2).replace(
        "max_steps = 2", 'max_steps = 2\ncontrols = ["random", "bad"]\nretrain = true'
    )
    store, run, art = run_cli(write_toml(text), tmp_path / "s")
    rows = pq.read_table(art / "tables" / "steps.parquet").to_pylist()
    ids = {r["variant"]: r for r in rows if r["eval_set"] == "id" and r["subcase"] == "all" and r["selected"]}
    assert set(ids) == {"pruned", "random", "bad", "retrained", "random_retrained", "bad_retrained"}
    assert len({r["sparsity"] for r in ids.values()}) == 1 and ids["pruned"]["step"] == 2  # same size as the kept mask
    from runners.pruning.masks import load_weight_masks

    kept = load_weight_masks(art / "masks" / "step_002.safetensors")
    bad = load_weight_masks(art / "masks" / "bad_step_002.safetensors")
    rnd = load_weight_masks(art / "masks" / "random_step_002.safetensors")
    for name in kept:
        assert int(rnd[name].sum()) == int(kept[name].sum())  # random: same count per matrix
    assert sum(int(m.sum()) for m in bad.values()) == sum(int(m.sum()) for m in kept.values())
    # 75% pruned: the lowest 25% kept never overlaps the top 25%
    assert not any(bool((bad[n] & kept[n]).any()) for n in kept)
    assert store.client.get_metric_history(run.info.run_id, "variant.retrained.id.accuracy")[0].step == 2


def test_structured_method_logs_units_and_exports(write_toml, tmp_path):
    text = tiny_toml().replace(
        'method = "magnitude"\nrate = 0.3\nkeep_ratio = 0.0\nmax_steps = 3',
        'method = "importance"\nkeep_ratio = 0.0\nmax_steps = 2\nscoring_examples = 64\n'
        'controls = ["bad"]\nexport = true',
    )
    store, run, art = run_cli(write_toml(text), tmp_path / "s")
    units = pq.read_table(art / "tables" / "units.parquet").to_pylist()
    pruned = [
        (r["layer"], r["unit_index"])
        for r in units
        if r["variant"] == "pruned" and r["step"] == 2 and r["unit_kind"] == "head" and not r["kept"]
    ]
    assert len(pruned) == 2  # micro-bert: 8 heads, 10% per step rounds to 1 head per step
    bad = [r for r in units if r["variant"] == "bad" and r["unit_kind"] == "head"]
    assert sum(not r["kept"] for r in bad) == 2
    m = store.client.get_run(run.info.run_id).data.metrics
    assert m["export.max_logit_diff"] < 1e-4
    assert m["export.params_exported"] < m["export.params_full"]
    from transformers import AutoModelForSequenceClassification

    import runners.pruning.export  # noqa: F401  (registers the subnet model types with the Auto classes)

    exported = AutoModelForSequenceClassification.from_pretrained(art / "export")
    assert sum(p.numel() for p in exported.parameters()) == m["export.params_exported"]


def test_missing_data_file_fails_cleanly(write_toml, tmp_path):
    text = tiny_toml().replace(
        'name = "synthetic-nli"',
        'name = "custom"\nlabels = ["a", "b"]\n'
        'train = { path = "nowhere.tsv", text_a = "s" }\neval = { path = "nowhere.tsv", text_a = '
        '"s" }',
    )
    text = text.replace("params = { n_train = 256, n_id_eval = 64, n_ood_per_subcase = 8 }\n", "")
    text = text.replace('name = "micro-bert"', 'name = "micro-bert"\ntokenizer = "."')
    result = CliRunner().invoke(
        app, ["run", "--file", str(write_toml(text)), "--store", str(tmp_path / "s"), "--quiet"]
    )
    assert result.exit_code == 2
    # the task is declared in [defaults]: the problem is reported there, once
    assert "Traceback" not in result.output and "data file not found" in result.output and "[defaults]" in result.output
    assert "task.train.path" in result.output
    assert not (tmp_path / "s").exists()  # found by validation, before anything is written


def test_a_source_error_during_the_run_is_a_failed_run_and_exit_2(write_toml, tmp_path, monkeypatch):
    """A problem only the run meets (a hub dataset that cannot be loaded; local files are checked up front)
    still ends cleanly: FAILED run, exit 2, no traceback."""
    import runners.data.tasks
    from runners.data.sources import SourceError

    def unreachable(source, base_dir):
        raise SourceError(f"cannot load hub dataset {source.hub!r}: no connection")

    monkeypatch.setattr(runners.data.tasks, "read_rows", unreachable)
    text = tiny_toml().replace(
        'name = "synthetic-nli"',
        'name = "custom"\nlabels = ["a", "b"]\n'
        'train = { hub = "someone/nosuchdata", text_a = "sentence" }\n'
        'eval = { hub = "someone/nosuchdata", text_a = "sentence" }',
    )
    text = text.replace("params = { n_train = 256, n_id_eval = 64, n_ood_per_subcase = 8 }\n", "")
    text = text.replace('name = "micro-bert"', 'name = "micro-bert"\ntokenizer = "."')
    result = CliRunner().invoke(
        app, ["run", "--file", str(write_toml(text)), "--store", str(tmp_path / "s"), "--quiet"]
    )
    assert result.exit_code == 2, result.output
    assert (
        "Traceback" not in result.output
        and "experiment 'tiny'" in result.output
        and "someone/nosuchdata" in result.output
    )
    store = Store.at(tmp_path / "s")
    (run,) = store.client.search_runs([store.client.get_experiment_by_name("tiny").experiment_id])
    assert run.info.status == "FAILED"


def test_pruning_seeds_share_one_fine_tuned_model(write_toml, tmp_path):
    """Two pruning seeds of one L0 grid point: one fine-tuning (the second run hits the cache), two
    different subnetworks, and `plan` shows the fine-tuned model both use."""
    text = tiny_toml().replace(
        'method = "magnitude"\nrate = 0.3\nkeep_ratio = 0.0\nmax_steps = 3',
        'method = "l0"\ntargets = [0.5]\nkeep_ratio = 0.0\nschedule_scale = 0.002\ninit_log_alpha = 0.0',
    )
    toml = write_toml(text.replace("seeds = [0]", "seeds = [0]\nprune_seeds = [1, 2]"))
    runner = CliRunner()
    result = runner.invoke(app, ["run", "--file", str(toml), "--store", str(tmp_path / "s"), "--quiet"])
    assert result.exit_code == 0, result.output
    store = Store.at(tmp_path / "s")
    exp = store.client.get_experiment_by_name("tiny")
    runs = sorted(
        store.client.search_runs([exp.experiment_id], filter_string=f"tags.`{KIND}` = 'run'"),
        key=lambda r: r.data.tags["subnets.prune_seed"],
    )
    assert [r.data.tags["subnets.prune_seed"] for r in runs] == ["1", "2"]
    assert sorted(r.data.tags["subnets.finetune_cache"] for r in runs) == ["hit", "miss"]
    assert len({r.data.tags["subnets.finetune_fingerprint"] for r in runs}) == 1
    assert len({r.data.tags["subnets.group"] for r in runs}) == 1
    # the pruning seed drives the gate noise: the last training step's KL (on sampled gates) differs
    kl = [store.client.get_metric_history(r.info.run_id, "step/method.kl_end")[0].value for r in runs]
    assert kl[0] != kl[1]
    plan = runner.invoke(app, ["plan", "--file", str(toml), "--store", str(tmp_path / "s")])
    assert "2 run(s) on 1 fine-tuned model(s): 2 done, 0 to run" in plan.output
    assert runs[0].data.tags["subnets.finetune_fingerprint"][:8] in plan.output


def test_headless_progress_prints_plain_lines():
    """Under nohup or a scheduler (no terminal), progress is periodic plain lines, not a silent log."""
    import io

    from rich.console import Console

    from runners.tracking import Progress

    buf = io.StringIO()
    progress = Progress(Console(file=buf, force_terminal=False, width=200), every_s=0.0, prefix="[worker 1] ")
    assert progress.plain
    with progress.task("m-pruning", total=3) as advance:
        for i in range(3):
            advance(1, f"step {i}")
    lines = buf.getvalue().splitlines()
    assert "[worker 1] m-pruning: started (3 steps)" in lines[0]
    assert any("m-pruning: 2/3 step 1" in line and "s left" in line for line in lines)
    assert "m-pruning: 3/3 step 2" in lines[-1] and "\x1b[" not in buf.getvalue()


def test_a_run_whose_process_is_gone_is_marked_and_rerun(write_toml, tmp_path):
    """A run left RUNNING by a process that no longer exists: plan says so, the next run marks it KILLED
    and runs the fingerprint again."""
    import socket
    import subprocess
    import sys

    from registry.loader import load_runs

    toml = write_toml(tiny_toml(max_steps=1))
    spec = load_runs(toml)[0]
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    store = Store.at(tmp_path / "s")
    store.ensure()
    stale = store.client.create_run(
        store.experiment_id("tiny"),
        tags={KIND: "run", FINGERPRINT: spec.fingerprint, "subnets.owner": f"{socket.gethostname()}:{gone.pid}"},
    )
    runner = CliRunner()
    plan = runner.invoke(app, ["plan", "--file", str(toml), "--store", str(tmp_path / "s")], env={"COLUMNS": "220"})
    assert "process gone (will rerun)" in plan.output
    result = runner.invoke(app, ["run", "--file", str(toml), "--store", str(tmp_path / "s"), "--quiet"])
    assert result.exit_code == 0 and "1 run(s) marked KILLED: their process is gone" in result.output
    old = store.client.get_run(stale.info.run_id)
    assert old.info.status == "KILLED" and "process was gone" in old.data.tags["subnets.ended_by"]
    assert store.run_status("tiny") == {spec.fingerprint: "FINISHED"}
