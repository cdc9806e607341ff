"""Region, reduction and dpas ops of the SIMT lowering (a mixin of ``simt.KernelLowering``).

Every op here moves elements between lanes through ``codegen.layout``: static index
maps become moves, broadcasts and shuffles (``permute``/``gather_slot``), run-time maps
become one shuffle per source slot plus selects (``gather_slot_dynamic``).
"""
from __future__ import annotations

import math

from llvmlite import ir

from cmlang.errors import CompileError
from cmlang.types import ScalarType, VectorType, bool_
from . import elementwise as ew
from .layout import Reg, gather_slot, gather_slot_dynamic, permute, select_lanes, slot_count, element_lanes
from .llvm_builtins import I32, I64, FLOAT
from .memory import RowsInMemory
from .systolic import is_tf32, uses_systolic

# The profile's ``dpas_loop_fmas`` (256 on every profile, 0 = off): a dpas computed with
# FMAs of at least that many slot FMAs (M * K * N/simd) whose b operand comes straight from a
# 2-D load is lowered as a loop over k that reads b's row k where it is used: the unrolled
# form repeats its body K times (flash attention at d=128: 8k FMAs per tile, most of the
# kernel's code and of the driver's build time) and picks from registers, which spill on the
# CPU runtime and, as IGC's spill counts show, on Intel GPUs too.
#
# Not done: a loop over the rows of a and acc for dpas with b in registers (the Lightning
# state update, 32k FMAs). It needs acc in a per-lane array indexed at run time, and the
# CPU driver lays such arrays out lane by lane (LLVM's i8 GEPs defeat its SoA layout):
# every access became a gather and the kernel ran 1.8x slower.


