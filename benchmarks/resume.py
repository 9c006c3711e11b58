"""What a rerun after a SIGKILL reuses: the wall time of a rerun that resumes a killed `subnets run`, against
an uninterrupted run of the same experiment measured in the same session (the baseline: a rerun from
scratch costs that much). Kill points: after fine-tuning epoch 1 (of 2), after pruning step 3 and after
step 6 (of 8), and between the two controls.

    python benchmarks/resume.py [--threads 1]

Each run is a real `subnets run` process on a fresh store in a temp directory (the demo's embedded task,
micro-bert, magnitude pruning with CKA and random/bad controls). Prints one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runners.tracking import provenance  # noqa: E402
from tests.conftest import tiny_toml  # noqa: E402 - the tests' tiny experiment, so both measure one thing

TOML = (
    tiny_toml(rate=0.25, max_steps=8)
    .replace("epochs = 1.0", "epochs = 2.0")
    .replace(
        "n_train = 256, n_id_eval = 64, n_ood_per_subcase = 8",
        "n_train = 2048, n_id_eval = 1500, n_ood_per_subcase = 60",
    )
    .replace("max_steps = 8", 'max_steps = 8\ncontrols = ["random", "bad"]')
    + "\n[experiment.cka]\nexamples = 64\n"
)
KILL_POINTS = {
    "after fine-tuning epoch 1 of 2": ".subnets/finetuned/.*.checkpoint.pt",
    "after pruning step 3 of 8": "mlartifacts/tiny/*/artifacts/partial/step_003.json",
    "after pruning step 6 of 8": "mlartifacts/tiny/*/artifacts/partial/step_006.json",
    "between the two controls": "mlartifacts/tiny/*/artifacts/partial/random_step_*.json",
}


def subnets(store: Path, toml: Path, kill_when: str | None = None) -> float:
    """Wall seconds of one `subnets run` (killed with SIGKILL once `kill_when` exists under the store)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "registry.cli", "run", "--file", str(toml), "--store", str(store), "--quiet"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while kill_when is not None and not list(store.glob(kill_when)):
        if proc.poll() is not None:
            raise SystemExit(f"the run ended before {kill_when} appeared")
        time.sleep(0.02)
    if kill_when is not None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    if kill_when is None and proc.returncode != 0:
        raise SystemExit(f"subnets run failed ({proc.returncode})")
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads of every run (SUBNETS_THREADS)")
    args = ap.parse_args()
    os.environ["SUBNETS_THREADS"] = str(args.threads)
    out: dict = {"threads": args.threads}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        toml = tmp / "experiments.toml"
        toml.write_text(TOML)
        whole = subnets(tmp / "whole", toml)
        out["uninterrupted_s"] = round(whole, 1)
        points = {}
        for label, glob in KILL_POINTS.items():
            store = tmp / label.replace(" ", "-")
            killed_after = subnets(store, toml, glob)
            rerun = subnets(store, toml)
            points[label] = {
                "killed_after_s": round(killed_after, 1),
                "rerun_s": round(rerun, 1),
                "saved_s": round(whole - rerun, 1),
                "rerun_vs_scratch": round(rerun / whole, 3),
            }
            print(label, points[label], flush=True)
        out["kill_points"] = points
    print(json.dumps({"benchmark": "resume", "machine": provenance.machine(), **out}))


if __name__ == "__main__":
    main()
