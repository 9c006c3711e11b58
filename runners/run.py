"""Execute one expanded run: fine-tune (or reuse), evaluate, prune step by step, log everything.

MLflow records: a parent run per expanded run (tags: fingerprint, method, seed, git SHA, versions; params:
the resolved config), every pruning step as metric steps, each step's mask as a safetensors artifact,
and the tidy Parquet tables under `tables/` that the warehouse reads. A run is FINISHED only after its
tables are logged; a crash marks it FAILED, Ctrl-C marks it KILLED, and `subnets run` redoes it.
"""
from __future__ import annotations

import itertools
import json
import re
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from runners import provenance
from safetensors.torch import save_file

from runners.cka_run import cka_rows, diagonal_metrics, heatmap_png
from runners.context import RunData
from runners.exporting import export_and_measure
from runners.evaluate import EvalResult
from runners.finetune import finetune
from runners.finetuned import get_finetuned, pad_id, pretrained
from runners.gates import unit_rows
from runners.masks import save_weight_masks
from runners.methods import METHODS
from runners.methods.base import PruneContext, PruneStep
from runners.progress import Progress
from runners.results import step_rows, write_table
from runners.tasks import build_task
from runners.tracking import EXPERIMENT, FINGERPRINT, KIND, METHOD, SEED, Store, flatten
from runners.variants import build_controls, retrain


EXPORT_BATCHES = 4  # evaluation batches that check the exported logits and time both models


@dataclass
class RunOutcome:
    run_id: str
    fingerprint: str
    baseline: dict[str, EvalResult]
    selected: PruneStep
    steps: int
    seconds: float
    variants: list[PruneStep]


def step_metrics(step: PruneStep) -> dict[str, float]:
    out = {"sparsity": step.sparsity, **{f"method.{k}": float(v) for k, v in step.extra.items()}}
    if step.unit_sparsity is not None:
        out["unit_sparsity"] = step.unit_sparsity
    if step.strength is not None:
        out["strength"] = step.strength
    for res in step.results.values():
        prefix = "id" if res.kind == "id" else f"ood.{res.name}"
        out[f"{prefix}.accuracy"] = res.accuracy
        for name, (c, n) in res.subcases.items():
            out[f"{prefix}.{_metric_safe(name)}.accuracy"] = c / n
    return out


def execute(spec, store: Store, progress: Progress) -> RunOutcome:
    method = METHODS.get(spec.prune.method)
    started = time.time()
    sha = provenance.git_sha(spec.base_dir)
    versions = provenance.versions()
    tags = {KIND: "run", FINGERPRINT: spec.fingerprint, EXPERIMENT: spec.experiment, METHOD: spec.prune.method,
            SEED: str(spec.seed), "subnets.git_sha": sha, "subnets.finetune_fingerprint": spec.finetune_fingerprint,
            **{f"subnets.version.{k}": v for k, v in versions.items()}, **spec.tags}
    run = store.start_run(store.experiment_id(spec.experiment), f"{spec.prune.method}-{spec.fingerprint[:8]}-seed{spec.seed}", tags)
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            config = spec.resolved_config()
            run.params(flatten({k: v for k, v in config.items() if k not in ("description", "tags")}))
            run.json_artifact("config.json", {**config, "fingerprint": spec.fingerprint, "git_sha": sha,
                                              "versions": versions, "axes": spec.axes}, tmp)
            outcome = _prune_and_log(spec, method, store, run, progress, tmp)
            ids = _ids(spec, run.run_id)
            write_table(tmp / "tables", "run", [dict(
                ids, model=spec.model.name, task=spec.task.name, description=spec.description,
                config_json=json.dumps(config, sort_keys=True), git_sha=sha,
                started_at=datetime.fromtimestamp(started, timezone.utc), duration_s=time.time() - started,
                baseline_id_accuracy=outcome.baseline["id"].accuracy, final_step=outcome.selected.step,
                final_sparsity=outcome.selected.sparsity)])
            run.artifact(tmp / "tables", "tables")
        run.finish("FINISHED")
    except KeyboardInterrupt:
        run.finish("KILLED")
        raise
    except BaseException:
        run.finish("FAILED")
        raise
    outcome.seconds = time.time() - started
    return outcome


def _ids(spec, run_id: str) -> dict:
    return dict(experiment=spec.experiment, run_id=run_id, fingerprint=spec.fingerprint, seed=spec.seed,
                method=spec.prune.method)


