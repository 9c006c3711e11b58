"""The declared data flow: registry -> runners -> MLflow -> warehouse -> reports, checked on the code.

- registry/ (all but registry/cli/, the composition root) imports neither runners/ nor reports/, nor torch,
  transformers, MLflow or DuckDB; runners/ and reports/ never import each other;
- `subnets validate` and `subnets plan` load none of the heavy modules, in a real process.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import PROJECT_ROOT

ROOT = PROJECT_ROOT
HEAVY = ("torch", "transformers", "mlflow", "duckdb", "datasets", "pyarrow")


def imported_roots(path: Path) -> set[str]:
    """Top-level package names a module imports (anywhere in it, lazily or not)."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize(
    "package, forbidden",
    [
        ("registry", {"runners", "reports", "torch", "transformers", "mlflow", "duckdb", "datasets"}),
        ("runners", {"reports"}),
        ("reports", {"runners"}),
    ],
)
def test_imports_point_one_way(package, forbidden):
    offenders = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        if package == "registry" and path.relative_to(ROOT / package).parts[0] == "cli":
            continue  # the CLI is the composition root: it imports runners/reports inside its commands
        bad = imported_roots(path) & forbidden
        if package == "registry" and path.name == "runindex.py":
            bad -= {"mlflow"}  # the one owner of the MLflow boundary, importing it lazily inside functions
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}


def test_no_module_names_that_differ_only_by_a_suffix():
    names = sorted({p.stem for p in (ROOT / "runners").rglob("*.py") if p.stem != "__init__"})
    clashes = [(a, b) for a in names for b in names if a != b and b.startswith(a) and len(b) - len(a) <= 3]
    assert clashes == []


@pytest.mark.parametrize("package", ["runners.queue", "runners.training"])
def test_names_from_a_lazy_package_are_what_they_seem(package):
    """runners.queue and runners.training import their names when first asked for (PEP 562). `from package import
    X` for an X they do not export finds the submodule of that name instead, silently: `from runners.training import
    finetune` gave the module, not its function. Every such import in the code base names an export, or a submodule
    that has no attribute of its own name."""
    import importlib

    exports = set(importlib.import_module(package).__all__)

    def misread(name: str) -> bool:
        if name in exports:
            return False
        try:
            return hasattr(importlib.import_module(f"{package}.{name}"), name)  # the module or its function?
        except ModuleNotFoundError:
            return True

    wrong = [
        f"{path.relative_to(ROOT)}:{node.lineno} {alias.name}"
        for folder in ("registry", "runners", "reports", "tests", "benchmarks")
        for path in (ROOT / folder).rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == package
        for alias in node.names
        if misread(alias.name)
    ]
    assert not wrong, f"neither an export of {package} nor a plain submodule: {wrong}"


def _cli_modules(args: list[str], cwd: Path, env: dict | None = None) -> tuple[int, str, list[str]]:
    """Run the CLI in a fresh interpreter; return its exit code, output and the heavy modules it loaded."""
    code = f"""
import json, sys
from registry.cli import app
sys.argv = ["subnets", *{args!r}]
try:
    app()
except SystemExit as e:
    code = e.code or 0
else:
    code = 0
print("MODULES=" + json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))
sys.exit(code)
"""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), "COLUMNS": "200", **(env or {})},
    )
    line = [x for x in proc.stdout.splitlines() if x.startswith("MODULES=")]
    assert line, proc.stdout + proc.stderr
    return proc.returncode, proc.stdout + proc.stderr, json.loads(line[0].removeprefix("MODULES="))


def test_validate_and_plan_load_no_heavy_module(tmp_path):
    from registry.loader import load_runs
    from tests.conftest import tiny_toml
    from tests.helpers import mlflow_client

    toml = tmp_path / "experiments.toml"
    toml.write_text(tiny_toml(rate=0.2).replace("rate = 0.2", "rate = [0.2, 0.4]"))
    done = load_runs(toml)[0]
    # a store MLflow itself wrote, with one finished parent run and one unrelated child
    client = mlflow_client(tmp_path / "mlflow.db")
    exp = client.create_experiment("tiny")
    run = client.create_run(exp, tags={"subnets.kind": "run", "subnets.fingerprint": done.fingerprint})
    client.set_terminated(run.info.run_id, "FINISHED")
    client.create_run(exp, tags={"subnets.kind": "trial", "subnets.fingerprint": "0" * 16})

    code, output, heavy = _cli_modules(["validate", "--file", str(toml)], tmp_path)
    assert code == 0 and "1 experiment(s), 2 run(s)" in output and heavy == []
    code, output, heavy = _cli_modules(["plan", "--file", str(toml), "--store", str(tmp_path)], tmp_path)
    assert code == 0 and heavy == [], output
    assert "2 run(s) on 1 fine-tuned model(s): 1 done, 1 to run" in output
    assert done.fingerprint in output and "rate=0.2, seed=0" in output


def test_store_run_status_reads_the_local_index_as_the_client_sees_it(tmp_path):
    """Store.run_status reads a local store through the run index (no MLflow import); its statuses are the
    client's, best per fingerprint (tests/registry/test_runindex.py checks the index itself against the client)."""
    from runners.tracking import Store
    from tests.helpers import mlflow_client

    client = mlflow_client(tmp_path / "mlflow.db")
    exp = client.create_experiment("e")
    other = client.create_experiment("other")
    for i, status in enumerate(["FINISHED", "FAILED", "KILLED", "RUNNING"]):
        r = client.create_run(exp, tags={"subnets.kind": "run", "subnets.fingerprint": f"fp{i % 3}"})
        if status != "RUNNING":
            client.set_terminated(r.info.run_id, status)
    deleted = client.create_run(exp, tags={"subnets.kind": "run", "subnets.fingerprint": "gone"})
    client.delete_run(deleted.info.run_id)
    client.create_run(other, tags={"subnets.kind": "run", "subnets.fingerprint": "elsewhere"})
    assert Store.at(tmp_path).run_status("nope") == {}
    assert Store.at(tmp_path).run_status("e") == {"fp0": "FINISHED", "fp1": "FAILED", "fp2": "KILLED"}


def test_run_refuses_an_unknown_hub_model_before_loading_torch(tmp_path):
    """The hub check `subnets run` makes before it writes anything imports huggingface_hub alone: a typo in a model
    name is refused without the ~4 s of CPU that torch and transformers take to import."""
    from tests.conftest import tiny_toml

    toml = tmp_path / "experiments.toml"
    toml.write_text(tiny_toml().replace('name = "micro-bert"', 'name = "tiny-bert-large"'))
    offline = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    code, output, heavy = _cli_modules(["run", "--file", str(toml), "--store", str(tmp_path / "s")], tmp_path, offline)
    assert code == 2 and "key model.name" in output and "tiny-bert-large" in output, output
    assert heavy == [] and not (tmp_path / "s").exists()
