"""Resume a killed run after its last logged step instead of redoing it.

Every step a run logs leaves its mask file (the recipe's state) and, written last, its record (the format
is records.py's). The record is the commit point: a step with a record is finished, one without is redone.

A rerun of a fingerprint whose newest parent run was KILLED or FAILED (a killed process's run is marked
KILLED by `Store.reap`) reopens that MLflow run, rebuilds the finished steps from their records, hands the
recipe the last one with its state (`Recipe.execute(done=...)`) and logs only what follows. The finished
run's tables equal an uninterrupted run's: rows of finished steps come from their records verbatim.
Search trials are not resumed (a trial's run belongs to its trial number).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow.artifacts

from registry.runindex import RunRecord
from registry.tracking import STOPPED_BY, STUDY, RunStatus
from runners.pruning.masks import load_step
from runners.pruning.recipe import PruneStep
from runners.run.records import PARTIAL, artifact_name, read_records, step_of

RESUMABLE_STATUSES = (RunStatus.KILLED, RunStatus.FAILED)


@dataclass
class Resumed:
    """The finished part of a killed run, ready to continue."""

    run_id: str
    artifact_uri: str
    steps: list[PruneStep]  # step 0 and the recipe's finished steps, in order; the last one carries its state
    variants: dict[str, PruneStep]  # finished variants of the kept step, by variant name (state loaded)
    units: list[dict] = field(default_factory=list)  # their unit rows and CKA rows, as logged
    cka: list[dict] = field(default_factory=list)
    elapsed_s: float = 0.0  # wall time the earlier attempts spent on the finished steps
    masks_dir: Path | None = None


def find_resumable(store, experiment: str, fingerprint: str) -> RunRecord | None:
    """The newest parent run of `fingerprint` that a kill or crash ended, if it is the newest of all (a
    FINISHED or live run of the fingerprint wins) and was not stopped on purpose by a search."""
    for run in store.index.parent_runs(experiment, fingerprint):  # newest first
        if run.status.value not in RESUMABLE_STATUSES:
            return None
        if STUDY not in run.tags and STOPPED_BY not in run.tags:
            return run
    return None


def load(store, run: RunRecord, git_sha: str, workdir: Path) -> Resumed | None:
    """The finished steps of `run`, or None when it has none to reuse (killed before its first record) or
    they were computed by other code (another git commit: its steps might not match this code's)."""
    local = Path(tempfile.mkdtemp(prefix="resume-", dir=workdir))
    try:
        records_dir = _download(store, run.run_id, PARTIAL, local)
    except Exception:  # noqa: BLE001 - no records were logged: nothing to reuse
        shutil.rmtree(local, ignore_errors=True)
        return None
    records = read_records(records_dir)
    if not records or any(r["git_sha"] != git_sha for r in records):
        shutil.rmtree(local, ignore_errors=True)
        return None
    steps, variants = [], {}
    for r in records:
        step = step_of(r)
        (steps.append(step) if step.variant == "pruned" else variants.__setitem__(step.variant, step))
    steps.sort(key=lambda s: s.step)
    if not steps or steps[0].step != 0 or [s.step for s in steps] != list(range(len(steps))):
        shutil.rmtree(local, ignore_errors=True)
        return None
    by_order = sorted(records, key=lambda r: r["elapsed_s"])  # the order the steps finished in
    out = Resumed(
        run.run_id,
        run.artifact_uri,
        steps,
        variants,
        units=[u for r in by_order for u in r["units"]],
        cka=[c for r in by_order for c in r["cka"]],
        elapsed_s=max(r["elapsed_s"] for r in records),
        masks_dir=local / "masks",
    )
    out.masks_dir.mkdir(exist_ok=True)
    if len(steps) > 1:
        steps[-1] = fetch_state(store, out, steps[-1])
    out.variants = {k: fetch_state(store, out, v) for k, v in variants.items()}
    return out


def fetch_state(store, resumed: Resumed, step: PruneStep) -> PruneStep:
    """`step` (a finished step of the resumed run) with its masks or gates, read from its mask file
    (downloaded first if it is not here yet)."""
    if step.step == 0 or step.weight_masks is not None or step.gates is not None:
        return step
    path = resumed.masks_dir / f"{artifact_name(step)}.safetensors"
    if not path.exists():
        got = _download(store, resumed.run_id, f"masks/{path.name}", resumed.masks_dir)
        if got != path:
            shutil.move(got, path)
    loaded = load_step(path)
    return dataclasses.replace(step, weight_masks=loaded.weight_masks, gates=loaded.gates, scores=loaded.scores)


def _download(store, run_id: str, artifact_path: str, dst: Path) -> Path:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # our own progress says what happens
    return Path(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=artifact_path, dst_path=str(dst), tracking_uri=store.tracking_uri
        )
    )
