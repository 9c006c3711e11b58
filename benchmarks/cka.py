"""CKA at every pruning step: our engine vs no CKA vs torch-cka.

    python benchmarks/cka.py [--quick] [--threads N]

A randomly initialised BertForSequenceClassification (4 layers, 256 wide, 4 heads, intermediate 1024) is
evaluated on random-token sequences (lengths 16..64, padded per batch, batch 64): first the dense model
(the m-pruning rule needs its score), then steps that each zero in place the 10% lowest-magnitude
remaining weights across all encoder Linear layers (one global threshold) and evaluate (no_grad, argmax).

  plain      the loop, no CKA.
  ours       + runners.cka.engine at every step: the baseline side is captured during the dense evaluation, each
             step's pruned side during that step's evaluation pass; all (L+1)^2 layer pairs, mean
             pooling, full-data linear estimator.
  torch_cka  + torch-cka at every step, on the same mean-pooled layer outputs (its API runs both models
             per comparison). Generously: compare() runs under torch.no_grad() (it does not do so
             itself), and the step's evaluation rides on its pruned-model forward: 2 forwards per step.

Time: one subprocess runs the loop once and, at every step, times the three variants' passes on the same
pruned model, interleaved in a rotating order, so a shared machine's load drifts hit all three alike.
Memory: each variant runs alone in a fresh subprocess (dense + `memory_steps` steps; every step repeats
the same allocations), resets its peak-RSS mark (/proc/self/clear_refs) just before the loop, and reports
peak RSS during the loop minus RSS at its start; a variant's CKA memory is that minus plain's. glibc's
mmap threshold is fixed there (MALLOC_MMAP_THRESHOLD_) so RSS follows live tensors: with the default
dynamic threshold, heap fragmentation grew torch-cka's RSS by ~230 MB per comparison at 2,048 sequences.
Accuracy: the timing run dumps the pooled features "ours" used (dump time excluded); a last subprocess
computes float64 references from them (centred-Gram linear CKA, O(n^2); the minibatch unbiased-HSIC
formula) and also runs torch-cka on those very features. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runners.tracking import provenance

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FULL = dict(
    n_seq=2048, steps=10, memory_steps=3, min_len=16, max_len=64, batch=64, layers=4, hidden=256, heads=4, inter=1024
)
QUICK = dict(
    n_seq=128, steps=2, memory_steps=1, min_len=16, max_len=32, batch=64, layers=4, hidden=256, heads=4, inter=1024
)
SEED = 1234
TARGETS = {"overhead_ratio_max": 1.10, "speedup_min": 1.8, "memory_fraction_max": 1 / 3, "max_abs_diff_max": 1e-5}
VARIANTS = ("plain", "ours", "torch_cka")
MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}


def log(msg: str) -> None:
    print(f"[cka-bench] {msg}", flush=True)


# --------------------------------------------------------------------------------------------------
# The model, the data, pruning and evaluation (identical in every subprocess).


def setup(cfg):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(SEED)
    config = BertConfig(
        hidden_size=cfg["hidden"],
        num_hidden_layers=cfg["layers"],
        num_attention_heads=cfg["heads"],
        intermediate_size=cfg["inter"],
        num_labels=2,
    )
    model = BertForSequenceClassification(config).eval()
    g = torch.Generator().manual_seed(SEED)
    lengths = torch.randint(cfg["min_len"], cfg["max_len"] + 1, (cfg["n_seq"],), generator=g)
    labels = torch.randint(0, 2, (cfg["n_seq"],), generator=g)
    batches = []
    for s in range(0, cfg["n_seq"], cfg["batch"]):
        ln = lengths[s : s + cfg["batch"]]
        width = int(ln.max())  # dynamic padding: to the longest of this batch
        mask = (torch.arange(width)[None, :] < ln[:, None]).long()
        ids = torch.randint(1000, config.vocab_size, (len(ln), width), generator=g) * mask
        batches.append(({"input_ids": ids, "attention_mask": mask}, labels[s : s + cfg["batch"]]))
    linears = [m for m in model.bert.encoder.modules() if isinstance(m, torch.nn.Linear)]
    return model, batches, linears


def prune_step(linears, fraction=0.1):
    """Zero, in place, the `fraction` lowest-magnitude remaining weights over all given layers."""
    import torch

    with torch.no_grad():
        mags = torch.cat([l.weight.abs().flatten() for l in linears])
        alive = mags[mags > 0]
        threshold = alive.kthvalue(max(1, int(fraction * alive.numel()))).values
        for l in linears:
            l.weight.masked_fill_(l.weight.abs() <= threshold, 0.0)


def evaluate(model, batches, on_batch=None):
    import torch

    correct = n = 0
    with torch.no_grad():
        for i, (inputs, labels) in enumerate(batches):
            logits = model(**inputs).logits
            correct += int((logits.argmax(-1) == labels).sum())
            n += len(labels)
            if on_batch is not None:
                on_batch(i)
    return correct / n


# --------------------------------------------------------------------------------------------------
# The three variants: `dense()` evaluates the unpruned model, `step()` evaluates the current (pruned)
# model and returns (accuracy, CKA matrix or None).


class Plain:
    def __init__(self, model, batches, cfg, dump=None):
        self.model, self.batches = model, batches

    def dense(self):
        return evaluate(self.model, self.batches)

    def step(self):
        return evaluate(self.model, self.batches), None


class Ours:
    def __init__(self, model, batches, cfg, dump=None):
        import runners.cka.engine as cka

        self.cka, self.model, self.batches, self.dump = cka, model, batches, dump
        self.math_s = self.dump_s = 0.0
        self.n_steps, self.state_mb = 0, 0.0

    def _timed(self, fn, *args):
        t = time.perf_counter()
        out = fn(*args)
        self.math_s += time.perf_counter() - t
        return out

    def _dumper(self, name):
        if not self.dump:
            return None
        f = open(Path(self.dump) / name, "wb")

        def write(feats):
            t = time.perf_counter()
            import torch

            torch.cat(feats.layers, 1).numpy().tofile(f)
            self.dump_s += time.perf_counter() - t

        return write

    def dense(self):
        self.base = self.cka.BaselineFeatures(estimators=("linear",))
        write = self._dumper("base.f32")
        with self.cka.capture(self.model, "layer_output", "mean") as cap:

            def add(i):
                feats = cap.pop()
                self._timed(self.base.add, i, feats)
                write and write(feats)

            acc = evaluate(self.model, self.batches, add)
        self._timed(self.base.finalize)
        return acc

    def step(self):
        accumulator = self.cka.CKAAccumulator(self.base, "linear")
        write = self._dumper(f"step{self.n_steps}.f32")
        with self.cka.capture(self.model, "layer_output", "mean") as cap:

            def update(i):
                feats = cap.pop()
                self._timed(accumulator.update, i, feats)
                write and write(feats)

            acc = evaluate(self.model, self.batches, update)
        result = self._timed(accumulator.result)
        self.state_mb = max(self.state_mb, (self.base.nbytes() + accumulator.nbytes()) / 2**20)
        self.n_steps += 1
        return acc, result.matrix.tolist()


def make_taps(model, n_taps):
    """Mean-pooled hidden states exposed as module outputs (what torch-cka hooks); records predictions."""
    from torch import nn

    from runners.cka.engine import pool

    class _Taps(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.taps = nn.ModuleList(nn.Identity() for _ in range(n_taps))
            self.preds = []

        def forward(self, packed):
            ids, mask = packed[:, 0], packed[:, 1]
            out = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            self.preds.append(out.logits.argmax(-1))
            for tap, h in zip(self.taps, out.hidden_states):
                tap(pool(h, mask, "mean"))

    return _Taps()


class TorchCKA:
    def __init__(self, model, batches, cfg, dump=None):
        import torch
        import torch_cka

        self.torch, self.torch_cka, self.model, self.batches = torch, torch_cka, model, batches
        self.n_taps = cfg["layers"] + 1

    def dense(self):
        torch = self.torch
        acc = evaluate(self.model, self.batches)
        self.baseline = copy.deepcopy(self.model)  # torch-cka needs the unpruned model alive for every comparison
        self.state_mb = sum(p.numel() * p.element_size() for p in self.baseline.parameters()) / 2**20
        self.w_pruned = make_taps(self.model, self.n_taps)
        self.loader = torch.utils.data.DataLoader(
            [(torch.stack([b["input_ids"], b["attention_mask"]], 1), y) for b, y in self.batches], batch_size=None
        )
        names = [f"taps.{i}" for i in range(self.n_taps)]
        self.cmp = self.torch_cka.CKA(
            make_taps(self.baseline, self.n_taps),
            self.w_pruned,
            "baseline",
            "pruned",
            model1_layers=names,
            model2_layers=names,
        )
        self.labels = torch.cat([y for _, y in self.batches])
        return acc

    def step(self):
        torch = self.torch
        self.w_pruned.preds = []
        with torch.no_grad():
            self.cmp.compare(self.loader, self.loader)  # runs both models on every batch
        acc = float((torch.cat(self.w_pruned.preds) == self.labels).float().mean())
        return acc, self.cmp.hsic_matrix.double().tolist()


CLASSES = {"plain": Plain, "ours": Ours, "torch_cka": TorchCKA}


# --------------------------------------------------------------------------------------------------
# Subprocess jobs.


def rss_kb(field="VmRSS") -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(field)


def clock():
    return time.perf_counter(), time.process_time()


def since(t0):
    w, c = clock()
    return {"wall": w - t0[0], "cpu": c - t0[1]}


def run_timing(cfg, threads, dump):
    """All three variants on one pruning loop, each step's passes interleaved in a rotating order."""
    import torch

    torch.set_num_threads(threads)
    model, batches, linears = setup(cfg)
    runners = {v: CLASSES[v](model, batches, cfg, dump) for v in VARIANTS}
    times = {v: {"dense_pass": {"wall": 0.0, "cpu": 0.0}, "pruning_steps": {"wall": 0.0, "cpu": 0.0}} for v in VARIANTS}
    acc = {v: [] for v in VARIANTS}
    mats = {v: [] for v in VARIANTS}
    for step in range(cfg["steps"] + 1):
        if step:
            prune_step(linears)
        order = VARIANTS[step % 3 :] + VARIANTS[: step % 3]
        for v in order:
            dump_before = runners["ours"].dump_s
            t0 = clock()
            if step == 0:
                a, m = runners[v].dense(), None
            else:
                a, m = runners[v].step()
            took = since(t0)
            dumped = runners["ours"].dump_s - dump_before  # feature dumps are not part of the measured work
            phase = times[v]["dense_pass" if step == 0 else "pruning_steps"]
            for k in took:
                phase[k] += took[k] - dumped
            acc[v].append(a)
            if m is not None:
                mats[v].append(m)
        log(
            f"timing step {step}/{cfg['steps']} acc={acc['plain'][-1]:.4f} "
            + " ".join(f"{v}={times[v]['pruning_steps']['cpu']:.1f}s" for v in VARIANTS)
        )
    return {
        "times": times,
        "accuracy": acc,
        "matrices": mats,
        "ours_cka_math_s": runners["ours"].math_s,
        "ours_dump_s_excluded": runners["ours"].dump_s,
    }


