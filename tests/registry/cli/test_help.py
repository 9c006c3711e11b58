"""`subnets --help` and each command's help: sentences wrap at the terminal's width, not where the docstring's lines
end, in the list of commands and in a command's own help."""

from __future__ import annotations

import inspect

from typer.testing import CliRunner

from registry.cli import app

WIDE = {"COLUMNS": "400"}  # rich's width: every paragraph fits on one line, so a line break is the help's own


def _lines(args: list[str]) -> list[str]:
    result = CliRunner().invoke(app, args, env=WIDE)
    assert result.exit_code == 0, result.output
    return [line.strip(" │") for line in result.output.splitlines()]


def test_the_list_of_commands_gives_each_its_first_paragraph_on_one_line():
    lines = _lines(["--help"])
    for command in app.registered_commands:
        if command.hidden:
            continue
        name = command.name or command.callback.__name__
        first = " ".join(inspect.cleandoc(command.callback.__doc__).split("\n\n")[0].split())
        assert any(line.startswith(name + " ") and line.endswith(" " + first) for line in lines), name
    # a docstring's first paragraph over two lines (plan's), and the summary paragraph of a longer one (query's)
    assert any(
        line.endswith("what is done; and the queue's studies (grids and searches) with their trials.") for line in lines
    )
    assert any(line.endswith("print every statement's result (read-only).") for line in lines)
    assert not any("The warehouse is an in-memory DuckDB" in line for line in lines)  # not the later paragraphs


def test_a_commands_own_help_keeps_its_paragraphs_but_not_their_line_breaks():
    lines = _lines(["query", "--help"])
    start = lines.index("Run SQL over the warehouse and print every statement's result (read-only).")
    assert lines[start + 1] == ""
    assert lines[start + 2].startswith("The warehouse is an in-memory DuckDB") and lines[start + 2].endswith(
        "create temporary in-memory tables that vanish when the command ends."
    )
