"""Hub ids through the real code path, offline: a Hugging Face cache is laid out from ../shared (tests/hub_cache.py)
and a real `subnets` process runs with HF_HUB_OFFLINE=1, so transformers and datasets resolve the hub ids
`sentence-transformers/all-MiniLM-L6-v2`, `nyu-mll/glue`, `stanfordnlp/imdb`, `fancyzhx/yelp_polarity` and
`jhu-cogsci/hans` exactly as on a machine that reaches the hub, from the cache a first download leaves."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from registry.tasks import HANS_PARQUET, TASKS
from tests.hub_cache import COMMIT, cache_dataset, cache_model, offline_env, tsv_rows

MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"

# Every hub source of the catalogue as it resolves: (repo, revision, config, split). Each repo is parquet-backed
# on the hub (datasets >= 4 refuses loading scripts): GLUE, IMDb, Yelp polarity and PAWS are parquet repos,
# and HANS, still a script repo (hans.py), is read from the hub's parquet export.
CATALOGUE_SOURCES = {
    ("cola", "train"): ("nyu-mll/glue", None, "cola", "train"),
    ("cola", "eval"): ("nyu-mll/glue", None, "cola", "validation"),
    ("sst2", "train"): ("nyu-mll/glue", None, "sst2", "train"),
    ("sst2", "eval"): ("nyu-mll/glue", None, "sst2", "validation"),
    ("sst2", "imdb"): ("stanfordnlp/imdb", None, None, "test"),
    ("sst2", "yelp"): ("fancyzhx/yelp_polarity", None, None, "test"),
    ("mrpc", "train"): ("nyu-mll/glue", None, "mrpc", "train"),
    ("mrpc", "eval"): ("nyu-mll/glue", None, "mrpc", "validation"),
    ("qqp", "train"): ("nyu-mll/glue", None, "qqp", "train"),
    ("qqp", "eval"): ("nyu-mll/glue", None, "qqp", "validation"),
    ("qqp", "paws"): ("google-research-datasets/paws", None, "labeled_final", "test"),
    ("stsb", "train"): ("nyu-mll/glue", None, "stsb", "train"),
    ("stsb", "eval"): ("nyu-mll/glue", None, "stsb", "validation"),
    ("mnli", "train"): ("nyu-mll/glue", None, "mnli", "train"),
    ("mnli", "eval"): ("nyu-mll/glue", None, "mnli", "validation_matched"),
    ("mnli", "mismatched"): ("nyu-mll/glue", None, "mnli", "validation_mismatched"),
    ("mnli", "hans"): ("jhu-cogsci/hans", "refs/convert/parquet", "plain_text", "validation"),
    ("qnli", "train"): ("nyu-mll/glue", None, "qnli", "train"),
    ("qnli", "eval"): ("nyu-mll/glue", None, "qnli", "validation"),
    ("rte", "train"): ("nyu-mll/glue", None, "rte", "train"),
    ("rte", "eval"): ("nyu-mll/glue", None, "rte", "validation"),
    ("wnli", "train"): ("nyu-mll/glue", None, "wnli", "train"),
    ("wnli", "eval"): ("nyu-mll/glue", None, "wnli", "validation"),
}
SCRIPT_REPOS = {"jhu-cogsci/hans"}  # hub repos that are still a loading script: only a parquet revision loads


def test_every_catalogue_source_resolves_to_a_parquet_backed_repo():
    resolved = {}
    for entry in TASKS.entries():
        task = entry.value
        for role, source in (("train", task.train), ("eval", task.eval), *((o.name, o) for o in task.ood)):
            if source is not None and source.hub is not None:
                resolved[(entry.name, role)] = (source.hub, source.revision, source.config, source.split)
    assert resolved == CATALOGUE_SOURCES
    for repo, revision, _, _ in resolved.values():
        assert repo not in SCRIPT_REPOS or revision == "refs/convert/parquet", repo


def _hans_rows(shared: Path) -> list[dict]:
    """HANS's rows in the hub's columns (the parquet export of jhu-cogsci/hans: label 0 entailment, 1 not)."""
    return [
        {
            "premise": r["sentence1"],
            "hypothesis": r["sentence2"],
            "label": int(r["gold_label"] != "entailment"),
            "parse_premise": "",
            "parse_hypothesis": "",
            "binary_parse_premise": "",
            "binary_parse_hypothesis": "",
            "heuristic": r["heuristic"],
            "subcase": r["subcase"],
            "template": r["template"],
        }
        for r in tsv_rows(shared / "hans" / "hans_train_set.tsv")
    ]


READ_HANS = """
import json, sys
from registry.tasks import TASKS
from runners.data.sources import read_rows, to_examples
hans = next(o for o in TASKS.get("mnli").ood if o.name == "hans")
rows = read_rows(hans, ".")
examples = to_examples(rows, hans, hans.labels, "hans")
print(json.dumps({"rows": len(rows), "columns": sorted(rows[0]), "subcases": sorted({r["subcase"] for r in rows}),
                  "by_heuristic_label": sorted({e.subcase for e in examples})}))
