"""Dead-code elimination: drop ops whose results nobody uses and that change nothing else.

An op is removable when none of its results is used and neither it nor any op in its
nested blocks has side effects (``OPS[...].has_side_effects``; unknown opcodes count
as having them, to be safe). Blocks are visited last op first, nested blocks before
their op, so one pass finds everything: removing an op releases the uses of its
operands (including those inside its blocks) before the ops defining them are seen.
Loop-carried values that are computed but never read are kept (a simple pass).
"""
from __future__ import annotations

from collections import Counter

from ..ir.core import Function, Block, Op, walk_block
from ..ir.ops import OPS


def eliminate_dead_code(fn: Function) -> int:
    """Removes dead ops from ``fn`` in place; returns how many ops were removed (nested ones included)."""
    uses = Counter(v for op in fn.walk() for v in op.operands)
    return _sweep(fn.body, uses)


def has_side_effects(op: Op) -> bool:
    """Does ``op`` or any op nested in it do more than compute its results?"""
    d = OPS.get(op.opcode)
    if d is None or d.has_side_effects:
        return True
    return any(has_side_effects(inner) for b in op.blocks for inner in walk_block(b))


def _sweep(block: Block, uses: Counter) -> int:
    removed = 0
    kept = []
    for op in reversed(block.ops):
        for b in op.blocks:
            removed += _sweep(b, uses)
        if _is_dead(op, uses):
            removed += 1 + _release(op, uses)
        else:
            kept.append(op)
    block.ops[:] = reversed(kept)
    return removed


def _is_dead(op: Op, uses: Counter) -> bool:
    if OPS.get(op.opcode) is not None and OPS[op.opcode].terminator:
        return False
    return not any(uses[r] for r in op.results) and not has_side_effects(op)


def _release(op: Op, uses: Counter) -> int:
    """Forgets the uses made by ``op`` and its nested ops; returns the count of nested ops."""
    for v in op.operands:
        uses[v] -= 1
    nested = 0
    for b in op.blocks:
        for inner in walk_block(b):
            nested += 1
            for v in inner.operands:
                uses[v] -= 1
    return nested
