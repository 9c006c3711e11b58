"""Same inputs, same bytes: mask files of identical runs are byte-identical (safetensors alone writes its
metadata in a per-process random order), and read-only commands never create a store."""

from __future__ import annotations

import hashlib
import subprocess
import sys

from typer.testing import CliRunner

from registry.cli import app

WRITE = """
import torch
from runners.pruning.masks import save_gate_masks, save_weight_masks

def write(prefix):
    g = torch.Generator().manual_seed(0)
    save_weight_masks(prefix + ".w", {"a": torch.rand(5, 7, generator=g) > 0.5, "b": torch.rand(3, generator=g) > 0.5},
                      {"step": "2", "variant": "pruned", "sparsity": "0.5", "passed": "true"})
    save_gate_masks(prefix + ".g", {"head": torch.ones(2, 4), "mlp": torch.tensor([1.0, 0.0])},
                    {"head": torch.rand(2, 4, generator=g)},
                    {"step": "1", "variant": "pruned", "ablation": "mean", "passed": "true"})
"""


def test_mask_files_are_byte_identical_across_processes(tmp_path):
    # this test process and a fresh interpreter: each has its own random hash seed, by which safetensors alone orders
    # the four metadata entries (23 in 24 pairs of processes write different bytes); the fresh one costs ~3 s of CPU
    # to import torch and the masks
    here: dict = {}
    exec(WRITE, here)
    here["write"](str(tmp_path / "m0"))
    subprocess.run([sys.executable, "-c", WRITE + "\nimport sys; write(sys.argv[1])", str(tmp_path / "m1")], check=True)
    digests = [
        tuple(hashlib.sha256((tmp_path / f"m{i}{s}").read_bytes()).hexdigest() for s in (".w", ".g")) for i in (0, 1)
    ]
    assert len(set(digests)) == 1


def test_read_only_commands_never_create_a_store(tmp_path, write_toml):
    from tests.conftest import tiny_toml

    missing = tmp_path / "typo"
    toml = write_toml(tiny_toml())
    for args in (
        ["query", "select 1"],
        ["report", "--out", str(tmp_path / "r.html")],
        ["plan", "--file", str(toml)],
        ["status", "--file", str(toml)],
    ):
        result = CliRunner().invoke(app, [*args, "--store", str(missing)])
        assert result.exit_code in (0, 1, 2), result.output
        assert not missing.exists(), f"`subnets {args[0]}` created {missing}"
    result = CliRunner().invoke(app, ["query", "select 1", "--store", str(missing)])
    assert result.exit_code == 2 and "no tracking store" in result.output
