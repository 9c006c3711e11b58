"""The README is a front door and docs/ the house, and both stay true: the README is short and lists every CLI
command; every page of the site exists and is in its nav; the generated pages (configuration reference, results
contract) equal what the schema and the contract generate; the site builds with broken links as errors."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import typer.main

from registry import results
from registry.cli import app
from registry.explain import GENERATED_PAGES, contract_page, reference_page, rows
from tests.helpers import PROJECT_ROOT

ROOT = PROJECT_ROOT
README = ROOT / "README.md"
DOCS = ROOT / "docs"
FIGURE_COLUMNS = "| figure | value | machine / threads | commit | date |"


def _nav_pages() -> list[str]:
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config["docs_dir"] == "docs"

    def walk(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)
        elif isinstance(node, dict):
            for value in node.values():
                yield from walk(value)

    return list(walk(config["nav"]))


def _cli_commands() -> list[str]:
    """Every visible command of the Typer app, as `subnets NAME` (a command group: `subnets GROUP NAME`)."""

    def walk(command, prefix):
        for name, sub in sorted(command.commands.items()):
            if sub.hidden:
                continue
            if hasattr(sub, "commands"):
                yield from walk(sub, f"{prefix} {name}")
            else:
                yield f"{prefix} {name}"

    return list(walk(typer.main.get_command(app), "subnets"))


def _readme_cli_rows() -> list[str]:
    return [line for line in README.read_text().splitlines() if line.startswith("| `subnets ")]


def test_readme_is_a_short_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail into docs/"
    long = [(n, len(line)) for n, line in enumerate(lines, 1) if len(line) > 120 and "://" not in line]
    assert not long, f"README lines over 120 characters (line, length): {long}"
    text = README.read_text()
    for command in ("make demo", "make test"):
        assert f"\n{command}   #" in text, f"the README's fresh-machine block lost `{command}`"


def test_readme_cli_table_lists_every_command():
    commands = _cli_commands()
    assert "subnets run" in commands and "subnets validate" in commands
    rows_ = _readme_cli_rows()
    listed = [re.match(r"\| `(subnets [a-z][\w-]*(?: [a-z][\w-]*)?)", row).group(1) for row in rows_]
    missing = [c for c in commands if not any(name == c or name.startswith(c + " ") for name in listed)]
    assert not missing, f"README's CLI table lacks: {missing}"
    unknown = [name for name in listed if not any(name == c or name.startswith(c + " ") for c in commands)]
    assert not unknown, f"README's CLI table names commands the app does not have: {unknown}"
    assert len(listed) == len(set(listed)), "a command is listed twice"


def test_every_nav_page_exists_and_every_page_is_in_the_nav():
    nav = _nav_pages()
    assert {"index.md", "reference.md", "results.md", "figures.md"} <= set(nav)
    missing = [page for page in nav if not (DOCS / page).is_file()]
    assert not missing, f"mkdocs.yml names pages that do not exist: {missing}"
    orphans = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if str(p.relative_to(DOCS)) not in nav)
    assert not orphans, f"pages missing from mkdocs.yml's nav: {orphans}"


def test_readme_links_resolve():
    links = re.findall(r"\]\(([^)\s]+)\)", README.read_text())
    local = [link.split("#")[0] for link in links if "://" not in link and not link.startswith("#")]
    assert any(link.startswith("docs/") for link in local), "the README links nowhere into docs/"
    broken = [link for link in local if not (ROOT / link).exists()]
    assert not broken, f"README links to missing files: {broken}"


@pytest.mark.parametrize("name", sorted(GENERATED_PAGES))
def test_generated_page_matches_its_source(name):
    assert (DOCS / name).read_text() == GENERATED_PAGES[name](), "regenerate with: make reference"


def test_reference_page_lists_every_key_of_the_schema():
    page = reference_page()
    for table, key, default, _ in rows():
        assert f"| `{table}` | `{key}` | `{default}` |" in page, (table, key)
    assert "| `experiment.finetune` | `lr` | `5e-05` | Peak AdamW learning rate. |" in page
    # a literal | in a description is escaped, so it cannot split a table row
    for line in page.splitlines():
        if line.startswith("| `"):
            assert len(re.findall(r"(?<!\\)\|", line)) == 5, line


def test_contract_page_lists_every_column_of_the_contract():
    page = contract_page()
    assert f"version {results.RESULTS_VERSION}" in page
    for table in results.TABLES.values():
        assert f"**`{table.name}`** ({table.file})" in page
        for column in table.columns:
            assert f"| `{column.name}` | {column.type} |" in page, (table.name, column.name)


def test_figures_are_one_dated_table_per_section():
    text = (DOCS / "figures.md").read_text()
    sections = re.split(r"\n## ", text)[1:]
    assert len(sections) >= 5
    for section in sections:
        title = section.splitlines()[0]
        headers = [
            line
            for line in section.splitlines()
            if line.startswith("| ")
            and "---" not in line
            and not re.match(r"\| .* \| [0-9a-f]{7} \| \d{4}-\d{2}-\d{2} \|$", line)
        ]
        assert headers == [FIGURE_COLUMNS], f"section {title!r}: one table with columns {FIGURE_COLUMNS}"


def test_make_targets_named_in_the_docs_exist():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("setup", "demo", "test", "bench", "report", "ui", "dashboard", "reference", "docs"):
        assert f"\n{target}:" in makefile, target
    test_rule = re.search(r"\ntest:([^\n]*(?:\n\t[^\n]*)*)", makefile).group(1)  # prerequisites and recipe
    assert "docs" in test_rule.split(), "make test must build the docs"
    docs_recipe = re.search(r"\ndocs:[^\n]*\n\t([^\n#]*)", makefile).group(1)
    assert "mkdocs build --strict" in docs_recipe and "-q" not in docs_recipe.split(), (
        "-q hides the warnings that --strict fails on"
    )
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_site_builds_strictly(tmp_path):
    """mkdocs --strict: a broken link or anchor in docs/ fails (what `make docs` runs)."""
    pytest.importorskip("mkdocs")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "reference" / "index.html").is_file()
