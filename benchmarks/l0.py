"""L0 gate training: the teacher's predictions read from the per-example cache vs computed every step, and K
subnetworks trained in one pass vs one after another.

    python benchmarks/l0.py [--quick] [--threads N] [--steps N] [--kway-steps N] [--device cpu|cuda]
                            [--size minilm|bert-base]

A randomly initialised MiniLM-sized BertForSequenceClassification (transformers.BertConfig: 6 layers, hidden 384,
12 heads, intermediate 1536, vocab 30522, 3 labels; with --size bert-base 12 layers, hidden 768, 12 heads,
intermediate 3072), frozen and in eval mode as L0 trains it, on random encoded
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

K subnetworks in one pass (the recipe's run trains its targets so): K = 8 subnetworks, 4 pruning seeds x targets
0.3 and 0.5 (each its own generator seeded as the recipe seeds (seed, target), its own target schedule), on the
same batches with the cached teacher:

  sequential  8 L0Trainers, one step each per batch (what the recipe did before: one target after another);
  batched     one L0Stack step per batch: the batch repeated once per subnetwork, each copy under its
              subnetwork's sampled gates (per-example gates), one forward and one backward for all, each subnetwork
              its own Adam steps; on the CPU in as few passes as keep an activation within
              l0.CPU_PASS_ELEMENTS (32 MiB: larger blocks are mapped afresh and page-faulted every step) and a
              pass's saved activations within l0.CPU_PASS_BYTES, reported as rows_per_pass.

Reported: median time per subnetwork-step of each (a step of all 8 / 8) and their ratio (target on the CPU:
batched <= 1.0 x sequential, not slower; a GPU, with --device cuda, is where one wide batch pays), and whether
the two agree: the largest log-alpha difference over the 8 and whether every final mask (top-k at its target)
is equal.

Timing: both variants in every repetition (drift and neighbours' load hit both alike), after warm-up; medians of
the calling thread's CPU time (torch intra-op threads fixed, default 1, so the compute runs on that thread) and
of wall time. On the CPU the ratios are of CPU-time medians; on CUDA (each timed call synchronised) of wall-time
medians. Progress goes to stdout; the last line is one JSON object.
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

from runners.tracking import provenance  # noqa: E402

FULL = dict(layers=6, hidden=384, heads=12, inter=1536, vocab=30522, batch=16, min_len=40, max_len=64, warmup=3)
SIZES = {"minilm": {}, "bert-base": dict(layers=12, hidden=768, heads=12, inter=3072)}  # overrides of FULL
FULL_STEPS = 40
QUICK_STEPS = 4
KWAY_FULL_STEPS = 20  # steps of all 8 subnetworks (160 subnetwork-steps a variant)
KWAY_QUICK_STEPS = 2
SEED = 1234
TARGET = 0.5  # the sparsity the steps aim at (reached linearly over the timed steps) and the final mask's
KWAY_SUBNETS = [(seed, target) for seed in (0, 1, 2, 3) for target in (0.3, 0.5)]  # (pruning seed, target)
TARGETS = {"step_ratio_max": 0.7, "kway_ratio_max_cpu": 1.0}


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
    model = BertForSequenceClassification(config).eval().to(cfg["device"])
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
    c, w = time.thread_time() - c, time.perf_counter() - w  # its rows come back to the CPU: synchronised
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "teacher.safetensors"
        cached_teacher(model, rows, 0, path)  # computes and writes it (not timed)
        r = time.perf_counter()
        again = cached_teacher(model, rows, 0, path)  # another worker / target / trial: reads it
        read_ms = (time.perf_counter() - r) * 1e3
    assert torch.equal(again, table)
    return table.to(model.device), {
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
    trainers = {  # a generator on the model's device (L0Trainer.sample draws there; on the CPU the same as before)
        name: l0.L0Trainer(model, gates, p, torch.Generator(device=model.device).manual_seed(SEED))
        for name in ("live", "cached")
    }
    cpu = {k: [] for k in trainers}
    wall = {k: [] for k in trainers}
    teacher_diff = 0.0
    with attach(model, gates):
        for i in range(warmup + n_steps):
            batch = train[i % len(train)]
            inputs = _on(batch.model_inputs(), model.device)
            target = l0.target_at(i, warmup + n_steps, TARGET)
            for name, trainer in trainers.items():
                rows = table[batch.indices.to(model.device)] if name == "cached" else None
                c, w = _clock(model.device)
                trainer.step(inputs, target, rows)
                c, w = _since((c, w), model.device)
                if i >= warmup:
                    cpu[name].append(c * 1e3)
                    wall[name].append(w * 1e3)
            if i < 4:  # the table against the live teacher on this very batch (untimed)
                gates.head, gates.mlp = trainers["live"].ones_head, trainers["live"].ones_mlp
                with torch.no_grad():
                    live = torch.log_softmax(model(**inputs).logits.float(), dim=-1)
                teacher_diff = max(teacher_diff, float((live - table[batch.indices.to(model.device)]).abs().max()))
            if i >= warmup and (i - warmup) % 10 == 0:
                log(f"  step {i - warmup}: live {cpu['live'][-1]:.0f} ms, cached {cpu['cached'][-1]:.0f} ms (CPU)")
    la = {k: t.log_alpha.detach() for k, t in trainers.items()}
    keep = {k: t.final_keep(TARGET) for k, t in trainers.items()}
    gaps = la["live"].sort().values.diff()
    times = {k: _medians(cpu[k], wall[k]) for k in trainers}
    timer = "wall_ms" if model.device.type == "cuda" else "cpu_ms"
    return {
        "times": times,
        "ratio": times["cached"][timer] / times["live"][timer],
        "ratio_wall": times["cached"]["wall_ms"] / times["live"]["wall_ms"],
        "saved_cpu_ms_per_step": times["live"]["cpu_ms"] - times["cached"]["cpu_ms"],
        "max_abs_log_alpha_diff": float((la["live"] - la["cached"]).abs().max()),
        "log_alpha_spread": float(la["live"].max() - la["live"].min()),
        "min_log_alpha_gap": float(gaps[gaps > 0].min()) if bool((gaps > 0).any()) else 0.0,
        "masks_equal": bool(torch.equal(keep["live"], keep["cached"])),
        "max_abs_teacher_diff": teacher_diff,
        "units_pruned": int((~keep["live"]).sum()),
    }


def kway(env: dict, table: torch.Tensor, n_steps: int, warmup: int) -> dict:
    """8 subnetworks (KWAY_SUBNETS) a step: 8 L0Trainer steps one after another vs one L0Stack step."""
    from runners.pruning.gates import Gates, attach
    from runners.pruning.recipes import l0

    model, train = env["model"], env["train"]
    p = l0.Params(init_log_alpha=3.0, lr=0.2)  # as `steps`: the KL moves the gates apart within a few dozen steps
    gates = Gates.ones(model, ablation="mean", means=env["means"])  # both variants assign it whole each step

    def trainers() -> list:
        return [
            l0.L0Trainer(model, gates, p, torch.Generator(device=model.device).manual_seed(l0._seed(s, t)))
            for s, t in KWAY_SUBNETS
        ]

    sequential, members = trainers(), trainers()
    stack = l0.L0Stack(model, gates)
    k = len(KWAY_SUBNETS)
    cpu, wall = {"sequential": [], "batched": []}, {"sequential": [], "batched": []}
    per_pass: set[int] = set()
    with attach(model, gates):
        for i in range(warmup + n_steps):
            batch = train[i % len(train)]
            inputs = _on(batch.model_inputs(), model.device)
            rows = table[batch.indices.to(model.device)]
            targets = [l0.target_at(i, warmup + n_steps, t) for _, t in KWAY_SUBNETS]
            c, w = _clock(model.device)
            for trainer, target in zip(sequential, targets):
                trainer.step(inputs, target, rows)
            seq = _since((c, w), model.device)
            c, w = _clock(model.device)
            stack.step(members, targets, inputs, rows)
            bat = _since((c, w), model.device)
            per_pass.add(stack.rows_per_pass(*inputs["input_ids"].shape, k))
            if i >= warmup:
                for name, (c, w) in (("sequential", seq), ("batched", bat)):
                    cpu[name].append(c * 1e3 / k)  # per subnetwork-step
                    wall[name].append(w * 1e3 / k)
                if (i - warmup) % 5 == 0:
                    log(f"  step {i - warmup}: sequential {seq[0] * 1e3:.0f} ms, batched {bat[0] * 1e3:.0f} ms (CPU)")
    pairs = list(zip(sequential, members, (t for _, t in KWAY_SUBNETS)))
    diff = max(float((a.log_alpha - b.log_alpha).detach().abs().max()) for a, b, _ in pairs)
    equal = all(torch.equal(a.final_keep(t), b.final_keep(t)) for a, b, t in pairs)
    gaps = torch.cat([a.log_alpha.detach().sort().values.diff() for a in sequential])
    times = {name: _medians(cpu[name], wall[name]) for name in cpu}
    timer = "wall_ms" if model.device.type == "cuda" else "cpu_ms"
    return {
        "k": k,
        "subnets": [list(x) for x in KWAY_SUBNETS],
        "rows_per_pass": sorted(per_pass),
        "times_per_subnet_step": times,
        "ratio": times["batched"][timer] / times["sequential"][timer],
        "ratio_wall": times["batched"]["wall_ms"] / times["sequential"]["wall_ms"],
        "max_abs_log_alpha_diff": diff,
        "min_log_alpha_gap": float(gaps[gaps > 0].min()) if bool((gaps > 0).any()) else 0.0,
        "masks_equal": equal,
    }


def _on(inputs: dict, device: torch.device) -> dict:
    return {k: v.to(device) for k, v in inputs.items()}


def _clock(device: torch.device) -> tuple[float, float]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # what was queued before is not this call's
    return time.thread_time(), time.perf_counter()


def _since(start: tuple[float, float], device: torch.device) -> tuple[float, float]:
    """(thread CPU seconds, wall seconds) since `start`, the device's queued work included."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.thread_time() - start[0], time.perf_counter() - start[1]


