"""Analysis: the induction variables of ``for`` loops.

A ``for`` op's first block argument is its induction variable: it takes the values
``lo, lo + step, lo + 2*step, ...`` (operands 0 and 2 of the loop).  The lowerings use
this to prove the alignment of offsets computed from it (``alignment.known_multiple``).
"""
from __future__ import annotations

from ..ir.core import Function, Op, Value
from ..ir.printer import print_function


def induction_loops(fn: Function) -> dict:
    """``{induction variable: its for op}`` for every ``for`` loop of ``fn``, nested ones included."""
    return {op.blocks[0].args[0]: op for op in fn.walk() if op.opcode == "for"}


def induction_start_and_step(loop: Op) -> tuple:
    """``(lo, step)``: the values the induction variable of ``loop`` starts at and moves by."""
    return loop.operands[0], loop.operands[2]


def describe(fn: Function) -> str:
    """The IR with ``// induction %i = %lo + k * %step`` after every for loop."""
    loops = {id(loop): iv for iv, loop in induction_loops(fn).items()}

    def note(op, name):
        iv = loops.get(id(op))
        if iv is None:
            return None
        lo, step = induction_start_and_step(op)
        return f"induction {name(iv)} = {name(lo)} + k * {name(step)}"
    return print_function(fn, annotate=note)
