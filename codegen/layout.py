"""Register layout on the SIMT target, and the one primitive that moves elements between lanes.

A register of N elements lives in K = ceil(N / simd) *slots*; element ``e`` is in lane
``e % simd`` of slot ``e // simd`` (docs/design.md). Each slot is one LLVM scalar value,
which the OpenCL runtime vectorizes across the lanes of a sub-group.

Every region operation (rdregion, wrregion, iselect, broadcast, format/bitcast, the matrix
views of reduce and dpas) is a *permutation by an index map*: result element ``e`` takes
source element ``idx(e)``. For a map known at compile time, ``gather_slot`` decides per
result slot what code to emit:

=============================================  ============================================
lanes of the result slot read ...              emitted
=============================================  ============================================
their own lane of one source slot              nothing (the slot is reused)
one element                                    ``sub_group_broadcast(slot, lane)``
one source slot, lanes permuted                one shuffle (``shuffle_xor`` for XOR maps)
several source slots                           one shuffle per source slot + lane selects
=============================================  ============================================

The per-lane source lane of a shuffle is computed from ``get_sub_group_local_id()``:
an affine formula ``base + (l / w) * outer + (l % w) * inner`` (optionally ``& (simd-1)``,
which covers rotations) when one fits, else a small constant table in addrspace(2)
indexed by lane. Lane masks are ``l < t`` / ``l >= t`` or a bit test of a constant.
All such lane constants depend only on the lane id: they are built once, in the
kernel's entry block, and shared.

Maps known only at run time (``iselect`` by a register, region offsets that are values)
go through ``gather_slot_dynamic``: one shuffle by ``idx % simd`` per source slot, then a
select where ``idx / simd`` names that slot.

Lanes past the end of a register (padding) are "don't care" (``None``) in every map here,
which lets more maps fit a formula; callers never store or reduce them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from llvmlite import ir

from cmlang.types import ScalarType, VectorType

from .llvm_builtins import I1, I32, I64, CONSTANT, Builtins


@dataclass
class Reg:
    """A lowered register: its cmlang type and one LLVM value per slot."""
    type: VectorType
    slots: list

    @property
    def elem(self) -> ScalarType:
        return self.type.elem

    @property
    def n(self) -> int:
        return self.type.size


def slot_count(n: int, simd: int) -> int:
    return -(-n // simd)


def zero_of(ty: ir.Type):
    return ir.Constant(ty, 0)


# --- lane formulas ---------------------------------------------------------------------

@dataclass(frozen=True)
class LaneFormula:
    """value(l) = base + (l // width) * outer + (l % width) * inner, then ``& mask`` if set."""
    base: int
    width: int
    outer: int
    inner: int
    mask: Optional[int] = None

    def eval(self, lane: int) -> int:
        v = self.base + (lane // self.width) * self.outer + (lane % self.width) * self.inner
        return v & self.mask if self.mask is not None else v


def _known(values):
    return [(l, v) for l, v in enumerate(values) if v is not None]


def _fits(formula, known):
    return all(formula.eval(l) == v for l, v in known)


def fit_affine(values: Sequence[Optional[int]], simd: int) -> Optional[LaneFormula]:
    """An affine or 2-D affine formula matching every known lane (None lanes are free)."""
    known = _known(values)
    if not known:
        return LaneFormula(0, simd, 0, 0)
    l0, v0 = known[0]
    width = simd
    while width >= 2:
        same_block = [(l, v) for l, v in known[1:] if l // width == l0 // width]
        inner = 0
        if same_block:
            l1, v1 = same_block[0]
            if (v1 - v0) % (l1 - l0):
                width //= 2
                continue
            inner = (v1 - v0) // (l1 - l0)
        other_block = [(l, v) for l, v in known if l // width != l0 // width]
        outer = 0
        if other_block:
            l2, v2 = other_block[0]
            rest = v2 - v0 - inner * (l2 % width - l0 % width)
            if rest % (l2 // width - l0 // width):
                width //= 2
                continue
            outer = rest // (l2 // width - l0 // width)
        f = LaneFormula(v0 - (l0 // width) * outer - (l0 % width) * inner, width, outer, inner)
        if _fits(f, known):
            return f
        width //= 2
    return None


def fit_rotation(values: Sequence[Optional[int]], simd: int) -> Optional[LaneFormula]:
    """value(l) = (base + l * inner) & (simd - 1): lane indices of rotations and strides."""
    known = _known(values)
    if len(known) < 2:
        return None
    (l0, v0) = known[0]
    for inner in range(simd):
        base = (v0 - l0 * inner) % simd
        f = LaneFormula(base, simd, 0, inner, simd - 1)
        if _fits(f, known):
            return f
    return None


def fit_xor(values: Sequence[Optional[int]]) -> Optional[int]:
    """x such that value(l) == l ^ x on every known lane."""
    known = _known(values)
    if not known:
        return None
    x = known[0][0] ^ known[0][1]
    return x if all(l ^ x == v for l, v in known) else None


# --- the per-kernel lane context -----------------------------------------------------------

class Lanes:
    """The sub-group lane id and the lane-dependent constants built from it.

    ``prologue`` is a builder positioned at the end of the kernel's entry block (before
    its terminator); lane constants are emitted there once and cached by content.
    """

    def __init__(self, simd: int, builtins: Builtins, prologue: ir.IRBuilder):
        assert simd in (8, 16, 32)
        self.simd = simd
        self.log2 = simd.bit_length() - 1
        self.bi = builtins
        self.prologue = prologue
        self.id = builtins.sub_group_local_id(prologue)       # i32
        self.id64 = prologue.zext(self.id, I64)
        self._cache = {}
        self._tables = 0

    # --- per-lane integer constants ---
    def formula_value(self, f: LaneFormula):
        """Emit ``f`` evaluated at this lane (shifts and masks: widths are powers of two)."""
        b, l = self.prologue, self.id
        if f.width == self.simd:                     # 1-D: base + l * inner
            v = self._mul(l, f.inner)
        else:                                        # 2-D: (l / width) * outer + (l % width) * inner
            hi = b.lshr(l, ir.Constant(I32, f.width.bit_length() - 1))
            lo = b.and_(l, ir.Constant(I32, f.width - 1))
            v = self._add(self._mul(hi, f.outer), self._mul(lo, f.inner))
        v = self._add(v, ir.Constant(I32, f.base))
        if f.mask is not None:
            v = b.and_(v, ir.Constant(I32, f.mask))
        return v

    def _mul(self, v, c):
        if c == 0:
            return ir.Constant(I32, 0)
        if c == 1:
            return v
        if c > 0 and c & (c - 1) == 0:
            return self.prologue.shl(v, ir.Constant(I32, c.bit_length() - 1))
        return self.prologue.mul(v, ir.Constant(I32, c))

    def _add(self, v, c):
        if isinstance(c, ir.Constant) and c.constant == 0:
            return v
        if isinstance(v, ir.Constant) and v.constant == 0:
            return c
        return self.prologue.add(v, c)

    def int_vector(self, values: Sequence[Optional[int]], allow_rotation=False):
        """An i32 that holds ``values[l]`` in lane l (None: any value)."""
        values = tuple(values)
        known = _known(values)
        if not known or all(v == known[0][1] for _, v in known):
            return ir.Constant(I32, known[0][1] if known else 0)
        key = ("int", values, allow_rotation)
        if key not in self._cache:
            f = fit_affine(values, self.simd)
            if f is None and allow_rotation:
                f = fit_rotation(values, self.simd)
            self._cache[key] = self.formula_value(f) if f is not None else self._table(values)
        return self._cache[key]

    def _table(self, values):
        """A constant [simd x i32] in addrspace(2), read at this lane."""
        self._tables += 1
        arr_ty = ir.ArrayType(I32, self.simd)
        table = ir.GlobalVariable(self.bi.module, arr_ty, f"cm.lanes.{self._tables}", addrspace=CONSTANT)
        table.linkage = "internal"
        table.global_constant = True
        table.initializer = ir.Constant(arr_ty, [v if v is not None else 0 for v in values])
        p = self.prologue.gep(table, [ir.Constant(I64, 0), self.id64], inbounds=True, source_etype=arr_ty)
        return self.prologue.load(p, typ=I32)

    def mask(self, flags: Sequence[Optional[bool]]):
        """An i1 that is ``flags[l]`` in lane l (None: either)."""
        flags = tuple(flags)
        on = [l for l, f in enumerate(flags) if f]
        off = [l for l, f in enumerate(flags) if f is False]
        if not off:
            return ir.Constant(I1, 1)
        if not on:
            return ir.Constant(I1, 0)
        key = ("mask", flags)
        if key not in self._cache:
            b = self.prologue
            if max(on) < min(off):
                v = b.icmp_unsigned("<", self.id, ir.Constant(I32, max(on) + 1))
            elif min(on) > max(off):
                v = b.icmp_unsigned(">=", self.id, ir.Constant(I32, min(on)))
            else:
                bits = sum(1 << l for l in on)
                v = b.trunc(b.lshr(ir.Constant(I32, bits), self.id), I1)
            self._cache[key] = v
        return self._cache[key]

    def valid_mask(self, n: int, slot: int):
        """True in the lanes of ``slot`` that hold one of a register's n elements."""
        return self.mask([slot * self.simd + l < n for l in range(self.simd)])

    def clamped_id64(self, count: int):
        """min(lane, count - 1) as i64: in-bounds lane for the partial last slot."""
        key = ("clamp", count)
        if key not in self._cache:
            b = self.prologue
            inside = b.icmp_unsigned("<", self.id, ir.Constant(I32, count))
            self._cache[key] = b.zext(b.select(inside, self.id, ir.Constant(I32, count - 1)), I64)
        return self._cache[key]


# --- permutations ----------------------------------------------------------------------------

def gather_slot(lanes: Lanes, b: ir.IRBuilder, src_slots, sources: Sequence[Optional[int]]):
    """One result slot whose lane l holds source element ``sources[l]`` (None: don't care)."""
    simd = lanes.simd
    known = _known(sources)
    if not known:
        return zero_of(src_slots[0].type)
    groups = {}
    for l, s in known:
        groups.setdefault(s // simd, []).append(l)
    if len(groups) == 1:
        (j,) = groups
        if all(s % simd == l for l, s in known):
            return src_slots[j]
        if all(s == known[0][1] for _, s in known):
            return lanes.bi.broadcast(b, src_slots[j], known[0][1] % simd)
    lane_of = [None if s is None else s % simd for s in sources]
    shuffled = {j: _shuffle_group(lanes, b, src_slots[j], lane_of, ls) for j, ls in groups.items()}
    order = sorted(groups, key=lambda j: -len(groups[j]))
    result = shuffled[order[0]]
    done = set(groups[order[0]])
    for j in order[1:]:
        flags = [True if l in groups[j] else (False if l in done else None) for l in range(simd)]
        result = b.select(lanes.mask(flags), shuffled[j], result)
        done.update(groups[j])
    return result


def _shuffle_group(lanes, b, slot, lane_of, group_lanes):
    """``slot`` moved so that lanes in ``group_lanes`` read lane ``lane_of[l]``."""
    if all(lane_of[l] == l for l in group_lanes):
        return slot
    # Only the group's lanes matter for this shuffle, but sharing one index vector for
    # every group of the slot keeps the index cacheable; other lanes are don't-care.
    wanted = [lane_of[l] if l in group_lanes else None for l in range(lanes.simd)]
    x = fit_xor(wanted)
    if x is not None:
        return lanes.bi.shuffle_xor(b, slot, x)
    return lanes.bi.shuffle(b, slot, lanes.int_vector(lane_of, allow_rotation=True))


def permute(lanes: Lanes, b: ir.IRBuilder, src_slots, index_map: Sequence[Optional[int]]):
    """Slots of a register whose element e is source element ``index_map[e]``."""
    simd = lanes.simd
    n = len(index_map)
    out = []
    for k in range(slot_count(n, simd)):
        sources = [index_map[k * simd + l] if k * simd + l < n else None for l in range(simd)]
        out.append(gather_slot(lanes, b, src_slots, sources))
    return out


def gather_slot_dynamic(lanes: Lanes, b: ir.IRBuilder, src_slots, index):
    """One result slot whose lane l holds source element ``index`` (an i32, per lane)."""
    lane = b.and_(index, ir.Constant(I32, lanes.simd - 1))
    if len(src_slots) == 1:
        return lanes.bi.shuffle(b, src_slots[0], lane)
    slot = b.lshr(index, ir.Constant(I32, lanes.log2))
    result = lanes.bi.shuffle(b, src_slots[-1], lane)
    for j in range(len(src_slots) - 2, -1, -1):
        hit = b.icmp_unsigned("==", slot, ir.Constant(I32, j))
        result = b.select(hit, lanes.bi.shuffle(b, src_slots[j], lane), result)
    return result


def select_lanes(lanes: Lanes, b: ir.IRBuilder, flags, a, other):
    """Per lane ``a`` where flags[l] else ``other`` (flags: True/False/None)."""
    m = lanes.mask(flags)
    if isinstance(m, ir.Constant):
        return a if m.constant else other
    return b.select(m, a, other)


def element_lanes(lanes: Lanes, slot: int, n: int, fn):
    """Per lane ``fn(e)`` for the element e that lane holds in ``slot`` (None past n)."""
    simd = lanes.simd
    return [fn(slot * simd + l) if slot * simd + l < n else None for l in range(simd)]
