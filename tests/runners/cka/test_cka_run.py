"""CKA inside a run: logged matrices equal a direct float64 computation on the same examples."""

from __future__ import annotations

import pyarrow.parquet as pq
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from registry.loader import load_runs
from runners.cka.engine import linear_cka_reference
from runners.data.tasks import build_task
from runners.pruning.masks import load_weight_masks
from runners.pruning.units import apply_weight_masks
from tests.conftest import tiny_toml
from tests.helpers import run_cli


def test_run_logs_cka_equal_to_a_direct_computation(write_toml, tmp_path):
    text = tiny_toml(rate=0.4, max_steps=3) + "\n[experiment.cka]\nexamples = 40\nevery = 2\n"
    text = text.replace("max_steps = 3", 'max_steps = 3\ncontrols = ["random"]')
    toml = write_toml(text)
    store, run, art = run_cli(toml, tmp_path / "s")
    rows = pq.read_table(art / "tables" / "cka.parquet").to_pylist()
    # every=2: step 2 only among pruning steps (1 and 3 skipped), plus the random control at the kept step 3
    assert sorted({(r["variant"], r["step"]) for r in rows}) == [("pruned", 2), ("random", 3)]
    assert len([r for r in rows if r["variant"] == "pruned"]) == 3 * 3  # micro-bert: embeddings + 2 layers
    # PNGs only for what a person opens in the MLflow UI: the kept step (3, not compared: every=2) and its variants
    assert sorted(p.name for p in (art / "cka").iterdir()) == ["random_step_003.png"]
    diag = store.client.get_metric_history(run.info.run_id, "step/cka.layer_2")
    assert [m.step for m in diag] == [2]

    # independent check: rebuild the step-2 model from the fine-tuned cache + the logged mask
    spec = load_runs(toml)[0]
    ft_dir = tmp_path / "s" / ".subnets" / "finetuned" / spec.finetune_fingerprint
    base = AutoModelForSequenceClassification.from_pretrained(ft_dir).eval()
    pruned = AutoModelForSequenceClassification.from_pretrained(ft_dir).eval()
    apply_weight_masks(pruned, load_weight_masks(art / "masks" / "step_002.safetensors"))
    tok = AutoTokenizer.from_pretrained(ft_dir)
    examples = build_task(spec.task, spec.base_dir).id_eval.examples[:40]

    def mean_pooled(model):
        with torch.no_grad():
            feats = []
            for e in examples:  # one at a time: no padding at all
                enc = tok([e.text_a], [e.text_b], truncation=True, max_length=48, return_tensors="pt")
                hs = model(**enc, output_hidden_states=True).hidden_states
                feats.append([h[0].double().mean(0) for h in hs])
            return [torch.stack([f[i] for f in feats]) for i in range(len(feats[0]))]

    xs, ys = mean_pooled(base), mean_pooled(pruned)
    logged = {(r["layer_base"], r["layer_pruned"]): r["value"] for r in rows if r["variant"] == "pruned"}
    for (i, j), value in logged.items():
        assert abs(value - linear_cka_reference(xs[i], ys[j])) < 1e-5, (i, j)
    assert not any(r["degenerate"] for r in rows)
