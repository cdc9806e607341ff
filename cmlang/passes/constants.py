"""Analysis: the compile-time value of a scalar, when a ``const`` op defines it.

Nothing is folded here (the front end folds constexpr arithmetic before the IR exists);
this answers "is this operand a known number?" for the lowerings: the sign of a loop
step, the amount of a shift.
"""
from __future__ import annotations

from ..ir.core import Function, Value
from ..ir.printer import print_function


def constant_value(value: Value):
    """The scalar constant ``value`` holds, or None when it is not a scalar ``const``."""
    op = value.defining_op
    if op is not None and op.opcode == "const" and not isinstance(op.attrs["value"], (tuple, list)):
        return op.attrs["value"]
    return None


def describe(fn: Function) -> str:
    """The IR with ``// constant V`` after every op whose result is a known scalar constant."""
    def note(op, name):
        if len(op.results) == 1 and constant_value(op.results[0]) is not None:
            return f"constant {constant_value(op.results[0])!r}"
        return None
    return print_function(fn, annotate=note)
