"""Where the code generator reads dpas operands from, decided over the IR before lowering.

Both flavours ask the same two questions of a kernel's IR (``simt.py``, ``vc.py``):

- ``rows_left_in_memory``: which 2-D loads stay in memory, read row by row (and, for the
  left operand, element by element) by a dpas lowered as a loop over k (the profile's
  ``dpas_loop_fmas``: FMA-computed products whose operands in registers would spill);
- ``vnni_block_loads``: which ``block_load2d`` ops feed the systolic unit through VNNI-
  transforming 2-D block messages (``block2d.py``).

Either holds only for a load used once, by that dpas, in the same block with no memory
write between (so reading later reads the same values).  These are analyses of the IR;
the lowering modules import them, and they import no lowering state.
"""
from __future__ import annotations

from collections import Counter

from cmlang.ir.ops import OPS
from .block2d import VNNI_ROWS
from .systolic import systolic_candidate


def dpas_as_loop(op, simd: int, loop_fmas: int) -> bool:
    """Whether a dpas is big enough to be lowered as a loop over k (when b is in memory):
    at least ``loop_fmas`` slot FMAs (the profile's ``dpas_loop_fmas``; 0: never);
    never an integer one (multiply-adds in registers, systolic.py)."""
    if op.results[0].type.elem.is_int:
        return False
    M, N = op.results[0].type.shape
    K = op.operands[1].type.shape[1]
    return loop_fmas > 0 and N % simd == 0 and K > 1 and M * K * (N // simd) >= loop_fmas


def rows_left_in_memory(fn, simd: int, loop_fmas: int) -> set:
    """The ``load2d`` ops to leave in memory (none where ``loop_fmas`` is 0): the b operand of a dpas lowered as a loop, used nowhere else, in the
    same block with no memory write between load and dpas (so reading the rows later
    reads the same values); and, where b is left so, the a operand under the same
    conditions (then each a[m, k] is one uniform load instead of a pick from registers,
    which on a CPU spills: a stack load per select)."""
    uses = Counter(v for op in fn.walk() for v in op.operands)
    found = set()
    for block in _blocks(fn.body):
        position = {id(op): i for i, op in enumerate(block.ops)}

        def unchanged_load(value, i):
            load = value.defining_op
            if load is None or load.opcode != "load2d" or uses[value] != 1 or id(load) not in position:
                return None
            if any(_may_write(o) for o in block.ops[position[id(load)] + 1:i]):
                return None
            return load

        for i, op in enumerate(block.ops):
            if op.opcode != "dpas" or not dpas_as_loop(op, simd, loop_fmas):
                continue
            b_load = unchanged_load(op.operands[2], i)
            if b_load is not None:
                found.add(b_load)
                a_load = unchanged_load(op.operands[1], i)
                if a_load is not None:
                    found.add(a_load)
    return found


def _blocks(block):
    """block and every block nested in its ops, outermost first."""
    yield block
    for op in block.ops:
        for inner in op.blocks:
            yield from _blocks(inner)


def _may_write(op) -> bool:
    """Whether op (or an op nested in it) may write memory."""
    spec = OPS.get(op.opcode)
    if spec is not None and spec.has_side_effects:
        return True
    return any(_may_write(o) for inner in op.blocks for o in inner.ops)


def vnni_block_loads(fn, profile, simd: int) -> set:
    """The ``block_load2d`` ops read by VNNI-transforming messages: on a profile with 2-D
    block messages at simd 16, not transposed, 16-bit (K % 16 == 0) or 8-bit (K % 32 == 0)
    with N % 16 == 0, used only as the b operand of one dpas that goes to the systolic
    unit, in the same block with no memory write between (so reading later reads the same)."""
    if getattr(profile, "block2d", None) is None or not profile.block2d.vnni or simd != 16:
        return set()
    uses = Counter(v for op in fn.walk() for v in op.operands)
    found = set()
    for block in _blocks(fn.body):
        position = {id(op): i for i, op in enumerate(block.ops)}
        for i, op in enumerate(block.ops):
            if op.opcode != "dpas" or op.attrs.get("precision") or not systolic_candidate(profile, op):
                continue
            value = op.operands[2]
            load = value.defining_op
            if (load is None or load.opcode != "block_load2d" or load.attrs.get("transpose")
                    or uses[value] != 1 or id(load) not in position):
                continue
            bits = load.operands[0].type.elem.bits
            K, N = value.type.shape
            if bits not in VNNI_ROWS or K % VNNI_ROWS[bits] or N % 16:
                continue
            if any(_may_write(o) for o in block.ops[position[id(load)] + 1:i]):
                continue
            found.add(load)
    return found
