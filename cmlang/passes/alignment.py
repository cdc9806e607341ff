"""Analysis: a number that provably divides an integer scalar at run time.

The lowerings use it to choose block memory messages, which need an aligned start
(``codegen/memory.py``: sub-group block reads; ``codegen/vc.py``: svm block loads/stores).
"""
from __future__ import annotations

import math

from ..ir.core import Function, Value
from ..ir.printer import print_function
from ..types import ScalarType
from .constants import constant_value
from .induction import induction_loops, induction_start_and_step

MAX_DEPTH = 32      # deeper expressions are not followed (and count as "nothing known")


def known_multiple(value: Value, iv_loops=None, depth: int = 0) -> int:
    """A number that divides ``value`` at run time (1 when nothing is known, 0 for zero).

    Understands constants, sums, differences and products of such values, left shifts by
    constants, widening integer conversions and for-loop induction variables
    (``iv_loops``, from ``induction.induction_loops``, maps them to their loop: lo + i*step).
    """
    if depth > MAX_DEPTH:
        return 1
    iv_loops = iv_loops or {}

    def of(v):
        return known_multiple(v, iv_loops, depth + 1)

    op = value.defining_op
    if op is None:
        loop = iv_loops.get(value)
        if loop is None:
            return 1
        lo, step = induction_start_and_step(loop)
        return math.gcd(of(lo), of(step))
    code = op.opcode
    if code == "const":
        v = op.attrs["value"]
        if isinstance(v, (tuple, list)) or not float(v).is_integer():
            return 1
        return abs(int(v))
    if code in ("add", "sub"):
        return math.gcd(of(op.operands[0]), of(op.operands[1]))
    if code == "mul":
        return of(op.operands[0]) * of(op.operands[1])
    if code == "shl":
        c = constant_value(op.operands[1])
        return of(op.operands[0]) << int(c) if c is not None and 0 <= c < 64 else 1
    if code == "convert" and isinstance(op.result.type, ScalarType) and op.result.type.is_int:
        src = op.operands[0].type
        if isinstance(src, ScalarType) and src.is_int and src.bits <= op.result.type.bits:
            return of(op.operands[0])
    return 1


def describe(fn: Function) -> str:
    """The IR with ``// multiple of N`` after every op with one integer scalar result."""
    iv_loops = induction_loops(fn)

    def note(op, name):
        if len(op.results) != 1:
            return None
        t = op.results[0].type
        if not (isinstance(t, ScalarType) and t.is_int):
            return None
        return f"multiple of {known_multiple(op.results[0], iv_loops)}"
    return print_function(fn, annotate=note)
