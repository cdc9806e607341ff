"""Which pointer parameters a kernel writes, and how long their buffers must at least be.

For each ``ptr`` parameter: ``writes`` is true when the parameter value itself is the
pointer of a store/store2d/block_store2d/scatter/atomic anywhere in the kernel (the launcher copies
only written arrays back). ``min_elems`` is the largest ``constant offset + extent``
over accesses whose offsets are ``const`` ops (nothing else is followed), so the
launcher can reject a buffer that a constant-offset access would overrun.

Only accesses in the kernel's top-level block count towards ``min_elems``: those run
on every launch, while an access inside an ``if`` or a loop may be guarded by a
run-time check (``if n > 100: store(p, 100, v)``) and must not make a launch fail.
Masked gathers/scatters count only their enabled elements, and only with a constant mask.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir.core import Function, Op
from ..ir.ops import atomic_mask_index
from ..ir.printer import print_function
from ..types import PtrType

WRITERS = {"store", "store2d", "block_store2d", "scatter", "atomic"}


@dataclass(frozen=True)
class BufferUse:
    writes: bool
    min_elems: int


def analyze_buffers(fn: Function) -> dict:
    """``{parameter index: BufferUse}`` for every pointer parameter of ``fn``."""
    pointers = {arg: i for i, arg in enumerate(fn.params) if isinstance(arg.type, PtrType)}
    writes = {i: False for i in pointers.values()}
    extents = {i: 0 for i in pointers.values()}
    for op in fn.walk():
        if op.opcode in WRITERS and op.operands and op.operands[0] in pointers:
            writes[pointers[op.operands[0]]] = True
    for op in fn.body.ops:
        if op.operands and op.operands[0] in pointers:
            i = pointers[op.operands[0]]
            extents[i] = max(extents[i], constant_extent(op) or 0)
    return {i: BufferUse(writes[i], extents[i]) for i in pointers.values()}


def describe(fn: Function) -> str:
    """``// buffer %p: writes=.. min_elems=..`` per pointer parameter, then the IR."""
    lines = [f"// buffer %{fn.param_names[i]}: writes={'true' if use.writes else 'false'} "
             f"min_elems={use.min_elems}" for i, use in sorted(analyze_buffers(fn).items())]
    return "\n".join(lines + [print_function(fn)])


def constant_extent(op: Op):
    """Elements from the buffer start that ``op`` touches when its offsets are constants, else None."""
    if op.opcode in ("load", "store"):
        off = _const_elems(op.operands[1])
        n = op.results[0].type.size if op.opcode == "load" else op.operands[2].type.size
        return off[0] + n if off else None
    if op.opcode in ("load2d", "store2d"):
        off, pitch = _const_elems(op.operands[1]), _const_elems(op.operands[2])
        rows, cols = (op.results[0] if op.opcode == "load2d" else op.operands[3]).type.shape
        return off[0] + (rows - 1) * pitch[0] + cols if off and pitch else None
    if op.opcode in ("gather", "scatter", "atomic"):
        return _indexed_extent(op)
    return None


def _indexed_extent(op: Op):
    offs = op.operands[1]
    mask_at = {"gather": 2, "scatter": 3}.get(op.opcode) if op.opcode != "atomic" \
        else atomic_mask_index(op.attrs["kind"])
    has_mask = mask_at is not None and len(op.operands) > mask_at
    enabled = _const_elems(op.operands[mask_at], offs.type.size) if has_mask else [True] * offs.type.size
    offsets = _const_elems(offs, offs.type.size)
    if offsets is None or enabled is None:
        return None
    used = [o for o, on in zip(offsets, enabled) if on]
    return max(used) + 1 if used else None


def _const_elems(value, size: int = 1):
    """The elements of ``value`` if a ``const`` op defines it (a scalar constant fills ``size``)."""
    op = value.defining_op
    if op is None or op.opcode != "const":
        return None
    v = op.attrs.get("value")
    elems = list(v) if isinstance(v, (tuple, list)) else [v] * size
    if not all(isinstance(x, (int, bool)) or hasattr(x, "__index__") for x in elems):
        return None
    return [int(x) for x in elems]
