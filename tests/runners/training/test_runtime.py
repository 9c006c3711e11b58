"""CPU numerics: the same run twice on one machine gives bit-identical numbers; against the reference logged
on another CPU (tests/data/cpu_reference.json) they agree within a stated float tolerance, since torch picks its
CPU kernels by instruction set (AVX2, AVX-512, AMX) and the order of a vectorised sum moves the last bits. A device
or precision this machine lacks is a clear error (exit 2) before anything is written."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from registry.cli import app
from registry.schema import RuntimeSpec
from runners.tracking import Store
from runners.training.device import DeviceError, resolve_device
from tests.helpers import TEST_DATA

DATA = TEST_DATA


def run_cli(args: list[str]):
    return CliRunner().invoke(app, args)


def logged_numbers(store_dir: Path, experiment: str) -> dict:
    """The same extraction that wrote cpu_reference.json: losses, step values, unit scores, CKA."""
    client = Store.at(store_dir).client
    exp = client.get_experiment_by_name(experiment)
    (run,) = client.search_runs([exp.experiment_id], filter_string="tags.`subnets.kind` = 'run'")
    art = Path(run.info.artifact_uri.removeprefix("file://")) / "tables"
    rec = {
        "fingerprint": run.data.tags["subnets.fingerprint"],
        "finetune_loss": [[m.step, m.value] for m in client.get_metric_history(run.info.run_id, "finetune.loss")],
    }
    steps = pq.read_table(art / "steps.parquet").to_pylist()
    rec["steps"] = sorted(
        [[r["variant"], r["step"], r["eval_set"], r["subcase"], r["sparsity"], r["value"]] for r in steps]
    )
    if (art / "units.parquet").exists():
        units = pq.read_table(art / "units.parquet").to_pylist()
        rec["units"] = sorted(
            [
                [r["variant"], r["step"], r["layer"], r["unit_kind"], r["unit_index"], r["kept"], r["score"]]
                for r in units
            ],
            key=lambda x: [str(v) for v in x],
        )
    if (art / "cka.parquet").exists():
        cka = pq.read_table(art / "cka.parquet").to_pylist()
        rec["cka"] = sorted([[r["variant"], r["step"], r["layer_base"], r["layer_pruned"], r["value"]] for r in cka])
    return rec


# Across CPUs. The runs compute in float32 (epsilon 1.2e-7); another vector width reorders each sum, and the
# rounding differences of a few ulps per reduction compound through a few dozen training and pruning steps.
# Measured between an AVX2 machine and one with AVX-512 and AMX: at most 4.4e-7 absolute (unit scores of order
# 1), 7.5e-9 on the fine-tuning loss. REL_TOL is about 80 float32 ulps; ABS_TOL covers values near zero (CKA of
# nearly equal layers, scores of pruned units). Discrete values (fingerprints, steps, layers, kept flags) and
# scores that count examples (a flipped prediction moves them by 1/64 here) must match exactly: the tolerance is
# far below one flipped example.
REL_TOL, ABS_TOL = 1e-5, 1e-6


def differences(got, expected, path: str = "") -> list[str]:
    """Where `got` and `expected` (nested lists of the logged numbers) differ beyond the float tolerance."""
    if isinstance(expected, list) and isinstance(got, list) and len(got) == len(expected):
        return [d for i, (g, e) in enumerate(zip(got, expected)) for d in differences(g, e, f"{path}[{i}]")]
    if isinstance(expected, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return (
            []
            if math.isclose(got, expected, rel_tol=REL_TOL, abs_tol=ABS_TOL)
            else [f"{path}: {got!r} vs {expected!r}"]
        )
    return [] if got == expected else [f"{path}: {got!r} vs {expected!r}"]


def run_reference_file(tmp_path: Path, store: str) -> dict:
    toml = tmp_path / "experiments.toml"
    toml.write_text((DATA / "cpu_reference.toml").read_text())
    result = run_cli(["run", "--file", str(toml), "--store", str(tmp_path / store), "--quiet"])
    assert result.exit_code == 0, result.output
    names = json.loads((DATA / "cpu_reference.json").read_text())
    return {n: json.loads(json.dumps(logged_numbers(tmp_path / store, n))) for n in names}  # tuples -> lists


def test_cpu_results_match_the_logged_reference_within_float_tolerance(tmp_path):
    reference = json.loads((DATA / "cpu_reference.json").read_text())
    got = run_reference_file(tmp_path, "store")
    for experiment, expected in reference.items():
        assert got[experiment]["fingerprint"] == expected["fingerprint"], experiment  # fingerprints did not move
        for key in expected:
            assert differences(got[experiment][key], expected[key]) == [], (
                f"{experiment}: {key} differs from the reference"
            )
    # and on this machine, the same runs again (a second store, so nothing is reused) are bit-identical
    assert run_reference_file(tmp_path, "again") == got


def test_the_tolerance_catches_a_real_change():
    assert differences([[8, 0.6936893612146378]], [[8, 0.6936893537640572]]) == []  # the two CPUs measured
    assert differences([[8, 0.6937]], [[8, 0.6936893537640572]]) != []  # a changed loss
    assert differences([["pruned", 1, "id", "all", 0.5, 0.515625]], [["pruned", 1, "id", "all", 0.5, 0.5]]) != []
    assert differences([[0, "head", 3, True]], [[0, "head", 3, False]]) != []  # a flipped kept flag


def test_auto_resolves_to_what_the_machine_has():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(RuntimeSpec()).type == expected
    assert resolve_device(RuntimeSpec(device="cpu")) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_missing_cuda_is_a_clear_error_before_anything_is_written(write_toml, tmp_path):
    from tests.conftest import tiny_toml

    with pytest.raises(DeviceError, match="no CUDA device"):
        resolve_device(RuntimeSpec(device="cuda"))
    with pytest.raises(DeviceError, match="needs a CUDA device"):
        resolve_device(RuntimeSpec(precision="bf16"))
    toml = write_toml(tiny_toml() + '\n[experiment.runtime]\ndevice = "cuda"\n')
    result = run_cli(["run", "--file", str(toml), "--store", str(tmp_path / "store"), "--quiet"])
    assert result.exit_code == 2 and "no CUDA device" in result.output
    assert not (tmp_path / "store" / "mlartifacts").exists()  # no run was started, no artifact written


def test_bf16_on_an_explicit_cpu_device_is_rejected_by_validation(write_toml):
    from tests.conftest import tiny_toml

    toml = write_toml(tiny_toml() + '\n[experiment.runtime]\ndevice = "cpu"\nprecision = "bf16"\n')
    result = run_cli(["validate", "--file", str(toml)])
    assert result.exit_code == 2 and "runtime" in result.output and "CUDA only" in result.output


if __name__ == "__main__":
    # Rewrite cpu_reference.json after a deliberate change of the numerics (say, the optimizer's kernel), at one
    # thread as the tests run: `python -m tests.runners.training.test_runtime`. Fused AdamW made the last bits depend
    # on the
    # thread count (its vectorised chunks differ), so the reference holds only for the threads it was written at.
    import os
    import tempfile

    torch.set_num_threads(1)
    os.environ["SUBNETS_THREADS"] = "1"
    old = json.loads((DATA / "cpu_reference.json").read_text())
    tmp = Path(tempfile.mkdtemp())
    (tmp / "experiments.toml").write_text((DATA / "cpu_reference.toml").read_text())
    result = run_cli(["run", "--file", str(tmp / "experiments.toml"), "--store", str(tmp / "store"), "--quiet"])
    assert result.exit_code == 0, result.output
    new = {name: json.loads(json.dumps(logged_numbers(tmp / "store", name))) for name in old}
    (DATA / "cpu_reference.json").write_text(json.dumps(new, indent=0))
    print("changed:", [f"{n}.{k}" for n in old for k in old[n] if old[n][k] != new[n][k]] or "nothing")
