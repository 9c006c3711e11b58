"""Optuna's study storage: the record of searches and the work queue for grids.

One machine: `sqlite:///<store>/optuna.db`, created once by the coordinating process before any worker
starts. Many machines: a PostgreSQL URL. Either way an RDB storage, so trials carry heartbeats: a worker
killed mid-trial stops beating, the next worker to ask for work marks that trial FAILED, and
RetryHeartbeatStaleTrialCallback puts a copy back in the queue.
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy import create_engine, event, text

from registry.files import sqlite_damage
from registry.tracking import redact  # also re-exported: runners.queue.redact
from runners.queue.outage import Outage, RetryingRDBStorage
from runners.tracking.store import create_sqlite_atomically, store_lock
from runners.tracking.templates import copy_template, template


def heartbeat_s() -> int:
    """How often a running trial records a heartbeat (seconds): SUBNETS_HEARTBEAT_S where set, else 5. Read when
    used, not at import: a worker forked from a process that imported this module reads its own environment."""
    return int(os.environ.get("SUBNETS_HEARTBEAT_S") or 5)


def grace_s() -> int:
    """A trial whose last heartbeat is older than this (seconds) belongs to a dead worker: SUBNETS_GRACE_S where
    set, else 20 (tests shorten both through the environment)."""
    return int(os.environ.get("SUBNETS_GRACE_S") or 20)


MAX_RETRY = 3  # a trial killed with its worker is retried at most this often
CREATE_ATTEMPTS = 4
SQLITE_TIMEOUT_S = 60  # writers wait for SQLite's lock instead of failing
CONNECT_TIMEOUT_S = 5  # a database server that does not answer a connection within this is unreachable


def default_url(store_root: Path) -> str:
    return f"sqlite:///{Path(store_root).resolve() / 'optuna.db'}"


class StorageUnusable(RuntimeError):
    """A queue database that cannot be used as it is: said in one line, and left as it was."""


class StorageDamaged(StorageUnusable):
    """A local queue database that does not read as SQLite."""


class StorageIncompatible(StorageUnusable):
    """A queue database whose tables another version of Optuna made."""


def check_reachable(url: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Connect to a server storage (PostgreSQL, MySQL) once and ask it one question, within seconds: a wrong URL or
    a server that does not answer fails here, before the store, the queue or a run exist. SQLite: nothing to ask
    (the coordinator creates it)."""
    if url.startswith("sqlite"):
        return
    engine = create_engine(url, connect_args=_connect_args(url, timeout_s), poolclass=None)
    try:
        with engine.connect() as con:
            con.execute(text("SELECT 1"))
    finally:
        engine.dispose()


def _connect_args(url: str, timeout_s: float) -> dict:
    """Driver options that bound how long a connection attempt waits."""
    if url.startswith("sqlite"):
        return {"timeout": SQLITE_TIMEOUT_S}
    if url.startswith("postgresql"):
        return {"connect_timeout": max(1, int(timeout_s))}
    return {}


