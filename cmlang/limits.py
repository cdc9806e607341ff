"""The budgets every input is held to, in one place.

A kernel, an IR text, a launch or a package that goes past one of these gets a
``CompileError`` / ``LaunchError`` / ``PackageError`` naming the limit and the environment
variable that raises it, instead of running out of memory, time or stack.  The defaults
are far above what real kernels need; each can be raised (or lowered) per process.

This module imports nothing from the compiler, so the runtime and the package loader
read it without loading the front end.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    """One budget: its default and the environment variable that overrides it."""
    env: str
    default: int
    what: str       # what is counted, for messages ("elements in one register")

    @property
    def value(self) -> int:
        raw = os.environ.get(self.env, "").strip()
        if not raw:
            return self.default
        try:
            value = int(raw, 0)
        except ValueError:
            value = 0
        if value <= 0:  # a typo must not break every compile: say so, use the default
            _warn_once(f"cmlang: {self.env}={raw!r} is not a positive integer; using "
                       f"{self.default}")
            return self.default
        return value

    def exceeded(self, count, where="") -> str:
        """The message for ``count`` going past this limit."""
        place = f"{where}: " if where else ""
        return (f"{place}{count} {self.what}, over the limit of {self.value} "
                f"(set {self.env} to raise it)")


# --- compiling -----------------------------------------------------------------------
REGISTER_ELEMENTS = Limit("CMLANG_MAX_REGISTER_ELEMENTS", 1 << 16, "elements in one register")
IR_OPS = Limit("CMLANG_MAX_IR_OPS", 1 << 19,
               "IR operations (after unrolling static_range loops and inlining)")
NESTING = Limit("CMLANG_MAX_NESTING", 1000,
                "levels of nesting (expressions, blocks, cm.func calls)")
IR_TEXT_BYTES = Limit("CMLANG_MAX_IR_TEXT_BYTES", 64 << 20, "bytes of IR text")

# Seconds a forked child (the SPIR-V backend's compile of one module, the driver's build of
# one new module) may take before it is killed and reported instead of waited on forever.
CHILD_SECONDS = Limit("CMLANG_CHILD_TIMEOUT_S", 300, "seconds")

# --- launching -----------------------------------------------------------------------
GRID_THREADS = Limit("CMLANG_MAX_GRID_THREADS", 1 << 32, "CM threads in one grid")

# --- packages ------------------------------------------------------------------------
PACKAGE_MANIFEST_BYTES = Limit("CMLANG_MAX_MANIFEST_BYTES", 16 << 20, "bytes of package manifest")
PACKAGE_MANIFEST_DEPTH = Limit("CMLANG_MAX_MANIFEST_DEPTH", 32, "levels of nesting in a package manifest")
PACKAGE_PAYLOAD_BYTES = Limit("CMLANG_MAX_PAYLOAD_BYTES", 256 << 20, "bytes of one package payload")

_warned = set()


def _warn_once(message):
    if message not in _warned:
        _warned.add(message)
        import warnings
        warnings.warn(message, stacklevel=4)


# Python frames a nesting level may take in the front end, passes and codegen (measured
# about 10; the rest is headroom), and the frames already on the stack at the start.
_FRAMES_PER_LEVEL = 30
_BASE_FRAMES = 2000


# The recursion limit is one per process: while any thread compiles it stays raised, and
# the last one out restores the limit found by the first one in.
_recursion_lock = threading.Lock()
_recursion = {"compiling": 0, "saved": None}


@contextlib.contextmanager
def compiler_recursion():
    """Lets the compiler recurse as deep as ``NESTING`` allows, and no deeper.

    The front end, the passes and codegen walk nested expressions and blocks
    recursively; Python's default limit (1000 frames) stops at about 100 levels.  The
    limit is raised, to a bound that follows from ``CMLANG_MAX_NESTING``, only while
    compiling (in any thread)."""
    wanted = _BASE_FRAMES + _FRAMES_PER_LEVEL * NESTING.value
    with _recursion_lock:
        if _recursion["compiling"] == 0:
            _recursion["saved"] = sys.getrecursionlimit()
        _recursion["compiling"] += 1
        if wanted > sys.getrecursionlimit():
            sys.setrecursionlimit(wanted)
    try:
        yield sys.getrecursionlimit()
    finally:
        with _recursion_lock:
            _recursion["compiling"] -= 1
            if _recursion["compiling"] == 0:
                sys.setrecursionlimit(_recursion["saved"])


def recursion_message(what: str) -> str:
    return (f"{what} is nested too deeply for the compiler (Python recursion limit "
            f"{sys.getrecursionlimit()}); split it up, or set {NESTING.env} above "
            f"{NESTING.value} to allow deeper nesting")
