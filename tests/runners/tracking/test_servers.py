"""Servers a user starts (`subnets ui`) bind 127.0.0.1 and leave no process behind, even when killed with
SIGKILL; names that reach MLflow metric keys are made safe."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from registry.cli import app
from runners.run.steplog import metric_safe
from tests.conftest import tiny_toml
from tests.helpers import free_port


def _children(pid: int) -> list[int]:
    """Every live process whose parent is `pid`."""
    return [p.pid for p in psutil.Process(pid).children() if p.status() != psutil.STATUS_ZOMBIE]


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on `port` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        host, p = local.split(":")
        if int(p, 16) == port and state == "0A":  # 0A = LISTEN
            found.add(socket.inet_ntoa(bytes.fromhex(host)[::-1]))
    return found


def test_ui_serves_the_store_on_localhost_and_a_sigkill_leaves_nothing(write_toml, tmp_path):
    toml = write_toml(tiny_toml(max_steps=1))
    assert (
        CliRunner().invoke(app, ["run", "--file", str(toml), "--store", str(tmp_path / "s"), "--quiet"]).exit_code == 0
    )
    port = free_port()
    ui = subprocess.Popen(
        [sys.executable, "-m", "registry.cli", "ui", "--store", str(tmp_path / "s"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline, names = time.time() + 90, None
        while time.time() < deadline and names is None:
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search",
                    data=json.dumps({"max_results": 10}).encode(),
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(req, timeout=3) as r:
                    names = {e["name"] for e in json.loads(r.read())["experiments"]}
            except OSError:
                assert ui.poll() is None, "subnets ui exited"
                time.sleep(0.5)
        assert names is not None and "tiny" in names, "the MLflow UI did not answer"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
        assert _listening_addresses(port) == {"127.0.0.1"}
        assert _children(ui.pid) == []  # one process serves it all
    finally:
        ui.kill()
        ui.wait(timeout=10)
    time.sleep(0.5)
    assert _listening_addresses(port) == set()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)


def test_ui_and_dashboard_refuse_a_missing_store_without_creating_one(tmp_path):
    for cmd in (["ui"], ["dashboard"]):
        result = CliRunner().invoke(app, [*cmd, "--store", str(tmp_path / "typo")])
        assert result.exit_code in (1, 2) and "run `subnets run`" in result.output
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize(
    "name, safe",
    [
        ("lexical_overlap/non_entailment", "lexical_overlap/non_entailment"),
        ("x/../../etc", "x/__/__/etc"),
        ("a//b", "a/_/b"),
        ("/abs", "_/abs"),
        ("<img onerror=x>", "_img onerror_x_"),
    ],
)
def test_subcase_names_become_metric_keys_mlflow_accepts(name, safe):
    from mlflow.utils.validation import _validate_metric_name

    assert metric_safe(name) == safe
    _validate_metric_name(f"ood.hans.{metric_safe(name)}.accuracy")  # MLflow's own check: raises if unsafe
    if ".." in name:
        with pytest.raises(Exception):
            _validate_metric_name(f"ood.hans.{name}.accuracy")
