"""Log one pruning step the moment it is yielded, so a kill later loses nothing that finished.

`StepLogger` is the runner's step callback: MLflow metrics (batched), the step's mask as a safetensors
artifact, its CKA matrix (table rows, diagonal metrics, a PNG heatmap) and its unit rows. Names and
figures come from small functions here; serialisation lives with the masks, plotting with CKA.
"""
from __future__ import annotations

import re
from pathlib import Path

from registry.schema import CkaSpec
from runners.cka import cka_rows, diagonal_metrics, heatmap_png
from runners.pruning.masks import save_gate_masks, save_weight_masks
from runners.pruning.recipe import PruneStep
from runners.pruning.units import unit_rows
from runners.tracking.store import RunLog


def artifact_name(step: PruneStep) -> str:
    """step_003 for the recipe's own steps, random_step_003 for a variant of step 3."""
    return f"step_{step.step:03d}" if step.variant == "pruned" else f"{step.variant}_step_{step.step:03d}"


def metric_prefix(step: PruneStep) -> str:
    return "" if step.variant == "pruned" else f"variant.{step.variant}."


def step_metrics(step: PruneStep) -> dict[str, float]:
    """The step's figures as MLflow metrics: sparsity, method figures, accuracy per set and subcase."""
    out = {"sparsity": step.sparsity, **{f"method.{k}": float(v) for k, v in step.extra.items()}}
    if step.unit_sparsity is not None:
        out["unit_sparsity"] = step.unit_sparsity
    if step.strength is not None:
        out["strength"] = step.strength
    for res in step.results.values():
        prefix = "id" if res.kind == "id" else f"ood.{res.name}"
        out[f"{prefix}.accuracy"] = res.accuracy
        for name, (c, n) in res.subcases.items():
            out[f"{prefix}.{metric_safe(name)}.accuracy"] = c / n
    return out


def metric_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", name)


def mask_metadata(step: PruneStep) -> dict[str, str]:
    return {"step": str(step.step), "variant": step.variant, "sparsity": repr(step.sparsity),
            "passed": str(step.passed).lower()}


class StepLogger:
    """Callback: log each step now; collect its unit and CKA rows for the run's tables."""

    def __init__(self, run: RunLog, ids: dict, workdir: Path, cka: CkaSpec | None):
        self.run, self.ids, self.cka = run, ids, cka
        self.masks_dir = workdir / "masks"
        self.cka_dir = workdir / "cka"
        self.masks_dir.mkdir(parents=True, exist_ok=True)
        self.units: list[dict] = []
        self.cka_rows: list[dict] = []

    def __call__(self, step: PruneStep) -> None:
        name, prefix = artifact_name(step), metric_prefix(step)
        result = step.results[self.cka.split].cka if self.cka is not None else None
        if result is not None:
            self.run.metrics({prefix + k: v for k, v in diagonal_metrics(result).items()}, step=step.step)
            self.cka_rows += cka_rows(self.ids, step, result, self.cka)
            self.cka_dir.mkdir(exist_ok=True)
            png = self.cka_dir / f"{name}.png"
            heatmap_png(png, result, f"{step.variant} step {step.step}, sparsity {step.sparsity:.2f}")
            self.run.artifact(png, "cka")
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
            self.units += [dict(self.ids, variant=step.variant, step=step.step, **row) for row in unit_rows(g, step.scores)]