def run_memory(variant, cfg, threads):
    import torch

    torch.set_num_threads(threads)
    model, batches, linears = setup(cfg)
    runner = CLASSES[variant](model, batches, cfg)  # imports (torch-cka pulls in matplotlib) happen here
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:  # reset the peak-RSS mark (VmHWM)
        f.write("5")
    rss0 = rss_kb()
    runner.dense()
    for _ in range(cfg["memory_steps"]):
        prune_step(linears)
        runner.step()
    return {
        "loop_peak_increase_mb": (rss_kb("VmHWM") - rss0) / 1024,
        "rss_start_mb": rss0 / 1024,
        "process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "state_mb": getattr(runner, "state_mb", 0.0),
    }


def run_reference(cfg, dump, threads):
    """Float64 references from the dumped features, plus torch-cka run on exactly those features."""
    import numpy as np
    import torch
    from torch import nn

    from runners.cka.engine import BaselineFeatures, CKAAccumulator
    from runners.cka.estimators import hsic1_reference

    torch.set_num_threads(threads)
    n, L = cfg["n_seq"], cfg["layers"] + 1
    sizes = [min(cfg["batch"], n - s) for s in range(0, n, cfg["batch"])]

    def load(name):  # [n, L, D] float32, as captured
        return torch.from_numpy(np.fromfile(Path(dump) / name, dtype=np.float32).reshape(n, L, cfg["hidden"]))

    def centred_grams(x):  # doubly centred Grams, Xc Xc^T == H X X^T H
        xc = x.double() - x.double().mean(0)
        return torch.stack([xc[:, i] @ xc[:, i].T for i in range(L)]).flatten(1)

    def batch_grams(x):  # per batch and layer; batch-centred (HSIC_1 is shift-invariant) so float64 stays exact
        out = []
        for b in x.double().split(sizes):
            bc = b - b.mean(0)
            out.append([bc[:, i] @ bc[:, i].T for i in range(L)])
        return out

    class Table(nn.Module):  # serves the dumped features to torch-cka by row index
        def __init__(self, feats):
            super().__init__()
            self.feats = feats
            self.taps = nn.ModuleList(nn.Identity() for _ in range(L))

        def forward(self, idx):
            for i, tap in enumerate(self.taps):
                tap(self.feats[idx, i])

    import torch_cka

    starts = np.cumsum([0] + sizes[:-1])
    loader = torch.utils.data.DataLoader([(torch.arange(s, s + k), 0) for s, k in zip(starts, sizes)], batch_size=None)
    names = [f"taps.{i}" for i in range(L)]

    x = load("base.f32")
    kx, bx = centred_grams(x), batch_grams(x)
    mb_xx = np.array([[hsic1_reference(g[i], g[i]) for i in range(L)] for g in bx]).mean(0)
    base = BaselineFeatures.from_batches([list(b.unbind(1)) for b in x.split(sizes)], estimators=("minibatch",))
    table_y = Table(x.clone())
    cmp = torch_cka.CKA(Table(x), table_y, "baseline", "pruned", model1_layers=names, model2_layers=names)
    out = {"linear": [], "minibatch": [], "ours_minibatch": [], "torch_cka_same_features": []}
    for step in range(cfg["steps"]):
        y = load(f"step{step}.f32")
        ky = centred_grams(y)
        out["linear"].append(((kx @ ky.T) / (kx.norm(dim=1)[:, None] * ky.norm(dim=1)[None, :])).tolist())
        by = batch_grams(y)
        xy = np.array(
            [[[hsic1_reference(gx[i], gy[j]) for j in range(L)] for i in range(L)] for gx, gy in zip(bx, by)]
        ).mean(0)
        yy = np.array([[hsic1_reference(g[j], g[j]) for j in range(L)] for g in by]).mean(0)
        out["minibatch"].append((xy / np.sqrt(mb_xx[:, None] * yy[None, :])).tolist())
        acc = CKAAccumulator(base, "minibatch")
        for i, b in enumerate(y.split(sizes)):
            acc.update(i, list(b.unbind(1)))
        out["ours_minibatch"].append(acc.result().matrix.tolist())
        table_y.feats = y
        with torch.no_grad():
            cmp.compare(loader, loader)
        out["torch_cka_same_features"].append(cmp.hsic_matrix.double().tolist())
        log(f"reference step {step + 1}/{cfg['steps']}")
    return out


