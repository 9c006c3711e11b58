"""The step record: what a finished pruning step leaves for a rerun, and the names of a step's artifacts.

Every step a run logs leaves two artifacts: its mask file (masks/<name>.safetensors, the recipe's state) and,
written last, its record (partial/<name>.json: the step's figures, evaluation results, unit and CKA rows).
The record is the commit point: a step with a record is finished. `StepLogger` (steplog.py) writes records,
`resume.py` reads them back; this module is the format both follow.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from runners.pruning.recipe import PruneStep
from runners.training.evaluate import EvalResult

PARTIAL = "partial"  # the run's artifact directory of records
RECORD_FORMAT = 1  # records of another format are ignored (the run starts over)


def artifact_name(step: PruneStep) -> str:
    """step_003 for the recipe's own steps, random_step_003 for a variant of step 3: the stem of the step's
    mask file, record and CKA heatmap."""
    return f"step_{step.step:03d}" if step.variant == "pruned" else f"{step.variant}_step_{step.step:03d}"


def _result_json(res: EvalResult) -> dict:
    return {f.name: getattr(res, f.name) for f in dataclasses.fields(res) if f.name != "cka"}


def _result_from_json(d: dict) -> EvalResult:
    d = dict(d)
    d["subcases"] = {k: tuple(v) for k, v in d.get("subcases", {}).items()}
    return EvalResult(**d)


def step_record(step: PruneStep, units: list[dict], cka: list[dict], git_sha: str, elapsed_s: float) -> dict:
    """What a finished step leaves for a rerun: everything but its masks (those are in its mask file)."""
    return {
        "format": RECORD_FORMAT,
        "git_sha": git_sha,
        "elapsed_s": elapsed_s,
        "step": {
            "step": step.step,
            "sparsity": step.sparsity,
            "passed": step.passed,
            "variant": step.variant,
            "unit_sparsity": step.unit_sparsity,
            "strength": step.strength,
            "extra": step.extra,
        },
        "results": [_result_json(r) for r in step.results.values()],  # a list: the sets' order is the tables' order
        "units": units,
        "cka": cka,
    }


def write_record(directory: Path, step: PruneStep, record: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{artifact_name(step)}.json"
    path.write_text(json.dumps(record, sort_keys=True, default=str))
    return path


def read_records(directory: Path) -> list[dict]:
    """The records in `directory` (downloaded from a run's partial/) that this code's format can read."""
    records = [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]
    return [r for r in records if r.get("format") == RECORD_FORMAT]


def step_of(record: dict) -> PruneStep:
    """The step a record describes, without its state (masks or gates: in its mask file)."""
    s = record["step"]
    return PruneStep(
        s["step"],
        s["sparsity"],
        {v["name"]: _result_from_json(v) for v in record["results"]},
        s["passed"],
        unit_sparsity=s["unit_sparsity"],
        variant=s["variant"],
        strength=s["strength"],
        extra=s["extra"],
    )


__all__ = ["PARTIAL", "RECORD_FORMAT", "artifact_name", "read_records", "step_of", "step_record", "write_record"]
