"""`subnets` commands as real processes, forked from one that has already imported what they import.

Each `python -m registry.cli run ...` a test starts spends ~6 s of CPU importing torch, transformers, MLflow and
Optuna before it does anything: over the suite, more CPU than the tests themselves. A test that needs a real
process (its own pid, signals, exit code, stdout, a kill) gets one here without paying for the imports again: a
server process (one per test run, shared by pytest-xdist's test processes, started by the first that needs it)
imports those modules once, then forks a child for each command. The child sets the command's directory,
environment and standard streams, and runs the CLI exactly as `python -m registry.cli` does (`runpy`). The same
idea as the workers' forkserver (runners/queue/local.py).

It exits as the interpreter's shutdown does, but for its last step: the threads it started are joined, its atexit
handlers run and its standard streams are flushed, then it leaves with os._exit, as multiprocessing's children (the
workers) do. The shutdown's last step tears down every module, so it writes to, and copies page by page, the ~1M
objects the child shares with the server: 0.35 s of CPU a command, over ~100 commands a suite. An exception other
than SystemExit still goes through the whole shutdown (its traceback printed by the interpreter).

pytest-xdist's test processes are forked from it too (`run_forked_test_process`, set up by tests/conftest.py for
`-n N`): they start with those modules imported, so collecting the suite costs each ~4 s of CPU instead of ~12.

What a forked child cannot give, so those tests start a fresh interpreter instead:
- a process that has not imported torch (the coordinator's import checks);
- settings read once at import time (`HF_HUB_OFFLINE` and `HF_HOME` by huggingface_hub, `PYTHONPATH`).

A command that may start local workers (`--workers`) gets their forkserver the same way: a child forked before the
command runs (as clean as the server: imports done, nothing opened, one thread) waits to become the forkserver
multiprocessing would otherwise start as a fresh interpreter, importing the same modules again (~6 s of CPU each
time). The process tree is the real one: the forkserver is the command's child, each worker the forkserver's.

A test's own Python code run as a process of its own (`python -c CODE args`: a process killed while it writes, one
of several racing for the same row) is forked the same way (`code=`).

`Popen` and `run` follow subprocess's signatures for what the tests use.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from registry.cli.running import WORKER_MODULES

# What the commands import: the CLI and a worker's modules (WORKER_MODULES, as the workers' forkserver), the report's
PRELOAD = [*WORKER_MODULES, "reports.build"]

PIPE, STDOUT, DEVNULL = subprocess.PIPE, subprocess.STDOUT, subprocess.DEVNULL


# --- the server (this module run as a script) ---


def _serve(listener: socket.socket, owner: int) -> dict | None:
    """Fork a child for each request; report each child's pid, then its exit status, on the request's connection.
    Returns (in a child only) the request to run; returns None in the server once the `owner` process has ended."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that SIGCHLD writes to the wakeup fd
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "accept")
    sel.register(wake_r, selectors.EVENT_READ, "child")
    owner_fd = os.pidfd_open(owner)  # readable once the owner has ended
    sel.register(owner_fd, selectors.EVENT_READ, "owner")
    waiting: dict[int, socket.socket] = {}  # child pid -> its request's connection
    while True:
        for key, _ in sel.select():
            if key.data == "owner":
                return None
            if key.data == "child":
                os.read(wake_r, 4096)
                while waiting:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                    if pid == 0:
                        break
                    conn = waiting.pop(pid, None)
                    if conn is not None:
                        _send(conn, {"returncode": os.waitstatus_to_exitcode(status)})
                        conn.close()
            if key.data == "accept":
                conn, _ = listener.accept()
                msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
                request = json.loads(msg)
                pid = os.fork()
                if pid == 0:  # the child: leave the server's loop, keep only the command's streams
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    sel.close()
                    os.close(wake_r)
                    os.close(wake_w)
                    os.close(owner_fd)
                    listener.close()
                    for other in (conn, *waiting.values()):  # this request's, and those of the running commands
                        other.close()
                    for fd, target in zip(fds, (0, 1, 2)):
                        os.dup2(fd, target)
                    for fd in set(fds):
                        os.close(fd)
                    return request
                for fd in fds:
                    os.close(fd)
                waiting[pid] = conn
                _send(conn, {"pid": pid})


def _send(conn: socket.socket, msg: dict) -> None:
    try:
        conn.sendall(json.dumps(msg).encode() + b"\n")
    except OSError:  # the test that asked is gone
        pass


