"""The tracking contract: every name a run carries in MLflow (tags, metric keys, kinds, statuses), declared once
beside the results contract (registry/results.py). runners/ write runs with these names; the queue, resume and
reports/ read them back. Nothing else spells a `subnets.*` tag, a metric key or a run status.

Torch-free and MLflow-free: a name is a string MLflow stores, so this module imports neither.
"""

from __future__ import annotations

from enum import Enum
from urllib.parse import urlparse

# Tags of a parent run (kind "run"), a sweep run (kind "sweep") and a report run (kind "report").
KIND = "subnets.kind"  # a RunKind
FINGERPRINT = "subnets.fingerprint"  # hash of the resolved config: decides whether the run is done
GROUP = "subnets.group"  # the fingerprint without the seeds: the runs of one grid point share it
EXPERIMENT = "subnets.experiment"
METHOD = "subnets.method"
SEED = "subnets.seed"
PRUNE_SEED = "subnets.prune_seed"
LABEL = "subnets.label"  # the run's axis values and seeds, as a person reads them
OWNER = "subnets.owner"  # host:pid of the process that runs it
GIT_SHA = "subnets.git_sha"
FINETUNE_FINGERPRINT = "subnets.finetune_fingerprint"
DEVICE = "subnets.device"
TORCH_THREADS = "subnets.torch_threads"
MACHINE = "subnets.machine"  # architecture, usable cores and processor: "x86_64, 2 cores, AMD EPYC"
VERSION_PREFIX = "subnets.version."  # + package name: its installed version
STUDY = "subnets.study"  # a search trial's study, or a sweep's
TRIAL = "subnets.trial"  # a search trial's number
RESUMED_AFTER_STEP = "subnets.resumed_after_step"
STOPPED_BY = "subnets.stopped_by"  # "search": a trial its search stopped early (KILLED, never reused)
STOP_REASON = "subnets.stop_reason"  # a StopReason
FINETUNE_CACHE = "subnets.finetune_cache"  # hit or miss
DATA_DIGEST = "subnets.data_digest"
MODEL_REVISION = "subnets.model_revision"  # the commit a hub model id resolved to (none for other models)
ENDED_BY = "subnets.ended_by"  # why a run was ended by another process (its own had died)
BASE_FINGERPRINT = "subnets.base_fingerprint"  # a sweep's searched run
SAMPLER = "subnets.sampler"
OBJECTIVE = "subnets.objective"
BEST_PREFIX = "subnets.best."  # + parameter: a sweep's best value of it

STOPPED_BY_SEARCH = "search"


class Name(str, Enum):
    """A name stored as its string (enum.StrEnum, which Python 3.10 lacks): equal to it, printed as it, and
    written as it into tags, Parquet and SQL."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class RunKind(Name):
    """What a tagged MLflow run is: the warehouse counts kind "run" only."""

    RUN = "run"
    SWEEP = "sweep"
    REPORT = "report"


class RunStatus(Name):
    """MLflow's run statuses (subnets sets RUNNING, FINISHED, FAILED and KILLED; SCHEDULED is read, never set)."""

    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


class RunState(Name):
    """A fingerprint's state as `subnets plan` and the queue see it: the best status of its parent runs, GONE for
    a RUNNING run whose process on this host no longer exists (`Store.reap` then marks it KILLED). Ranked by
    RANK: a FINISHED run anywhere makes the fingerprint done."""

    FINISHED = "FINISHED"
    RUNNING = "RUNNING"
    GONE = "GONE"
    FAILED = "FAILED"
    KILLED = "KILLED"

    @property
    def rank(self) -> int:
        return {"FINISHED": 4, "RUNNING": 3, "GONE": 2}.get(self.value, 1)


class StopReason(Name):
    """Why a recipe's pruning ended (the `runs.stop_reason` column and the STOP_REASON tag)."""

    KEEP_RULE = "keep_rule"  # an iterative method's step failed the keep rule
    MAX_STEPS = "max_steps"
    DECLARED = "declared"  # the declared strengths or targets ran out
    EXHAUSTED = "exhausted"  # nothing was left to prune
    CALLBACK = "callback"  # a search stopped the trial early


# Metric keys of a parent run. Per-step curves are `step/<key>`; a variant's (a control, a re-fine-tuned
# subnetwork) are `variant.<name>.<key>`.
SELECTED_STEP = "selected.step"
SELECTED_SPARSITY = "selected.sparsity"
FINETUNE_SECONDS = "finetune.seconds"
FINETUNE_LOSS = "finetune.loss"
EFFECTIVE_SIZE = "effective_size"  # a sweep's best kept fraction
SWEEP_TRIALS_COMPLETE = "trials.complete"  # a sweep's trials by state, logged on its parent run
SWEEP_TRIALS_PRUNED = "trials.pruned"
SWEEP_TRIALS_FAILED = "trials.failed"
STEP_PREFIX = "step/"
STEP_SPARSITY = STEP_PREFIX + "sparsity"
STEP_UNIT_SPARSITY = STEP_PREFIX + "unit_sparsity"  # structured methods only


def step_metric_prefix(variant: str) -> str:
    """Where a step's metrics go: the recipe's own steps under step/, a variant's under variant.<name>."""
    return STEP_PREFIX if variant == "pruned" else f"variant.{variant}."


def id_metric(metric: str) -> str:
    """The per-step ID score on the task's metric, as `steplog` writes it."""
    return f"{STEP_PREFIX}id.{metric}"


def ood_metric(eval_set: str, metric: str) -> str:
    """The per-step score of one OOD set on the task's metric."""
    return f"{STEP_PREFIX}ood.{eval_set}.{metric}"


def finetune_metric(split: str, metric: str) -> str:
    """A fine-tuning epoch's score of one evaluation split."""
    return f"finetune.{split}.{metric}"


def redact(url: str) -> str:
    """A URL without its password (a tracking URI, a postgresql:// storage), for printing and for reports."""
    p = urlparse(url)
    if not p.password:
        return url
    host = p.hostname or ""
    if ":" in host:  # an IPv6 address goes back in brackets
        host = f"[{host}]"
    netloc = f"{p.username}:***@{host}" + (f":{p.port}" if p.port else "")
    return p._replace(netloc=netloc).geturl()