class RegionLowering:
    # --- format / bitcast ---
    def op_bitcast(self, op):
        src_t, dst_t = op.operands[0].type, op.result.type
        (a,) = self.operands(op)
        if src_t.elem.bits * src_t.size != dst_t.elem.bits * dst_t.size:
            raise CompileError(f"bitcast from {src_t} to {dst_t} changes the bit size")
        if isinstance(src_t, ScalarType) and isinstance(dst_t, ScalarType):
            return ew.from_bits(self.b, dst_t, ew.to_bits(self.b, src_t, a))
        src = self.as_reg(a, src_t)
        n_out = dst_t.size
        bits = [ew.to_bits(self.b, src.elem, s) for s in src.slots]
        out = self._rebits(bits, src.elem.bits, dst_t.elem.bits, n_out)
        slots = [ew.from_bits(self.b, dst_t.elem, s) for s in out]
        if isinstance(dst_t, ScalarType):
            return self.uniform_from_lane0(slots[0])
        return Reg(dst_t, slots)

    def _rebits(self, bits, sb, db, n_out):
        """Integer slots of element width ``sb`` regrouped as ``n_out`` elements of width ``db``."""
        b = self.b
        out_ty = ir.IntType(db)
        if sb == db:
            return bits
        if sb > db:           # split: element e is part e % r of source element e // r
            r = sb // db
            src = permute(self.lanes, b, bits, [e // r for e in range(n_out)])
            out = []
            for k, s in enumerate(src):
                shift = self.lanes.int_vector(element_lanes(self.lanes, k, n_out, lambda e: (e % r) * db))
                shift = self._resize_int(shift, s.type)
                out.append(b.trunc(b.lshr(s, shift), out_ty))
            return out
        r = db // sb          # join: element e is source elements e*r .. e*r + r-1
        acc = None
        for i in range(r):
            part = permute(self.lanes, b, bits, [e * r + i for e in range(n_out)])
            part = [b.shl(b.zext(p, out_ty), ir.Constant(out_ty, i * sb)) if i else b.zext(p, out_ty) for p in part]
            acc = part if acc is None else [b.or_(x, y) for x, y in zip(acc, part)]
        return acc

    def _region_index(self, attrs, count):
        """Source index (without dynamic offset) of region element p, for p < count."""
        off, vs, vst, hs, hst = (attrs[k] for k in ("offset", "vsize", "vstride", "hsize", "hstride"))
        return [off + (p // hs) * vst + (p % hs) * hst for p in range(count)]

    def op_rdregion(self, op):
        t = op.result.type
        src = self.get(op.operands[0])
        n = t.size if isinstance(t, VectorType) else 1
        index = self._region_index(op.attrs, n)
        if len(op.operands) > 1:
            dyn = self._i32(op.operands[1])
            slots = [gather_slot_dynamic(self.lanes, self.b, src.slots, self.b.add(
                self.lanes.int_vector(element_lanes(self.lanes, k, n, lambda e: index[e])), dyn))
                for k in range(slot_count(n, self.simd))]
        else:
            slots = permute(self.lanes, self.b, src.slots, index)
        if isinstance(t, ScalarType):
            return self.uniform_from_lane0(slots[0])
        return Reg(t, slots)

    def op_wrregion(self, op):
        dst, src = self.get(op.operands[0]), self.get(op.operands[1])
        t = op.result.type
        count = op.attrs["vsize"] * op.attrs["hsize"]
        scalar = not isinstance(src, Reg)    # a scalar written to every element of the region
        if scalar:
            src = Reg(VectorType(op.operands[1].type, (count,)), [src] * slot_count(count, self.simd))
        if len(op.operands) > 2:
            return Reg(t, self._wrregion_dynamic(dst, src, op.attrs, count, self._i32(op.operands[2])))
        index = self._region_index(op.attrs, count)
        inverse = {}
        for p, e in enumerate(index):
            inverse[e] = p
        out = []
        for k, old in enumerate(dst.slots):
            sources = element_lanes(self.lanes, k, dst.n, lambda e: inverse.get(e))
            if all(s is None for s in sources):
                out.append(old)
                continue
            new = src.slots[0] if scalar else gather_slot(self.lanes, self.b, src.slots, sources)
            flags = element_lanes(self.lanes, k, dst.n, lambda e: e in inverse)
            out.append(select_lanes(self.lanes, self.b, flags, new, old))
        return Reg(t, out)

    def _wrregion_dynamic(self, dst, src, attrs, count, dyn):
        """Region at offset + dyn: spread src over a span-sized register, then shift it in."""
        rel = [e - attrs["offset"] for e in self._region_index(attrs, count)]
        span = max(rel) + 1
        inverse = {pos: p for p, pos in enumerate(rel)}
        spread = permute(self.lanes, self.b, src.slots, [inverse.get(pos) for pos in range(span)])
        holes = len(inverse) < span
        hole_mask = None
        if holes:
            hole_mask = [self._const_slot(bool_, [pos in inverse for pos in range(span)], k)
                         for k in range(slot_count(span, self.simd))]
        b = self.b
        base = b.add(dyn, ir.Constant(I32, attrs["offset"]))
        out = []
        for k, old in enumerate(dst.slots):
            e = self.lanes.int_vector(element_lanes(self.lanes, k, dst.n, lambda i: i))
            rel_idx = b.sub(e, base)
            inside = b.icmp_unsigned("<", rel_idx, ir.Constant(I32, span))
            idx = b.select(inside, rel_idx, ir.Constant(I32, 0))
            new = gather_slot_dynamic(self.lanes, b, spread, idx)
            if holes:
                inside = b.and_(inside, gather_slot_dynamic(self.lanes, b, hole_mask, idx))
            out.append(b.select(inside, new, old))
        return out

    def op_iselect(self, op):
        src = self.get(op.operands[0])
        idx_op = op.operands[1].defining_op
        t = op.result.type
        if idx_op is not None and idx_op.opcode == "const":
            value = idx_op.attrs["value"]
            values = list(value) if isinstance(value, (tuple, list)) else [value] * t.size
            return Reg(t, permute(self.lanes, self.b, src.slots, [int(v) for v in values]))
        idx = self.get(op.operands[1])
        slots = [gather_slot_dynamic(self.lanes, self.b, src.slots, self._to_i32(s, idx.elem))
                 for s in idx.slots]
        return Reg(t, slots)

    def op_extract(self, op):
        src = self.get(op.operands[0])
        index = op.attrs["index"]
        if len(op.operands) == 1:
            return self.bi.broadcast(self.b, src.slots[index // self.simd], index % self.simd)
        i = self.b.add(self._i32(op.operands[1]), ir.Constant(I32, index))
        slot = self._uniform_slot_select(src.slots, i)
        return self.bi.broadcast(self.b, slot, self.b.and_(i, ir.Constant(I32, self.simd - 1)))

    def _uniform_slot_select(self, slots, i):
        """The slot that holds element i (uniform): a select chain on i // simd."""
        if len(slots) == 1:
            return slots[0]
        b = self.b
        which = b.lshr(i, ir.Constant(I32, self.lanes.log2))
        result = slots[-1]
        for j in range(len(slots) - 2, -1, -1):
            result = b.select(b.icmp_unsigned("==", which, ir.Constant(I32, j)), slots[j], result)
        return result

    def op_insert(self, op):
        dst, s = self.get(op.operands[0]), self.get(op.operands[1])
        index = op.attrs["index"]
        slots = list(dst.slots)
        if len(op.operands) == 2:
            k, lane = divmod(index, self.simd)
            flags = [l == lane for l in range(self.simd)]
            slots[k] = select_lanes(self.lanes, self.b, flags, s, slots[k])
            return Reg(dst.type, slots)
        i = self.b.add(self._i32(op.operands[2]), ir.Constant(I32, index))
        for k in range(len(slots)):
            e = self.lanes.int_vector([k * self.simd + l for l in range(self.simd)])
            slots[k] = self.b.select(self.b.icmp_unsigned("==", e, i), s, slots[k])
        return Reg(dst.type, slots)

    # ------------------------------------------------------------------ reductions
    def op_reduce(self, op):
        src = self.get(op.operands[0])
        kind, axis = op.attrs["kind"], op.attrs.get("axis")
        if axis is None or axis == "none":
            return self._reduce_all(src.slots, src.n, kind, src.elem)
        rows, cols = src.type.shape
        if axis == 0:
            return Reg(op.result.type, self._reduce_columns(src, rows, cols, kind))
        if axis == 1:
            return Reg(op.result.type, self._reduce_rows(src, rows, cols, kind))
        raise CompileError(f"bad reduce axis {axis!r}")

    def _combine(self, kind, elem, x, y):
        return ew.binary(self.b, self.math, kind, elem, x, y)

    def _tree(self, kind, elem, values):
        values = list(values)
        while len(values) > 1:
            pairs = [self._combine(kind, elem, values[i], values[i + 1]) for i in range(0, len(values) - 1, 2)]
            values = pairs + ([values[-1]] if len(values) % 2 else [])
        return values[0]

    def _mask_padding(self, slots, n, kind, elem):
        if n % self.simd == 0:
            return list(slots)
        last = len(slots) - 1
        valid = self.lanes.valid_mask(n, last)
        return slots[:last] + [self.b.select(valid, slots[last], ew.identity(kind, elem))]

    def _reduce_all(self, slots, n, kind, elem):
        """Scalar reduction of a register's n elements."""
        if elem.is_float and kind in ("and", "or"):
            raise CompileError(f"reduce '{kind}' is not defined on floating-point values")
        lane_total = self._tree(kind, elem, self._mask_padding(slots, n, kind, elem))
        return self._reduce_lanes(lane_total, kind, elem, self.simd)

    def _reduce_lanes(self, x, kind, elem, width):
        """Combine ``x`` across aligned groups of ``width`` lanes (width == simd: a scalar)."""
        b = self.b
        if width == self.simd:
            if elem.is_bool and kind in ("and", "or", "min", "max"):
                return self.bi.any_all(b, "all" if kind in ("and", "min") else "any", x)
            if kind in ("add", "min", "max") and not elem.is_bool:
                return self._group_reduce(x, kind, elem)
        step = width // 2
        while step >= 1:
            x = self._combine(kind, elem, x, self.bi.shuffle_xor(b, x, step))
            step //= 2
        return x

    def _group_reduce(self, x, kind, elem):
        b = self.b
        ty = x.type
        if elem.is_float and kind in ("min", "max"):
            return self._group_reduce_ignoring_nan(x, kind, elem)
        if isinstance(ty, ir.IntType) and ty.width < 32:
            wide = b.sext(x, I32) if elem.is_signed else b.zext(x, I32)
            return b.trunc(self.bi.group_reduce(b, kind, wide, elem.is_signed), ty)
        if isinstance(ty, ir.HalfType):
            r = self.bi.group_reduce(b, kind, b.fpext(x, FLOAT), True)
            return b.fptrunc(r, ty)
        r = self.bi.group_reduce(b, kind, x, elem.is_signed)
        return ew.round_bf16(b, r) if elem.name == "bf16" and kind == "add" else r

    def _group_reduce_ignoring_nan(self, x, kind, elem):
        """Float min/max across lanes with ops.py's rule (a NaN operand is ignored): the
        sub-group reduction compares in order, so NaN lanes enter as the infinity that
        cannot win, and the result is NaN only when every lane is NaN."""
        b = self.b
        is_nan = b.fcmp_unordered("uno", x, x)
        clean = b.select(is_nan, ir.Constant(x.type, math.inf if kind == "min" else -math.inf), x)
        if isinstance(x.type, ir.HalfType):
            r = b.fptrunc(self.bi.group_reduce(b, kind, b.fpext(clean, FLOAT), True), x.type)
        else:
            r = self.bi.group_reduce(b, kind, clean, True)
        all_nan = self.bi.any_all(b, "all", is_nan)
        return b.select(all_nan, ir.Constant(x.type, math.nan), r)

    def _reduce_columns(self, src, rows, cols, kind):
        simd, elem = self.simd, src.elem
        if cols % simd == 0:
            per_row = cols // simd
            return [self._tree(kind, elem, [src.slots[r * per_row + q] for r in range(rows)])
                    for q in range(per_row)]
        if simd % cols == 0:
            # Rows are aligned lane segments: combine slots, then the segments (xor >= cols).
            x = self._tree(kind, elem, self._mask_padding(src.slots, src.n, kind, elem))
            step = simd // 2
            while step >= cols:
                x = self._combine(kind, elem, x, self.bi.shuffle_xor(self.b, x, step))
                step //= 2
            return [x]
        row_regs = [permute(self.lanes, self.b, src.slots, [r * cols + c for c in range(cols)])
                    for r in range(rows)]
        return [self._tree(kind, elem, column) for column in zip(*row_regs)]

    def _reduce_rows(self, src, rows, cols, kind):
        simd, elem = self.simd, src.elem
        if cols < simd and simd % cols == 0 and not (elem.is_float and kind in ("and", "or")):
            # Each row is an aligned segment of lanes: butterfly inside segments, then
            # collect each segment's total (element r*cols) into the result layout.
            totals = [self._reduce_lanes(s, kind, elem, cols) for s in src.slots]
            return permute(self.lanes, self.b, totals, [r * cols for r in range(rows)])
        scalars = []
        for r in range(rows):
            if cols % simd == 0:
                per_row = cols // simd
                row = src.slots[r * per_row:(r + 1) * per_row]
            else:
                row = permute(self.lanes, self.b, src.slots, [r * cols + c for c in range(cols)])
            scalars.append(self._reduce_all(row, cols, kind, elem))
        return [self._build_slot(scalars, k) for k in range(slot_count(rows, simd))]

    # ------------------------------------------------------------------ dpas
    def op_dpas(self, op):
        acc, a, bm = self.operands(op)
        if uses_systolic(self.profile, op, self.simd):      # the XMX unit: systolic.py
            return self.dpas_systolic(op, acc, a, bm)
        if acc.elem.is_int:                                  # i8/u8 in software: systolic.py
            return self.dpas_integer_software(acc, a, bm)
        M, N = acc.type.shape
        K = a.type.shape[1]
        simd, b = self.simd, self.b
        tf32 = is_tf32(op)          # inputs rounded to tf32 first (the CPU profile's tf32)
        if isinstance(bm, RowsInMemory):
            return Reg(acc.type, self._dpas_k_loop(acc.slots, a, bm, M, K, N, tf32))
        af = [self._dpas_input(s, a.elem, tf32) for s in a.slots]
        bf = [self._dpas_input(s, bm.elem, tf32) for s in bm.slots]

        def a_elem(m, k):
            e = m * K + k
            return self.bi.broadcast(b, af[e // simd], e % simd)

        if N % simd == 0:
            per_row = N // simd
            out = list(acc.slots)
            for m in range(M):
                for k in range(K):
                    amk = a_elem(m, k)
                    for j in range(per_row):
                        out[m * per_row + j] = self._fma32(amk, bf[k * per_row + j], out[m * per_row + j])
            return Reg(acc.type, out)
        # General shapes: move rows of b and acc into row registers, then the same loop.
        per_row = slot_count(N, simd)
        b_rows = [permute(self.lanes, b, bf, [k * N + c for c in range(N)]) for k in range(K)]
        rows = []
        for m in range(M):
            row = permute(self.lanes, b, acc.slots, [m * N + c for c in range(N)])
            for k in range(K):
                amk = a_elem(m, k)
                row = [self._fma32(amk, bs, r) for bs, r in zip(b_rows[k], row)]
            rows.extend(row)
        index = [(e // N) * per_row * simd + e % N for e in range(M * N)]
        return Reg(acc.type, permute(self.lanes, b, rows, index))

    def _fma32(self, x, y, z):
        return self.bi.intrinsic(self.b, "llvm.fma.f32", FLOAT, x, y, z)

    def _dpas_k_loop(self, acc_slots, a, rows, M, K, N, tf32=False):
        """acc + a @ b as ``for k in range(K)``: load row k of b, then per row m of a one
        broadcast of a[m, k] and one fma per slot of the row (acc slots are loop-carried).
        ``a`` in registers: a[m, k] is picked from its slots (a select chain on k, then a
        broadcast); ``a`` left in memory: one uniform scalar load."""
        per_row = N // self.simd
        if isinstance(a, RowsInMemory):
            def a_elem(m, k):
                row = self.b.add(a.off, self.b.mul(ir.Constant(I64, m), a.pitch)) if m else a.off
                return self._dpas_input(self._load_elem(a.p, a.elem, self.b.add(row, self.b.zext(k, I64))),
                                        a.elem, tf32)
        else:
            af = [self._dpas_input(s, a.elem, tf32) for s in a.slots]

            def a_elem(m, k):
                return self._row_element(af, m * K, K, k)

        def step(k, out):
            row = [self._dpas_input(s, rows.elem, tf32) for s in self.load_row(rows, k)]
            out = list(out)
            for m in range(M):
                amk = a_elem(m, k)
                for j in range(per_row):
                    out[m * per_row + j] = self._fma32(amk, row[j], out[m * per_row + j])
            return out
        return self.counted_loop(K, acc_slots, step)

    def _row_element(self, slots, first, count, k):
        """Element first + k (k: a uniform i32 below count) of a register, in every lane."""
        simd = self.simd
        lo, hi = first // simd, (first + count - 1) // simd
        i = self.b.add(k, ir.Constant(I32, first - lo * simd)) if first % simd else k
        slot = self._uniform_slot_select(slots[lo:hi + 1], i)
        return self.bi.broadcast(self.b, slot, self.b.and_(i, ir.Constant(I32, simd - 1)))

    def _dpas_input(self, v, elem, tf32):
        v = self._to_f32(v, elem)
        return ew.round_tf32(self.b, v) if tf32 else v

    def _to_f32(self, v, elem):
        if elem.name in ("f32", "bf16"):
            return v
        if elem.name == "f16":
            return self.b.fpext(v, FLOAT)
        raise CompileError(f"dpas takes f16, bf16 or f32 inputs, not {elem}")
