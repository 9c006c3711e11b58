"""Export the kept structured subnetwork of a run and measure it against the full model."""
from __future__ import annotations

from pathlib import Path

import torch

from runners.export import compare_latency, export_subnetwork
from runners.gates import attach

LATENCY_REPS = 20


def export_and_measure(model, gates, tokenizer, out_dir: Path, batches: list) -> dict[str, float]:
    """Export, check the exported logits against the gated model on real batches, time both on CPU."""
    info = export_subnetwork(model, gates, out_dir, tokenizer=tokenizer)
    with torch.no_grad():
        diffs = []
        for b in batches:
            exported = info.model(**b.model_inputs()).logits
            with attach(model, gates):
                gated = model(**b.model_inputs()).logits
            diffs.append(float((exported - gated).abs().max()))
    timing = compare_latency(model, info.model, batches, reps=LATENCY_REPS)
    return {"export.params_full": info.params_full, "export.params_exported": info.params_exported,
            "export.max_logit_diff": max(diffs), "export.latency_full_ms": timing.full_ms,
            "export.latency_exported_ms": timing.exported_ms, "export.speedup": timing.speedup}
