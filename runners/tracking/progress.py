"""Progress of long steps: rich bars on a terminal; periodic plain lines when the output is a log file
(a worker under nohup or a scheduler), so a log shows where a run is before the step ends; or nothing."""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

PLAIN_EVERY_S = 30.0  # seconds between plain progress lines

# Stopping on Ctrl-C or SIGTERM. The handler raises KeyboardInterrupt where the program is, but Python drops an
# exception raised inside a destructor ("Exception ignored in ... __del__"), so every point of progress (each
# training batch, each pruning step) also checks the flag: the work stops there at the latest. A second signal
# while the run is marked KILLED is ignored so that bookkeeping finishes; a third abandons it.
_STOP = threading.Event()
_signals = 0


def request_stop(signum: int, _frame=None) -> None:
    """Signal handler for SIGINT and SIGTERM (see above)."""
    global _signals
    _signals += 1
    if _signals == 1:
        _STOP.set()
        raise KeyboardInterrupt
    if _signals >= 3:
        os._exit(128 + signum)


def install_stop_handlers() -> None:
    _STOP.clear()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)
    sys.unraisablehook = quiet_lost_stop


def quiet_lost_stop(unraisable) -> None:
    """sys.unraisablehook while the stop handlers are installed: the stop's KeyboardInterrupt that Python dropped
    because it was raised inside a destructor or a weakref callback (seen: SQLAlchemy's class registry, during a
    collection) prints nothing, where Python would print a traceback for it: the flag stops the work at the next
    point of progress. Anything else dropped there is printed as Python prints it."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _STOP.is_set():
        return
    sys.__unraisablehook__(unraisable)


def stop_finished() -> None:
    """The stop's bookkeeping is done and the process only exits from here. While Python shuts down it puts
    back the default action of every signal it handles, so a late second SIGTERM would kill the exiting
    process with that signal instead of the exit code the stop chose (seen: -15, not 130, for a second
    SIGTERM 20 ms after the first). Ignored signals stay ignored through shutdown."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def release_interrupted(stop: BaseException) -> None:
    """Let go of what the stop interrupted, before the stop's own writes (the run marked KILLED, the trial
    retried). The signal's KeyboardInterrupt can land inside a database write: seen, between two rows of MLflow's
    executemany of a metrics batch. SQLite holds that write's lock until the interrupted statement is finalized,
    and it is not while its cursor is referred to, which the traceback's frames do. Every later write of this
    process then waited out the busy timeout and failed ("database is locked"): all four runs of a stopped
    `run --workers 4` were left RUNNING. Clearing those frames' variables frees the cursor, which releases the
    lock. The frames are finished (the exception has left them); the traceback still says where it happened."""
    traceback.clear_frames(stop.__traceback__)
    gc.collect()  # a cursor held in a reference cycle


def check_stop() -> None:
    """Raise KeyboardInterrupt if a stop was asked for and the signal's own exception got lost."""
    if _STOP.is_set():
        raise KeyboardInterrupt


class Progress:
    """`with progress.task("label", total) as advance: advance(1, "note")`.

    `plain=None` decides by the console: bars on a terminal, lines otherwise. `prefix` names the worker."""

    def __init__(
        self,
        console: Console | None = None,
        enabled: bool = True,
        plain: bool | None = None,
        every_s: float = PLAIN_EVERY_S,
        prefix: str = "",
    ):
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self.plain = (not self.console.is_terminal) if plain is None else plain
        self.every_s, self.prefix = every_s, prefix
        self.context = ""  # what the lines are about now (the worker's experiment, run and trial), see `about`

    @contextmanager
    def about(self, what: str) -> Iterator[None]:
        """Lines printed in the block name `what` after the prefix: with several workers, every progress line
        says which experiment, run and trial it belongs to."""
        before, self.context = self.context, what
        try:
            yield
        finally:
            self.context = before

    @contextmanager
    def task(self, label: str, total: int) -> Iterator[Callable[[int, str], None]]:
        if not self.enabled:
            yield lambda n=1, note="": check_stop()
            return
        if self.plain:
            with self._lines(label, total) as advance:
                yield advance
            return
        with RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        ) as bar:
            tid = bar.add_task(label, total=total, note="")

            def advance(n: int = 1, note: str = "") -> None:
                check_stop()
                bar.update(tid, advance=n, note=note)

            yield advance

    @contextmanager
    def _lines(self, label: str, total: int) -> Iterator[Callable[[int, str], None]]:
        started = last = time.monotonic()
        state = {"done": 0, "note": ""}

        def line(final: bool = False) -> None:
            elapsed = time.monotonic() - started
            done = state["done"]
            eta = f", ~{elapsed / done * (total - done):.0f} s left" if done and not final and done < total else ""
            note = f" {state['note']}" if state["note"] else ""
            self._print(f"{label}: {done}/{total}{note} [{elapsed:.0f} s{eta}]")

        def advance(n: int = 1, note: str = "") -> None:
            nonlocal last
            check_stop()
            state["done"] += n
            state["note"] = note or state["note"]
            if time.monotonic() - last >= self.every_s:
                last = time.monotonic()
                line()

        self._print(f"{label}: started ({total} steps)")
        yield advance
        line(final=True)

    def _print(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.console.print(f"{stamp} {self.prefix}{self.context}{text}", markup=False, highlight=False, soft_wrap=True)

    def log(self, message: str) -> None:
        if self.enabled:
            if self.plain:
                self._print(message)
            else:
                self.console.print(message)
