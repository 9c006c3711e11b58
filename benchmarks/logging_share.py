"""How much of a run goes to logging: MLflow calls, mask and record files, tables and the CKA PNGs, as a
share of the run's wall time, for a run that reuses its fine-tuned model (the case where logging weighs
most). Target: under 5%.

    python benchmarks/logging_share.py [--threads 1]

The run is the demo's m-pruning with CKA on tiny-bert, on a smaller embedded task so the fine-tuning that
fills the cache is short; the measured run prunes that cached model again (another keep ratio). Time is
attributed with cProfile (cumulative time of the logging entry points, the baseline being the whole run in
the same profile). Prints one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

from runners.tracking import provenance

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOML = """
[defaults]
seeds = [0]
[defaults.model]
name = "tiny-bert"
[defaults.task]
name = "synthetic-nli"
max_length = 64
params = {{ n_train = 4000, n_id_eval = 1000, n_ood_per_subcase = 200 }}
[defaults.finetune]
epochs = 2.0
lr = 5e-4
batch_size = 32
eval_batch_size = 256
[defaults.cka]
examples = 512
pooling = "mean"
[[experiment]]
name = "bench"
[experiment.prune]
method = "magnitude"
rate = 0.1
keep_ratio = {keep_ratio}
max_steps = 30
"""
# (module file suffix, function name) of every logging entry point; nested ones are not double counted
# because only the outermost frames are summed (see logging_seconds).
ENTRY_POINTS = {
    ("runners/tracking/store.py", "metrics"),
    ("runners/tracking/store.py", "flush"),
    ("runners/tracking/store.py", "params"),
    ("runners/tracking/store.py", "tags"),
    ("runners/tracking/store.py", "artifact"),
    ("runners/tracking/store.py", "json_artifact"),
    ("runners/tracking/store.py", "finish"),
    ("runners/tracking/store.py", "start_run"),
    ("runners/tracking/tables.py", "write_table"),
    ("runners/pruning/masks.py", "save_weight_masks"),
    ("runners/pruning/masks.py", "save_gate_masks"),
    ("runners/run/resume.py", "write_record"),
    ("runners/run/resume.py", "step_record"),
    ("runners/cka/tracker.py", "heatmap_png"),
}


def logging_seconds(stats: pstats.Stats) -> dict[str, float]:
    """Cumulative seconds per entry point, leaving out calls made from inside another entry point."""
    out = {}
    for (file, _, name), (_, _, _, cum, callers) in stats.stats.items():
        key = next((k for k in ENTRY_POINTS if file.endswith(k[0]) and name == k[1]), None)
        if key is None:
            continue
        outer = sum(
            c[3] for (cf, _, cn), c in callers.items() if not any(cf.endswith(f) and cn == n for f, n in ENTRY_POINTS)
        )
        out[f"{key[0].rsplit('/', 1)[1]}:{key[1]}"] = outer if callers else cum
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    os.environ["SUBNETS_THREADS"] = str(args.threads)
    import torch
    from typer.testing import CliRunner

    from registry.cli import app

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        first, second = tmp / "fill.toml", tmp / "measure.toml"
        first.write_text(TOML.format(keep_ratio=0.9))
        second.write_text(TOML.format(keep_ratio=0.85))
        runner = CliRunner()
        assert runner.invoke(app, ["run", "--file", str(first), "--store", str(tmp / "s"), "--quiet"]).exit_code == 0
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        result = runner.invoke(app, ["run", "--file", str(second), "--store", str(tmp / "s"), "--quiet"])
        profile.disable()
        wall = time.perf_counter() - started
        assert result.exit_code == 0, result.output
        parts = logging_seconds(pstats.Stats(profile))
    total = sum(parts.values())
    print(
        json.dumps(
            {
                "benchmark": "logging_share",
                "machine": provenance.machine(),
                "threads": args.threads,
                "run_wall_s": round(wall, 2),
                "logging_s": round(total, 2),
                "logging_share": round(total / wall, 4),
                "target_share": 0.05,
                "by_entry_point_s": {k: round(v, 3) for k, v in sorted(parts.items(), key=lambda kv: -kv[1])},
            }
        )
    )


if __name__ == "__main__":
    main()
