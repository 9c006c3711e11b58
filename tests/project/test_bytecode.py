"""`.ci/bytecode.py`, the step of `make setup` that compiles the modules the suite imports: `record` lists the
site-packages modules any process of a command ran (a process killed by a signal included), and `compile` compiles
exactly the listed files."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "bytecode.py"


@pytest.fixture(scope="module")
def bytecode():
    spec = importlib.util.spec_from_file_location("ci_bytecode", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its compile processes find their function by the module's name
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture
def site(tmp_path) -> Path:
    """A site-packages folder: package `used` (with a subpackage `used/inner`) and package `unused`."""
    root = tmp_path / "site"
    for folder, files in {
        "used": {"__init__.py": "", "helper.py": "X = 1\n"},
        "used/inner": {"__init__.py": "", "mod.py": "from used import helper\n", "broken.py": "def (:\n"},
        "unused": {"__init__.py": "", "other.py": "Y = 2\n"},
    }.items():
        (root / folder).mkdir(parents=True)
        for name, text in files.items():
            (root / folder / name).write_text(text)
    return root


def _listed(listing: Path) -> list[str]:
    return [line for line in listing.read_text().splitlines() if not line.startswith("#")]


def test_record_lists_the_modules_a_command_and_its_killed_child_imported(bytecode, site, tmp_path):
    child = f"import os, signal, sys; sys.path.insert(0, {str(site)!r}); import used.inner.mod; os.kill(os.getpid(), 9)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    listing = tmp_path / "files.txt"
    bytecode.record([sys.executable, "-c", parent], site=site, listing=listing)
    # what ran, not its neighbours (broken.py), nothing from `unused`, nothing outside the site
    assert _listed(listing) == ["used/__init__.py", "used/helper.py", "used/inner/__init__.py", "used/inner/mod.py"]

    # a command that fails leaves the list as it was
    with pytest.raises(SystemExit, match="exit code 3"):
        bytecode.record([sys.executable, "-c", "raise SystemExit(3)"], site=site, listing=listing)
    assert _listed(listing) == ["used/__init__.py", "used/helper.py", "used/inner/__init__.py", "used/inner/mod.py"]


def test_compile_compiles_the_listed_files_only(bytecode, site, tmp_path):
    listing = tmp_path / "files.txt"
    # a listed file that is not installed is skipped
    listing.write_text("# a comment\nused/inner/__init__.py\nused/inner/mod.py\nused/inner/broken.py\ngone/mod.py\n")
    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    (project / "pkg" / "code.py").write_text("Z = 3\n")

    assert bytecode.compile_files([project], site=site, listing=listing) == 3  # broken.py is left to be imported

    def compiled(path: Path) -> bool:
        return Path(importlib.util.cache_from_source(str(path))).exists()

    assert compiled(site / "used/inner/__init__.py") and compiled(site / "used/inner/mod.py")
    assert not compiled(site / "used/inner/broken.py")
    assert not compiled(site / "used/__init__.py") and not compiled(site / "unused/other.py")  # not listed
    assert compiled(project / "pkg" / "code.py")  # a folder given whole