def _prune_and_log(spec, method, store: Store, run, progress: Progress, tmp: Path) -> RunOutcome:
    task = build_task(spec.task, spec.base_dir)
    cache = store.root / ".subnets"
    ft = get_finetuned(spec, task, cache, progress)
    run.tags({"subnets.finetune_cache": "hit" if ft.cached else "miss"})
    run.metrics({"finetune.seconds": ft.record["seconds"]}, step=0)
    for step, loss in ft.record["loss"]:
        run.metrics({"finetune.loss": loss}, step=step)
    for row in ft.record["epochs"]:
        run.metrics({f"finetune.{k}.accuracy": v for k, v in row.items() if k != "epoch"}, step=row["epoch"])

    model = ft.model
    data = RunData(spec, task, ft.tokenizer, pad_id(ft.tokenizer))
    baseline = data.evaluate(model)
    steps = [PruneStep(0, 0.0, baseline, True)]
    masks_dir = tmp / "masks"
    masks_dir.mkdir()
    ids = _ids(spec, run.run_id)
    units: list[dict] = []
    cka: list[dict] = []
    log = lambda step: _log_step(run, step, masks_dir, ids, units, cka, spec.cka)  # noqa: E731
    log(steps[0])
    ctx = PruneContext(model=model, evaluate=lambda: data.evaluate(model), baseline=baseline, progress=progress,
                       seed=spec.seed, train_batches=data.train_batches,
                       unit_means=lambda: data.unit_means(model, cache / "means"))
    for step in method.run(ctx, spec.prune.params):
        steps.append(step)
        log(step)
    selected = max((s for s in steps if s.passed), key=lambda s: (s.sparsity, s.step))
    run.metrics({"selected.step": selected.step, "selected.sparsity": selected.sparsity,
                 **{f"selected.{k}": v for k, v in step_metrics(selected).items() if k != "sparsity"}}, step=0)
    variants = _variants(spec, selected, task, data, cache, progress)
    for v in variants:
        log(v)
    if spec.prune.params.export and selected.gates is not None:
        # gate methods leave the weights alone, so `model` is still the fine-tuned model
        id_set = next(s for s in data.sets if s.eval_set.kind == "id")
        sample = list(itertools.islice(id_set.batches(spec.finetune.eval_batch_size, data.pad), EXPORT_BATCHES))
        figures = export_and_measure(model, selected.gates, ft.tokenizer, tmp / "export", sample)
        run.metrics(figures, step=selected.step)
        run.artifact(tmp / "export", "export")
    write_table(tmp / "tables", "steps", [r for s in [*steps, *variants] for r in step_rows(ids, s, s is selected or s.variant != "pruned")])
    write_table(tmp / "tables", "units", units)
    write_table(tmp / "tables", "cka", cka)
    return RunOutcome(run.run_id, spec.fingerprint, baseline, selected, len(steps) - 1, 0.0, variants)


def _variants(spec, selected: PruneStep, task, data: RunData, cache: Path, progress: Progress) -> list[PruneStep]:
    """Controls (random, bad) of the kept subnetwork, and re-fine-tuned versions when `retrain` is set."""
    params = spec.prune.params
    if selected.step == 0 or not (params.controls or params.retrain):
        return []
    load_ft = lambda: get_finetuned(spec, task, cache, Progress(enabled=False)).model  # fresh weights from the cache
    evaluate_variant = lambda m: data.evaluate(m, variant=True)  # noqa: E731
    out = build_controls(selected, list(params.controls), spec.seed, load_ft, evaluate_variant)
    if params.retrain:
        def load_pretrained():
            return pretrained(spec, task)[1]

        def refinetune(model, after_step):
            finetune(model, data.train_rows, spec.finetune, spec.seed, data.pad, progress, after_step=after_step,
                     label="re-fine-tuning")

        out += [retrain(s, load_pretrained, refinetune, evaluate_variant) for s in [selected, *out]]
    return out


def _log_step(run, step: PruneStep, masks_dir: Path, ids: dict, units: list[dict], cka: list[dict], cka_spec) -> None:
    """Log one step now (metrics, mask, CKA), so a kill later loses nothing that finished."""
    prefix = "" if step.variant == "pruned" else f"variant.{step.variant}."
    name = f"step_{step.step:03d}" if step.variant == "pruned" else f"{step.variant}_step_{step.step:03d}"
    result = step.results[cka_spec.split].cka if cka_spec is not None else None
    if result is not None:
        run.metrics({prefix + k: v for k, v in diagonal_metrics(result).items()}, step=step.step)
        cka += cka_rows(ids, step, result, cka_spec)
        png = masks_dir.parent / "cka" / f"{name}.png"
        png.parent.mkdir(exist_ok=True)
        heatmap_png(png, result, f"{step.variant} step {step.step}, sparsity {step.sparsity:.2f}")
        run.artifact(png, "cka")
    run.metrics({prefix + k: v for k, v in step_metrics(step).items()}, step=step.step)
    run.flush()
    meta = {"step": str(step.step), "variant": step.variant, "sparsity": repr(step.sparsity)}
    if step.weight_masks is not None:
        save_weight_masks(masks_dir / f"{name}.safetensors", step.weight_masks, meta)
        run.artifact(masks_dir / f"{name}.safetensors", "masks")
    if step.gates is not None:
        g = step.gates
        tensors = {k: getattr(g, k).detach().contiguous() for k in ("head", "mlp", "neuron") if getattr(g, k) is not None}
        tensors.update({f"score.{k}": v.detach().float().contiguous() for k, v in (step.scores or {}).items()})
        save_file(tensors, str(masks_dir / f"{name}.safetensors"), metadata={**meta, "ablation": g.ablation})
        run.artifact(masks_dir / f"{name}.safetensors", "masks")
        units += [dict(ids, variant=step.variant, step=step.step, **row) for row in unit_rows(g, step.scores)]


def _metric_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", name)
