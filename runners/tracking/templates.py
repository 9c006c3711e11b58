"""Empty SQLite databases made once per library version and copied for each new store.

Every fresh store needs MLflow's tables (MLflow's migrations: 1-2 s of CPU) and Optuna's (its table creation and
alembic stamp: ~0.3 s), and every test's store and every demo's is fresh. So each library's empty database is made
once per version of the library, by the library itself, under $XDG_CACHE_HOME/subnets (else ~/.cache/subnets), and
a new store's database is a copy of it (milliseconds). Where the cache cannot be written the database is made
directly, as before.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from registry.files import sqlite_damage

__all__ = ["copy_template", "template", "template_path"]


def template_path(library: str) -> Path:
    """Where the empty database of this version of `library` ("mlflow", "optuna") is kept."""
    from importlib.metadata import version

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "subnets" / f"{library}-{version(library)}.db"


def template(library: str, make: Callable[[str], object]) -> Path:
    """The library's empty database, made by `make(url)` where it is missing or damaged. Raises OSError where the
    cache cannot be written."""
    path = template_path(library)
    if sqlite_damage(path):  # a cache file someone broke: made again
        path.unlink()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # made under a name of its own, then renamed: processes making it at once each rename a whole one, and a
        # library's cache of engines by URL never hands this process an engine of an earlier template
        fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".creating")
        os.close(fd)
        try:
            make(f"sqlite:///{scratch}")
            os.replace(scratch, path)
        finally:
            Path(scratch).unlink(missing_ok=True)
    return path


def copy_template(target: Path, library: str, make: Callable[[str], object]) -> bool:
    """A new database at `target`: a copy of the library's template (True), or, where the cache cannot be written,
    made directly by `make(url)` (False)."""
    try:
        shutil.copyfile(template(library, make), target)
        return True
    except OSError:
        Path(target).unlink(missing_ok=True)
        make(f"sqlite:///{target}")
        return False
