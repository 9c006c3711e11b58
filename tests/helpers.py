"""Small builders several test modules share: tiny random models, hand-made token rows, a CLI run."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification

PROJECT_ROOT = Path(__file__).resolve().parents[1]  # the repository
TEST_DATA = PROJECT_ROOT / "tests" / "data"

TINY_CFG = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    initializer_range=0.2,
    num_labels=3,
)


def tiny_float64_bert() -> BertForSequenceClassification:
    """A 2-layer, 4-head BERT in float64 (for finite-difference and by-hand checks)."""
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(**TINY_CFG)).to(torch.float64).eval()


def random_rows(n: int = 12, seed: int = 1) -> list[dict]:
    """Encoded rows (as runners.data.examples.encode makes them) with random tokens, lengths 4..11 and 3 labels."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(4, 12, (1,), generator=g))
        out.append(
            {
                "input_ids": torch.randint(3, 100, (length,), generator=g).tolist(),
                "token_type_ids": [0] * length,
                "label": int(torch.randint(0, 3, (1,), generator=g)),
                "subcase": None,
            }
        )
    return out


def scripted_context(model, accuracies=None):
    """A PruneContext over random rows whose evaluate() returns scripted ID accuracies (baseline 0.80;
    default always 0.80) and records the model's logits on a probe batch, to check which gates were
    attached while it ran. Returns (ctx, recorded logits, probe batch)."""
    from runners.data.examples import batches
    from runners.pruning.gates import compute_unit_means
    from runners.pruning.recipe import PruneContext
    from runners.tracking.progress import Progress
    from runners.training.evaluate import EvalResult

    data = random_rows()
    probe = next(batches(data, 12, 0))
    seen, it = [], iter(accuracies or [0.8] * 100)

    def evaluate():
        with torch.no_grad():
            seen.append(model(**probe.model_inputs()).logits)
        return {"id": EvalResult("id", "id", round(next(it) * 100), 100)}

    def train_batches(n_examples=None, batch_size=32, shuffle=False, epoch=0):
        assert not shuffle
        return batches(data[:n_examples], batch_size, 0)

    ctx = PruneContext(
        model=model,
        evaluate=evaluate,
        baseline={"id": EvalResult("id", "id", 80, 100)},
        progress=Progress(enabled=False),
        seed=0,
        train_batches=train_batches,
        unit_means=lambda: compute_unit_means(model, batches(data, 4, 0)),
    )
    return ctx, seen, probe


def run_cli(toml: Path, store_dir: Path, experiment: str = "tiny"):
    """`subnets run` on a file; returns (store, the experiment's only parent run, its artifact dir)."""
    from typer.testing import CliRunner

    from registry.cli import app
    from runners.tracking.store import KIND, Store

    result = CliRunner().invoke(app, ["run", "--file", str(toml), "--store", str(store_dir), "--quiet"])
    assert result.exit_code == 0, result.output
    store = Store.at(store_dir)
    exp = store.client.get_experiment_by_name(experiment)
    (run,) = store.client.search_runs([exp.experiment_id], filter_string=f"tags.`{KIND}` = 'run'")
    return store, run, Path(run.info.artifact_uri.removeprefix("file://"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mlflow_client(db: Path):
    """An MLflow client on a new SQLite database at `db`, made the way subnets makes a store's: a copy of the empty
    database MLflow's migrations made once for this version (runners/tracking/templates.py), not those migrations
    again (1-2 s of CPU each)."""
    from mlflow import MlflowClient

    from runners.tracking.store import new_mlflow_db

    new_mlflow_db(f"sqlite:///{db}")
    return MlflowClient(tracking_uri=f"sqlite:///{db}")


class TrackingServer:
    """A real `mlflow server` on 127.0.0.1 over a sqlite store and an artifact folder under `root`; it can be stopped
    and started again on the same port and stores. MLflow's job runner (huey consumers for its GenAI jobs, about 3 s
    of CPU each at start-up; subnets starts no MLflow job) is off. Its database is made before the first start the way
    subnets makes a store's (from the template: the same tables), not by the server's migrations (2.3 s of CPU and of
    start-up measured here: 8.8 s against 6.5 s). Its `mlflow server` command, which starts uvicorn and waits for it,
    is forked from the tests' preloaded server (tests/preloaded.py), MLflow imported (~3.5 s of CPU each start)."""

    # `python -m mlflow ARGS`, in a session of its own (so that stop() ends uvicorn with it)
    MLFLOW = """
import os, runpy, sys
os.setsid()
sys.argv = ["mlflow", *sys.argv[1:]]
runpy.run_module("mlflow", run_name="__main__", alter_sys=True)
"""

    def __init__(self, root: Path):
        self.root, self.port, self.proc = root, free_port(), None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> None:
        import os
        import time
        import urllib.request

        from runners.tracking.store import new_mlflow_db
        from tests import preloaded

        db = self.root / "server.db"
        if not db.exists():
            new_mlflow_db(f"sqlite:///{db}")
        args = ["server", "--host", "127.0.0.1", "--port", str(self.port), "--backend-store-uri", f"sqlite:///{db}"]
        args += ["--artifacts-destination", str(self.root / "server-artifacts"), "--workers", "1"]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.proc = preloaded.Popen(args, code=self.MLFLOW, env=env, stdout=preloaded.DEVNULL, stderr=preloaded.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/health", timeout=2)
                return
            except OSError:
                assert self.proc.poll() is None, f"the MLflow tracking server exited ({self.proc.returncode})"
                time.sleep(0.3)
        self.stop()
        raise AssertionError("the MLflow tracking server did not start")

    def stop(self) -> None:
        import os
        import signal

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
