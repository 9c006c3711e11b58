"""The real pretrained encoder (all-MiniLM-L6-v2, BERT architecture) on real SST-2 with Yelp as OOD,
through the whole pipeline: a local model directory, its own tokenizer, structured gates, CKA."""

from __future__ import annotations

import pyarrow.parquet as pq

from tests.helpers import run_cli


def test_minilm_sst2_end_to_end(write_toml, tmp_path, shared_data, minilm):
    toml = write_toml(f"""
[[experiment]]
name = "minilm"
model = {{ name = "{minilm}" }}
seeds = [0]

[experiment.task]
name = "custom"
labels = ["negative", "positive"]
max_length = 48
train = {{ path = "{shared_data}/sst2/train.tsv", text_a = "sentence", limit = 32 }}
eval = {{ path = "{shared_data}/sst2/dev.tsv", text_a = "sentence", limit = 32 }}
ood = [{{ name = "yelp", path = "{shared_data}/sentiment_ood/yelp_textfooler1k.tsv", text_a = "sentence", limit = 32 }}]

[experiment.finetune]
epochs = 1.0
lr = 5e-5
batch_size = 16
eval_batch_size = 16  # the export latency times forwards of the first evaluation batch: 16 rows, not 32

[experiment.prune]
method = "importance"
max_steps = 1
keep_ratio = 0.0
scoring_examples = 32
export = true

[experiment.cka]
examples = 32
""")
    store, run, art = run_cli(toml, tmp_path / "s", "minilm")
    steps = pq.read_table(art / "tables" / "steps.parquet").to_pylist()
    assert {r["eval_set"] for r in steps} == {"id", "yelp"} and {r["n"] for r in steps} == {32}
    units = pq.read_table(art / "tables" / "units.parquet").to_pylist()
    heads = [r for r in units if r["unit_kind"] == "head" and r["step"] == 1]
    assert len(heads) == 6 * 12 and sum(not r["kept"] for r in heads) == 7  # 10% of 72 heads, rounded
    cka = pq.read_table(art / "tables" / "cka.parquet").to_pylist()
    assert len(cka) == 7 * 7 and all(0.0 <= r["value"] <= 1.0 + 1e-9 for r in cka)
    metrics = store.client.get_run(run.info.run_id).data.metrics
    assert metrics["export.max_logit_diff"] < 1e-4 and metrics["export.params_exported"] < metrics["export.params_full"]
