"""Storage trouble: an unreachable tracking server, a store or cache that cannot be written, a full disk. Each
is a clear error before any work starts (exit 2, no traceback, nothing written), or a clean stop that a rerun
resumes."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from registry.cli import app
from runners.tracking.store import KIND, Store
from tests import preloaded
from tests.conftest import tiny_toml
from tests.helpers import free_port
from tests.preloaded import PIPE, STDOUT


def _cli(args: list[str], env: dict | None = None, timeout: float = 120):
    started = time.monotonic()
    proc = preloaded.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


def _at_once(commands: list[list[str]], store: Path, env: dict | None) -> list[tuple[int, str, float]]:
    """Start the commands at once; each one's code, output and seconds, read when it is seen to have ended (never
    before it did)."""
    started = time.monotonic()
    procs = [
        preloaded.Popen([*args, "--store", str(store)], env=env, stdout=PIPE, stderr=STDOUT, text=True)
        for args in commands
    ]
    results = []
    for proc in procs:
        output, _ = proc.communicate(timeout=120)
        results.append((proc.returncode, output, time.monotonic() - started))
    return results


@pytest.fixture
def silent_server():
    """A port that accepts connections and never answers (a hung server: the worst kind)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held, stop = [], threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                pass

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    for c in held:
        c.close()
    sock.close()


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_an_unreachable_tracking_server_is_an_error_within_10_s(write_toml, tmp_path, silent_server, kind):
    import os

    uri = f"http://127.0.0.1:{free_port()}" if kind == "refused" else silent_server
    toml = write_toml(tiny_toml(max_steps=1))
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    # The four commands run at once (each mostly waits on the server). The 10 s are what the unreachable server may
    # cost on top of starting them, so the same four started at once against a local store, timed here beside them,
    # are added: a slow or loaded machine does not fail the test, minutes of MLflow's own retries still would.
    commands = (["run", "--file", str(toml)], ["plan", "--file", str(toml)], ["report"], ["query", "select 1"])
    startup = max(s for _, _, s in _at_once([["plan", "--file", str(toml)]] * 4, tmp_path / "unused", None))
    for args, (code, output, seconds) in zip(commands, _at_once(commands, tmp_path / "s", env)):
        assert code == 2, (args, output)
        assert seconds < 10 + startup, (args, seconds, startup)
        assert "Traceback" not in output and f"the tracking server {uri} does not answer" in output, (args, output)
    assert not (tmp_path / "s" / "mlflow.db").exists() and not list((tmp_path / "s").glob("mlartifacts"))


def _mount_tmpfs(path: Path, options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root and mount rights): {proc.stderr.strip()}")


@pytest.fixture
def mounts():
    made: list[Path] = []
    yield lambda path, options: (_mount_tmpfs(path, options), made.append(path))
    for path in reversed(made):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.mark.parametrize("where", ["store", "cache"])
def test_an_unwritable_store_or_cache_is_refused_before_any_work(write_toml, tmp_path, mounts, where):
    store = tmp_path / "s"
    target = store if where == "store" else store / ".subnets"
    mounts(target, "ro,size=1m")
    toml = write_toml(tiny_toml(max_steps=1))
    result = CliRunner().invoke(app, ["run", "--file", str(toml), "--store", str(store), "--quiet"])
    assert result.exit_code == 2, result.output
    assert f"cannot write to {target}: Read-only file system" in result.output and "Traceback" not in result.output
    assert "fine-tun" not in result.output  # refused before any work
    assert not (store / "mlflow.db").exists()


def test_a_full_disk_stops_the_run_cleanly_and_a_rerun_resumes(write_toml, tmp_path, mounts):
    """A store on a 1.25 MB disk (the finished run needs 1.4 MB): the run stops with a clear message when the disk
    fills; with room made, the same command finishes the run."""
    store = tmp_path / "s"
    mounts(store, "size=1250k")
    toml = write_toml(
        tiny_toml(max_steps=6).replace("n_id_eval = 64", "n_id_eval = 300") + "\n[experiment.cka]\nexamples = 64\n"
    )
    first = CliRunner().invoke(app, ["run", "--file", str(toml), "--store", str(store), "--quiet"])
    assert first.exit_code == 2, first.output
    assert "No space left on device" in first.output or "disk is full" in first.output, first.output
    assert "Traceback" not in first.output
    subprocess.run(["mount", "-o", "remount,size=64m", str(store)], check=True)
    second = CliRunner().invoke(app, ["run", "--file", str(toml), "--store", str(store), "--quiet"])
    assert second.exit_code == 0, second.output
    st = Store.at(store)
    exp = st.client.get_experiment_by_name("tiny")
    finished = st.client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`{KIND}` = 'run' and attributes.status = 'FINISHED'"
    )
    assert len(finished) == 1


def test_an_unreachable_queue_storage_is_refused_before_anything_is_written(write_toml, tmp_path):
    """A PostgreSQL --storage that refuses connections: one line naming it (password hidden), exit 2, and no store
    (mlflow.db, optuna.db, .subnets/) left behind."""
    toml = write_toml(tiny_toml(max_steps=1))
    url = f"postgresql://user:secretpw@127.0.0.1:{free_port()}/queue"
    code, output, _ = _cli(["run", "--file", str(toml), "--store", str(tmp_path / "s"), "--storage", url])
    assert code == 2, output
    lines = [x for x in output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("cannot reach the queue storage postgresql://user:***@127.0.0.1:")
    assert "secretpw" not in output and "Traceback" not in output
    assert not (tmp_path / "s").exists()