# --------------------------------------------------------------------------------------------------
# Driver.


def state_by_examples(cfg, sizes=(512, 4096, 32768)) -> dict:
    """The CKA state (baseline features kept for every step + one step's float64 accumulators) by the
    number of compared sequences, on random features of the benchmark's width: the baseline keeps its
    centred features, so the state grows linearly with the examples (the accumulators are O(d^2))."""
    import torch

    import runners.cka.engine as cka

    torch.manual_seed(SEED)
    width, reps, batch = cfg["hidden"], cfg["layers"] + 1, 256
    out = {}
    for n in sizes:
        base = cka.BaselineFeatures(estimators=("linear",))
        chunks = [min(batch, n - s) for s in range(0, n, batch)]
        for i, rows in enumerate(chunks):
            base.add(i, [torch.randn(rows, width) for _ in range(reps)])
        base.finalize()
        acc = cka.CKAAccumulator(base, "linear")
        for i, rows in enumerate(chunks):
            acc.update(i, [torch.randn(rows, width) for _ in range(reps)])
        out[str(n)] = {"baseline_mb": base.nbytes() / 2**20, "accumulator_mb": acc.nbytes() / 2**20}
        del base, acc
    return out


def child(job_args, env_extra=None) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    cmd = [sys.executable, __file__, *job_args, "--out", path]
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore", **(env_extra or {})}
    proc = subprocess.run(cmd, env=env)
    if proc.returncode:
        raise SystemExit(f"subprocess failed ({proc.returncode}): {' '.join(cmd)}")
    data = json.loads(Path(path).read_text())
    os.unlink(path)
    return data


