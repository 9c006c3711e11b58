"""The work queue and the search: Optuna studies in one storage (local SQLite or PostgreSQL) that any
number of workers, on one machine or many, share; grids are enqueued trials, searches sampled ones.

`prepare_grid` / `prepare_search` (coordinator.py) run once before workers start; `Worker` (worker.py)
pops trials; `summarise` / `finish_sweeps` (summaries.py) read the studies back. Study names are
registry.studyname's; a trial is measured by measure.py, its sampler built by samplers.py."""

from registry.studyname import StudyName, grid_study, search_study, study_names
from runners.queue.coordinator import Prepared, prepare_grid, prepare_search
from runners.queue.local import spawn, threads_per_worker
from runners.queue.samplers import BisectionSampler
from runners.queue.storage import default_url, open_storage, redact
from runners.queue.summaries import StudySummary, finish_sweeps, summarise
from runners.queue.worker import RunError, Worker

__all__ = [
    "spawn",
    "threads_per_worker",
    "BisectionSampler",
    "default_url",
    "open_storage",
    "redact",
    "Prepared",
    "RunError",
    "StudyName",
    "StudySummary",
    "Worker",
    "finish_sweeps",
    "grid_study",
    "prepare_grid",
    "prepare_search",
    "search_study",
    "study_names",
    "summarise",
]
