"""A worker's storage that rides through a database server restart or a short outage (a network blip).

Every call a worker makes to a server storage (PostgreSQL, MySQL) that fails on a lost or refused connection is
retried with a bounded backoff: the first failure prints one line, the first success after it another, and a
server still unreachable storage_retry_s() seconds after the outage began raises QueueUnreachable, which the
worker turns into one line and exit code 2. The heartbeat thread never raises on a lost connection (a beat is
skipped, not the worker killed). After an outage a worker fails no stale trial for the grace period
(storage.grace_s()): every heartbeat is old once the server is back, and the other workers' threads need a beat
to refresh theirs (else a live worker's trial would be failed and run twice). SQLite is not wrapped: its lock
waits are its own (storage.SQLITE_TIMEOUT_S).
"""

from __future__ import annotations

import functools
import os
import threading
import time

import optuna
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from sqlalchemy import exc as sa_exc


def storage_retry_s() -> float:
    """How long a worker waits for an unreachable database (seconds): SUBNETS_STORAGE_RETRY_S where set, else 60;
    read when an Outage is made, not at import (a forked worker reads its own environment)."""
    return float(os.environ.get("SUBNETS_STORAGE_RETRY_S") or 60)


class QueueUnreachable(Exception):
    """The queue's database did not answer for storage_retry_s() seconds."""


def disconnect(e: BaseException | None) -> BaseException | None:
    """The connection error in `e`'s chain (a refused connection, a server gone mid-query), else None.
    Optuna wraps SQLAlchemy's errors in StorageInternalError ("... exceeding max length"), so the chain is read."""
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, (sa_exc.OperationalError, sa_exc.InterfaceError)) or (
            isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated
        ):
            return e
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


def unreachable(e: BaseException | None) -> QueueUnreachable | None:
    """The QueueUnreachable in `e`'s chain (Optuna may raise another error while handling it), else None."""
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, QueueUnreachable):
            return e
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


def first_line(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip().splitlines()
    return text[0].strip() if text else type(e).__name__


class Outage:
    """One process's view of the database: down since when, back since when; thread-safe (the heartbeat thread
    and the main thread share it), so one outage prints one line and one recovery another."""

    def __init__(self, echo=print, prefix: str = "", retry_s: float | None = None, grace_s: float = 20.0):
        self.echo, self.prefix, self.grace_s = echo, prefix, grace_s
        self.retry_s = retry_s if retry_s is not None else storage_retry_s()
        self.backoff_cap_s = 2.0
        self._lock = threading.Lock()
        self.since: float | None = None  # monotonic time of the first failure of the current outage
        self.back_at: float | None = None  # monotonic time of the first success after the last outage
        self.outages = 0

    def noticed(self, e: BaseException) -> float:
        """Record a failed call; returns the seconds left to retry (<= 0: give up)."""
        with self._lock:
            now = time.monotonic()
            if self.since is None:
                self.since, self.outages = now, self.outages + 1
                self.echo(
                    f"{self.prefix}the queue storage is unreachable ({first_line(e)}): "
                    f"retrying for up to {self.retry_s:.0f} s"
                )
            return self.since + self.retry_s - now

    def ok(self) -> None:
        if self.since is None:  # the usual case: no lock taken
            return
        with self._lock:
            if self.since is not None:
                now = time.monotonic()
                self.echo(f"{self.prefix}the queue storage is back after {now - self.since:.0f} s")
                self.since, self.back_at = None, now

    def quiet(self) -> bool:
        """Down now, or back for less than the grace period: other workers' heartbeats may not be fresh yet."""
        return self.since is not None or (self.back_at is not None and time.monotonic() - self.back_at < self.grace_s)

    def call(self, fn, *args, **kwargs):
        delay = 0.25
        while True:
            try:
                result = fn(*args, **kwargs)
            except Exception as e:
                cause = disconnect(e)
                if cause is None:
                    raise
                left = self.noticed(cause)
                if left <= 0:
                    raise QueueUnreachable(
                        f"{self.prefix}the queue storage is still unreachable after {self.retry_s:.0f} s "
                        f"({first_line(cause)}): this worker stops; its trial is retried once the database is "
                        "back (run the same command again)"
                    ) from None
                time.sleep(min(delay, left))
                delay = min(delay * 2, self.backoff_cap_s)
                continue
            self.ok()
            return result


# the RDBStorage methods Optuna's cached storage and our worker call, each a session on the database
RETRIED = (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_all_studies",
    "_create_new_trial",
    "_set_trial_param",
    "get_trial_id_from_study_id_trial_number",
    "_get_best_trial_id",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial",
    "_get_trials",
)


class RetryingRDBStorage(RDBStorage):
    """An RDBStorage whose calls ride through an outage (see the module's docstring)."""

    def __init__(self, *args, outage: Outage, **kwargs):
        self.outage = outage
        super().__init__(*args, **kwargs)

    def set_trial_state_values(self, trial_id, state, values=None) -> bool:
        tries = [0]

        def once():
            tries[0] += 1
            try:
                claimed = RDBStorage.set_trial_state_values(self, trial_id, state, values)
            except optuna.exceptions.UpdateFinishedTrialError:
                # a retried write whose first try committed before the connection broke: already done
                if tries[0] > 1 and state.is_finished():
                    now = RDBStorage.get_trial(self, trial_id)
                    if now.state == state and (values is None or list(now.values or []) == list(values)):
                        return True
                raise
            if state == TrialState.RUNNING and not claimed and tries[0] > 1:
                # A retried claim that finds the trial taken: either another worker took it, or our first try
                # committed before the connection broke and nobody will run it. Optuna fails only trials with a
                # stale heartbeat, and such an orphan has none, so it would stay RUNNING for good. One beat on
                # its behalf makes it stale after the grace period unless a live worker keeps beating for it.
                RDBStorage.record_heartbeat(self, trial_id)
            return claimed

        return self.outage.call(once)

    def record_heartbeat(self, trial_id: int) -> None:
        """Optuna's heartbeat thread dies on the first error it sees (with a traceback) and the trial then looks
        dead to the other workers: a lost connection skips this beat instead."""
        try:
            RDBStorage.record_heartbeat(self, trial_id)
        except Exception as e:
            cause = disconnect(e)
            if cause is None:
                raise
            self.outage.noticed(cause)
            return
        self.outage.ok()

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        if self.outage.quiet():
            return []
        return self.outage.call(RDBStorage._get_stale_trial_ids, self, study_id)


def _retried(name: str):
    method = getattr(RDBStorage, name)

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        return self.outage.call(method, self, *args, **kwargs)

    return call


for _name in RETRIED:
    setattr(RetryingRDBStorage, _name, _retried(_name))


__all__ = ["Outage", "QueueUnreachable", "RetryingRDBStorage", "disconnect", "unreachable"]
