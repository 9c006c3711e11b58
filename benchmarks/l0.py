"""An L0 gate-training step with the teacher's predictions read from the per-example cache vs computed every step.

    python benchmarks/l0.py [--quick] [--threads N] [--steps N]

A randomly initialised MiniLM-sized BertForSequenceClassification (transformers.BertConfig: 6 layers, hidden 384,
12 heads, intermediate 1536, vocab 30522, 3 labels), frozen and in eval mode as L0 trains it, on random encoded
rows of 40..64 tokens, shuffled into batches of 16 by runners.data.examples.batches (padded per batch, each batch
saying which rows it holds). Two L0Trainers (runners.pruning.recipes.l0) with one seed train side by side on the
same batches, mean ablation:

  live    today's step without a table: a no_grad teacher forward with every gate 1, then the gated student
          forward, KL + Lagrangian, backward, both Adam steps;
  cached  the same step with the teacher's log-probabilities looked up in the table that
          runners.pruning.teacher.compute_teacher made once (one no_grad pass, rows sorted by length, 64 a batch).

Reported: median step times and their ratio (target: cached <= 0.7 x live), the one-off cost of the table (and
of reading it back with cached_teacher, weights digest included) and after how many steps it has paid for
itself; and whether the two trainers agree: the largest log-alpha difference and the final masks at target 0.5
(top-k on the log-alphas, as the recipe keeps them), and the largest difference between a table row and the
live teacher's on the same batch.

Timing: both variants in every repetition (drift and neighbours' load hit both alike), after warm-up; medians of
the calling thread's CPU time (torch intra-op threads fixed, default 1, so the compute runs on that thread) and
of wall time. The ratio is of CPU-time medians. Progress goes to stdout; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

FULL = dict(layers=6, hidden=384, heads=12, inter=1536, vocab=30522, batch=16, min_len=40, max_len=64, warmup=3)
FULL_STEPS = 40
QUICK_STEPS = 4
SEED = 1234
TARGET = 0.5  # the sparsity the steps aim at (reached linearly over the timed steps) and the final mask's
TARGETS = {"step_ratio_max": 0.7}


def log(msg: str) -> None:
    print(f"[l0-bench] {msg}", flush=True)


def setup(cfg: dict, n_rows: int) -> dict:
    from transformers import BertConfig, BertForSequenceClassification

    from runners.data.examples import batches
    from runners.pruning.gates import compute_unit_means

    torch.manual_seed(SEED)
    config = BertConfig(
        vocab_size=cfg["vocab"],
        hidden_size=cfg["hidden"],
        num_hidden_layers=cfg["layers"],
        num_attention_heads=cfg["heads"],
        intermediate_size=cfg["inter"],
        num_labels=3,
    )
    model = BertForSequenceClassification(config).eval()
    for q in model.parameters():
        q.requires_grad_(False)
    g = torch.Generator().manual_seed(SEED)
    rows = []
    for _ in range(n_rows):
        length = int(torch.randint(cfg["min_len"], cfg["max_len"] + 1, (1,), generator=g))
        ids = torch.randint(1000, cfg["vocab"], (length,), generator=g).tolist()
        label = int(torch.randint(0, 3, (1,), generator=g))
        rows.append({"input_ids": ids, "token_type_ids": [0] * length, "label": label, "subcase": None})
    order = torch.randperm(n_rows, generator=g).tolist()  # an L0 epoch's shuffle
    train = list(batches(rows, cfg["batch"], 0, order))
    means = compute_unit_means(model, batches(rows[:64], 32, 0))
    return dict(model=model, rows=rows, train=train, means=means)


def teacher_table(env: dict) -> tuple[torch.Tensor, dict]:
    from runners.pruning.teacher import cached_teacher, compute_teacher

    model, rows = env["model"], env["rows"]
    c, w = time.thread_time(), time.perf_counter()
    table = compute_teacher(model, rows, 0)
    c, w = time.thread_time() - c, time.perf_counter() - w
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "teacher.safetensors"
        cached_teacher(model, rows, 0, path)  # computes and writes it (not timed)
        r = time.perf_counter()
        again = cached_teacher(model, rows, 0, path)  # another worker / target / trial: reads it
        read_ms = (time.perf_counter() - r) * 1e3
    assert torch.equal(again, table)
    return table, {
        "rows": len(rows),
        "compute_cpu_ms": c * 1e3,
        "compute_wall_ms": w * 1e3,
        "compute_cpu_ms_per_row": c * 1e3 / len(rows),
        "read_wall_ms": read_ms,
    }


def steps(env: dict, table: torch.Tensor, n_steps: int, warmup: int) -> dict:
    from runners.pruning.gates import Gates, attach
    from runners.pruning.recipes import l0

    model, train = env["model"], env["train"]
    # a quick schedule so the KL moves the gates apart within a few dozen steps (timing does not depend on it)
    p = l0.Params(init_log_alpha=3.0, lr=0.2)
    gates = Gates.ones(model, ablation="mean", means=env["means"])  # one attached Gates: each step assigns it whole
    trainers = {name: l0.L0Trainer(model, gates, p, torch.Generator().manual_seed(SEED)) for name in ("live", "cached")}
    cpu = {k: [] for k in trainers}
    wall = {k: [] for k in trainers}
    teacher_diff = 0.0
    with attach(model, gates):
        for i in range(warmup + n_steps):
            batch = train[i % len(train)]
            inputs = batch.model_inputs()
            target = l0.target_at(i, warmup + n_steps, TARGET)
            for name, trainer in trainers.items():
                rows = table[batch.indices] if name == "cached" else None
                c, w = time.thread_time(), time.perf_counter()
                trainer.step(inputs, target, rows)
                c, w = time.thread_time() - c, time.perf_counter() - w
                if i >= warmup:
                    cpu[name].append(c * 1e3)
                    wall[name].append(w * 1e3)
            if i < 4:  # the table against the live teacher on this very batch (untimed)
                gates.head, gates.mlp = trainers["live"].ones_head, trainers["live"].ones_mlp
                with torch.no_grad():
                    live = torch.log_softmax(model(**inputs).logits.float(), dim=-1)
                teacher_diff = max(teacher_diff, float((live - table[batch.indices]).abs().max()))
            if i >= warmup and (i - warmup) % 10 == 0:
                log(f"  step {i - warmup}: live {cpu['live'][-1]:.0f} ms, cached {cpu['cached'][-1]:.0f} ms (CPU)")
    la = {k: t.log_alpha.detach() for k, t in trainers.items()}
    keep = {k: t.final_keep(TARGET) for k, t in trainers.items()}
    gaps = la["live"].sort().values.diff()
    times = {
        k: {"cpu_ms": statistics.median(cpu[k]), "wall_ms": statistics.median(wall[k]), "cpu_ms_iqr": _iqr(cpu[k])}
        for k in trainers
    }
    return {
        "times": times,
        "ratio": times["cached"]["cpu_ms"] / times["live"]["cpu_ms"],
        "ratio_wall": times["cached"]["wall_ms"] / times["live"]["wall_ms"],
        "saved_cpu_ms_per_step": times["live"]["cpu_ms"] - times["cached"]["cpu_ms"],
        "max_abs_log_alpha_diff": float((la["live"] - la["cached"]).abs().max()),
        "log_alpha_spread": float(la["live"].max() - la["live"].min()),
        "min_log_alpha_gap": float(gaps[gaps > 0].min()) if bool((gaps > 0).any()) else 0.0,
        "masks_equal": bool(torch.equal(keep["live"], keep["cached"])),
        "max_abs_teacher_diff": teacher_diff,
        "units_pruned": int((~keep["live"]).sum()),
    }


def _iqr(xs: list[float]) -> float:
    q = statistics.quantiles(xs, n=4) if len(xs) >= 2 else [0.0, 0.0, 0.0]
    return q[2] - q[0]


def environment(threads: int, quick: bool) -> dict:
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "quick": quick,
        "load_avg_start": os.getloadavg()[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_STEPS} timed steps, one warm-up (a smoke run)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: CPU time = work)")
    ap.add_argument("--steps", type=int, default=None, help=f"timed steps (default {FULL_STEPS})")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = dict(FULL, warmup=1) if args.quick else dict(FULL)
    n_steps = args.steps or (QUICK_STEPS if args.quick else FULL_STEPS)
    started = time.perf_counter()
    log(f"config {cfg}, steps={n_steps}, threads={args.threads}")
    env = setup(cfg, (cfg["warmup"] + n_steps) * cfg["batch"])  # one epoch: every row is used once
    log("teacher table (one no_grad pass over the rows)")
    table, cost = teacher_table(env)
    log(f"  {cost['compute_cpu_ms_per_row']:.2f} ms/row, read back in {cost['read_wall_ms']:.0f} ms")
    log(f"{n_steps} L0 steps, live and cached interleaved")
    out = steps(env, table, n_steps, cfg["warmup"])
    saved = out["saved_cpu_ms_per_step"]
    cost["break_even_steps_per_1000_rows"] = 1000 * cost["compute_cpu_ms_per_row"] / saved if saved > 0 else None
    log(f"  cached/live = {out['ratio']:.3f}, masks equal {out['masks_equal']}")
    figures = {
        "config": {**cfg, "steps": n_steps, "seed": SEED, "target": TARGET, "timer": "median thread CPU time (ms)"},
        "environment": environment(args.threads, args.quick),
        "targets": TARGETS,
        "teacher_table": cost,
        "l0_step": out,
        "ratio": out["ratio"],
        "masks_equal": out["masks_equal"],
        "target_met": out["ratio"] <= TARGETS["step_ratio_max"] and out["masks_equal"],
    }
    figures["environment"]["load_avg_end"] = os.getloadavg()[0]
    figures["seconds"] = time.perf_counter() - started
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
