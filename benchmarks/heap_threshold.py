"""What the fixed 1 MiB mmap threshold (runners/training/memory.py: limit_heap_retention; a worker sets it only while
L0 prunes, `bounded_heap`) would cost a training step in CPU: every block from 1 MiB up is then mapped from the OS,
faulted in and unmapped each time, where glibc's own rule reuses heap memory.

    python benchmarks/heap_threshold.py [--steps 30] [--repeats 2]

Each measurement is a fresh process that trains a BERT of all-MiniLM-L6-v2's shape (6 layers, 384 wide, 12 heads,
built from its config: nothing is downloaded) for `--steps` AdamW steps on random batches of 32 x 64 tokens, on one
thread, with or without the threshold; the two alternate, `--repeats` times each. Reported: the medians of wall,
user and system seconds and page faults. Progress goes to stdout; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from runners.tracking import provenance  # noqa: E402

STEPS_CODE = """
import json, resource, sys, time, torch
sys.path.insert(0, {root!r})
from runners.training.memory import limit_heap_retention
if {limit}:
    assert limit_heap_retention()
torch.set_num_threads(1)
from transformers import BertConfig, BertForSequenceClassification
config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                    intermediate_size=1536, num_labels=2)
torch.manual_seed(0)
model = BertForSequenceClassification(config)
opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
g = torch.Generator().manual_seed(0)
before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range({steps}):
    ids = torch.randint(1000, 20000, (32, 64), generator=g)
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.zeros(32, dtype=torch.long))
    out.loss.backward()
    opt.step()
    opt.zero_grad()
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"wall_s": time.perf_counter() - started, "user_s": after.ru_utime - before.ru_utime,
                  "system_s": after.ru_stime - before.ru_stime, "page_faults": after.ru_minflt - before.ru_minflt}}))
"""


def measure(limit: bool, steps: int) -> dict:
    code = STEPS_CODE.format(root=str(ROOT), limit=limit, steps=steps)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {"glibc_default": [], "fixed_1mib": []}
    for r in range(args.repeats):
        for name, limit in (("glibc_default", False), ("fixed_1mib", True)):
            m = measure(limit, args.steps)
            results[name].append(m)
            print(f"repeat {r + 1}, {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in m.items()), flush=True)
    medians = {name: {k: statistics.median(m[k] for m in ms) for k in ms[0]} for name, ms in results.items()}
    base, fixed = medians["glibc_default"], medians["fixed_1mib"]
    print(
        json.dumps(
            {
                "benchmark": "heap_threshold",
                "steps": args.steps,
                "repeats": args.repeats,
                "threads": 1,
                "machine": provenance.machine(),
                "medians": medians,
                "wall_ratio_fixed_vs_default": fixed["wall_s"] / base["wall_s"],
                "cpu_ratio_fixed_vs_default": (fixed["user_s"] + fixed["system_s"])
                / (base["user_s"] + base["system_s"]),
            }
        )
    )


if __name__ == "__main__":
    main()
