"""The tests' preloaded `subnets` processes behave as `python -m registry.cli` processes do, where tests look:
exit codes, signals, streams, environment, directory, and their own pid and children."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests import preloaded
from tests.conftest import tiny_toml
from tests.helpers import PROJECT_ROOT


def test_a_command_gets_its_arguments_directory_environment_and_exit_code(tmp_path):
    (tmp_path / "experiments.toml").write_text("[[experiment]]\nname = 1\n")  # an invalid file, found in `cwd`
    env = {**os.environ, "COLUMNS": "300", "SUBNETS_TEST_MARK": "seen"}
    ours = preloaded.run(["validate"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    real = subprocess.run(
        [sys.executable, "-m", "registry.cli", "validate"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert ours.returncode == real.returncode == 2
    assert (ours.stdout, ours.stderr) == (real.stdout, real.stderr)
    assert "experiments.toml" in ours.stdout + ours.stderr and "Traceback" not in ours.stdout + ours.stderr


CODE = """
import os, sys
print(__name__, sys.argv, os.getcwd(), os.environ.get("SUBNETS_TEST_MARK"))
if sys.argv[1] == "fail":
    raise ValueError("as asked")
sys.exit(int(sys.argv[1]))
"""


@pytest.mark.parametrize("arg", ["3", "fail"])
def test_code_runs_as_python_c_runs_it(tmp_path, arg):
    """With `code`, the process runs it as `python -c code args` does: as __main__, with its arguments after "-c",
    in its directory and environment, and an exception's traceback and exit code 1."""
    env = {**os.environ, "SUBNETS_TEST_MARK": "seen"}
    ours = preloaded.run([arg], code=CODE, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    real = subprocess.run([sys.executable, "-c", CODE, arg], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert ours.returncode == real.returncode == (3 if arg == "3" else 1)
    assert ours.stdout == real.stdout == f"__main__ ['-c', '{arg}'] {tmp_path} seen\n"
    if arg == "fail":
        assert ours.stderr.startswith("Traceback") and real.stderr.startswith("Traceback")
        assert ours.stderr.splitlines()[-1] == real.stderr.splitlines()[-1] == "ValueError: as asked"
    else:
        assert ours.stderr == real.stderr == ""


EXIT = """
import atexit, sys, threading, time
atexit.register(lambda: print("atexit ran"))
def late():
    time.sleep(0.3)
    print("thread finished")
threading.Thread(target=late).start()
sys.stdout.write("no newline; ")
arg = sys.argv[1]
sys.exit(int(arg) if arg.isdigit() else arg)
"""


@pytest.mark.parametrize("arg", ["0", "7", "a message"])
def test_a_process_ends_as_the_interpreter_ends_one(tmp_path, arg):
    """The end of a forked process (os._exit without the module teardown) does what the interpreter's shutdown does
    first, in its order: non-daemon threads joined, atexit handlers run, buffered output flushed, and the exit code
    read from sys.exit's argument (a message goes to stderr, code 1)."""
    ours = preloaded.run([arg], code=EXIT, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    real = subprocess.run([sys.executable, "-c", EXIT, arg], cwd=tmp_path, capture_output=True, text=True)
    assert (ours.returncode, ours.stdout, ours.stderr) == (real.returncode, real.stdout, real.stderr)
    assert real.stdout == "no newline; thread finished\natexit ran\n"
    assert real.returncode == {"0": 0, "7": 7, "a message": 1}[arg]
    assert real.stderr == ("a message\n" if arg == "a message" else "")


def test_stderr_into_stdout_and_a_pipe_read_as_the_command_writes():
    proc = preloaded.Popen(["--help"], stdout=preloaded.PIPE, stderr=preloaded.STDOUT, text=True)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and err is None and "validate" in out and "sweep" in out


def test_a_signal_ends_the_command_with_that_signal_and_it_is_a_process_of_its_own(tmp_path):
    """A command started here is a real process: its own pid, a child of the preloaded server (not of this one),
    killed by a signal as any process is, which poll and wait then report as subprocess does (-signal)."""
    silent = socket.socket()  # a tracking server that accepts connections and never answers: the command waits
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
    (tmp_path / "experiments.toml").write_text(tiny_toml())
    try:
        proc = preloaded.Popen(
            ["plan", "--store", str(tmp_path / "s"), "--tracking-uri", uri],
            stdout=preloaded.DEVNULL,
            stderr=preloaded.DEVNULL,
            cwd=tmp_path,
        )
        assert psutil.Process(proc.pid).ppid() != os.getpid()
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=0.2)
        assert proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
        assert proc.poll() == -signal.SIGKILL
    finally:
        silent.close()


def test_a_command_that_exits_at_once_is_reported_however_late_it_is_asked():
    proc = preloaded.Popen(["--help"], stdout=preloaded.DEVNULL, stderr=preloaded.DEVNULL)
    time.sleep(1.0)  # long exited: its pid and its status may arrive together
    deadline = time.monotonic() + 60
    while proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert proc.returncode == 0


def _forked_from_the_server(pid: int) -> bool:
    return f"tests.preloaded {preloaded._the_server().address}" in " ".join(psutil.Process(pid).cmdline())


def test_workers_fork_from_a_forkserver_that_is_the_commands_child_and_forked_from_the_server(write_toml, tmp_path):
    """`--workers 2`: the forkserver is the command's child (as multiprocessing's own would be), forked from the
    server's state rather than a fresh `python -c "from multiprocessing.forkserver import main ..."`, and each worker
    is the forkserver's child; none of them outlives the command, nor does the child kept for a command that
    started no forkserver."""
    toml = write_toml(tiny_toml(max_steps=10).replace("rate = 0.3", "rate = [0.2, 0.3]"))
    args = ["run", "--file", str(toml), "--store", str(tmp_path / "s"), "--workers", "2", "--quiet"]
    # run in this test's directory, as what they fork is: so told from the other test processes' commands
    proc = preloaded.Popen(args, stdout=preloaded.PIPE, stderr=preloaded.STDOUT, text=True, cwd=tmp_path)
    deadline = time.monotonic() + 300
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, "no workers seen"
        try:
            servers = [c for c in psutil.Process(proc.pid).children() if len(c.children()) == 2]
        except psutil.NoSuchProcess:
            servers = []
        if servers:
            break
        time.sleep(0.05)
    (forkserver,) = servers
    workers = forkserver.children()
    assert _forked_from_the_server(forkserver.pid)
    assert all(w.name() == forkserver.name() for w in workers)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    # nothing left: no forkserver starts
    again = preloaded.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert again.returncode == 0 and "0 to run" in again.stdout, again.stdout + again.stderr
    deadline = time.monotonic() + 30
    server = preloaded._the_server().pid
    while left := [p.pid for p in psutil.process_iter() if p.pid != server and _alive_and_ours(p, tmp_path)]:
        assert time.monotonic() < deadline, f"left behind: {left}"
        time.sleep(0.1)


def _alive_and_ours(p: psutil.Process, cwd: Path) -> bool:
    """Forked from the server for a command run in `cwd` (as each process it forks, a command's children too)."""
    try:
        return p.status() != psutil.STATUS_ZOMBIE and _forked_from_the_server(p.pid) and p.cwd() == str(cwd)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def test_a_runs_test_processes_share_one_server_that_ends_with_the_run(tmp_path):
    """The first test process to need the server starts it; the others find it by the run's id (xdist's
    PYTEST_XDIST_TESTRUNUID); it outlives the process that started it, and ends, its directory removed, with the
    run's process (xdist's controller). Here with a server that preloads nothing (the suite's own is in use)."""
    import uuid

    run = f"probe-{uuid.uuid4().hex[:8]}"
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    find = f"from tests.preloaded import _Server; s = _Server({run!r}, {owner.pid}, ['json']); print(s.pid, s.dir)"
    try:
        first, second = (
            subprocess.run([sys.executable, "-c", find], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
            for _ in range(2)
        )
        assert first.returncode == second.returncode == 0, first.stderr + second.stderr
        assert first.stdout == second.stdout  # the second found the server the first started, which outlived it
        pid, folder = first.stdout.split()
        server = psutil.Process(int(pid))
        assert server.status() != psutil.STATUS_ZOMBIE and Path(folder, "s").exists()
    finally:
        owner.kill()
        owner.wait()
    server.wait(timeout=30)  # the run is over: so is its server
    assert not Path(folder).exists()


STAND_IN = """
import os, sys
print(os.getppid(), "torch" in sys.modules, sys.argv, sys.stdin.readline().strip(), sep="|", flush=True)
if sys.argv[1] == "wait":
    sys.stdin.readline()  # until the stand-in is signalled (the signal passed on ends this process)
sys.exit(int(sys.argv[1]) if sys.argv[1] != "wait" else 0)
"""


@pytest.mark.parametrize("arg", ["5", "wait"])
def test_a_test_processs_stand_in_runs_its_code_forked_from_the_server(arg):
    """What execnet starts for a pytest-xdist test process (`python -u -c CODE`, under the `python` conftest gives it)
    runs CODE in a child of the server, torch already imported, on the stand-in's stdin and stdout; the child's exit
    code, or the signal that ended it, is the stand-in's."""
    server = preloaded._the_server()
    env = {**os.environ, preloaded.FORKED_FROM_ENV: f"{server.run}:{server.owner}"}
    args = [*preloaded.shlex.split(preloaded.forked_test_process_python()), "-u", "-c", STAND_IN, arg]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    proc.stdin.write("hello\n")
    proc.stdin.flush()
    parent, imported, argv, line = proc.stdout.readline().rstrip("\n").split("|")
    assert int(parent) == server.pid and imported == "True" and line == "hello"
    assert argv == f"['-c', '{arg}']"  # as `python -c`: its arguments after "-c"
    if arg == "wait":
        proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == (5 if arg == "5" else -signal.SIGTERM)


@pytest.mark.skipif("PYTEST_XDIST_WORKER" not in os.environ, reason="a pytest-xdist test process (-n N) is forked")
def test_an_xdist_test_process_is_forked_from_the_server():
    assert preloaded.FORKED_FROM_ENV in os.environ
    assert psutil.Process().ppid() == preloaded._the_server().pid