"""


def test_hans_loads_from_its_parquet_source_through_the_datasets_library(tmp_path, shared_data):
    """The catalogue's HANS source, loaded by the runners' reader with the pinned datasets library: the hub's
    parquet export of the HANS evaluation set has 30,000 rows in 30 subcases (the shared copy holds HANS's
    train-set templates, with the same shape)."""
    hf_home = tmp_path / "hf"
    cache_dataset(hf_home, HANS_PARQUET["hub"], HANS_PARQUET["config"], {"validation": _hans_rows(shared_data)})
    proc = subprocess.run(
        [sys.executable, "-c", READ_HANS], capture_output=True, text=True, env=offline_env(hf_home), timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["rows"] == 30_000 and len(got["subcases"]) == 30
    assert got["columns"] == sorted(
        [
            "premise",
            "hypothesis",
            "label",
            "parse_premise",
            "parse_hypothesis",
            "binary_parse_premise",
            "binary_parse_hypothesis",
            "heuristic",
            "subcase",
            "template",
        ]
    )
    assert got["by_heuristic_label"] == [
        f"{h}/{label}"
        for h in ("constituent", "lexical_overlap", "subsequence")
        for label in ("entailment", "non_entailment")
    ]


HUB_RUN = """
[[experiment]]
name = "hub"
seeds = [0]
[experiment.model]
name = "{model}"
[experiment.task]
name = "sst2"
max_length = 32
[experiment.finetune]
epochs = 1.0
batch_size = 16
eval_batch_size = 64
[experiment.prune]
method = "magnitude"
rate = 0.5
keep_ratio = 0.0
max_steps = 1
"""


def _sentiment(shared: Path, name: str, limit: int) -> list[dict]:
    return [
        {"text": r["sentence"], "label": int(r["label"])}
        for r in tsv_rows(shared / "sentiment_ood" / f"{name}_textfooler1k.tsv", limit)
    ]


@pytest.mark.usefixtures("shared_data")
def test_a_run_on_hub_ids_loads_model_and_glue_preset_from_the_cache(tmp_path, shared_data, minilm):
    """`subnets run` on the sst2 preset (GLUE train and validation, IMDb and Yelp out of domain) with MiniLM named
    by its hub id: the real process resolves every id from the cache, the run finishes, and it records the commit
    the hub id resolved to."""
    hf_home = tmp_path / "hf"
    cache_model(hf_home, MINILM_HUB_ID, minilm)
    glue = {
        split: [
            {"sentence": r["sentence"], "label": int(r["label"]), "idx": i}
            for i, r in enumerate(tsv_rows(shared_data / "sst2" / f"{file}.tsv", 32))
        ]
        for split, file in (("train", "train"), ("validation", "dev"))
    }
    cache_dataset(hf_home, "nyu-mll/glue", "sst2", glue)
    cache_dataset(hf_home, "stanfordnlp/imdb", "plain_text", {"test": _sentiment(shared_data, "imdb", 8)})
    cache_dataset(hf_home, "fancyzhx/yelp_polarity", "plain_text", {"test": _sentiment(shared_data, "yelp", 8)})
    toml = tmp_path / "experiments.toml"
    toml.write_text(HUB_RUN.format(model=MINILM_HUB_ID))
    env = {**offline_env(hf_home), "OMP_NUM_THREADS": "1"}  # one core: the other runs the next test
    run = ["run", "--file", str(toml), "--store", str(tmp_path / "s"), "--threads", "1", "--quiet"]
    proc = subprocess.run(
        [sys.executable, "-m", "registry.cli", *run],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (record,) = (tmp_path / "s" / ".subnets" / "finetuned").glob("*/record.json")
    assert json.loads(record.read_text())["model_revision"] == COMMIT
    assert json.loads(record.read_text())["train_examples"] == 32
    from runners.tracking import Store

    client = Store.at(tmp_path / "s").client
    (run,) = client.search_runs(
        [client.get_experiment_by_name("hub").experiment_id], filter_string="tags.`subnets.kind` = 'run'"
    )
    assert run.info.status == "FINISHED"
    assert run.data.tags.get("subnets.model_revision") == COMMIT
    eval_sets = Counter(k.split(".")[0] for k in run.data.metrics if k.startswith(("id.", "ood.")))
    assert set(eval_sets) == {"id", "ood"} and any(k.startswith("ood.imdb.") for k in run.data.metrics)


UNKNOWN = """
[[experiment]]
name = "typo"
seeds = [0]
[experiment.model]
name = "tiny-bert-large"
[experiment.task]
name = "synthetic-nli"
params = {{ n_train = 64, n_id_eval = 32, n_ood_per_subcase = 4 }}
[experiment.prune]
method = "magnitude"
max_steps = 1
"""


def test_validate_suggests_the_nearest_encoder_for_an_unknown_hub_id(tmp_path):
    toml = tmp_path / "experiments.toml"
    toml.write_text(UNKNOWN.format())
    proc = subprocess.run(
        [sys.executable, "-m", "registry.cli", "validate", "--file", str(toml)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**offline_env(tmp_path / "hf"), "COLUMNS": "300"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        "note: experiment 'typo', key model.name: 'tiny-bert-large' is no built-in or known hub encoder"
    ) in proc.stdout
    assert "did you mean the built-in 'tiny-bert'?" in proc.stdout


def _cli_seconds(args: list[str], env: dict) -> tuple[int, str, float]:
    import time

    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "registry.cli", *args], capture_output=True, text=True, timeout=300, env=env
    )
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


@pytest.mark.parametrize("hub", ["offline", "unreachable"])
def test_an_unresolvable_hub_id_fails_run_before_anything_is_written(tmp_path, hub):
    """Offline without a cached copy, or a hub that refuses connections: `subnets run` says so in one line naming
    the key, with the nearest encoder, within 10 s of its own start-up, and writes no store, queue or cache."""
    from tests.helpers import free_port

    toml = tmp_path / "experiments.toml"
    toml.write_text(UNKNOWN.format())
    env = offline_env(tmp_path / "hf")
    if hub == "unreachable":
        for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            env.pop(k)
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    _, _, startup = _cli_seconds(["validate", "--file", str(toml)], env)
    code, output, seconds = _cli_seconds(["run", "--file", str(toml), "--store", str(tmp_path / "s")], env)
    assert code == 2, output
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1, output
    assert (
        f"{toml}: experiment 'typo', key model.name: " in output and "did you mean the built-in 'tiny-bert'?" in output
    )
    assert ("HF_HUB_OFFLINE is set" if hub == "offline" else "cannot reach the hub") in output
    assert seconds < 10 + startup, (seconds, startup)
    assert not (tmp_path / "s").exists()  # no mlflow.db, optuna.db or .subnets/
