"""Cost of pruning machinery relative to the plain model: gated evaluation, weight masks, L0 training steps.

    python benchmarks/pruning.py [--quick] [--threads N] [--reps N]

A randomly initialised BertForSequenceClassification (4 layers, 256 wide, 4 heads, intermediate 1024) on
random tokens: one fixed batch of 64 x 48 and a set of variable-length batches (64 rows, lengths 16..64,
padded per batch as runners.data.examples does). Figures, each a function in FIGURES (add one there):

  gated_eval   no_grad forward passes of the plain model vs the same model gated: binary head + MLP gates
               (30% of units off) with zero and with mean ablation (hooks attached and removed around each
               pass, as `with attach(...): ctx.evaluate()` does), and weight masks (apply_weight_masks zeroes
               50% of the encoder weights of a copy in place; then it is a plain forward).
  l0_step      one L0 step, runners.pruning.recipes.l0.L0Trainer.step (sample gates, teacher forward under no_grad,
               gated student forward, KL + Lagrangian, backward, both Adam steps), vs one fine-tuning step
               on the same batch as runners/finetune.py runs it (train mode, forward + backward + grad clip +
               AdamW over all weights + LR schedule). The teacher is recomputed every step, as the paper and
               runners.pruning.recipes.l0 do (batches are reshuffled every epoch, so there is nothing to cache per
               batch); `teacher_forward` times that forward alone: what a per-example cache could save.

Timing: variants interleaved within each repetition (drift and neighbours' load hit all alike), after
warm-up; medians of CPU time of the calling thread (torch intra-op threads fixed, default 1, so the compute
runs on that thread; robust to a busy machine) and of wall time. Ratios are of CPU-time medians. Progress
goes to stdout; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import torch  # noqa: E402

from runners.tracking import provenance  # noqa: E402

FULL = dict(
    layers=4, hidden=256, heads=4, inter=1024, batch=64, seq=48, n_var=4, min_len=16, max_len=64, warmup=3, reps=15
)
QUICK = dict(FULL, n_var=2, warmup=1, reps=3)
SEED = 1234
TARGETS = {"gated_eval_ratio_max": 1.10, "l0_step_ratio_max": 1.50}


def log(msg: str) -> None:
    print(f"[pruning-bench] {msg}", flush=True)


def setup(cfg: dict) -> dict:
    from transformers import BertConfig, BertForSequenceClassification

    from runners.data.examples import Batch
    from runners.pruning.gates import compute_unit_means

    torch.manual_seed(SEED)
    config = BertConfig(
        hidden_size=cfg["hidden"],
        num_hidden_layers=cfg["layers"],
        num_attention_heads=cfg["heads"],
        intermediate_size=cfg["inter"],
        num_labels=3,
    )
    model = BertForSequenceClassification(config).eval()
    g = torch.Generator().manual_seed(SEED)

    def batch(lengths: torch.Tensor) -> Batch:
        width = int(lengths.max())
        mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
        ids = torch.randint(1000, config.vocab_size, (len(lengths), width), generator=g) * mask
        return Batch(
            ids, mask, torch.zeros_like(ids), torch.randint(0, 3, (len(lengths),), generator=g), [None] * len(lengths)
        )

    fixed = batch(torch.full((cfg["batch"],), cfg["seq"]))
    var = [
        batch(torch.randint(cfg["min_len"], cfg["max_len"] + 1, (cfg["batch"],), generator=g))
        for _ in range(cfg["n_var"])
    ]
    return dict(model=model, fixed=[fixed], var=var, means=compute_unit_means(model, [fixed, *var]), gen=g)


def timed(
    variants: dict[str, Callable[[], object]], warmup: int, reps: int, between: Callable[[], None] | None = None
) -> dict[str, dict[str, float]]:
    """Medians (ms) of thread CPU time and wall time per call, variants interleaved in every repetition;
    `between` (untimed) runs after each repetition."""
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    wall: dict[str, list[float]] = {k: [] for k in variants}
    for rep in range(warmup + reps):
        for name, fn in variants.items():
            c, w = time.thread_time(), time.perf_counter()
            fn()
            c, w = time.thread_time() - c, time.perf_counter() - w
            if rep >= warmup:
                cpu[name].append(c * 1e3)
                wall[name].append(w * 1e3)
        if between is not None:
            between()
    return {
        k: {"cpu_ms": statistics.median(cpu[k]), "wall_ms": statistics.median(wall[k]), "cpu_ms_iqr": _iqr(cpu[k])}
        for k in variants
    }


def _iqr(xs: list[float]) -> float:
    q = statistics.quantiles(xs, n=4) if len(xs) >= 2 else [0.0, 0.0, 0.0]
    return q[2] - q[0]


def _ratios(t: dict, base: str) -> dict[str, float]:
    return {k: v["cpu_ms"] / t[base]["cpu_ms"] for k, v in t.items() if k != base}


# ---- figures -------------------------------------------------------------------------------------


def gated_eval(env: dict, cfg: dict) -> dict:
    from runners.pruning.gates import Gates, attach
    from runners.pruning.units import apply_weight_masks, prunable_weights

    model = env["model"]
    g = torch.Generator().manual_seed(SEED + 1)
    ones = Gates.ones(model)
    head = (torch.rand(ones.head.shape, generator=g) >= 0.3).float()
    mlp = (torch.rand(ones.mlp.shape, generator=g) >= 0.3).float()
    gates = {a: Gates(head, mlp, ablation=a, means=env["means"] if a == "mean" else None) for a in ("zero", "mean")}
    masked = copy.deepcopy(model)
    masks = {n: torch.rand(w.shape, generator=g) >= 0.5 for n, w in prunable_weights(masked).items()}
    apply_ms = _once_ms(lambda: apply_weight_masks(masked, masks))

    def forward(m, batches, gate=None):
        def run():
            with torch.no_grad():
                handle = attach(m, gate) if gate is not None else None
                try:
                    for b in batches:
                        m(**b.model_inputs()).logits.argmax(-1)
                finally:
                    if handle is not None:
                        handle.remove()

        return run

    out = {
        "units_off_fraction": float(1 - torch.cat([head.flatten(), mlp]).mean()),
        "weight_mask_sparsity": 0.5,
        "apply_weight_masks_ms": apply_ms,
    }
    for set_name in ("fixed", "var"):
        b = env[set_name]
        log(f"gated_eval on {set_name} batches ({len(b)})")
        t = timed(
            {
                "plain": forward(model, b),
                "gates_zero": forward(model, b, gates["zero"]),
                "gates_mean": forward(model, b, gates["mean"]),
                "weight_masks": forward(masked, b),
            },
            cfg["warmup"],
            cfg["reps"],
        )
        out[set_name] = {"times": t, "ratio_vs_plain": _ratios(t, "plain")}
        log(f"  {json.dumps(out[set_name]['ratio_vs_plain'])}")
    worst = max(r for s in ("fixed", "var") for r in out[s]["ratio_vs_plain"].values())
    out["worst_ratio"] = worst
    out["target_met"] = worst <= TARGETS["gated_eval_ratio_max"]
    return out


def l0_step(env: dict, cfg: dict) -> dict:
    from runners.pruning.gates import Gates, attach
    from runners.pruning.recipes import l0
    from runners.training.finetune import linear_schedule, param_groups

    # fine-tuning: a copy in train mode, every weight trainable, AdamW + schedule + clipping as in finetune.py
    ft_model = copy.deepcopy(env["model"]).train()
    opt = torch.optim.AdamW(param_groups(ft_model, 0.01), lr=2e-5)
    sched = linear_schedule(opt, 10, 10_000)

    def ft_step(b):
        loss = ft_model(**b.model_inputs(), labels=b.labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ft_model.parameters(), 1.0)
        opt.step()
        sched.step()

    # L0: the frozen model in eval mode, mean-ablation gates attached once, the real trainer step
    model = copy.deepcopy(env["model"]).eval()
    for q in model.parameters():
        q.requires_grad_(False)
    p = l0.Params()
    gates = Gates.ones(model, ablation="mean", means=env["means"])
    trainer = l0.L0Trainer(model, gates, p, torch.Generator().manual_seed(SEED))
    out = {
        "teacher_logits": "recomputed every step (no_grad forward with all gates 1); no cache (teacher_forward: its "
        "cost)",
        "l0_ablation": "mean",
        "finetune_optimizer": "AdamW over all weights, train mode (dropout), grad clip 1.0",
    }
    with attach(model, gates):
        for set_name in ("fixed", "var"):
            batches = env[set_name]
            log(f"l0_step on {set_name} batches ({len(batches)})")
            state = {"i": 0}  # both variants of a repetition step on the same batch; the next rep, the next batch

            def batch():
                return batches[state["i"] % len(batches)]

            def advance():
                state["i"] += 1

            def teacher():  # what a cache of teacher logits would save: the step's no_grad forward alone
                gates.head, gates.mlp = trainer.ones_head, trainer.ones_mlp
                with torch.no_grad():
                    model(**batch().model_inputs())

            variants = {
                "finetune_step": lambda: ft_step(batch()),
                "l0_step": lambda: trainer.step(batch().model_inputs(), 0.5),
                "teacher_forward": teacher,
            }
            t = timed(variants, cfg["warmup"], max(cfg["reps"], 2 * len(batches)), between=advance)
            out[set_name] = {
                "times": t,
                "ratio_l0_vs_finetune": t["l0_step"]["cpu_ms"] / t["finetune_step"]["cpu_ms"],
                "teacher_share_of_l0_step": t["teacher_forward"]["cpu_ms"] / t["l0_step"]["cpu_ms"],
            }
            log(
                f"  l0/finetune = {out[set_name]['ratio_l0_vs_finetune']:.3f}, "
                f"teacher share {out[set_name]['teacher_share_of_l0_step']:.2f}"
            )
    out["worst_ratio"] = max(out[s]["ratio_l0_vs_finetune"] for s in ("fixed", "var"))
    out["target_met"] = out["worst_ratio"] <= TARGETS["l0_step_ratio_max"]
    return out


def _once_ms(fn) -> float:
    c = time.thread_time()
    fn()
    return (time.thread_time() - c) * 1e3


FIGURES: dict[str, Callable[[dict, dict], dict]] = {"gated_eval": gated_eval, "l0_step": l0_step}


def environment(threads: int, quick: bool) -> dict:
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "machine": provenance.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "torch_interop_threads": torch.get_num_interop_threads(),
        "quick": quick,
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
        "load_avg_start": os.getloadavg()[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions and batches (< 60 s)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: CPU time = work)")
    ap.add_argument("--reps", type=int, default=None, help="override the number of timed repetitions")
    ap.add_argument("--only", nargs="*", choices=list(FIGURES), help="run only these figures")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = dict(QUICK if args.quick else FULL)
    if args.reps:
        cfg["reps"] = args.reps
    started = time.perf_counter()
    log(f"config {cfg}, threads={args.threads}")
    env = setup(cfg)
    figures = {
        "config": {**cfg, "seed": SEED, "timer": "median thread CPU time (ms); ratios of CPU medians"},
        "environment": environment(args.threads, args.quick),
        "targets": TARGETS,
    }
    for name, fn in FIGURES.items():
        if args.only and name not in args.only:
            continue
        log(f"figure {name}")
        figures[name] = fn(env, cfg)
    figures["environment"]["load_avg_end"] = os.getloadavg()[0]
    figures["seconds"] = time.perf_counter() - started
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