def _medians(cpu: list[float], wall: list[float]) -> dict:
    return {"cpu_ms": statistics.median(cpu), "wall_ms": statistics.median(wall), "cpu_ms_iqr": _iqr(cpu)}


def _iqr(xs: list[float]) -> float:
    q = statistics.quantiles(xs, n=4) if len(xs) >= 2 else [0.0, 0.0, 0.0]
    return q[2] - q[0]


def environment(threads: int, quick: bool, device: str) -> dict:
    import transformers

    return {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "machine": provenance.machine(),
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
    ap.add_argument(
        "--kway-steps", type=int, default=None, help=f"timed steps of all K subnetworks (default {KWAY_FULL_STEPS})"
    )
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the model runs (default cpu)")
    ap.add_argument("--size", choices=list(SIZES), default="minilm", help="the model's shape (default minilm)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    full = dict(FULL, **SIZES[args.size])
    cfg = dict(full, warmup=1, device=args.device) if args.quick else dict(full, device=args.device)
    if args.size != "minilm":
        cfg["size"] = args.size  # (the default's output stays as it was)
    n_steps = args.steps or (QUICK_STEPS if args.quick else FULL_STEPS)
    kway_steps = args.kway_steps or (KWAY_QUICK_STEPS if args.quick else KWAY_FULL_STEPS)
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
    log(f"{kway_steps} steps of {len(KWAY_SUBNETS)} subnetworks, sequential and batched interleaved")
    together = kway(env, table, kway_steps, cfg["warmup"])
    log(f"  batched/sequential = {together['ratio']:.3f}, masks equal {together['masks_equal']}")
    timer = "median wall time, synchronised (ms)" if args.device == "cuda" else "median thread CPU time (ms)"
    kway_met = together["masks_equal"] and (args.device == "cuda" or together["ratio"] <= TARGETS["kway_ratio_max_cpu"])
    figures = {
        "config": {**cfg, "steps": n_steps, "kway_steps": kway_steps, "seed": SEED, "target": TARGET, "timer": timer},
        "environment": environment(args.threads, args.quick, args.device),
        "targets": TARGETS,
        "teacher_table": cost,
        "l0_step": out,
        "kway": together,
        "ratio": out["ratio"],
        "kway_ratio": together["ratio"],
        "masks_equal": out["masks_equal"] and together["masks_equal"],
        "target_met": out["ratio"] <= TARGETS["step_ratio_max"] and out["masks_equal"] and kway_met,
    }
    figures["environment"]["load_avg_end"] = os.getloadavg()[0]
    figures["seconds"] = time.perf_counter() - started
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
