"""Execute one expanded run: fine-tune (or reuse), evaluate, prune step by step, log everything.

MLflow records: a parent run per expanded run (tags: fingerprint, group, method, seeds, device, git SHA,
versions; params: the resolved config), every pruning step as metric steps, each step's mask as a
safetensors artifact, and the tidy Parquet tables under `tables/` (registry.results) that the warehouse
reads. A run is FINISHED only after its tables are logged; a crash marks it FAILED, Ctrl-C marks it
KILLED, and `subnets run` redoes it.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import itertools
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from registry import tracking as tracked
from registry.methods import XAxis
from registry.schema import RunSpec
from registry.tracking import EXPERIMENT, FINGERPRINT, GROUP, KIND, METHOD, SEED, RunKind, RunStatus, StopReason
from runners.data import build_task
from runners.pruning.controls import build_controls, retrain, retrained_name
from runners.pruning.export import export_and_measure
from runners.pruning.recipe import PruneContext, PruneStep
from runners.pruning.recipes import RECIPES
from runners.run.context import RunContext
from runners.run.resume import Resumed, fetch_state, find_resumable
from runners.run.resume import load as load_resumed
from runners.run.rundata import RunData
from runners.run.scratch import run_scratch
from runners.run.steplog import StepLogger
from runners.tracking import provenance
from runners.tracking.progress import Progress, release_interrupted
from runners.tracking.store import Store, flatten
from runners.tracking.tables import axis_rows, step_rows, write_table
from runners.training import EvalResult, get_finetuned, pad_id, precision, pretrained, resolve_device
from runners.training.device import describe
from runners.training.finetune import finetune
from runners.training.memory import bounded_heap
from runners.training.models import check_architecture

EXPORT_BATCHES = 4  # evaluation batches that check the exported logits (the first also times both models)


@dataclass
class RunOutcome:
    run_id: str
    fingerprint: str
    baseline: dict[str, EvalResult]
    selected: PruneStep
    steps: int
    seconds: float
    variants: list[PruneStep]
    stop_reason: StopReason | None = None
    pruned_steps: list[PruneStep] | None = None  # step 0 and the recipe's steps, in order
    data_digest: str = ""  # what data_digest(task) said


def execute(spec: RunSpec, store: Store, progress: Progress, context: RunContext | None = None) -> RunOutcome:
    """Run `spec` and log it, as a grid run (the default context) or as a search trial (`context`). A run
    stopped early by a callback (a search's) is marked KILLED (tag subnets.stopped_by = search), so its
    fingerprint is not taken for a finished run."""
    ctx = context or RunContext.grid_run(spec)
    device = resolve_device(spec.runtime)  # before anything is written: a missing GPU is a config error
    check_architecture(spec.model, spec.base_dir, export=spec.prune.params.export)  # and a model the gates cannot prune
    started = time.time()
    sha = provenance.git_sha(spec.base_dir)
    versions = provenance.versions()
    threads = torch.get_num_threads()
    machine = provenance.machine()
    tags = {
        KIND: RunKind.RUN.value,
        FINGERPRINT: spec.fingerprint,
        GROUP: spec.group,
        EXPERIMENT: spec.experiment,
        METHOD: spec.prune.method,
        SEED: str(spec.seed),
        tracked.PRUNE_SEED: str(spec.prune_seed),
        tracked.LABEL: spec.label(),
        tracked.GIT_SHA: sha,
        tracked.FINETUNE_FINGERPRINT: spec.finetune_fingerprint,
        tracked.DEVICE: describe(device),
        tracked.TORCH_THREADS: str(threads),
        tracked.MACHINE: machine,
        **{f"{tracked.VERSION_PREFIX}{k}": v for k, v in versions.items()},
        **spec.tags,
        **ctx.tags,
    }
    with run_scratch() as tmp:  # killed runs' scratch folders on this host removed first
        resumed = _resumable(spec, store, sha, tmp) if ctx.resumable else None
        run = _open_run(spec, store, progress, tags, ctx, resumed)
        try:
            with precision(spec.runtime, device):
                config = spec.resolved_config()
                run.params(flatten({k: v for k, v in config.items() if k not in ("description", "tags")}))
                run.json_artifact(
                    "config.json",
                    {
                        **config,
                        "fingerprint": spec.fingerprint,
                        "group": spec.group,
                        "git_sha": sha,
                        "versions": versions,
                        "axes": spec.axes,
                        "device": str(device),
                        "torch_threads": threads,
                        "machine": machine,
                    },
                    tmp,
                )
                earlier = resumed.elapsed_s if resumed is not None else 0.0
                elapsed = lambda: earlier + time.time() - started  # noqa: E731
                outcome = _prune_and_log(
                    spec, store, run, progress, tmp, device, list(ctx.callbacks), sha, elapsed, resumed
                )
                ids = run_ids(spec, run.run_id)
                write_table(
                    tmp / "tables",
                    "runs",
                    [
                        dict(
                            ids,
                            label=spec.label(),
                            finetune_fingerprint=spec.finetune_fingerprint,
                            model=spec.model.name,
                            task=spec.task.name,
                            primary_metric=spec.primary_metric,
                            description=spec.description,
                            x_axis=spec.prune.params.x_axis.value,
                            config_json=json.dumps(config, sort_keys=True),
                            git_sha=sha,
                            device=str(device),
                            torch_threads=threads,
                            started_at=datetime.fromtimestamp(started, timezone.utc),
                            duration_s=elapsed(),
                            baseline_id_accuracy=outcome.baseline["id"].accuracy,
                            final_step=outcome.selected.step,
                            final_sparsity=outcome.selected.sparsity,
                            stop_reason=outcome.stop_reason.value,
                            keep_rule=ctx.keep_rule.kind.value,
                            keep_threshold=float(ctx.keep_rule.value),
                            study=ctx.study,
                            trial=ctx.trial,
                            data_digest=outcome.data_digest,
                        )
                    ],
                )
                axes = {**spec.axes, "seed": spec.seed, "prune_seed": spec.prune_seed}
                write_table(
                    tmp / "tables",
                    "axes",
                    axis_rows({k: ids[k] for k in ("experiment", "run_id", "fingerprint", "group_id")}, axes),
                )
                run.artifact(tmp / "tables", "tables")
            if outcome.stop_reason is StopReason.CALLBACK:
                run.tags({tracked.STOPPED_BY: tracked.STOPPED_BY_SEARCH})
                run.finish(RunStatus.KILLED)
            else:
                run.finish(RunStatus.FINISHED)
        except KeyboardInterrupt as stop:
            release_interrupted(stop)
            _mark(run, RunStatus.KILLED)
            raise
        except BaseException:
            _mark(run, RunStatus.FAILED)
            raise
    outcome.seconds = time.time() - started
    return outcome


def _open_run(spec: RunSpec, store: Store, progress: Progress, tags: dict, ctx: RunContext, resumed: Resumed | None):
    """The killed run being resumed, reopened; else a new run, named by what tells it from its siblings (under
    the context's parent run, a sweep's, when it has one)."""
    if resumed is None:
        return store.start_run(store.experiment_id(spec.experiment), ctx.run_name(spec), tags, parent=ctx.parent_run_id)
    progress.log(
        f"resuming run {resumed.run_id[:8]} after step {resumed.steps[-1].step}: {len(resumed.steps) - 1} "
        f"pruning step(s) and {len(resumed.variants)} variant(s) reused "
        f"({resumed.elapsed_s:.0f} s of earlier work)"
    )
    return store.reopen(
        resumed.run_id, resumed.artifact_uri, {**tags, tracked.RESUMED_AFTER_STEP: str(resumed.steps[-1].step)}
    )


def _mark(run, status: str) -> None:
    """End a run that stopped early; if even that fails (a full disk, a server gone), the run stays RUNNING
    and the next command marks it, its process being gone; the original error is the one to report."""
    try:
        run.finish(status)
    except Exception as e:  # noqa: BLE001
        logging.getLogger(__name__).warning("could not mark run %s %s: %s", run.run_id, status, str(e).splitlines()[0])


def data_digest(task) -> str:
    """A hash of every example the run trains and evaluates on (texts, labels, subcases, in order, per set):
    two runs with one digest saw the same data, whatever files or hub revisions it came from."""
    h = hashlib.sha256()
    for name, examples in [("train", task.train), *((s.name, s.examples) for s in task.eval_sets)]:
        h.update(f"\x1e{name}\x1f{len(examples)}".encode())
        for ex in examples:
            h.update(json.dumps([ex.text_a, ex.text_b, ex.label, ex.subcase], ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def run_ids(spec: RunSpec, run_id: str) -> dict:
    """The columns that identify a run in every table."""
    return dict(
        experiment=spec.experiment,
        run_id=run_id,
        fingerprint=spec.fingerprint,
        group_id=spec.group,
        seed=spec.seed,
        prune_seed=spec.prune_seed,
        method=spec.prune.method,
    )


def step_x(axis: XAxis, step: PruneStep) -> float:
    """The declared x of a step: its number (iterative), or its strength / target (0 for the full model)."""
    if axis is XAxis.STEP or step.step == 0:
        return float(step.step)
    return float(step.strength)


def _resumable(spec: RunSpec, store: Store, sha: str, tmp: Path) -> Resumed | None:
    """The finished steps of this fingerprint's killed run, if it has some this code can continue."""
    found = find_resumable(store, spec.experiment, spec.fingerprint)
    if found is None:
        return None
    try:
        return load_resumed(store, found, sha, tmp)
    except Exception as e:  # noqa: BLE001 - unreadable records or masks: start over rather than fail forever
        logging.getLogger(__name__).warning("cannot resume run %s (%s); starting it again", found.run_id, e)
        return None


def _prune_and_log(
    spec: RunSpec,
    store: Store,
    run,
    progress: Progress,
    tmp: Path,
    device: torch.device,
    callbacks: list,
    sha: str,
    elapsed,
    resumed: Resumed | None,
) -> RunOutcome:
    recipe = RECIPES.get(spec.prune.method)
    task = build_task(spec.task, spec.base_dir)
    cache = store.root / ".subnets"
    digest = data_digest(task)
    ft = get_finetuned(spec, task, cache, progress, device)
    run.tags(
        {
            tracked.FINETUNE_CACHE: "hit" if ft.cached else "miss",
            tracked.DATA_DIGEST: digest,
            **({tracked.MODEL_REVISION: ft.record["model_revision"]} if ft.record.get("model_revision") else {}),
        }
    )
    run.metrics({tracked.FINETUNE_SECONDS: ft.record["seconds"]}, step=0)
    for step, loss in ft.record["loss"]:
        run.metrics({tracked.FINETUNE_LOSS: loss}, step=step)
    for row in ft.record["epochs"]:
        run.metrics(
            {tracked.finetune_metric(k, spec.primary_metric): v for k, v in row.items() if k != "epoch"},
            step=row["epoch"],
        )

    model = ft.model
    # a recipe that declares it (L0) maps its large blocks from the fine-tuned model's evaluation to its last step;
    # fine-tuning, the variants and the other methods keep glibc's (cheaper) heap (runners/training/memory.py)
    with bounded_heap() if recipe.bounded_heap else contextlib.nullcontext():
        data = RunData(spec, task, ft.tokenizer, pad_id(ft.tokenizer))
        baseline = data.evaluate(model)  # also the CKA baseline's side, so a resumed run computes it again
        ids = run_ids(spec, run.run_id)
        logger = StepLogger(run, ids, tmp, spec.cka, sha, elapsed)
        if resumed is None:
            done = [PruneStep(0, 0.0, baseline, True)]
            logger(done[0])
        else:
            done = list(resumed.steps)  # their records' rows, their metrics and masks are logged already
            logger.units, logger.cka_rows = list(resumed.units), list(resumed.cka)
            if data.cka is not None:
                data.cka.calls = done[-1].step  # CKA compares every `every`-th step, counted from step 1
        ctx = PruneContext(
            model=model,
            evaluate=lambda: data.evaluate(model),
            baseline=baseline,
            progress=progress,
            seed=spec.prune_seed,
            train_batches=data.train_batches,
            unit_means=lambda: data.unit_means(model, cache / "means"),
            teacher=lambda: data.teacher(model, cache / "teacher", progress),
        )
        for callback in callbacks:  # a search's callbacks see every step, the reused ones too
            callback(done[0])
        result = recipe.execute(ctx, spec.prune.params, done=done, callbacks=[logger, *callbacks])
    selected = result.kept
    if resumed is not None:
        selected = fetch_state(store, resumed, selected)  # a reused kept step: its mask from its file
    run.metrics({tracked.SELECTED_STEP: selected.step, tracked.SELECTED_SPARSITY: selected.sparsity}, step=0)
    run.tags({tracked.STOP_REASON: result.stop_reason.value})
    reuse = resumed.variants if resumed is not None else {}
    stopped = result.stop_reason is StopReason.CALLBACK  # a search's hopeless trial: no variants, no export
    variants = [] if stopped else _variants(spec, selected, task, data, cache, progress, device, reuse)
    for v in variants:
        if v.variant not in reuse:
            logger(v)
    logger.summarise(selected, variants)
    if spec.prune.params.export and selected.gates is not None and not stopped:
        # gate methods leave the weights alone, so `model` is still the fine-tuned model; export and
        # latency are measured on CPU, where the exported model is meant to serve
        id_set = next(s for s in data.sets if s.eval_set.kind == "id")
        sample = list(itertools.islice(id_set.batches(spec.finetune.eval_batch_size, data.pad), EXPORT_BATCHES))
        cpu_model = model if device.type == "cpu" else copy.deepcopy(model).cpu()
        gates = selected.gates.to("cpu") if device.type != "cpu" else selected.gates
        figures = export_and_measure(cpu_model, gates, ft.tokenizer, tmp / "export", sample)
        run.metrics(figures, step=selected.step)
        run.artifact(tmp / "export", "export")
    axis = spec.prune.params.x_axis
    steps = [*result.steps, *variants]
    rows = [
        r for s in steps for r in step_rows(ids, s, step_x(axis, s), s.step == selected.step or s.variant != "pruned")
    ]
    write_table(tmp / "tables", "steps", rows)
    write_table(tmp / "tables", "units", logger.units)
    write_table(tmp / "tables", "cka", logger.cka_rows)
    return RunOutcome(
        run.run_id,
        spec.fingerprint,
        baseline,
        selected,
        len(result.steps) - 1,
        0.0,
        variants,
        result.stop_reason,
        result.steps,
        digest,
    )


def _variants(
    spec: RunSpec,
    selected: PruneStep,
    task,
    data: RunData,
    cache: Path,
    progress: Progress,
    device: torch.device,
    reuse: dict[str, PruneStep],
) -> list[PruneStep]:
    """Controls (random, bad) of the kept subnetwork, and re-fine-tuned versions when `retrain` is set;
    the ones a killed attempt finished (`reuse`, by variant name) are taken as they are."""
    params = spec.prune.params
    if selected.step == 0 or not (params.controls or params.retrain):
        return []

    def load_ft():  # fresh fine-tuned weights from the cache
        return get_finetuned(spec, task, cache, Progress(enabled=False), device).model

    def evaluate_variant(m):
        return data.evaluate(m, variant=True)

    out = build_controls(selected, list(params.controls), spec.prune_seed, load_ft, evaluate_variant, done=reuse)
    if params.retrain:

        def load_pretrained():
            return pretrained(spec, task, device)[1]

        def refinetune(model, after_step):
            finetune(
                model,
                data.train_rows,
                spec.finetune,
                spec.seed,
                data.pad,
                progress,
                after_step=after_step,
                label="re-fine-tuning",
            )

        out += [
            reuse.get(retrained_name(s)) or retrain(s, load_pretrained, refinetune, evaluate_variant)
            for s in [selected, *out]
        ]
    return out
