"""What a worker prints when a run is done: its summary (full model, kept step, why it stopped, variants)
and the notes a reader must not miss."""

from __future__ import annotations

from registry.methods import XAxis
from registry.schema import RunSpec

MISSED_TARGET = 0.05  # an L0 target the gates' expected sparsity ended this far from is flagged (as in the report)


def run_notes(o, spec: RunSpec) -> list[str]:
    """What a reader of the summary must not miss: a keep rule that cannot judge anything (the full model
    scored <= 0 on its metric, e.g. MCC 0 of a model that predicts one class) and L0 targets missed."""
    notes = []
    full = o.baseline["id"]
    if full.score <= 0:
        notes.append(
            f"the full model's ID {full.primary} is {full.score:.3f}: it did not learn the task, so a "
            f"keep rule "
            f"relative to it passes every step; these subnetworks say nothing about what the task needs"
        )
    if spec.prune.params.x_axis is XAxis.TARGET:
        for s in o.pruned_steps or []:
            expected = s.extra.get("expected_sparsity_end")
            if (
                s.step > 0
                and s.strength is not None
                and expected is not None
                and abs(expected - s.strength) > MISSED_TARGET
            ):
                notes.append(
                    f"L0 target {s.strength:.2f}: the gates' expected unit sparsity ended at {expected:.3f}, "
                    f"more "
                    f"than {MISSED_TARGET} away; the mask was cut to the target anyway, so the schedule was too "
                    f"short (raise schedule_scale)"
                )
    return notes


def run_title(spec: RunSpec, trial: int | None = None) -> str:
    """How a worker's lines name a run: `[experiment] method · axis values · seeds · trial N`."""
    return f"[{spec.experiment}] " + " · ".join(
        [spec.prune.method, *spec.label().split(", "), *([f"trial {trial}"] if trial is not None else [])]
    )


def run_summary(o, spec: RunSpec | None = None, trial: int | None = None) -> str:
    """The lines printed for a finished run `o` (a RunOutcome) of `spec`, the queue's trial `trial`."""
    metric = o.baseline["id"].primary
    ood = ", ".join(f"{k} {v.score:.3f}" for k, v in o.selected.results.items() if k != "id")
    # named again: with several workers another run's start line may sit between this run's start and its end
    head = f"{run_title(spec, trial)}: done\n" if spec is not None else ""
    text = head + (
        f"  full model: ID {metric} {o.baseline['id'].score:.3f}; kept step {o.selected.step} of {o.steps} "
        f"(sparsity {o.selected.sparsity:.3f}): ID {o.selected.results['id'].score:.3f}"
        f"{'; ' + ood if ood else ''}\n  stopped: {o.stop_reason}  [{o.seconds:.0f} s, run {o.run_id}]"
    )
    for v in o.variants:
        vood = ", ".join(f"{k} {r.score:.3f}" for k, r in v.results.items() if k != "id")
        text += f"\n    {v.variant}: ID {v.results['id'].score:.3f}{'; ' + vood if vood else ''}"
    for note in run_notes(o, spec) if spec is not None else []:
        text += f"\n  note: {note}"
    return text


__all__ = ["MISSED_TARGET", "run_notes", "run_summary", "run_title"]
