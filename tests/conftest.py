"""Shared fixtures: tiny experiments files and a tracking store in a temp directory."""

from __future__ import annotations

import gc
import os
import textwrap
from pathlib import Path

import pytest

os.environ["SUBNETS_THREADS"] = "1"  # every `subnets run` a test starts (in-process or not) uses one torch thread


def pytest_configure(config):
    tx = getattr(config.option, "tx", None)
    if not hasattr(config, "workerinput") and tx and set(tx) == {"popen"}:  # xdist's controller, started with -n N
        # each test process forked from the preloaded server (tests/preloaded.py), torch and the rest imported: its
        # collection takes ~4 s of CPU instead of ~12 (the first of them starts the server, which the tests need anyway)
        from tests.preloaded import forked_test_process_python

        config.option.tx = [f"popen//python={forked_test_process_python()}"] * len(tx)
    # Tests use tiny models: one thread is as fast, and it avoids pathological slowdowns when the machine's cores
    # are oversubscribed (measured: a tiny forward went from 3 ms to 0.44 s at 2 threads). Where the tests run:
    # xdist's controller (`-n N`) runs none, and need not import torch (~4 s of CPU) for them.
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        # collecting imports torch, transformers, MLflow and every test module: the collector paused until it is
        # done (pytest_collection_finish), as the workers' forkserver does (runners/queue/forkserver_start.py)
        gc.disable()
        import torch

        torch.set_num_threads(1)


SHARED = Path(__file__).resolve().parents[1].parent / "shared"

TINY = """
[defaults]
seeds = [0]

[defaults.model]
name = "micro-bert"

[defaults.task]
name = "synthetic-nli"
max_length = 48
params = {{ n_train = 256, n_id_eval = 64, n_ood_per_subcase = 8 }}

[defaults.finetune]
epochs = 1.0
lr = 1e-3
batch_size = 32
eval_batch_size = 64

[[experiment]]
name = "{name}"
description = "tiny end-to-end check"

[experiment.prune]
method = "magnitude"
rate = {rate}
keep_ratio = {keep_ratio}
max_steps = {max_steps}
"""


def tiny_toml(name: str = "tiny", rate: float = 0.3, keep_ratio: float = 0.0, max_steps: int = 3) -> str:
    return TINY.format(name=name, rate=rate, keep_ratio=keep_ratio, max_steps=max_steps)


def pytest_collection_modifyitems(config, items):
    # in each of xdist's test processes (the same order in each, as xdist requires): the longest modules first
    workers = getattr(config, "workerinput", {}).get("workercount", 1)
    if workers > 1:
        from tests.schedule import long_first

        items[:] = [items[i] for i in long_first([item.nodeid for item in items], workers)]


def pytest_collection_finish(session):
    # what collecting imported (torch, transformers, MLflow) stays for the session: out of the collector's sight,
    # a full collection no longer walks its ~1M objects (~9% of the CPU of the tests that run in this process)
    gc.freeze()
    gc.enable()


@pytest.fixture
def write_toml(tmp_path):
    def write(text: str, name: str = "experiments.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def shared_data() -> Path:
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip("../shared/data is not present (it exists only on the project's own machines)")
    return data


@pytest.fixture
def minilm() -> Path:
    path = SHARED / "models" / "all-MiniLM-L6-v2"
    if not path.is_dir():
        pytest.skip("../shared/models/all-MiniLM-L6-v2 is not present")
    return path


@pytest.fixture(autouse=True)
def _no_ambient_tracking(monkeypatch):
    # tests always pass their own store; an exported MLFLOW_TRACKING_URI must not leak in
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
