"""The work queue and the search: Optuna studies in one storage (local SQLite or PostgreSQL) that any
number of workers, on one machine or many, share; grids are enqueued trials, searches sampled ones."""
from runners.queue.local import spawn, threads_per_worker
from runners.queue.samplers import BisectionSampler
from runners.queue.storage import default_url, open_storage, redact
from runners.queue.work import Prepared, Worker, finish_sweeps, grid_study, prepare_grid, prepare_search, search_study, study_names, summarise

__all__ = ["spawn", "threads_per_worker", "BisectionSampler", "default_url", "open_storage", "redact", "Prepared",
           "Worker", "finish_sweeps", "grid_study", "prepare_grid", "prepare_search", "search_study", "study_names", "summarise"]
