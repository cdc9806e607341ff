"""Run a function in a forked child process.

For code that may crash the process or leave global state behind (the driver's builds of new
modules, LLVM's SPIR-V backend, JIT-run kernels in tests): the parent gets the child's result, or its exception, or a
``ChildCrashed`` with what the child wrote to stderr.
"""
from __future__ import annotations

import os
import pickle
import tempfile


class ChildCrashed(Exception):
    """The child ended without a result (a signal, a fatal error, ``exit``)."""

    def __init__(self, status: int, log: str):
        self.status, self.log = status, log
        super().__init__(f"the child process ended without a result (wait status {status})"
                         + (f":\n{log}" if log else ""))


def call_in_child(fn, *args):
    """``fn(*args)`` evaluated in a forked child; its result (or the exception it raised)
    comes back pickled."""
    read_end, write_end = os.pipe()
    with tempfile.TemporaryFile() as stderr:
        pid = os.fork()
        if pid == 0:                          # the child: never returns
            try:
                os.close(read_end)
                os.dup2(stderr.fileno(), 2)
                try:
                    payload = ("ok", fn(*args))
                except BaseException as e:    # noqa: BLE001  (everything goes to the parent)
                    payload = ("raised", e)
                try:
                    data = pickle.dumps(payload)
                except Exception:             # an unpicklable result or exception
                    data = pickle.dumps(("raised", RuntimeError(f"{type(payload[1]).__name__}: "
                                                                f"{payload[1]}")))
                with os.fdopen(write_end, "wb") as f:
                    f.write(data)
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        if not data:
            stderr.seek(0)
            raise ChildCrashed(status, stderr.read().decode("utf-8", "replace").strip())
    try:
        kind, value = pickle.loads(data)
    except Exception as e:   # an exception type that cannot be rebuilt from its args
        raise RuntimeError(f"the child's result could not be read back: {e}") from None
    if kind == "raised":
        raise value
    return value
