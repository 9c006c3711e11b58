"""Rich progress bars for long steps; a quiet variant for tests and non-interactive use."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress


class Progress:
    """`with progress.task("label", total) as advance: advance(1, "note")`."""

    def __init__(self, console: Console | None = None, enabled: bool = True):
        self.console = console or Console(stderr=True)
        self.enabled = enabled

    @contextmanager
    def task(self, label: str, total: int) -> Iterator[Callable[[int, str], None]]:
        if not self.enabled:
            yield lambda n=1, note="": None
            return
        with RichProgress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("{task.fields[note]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                          console=self.console, transient=False) as bar:
            tid = bar.add_task(label, total=total, note="")
            yield lambda n=1, note="": bar.update(tid, advance=n, note=note)

    def log(self, message: str) -> None:
        if self.enabled:
            self.console.print(message)
