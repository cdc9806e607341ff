"""The two errors users see: CompileError (kernel source problems) and LaunchError."""
from __future__ import annotations

import linecache


class CompileError(Exception):
    """A problem in kernel source, reported as ``file:line:col: message`` plus the line.

    ``loc`` is a ``cmlang.ir.core.Location`` (or None when no place is known).
    """

    def __init__(self, message: str, loc=None):
        self.message = message
        self.loc = loc
        super().__init__(self._format())

    def _format(self):
        if self.loc is None:
            return self.message
        text = f"{self.loc.file}:{self.loc.line}:{self.loc.col + 1}: {self.message}"
        src = linecache.getline(self.loc.file, self.loc.line)
        if src:
            text += "\n    " + src.rstrip("\n") + "\n    " + " " * self.loc.col + "^"
        return text


class LaunchError(Exception):
    """A kernel launch that cannot run as asked (arguments, grid, device)."""


class KernelRuntimeError(Exception):
    """An error raised while a kernel runs in the interpreter (names thread and line)."""


# ---------------------------------------------------------------------------
# Tracebacks that end at the user's call

FULL_TRACEBACK_ENV = "CMLANG_FULL_TRACEBACK"
USER_ERRORS = (CompileError, LaunchError, KernelRuntimeError)


def full_tracebacks() -> bool:
    import os
    return os.environ.get(FULL_TRACEBACK_ENV, "") not in ("", "0")


def trimmed(error: BaseException) -> BaseException:
    """``error`` without the compiler's frames: raise the result ``from None`` at the
    public entry point and the traceback shows the user's frames and that one line.
    ``CMLANG_FULL_TRACEBACK=1`` keeps everything (for reporting compiler bugs)."""
    if full_tracebacks():
        return error
    error.__cause__ = None
    error.__suppress_context__ = True
    return error.with_traceback(None)


def public(fn):
    """Decorator for the public entry points that are not on a launch's hot path:
    cmlang's own errors leave them with the compiler-internal frames trimmed."""
    import functools

    @functools.wraps(fn)
    def entry(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as e:
            raise trimmed(e)  # noqa: B904  (trimmed() decides what chains)
    return entry
