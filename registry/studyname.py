"""The names of the queue's Optuna studies: what a study is (a grid or a search) and what it belongs to.

A study's name is its identity in the storage, so its format is a stored contract, parsed and formatted
here only:
- `subnets/<experiment>/grid`: the work queue of an experiment's expanded runs (one trial per run);
- `subnets/<experiment>/search/<fingerprint>`: the search over the expanded run with that fingerprint.
Experiment names are slugs (no `/`) and fingerprints hex, so a name splits unambiguously.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Protocol

from registry.tracking import Name

PREFIX = "subnets"


class StudyKind(Name):
    GRID = "grid"
    SEARCH = "search"


class _Run(Protocol):  # a RunSpec, as far as a study name needs it
    experiment: str
    fingerprint: str
    search: object | None


@dataclass(frozen=True)
class StudyName:
    experiment: str
    kind: StudyKind
    fingerprint: str | None = None  # the searched run's (searches only)

    @classmethod
    def grid(cls, experiment: str) -> StudyName:
        return cls(experiment, StudyKind.GRID)

    @classmethod
    def search(cls, experiment: str, fingerprint: str) -> StudyName:
        return cls(experiment, StudyKind.SEARCH, fingerprint)

    @classmethod
    def of_search(cls, base: _Run) -> StudyName:
        """The study that searches the expanded run `base`."""
        return cls.search(base.experiment, base.fingerprint)

    @classmethod
    def parse(cls, text: str) -> StudyName:
        parts = text.split("/")
        if len(parts) == 3 and parts[0] == PREFIX and parts[1] and parts[2] == StudyKind.GRID:
            return cls.grid(parts[1])
        if len(parts) == 4 and parts[0] == PREFIX and parts[1] and parts[2] == StudyKind.SEARCH and parts[3]:
            return cls.search(parts[1], parts[3])
        raise ValueError(
            f"not a subnets study name: {text!r} (expected {PREFIX}/<experiment>/grid or "
            f"{PREFIX}/<experiment>/search/<fingerprint>)"
        )

    def format(self) -> str:
        """The name as it is stored."""
        if self.kind is StudyKind.GRID:
            return f"{PREFIX}/{self.experiment}/grid"
        return f"{PREFIX}/{self.experiment}/search/{self.fingerprint}"

    def __str__(self) -> str:
        return self.format()

    def short(self) -> str:
        """As the CLI shows it: without the prefix, a search's fingerprint cut to 8 characters."""
        if self.kind is StudyKind.GRID:
            return f"{self.experiment}/grid"
        return f"{self.experiment}/search/{self.fingerprint[:8]}"

    @property
    def is_grid(self) -> bool:
        return self.kind is StudyKind.GRID


def study_names(runs: Iterable[_Run], grids: bool = True, searches: bool = True) -> list[StudyName]:
    """The studies these runs live in: one grid study per experiment, one search study per searched run."""
    runs = list(runs)
    names = [StudyName.grid(e) for e in dict.fromkeys(r.experiment for r in runs)] if grids else []
    return names + ([StudyName.of_search(r) for r in runs if r.search is not None] if searches else [])


def grid_study(experiment: str) -> str:
    """The stored name of an experiment's grid study."""
    return StudyName.grid(experiment).format()


def search_study(base: _Run) -> str:
    """The stored name of the study that searches `base`."""
    return StudyName.of_search(base).format()


__all__ = ["PREFIX", "StudyKind", "StudyName", "grid_study", "search_study", "study_names"]
