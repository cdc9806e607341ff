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
