"""Our fine-tuning + evaluation loop vs the loop a researcher would write with `transformers.Trainer`, and
what batching does to both: fixed padding vs per-batch (dynamic) padding vs length-grouped batches.

    python benchmarks/trainer.py [--quick] [--threads N] [--train N] [--epochs E] [--synthetic]
                                 [--sides ours,ours_grouped,trainer,trainer_grouped] [--no-schemes]
                                 [--device cpu|cuda] [--shared DIR]

Data and model: the real encoder ../shared/models/all-MiniLM-L6-v2 (a 6-layer BERT) fine-tuned on the first
`train` sentences of GLUE SST-2 (../shared/data/sst2/train.tsv) and evaluated on its dev set; where ../shared
is absent (or with --synthetic), the built-in tiny-bert on the generated synthetic-nli task. --shared names another
folder of that layout (a lent GPU machine: benchmarks/gpu/run.sh); --device cuda runs both sides there (Trainer
without use_cpu), each timed call synchronised. Both sides start
from the same weights (one loaded model, deep-copied) and use the same examples, batch size, epochs, learning
rate, linear warm-up/decay, weight decay, gradient clipping, evaluation batch size and torch threads.

  ours           runners.training.finetune.finetune (dynamic padding, random order) then
                 runners.training.evaluate.evaluate (dynamic padding, length-sorted order)
  ours_grouped   the same with finetune.length_grouped = true (groups of 50 batches sorted by length)
  trainer        transformers.Trainer with DataCollatorWithPadding (dynamic padding, random order), its
                 defaults otherwise (fused AdamW, no logging, no checkpoints), .train() then .evaluate()
  trainer_grouped  the same with train_sampling_strategy="group_by_length" (Trainer's length-grouped sampler)

Batching (our training step and a no_grad forward pass, everything else equal): fixed (every batch padded
to max_length), dynamic (padded to the batch's longest example, random order), grouped
(runners.training.finetune.length_grouped:
random groups of 50 batches, each sorted by length, cut into batches that are then shuffled; Trainer's
group_by_length sorts the same groups); for
evaluation, dynamic in file order vs length-sorted (what evaluate() does). Each reports examples per second
and the padding overhead (padded tokens / real tokens).

Throughput is examples (x epochs) per wall second of the whole call, set-up inside it included. Everything
runs in this one process, one after the other. Progress goes to stdout; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

import torch  # noqa: E402

from runners.tracking import provenance  # noqa: E402

FULL = dict(train=4096, eval=872, epochs=1.0, batch=32, eval_batch=128, max_length=128)
QUICK = dict(train=32, eval=32, epochs=1.0, batch=16, eval_batch=32, max_length=32)
HYPER = dict(lr=5e-5, warmup_ratio=0.1, weight_decay=0.01, max_grad_norm=1.0)
SEED = 0
SIDES = ("ours", "ours_grouped", "trainer", "trainer_grouped")


def log(msg: str) -> None:
    print(f"[trainer-bench] {msg}", flush=True)


# ---- data and model ----------------------------------------------------------------------------------


def _sst2(split: str, limit: int, shared: Path = SHARED):
    from runners.data.examples import Example

    with open(shared / "data" / "sst2" / f"{split}.tsv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [Example(r["sentence"].strip(), None, int(r["label"])) for r in rows[:limit]]


def setup(cfg: dict, synthetic: bool, shared: Path = SHARED, device: str = "cpu") -> dict:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from registry.schema import ModelSpec
    from runners.data.examples import EvalSet, encode
    from runners.training.evaluate import EncodedSet

    hf_logging.set_verbosity_error()
    model_dir, data_dir = shared / "models" / "all-MiniLM-L6-v2", shared / "data" / "sst2"
    torch.manual_seed(SEED)
    if not synthetic and model_dir.is_dir() and data_dir.is_dir():
        train, dev = _sst2("train", cfg["train"], shared), _sst2("dev", cfg["eval"], shared)
        tok = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
        what = dict(model=str(model_dir.name), task="sst2", source="../shared" if shared == SHARED else str(shared))
    else:
        from runners.data.synthetic_nli import SyntheticNLIParams, generate, vocabulary
        from runners.training.models import load_pretrained, load_tokenizer

        params = SyntheticNLIParams(n_train=cfg["train"], n_id_eval=cfg["eval"], n_ood_per_subcase=1)
        task = generate(params, SEED)
        spec = ModelSpec(name="tiny-bert")
        tok = load_tokenizer(spec, ".", vocabulary(params))
        model = load_pretrained(spec, ".", task.num_labels, len(tok), SEED)
        train, dev = task.train, task.id_eval.examples
        what = dict(model="tiny-bert", task="synthetic-nli", source="built-in (../shared absent or --synthetic)")
    labels = sorted({e.label for e in train + dev})
    dev_set = EvalSet("id", "id", dev, labels=tuple(str(x) for x in labels))
    rows = encode(tok, train, cfg["max_length"])
    return dict(
        tok=tok,
        model=model.to(device).eval(),
        rows=rows,
        dev=EncodedSet.build(tok, dev_set, cfg["max_length"]),
        train_examples=train,
        dev_examples=dev,
        what=what,
    )


def _spec(cfg: dict, grouped: bool = False):
    from registry.schema import FinetuneSpec

    return FinetuneSpec(
        epochs=cfg["epochs"],
        lr=HYPER["lr"],
        batch_size=cfg["batch"],
        eval_batch_size=cfg["eval_batch"],
        warmup_ratio=HYPER["warmup_ratio"],
        weight_decay=HYPER["weight_decay"],
        max_grad_norm=HYPER["max_grad_norm"],
        length_grouped=grouped,
    )


# ---- ours --------------------------------------------------------------------------------------------


def run_ours(s: dict, cfg: dict, grouped: bool = False) -> dict:
    from runners.tracking.progress import Progress
    from runners.training.evaluate import evaluate
    from runners.training.finetune import finetune

    model, pad = copy.deepcopy(s["model"]), s["tok"].pad_token_id
    start = time.perf_counter()
    history = finetune(model, s["rows"], _spec(cfg, grouped), SEED, pad, Progress(enabled=False))
    _sync(model)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    result = evaluate(model, s["dev"], cfg["eval_batch"], pad)
    eval_s = time.perf_counter() - start
    n_train = len(s["rows"]) * cfg["epochs"]
    return dict(
        train_s=train_s,
        train_examples_per_s=n_train / train_s,
        eval_s=eval_s,
        eval_examples_per_s=result.n / eval_s,
        accuracy=result.accuracy,
        steps=history.steps,
        final_loss=history.loss[-1][1] if history.loss else None,
        threads=torch.get_num_threads(),
    )


# ---- transformers.Trainer -----------------------------------------------------------------------------


class _Rows(torch.utils.data.Dataset):
    def __init__(self, tok, examples, max_length: int):
        enc = tok([e.text_a for e in examples], truncation=True, max_length=max_length, padding=False)
        keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
        self.items = [{**{k: enc[k][i] for k in keys}, "labels": e.label} for i, e in enumerate(examples)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def run_trainer(s: dict, cfg: dict, grouped: bool) -> dict:
    import numpy as np
    from transformers import DataCollatorWithPadding, PrinterCallback, Trainer, TrainingArguments

    model, tok = copy.deepcopy(s["model"]), s["tok"]
    train = _Rows(tok, s["train_examples"], cfg["max_length"])
    dev = _Rows(tok, s["dev_examples"], cfg["max_length"])

    def accuracy(p):
        return {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())}

    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=cfg["batch"],
            per_device_eval_batch_size=cfg["eval_batch"],
            num_train_epochs=cfg["epochs"],
            learning_rate=HYPER["lr"],
            warmup_steps=HYPER["warmup_ratio"],
            weight_decay=HYPER["weight_decay"],
            max_grad_norm=HYPER["max_grad_norm"],
            lr_scheduler_type="linear",
            seed=SEED,
            use_cpu=next(model.parameters()).device.type == "cpu",  # --device cuda: the Trainer's own GPU path
            save_strategy="no",
            logging_strategy="no",
            eval_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            train_sampling_strategy="group_by_length" if grouped else "random",
        )
        start = time.perf_counter()
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train,
            eval_dataset=dev,
            data_collator=DataCollatorWithPadding(tok),
            compute_metrics=accuracy,
        )
        trainer.remove_callback(PrinterCallback)  # its metrics dicts would interleave with our lines
        out_train = trainer.train()
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        metrics = trainer.evaluate()
        eval_s = time.perf_counter() - start
    torch.set_num_threads(threads)  # in case the Trainer changed them
    return dict(
        train_s=train_s,
        train_examples_per_s=len(train) * cfg["epochs"] / train_s,
        eval_s=eval_s,
        eval_examples_per_s=len(dev) / eval_s,
        accuracy=metrics["eval_accuracy"],
        steps=out_train.global_step,
        final_loss=out_train.training_loss,
        threads=threads,
    )


# ---- batching schemes ---------------------------------------------------------------------------------


def _order(n: int, epoch: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(SEED + epoch)).tolist()


def _pad_to(b, width: int, pad: int):
    from runners.data.examples import Batch

    extra = width - b.input_ids.shape[1]
    if extra <= 0:
        return b
    grow = lambda t, v: torch.nn.functional.pad(t, (0, extra), value=v)  # noqa: E731
    return Batch(
        grow(b.input_ids, pad),
        grow(b.attention_mask, 0),
        None if b.token_type_ids is None else grow(b.token_type_ids, 0),
        b.labels,
        b.subcases,
    )


def scheme_batches(rows: list[dict], scheme: str, batch: int, pad: int, max_length: int, epoch: int, train: bool):
    from runners.data.examples import batches
    from runners.training.finetune import length_grouped  # what finetune.length_grouped = true does

    lengths = [len(r["input_ids"]) for r in rows]
    if scheme == "grouped":
        order = length_grouped(_order(len(rows), epoch), lengths, batch, torch.Generator().manual_seed(SEED + epoch))
    elif scheme == "sorted":
        order = sorted(range(len(rows)), key=lambda i: lengths[i])
    else:
        order = _order(len(rows), epoch) if train else list(range(len(rows)))
    out = list(batches(rows, batch, pad, order))
    return [_pad_to(b, max_length, pad) for b in out] if scheme == "fixed" else out


def _padding(bs) -> float:
    return sum(b.input_ids.numel() for b in bs) / sum(int(b.attention_mask.sum()) for b in bs)


def train_scheme(s: dict, cfg: dict, scheme: str) -> dict:
    """finetune()'s step (AdamW without decay on biases/LayerNorm, linear schedule, clipping) over `scheme`'s
    batches."""
    from runners.training.finetune import linear_schedule, param_groups, train_step

    model, pad, spec = copy.deepcopy(s["model"]), s["tok"].pad_token_id, _spec(cfg)
    device = next(model.parameters()).device
    per_epoch = math.ceil(len(s["rows"]) / cfg["batch"])
    total = max(1, math.ceil(cfg["epochs"] * per_epoch))
    torch.manual_seed(SEED)
    start = time.perf_counter()
    opt = torch.optim.AdamW(param_groups(model, spec.weight_decay), lr=spec.lr, fused=True)  # as finetune()
    sched = linear_schedule(opt, int(spec.warmup_ratio * total), total)
    model.train()
    step, epoch, seen, ratio = 0, 0, 0, []
    while step < total:
        bs = scheme_batches(s["rows"], scheme, cfg["batch"], pad, cfg["max_length"], epoch, train=True)
        ratio.append(_padding(bs))
        for b in bs[: total - step]:
            train_step(model, b.to(device), opt, sched, spec.max_grad_norm)
            step, seen = step + 1, seen + len(b.labels)
        epoch += 1
    _sync(model)
    seconds = time.perf_counter() - start
    return dict(examples_per_s=seen / seconds, seconds=seconds, padded_per_real_token=sum(ratio) / len(ratio))


@torch.no_grad()
def eval_scheme(s: dict, cfg: dict, scheme: str) -> dict:
    model, pad = s["model"], s["tok"].pad_token_id
    start = time.perf_counter()
    bs = scheme_batches(s["dev"].rows, scheme, cfg["eval_batch"], pad, cfg["max_length"], 0, train=False)
    device = next(model.parameters()).device
    for b in bs:
        model(**b.to(device).model_inputs())
    _sync(model)
    seconds = time.perf_counter() - start
    return dict(examples_per_s=len(s["dev"].rows) / seconds, seconds=seconds, padded_per_real_token=_padding(bs))


def _sync(model) -> None:
    """Wait for the model's queued GPU work (a no-op on the CPU), so a timer read next counts it."""
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---- main ---------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few batches: checks that it runs (seconds)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for every side (default: all cores)")
    ap.add_argument("--train", type=int, default=None, help="training examples")
    ap.add_argument("--epochs", type=float, default=None)
    ap.add_argument(
        "--synthetic", action="store_true", help="the built-in tiny-bert on synthetic-nli, even with ../shared"
    )
    ap.add_argument("--sides", default=None, help=f"comma-separated subset of {','.join(SIDES)} (default: all)")
    ap.add_argument("--no-schemes", action="store_true", help="skip the batching-scheme comparison")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where both sides run (default cpu)")
    ap.add_argument("--shared", type=Path, default=SHARED, help="the folder with models/ and data/ (default ../shared)")
    a = ap.parse_args()
    if a.sides and not set(a.sides.split(",")) <= set(SIDES):
        ap.error(f"--sides: choose from {', '.join(SIDES)}")
    cfg = dict(QUICK if a.quick else FULL)
    cfg.update({k: v for k, v in (("train", a.train), ("epochs", a.epochs)) if v is not None})
    threads = a.threads or int(os.environ.get("SUBNETS_THREADS", 0)) or provenance.usable_cores()
    torch.set_num_threads(threads)
    s = setup(cfg, a.synthetic, a.shared, a.device)
    log(
        f"{s['what']['model']} on {s['what']['task']}: {len(s['rows'])} training, {len(s['dev'].rows)} dev examples, "
        f"batch {cfg['batch']}, {cfg['epochs']} epoch(s), {threads} thread(s)"
    )
    sides = {}
    chosen = a.sides.split(",") if a.sides else list(SIDES)
    for name in chosen:
        fn = {
            "ours": lambda: run_ours(s, cfg),
            "ours_grouped": lambda: run_ours(s, cfg, grouped=True),
            "trainer": lambda: run_trainer(s, cfg, grouped=False),
            "trainer_grouped": lambda: run_trainer(s, cfg, grouped=True),
        }[name]
        sides[name] = fn()
        r = sides[name]
        log(
            f"{name:16s} train {r['train_examples_per_s']:8.1f} ex/s   eval {r['eval_examples_per_s']:8.1f} ex/s   "
            f"accuracy {r['accuracy']:.3f}"
        )
    batching: dict = {"train": {}, "eval": {}}
    for scheme in () if a.no_schemes else ("fixed", "dynamic", "grouped"):
        batching["train"][scheme] = r = train_scheme(s, cfg, scheme)
        log(f"train {scheme:8s} {r['examples_per_s']:8.1f} ex/s   padded/real tokens {r['padded_per_real_token']:.2f}")
    for scheme in () if a.no_schemes else ("fixed", "dynamic", "sorted"):
        batching["eval"][scheme] = r = eval_scheme(s, cfg, scheme)
        log(f"eval  {scheme:8s} {r['examples_per_s']:8.1f} ex/s   padded/real tokens {r['padded_per_real_token']:.2f}")

    def ratio(a_: dict, b_: dict, key: str) -> float | None:
        return a_[key] / b_[key] if a_ and b_ else None

    side, tr, ev = sides.get, batching["train"].get, batching["eval"].get
    print(
        json.dumps(
            {
                "benchmark": "trainer",
                "quick": a.quick,
                "setup": {
                    **s["what"],
                    **cfg,
                    **HYPER,
                    "threads": threads,
                    **({"device": torch.cuda.get_device_name()} if a.device == "cuda" else {}),
                    "torch": torch.__version__,
                    "python": platform.python_version(),
                    "machine": provenance.machine(),
                },
                "sides": sides,
                "batching": batching,
                "ratios": {
                    "train_ours_over_trainer": ratio(side("ours"), side("trainer"), "train_examples_per_s"),
                    "train_ours_grouped_over_trainer_grouped": ratio(
                        side("ours_grouped"), side("trainer_grouped"), "train_examples_per_s"
                    ),
                    "train_ours_grouped_over_ours": ratio(side("ours_grouped"), side("ours"), "train_examples_per_s"),
                    "eval_ours_over_trainer": ratio(side("ours"), side("trainer"), "eval_examples_per_s"),
                    "train_dynamic_over_fixed": ratio(tr("dynamic"), tr("fixed"), "examples_per_s"),
                    "train_grouped_over_dynamic": ratio(tr("grouped"), tr("dynamic"), "examples_per_s"),
                    "eval_sorted_over_dynamic": ratio(ev("sorted"), ev("dynamic"), "examples_per_s"),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
