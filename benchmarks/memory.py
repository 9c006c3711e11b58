"""Resident memory of the processes of `subnets run --workers 2` while L0 prunes a MiniLM-sized model.

    python benchmarks/memory.py [--quick]

The model is all-MiniLM-L6-v2 from ../shared/models where it exists (6 layers, 12 heads, hidden 384, intermediate
1536, vocabulary 30,522: 22.7M parameters, 91 MB in float32), else the built-in BERT at its shape (the embedded
task's smaller vocabulary); the data the Heuristic Core study's (MNLI rows from ../shared/data, HANS out of domain,
128 tokens, evaluation batches of 128) where they exist, else the embedded task; L0 at batch 16, mean ablation, 3
targets per run, 2 pruning seeds. With two workers
and one model to train, the coordinating process fine-tunes it first on every core; the workers then load it and
prune. The script polls /proc every 0.2 s and reports, from each process's own high-water mark (VmHWM) and its
resident set (VmRSS):

  worker_peak_mb       the largest VmHWM of a worker process (issue 17's target: <= 1024 MB for MiniLM while pruning)
  coordinator_*        the coordinating process: its peak, and its resident set while the workers prune
  worker_private_*     the most memory a worker held alone (Private_Clean + Private_Dirty of /proc/PID/smaps_rollup):
                       what it did not share with the forkserver it was forked from, nor with the other worker
  workers_pss_peak_mb  the workers' proportional set sizes added up (each shared page split between its sharers),
                       at its peak: what the two workers cost the machine together
  imports_mb           what a worker's imports alone hold (python -c 'import torch, transformers, mlflow, ...')

A user reruns it as is; `--quick` trains and prunes less (the peaks depend on the model and batch shapes, not on
how many steps run). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from runners.tracking import provenance

ROOT = Path(__file__).resolve().parents[1]

MINILM = ROOT.parent / "shared" / "models" / "all-MiniLM-L6-v2"
MINILM_SHAPE = dict(  # the built-in model at MiniLM's shape, where the real one is not at hand
    hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536, max_position_embeddings=512
)

EXPERIMENTS = """
[defaults]
seeds = [0]
prune_seeds = [0, 1]

[defaults.model]
{model}

[defaults.finetune]
epochs = 1.0
batch_size = 32
eval_batch_size = 128

[defaults.task]
{task}

[[experiment]]
name = "memory"
[experiment.prune]
method = "l0"
targets = [0.3, 0.5, 0.7]
ablation = "mean"
batch_size = 16
schedule_scale = {scale}
"""

DATA = ROOT.parent / "shared" / "data"
# the Heuristic Core study's shapes (studies/offline-heuristic-core.toml), on fewer rows
MNLI_TASK = """name = "mnli"
builtin_ood = []
max_length = 128

[defaults.task.train]
path = "{data}/mnli/train_10k.tsv"
text_a = "premise"
text_b = "hypothesis"
label = "gold_label"
rows = [0, {n_train}]

[defaults.task.eval]
path = "{data}/mnli/train_10k.tsv"
text_a = "premise"
text_b = "hypothesis"
label = "gold_label"
rows = [9000, 9500]

[[defaults.task.ood]]
name = "hans"
path = "{data}/hans/hans_train_set.tsv"
text_a = "sentence1"
text_b = "sentence2"
label = "gold_label"
labels = ["entailment", "non-entailment"]
pred_map = [0, 1, 1]
subcase = ["subcase", "gold_label"]
every = 30"""
SYNTHETIC_TASK = """name = "synthetic-nli"
max_length = 128
params = {{ n_train = {n_train}, n_id_eval = 500, n_ood_per_subcase = 50 }}"""


def log(msg: str) -> None:
    print(f"[memory-bench] {msg}", flush=True)


def _fields_kb(path: str, keys: tuple[str, ...]) -> dict[str, int]:
    """The `key: N kB` lines of a /proc file that `keys` names ({} once the process is gone)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return {}
    fields = (line.partition(":") for line in text.splitlines())
    return {key: int(value.split()[0]) for key, _, value in fields if key in keys}