def _run_command(request: dict) -> None:
    """In the child: the command, as `python -m registry.cli *argv` (or, with `code`, `python -c code *argv`) in `cwd`
    with `env` would run it."""
    import runpy

    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None  # read TMPDIR again at first use, as a fresh interpreter does
    sys.stdin = open(0, closefd=False)
    # stdout and stderr now are the command's files: buffered as a fresh interpreter's would be
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    sys.stdout = open(1, "w", closefd=False, buffering=1 if unbuffered else -1)
    sys.stderr = open(2, "w", closefd=False, buffering=1)
    if request.get("code") is not None:  # as `python -c`: the code runs as __main__, its arguments after "-c"
        import types

        sys.argv = ["-c", *request["argv"]]
        sys.modules["__main__"] = main = types.ModuleType("__main__")
        exec(compile(request["code"], "<string>", "exec"), main.__dict__)
        return
    sys.argv = ["-m", *request["argv"]]
    if {"--workers", "-w"} & set(request["argv"]):
        _keep_a_forkserver()
    runpy.run_module("registry.cli", run_name="__main__", alter_sys=True)


FORKSERVER_CODE = "from multiprocessing.forkserver import main"  # how multiprocessing starts its forkserver


def _keep_a_forkserver() -> None:
    """Fork, now, the child that becomes this command's forkserver when the command starts one: multiprocessing
    starts it through `util.spawnv_passfds(python, [python, "-c", code], fds)`, which this replaces, for that one
    call, by handing the code, the fds, the environment and the directory to the waiting child. Anything else
    (the resource tracker, a second forkserver, spawned workers) still starts a fresh interpreter."""
    from multiprocessing import util

    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        ours.close()
        code = 1
        try:
            code = _become_forkserver(theirs)
        except SystemExit as e:  # the forkserver's loop ends so once the command has let go of it
            code = _exit_code(e)
        finally:
            os._exit(code)  # nothing of the command's (atexit, buffered streams) runs here
    theirs.close()
    start_fresh = util.spawnv_passfds

    def spawnv_passfds(path, args, passfds):
        if ours.fileno() < 0 or not (len(args) >= 2 and args[-2] == "-c" and args[-1].startswith(FORKSERVER_CODE)):
            return start_fresh(path, args, passfds)
        request = {"code": args[-1], "fds": list(passfds), "env": dict(os.environ), "cwd": os.getcwd()}
        socket.send_fds(ours, [json.dumps(request).encode()], list(passfds))
        ours.close()
        return pid

    util.spawnv_passfds = spawnv_passfds


def _become_forkserver(conn: socket.socket) -> int:
    """In the waiting child: once the command starts its forkserver, run multiprocessing's code for it with the fds
    it passed under the same numbers and nothing else open, as the fresh interpreter would have them; return at
    once if the command ends first."""
    import fcntl

    msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 16)
    if not msg:
        return 0
    request = json.loads(msg)
    lifted = [fcntl.fcntl(fd, fcntl.F_DUPFD, 1024) for fd in fds]  # above every number they are to take
    os.closerange(3, 1024)
    for fd, target in zip(lifted, request["fds"]):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None  # read TMPDIR again at first use, as a fresh interpreter does
    exec(request["code"], {"__name__": "__main__"})
    return 0


def _main() -> None:
    import gc
    import importlib

    gc.disable()  # as the workers' forkserver imports (runners/queue/forkserver_start.py)
    address, owner, preload = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    for module in preload:
        importlib.import_module(module)
    # forking copies only the calling thread: nothing imported may have started another one
    assert threading.active_count() == 1, threading.enumerate()
    # what is imported now stays: out of the collector's sight, so that a child's collections (the last one at its
    # exit too) skip it rather than walk, and so copy page by page, ~1M objects: 2.5 to 0.6 s of CPU a command
    gc.freeze()
    gc.enable()
    listener = socket.socket(socket.AF_UNIX)
    if os.path.exists(address):  # left by a server that was killed
        os.unlink(address)
    listener.bind(address)
    listener.listen(64)
    print("ready", flush=True)
    request = _serve(listener, owner)
    if request is not None:
        _run_and_exit(request)
    shutil.rmtree(os.path.dirname(address), ignore_errors=True)


def _exit_code(e: SystemExit) -> int:
    """A SystemExit's exit code as the interpreter reads it: None is 0, a number the code, anything else is printed
    to stderr and is 1."""
    if e.code is None or isinstance(e.code, int):
        return e.code or 0
    print(e.code, file=sys.stderr)
    return 1


