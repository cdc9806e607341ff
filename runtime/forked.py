"""Run a function in a forked child process.

For code that may crash the process or leave global state behind (the driver's builds of new
modules, LLVM's SPIR-V backend, JIT-run kernels in tests): the parent gets the child's result, or its exception, or a
``ChildCrashed`` with what the child wrote to stderr, or a ``ChildTimedOut`` (the child is
killed) when it does not end within the timeout.

Forking a process that has other threads copies only the forking thread: a lock another
thread held at that moment stays held in the child forever.  A caller whose child takes
such a lock (llvmlite's, around every call into LLVM) passes ``while_forking``: a context
manager held across ``fork()`` that keeps the other threads out of that code.

The result comes back through a temporary file, not a pipe: a child forked by another
thread at the same time inherits this one's descriptors, and a pipe would not reach end of
file until that unrelated child ended too.  The parent waits for the child's exit instead.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import tempfile
import time

from cmlang import limits


class ChildCrashed(Exception):
    """The child ended without a result (a signal, a fatal error, ``exit``)."""

    def __init__(self, status: int, log: str):
        self.status, self.log = status, log
        super().__init__(f"the child process ended without a result (wait status {status})"
                         + (f":\n{log}" if log else ""))


class ChildTimedOut(Exception):
    """The child did not end within ``timeout`` seconds; it was killed."""

    def __init__(self, timeout: float, log: str):
        self.timeout, self.log = timeout, log
        super().__init__(f"the child process did not finish in {timeout:g} s (killed)"
                         + (f":\n{log}" if log else ""))


def call_in_child(fn, *args, timeout=None, while_forking=None):
    """``fn(*args)`` evaluated in a forked child; its result (or the exception it raised)
    comes back pickled.  ``timeout``: seconds to wait (default ``CMLANG_CHILD_TIMEOUT_S``);
    ``while_forking``: a context manager factory held across the fork."""
    timeout = limits.CHILD_SECONDS.value if timeout is None else timeout
    with tempfile.TemporaryFile() as result, tempfile.TemporaryFile() as stderr:
        with (while_forking or contextlib.nullcontext)():
            pid = os.fork()
        if pid == 0:                          # the child: never returns
            try:
                os.dup2(stderr.fileno(), 2)
                _run_and_write(fn, args, result.fileno())
            finally:
                os._exit(0)
        try:
            status = _wait(pid, timeout)
        except BaseException:                 # KeyboardInterrupt: leave no child behind
            _kill(pid)
            raise
        if status is None:
            _kill(pid)
            raise ChildTimedOut(timeout, _read(stderr).decode("utf-8", "replace").strip())
        data = _read(result)
        if not data:
            raise ChildCrashed(status, _read(stderr).decode("utf-8", "replace").strip())
    try:
        kind, value = pickle.loads(data)
    except Exception as e:   # an exception type that cannot be rebuilt from its args
        raise RuntimeError(f"the child's result could not be read back: {e}") from None
    if kind == "raised":
        raise value
    return value


def _run_and_write(fn, args, fd):
    try:
        payload = ("ok", fn(*args))
    except BaseException as e:    # noqa: BLE001  (everything goes to the parent)
        payload = ("raised", e)
    try:
        data = pickle.dumps(payload)
    except Exception:             # an unpicklable result or exception
        data = pickle.dumps(("raised", RuntimeError(f"{type(payload[1]).__name__}: {payload[1]}")))
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read(file) -> bytes:
    file.seek(0)
    return file.read()


def _wait(pid: int, timeout: float):
    """The child's wait status, or None when it is still running after ``timeout`` s."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):     # no pidfd (Linux < 5.3, other systems): poll
        return _poll_wait(pid, timeout)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(timeout * 1000):   # readable once the child has exited
            return None
    finally:
        os.close(pidfd)
    return os.waitpid(pid, 0)[1]


def _poll_wait(pid: int, timeout: float):
    deadline, pause = time.monotonic() + timeout, 0.001
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() >= deadline:
            return None
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _kill(pid: int):
    with contextlib.suppress(ProcessLookupError, ChildProcessError):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
