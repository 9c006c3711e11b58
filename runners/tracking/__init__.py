"""Tracking: the MLflow store (created once, batched logging), run owners (status is read through registry.runindex),
provenance (git SHA, versions) and progress. The Parquet writer is runners.tracking.tables (pyarrow)."""

from runners.tracking.progress import Progress
from runners.tracking.store import RunLog, Store

__all__ = ["Progress", "RunLog", "Store"]
