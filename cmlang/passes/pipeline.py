"""The IR pass pipeline: which passes run on every kernel, in which order.

``PASSES`` is the pipeline; ``run_pipeline(fn)`` runs it (``Kernel.ir_function`` calls it
after the front end).  ``ANALYSES`` names the analyses whose results the code generators
and the launch contract read; they change nothing, so they run where their result is
needed, and each can print its findings (``describe``) for tests and debugging.

Debugging: ``CMLANG_PRINT_IR_AFTER=all`` (or a comma-separated list of pass names, e.g.
``dce`` or ``verify,dce``) prints the IR to stderr after each named pass.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Callable

from ..errors import CompileError
from ..ir.core import Function
from ..ir.printer import print_function
from ..ir.verify import verify_function
from . import alignment, block_surfaces, buffer_extents, constants, group_use, induction
from .dce import eliminate_dead_code

PRINT_IR_AFTER_ENV = "CMLANG_PRINT_IR_AFTER"


@dataclass(frozen=True)
class Pass:
    name: str                           # how CMLANG_PRINT_IR_AFTER and the lit tests name it
    run: Callable[[Function], object]   # changes (or checks) the function in place
    summary: str


@dataclass(frozen=True)
class Analysis:
    name: str
    describe: Callable[[Function], str]     # the IR text with the analysis's findings as comments
    summary: str


PASSES = (
    Pass("verify", verify_function, "structural and type checks against the op catalogue"),
    Pass("dce", eliminate_dead_code, "dead-code elimination"),
)

ANALYSES = {a.name: a for a in (
    Analysis("block-surfaces", block_surfaces.describe,
             "2-D block ops whose surface check the launch decides (messages alone where it fits)"),
    Analysis("buffer-extents", buffer_extents.describe,
             "per pointer parameter: written or not, minimum length (the launch contract)"),
    Analysis("constant-value", constants.describe, "scalars a const op defines"),
    Analysis("induction-variables", induction.describe, "for-loop induction variables: start and step"),
    Analysis("known-multiple", alignment.describe, "a number that divides an integer scalar (alignment)"),
    Analysis("uses-groups", group_use.describe, "does the kernel use SLM, barriers or group/local ids"),
)}


def pass_named(name: str) -> Pass:
    for p in PASSES:
        if p.name == name:
            return p
    raise CompileError(f"unknown IR pass {name!r}; passes are {', '.join(p.name for p in PASSES)}")


def run_pipeline(fn: Function, passes=None, print_after=None, out=None) -> Function:
    """Runs ``passes`` (default ``PASSES``) on ``fn`` in order, in place; returns ``fn``.

    ``print_after``: the pass names after which to print the IR to ``out`` (stderr), or
    ``"all"``; None reads ``CMLANG_PRINT_IR_AFTER``."""
    passes = PASSES if passes is None else tuple(passes)
    wanted = _print_after(os.environ.get(PRINT_IR_AFTER_ENV, "") if print_after is None else print_after,
                          passes)
    for p in passes:
        p.run(fn)
        if "all" in wanted or p.name in wanted:
            print(f"// ----- IR after {p.name} (@{fn.name}) -----\n{print_function(fn)}",
                  file=out or sys.stderr, end="", flush=True)
    return fn


def _print_after(spec, passes) -> set:
    """The pass names in ``spec`` (a comma-separated string or names), checked against ``passes``."""
    names = {n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()}
    unknown = sorted(names - {p.name for p in passes} - {"all"})
    if unknown:
        raise CompileError(f"{PRINT_IR_AFTER_ENV} names unknown pass(es) {', '.join(unknown)}; "
                           f"passes are {', '.join(p.name for p in passes)} (or all)")
    return names
