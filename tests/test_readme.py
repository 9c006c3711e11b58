"""The README stays true: its experiments.toml reference is the one the schema generates, and the
commands it tells a user to run exist."""
from __future__ import annotations

from pathlib import Path

from registry.explain import markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_reference_table_matches_the_schema():
    assert markdown() in README.read_text(), "regenerate with: make reference"


def test_make_targets_named_in_readme_exist():
    makefile = (README.parent / "Makefile").read_text()
    for target in ("setup", "demo", "test", "bench", "report", "ui"):
        assert f"\n{target}:" in makefile
    assert "make test" in (README.parent / ".ci" / "run").read_text()
