"""The work queue and the search: Optuna studies in one storage (local SQLite or PostgreSQL) that any
number of workers, on one machine or many, share; grids are enqueued trials, searches sampled ones.

`prepare_grid` / `prepare_search` (coordinator.py) run once before workers start; `Worker` (worker.py)
pops trials; `summarise` / `finish_sweeps` (summaries.py) read the studies back. Study names are
registry.studyname's; a trial is measured by measure.py, its sampler built by samplers.py.

Each name is imported from its module when first asked for (PEP 562): the coordinator of `subnets run --workers N`
enqueues, starts the workers and waits, and needs neither torch nor transformers (several seconds of CPU to import);
only the workers, which run the trials, load them."""

from __future__ import annotations

from runners.lazy_names import lazy_names

_HOME = {
    "StudyName": "registry.studyname",
    "grid_study": "registry.studyname",
    "search_study": "registry.studyname",
    "study_names": "registry.studyname",
    "Prepared": "runners.queue.coordinator",
    "prepare_grid": "runners.queue.coordinator",
    "prepare_search": "runners.queue.coordinator",
    "spawn": "runners.queue.local",
    "threads_per_worker": "runners.queue.local",
    "BisectionSampler": "runners.queue.samplers",
    "default_url": "runners.queue.storage",
    "open_storage": "runners.queue.storage",
    "redact": "runners.queue.storage",
    "StudySummary": "runners.queue.summaries",
    "finish_sweeps": "runners.queue.summaries",
    "summarise": "runners.queue.summaries",
    "RunError": "runners.queue.worker",
    "Worker": "runners.queue.worker",
}

__all__ = sorted(_HOME)

__getattr__, __dir__ = lazy_names(__name__, _HOME)
