"""The results contract: every table a run logs (Parquet files under the run's `tables/` artifacts),
with each column's type and meaning. runners/ writes through it, reports/ reads through it (one DuckDB
view per table), and the table reference in docs/results.md is generated from it.

Each file carries the contract version in its Parquet metadata (`subnets.results_version`); a reader
fills columns an older file lacks with NULL. Bump RESULTS_VERSION when a column changes meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RESULTS_VERSION = 2
VERSION_KEY = "subnets.results_version"
TABLE_KEY = "subnets.table"

ColumnType = Literal["string", "int64", "float64", "bool", "timestamp"]


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    description: str


@dataclass(frozen=True)
class Table:
    name: str  # the warehouse view (`subnets query "select * from <name>"`)
    file: str  # the Parquet file under the run's tables/ artifacts
    description: str
    columns: tuple[Column, ...]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


_RUN_IDS = (
    Column("experiment", "string", "Experiment name (the MLflow experiment)."),
    Column("run_id", "string", "MLflow run id of the run's parent run."),
    Column(
        "fingerprint", "string", "The run's fingerprint: a hash of its resolved config; decides whether it is done."
    ),
    Column(
        "group_id",
        "string",
        "The group fingerprint: a hash of the resolved config without its seeds; the runs (seeds) "
        "of one grid point share it.",
    ),
    Column("seed", "int64", "Fine-tuning seed."),
    Column("prune_seed", "int64", "Pruning seed (equal to seed unless prune_seeds were declared)."),
    Column("method", "string", "Pruning method."),
)
_STEP_IDS = (
    Column(
        "variant",
        "string",
        "pruned (the recipe's own steps), or a control/re-fine-tuned variant of the kept step: "
        "random, bad, retrained, random_retrained, ...",
    ),
    Column("step", "int64", "Pruning step (0 = the full fine-tuned model); a variant carries its kept step's number."),
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "runs",
            "run.parquet",
            "One row per finished run.",
            _RUN_IDS
            + (
                Column(
                    "label",
                    "string",
                    "The run's grid values and seeds, e.g. `rate=0.1, seed=1`: how a person tells sibling runs apart.",
                ),
                Column(
                    "finetune_fingerprint",
                    "string",
                    "Identity of the fine-tuned model the run pruned; runs that differ only in pruning share it.",
                ),
                Column("model", "string", "Model name (built-in, directory or hub id)."),
                Column("task", "string", "Task name."),
                Column(
                    "primary_metric",
                    "string",
                    "The task's own metric (accuracy, mcc, f1, pearson, ...): the one the keep rule, the "
                    "effective size and the report judge by; steps rows carry it in `metric`.",
                ),
                Column("description", "string", "The experiment's description."),
                Column(
                    "x_axis",
                    "string",
                    "What a step's x is for this run: step (iterative), strength (one-shot) or target (L0).",
                ),
                Column("config_json", "string", "The resolved config as JSON."),
                Column(
                    "git_sha", "string", "Git commit of the project that ran it ('+dirty' with uncommitted changes)."
                ),
                Column("device", "string", "Device the run computed on (cpu, cuda:0, ...)."),
                Column("torch_threads", "int64", "torch intra-op threads of the run's process."),
                Column("started_at", "timestamp", "When the run started (UTC)."),
                Column("duration_s", "float64", "Wall time of the run in seconds."),
                Column("baseline_id_accuracy", "float64", "ID accuracy of the full fine-tuned model."),
                Column("final_step", "int64", "The kept step (the recipe's keep rule)."),
                Column("final_sparsity", "float64", "Sparsity of the kept step."),
                Column(
                    "stop_reason",
                    "string",
                    "Why pruning ended: keep_rule (a step failed it), max_steps, declared (the declared "
                    "strengths/targets ran out), exhausted (nothing left to prune) or callback (stopped by a "
                    "search).",
                ),
                Column(
                    "keep_rule",
                    "string",
                    "How a subnetwork keeps ID performance for the effective size: ratio (>= keep_threshold x "
                    "the full model's) or margin (>= the full model's - keep_threshold).",
                ),
                Column(
                    "keep_threshold",
                    "float64",
                    "The keep rule's ratio or margin (the method's keep_ratio for a grid run, the search's for "
                    "a trial).",
                ),
                Column("study", "string", "The Optuna study a search trial belongs to (NULL for a grid run)."),
                Column("trial", "int64", "The trial's number in that study (NULL for a grid run)."),
                Column(
                    "data_digest",
                    "string",
                    "A hash of the examples the run trained and evaluated on (provenance: two runs with one "
                    "digest saw the same data); NULL when not recorded.",
                ),
            ),
        ),
        Table(
            "axes",
            "axes.parquet",
            "One row per grid axis of a run: the declared values that define its grid point.",
            _RUN_IDS[:4]
            + (
                Column("axis", "string", "Dotted key of the swept field, e.g. prune.rate, or seed / prune_seed."),
                Column("value", "string", "The value as text."),
                Column("number", "float64", "The value as a number, when it is one (else NULL)."),
            ),
        ),
        Table(
            "steps",
            "steps.parquet",
            "One row per step, evaluation set and subcase: what each subnetwork scores.",
            _RUN_IDS
            + _STEP_IDS
            + (
                Column(
                    "x",
                    "float64",
                    "The step's declared x (see runs.x_axis): the step number, the one-shot strength or the L0 target.",
                ),
                Column("sparsity", "float64", "Fraction of prunable parameters removed."),
                Column(
                    "unit_sparsity",
                    "float64",
                    "Fraction of units removed (heads + MLPs, or neurons); NULL for weight masks.",
                ),
                Column(
                    "expected_unit_sparsity",
                    "float64",
                    "L0 only: the trained gates' expected unit sparsity when training ended. The Lagrangian "
                    "holds it near the target, so a gap above 0.05 says the schedule was too short (the mask "
                    "is still cut to the target, top-k); NULL otherwise.",
                ),
                Column("eval_set", "string", "Evaluation set: id, or an OOD set's name."),
                Column("kind", "string", "id or ood."),
                Column(
                    "subcase", "string", "all (the whole set), or a subcase such as lexical_overlap/non_entailment."
                ),
                Column(
                    "metric",
                    "string",
                    "accuracy (per set and subcase; none for a regression task), or one of the task's own "
                    "metrics on the whole set: mcc, f1, pearson, spearman.",
                ),
                Column("value", "float64", "The metric's value."),
                Column("n", "int64", "Number of examples the value is computed over."),
                Column("passed", "bool", "Whether the step keeps ID performance (the method's keep rule)."),
                Column("selected", "bool", "The kept step of the run (and every variant row, which is built from it)."),
            ),
        ),
        Table(
            "units",
            "units.parquet",
            "One row per unit (head, MLP or neuron) of each structured step: kept or not, and its score.",
            _RUN_IDS
            + _STEP_IDS
            + (
                Column("layer", "int64", "Encoder layer (0-based)."),
                Column("unit_kind", "string", "head, mlp or neuron."),
                Column("unit_index", "int64", "Index within the layer (head or neuron number; 0 for the MLP)."),
                Column("kept", "bool", "Whether the unit is kept in this step's subnetwork."),
                Column("score", "float64", "The method's score of the unit (higher = more important; L0: log-alpha)."),
            ),
        ),
        Table(
            "cka",
            "cka.parquet",
            "Linear CKA between every layer of the full model and every layer of a pruned one.",
            _RUN_IDS
            + _STEP_IDS
            + (
                Column("sparsity", "float64", "Sparsity of the compared step."),
                Column("representation", "string", "layer_output or attention_output."),
                Column("pooling", "string", "cls, mean or tokens."),
                Column("estimator", "string", "linear or minibatch."),
                Column("layer_base", "int64", "Layer of the full model (0 = embeddings)."),
                Column("layer_pruned", "int64", "Layer of the pruned model (0 = embeddings)."),
                Column("value", "float64", "CKA in [0, 1]."),
                Column(
                    "degenerate",
                    "bool",
                    "A representation was (numerically) constant, so the value is undefined and reported as 0.",
                ),
            ),
        ),
    )
}


def markdown() -> str:
    """The table reference of docs/results.md."""
    lines = []
    for t in TABLES.values():
        lines += [f"**`{t.name}`** ({t.file}): {t.description}", "", "| column | type | meaning |", "|---|---|---|"]
        lines += [f"| `{c.name}` | {c.type} | {c.description} |" for c in t.columns]
        lines.append("")
    return "\n".join(lines).rstrip()


__all__ = ["TABLES", "Table", "Column", "RESULTS_VERSION", "VERSION_KEY", "TABLE_KEY", "markdown"]
