"""Run a Python script (``python -c CODE ARGS...``) in its own process, fast.

The crash, concurrency and hostile-store tests run hundreds of small scripts (writers killed
with SIGKILL, readers racing an appender, probes of crafted stores). Each is a real process
of its own: it has its own memory, file descriptors, locks and resource limits, is killed by
a real signal, and its exit status or the signal that killed it is what the test sees. A fresh
interpreter would spend most of a second importing numpy, imgbench and the backends' engines
(several seconds on a busy 2-core machine), so by default each script is forked from a
forkserver that imported them once (``multiprocessing``'s forkserver, started on first use in
each test process, single-threaded when it forks). The script then runs as ``__main__`` with
``sys.argv == ["-c", *args]`` and its stdin/stdout/stderr on pipes, exactly as under
``subprocess.Popen([sys.executable, "-c", code, *args], stdin=PIPE, stdout=PIPE, stderr=PIPE,
text=True)``.

``IMGBENCH_TEST_FRESH_INTERPRETERS=1`` runs every script in a fresh interpreter instead
(``subprocess``), to rule the forkserver out when a test fails.

Differences from a fresh interpreter, none of which the scripts rely on: the preloaded modules
are already imported, and at the end of the script the process exits without running
``atexit`` handlers (as after ``os._exit``); an uncaught exception still prints its traceback
to stderr and exits with status 1, ``sys.exit(n)`` exits with ``n``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time

FRESH = os.environ.get("IMGBENCH_TEST_FRESH_INTERPRETERS", "") not in ("", "0")

_context = None
_lock = threading.Lock()


def _forkserver():
    global _context
    with _lock:
        if _context is None:
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload(["tests._script_preload"])
            _context = ctx
        return _context


def _main(code: str, argv: list[str], stdin, stdout, stderr) -> None:
    """The child: the pipes become fds 0-2, then the script runs as __main__."""
    import builtins

    for conn, fd in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(conn.fileno(), fd)
        conn.close()
    sys.stdin = open(0, encoding="utf-8", closefd=False)
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", closefd=False, buffering=1)
    sys.argv = ["-c", *argv]
    exec(compile(code, "<string>", "exec"), {"__name__": "__main__", "__builtins__": builtins})


class Script:
    """The parts of ``subprocess.Popen`` the tests use, for a script forked from the forkserver."""

    def __init__(self, code: str, args):
        ctx = _forkserver()
        child_in, parent_in = ctx.Pipe(duplex=False)
        parent_out, child_out = ctx.Pipe(duplex=False)
        parent_err, child_err = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_main, args=(code, [str(a) for a in args], child_in, child_out, child_err),
                                 daemon=True)
        self._proc.start()
        for conn in (child_in, child_out, child_err):
            conn.close()
        self.pid = self._proc.pid
        self.stdin = self._adopt(parent_in, "w")
        self.stdout = self._adopt(parent_out, "r")
        self.stderr = self._adopt(parent_err, "r")
        self._readers: dict[str, threading.Thread] = {}
        self._output: dict[str, str] = {}

    @staticmethod
    def _adopt(conn, mode: str):
        fd = os.dup(conn.fileno())
        conn.close()
        return open(fd, mode, encoding="utf-8", buffering=1 if mode == "w" else -1)

    @property
    def returncode(self) -> int | None:
        return self._proc.exitcode

    def poll(self) -> int | None:
        return self._proc.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._proc.join(timeout)
        if self._proc.exitcode is None:
            raise subprocess.TimeoutExpired("script", timeout)
        return self._proc.exitcode

    def send_signal(self, sig: int) -> None:
        if self._proc.exitcode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def _read(self, name: str) -> None:
        stream = getattr(self, name)
        try:
            self._output[name] = stream.read()
        except ValueError:  # closed
            self._output[name] = ""

    def communicate(self, input: str | None = None, timeout: float | None = None) -> tuple[str, str]:
        if self.stdin is not None and not self.stdin.closed:
            try:
                if input:
                    self.stdin.write(input)
                self.stdin.close()
            except BrokenPipeError:
                pass
        for name in ("stdout", "stderr"):
            if name not in self._readers:
                self._readers[name] = threading.Thread(target=self._read, args=(name,), daemon=True)
                self._readers[name].start()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._readers.values():
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                raise subprocess.TimeoutExpired("script", timeout)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()) + 5)
        for stream in (self.stdout, self.stderr):
            stream.close()
        return self._output["stdout"], self._output["stderr"]

    def __del__(self):
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.exitcode is None:
            self.kill()


def start(code: str, *args):
    """``subprocess.Popen([python, "-c", code, *args], stdin/stdout/stderr=PIPE, text=True)``, forked."""
    if FRESH:
        return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return Script(code, args)


CLI = "import runpy, sys; sys.argv[0] = 'imgbench'; runpy.run_module('imgbench.cli', run_name='__main__')"


def run_cli(*args, timeout: float | None = None) -> subprocess.CompletedProcess:
    """``python -m imgbench.cli ARGS`` (the CLI module run as __main__, its exit status the process's)."""
    return run(CLI, *args, timeout=timeout)


def run(code: str, *args, timeout: float | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """``subprocess.run([python, "-c", code, *args], capture_output=True, text=True, timeout=..., check=...)``."""
    proc = start(code, *args)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    result = subprocess.CompletedProcess(["python", "-c", "<script>", *map(str, args)], proc.returncode, out, err)
    if check:
        result.check_returncode()
    return result
