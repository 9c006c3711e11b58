"""How one expanded run is executed: as a run of a grid or as a trial of a search.

`execute()` takes a `RunContext` and reads its fields; it never asks which of the two it runs. The
differences live here: a search trial carries its study and trial number (tags and table columns), is
logged under its sweep's parent run, is judged by the search's keep rule, hands every step to the
search's callbacks (intermediate values, early stopping) and is never resumed (a trial's run belongs to
its trial number). A grid run is resumable and judged by its method's own keep rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from registry.keeprule import KeepRule
from registry.schema import RunSpec
from registry.studyname import StudyName
from registry.tracking import STUDY, TRIAL
from runners.pruning.recipe import StepCallback


@dataclass(frozen=True)
class RunContext:
    keep_rule: KeepRule  # what the run's subnetworks are judged by (the runs table's keep_rule, keep_threshold)
    resumable: bool = True  # a killed run of the fingerprint continues after its last logged step
    parent_run_id: str | None = None  # the MLflow run this one is logged under (a sweep's)
    tags: Mapping[str, str] = field(default_factory=dict)  # tags besides the run's own
    study: str | None = None  # the runs table's study and trial columns
    trial: int | None = None
    callbacks: tuple[StepCallback, ...] = ()  # see every step, reused ones too
    values: Mapping[str, Any] = field(default_factory=dict)  # a trial's sampled parameters

    def run_name(self, spec: RunSpec) -> str:
        """The MLflow run's name, as the report labels runs: the method, then what tells the run from its siblings
        (a trial's sampled values, the grid's axis values, the seeds), e.g. `l0 · target=0.6 · seed=0`."""
        sampled = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.values.items()]
        return " · ".join([spec.prune.method, *sampled, *spec.label().split(", ")])

    @classmethod
    def grid_run(cls, spec: RunSpec) -> RunContext:
        return cls(spec.prune.params.keep_rule)

    @classmethod
    def search_trial(
        cls,
        study: StudyName,
        trial: int,
        keep_rule: KeepRule,
        parent_run_id: str | None = None,
        callbacks: tuple[StepCallback, ...] = (),
        values: Mapping[str, Any] | None = None,
    ) -> RunContext:
        name = study.format()
        return cls(
            keep_rule,
            resumable=False,
            parent_run_id=parent_run_id,
            tags={STUDY: name, TRIAL: str(trial)},
            study=name,
            trial=trial,
            callbacks=tuple(callbacks),
            values=dict(values or {}),
        )


__all__ = ["RunContext"]
