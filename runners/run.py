"""Execute one expanded run: fine-tune (or reuse), evaluate, prune step by step, log everything.

MLflow records: a parent run per expanded run (tags: fingerprint, method, seed, git SHA, versions; params:
the resolved config), every pruning step as metric steps, each step's mask as a safetensors artifact,
and the tidy Parquet tables under `tables/` that the warehouse reads. A run is FINISHED only after its
tables are logged; a crash marks it FAILED, Ctrl-C marks it KILLED, and `subnets run` redoes it.
"""
from __future__ import annotations

import json
import re
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from runners import provenance
from runners.evaluate import EncodedSet, EvalResult, evaluate
from runners.finetuned import get_finetuned, pad_id
from runners.masks import save_weight_masks
from runners.methods import METHODS
from runners.methods.base import PruneContext, PruneStep
from runners.progress import Progress
from runners.results import step_rows, write_table
from runners.tasks import build_task
from runners.tracking import EXPERIMENT, FINGERPRINT, KIND, METHOD, SEED, Store, flatten


@dataclass
class RunOutcome:
    run_id: str
    fingerprint: str
    baseline: dict[str, EvalResult]
    selected: PruneStep
    steps: int
    seconds: float


def step_metrics(step: PruneStep) -> dict[str, float]:
    out = {"sparsity": step.sparsity}
    if step.unit_sparsity is not None:
        out["unit_sparsity"] = step.unit_sparsity
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
    ft = get_finetuned(spec, task, store.root / ".subnets", progress)
    run.tags({"subnets.finetune_cache": "hit" if ft.cached else "miss"})
    run.metrics({"finetune.seconds": ft.record["seconds"]}, step=0)
    for step, loss in ft.record["loss"]:
        run.metrics({"finetune.loss": loss}, step=step)
    for row in ft.record["epochs"]:
        run.metrics({f"finetune.{k}.accuracy": v for k, v in row.items() if k != "epoch"}, step=row["epoch"])

    model, pad, bs = ft.model, pad_id(ft.tokenizer), spec.finetune.eval_batch_size
    sets = [EncodedSet.build(ft.tokenizer, s, spec.task.max_length) for s in task.eval_sets]

    def evaluate_now() -> dict[str, EvalResult]:
        return {s.eval_set.name: evaluate(model, s, bs, pad) for s in sets}

    baseline = evaluate_now()
    steps = [PruneStep(0, 0.0, baseline, True)]
    masks_dir = tmp / "masks"
    masks_dir.mkdir()
    _log_step(run, steps[0], masks_dir)
    ctx = PruneContext(model=model, evaluate=evaluate_now, baseline=baseline, progress=progress, seed=spec.seed)
    for step in method.run(ctx, spec.prune.params):
        steps.append(step)
        _log_step(run, step, masks_dir)
    selected = max((s for s in steps if s.passed), key=lambda s: (s.sparsity, s.step))
    run.metrics({"selected.step": selected.step, "selected.sparsity": selected.sparsity,
                 **{f"selected.{k}": v for k, v in step_metrics(selected).items() if k != "sparsity"}}, step=0)
    ids = _ids(spec, run.run_id)
    write_table(tmp / "tables", "steps", [r for s in steps for r in step_rows(ids, s, s is selected)])
    return RunOutcome(run.run_id, spec.fingerprint, baseline, selected, len(steps) - 1, 0.0)


def _log_step(run, step: PruneStep, masks_dir: Path) -> None:
    """Log one step now (metrics + mask), so a kill later loses nothing that finished."""
    run.metrics(step_metrics(step), step=step.step)
    run.flush()
    if step.weight_masks is not None:
        path = masks_dir / f"step_{step.step:03d}.safetensors"
        save_weight_masks(path, step.weight_masks, {"step": str(step.step), "sparsity": repr(step.sparsity)})
        run.artifact(path, "masks")


def _metric_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", name)