def open_storage(url: str, create: bool = False, outage: Outage | None = None) -> RDBStorage:
    """The storage at `url`; only the coordinating process passes create=True (table creation). With `outage` (a
    worker's), a server storage rides through a restart or a short outage (runners/queue/outage.py)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed run is reported by us, without its traceback
    engine_kwargs = {"connect_args": _connect_args(url, CONNECT_TIMEOUT_S)}
    if not url.startswith("sqlite"):
        engine_kwargs["pool_pre_ping"] = True  # a connection the server dropped (a restart) is replaced, not used
    if url.startswith("sqlite:///") and (damage := sqlite_damage(Path(url.removeprefix("sqlite:///")))) is not None:
        raise StorageDamaged(
            f"the queue database {url.removeprefix('sqlite:///')} is damaged ({damage}): restore it "
            "from a backup or move it aside (nothing was written to it)"
        )
    if url.startswith("sqlite:///") and create:
        db = Path(url.removeprefix("sqlite:///"))
        with store_lock(db.parent):  # processes started at once on a fresh store: one creates it
            if not db.exists():
                create_sqlite_atomically(db, _new_optuna_db)
    retrying = outage is not None and not url.startswith("sqlite")
    beat_s, stale_s = heartbeat_s(), grace_s()
    if retrying:
        outage.grace_s = stale_s  # no stale trial is failed this long after an outage: heartbeats are refreshing
        outage.backoff_cap_s = max(0.25, min(2.0, beat_s / 2))  # back well within a heartbeat of the server
    for attempt in range(CREATE_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                make = functools.partial(RetryingRDBStorage, outage=outage) if retrying else RDBStorage
                storage = (outage.call if retrying else _direct)(
                    make,
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=beat_s,
                    grace_period=stale_s,
                    skip_table_creation=not create,
                    skip_compatibility_check=True,  # checked below, without loading Optuna's migration scripts
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
                )
            (outage.call if retrying else _direct)(_check_schema, storage, url)
            if url.startswith("sqlite"):
                _serialise_sqlite(storage.engine)
            return storage
        except StorageUnusable:  # tables another Optuna made: no second try makes them ours
            raise
        except Exception:
            # two coordinators (machines) creating the tables at the same moment: the loser's CREATE fails on
            # the winner's rows; once the winner is done the tables exist and a second try just opens them
            if not create or attempt == CREATE_ATTEMPTS - 1:
                raise
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")


def _optuna_tables(url: str) -> None:
    """Optuna's tables in a new SQLite database, the way Optuna makes them (its alembic stamp included)."""
    RDBStorage(url).engine.dispose()


def _new_optuna_db(url: str) -> None:
    """A new queue database at `url`: a copy of the empty one of this Optuna version (runners/tracking/templates)."""
    copy_template(Path(url.removeprefix("sqlite:///")), "optuna", _optuna_tables)


def _revision(url_or_engine) -> str | None:
    """The revision of Optuna's tables (alembic's version) in a database."""
    engine = create_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        with engine.connect() as con:
            return con.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        if engine is not url_or_engine:
            engine.dispose()


@functools.cache
def schema_head() -> str:
    """The revision of the tables this Optuna makes, read from its template database (made once per version).
    Optuna's own check loads its ~130 migration scripts for every storage it opens (~0.03-0.15 s each time)."""
    try:
        return _revision(f"sqlite:///{template('optuna', _optuna_tables)}")
    except OSError:  # no writable cache: a scratch database, once per process
        with tempfile.TemporaryDirectory() as scratch:
            _optuna_tables(f"sqlite:///{scratch}/optuna.db")
            return _revision(f"sqlite:///{scratch}/optuna.db")


def _check_schema(storage: RDBStorage, url: str) -> None:
    """The check Optuna makes on opening a storage (skip_compatibility_check=False), as one line: tables another
    Optuna made are refused before anything is read or written."""
    current = _revision(storage.engine)
    if current != schema_head():
        storage.engine.dispose()
        raise StorageIncompatible(
            f"the queue database {redact(url)} was made by another version of Optuna (its tables are at revision "
            f"{current}, Optuna {optuna.__version__} makes {schema_head()}): if it is older, upgrade it with "
            f"`optuna storage upgrade --storage {redact(url)}`; if it is newer, install the Optuna that made it"
        )


def _direct(fn, *args, **kwargs):
    return fn(*args, **kwargs)


def _serialise_sqlite(engine) -> None:
    """Make every SQLite transaction BEGIN IMMEDIATE, so two workers cannot pop the same waiting trial.

    Optuna claims a WAITING trial with SELECT ... FOR UPDATE then UPDATE. SQLite has no row locks, and
    Python's sqlite3 only opens a transaction at the first write, so two processes could both read WAITING
    and both set RUNNING: one trial run twice, the second tell failing on a COMPLETE trial (measured: 11 of
    100 trials popped twice by 4 processes). BEGIN IMMEDIATE takes the write lock before the read; the
    others wait up to SQLITE_TIMEOUT_S for it. This is SQLAlchemy's documented pysqlite recipe.
    """
    engine.dispose()  # connections opened while Optuna set up the storage predate the listeners

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # SQLAlchemy's BEGIN below, not the driver's, starts them

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
