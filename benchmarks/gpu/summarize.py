"""The last step of benchmarks/gpu/run.sh: every step's exit status, seconds and last JSON line into one
summary.json, and a short table of the figures issue 17 item 6 asks for (printed last, so the device tool's
output tail holds it).

    python benchmarks/gpu/summarize.py --logs /tmp/subnets-gpu/logs --out $OUT/summary.json [--seconds N]
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from pathlib import Path

KWAY_TARGET = 4.0  # issue 17: K = 8 subnetworks batched >= 4x the subnetworks/s of one after another


def last_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    for line in reversed(path.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def l0_row(j: dict) -> dict:
    times = j["kway"]["times_per_subnet_step"]
    seq, bat = times["sequential"]["wall_ms"], times["batched"]["wall_ms"]
    return {
        "device": j["environment"]["device"],
        "model": {k: j["config"][k] for k in ("layers", "hidden", "heads", "inter")},
        "k": j["kway"]["k"],
        "sequential_subnet_steps_per_s": 1000 / seq,
        "batched_subnet_steps_per_s": 1000 / bat,
        "kway_speedup": seq / bat,
        "kway_target_met": seq / bat >= KWAY_TARGET and j["kway"]["masks_equal"],
        "kway_masks_equal": j["kway"]["masks_equal"],
        "rows_per_pass": j["kway"]["rows_per_pass"],
        "cached_over_live": j["ratio"],
        "l0_masks_equal": j["l0_step"]["masks_equal"],
    }


def trainer_row(j: dict) -> dict:
    sides = j["sides"]
    row = {
        name: {k: sides[name][k] for k in ("train_examples_per_s", "eval_examples_per_s", "accuracy")} for name in sides
    }
    row["ratios"] = j["ratios"]
    row["setup"] = {k: j["setup"].get(k) for k in ("model", "task", "train", "epochs", "batch", "device", "torch")}
    return row


def plan_status(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        rows = list(csv.DictReader(path.open()))
    except csv.Error:
        return None
    return dict(Counter(r.get("status", "?") for r in rows)) if rows and "status" in rows[0] else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logs", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seconds", type=float, default=None, help="the whole run's wall seconds so far")
    a = ap.parse_args()
    steps: dict[str, dict] = {}
    for line in (a.logs / "steps.tsv").read_text().splitlines():
        name, rc, secs = line.split("\t")
        steps[name] = {"exit": rc, "seconds": float(secs), "json": last_json(a.logs / f"{name}.log")}
    figures: dict = {}
    for name, s in steps.items():
        j = s["json"]
        try:
            if name.startswith("l0-") and j:
                figures[name] = l0_row(j)
            elif name == "trainer" and j:
                figures[name] = trainer_row(j)
            elif name.startswith("hc-"):
                figures[name] = {"wall_s": s["seconds"], "exit": s["exit"]}
                figures[name]["runs"] = plan_status(a.logs / f"{name}-plan.csv")
            elif name == "probe" and j:
                figures[name] = {"ok": j.get("ok"), "gpu": j.get("gpu"), "versions": j.get("versions")}
        except (KeyError, TypeError, ZeroDivisionError) as e:
            figures[name] = {"error": f"{type(e).__name__}: {e}"}
    summary = {"seconds": a.seconds, "steps": steps, "figures": figures}
    a.out.write_text(json.dumps(summary, indent=1) + "\n")

    print("\n==== summary (all numbers also in summary.json) ====")
    for name, s in steps.items():
        print(f"{name:14s} exit {s['exit']:>7s}  {s['seconds']:7.1f} s")
    for name, f in figures.items():
        if "error" in f:
            print(f"{name}: {f['error']}")
        elif name.startswith("l0-"):
            print(
                f"{name}: K={f['k']} subnetworks/s batched {f['batched_subnet_steps_per_s']:.1f} vs sequential "
                f"{f['sequential_subnet_steps_per_s']:.1f} = {f['kway_speedup']:.2f}x (target >= {KWAY_TARGET}x: "
                f"{'met' if f['kway_target_met'] else 'NOT met'}), masks equal {f['kway_masks_equal']}; "
                f"cached/live teacher {f['cached_over_live']:.2f} [{f['device']}]"
            )
        elif name == "trainer":
            line = ", ".join(
                f"{k} {v['train_examples_per_s']:.0f} ex/s "
                f"(eval {v['eval_examples_per_s']:.0f}, acc {v['accuracy']:.3f})"
                for k, v in f.items()
                if k not in ("ratios", "setup")
            )
            r = f["ratios"]
            print(f"trainer: {line}")
            ratio = lambda x: "-" if x is None else f"{x:.2f}x"  # noqa: E731
            print(
                f"trainer: training examples/s ours / Trainer {ratio(r['train_ours_over_trainer'])}, length-grouped "
                f"{ratio(r['train_ours_grouped_over_trainer_grouped'])}; "
                f"evaluation {ratio(r['eval_ours_over_trainer'])}"
            )
        elif name.startswith("hc-"):
            print(f"{name}: `subnets run hc-offline` {f['wall_s']:.1f} s wall, exit {f['exit']}, runs {f['runs']}")
        elif name == "probe":
            v = f.get("versions") or {}
            print(f"probe: ok {f['ok']}, {f.get('gpu')}, torch {v.get('torch')}, transformers {v.get('transformers')}")
    if a.seconds is not None:
        print(f"whole run: {a.seconds:.0f} s")


if __name__ == "__main__":
    main()
