"""The results contract binds runners and reports: a real tiny run writes exactly the declared columns,
stamped with the contract version, and every named query of the report runs on views built from those
files alone (a renamed or missing column fails here, not as a blank report column)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from registry.cli import app
from registry.loader import load_runs
from registry.results import RESULTS_VERSION, TABLES, VERSION_KEY, markdown
from reports.warehouse import load_sql, open_warehouse, sql_names
from runners.tracking import Store
from tests.conftest import tiny_toml
from tests.helpers import PROJECT_ROOT

RESULTS_DOC = PROJECT_ROOT / "docs" / "results.md"  # the contract's page


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """One tiny structured run with CKA and a grid axis: it writes every table of the contract."""
    tmp = tmp_path_factory.mktemp("contract")
    text = tiny_toml().replace(
        'method = "magnitude"\nrate = 0.3\nkeep_ratio = 0.0\nmax_steps = 3',
        'method = "importance"\nkeep_ratio = 0.0\nmax_steps = [2]\nscoring_examples = 32\n'
        'controls = ["random"]\n\n[experiment.cka]\nexamples = 32',
    )
    toml = tmp / "experiments.toml"
    toml.write_text(text)
    result = CliRunner().invoke(app, ["run", "--file", str(toml), "--store", str(tmp / "store"), "--quiet"])
    assert result.exit_code == 0, result.output
    store = Store.at(tmp / "store")
    exp = store.client.get_experiment_by_name("tiny")
    (run,) = store.client.search_runs([exp.experiment_id], filter_string="tags.`subnets.kind` = 'run'")
    return {
        "store": store,
        "spec": load_runs(toml)[0],
        "tables": Path(run.info.artifact_uri.removeprefix("file://")) / "tables",
    }


def test_every_table_has_exactly_the_contract_columns_and_its_version(logged):
    files = {p.name for p in logged["tables"].iterdir()}
    assert files == {t.file for t in TABLES.values()}  # the run writes every declared table
    for table in TABLES.values():
        schema = pq.read_schema(logged["tables"] / table.file)
        assert schema.names == table.column_names, table.name
        assert schema.metadata[VERSION_KEY.encode()] == str(RESULTS_VERSION).encode()


def test_every_report_query_runs_on_the_logged_columns_alone(logged):
    with open_warehouse(logged["store"].tracking_uri, strict=True) as wh:
        for name in sql_names():
            params = {"experiment": "tiny"} if "$experiment" in load_sql(name) else None
            wh.query(load_sql(name), params)  # raises a Binder Error on a missing column
        (run,) = wh.named("runs", experiment="tiny")
        assert run["final_sparsity"] is not None and run["final_sparsity"] > 0  # the column that once went blank
        assert run["final_id_accuracy"] is not None


def test_new_columns_carry_group_axes_and_declared_x(logged):
    spec = logged["spec"]
    with open_warehouse(logged["store"].tracking_uri) as wh:
        assert wh.query("SELECT DISTINCT group_id, label, x_axis, stop_reason FROM runs")[1] == [
            (spec.group, "max_steps=2, seed=0", "step", "max_steps")
        ]
        axes = wh.query("SELECT axis, value, number FROM axes ORDER BY axis")[1]
        assert axes == [("prune.max_steps", "2", 2.0), ("prune_seed", "0", 0.0), ("seed", "0", 0.0)]
        xs = wh.query("SELECT DISTINCT variant, step, x FROM steps ORDER BY variant, step")[1]
        assert xs == [("pruned", 0, 0.0), ("pruned", 1, 1.0), ("pruned", 2, 2.0), ("random", 2, 2.0)]
        assert wh.query("SELECT count(DISTINCT group_id) FROM steps")[1] == [(1,)]


def test_the_table_reference_is_generated_from_the_contract():
    assert markdown() in RESULTS_DOC.read_text(), "regenerate with: make reference"


def test_the_data_digest_names_the_data_a_run_saw():
    """Same examples -> same digest; one changed label, text or order -> another."""
    from dataclasses import replace

    from runners.data.examples import EvalSet, Example, TaskData
    from runners.run.execute import data_digest

    train = [Example("a b", None, 0), Example("c d", "e", 1, "sub")]
    task = TaskData(train, EvalSet("id", "id", [Example("x", None, 1)]))
    same = TaskData(list(train), EvalSet("id", "id", [Example("x", None, 1)]))
    assert data_digest(task) == data_digest(same) and len(data_digest(task)) == 16
    for other in (
        TaskData([replace(train[0], label=1), train[1]], task.id_eval),
        TaskData([train[1], train[0]], task.id_eval),
        TaskData(train, EvalSet("id", "id", [Example("y", None, 1)])),
        TaskData(train[:1], EvalSet("id", "id", [*train[1:], Example("x", None, 1)])),
    ):
        assert data_digest(other) != data_digest(task)


def test_every_run_records_the_digest_of_its_data(logged):
    from runners.data.tasks import build_task
    from runners.run.execute import data_digest

    spec = logged["spec"]
    expected = data_digest(build_task(spec.task, spec.base_dir))
    with open_warehouse(logged["store"].tracking_uri) as wh:
        assert wh.query("SELECT DISTINCT data_digest FROM runs")[1] == [(expected,)]


def test_an_l0_step_row_carries_the_gates_expected_sparsity():
    from runners.pruning.recipe import PruneStep
    from runners.tracking.tables import step_rows
    from runners.training import EvalResult

    res = {"id": EvalResult("id", "id", 80, 100)}
    l0 = PruneStep(1, 0.12, res, True, unit_sparsity=0.5, strength=0.5, extra={"expected_sparsity_end": 0.91})
    (row,) = step_rows({"run_id": "r"}, l0, 0.5, True)
    assert (row["x"], row["unit_sparsity"], row["expected_unit_sparsity"]) == (0.5, 0.5, 0.91)
    (plain,) = step_rows({"run_id": "r"}, PruneStep(1, 0.12, res, True), 1.0, True)
    assert plain["expected_unit_sparsity"] is None