def _run_and_exit(request: dict) -> None:
    """In the child: the command, then the interpreter's shutdown up to its module teardown (the module's docstring)."""
    import atexit

    try:
        _run_command(request)
        code = 0
    except SystemExit as e:
        code = _exit_code(e)
    threading._shutdown()  # the shutdown's first steps, in its order: non-daemon threads, atexit, the streams
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader gone, a stream closed: as the interpreter, nothing more to write
            pass
    os._exit(code & 0xFF)


# --- the client (in the test process) ---


class _Server:
    """The server of test run `run`, found in a directory named by it, or started there (under a lock: the first test
    process that needs one starts it, the others wait and find it), importing `preload`. It ends when the `owner`
    process does, its directory removed."""

    def __init__(self, run: str, owner: int, preload: list[str] = PRELOAD):
        self.run, self.owner = run, owner
        self.dir = Path(tempfile.gettempdir()) / f"subnets-preloaded-{run}"
        self.dir.mkdir(exist_ok=True)
        self.address = str(self.dir / "s")
        with open(self.dir / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            known = self.dir / "pid"
            self.pid = int(known.read_text()) if known.exists() else 0
            if self.alive():
                return
            root = Path(__file__).resolve().parents[1]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
            # its own stderr: one inherited would stay open, for whoever reads the starter's to its end, until the
            # run is over
            with open(self.dir / "stderr", "wb") as err:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "tests.preloaded", self.address, str(owner), *preload],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    cwd=root,
                    env=env,
                )
            line = proc.stdout.readline()
            proc.stdout.close()
            if line.strip() != b"ready":
                why = (self.dir / "stderr").read_text(errors="replace")
                raise RuntimeError(f"the preloaded server did not start (exit {proc.wait()}):\n{why}")
            self.pid = proc.pid
            known.write_text(str(self.pid))

    def alive(self) -> bool:
        try:
            return self.pid > 0 and psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False


_server: _Server | None = None


# In a test process forked from the server (run_forked_test_process below): "RUN:OWNER" of that server
FORKED_FROM_ENV = "SUBNETS_TESTS_PRELOADED_SERVER"


def _the_server() -> _Server:
    """The server of this test run: one for all of pytest-xdist's test processes (the server they were forked from,
    or found by their PYTEST_XDIST_TESTRUNUID, the same in each), ending with the process that started them; without
    xdist, this process's own."""
    global _server
    if _server is None or not _server.alive():
        forked_from, run = os.environ.get(FORKED_FROM_ENV), os.environ.get("PYTEST_XDIST_TESTRUNUID")
        if forked_from:
            name, owner = forked_from.rsplit(":", 1)
            _server = _Server(name, int(owner))
        else:
            _server = _Server(run, os.getppid()) if run else _Server(f"pid{os.getpid()}", os.getpid())
    return _server


