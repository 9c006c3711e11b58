"""status and dashboard: what the queue holds."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from registry.cli.common import (
    FileOpt,
    Format,
    FormatOpt,
    StorageOpt,
    StoreOpt,
    app,
    emit,
    fail,
    load,
    print_studies,
    queue_summaries,
)


@app.command()
def status(
    experiment: Optional[str] = typer.Argument(None, help="Only this experiment."),
    file: Path = FileOpt,
    store: Path = StoreOpt,
    storage: Optional[str] = StorageOpt,
    fmt: Format = FormatOpt,
):
    """What the queue holds: per study, trials by state, what each worker is running, what is left and when it
    should be done (the remaining trials x the mean trial time so far, shared by the running workers)."""
    from runners.queue import default_url, study_names

    runs = load(file, experiment)
    url = storage or default_url(store)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise fail(f"no queue at {url}: nothing has been run or swept with this store yet", 1)
    summaries = queue_summaries(url, study_names(runs))
    if fmt is Format.table:
        print_studies(summaries)
    else:
        emit([s.as_dict() for s in summaries], fmt)


@app.command()
def dashboard(
    store: Path = StoreOpt,
    storage: Optional[str] = StorageOpt,
    port: int = typer.Option(8080, help="Port on 127.0.0.1."),
):
    """Open optuna-dashboard on the study storage, bound to 127.0.0.1."""
    from runners.queue.storage import default_url

    url = storage or default_url(store)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise fail(f"no study storage at {url}: run `subnets run` or `subnets sweep` first", 1)
    # exec, single-process server: the dashboard is this process, so stopping it (even by SIGKILL) leaves
    # nothing serving (gunicorn, which it would pick when installed, forks workers that outlive a killed master)
    os.execvp(
        sys.executable,
        [
            sys.executable,
            "-c",
            "from optuna_dashboard._cli import main; main()",
            url,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--server",
            "wsgiref",
        ],
    )
