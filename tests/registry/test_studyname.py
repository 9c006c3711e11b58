"""registry.studyname: the queue's study names parse and format to exactly the stored form, so studies created
before the type existed still load."""

from __future__ import annotations

import optuna
import pytest

from registry.loader import load_runs
from registry.studyname import (
    StudyKind,
    StudyName,
    grid_study,
    search_study,
    study_names,
)
from tests.conftest import tiny_toml

FP = "0123456789abcdef"


def test_names_format_to_the_stored_form_and_parse_back():
    grid, search = StudyName.grid("demo-1"), StudyName.search("demo_2", FP)
    assert grid.format() == "subnets/demo-1/grid" and str(grid) == "subnets/demo-1/grid"
    assert search.format() == f"subnets/demo_2/search/{FP}"
    assert (grid.kind, grid.fingerprint, grid.is_grid) == (StudyKind.GRID, None, True)
    assert (search.kind, search.experiment, search.fingerprint, search.is_grid) == (
        StudyKind.SEARCH,
        "demo_2",
        FP,
        False,
    )
    for name in (grid, search):
        assert StudyName.parse(name.format()) == name
    assert grid.short() == "demo-1/grid" and search.short() == "demo_2/search/01234567"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "subnets/x",
        "subnets//grid",
        "other/x/grid",
        "subnets/x/grids",
        "subnets/x/search",
        "subnets/x/search/",
        "subnets/x/grid/y",
        "subnets/x/y/z",
    ],
)
def test_anything_else_is_not_a_study_name(text):
    with pytest.raises(ValueError, match="not a subnets study name"):
        StudyName.parse(text)


def test_a_study_stored_under_the_literal_name_loads_by_the_type(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name=f"subnets/tiny/search/{FP}", storage=storage)  # as the queue wrote it before
    (stored,) = optuna.get_all_study_names(storage)
    name = StudyName.parse(stored)
    assert name == StudyName.search("tiny", FP)
    assert optuna.load_study(study_name=name.format(), storage=storage).study_name == stored


def test_runs_map_to_their_studies(write_toml):
    plain = load_runs(write_toml(tiny_toml(), "a.toml"))
    searched = load_runs(
        write_toml(tiny_toml() + "\n[experiment.search]\nspace = { strength = { low = 0.1, high = 0.9 } }\n", "b.toml")
    )
    (base,) = searched
    assert study_names(plain) == [StudyName.grid("tiny")]
    assert study_names([*plain, *searched]) == [StudyName.grid("tiny"), StudyName.search("tiny", base.fingerprint)]
    assert study_names([*plain, *searched], grids=False) == [StudyName.search("tiny", base.fingerprint)]
    assert study_names(searched, searches=False) == [StudyName.grid("tiny")]
    assert grid_study("tiny") == "subnets/tiny/grid" and search_study(base) == f"subnets/tiny/search/{base.fingerprint}"
