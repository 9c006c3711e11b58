"""Compile to bytecode the installed modules that subnets and its tests import, on every core (`make setup`).

Where PYTHONDONTWRITEBYTECODE is set (as on the project's machines) Python never writes the bytecode of what it
imports, so every process compiles again, in memory, each module that has none: torch, transformers and MLflow cost
14.3 s of CPU to import that way instead of 5.9 s. Compiling all of site-packages (~18,800 files) takes a third to
half of `make setup`, and two thirds of it is never imported: transformers' hundreds of model families, the test
suites packages ship, pip; and of the directories imported from, a third of the files are not. So `compile`
compiles the files listed in `bytecode-files.txt` (relative to site-packages; the modules any process of `make test`
ran), and the folders given whole. A module outside the list still imports; it is compiled in memory when imported,
as without this step.

    python .ci/bytecode.py compile [FOLDER ...]       # make setup
    python .ci/bytecode.py record -- COMMAND ...      # make bytecode-files: rewrite the list

Both work on the site-packages of the Python that runs them (the venv's). `record` runs COMMAND with a sitecustomize
that makes each Python process write down the file of each module it runs, then writes the list. Run it again when
the dependencies change much.
"""

from __future__ import annotations

import os
import py_compile
import subprocess
import sys
import sysconfig
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

LIST = Path(__file__).with_name("bytecode-files.txt")

# Each module's file, written down as the import runs it (an audit hook on "exec": a module read as
# text, as transformers reads all its model files to list their names, does not count): a process that ends by a
# signal, as servers do, has written down what it imported too
RECORDER = """
import os, sys

_folder, _seen = %r, set()

def _write_down(event, args):
    if event == "exec":
        module = getattr(args[0], "co_filename", "")
        if module not in _seen:
            _seen.add(module)
            try:  # opened each time: a forkserver's child has none of its parent's files open
                with open(os.path.join(_folder, "%%d.txt" %% os.getpid()), "a") as log:
                    log.write(module + "\\n")
            except OSError:
                pass

sys.addaudithook(_write_down)
"""


def _compile_all(paths: list[str]) -> int:
    failed = 0
    for path in paths:
        try:
            py_compile.compile(path, doraise=True)
        except (py_compile.PyCompileError, OSError):  # e.g. a file written for a newer Python (torch ships one)
            failed += 1
    return failed


def _site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"]).resolve()


def compile_files(folders: list[Path], site: Path | None = None, listing: Path = LIST) -> int:
    """Compile the files `listing` names under `site` (those installed), and of `folders` whole; returns how many."""
    site = site or _site_packages()
    listed = [line.strip() for line in listing.read_text().splitlines() if line.strip() and not line.startswith("#")]
    files = [str(site / f) for f in listed if (site / f).is_file()]
    files += [str(p) for folder in folders for p in folder.rglob("*.py")]
    # the cores this process may use (a container's or a job's allocation), not the machine's count
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    # many small batches spread the large files over the processes; one batch a file would cost more to hand out
    batches = [files[i :: cores * 8] for i in range(cores * 8)]
    with ProcessPoolExecutor(cores) as pool:
        failed = sum(pool.map(_compile_all, batches))
    print(f"bytecode: {len(files) - failed} files compiled ({len(listed)} listed), {failed} left to import")
    return len(files) - failed


def record(command: list[str], site: Path | None = None, listing: Path = LIST) -> None:
    """Run `command`; write to `listing` the files under `site` of the modules its processes ran."""
    site = (site or _site_packages()).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        hook, logs = Path(tmp, "hook"), Path(tmp, "logs")
        hook.mkdir()
        logs.mkdir()
        (hook / "sitecustomize.py").write_text(RECORDER % str(logs))
        path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
        code = subprocess.call(command, env={**os.environ, "PYTHONPATH": path})
        if code != 0:
            sys.exit(f"record: the command failed (exit code {code}); the list is left as it was")
        modules = set()
        for log in logs.glob("*.txt"):
            for name in set(log.read_text().splitlines()):
                module = Path(name).resolve()
                if module.is_relative_to(site) and module.suffix == ".py":
                    modules.add(module.relative_to(site).as_posix())
    header = "# written by `make bytecode-files` (.ci/bytecode.py record): the site-packages modules the tests ran\n"
    listing.write_text(header + "".join(f"{m}\n" for m in sorted(modules)))
    print(f"record: {len(modules)} files written to {listing}")


def main(argv: list[str]) -> None:
    if argv[:1] == ["compile"]:
        compile_files([Path(a) for a in argv[1:]])
    elif argv[:2] == ["record", "--"] and len(argv) > 2:
        record(argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
