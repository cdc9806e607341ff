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

import numpy as np

from ..ir.core import Function, Op
from ..ir.ops import atomic_mask_index
from ..ir.printer import print_function
from ..types import PtrType, ScalarType

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
        off = constant_elems(op.operands[1])
        n = op.results[0].type.size if op.opcode == "load" else op.operands[2].type.size
        return off[0] + n if off else None
    if op.opcode in ("load2d", "store2d"):
        off, pitch = constant_elems(op.operands[1]), constant_elems(op.operands[2])
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
    enabled = constant_elems(op.operands[mask_at], offs.type.size) if has_mask else [True] * offs.type.size
    offsets = constant_elems(offs, offs.type.size)
    if offsets is None or enabled is None:
        return None
    used = [o for o, on in zip(offsets, enabled) if on]
    return max(used) + 1 if used else None


def constant_elems(value, size: int = 1):
    """The elements of ``value`` if a ``const`` op defines it (a scalar constant fills ``size``)."""
    op = value.defining_op
    if op is None or op.opcode != "const":
        return None
    v = op.attrs.get("value")
    elems = list(v) if isinstance(v, (tuple, list)) else [v] * size
    if not all(isinstance(x, (int, bool)) or hasattr(x, "__index__") for x in elems):
        return None
    return [int(x) for x in elems]


# ---------------------------------------------------------------------------
# Offsets affine in the thread ids and scalar arguments (checked at launch)

def affine_extents(fn: Function) -> dict:
    """``{parameter index: (AffineExtent, ...)}``: the top-level accesses (they run in every
    CM thread of every launch) whose offsets are affine in ``thread_id(d)``, constants and
    integer scalar parameters, so the launcher can compute, from the grid and the scalar
    arguments, the length each buffer needs.  Accesses it cannot follow are left out."""
    from ..runtime.binary import AffineExtent
    pointers = {arg: i for i, arg in enumerate(fn.params) if isinstance(arg.type, PtrType)}
    scalars = {arg: i for i, arg in enumerate(fn.params)
               if isinstance(arg.type, ScalarType) and arg.type.kind in "iu"}
    found = {}
    for op in fn.body.ops:
        if not (op.operands and op.operands[0] in pointers):
            continue
        access = _affine_access(op, scalars)
        if access is None:
            continue
        (low, high, terms), elems, offset_type = access
        info = np.iinfo(np.dtype(getattr(offset_type, "elem", offset_type).np_dtype))
        where = f"{op.loc.file}:{op.loc.line}:{op.loc.col + 1}" if op.loc else ""
        extent = AffineExtent(low, high, tuple((k, i, c) for (k, i), c in sorted(terms.items()) if c),
                              elems, int(info.min), int(info.max), where)
        if extent.terms:          # constant offsets are min_elems' (checked by every converter)
            found.setdefault(pointers[op.operands[0]], []).append(extent)
    return {i: tuple(v) for i, v in found.items()}


def _affine_access(op: Op, scalars):
    """(the offset's affine form, elements past it, the offset's type) or None."""
    code = op.opcode
    if code in ("load", "store"):
        n = op.results[0].type.size if code == "load" else getattr(op.operands[2].type, "size", 1)
        form = _affine(op.operands[1], scalars)
        return None if form is None else (form, n, op.operands[1].type)
    if code in ("gather", "scatter", "atomic"):
        mask_at = {"gather": 2, "scatter": 3}.get(code)
        if mask_at is not None and len(op.operands) > mask_at:
            return None          # a mask decides which elements are touched
        form = _affine(op.operands[1], scalars)
        return None if form is None else (form, 1, op.operands[1].type)
    return None


def _affine(value, scalars, depth=0):
    """``(low, high, {(kind, index): coef})`` with value = [low..high] + sum(coef * var), or None."""
    if depth > 32:
        return None
    if value in scalars:
        return 0, 0, {("arg", scalars[value]): 1}
    op = value.defining_op
    if op is None:
        return None
    code = op.opcode
    if code == "const":
        elems = constant_elems(value, getattr(value.type, "size", 1))
        return None if not elems else (min(elems), max(elems), {})
    if code == "thread_id":
        return 0, 0, {("thread", op.attrs["dim"]): 1}
    if code == "splat":
        return _affine(op.operands[0], scalars, depth + 1)
    if code in ("add", "sub"):
        a, b = (_affine(v, scalars, depth + 1) for v in op.operands)
        if a is None or b is None or (a[0] != a[1] and b[0] != b[1]):
            return None          # two spreads of registers: the sum's range is not exact
        sign = 1 if code == "add" else -1
        terms = dict(a[2])
        for k, c in b[2].items():
            terms[k] = terms.get(k, 0) + sign * c
        low, high = (a[0] + b[0], a[1] + b[1]) if sign == 1 else (a[0] - b[1], a[1] - b[0])
        return low, high, terms
    if code in ("mul", "shl"):
        a, b = (_affine(v, scalars, depth + 1) for v in op.operands)
        if a is None or b is None:
            return None
        if code == "shl":
            if b[2] or b[0] != b[1] or not 0 <= b[0] < 31:
                return None
            b = (1 << b[0], 1 << b[0], {})
        if b[2] or b[0] != b[1]:
            a, b = b, a
        if b[2] or b[0] != b[1]:
            return None          # neither factor is one constant
        c = b[0]
        low, high = sorted((a[0] * c, a[1] * c))
        return low, high, {k: v * c for k, v in a[2].items()}
    return None
