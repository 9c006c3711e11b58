"""The first step of benchmarks/gpu/run.sh: does this machine have what the measurements need? Seconds, no GPU work.

    python benchmarks/gpu/probe.py [--model DIR] [--device cpu|cuda]

1. the versions of the packages the project imports (the device's own and the carried wheels);
2. every module of registry/, runners/ and reports/ imports (reports/ needs duckdb: reported, not fatal, where it
   was not carried; runners.tracking.ui needs uvicorn, only for `subnets ui`);
3. a local tracking store is created (MLflow's SQLite migrations: sqlalchemy, alembic) and a run logged to it, and
   the queue's Optuna storage is created and one trial asked and told;
4. the carried model loads as fp32 (its config says float32: transformers 5 would otherwise keep fp16 weights in
   fp16) and runs one forward pass on `--device`.

Prints one line per check; the last line is one JSON object; exit status 1 when a required check failed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import json
import pkgutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

PACKAGES = [
    "torch", "transformers", "tokenizers", "safetensors", "accelerate", "huggingface-hub", "numpy", "pyarrow",
    "pydantic", "pydantic-core", "typer", "click", "rich", "mlflow-skinny", "mlflow", "optuna", "sqlalchemy",
    "alembic", "duckdb", "jinja2", "matplotlib", "pandas", "protobuf", "opentelemetry-sdk",
]  # fmt: skip
OPTIONAL = {"runners.tracking.ui": "uvicorn (subnets ui only)"}


def log(msg: str) -> None:
    print(f"[probe] {msg}", flush=True)


def versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    out["python"] = sys.version.split()[0]
    return out


def import_all() -> dict:
    failed, optional = {}, {}
    for pkg in ("registry", "runners", "reports"):
        mod = importlib.import_module(pkg)
        for info in pkgutil.walk_packages(mod.__path__, f"{pkg}."):
            if info.name.endswith(".__main__"):  # would run the CLI
                continue
            try:
                importlib.import_module(info.name)
            except Exception as e:  # noqa: BLE001 - every failure is reported
                why = f"{type(e).__name__}: {e}"
                if info.name in OPTIONAL or (pkg == "reports" and "duckdb" in why):
                    optional[info.name] = why
                else:
                    failed[info.name] = why
    return {"failed": failed, "optional_missing": optional}


def store_and_queue() -> dict:
    from runners.queue import default_url, open_storage
    from runners.tracking import Store

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        st = Store.at(tmp)
        st.ensure()
        exp = st.experiment_id("probe")
        run = st.client.create_run(exp)
        st.client.log_param(run.info.run_id, "p", 1)
        st.client.log_metric(run.info.run_id, "m", 0.5)
        art = Path(tmp) / "a.json"
        art.write_text("{}")
        st.client.log_artifact(run.info.run_id, str(art))
        st.client.set_terminated(run.info.run_id)
        import optuna

        storage = open_storage(default_url(st.root), create=True)
        study = optuna.create_study(storage=storage, study_name="probe")
        trial = study.ask()
        study.tell(trial, 1.0)
        n = len(study.trials)
    return {"seconds": time.perf_counter() - started, "trials": n}


def model(path: str, device: str) -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    tok = AutoTokenizer.from_pretrained(path)
    m = AutoModelForSequenceClassification.from_pretrained(path, num_labels=3).to(device).eval()
    dtypes = sorted({str(p.dtype) for p in m.parameters()})
    enc = tok(["A man plays a guitar."], ["Someone makes music."], return_tensors="pt").to(device)
    with torch.no_grad():
        logits = m(**enc).logits
    return {"dtypes": dtypes, "fp32": dtypes == ["torch.float32"], "logits_finite": bool(torch.isfinite(logits).all())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="a carried model directory to load (fp32 expected)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a = ap.parse_args()
    out: dict = {"versions": versions()}
    log(" ".join(f"{k}={v}" for k, v in out["versions"].items()))
    import torch

    out["cuda"] = torch.cuda.is_available()
    if out["cuda"]:
        out["gpu"] = torch.cuda.get_device_name()
        out["bf16_supported"] = torch.cuda.is_bf16_supported()
    log(f"cuda available {out['cuda']} {out.get('gpu', '')}")
    ok = True
    out["imports"] = import_all()
    for name, why in out["imports"]["failed"].items():
        log(f"IMPORT FAILED {name}: {why}")
    for name, why in out["imports"]["optional_missing"].items():
        log(f"import skipped (optional) {name}: {why}")
    ok &= not out["imports"]["failed"]
    for key, fn in (("store", store_and_queue), ("model", lambda: model(a.model, a.device) if a.model else None)):
        try:
            out[key] = fn()
            log(f"{key}: {out[key]}")
        except Exception as e:  # noqa: BLE001
            out[key] = {"error": f"{type(e).__name__}: {e}"}
            log(f"{key} FAILED: {out[key]['error']}")
            ok = False
    if a.model and isinstance(out.get("model"), dict) and not out["model"].get("fp32", False):
        ok = False
    if a.device == "cuda" and not out["cuda"]:
        ok = False
    out["ok"] = ok
    print(json.dumps(out))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
