"""Log one pruning step the moment it is yielded, so a kill later loses nothing that finished.

`StepLogger` is the runner's step callback: MLflow metrics (batched), the step's mask as a safetensors
artifact, its CKA matrix (table rows, diagonal metrics, a PNG heatmap), its unit rows and, last, its record
(records.py). Metric names and figures come from small functions here; serialisation lives with the masks
and the records, plotting with CKA.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np

from registry.schema import CkaSpec
from registry.tracking import step_metric_prefix
from runners.cka import cka_rows, diagonal_metrics, heatmap_png
from runners.pruning.masks import save_gate_masks, save_weight_masks
from runners.pruning.recipe import PruneStep
from runners.pruning.units import unit_rows
from runners.run.records import PARTIAL, artifact_name, step_record, write_record
from runners.tracking.store import RunLog


def metric_prefix(step: PruneStep) -> str:
    """Each pruning step's figures are curves under `step/` (step/id.accuracy, ...); the run's plain names
    (id.accuracy, sparsity, ...) hold the kept step's figures only, so the MLflow run page summarises the
    subnetwork the run kept, not its last (often failing) step. Variants exist only at the kept step."""
    return step_metric_prefix(step.variant)


def step_metrics(step: PruneStep) -> dict[str, float]:
    """The step's figures as MLflow metrics: sparsity, method figures, accuracy per set and subcase, and
    the task's own metrics per set (id.mcc, ood.paws.f1, id.pearson, ...; a regression task has no accuracy)."""
    out = {"sparsity": step.sparsity, **{f"method.{k}": float(v) for k, v in step.extra.items()}}
    if step.unit_sparsity is not None:
        out["unit_sparsity"] = step.unit_sparsity
    if step.strength is not None:
        out["strength"] = step.strength
    for res in step.results.values():
        prefix = "id" if res.kind == "id" else f"ood.{res.name}"
        if not res.regression:
            out[f"{prefix}.accuracy"] = res.accuracy
            for name, (c, n) in res.subcases.items():
                out[f"{prefix}.{metric_safe(name)}.accuracy"] = c / n
        out.update({f"{prefix}.{name}": value for name, value in res.metrics.items() if name != "accuracy"})
    return out


def metric_safe(name: str) -> str:
    """A subcase value as part of an MLflow metric key: MLflow keys may become file paths, so characters
    outside [A-Za-z0-9_-. /] become _, and each path segment that is empty, '.' or '..' (`x/../../etc`) too."""
    text = re.sub(r"[^A-Za-z0-9_\-. /]", "_", name)
    return "/".join(seg if seg.strip(".") else "_" * max(1, len(seg)) for seg in text.split("/"))


def mask_metadata(step: PruneStep) -> dict[str, str]:
    return {
        "step": str(step.step),
        "variant": step.variant,
        "sparsity": repr(step.sparsity),
        "passed": str(step.passed).lower(),
    }


class StepLogger:
    """Callback: log each step now; collect its unit and CKA rows for the run's tables."""

    def __init__(
        self,
        run: RunLog,
        ids: dict,
        workdir: Path,
        cka: CkaSpec | None,
        git_sha: str = "",
        elapsed: Callable[[], float] = lambda: 0.0,
    ):
        self.run, self.ids, self.cka = run, ids, cka
        self.git_sha, self.elapsed = git_sha, elapsed
        self.masks_dir = workdir / "masks"
        self.cka_dir = workdir / "cka"
        self.records_dir = workdir / PARTIAL
        self.masks_dir.mkdir(parents=True, exist_ok=True)
        self.units: list[dict] = []
        self.cka_rows: list[dict] = []

    def __call__(self, step: PruneStep) -> None:
        name, prefix = artifact_name(step), metric_prefix(step)
        result = step.results[self.cka.split].cka if self.cka is not None else None
        new_cka, new_units = [], []
        if result is not None:
            self.run.metrics({prefix + k: v for k, v in diagonal_metrics(result.matrix).items()}, step=step.step)
            new_cka = cka_rows(self.ids, step, result, self.cka)
        self.run.metrics({prefix + k: v for k, v in step_metrics(step).items()}, step=step.step)
        self.run.flush()
        path = self.masks_dir / f"{name}.safetensors"
        if step.weight_masks is not None:
            save_weight_masks(path, step.weight_masks, mask_metadata(step))
            self.run.artifact(path, "masks")
        if step.gates is not None:
            g = step.gates
            families = {k: getattr(g, k) for k in ("head", "mlp", "neuron") if getattr(g, k) is not None}
            save_gate_masks(path, families, step.scores, {**mask_metadata(step), "ablation": g.ablation})
            self.run.artifact(path, "masks")
            new_units = [
                dict(self.ids, variant=step.variant, step=step.step, **row) for row in unit_rows(g, step.scores)
            ]
        self.units += new_units
        self.cka_rows += new_cka
        # written last: a step with a record is finished (runners/run/records.py)
        record = step_record(step, new_units, new_cka, self.git_sha, self.elapsed())
        self.run.artifact(write_record(self.records_dir, step, record), PARTIAL)

    def summarise(self, kept: PruneStep, variants: list[PruneStep]) -> None:
        """The kept step's figures under the run's plain metric names, and a CKA heatmap PNG of the kept
        step and of each variant for the MLflow UI (the report draws every step's from the cka table; a PNG
        per step cost more CPU than all of a run's MLflow calls)."""
        self.run.metrics({"step": kept.step, **step_metrics(kept)}, step=kept.step)
        if self.cka is not None:
            for s in [kept, *variants]:
                matrix = cka_matrix(self.cka_rows, s.variant, s.step)
                if matrix is not None:
                    if s is kept:
                        self.run.metrics(diagonal_metrics(matrix), step=kept.step)
                    self.cka_dir.mkdir(exist_ok=True)
                    png = self.cka_dir / f"{artifact_name(s)}.png"
                    heatmap_png(png, matrix, f"{s.variant} step {s.step}, sparsity {s.sparsity:.2f}")
                    self.run.artifact(png, "cka")
        self.run.flush()


def cka_matrix(rows: list[dict], variant: str, step: int):
    """The baseline x pruned CKA matrix of one step from its table rows (None if it was not compared)."""
    cells = [r for r in rows if r["variant"] == variant and r["step"] == step]
    if not cells:
        return None
    m = np.zeros((1 + max(r["layer_base"] for r in cells), 1 + max(r["layer_pruned"] for r in cells)))
    for r in cells:
        m[r["layer_base"], r["layer_pruned"]] = r["value"]
    return m
