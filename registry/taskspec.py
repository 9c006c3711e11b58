"""The task sections of experiments.toml: a task, its data sources and its out-of-domain sets.

Apart from registry/schema.py so that the task catalogue (registry/tasks.py), which validates these specs,
and the schema, which asks the catalogue for a task's metric, import in one direction: schema -> tasks ->
taskspec. registry.schema re-exports every name here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

SLUG = r"^[a-z0-9][a-z0-9_-]{0,63}$"


# Source keys added after fingerprints existed: a source that leaves them at their default hashes as before.
LATER_SOURCE_DEFAULTS: dict[str, Any] = {"revision": None, "rows": None, "every": None}


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class SourceSpec(Strict):
    path: str | None = Field(
        default=None,
        description="Local data file (.csv, .tsv, .jsonl, .parquet); relative paths are relative to experiments.toml.",
    )
    hub: str | None = Field(
        default=None,
        description="Hub dataset id, e.g. nyu-mll/glue or jhu-cogsci/hans (loaded with the datasets library).",
    )
    config: str | None = Field(default=None, description="Hub dataset configuration, e.g. mnli for nyu-mll/glue.")
    split: str | None = Field(default=None, description="Hub split name, e.g. validation_matched.")
    revision: str | None = Field(
        default=None,
        description="Hub dataset revision (branch, tag or commit), e.g. refs/convert/parquet for the hub's "
        "parquet export of a dataset that is still a loading script.",
    )
    text_a: str = Field(default="sentence1", description="Column holding the first text.")
    text_b: str | None = Field(
        default=None, description="Column holding the second text of a pair task (omit for single-sentence tasks)."
    )
    label: str = Field(default="label", description="Column holding the label (an index or a label name).")
    subcase: str | list[str] | None = Field(
        default=None,
        description="Optional column whose values split accuracy into subcases (e.g. heuristic), or several "
        'joined by / (HANS: ["heuristic", "label"]; the label column gives label names).',
    )
    label_map: dict[str, int] | None = Field(
        default=None,
        description="Map from raw label values (as text) to label indices, e.g. {contradiction = 1, neutral = 1}.",
    )
    header: bool = Field(
        default=True,
        description="Whether a csv/tsv file has a header row (columns are then named 0, 1, ... otherwise).",
    )
    limit: int | None = Field(default=None, ge=1, description="Use only the first N rows.")
    rows: list[int] | None = Field(
        default=None,
        description="Use only rows [start, end) of the source, counted from 0 after any header (e.g. [9000, 10000]):"
        " disjoint train and dev sets from one file, without a copy. Not with `limit`.",
    )
    every: int | None = Field(
        default=None,
        ge=2,
        description="Keep every N-th row of those selected (a systematic sample): 10 keeps 100 of each block of "
        "1,000 rows in a file sorted by subcase (HANS), so every subcase stays, at a tenth of the cost.",
    )

    @model_validator(mode="after")
    def _one_origin(self):
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of `path` (local file) or `hub` (hub dataset id)")
        if self.rows is not None:
            if len(self.rows) != 2 or not 0 <= self.rows[0] < self.rows[1]:
                raise ValueError(f"rows = {self.rows}: give [start, end] with 0 <= start < end")
            if self.limit is not None:
                raise ValueError("give `rows` or `limit`, not both (`limit = N` is `rows = [0, N]`)")
        return self

    def thin(self, rows: list) -> list:
        """The rows `every` keeps of those `span` selected."""
        return rows if self.every is None else rows[:: self.every]

    def span(self) -> tuple[int, int | None]:
        """(first row, how many rows or None for all): what `rows` or `limit` select."""
        if self.rows is not None:
            return self.rows[0], self.rows[1] - self.rows[0]
        return 0, self.limit


class OODSpec(SourceSpec):
    name: str = Field(
        pattern=SLUG, description="Name of this out-of-domain evaluation set (a slug), used in metrics and reports."
    )
    labels: list[str] | None = Field(
        default=None,
        description="This set's label names when they differ from the task's (e.g. HANS: entailment, non_entailment).",
    )
    pred_map: list[int] | None = Field(
        default=None,
        description="Map each model label index to this set's label index, e.g. [0, 1, 1] collapses MNLI onto HANS.",
    )


class TaskSpec(Strict):
    name: str = Field(description="Built-in task (see `subnets validate --explain`) or `custom` for local/hub sources.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Parameters of a generated built-in task (e.g. synthetic-nli sizes)."
    )
    labels: list[str] | None = Field(
        default=None, description="Label names in index order (custom tasks; built-ins know theirs)."
    )
    train: SourceSpec | None = Field(
        default=None, description="Training data (custom tasks, or override a built-in's)."
    )
    eval: SourceSpec | None = Field(
        default=None, description="In-domain evaluation data (custom tasks, or override a built-in's)."
    )
    ood: list[OODSpec] = Field(
        default_factory=list, description="Out-of-domain evaluation sets, added to a built-in's own."
    )
    max_length: int = Field(default=128, ge=8, le=4096, description="Truncate tokenized inputs to this many tokens.")
    metric: str | None = Field(
        default=None,
        description="The metric the keep rule, the effective size and the report judge by (accuracy, mcc, f1, "
        "pearson, spearman); default: the task's own (accuracy for custom tasks).",
    )
    builtin_ood: list[str] | None = Field(
        default=None,
        description="Which of a built-in task's own OOD sets to evaluate (default: all of them; [] for none, "
        "e.g. offline with local sets under task.ood).",
    )
