"""validate and plan: the experiments file checked and expanded, without torch, MLflow or DuckDB."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from registry.cli.common import (
    FileOpt,
    Format,
    FormatOpt,
    StoreOpt,
    app,
    emit,
    fail,
    load,
    out,
    print_studies,
    queue_summaries,
)


@app.command()
def validate(
    file: Path = FileOpt,
    explain: bool = typer.Option(False, "--explain", help="Print every experiments.toml key with its description."),
    markdown: bool = typer.Option(False, "--markdown", help="With --explain: print a Markdown table."),
):
    """Check experiments.toml; report every problem at once (exit code 2 on any)."""
    if explain:
        from registry.explain import markdown as md
        from registry.explain import rows

        if markdown:
            out.print(md(), markup=False, highlight=False, soft_wrap=True)
            return
        table = Table("table", "key", "default", "description", show_lines=False)
        for row in rows():
            table.add_row(*row)
        out.print(table)
        return
    runs = load(file)
    names = list(dict.fromkeys(r.experiment for r in runs))
    out.print(f"{file}: OK — {len(names)} experiment(s), {len(runs)} run(s)")
    from registry.datafiles import overlapping_rows
    from registry.models import unknown_hub_id_note

    notes = {(r.experiment, note) for r in runs if (note := unknown_hub_id_note(r.model, r.base_dir))}
    for experiment, note in sorted(notes):
        out.print(
            f"note: experiment {experiment!r}, key model.name: {note}", markup=False, highlight=False, soft_wrap=True
        )
    overlaps = {(r.experiment, line) for r in runs for line in overlapping_rows(r.task, r.base_dir)}
    for experiment, line in sorted(overlaps):
        out.print(f"warning: experiment {experiment!r}: {line}", markup=False, highlight=False, soft_wrap=True)


@app.command()
def plan(
    experiment: Optional[str] = typer.Argument(None, help="Only this experiment."),
    file: Path = FileOpt,
    store: Path = StoreOpt,
    storage: Optional[str] = typer.Option(
        None, "--storage", envvar="SUBNETS_STORAGE", help="Optuna storage URL (default: sqlite under --store)."
    ),
    tracking_uri: Optional[str] = typer.Option(
        None, "--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking URI."
    ),
    fmt: Format = FormatOpt,
):
    """Print the expanded runs, the fine-tuned model each uses, their fingerprints and what is done; and
    the queue's studies (grids and searches) with their trials."""
    from registry.tracking import RunState
    from runners.tracking import Store
    from runners.tracking.store import StoreUnavailable

    runs = load(file, experiment)
    st = Store.at(store, tracking_uri)
    try:
        status = {name: st.run_status(name) for name in dict.fromkeys(r.experiment for r in runs)}
    except StoreUnavailable as e:
        raise fail(f"store: {e}")
    if fmt is not Format.table:
        rows = [
            {
                "experiment": r.experiment,
                "method": r.prune.method,
                "run": r.label(),
                "axes": dict(r.axes),
                "seed": r.seed,
                "prune_seed": r.prune_seed,
                "finetune_fingerprint": r.finetune_fingerprint,
                "status": (status[r.experiment].get(r.fingerprint) or "TO_RUN").lower(),
                "fingerprint": r.fingerprint,
            }
            for r in runs
        ]
        studies = [q.as_dict() for q in _queue_summaries(runs, st.root, storage)]
        emit(rows, fmt, {"runs": rows, "studies": studies})
        return
    table = Table("experiment", "method", "run", "fine-tuned model", "status")
    table.add_column("fingerprint", no_wrap=True, min_width=16)
    for r in runs:
        s = status[r.experiment].get(r.fingerprint)
        shown = (
            "[green]done[/]"
            if s is RunState.FINISHED
            else "to run"
            if s is None
            else "[yellow]process gone (will rerun)[/]"
            if s is RunState.GONE
            else f"[yellow]{s.lower()} (will rerun)[/]"
        )
        table.add_row(r.experiment, r.prune.method, r.label(), r.finetune_fingerprint[:8], shown, r.fingerprint)
    out.print(table)
    done = sum(status[r.experiment].get(r.fingerprint) is RunState.FINISHED for r in runs)
    models = len({r.finetune_fingerprint for r in runs})
    out.print(f"{len(runs)} run(s) on {models} fine-tuned model(s): {done} done, {len(runs) - done} to run")
    _plan_queue(runs, st.root, storage)


def _queue_summaries(runs, root: Path, storage: str | None) -> list:
    """The summaries of these runs' studies, [] while the store has no queue."""
    url = storage or f"sqlite:///{Path(root).resolve() / 'optuna.db'}"
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return []
    from runners.queue import study_names

    return queue_summaries(url, study_names(runs))


def _plan_queue(runs, root: Path, storage: str | None) -> None:
    """The studies of these runs in the queue's storage, when it exists (a fresh store has none)."""
    searched = [r for r in runs if r.search is not None]
    url = storage or f"sqlite:///{Path(root).resolve() / 'optuna.db'}"
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        if searched:
            out.print(f"{len(searched)} search(es) declared, none started: `subnets sweep EXPERIMENT`")
        return
    from runners.queue import redact, study_names

    summaries = queue_summaries(url, study_names(runs))
    out.print(f"queue: {redact(url)}")
    if summaries:
        print_studies(summaries)