class Popen:
    """A `subnets` command (its arguments, without the program) forked from the preloaded server, with what the
    tests use of subprocess.Popen: pid, returncode, stdout/stderr, poll, wait, communicate, send_signal,
    terminate, kill. With `code`, instead Python code run as `python -c code *args` runs it."""

    def __init__(
        self, args, *, env=None, cwd=None, stdin=DEVNULL, stdout=None, stderr=None, text=False, code: str | None = None
    ):
        self.args = list(args)
        self.returncode: int | None = None
        theirs: list[int] = []  # the fds the child gets: closed here once sent
        out_fd, self.stdout = self._stream(stdout, 1, text, theirs)
        err_fd, self.stderr = (out_fd, None) if stderr == STDOUT else self._stream(stderr, 2, text, theirs)
        if stdin is None:  # this process's own
            in_fd = os.dup(0)
        else:
            assert stdin == DEVNULL, "stdin: DEVNULL or None"
            in_fd = os.open(os.devnull, os.O_RDONLY)
        theirs.append(in_fd)
        request = {
            "argv": self.args,
            "code": code,
            "env": dict(os.environ if env is None else env),
            "cwd": str(cwd or os.getcwd()),
        }
        self._conn = socket.socket(socket.AF_UNIX)
        try:
            self._conn.connect(_the_server().address)
            socket.send_fds(self._conn, [json.dumps(request).encode()], [in_fd, out_fd, err_fd])
        finally:
            for fd in theirs:
                os.close(fd)
        self._received = b""  # the server's messages, one JSON object a line
        self.pid = json.loads(self._line(None))["pid"]

    @staticmethod
    def _stream(how, ours_fd: int, text: bool, theirs: list):
        if how == PIPE:
            r, w = os.pipe()
            theirs.append(w)
            return w, open(r, "r" if text else "rb", encoding="utf-8" if text else None)
        if how == DEVNULL:
            fd = os.open(os.devnull, os.O_WRONLY)
            theirs.append(fd)
            return fd, None
        if how is None:  # inherit this process's stream (pytest's capture, where it captures)
            fd = os.dup(ours_fd)
            theirs.append(fd)
            return fd, None
        fd = os.dup(how.fileno())  # an open file
        theirs.append(fd)
        return fd, None

    def poll(self) -> int | None:
        return self._status(0.0)

    def wait(self, timeout: float | None = None) -> int:
        code = self._status(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return code

    def _status(self, timeout: float | None) -> int | None:
        """The exit status, once the server has sent it (waiting up to `timeout` seconds for it, None: forever)."""
        if self.returncode is None:
            line = self._line(timeout)
            if line is not None:
                self.returncode = json.loads(line)["returncode"]
                self._conn.close()
        return self.returncode

    def _line(self, timeout: float | None) -> bytes | None:
        """The server's next message, or None if none came within `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._received:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self._conn], [], [], left)[0]:
                return None
            data = self._conn.recv(4096)
            if not data:  # the server died before the child: should not happen, and must not pass silently
                raise RuntimeError(f"the preloaded server lost the command {self.args}")
            self._received += data
        line, self._received = self._received.split(b"\n", 1)
        return line

    def communicate(self, timeout: float | None = None):
        """Read stdout and stderr to their end (each on its own thread, so that neither pipe fills), then wait."""
        results: dict[str, object] = {}
        readers = [
            threading.Thread(target=lambda n=name, f=f: results.__setitem__(n, f.read()), daemon=True)
            for name, f in (("stdout", self.stdout), ("stderr", self.stderr))
            if f is not None
        ]
        for t in readers:
            t.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in readers:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        for f in (self.stdout, self.stderr):
            if f is not None:
                f.close()
        return results.get("stdout"), results.get("stderr")

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def run(args, *, env=None, cwd=None, capture_output=False, text=False, timeout=None, check=False, code=None):
    """subprocess.run for a `subnets` command (its arguments, without the program), or for `code` as `python -c`
    runs it, forked preloaded."""
    how = PIPE if capture_output else None
    proc = Popen(args, env=env, cwd=cwd, stdout=how, stderr=how, text=text, code=code)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if check:
        result.check_returncode()
    return result


# --- pytest-xdist's test processes, forked from the server ---


def forked_test_process_python() -> str:
    """What to give pytest-xdist as a test process's `python` (`--tx popen//python=...`): a stand-in that runs the
    test process forked from the server (run_forked_test_process), so that it starts with torch, transformers,
    MLflow and Optuna imported: collecting then takes ~4 s of CPU instead of ~12."""
    root = Path(__file__).resolve().parents[1]
    code = f"import sys; sys.path.insert(0, {str(root)!r}); import tests.preloaded as p; p.run_forked_test_process()"
    return shlex.join([sys.executable, "-c", code])


def run_forked_test_process() -> None:
    """Run as `python -u -c CODE` would (this process's arguments: execnet starts each test process so), in a child
    forked from the server of this test run (started here, by the first test process, if it is not yet; it ends
    with the run's process, xdist's controller, this one's parent), with this process's standard streams. This
    process stays as the test process's stand-in for xdist: a SIGTERM it gets is passed on, and it exits as the child
    did. Ctrl-C at a terminal reaches the child itself (the same process group), so here it is ignored."""
    argv = sys.argv[1:]
    code, args = argv[argv.index("-c") + 1], argv[argv.index("-c") + 2 :]
    # a stand-in started from a test process forked from a server (a pytest run inside a test) uses that server
    os.environ.setdefault(FORKED_FROM_ENV, f"xdist-{os.getppid()}:{os.getppid()}")
    _the_server()
    child = Popen(args, code=code, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdin=None)  # -u
    signal.signal(signal.SIGTERM, lambda signum, _frame: child.send_signal(signum))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    returncode = child.wait()
    if returncode < 0:  # ended by a signal: so is this
        signal.signal(-returncode, signal.SIG_DFL)
        os.kill(os.getpid(), -returncode)
    sys.exit(returncode)


if __name__ == "__main__":
    _main()
