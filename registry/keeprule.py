"""The keep rule and the kept fraction: when a subnetwork keeps in-domain performance, and how big it is.

Both define the effective size (the smallest subnetwork whose ID score holds), so every place that judges
a subnetwork calls these: the recipes (whether a step passed), the search (a trial's constraint and the
value it reports), and the reports' SQL, which states the same definitions over the logged tables
(reports/sql/effective_size.sql, accuracy_curves.sql: through the `keep_line` macro below, and `1 - sparsity`). The runs
table records each run's rule as (keep_rule, keep_threshold) = (kind, value), so the SQL applies the rule
the run was judged by.

Torch-free: scores are plain floats (the task's own metric: accuracy, MCC, F1, Pearson, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from registry.tracking import Name


class KeepKind(Name):
    """How the rule draws its line, as the runs table's `keep_rule` column stores it."""

    RATIO = "ratio"  # ID score >= value x the full model's (the lottery-ticket study)
    MARGIN = "margin"  # ID score >= the full model's - value (the Heuristic Core)


@dataclass(frozen=True)
class KeepRule:
    kind: KeepKind
    value: float  # the ratio, or the margin (the runs table's keep_threshold)

    @classmethod
    def ratio(cls, value: float) -> KeepRule:
        return cls(KeepKind.RATIO, value)

    @classmethod
    def margin(cls, value: float) -> KeepRule:
        return cls(KeepKind.MARGIN, value)

    def threshold(self, full_score: float) -> float:
        """The score a subnetwork must reach, given the full model's."""
        return self.value * full_score if self.kind is KeepKind.RATIO else full_score - self.value

    def holds(self, score: float, full_score: float) -> bool:
        """Whether a subnetwork scoring `score` keeps the full model's `full_score` (ties hold)."""
        return score >= self.threshold(full_score)


Size = Literal["units", "params"]


def kept_fraction(sparsity: float, unit_sparsity: float | None, size: Size) -> float:
    """What is left of the model: 1 - the fraction of units removed (heads + MLPs, or neurons), or of
    prunable parameters. A method without units (magnitude masks single weights) counts its weights either
    way. The SQL's effective_units / effective_size are the same `1 - unit_sparsity` / `1 - sparsity`."""
    return 1.0 - (unit_sparsity if size == "units" and unit_sparsity is not None else sparsity)


# The keep rule's threshold in SQL, the one definition the reports' queries use (a DuckDB macro every warehouse
# connection defines): keep_line(runs.keep_rule, runs.keep_threshold, the full model's score) is
# KeepRule(kind, value).threshold(full_score). A test checks the two agree.
KEEP_LINE_SQL = (
    "CREATE OR REPLACE MACRO keep_line(rule, threshold, full_score) AS "
    f"CASE WHEN rule = '{KeepKind.MARGIN.value}' THEN full_score - threshold ELSE threshold * full_score END"
)


__all__ = ["KEEP_LINE_SQL", "KeepKind", "KeepRule", "Size", "kept_fraction"]