def max_abs(a, b) -> float:
    import numpy as np

    return float(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).max())


def summarise(cfg, args, timing, memory, ref, elapsed) -> dict:
    t = timing["times"]
    for v in VARIANTS:
        t[v]["total"] = {k: t[v]["dense_pass"][k] + t[v]["pruning_steps"][k] for k in ("wall", "cpu")}
    inc = {v: memory[v]["loop_peak_increase_mb"] for v in VARIANTS}
    cka_mem = {"ours": inc["ours"] - inc["plain"], "torch_cka": inc["torch_cka"] - inc["plain"]}
    key = "cpu"  # the machine is shared: process CPU time is the steadier measure; wall is reported too
    fig = {
        "benchmark": "cka",
        "machine": provenance.machine(),
        "config": {
            **cfg,
            "threads": args.threads,
            "seed": SEED,
            "quick": args.quick,
            "pooling": "mean",
            "representation": "layer_output",
            "estimator_ours": "linear, full data, float64 streamed",
            "estimator_torch_cka": "minibatch unbiased HSIC_1, float32",
            "torch_cka_forwards_per_step": 2,
            "timing": "one process, variants interleaved per step",
            "memory_env": MEMORY_ENV,
        },
        "time_s": t,
        "ours_cka_math_s": timing["ours_cka_math_s"],
        "ours_dump_s_excluded": timing["ours_dump_s_excluded"],
        "overhead_ratio_ours_vs_plain": {k: t["ours"]["total"][k] / t["plain"]["total"][k] for k in ("wall", "cpu")},
        "overhead_ratio_from_cka_math_alone": (t["plain"]["total"][key] + timing["ours_cka_math_s"])
        / t["plain"]["total"][key],
        "speedup_ours_vs_torch_cka_over_steps": {
            k: t["torch_cka"]["pruning_steps"][k] / t["ours"]["pruning_steps"][k] for k in ("wall", "cpu")
        },
        "loop_peak_rss_increase_mb": inc,
        "cka_peak_memory_mb": cka_mem,
        "memory_fraction_ours_of_torch_cka": cka_mem["ours"] / cka_mem["torch_cka"]
        if cka_mem["torch_cka"] > 0
        else None,
        "cka_state_mb": {
            "ours_baseline_plus_accumulator": memory["ours"]["state_mb"],
            "torch_cka_baseline_model_copy": memory["torch_cka"]["state_mb"],
        },
        "process_peak_rss_mb": {v: memory[v]["process_peak_rss_mb"] for v in VARIANTS},
        "max_abs_diff": {
            "ours_vs_float64_linear_reference": max_abs(timing["matrices"]["ours"], ref["linear"]),
            "torch_cka_vs_float64_minibatch_reference": max_abs(timing["matrices"]["torch_cka"], ref["minibatch"]),
            "torch_cka_vs_float64_linear_reference": max_abs(timing["matrices"]["torch_cka"], ref["linear"]),
            "torch_cka_on_our_features_vs_float64_minibatch_reference": max_abs(
                ref["torch_cka_same_features"], ref["minibatch"]
            ),
            "ours_minibatch_vs_float64_minibatch_reference": max_abs(ref["ours_minibatch"], ref["minibatch"]),
        },
        "accuracy_per_step": timing["accuracy"],
        "same_accuracies_all_variants": timing["accuracy"]["plain"]
        == timing["accuracy"]["ours"]
        == timing["accuracy"]["torch_cka"],
        "cka_last_step_ours": timing["matrices"]["ours"][-1],
    }
    fig["targets"] = {**TARGETS, "timing_measure": key}
    frac = fig["memory_fraction_ours_of_torch_cka"]
    fig["targets_met"] = {
        "overhead_ratio": fig["overhead_ratio_ours_vs_plain"][key] <= TARGETS["overhead_ratio_max"],
        "speedup": fig["speedup_ours_vs_torch_cka_over_steps"][key] >= TARGETS["speedup_min"],
        "memory": frac is not None and frac <= TARGETS["memory_fraction_max"],
        "accuracy": fig["max_abs_diff"]["ours_vs_float64_linear_reference"] <= TARGETS["max_abs_diff_max"],
    }
    fig["elapsed_s"] = elapsed
    return fig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small version (< 60 s)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads, the same in every variant")
    ap.add_argument("--job", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--dump", help=argparse.SUPPRESS)
    args = ap.parse_args()
    cfg = QUICK if args.quick else FULL

    if args.job:
        if args.job == "timing":
            result = run_timing(cfg, args.threads, args.dump)
        elif args.job == "reference":
            result = run_reference(cfg, args.dump, args.threads)
        else:
            result = run_memory(args.job.removeprefix("memory-"), cfg, args.threads)
        Path(args.out).write_text(json.dumps(result))
        return

    common = (["--quick"] if args.quick else []) + ["--threads", str(args.threads)]
    t0 = time.perf_counter()
    log(f"config {cfg}, threads={args.threads}")
    with tempfile.TemporaryDirectory() as dump:
        log("timing: the three variants interleaved on one pruning loop")
        timing = child(common + ["--job", "timing", "--dump", dump])
        memory = {}
        for v in VARIANTS:
            memory[v] = child(common + ["--job", f"memory-{v}"], MEMORY_ENV)
            log(f"memory {v}: loop peak +{memory[v]['loop_peak_increase_mb']:.1f} MB (fresh subprocess)")
        log("float64 references (not timed)")
        ref = child(common + ["--job", "reference", "--dump", dump])
    fig = summarise(cfg, args, timing, memory, ref, time.perf_counter() - t0)
    fig["cka_state_mb_by_examples"] = state_by_examples(cfg)
    log(f"CKA state by examples: {fig['cka_state_mb_by_examples']}")
    log(
        f"overhead ours/plain {fig['overhead_ratio_ours_vs_plain']}, speedup vs torch-cka "
        f"{fig['speedup_ours_vs_torch_cka_over_steps']}, CKA memory {fig['cka_peak_memory_mb']}, "
        f"max |ours - float64| {fig['max_abs_diff']['ours_vs_float64_linear_reference']:.2e}"
    )
    print(json.dumps(fig))


if __name__ == "__main__":
    main()