def status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process in MB ({} once it is gone)."""
    return {key: kb // 1024 for key, kb in _fields_kb(f"/proc/{pid}/status", ("VmRSS", "VmHWM")).items()}


def shared_split(pid: int) -> dict[str, int]:
    """Pss and private (unshared) memory of a process in MB, from /proc/PID/smaps_rollup ({} once it is gone)."""
    kb = _fields_kb(f"/proc/{pid}/smaps_rollup", ("Pss", "Private_Clean", "Private_Dirty"))
    if "Pss" not in kb:
        return {}
    return {"pss": kb["Pss"] // 1024, "private": (kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)) // 1024}


def workers_of(pid: int) -> list[int]:
    """The worker processes under a `subnets run`: its descendants but multiprocessing's helpers, its direct children
    the forkserver (the workers are forked from it, and show its command line) and the resource tracker."""
    try:
        me = psutil.Process(pid)
        helpers = {
            c.pid
            for c in me.children()
            if any(f"{h} import main" in " ".join(c.cmdline()) for h in ("forkserver", "resource_tracker"))
        }
        return [c.pid for c in me.children(recursive=True) if c.pid not in helpers]
    except psutil.NoSuchProcess:
        return []


def imports_mb() -> int:
    code = (
        "import torch, transformers, mlflow, optuna; from runners.queue import worker; "
        "print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, env=_env()
    ).stdout
    return int(out.strip().splitlines()[-1]) // 1024


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if MINILM.is_dir():
        model, model_note = f'name = "{MINILM}"', "all-MiniLM-L6-v2 (22.7M parameters)"
    else:
        config = "{ " + ", ".join(f"{k} = {v}" for k, v in MINILM_SHAPE.items()) + " }"
        model = f'name = "tiny-bert"\nconfig = {config}'
        model_note = "tiny-bert at all-MiniLM-L6-v2's shape, the embedded task's vocabulary"
    n_train, scale = (512, 0.004) if args.quick else (2000, 0.01)
    if (DATA / "mnli").is_dir() and (DATA / "hans").is_dir():
        task, task_note = MNLI_TASK.format(data=DATA, n_train=n_train), "MNLI rows with HANS (every 30th pair)"
    else:
        task, task_note = SYNTHETIC_TASK.format(n_train=n_train), "synthetic-nli"
    with tempfile.TemporaryDirectory() as tmp:
        toml = Path(tmp) / "experiments.toml"
        toml.write_text(EXPERIMENTS.format(model=model, task=task, scale=scale))
        cmd = [sys.executable, "-m", "registry.cli", "run", "--file", str(toml), "--store", tmp, "--workers", "2"]
        cmd += ["--threads", "1", "--quiet"]
        log(" ".join(cmd[1:]))
        started = time.monotonic()
        cpu_before = _children_cpu()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        coordinator_peak = 0
        coordinator_while_pruning: list[int] = []
        workers: dict[int, int] = {}
        private: dict[int, int] = {}
        pss_peak = 0
        while proc.poll() is None:
            mine = status(proc.pid)
            coordinator_peak = max(coordinator_peak, mine.get("VmHWM", 0))
            kids = workers_of(proc.pid)
            pss_now = 0
            for pid in kids:
                peak, split = status(pid).get("VmHWM", 0), shared_split(pid)
                if not peak or not split:  # gone before it was read (a short-lived child, not a worker)
                    continue
                workers[pid] = max(workers.get(pid, 0), peak)
                private[pid] = max(private.get(pid, 0), split["private"])
                pss_now += split["pss"]
            pss_peak = max(pss_peak, pss_now)
            if kids and mine:
                coordinator_while_pruning.append(mine.get("VmRSS", 0))
            time.sleep(0.2)
        output = proc.stdout.read()
        wall = time.monotonic() - started
        cpu = _children_cpu() - cpu_before  # the command and every process under it, each waited for by its parent
        if proc.returncode != 0:
            print(output)
            raise SystemExit(f"subnets run failed ({proc.returncode})")
        log(f"done in {wall:.1f} s; worker peaks {sorted(workers.values())} MB")
    result = {
        "benchmark": "memory",
        "machine": provenance.machine(),
        "model": model_note,
        "task": task_note,
        "quick": args.quick,
        "worker_peak_mb": max(workers.values()) if workers else None,
        "worker_peaks_mb": sorted(workers.values()),
        "worker_private_peaks_mb": sorted(private.values()),
        "workers_pss_peak_mb": pss_peak,
        "coordinator_peak_mb": coordinator_peak,
        "coordinator_while_pruning_mb": max(coordinator_while_pruning) if coordinator_while_pruning else None,
        "imports_mb": imports_mb(),
        "target_worker_peak_mb": 1024,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "threads": 1,
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
