"""spirv-vc lowering of memory: SVM (global) block, gather and scatter messages, SLM
messages on surface 254, atomics, barrier and fence (a mixin of ``vc.VCLowering``; the op
table is in ``vc.py``'s docstring)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from llvmlite import ir

from cmlang.errors import CompileError
from cmlang.ir.core import Value
from cmlang.ir.ops import atomic_mask_index
from cmlang.passes import known_multiple
from cmlang.types import ScalarType
from . import elementwise as ew
from .elementwise import constant, lanes_of, scalar_of
from .llvm_builtins import I1, I8, I16, I32, I64, VOID, value_type, memory_type
from .vc_intrinsics import byte_size, is_float_ty, reg_type, size_of, undef

SLM_SURFACE = 254                 # the binding-table index of shared local memory (CM, ESIMD)
FENCE_GLOBAL_AND_SLM = 0x21       # CM_GLOBAL_COHERENT_FENCE | CM_LOCAL_BARRIER
BUFFER_ALIGN = 64                 # assumed alignment of every buffer base address
BLOCK_SIZES = (128, 64, 32, 16)   # bytes an SVM block message may move


@dataclass
class Pointer:
    """A lowered pointer: global memory is an i64 SVM address, SLM a constant byte offset."""
    space: str
    base: object          # ir.Value (i64) for global, int for local
    elem: ScalarType


class VCMemoryLowering:
    """Needs from the lowering: ``b``, ``genx``, ``kernel``, ``iv_loops``, ``slm_bytes``,
    ``get``, and the region helpers of ``vc_regions.VCRegionLowering``."""

    # ------------------------------------------------------------------ memory: shared pieces
    def _offset64(self, value: Value):
        return self.int_to(self.get(value), value.type, I64)

    def _address(self, ptr: Pointer, off64):
        """The byte address of element ``off64`` (an i64) of global memory."""
        es = memory_type(ptr.elem)
        return self.b.add(ptr.base, self.b.mul(off64, ir.Constant(I64, byte_size(es))))

    def _slm_offset(self, ptr: Pointer, off):
        """The i32 SLM byte offset of element ``off`` (an IR scalar value)."""
        b = self.b
        index = self.int_to(self.get(off), off.type, I32)
        scaled = b.mul(index, ir.Constant(I32, byte_size(memory_type(ptr.elem))))
        return b.add(scaled, ir.Constant(I32, ptr.base)) if ptr.base else scaled

    def _alignment(self, value: Value):
        """A number of elements that provably divides the element offset ``value`` (0: it is 0)."""
        return known_multiple(value, self.iv_loops)

    # ------------------------------------------------------------------ memory ops
    def op_load(self, op):
        ptr = self.get(op.operands[0])
        n = size_of(op.result.type)
        if ptr.space == "local":
            raw = self._slm_contiguous_load(ptr, self._slm_offset(ptr, op.operands[1]), n)
        else:
            raw = self._svm_contiguous_load(ptr, self._offset64(op.operands[1]), n,
                                            self._alignment(op.operands[1]))
        return ew.from_memory(self.b, ptr.elem, raw)

    def op_store(self, op):
        ptr = self.get(op.operands[0])
        v = ew.to_memory(self.b, ptr.elem, self.get(op.operands[2]))
        if ptr.space == "local":
            self._slm_contiguous_store(ptr, self._slm_offset(ptr, op.operands[1]), v)
        else:
            self._svm_contiguous_store(ptr, self._offset64(op.operands[1]), v, self._alignment(op.operands[1]))

    def op_load2d(self, op):
        ptr = self.get(op.operands[0])
        rows, cols = op.result.type.shape
        pieces = []
        for i in range(rows):
            pieces.append((self._row_load(ptr, op.operands[1], op.operands[2], i, cols), cols))
        return ew.from_memory(self.b, ptr.elem, self.concat(pieces, memory_type(ptr.elem)))

    def _row_start(self, off: Value, pitch: Value, i, ty):
        b = self.b
        o, p = self.int_to(self.get(off), off.type, ty), self.int_to(self.get(pitch), pitch.type, ty)
        return b.add(o, b.mul(p, ir.Constant(ty, i))) if i else o

    def _row_load(self, ptr, off, pitch, i, cols):
        if ptr.space == "local":
            start = self.b.add(self.b.mul(self._row_start(off, pitch, i, I32),
                                          ir.Constant(I32, byte_size(memory_type(ptr.elem)))),
                               ir.Constant(I32, ptr.base))
            return self._slm_contiguous_load(ptr, start, cols)
        align = math.gcd(self._alignment(off), self._alignment(pitch))
        return self._svm_contiguous_load(ptr, self._row_start(off, pitch, i, I64), cols, align)

    def op_store2d(self, op):
        """Rows are stored in order, so where rows overlap the later element wins."""
        ptr = self.get(op.operands[0])
        off, pitch = op.operands[1], op.operands[2]
        m = ew.to_memory(self.b, ptr.elem, self.get(op.operands[3]))
        rows, cols = op.operands[3].type.shape
        for i in range(rows):
            row = self.piece(m, i * cols, cols) if rows * cols > 1 else m
            if ptr.space == "local":
                start = self.b.add(self.b.mul(self._row_start(off, pitch, i, I32),
                                              ir.Constant(I32, byte_size(memory_type(ptr.elem)))),
                                   ir.Constant(I32, ptr.base))
                self._slm_contiguous_store(ptr, start, row)
            else:
                align = math.gcd(self._alignment(off), self._alignment(pitch))
                self._svm_contiguous_store(ptr, self._row_start(off, pitch, i, I64), row, align)

    def op_gather(self, op):
        ptr = self.get(op.operands[0])
        offs = op.operands[1]
        mask = self.get(op.operands[2]) if len(op.operands) > 2 else None
        n = size_of(offs.type)
        if ptr.space == "local":
            raw = self._slm_gather(ptr, self._slm_offsets(ptr, offs), n, mask)
        else:
            raw = self._svm_gather(self._svm_addresses(ptr, offs), n, memory_type(ptr.elem), mask)
        return ew.from_memory(self.b, ptr.elem, raw)

    def op_scatter(self, op):
        """Where two elements hit one address the later message wins; within one message the
        data port is assumed to write lanes in order (higher lane wins), as the interpreter does."""
        ptr = self.get(op.operands[0])
        offs = op.operands[1]
        n = size_of(offs.type)
        v = ew.to_memory(self.b, ptr.elem, self.broadcast_like(self.get(op.operands[2]), reg_type(ptr.elem, n)))
        mask = self.get(op.operands[3]) if len(op.operands) > 3 else None
        if ptr.space == "local":
            self._slm_scatter(ptr, self._slm_offsets(ptr, offs), v, n, mask)
        else:
            self._svm_scatter(self._svm_addresses(ptr, offs), v, n, mask)

    def _svm_addresses(self, ptr, offs: Value):
        n = size_of(offs.type)
        idx = self.int_to(self.get(offs), offs.type.elem, I64)
        es = byte_size(memory_type(ptr.elem))
        return self.b.add(self.splat(ptr.base, n), self.b.mul(idx, constant(idx.type, es)))

    def _slm_offsets(self, ptr, offs: Value):
        idx = self.int_to(self.get(offs), offs.type.elem, I32)
        es = byte_size(memory_type(ptr.elem))
        return self.b.add(self.b.mul(idx, constant(idx.type, es)), constant(idx.type, ptr.base))

    def op_slm(self, op):
        t = op.result.type
        base = -(-self.slm_bytes // 16) * 16
        self.slm_bytes = base + op.attrs["n"] * byte_size(memory_type(t.elem))
        return Pointer("local", base, t.elem)

    def op_barrier(self, op):
        """Writes before the barrier are visible after it: fence global + SLM, then wait."""
        self.genx(self.b, "fence", VOID, [ir.Constant(I8, FENCE_GLOBAL_AND_SLM)])
        self.genx(self.b, "barrier", VOID, [])

    def op_fence(self, op):
        self.genx(self.b, "fence", VOID, [ir.Constant(I8, FENCE_GLOBAL_AND_SLM)])

    # ------------------------------------------------------------------ SVM (global) messages
    def _svm_contiguous_load(self, ptr, off64, n, multiple):
        """n elements from element off64 on: block loads where the size and alignment allow,
        a predicated gather for the rest."""
        b = self.b
        mty = memory_type(ptr.elem)
        es = byte_size(mty)
        addr = self._address(ptr, off64)
        pieces, pos = [], 0
        for size in self._block_plan(n, es, multiple, 4):
            count = size // es
            a = b.add(addr, ir.Constant(I64, pos * es)) if pos else addr
            ty = ir.VectorType(mty, count)
            pieces.append((self.genx(b, "svm.block.ld.unaligned", ty, [a], [ty, I64]), count))
            pos += count
        if pos < n:
            rest = n - pos
            a = b.add(self.splat(addr, rest) if rest > 1 else addr, self.iota(I64, rest, es, pos * es))
            pieces.append((self._svm_gather(a, rest, mty, None), rest))
        return self.concat(pieces, mty)

    def _block_plan(self, n, es, multiple, align):
        """Sizes in bytes of the block messages that cover a prefix of n elements of es bytes,
        each starting ``align``-byte aligned (the start is a multiple of ``multiple`` elements
        past a buffer base, which is BUFFER_ALIGN-aligned)."""
        assert align <= BUFFER_ALIGN
        if multiple != 0 and (multiple * es) % align:
            return []
        plan, left = [], n * es
        while True:
            size = next((s for s in BLOCK_SIZES if s <= left and s % es == 0), None)
            if size is None:
                return plan
            plan.append(size)
            left -= size

    def _svm_contiguous_store(self, ptr, off64, v, multiple):
        """Block stores need 16-byte (oword) aligned addresses: used only where that is known."""
        b = self.b
        n = lanes_of(v.type)
        mty = scalar_of(v.type)
        es = byte_size(mty)
        addr = self._address(ptr, off64)
        pos = 0
        for size in self._block_plan(n, es, multiple, 16):
            count = size // es
            a = b.add(addr, ir.Constant(I64, pos * es)) if pos else addr
            data = self.piece(v, pos, count)
            self.genx(b, "svm.block.st", VOID, [a, data], [I64, data.type])
            pos += count
        if pos < n:
            rest = n - pos
            a = b.add(self.splat(addr, rest) if rest > 1 else addr, self.iota(I64, rest, es, pos * es))
            self._svm_scatter(a, self.piece(v, pos, rest) if n > 1 else v, rest, None)

    def _chunks(self, n, widths):
        """(start, count, lanes) message chunks covering n elements; lanes >= count from widths."""
        out, pos = [], 0
        biggest = widths[0]
        while pos < n:
            count = min(biggest, n - pos)
            lanes = min(w for w in widths if w >= count)
            out.append((pos, count, lanes))
            pos += count
        return out

    def _lanes(self, v, start, count, lanes):
        """Elements start..start+count-1 of v (a vector or scalar) widened to ``lanes`` lanes."""
        b = self.b
        if lanes_of(v.type) == 1:
            part = v
        else:
            part = self.piece(v, start, count)
        if count == lanes:
            return part
        if scalar_of(v.type) == I1:
            wide = b.zext(part, ir.VectorType(I8, count) if count > 1 else I8)
            return b.icmp_unsigned("!=", self._lanes(wide, 0, count, lanes), constant(ir.VectorType(I8, lanes), 0))
        if count == 1:
            return self.splat(part, lanes)
        # Extra lanes repeat the first element: a valid address for lanes that are masked off.
        base = self.splat(b.extract_element(part, ir.Constant(I32, 0)), lanes)
        return self.wrregion(base, part, count, count, 1, 0)

    def _predicate(self, mask, start, count, lanes):
        valid = self.lane_mask(lanes, count)
        if mask is None:
            return valid
        return self.b.and_(self._lanes(mask, start, count, lanes), valid)

    def _svm_gather(self, addrs, n, mty, mask):
        """svm.gather of n elements at the i64 addresses (8 or 16 lanes per message)."""
        pieces = []
        for start, count, lanes in self._chunks(n, (16, 8)):
            a = self._lanes(addrs, start, count, lanes)
            pred = self._predicate(mask, start, count, lanes)
            pieces.append((self.piece(self._svm_gather_message(pred, a, mty, lanes), 0, count), count))
        return self.concat(pieces, mty)

    def _svm_gather_message(self, pred, addrs, mty, lanes):
        b = self.b
        es = byte_size(mty)
        if es >= 4:
            ty = ir.VectorType(mty, lanes)
            return self.genx(b, "svm.gather", ty, [pred, ir.Constant(I32, 0), addrs, constant(ty, 0)],
                             [ty, pred.type, addrs.type])
        # 1- and 2-byte elements come back one per dword (IGC's own lowering does the same).
        ty = ir.VectorType(I8, 4 * lanes)
        raw = self.genx(b, "svm.gather", ty, [pred, ir.Constant(I32, es // 2), addrs, constant(ty, 0)],
                        [ty, pred.type, addrs.type])
        ints = b.trunc(b.bitcast(raw, ir.VectorType(I32, lanes)), ir.VectorType(ir.IntType(8 * es), lanes))
        return b.bitcast(ints, ir.VectorType(mty, lanes)) if is_float_ty(mty) else ints

    def _svm_scatter(self, addrs, v, n, mask):
        b = self.b
        for start, count, lanes in self._chunks(n, (16, 8)):
            a = self._lanes(addrs, start, count, lanes)
            pred = self._predicate(mask, start, count, lanes)
            data = self._lanes(v, start, count, lanes)
            mty = scalar_of(data.type)
            es = byte_size(mty)
            if es < 4:
                ints = b.bitcast(data, ir.VectorType(ir.IntType(8 * es), lanes)) if is_float_ty(mty) else data
                data = b.bitcast(b.zext(ints, ir.VectorType(I32, lanes)), ir.VectorType(I8, 4 * lanes))
            self.genx(b, "svm.scatter", VOID, [pred, ir.Constant(I32, es // 2 if es < 4 else 0), a, data],
                      [pred.type, a.type, data.type])

    # ------------------------------------------------------------------ SLM messages
    def _slm_contiguous_load(self, ptr, start32, n):
        es = byte_size(memory_type(ptr.elem))
        offs = self.b.add(self.splat(start32, n), self.iota(I32, n, es)) if n > 1 else start32
        return self._slm_gather(ptr, offs, n, None)

    def _slm_contiguous_store(self, ptr, start32, v):
        n = lanes_of(v.type)
        es = byte_size(memory_type(ptr.elem))
        offs = self.b.add(self.splat(start32, n), self.iota(I32, n, es)) if n > 1 else start32
        self._slm_scatter(ptr, offs, v, n, None)

    def _slm_gather(self, ptr, offs, n, mask):
        """gather.scaled on the SLM surface: up to 16 lanes, one dword per lane; 8-byte
        elements as two dword gathers (low and high halves) interleaved."""
        mty = memory_type(ptr.elem)
        pieces = []
        for start, count, lanes in self._chunks(n, (16, 8, 4, 2)):
            o = self._lanes(offs, start, count, lanes)
            pred = self._predicate(mask, start, count, lanes)
            pieces.append((self.piece(self._slm_gather_message(pred, o, mty, lanes), 0, count), count))
        return self.concat(pieces, mty)

    def _slm_gather_message(self, pred, offs, mty, lanes):
        b = self.b
        es = byte_size(mty)
        dwords = ir.VectorType(I32, lanes)

        def gather(log2_blocks, global_offset):
            return self.genx(b, "gather.scaled", dwords,
                             [pred, ir.Constant(I32, log2_blocks), ir.Constant(I16, 0),
                              ir.Constant(I32, SLM_SURFACE), ir.Constant(I32, global_offset), offs,
                              constant(dwords, 0)], [dwords, pred.type, offs.type])

        if es == 8:
            pair = undef(ir.VectorType(I32, 2 * lanes))
            pair = self.wrregion(pair, gather(2, 0), 2, 1, 0, 0)
            pair = self.wrregion(pair, gather(2, 4), 2, 1, 0, 1)
            return b.bitcast(pair, ir.VectorType(mty, lanes))
        raw = gather(es.bit_length() - 1, 0)
        if es == 4:
            return b.bitcast(raw, ir.VectorType(mty, lanes))
        ints = b.trunc(raw, ir.VectorType(ir.IntType(8 * es), lanes))
        return b.bitcast(ints, ir.VectorType(mty, lanes)) if is_float_ty(mty) else ints

    def _slm_scatter(self, ptr, offs, v, n, mask):
        b = self.b
        for start, count, lanes in self._chunks(n, (16, 8, 4, 2)):
            o = self._lanes(offs, start, count, lanes)
            pred = self._predicate(mask, start, count, lanes)
            data = self._lanes(v, start, count, lanes)
            mty = scalar_of(data.type)
            es = byte_size(mty)
            ints = b.bitcast(data, ir.VectorType(ir.IntType(8 * es), lanes)) if is_float_ty(mty) else data
            if es == 8:
                halves = b.bitcast(ints, ir.VectorType(I32, 2 * lanes))
                for half in (0, 1):
                    self._scatter_scaled(pred, o, self.rdregion(halves, lanes, 2, 1, 0, half), 2, 4 * half)
                continue
            dwords = ints if es == 4 else b.zext(ints, ir.VectorType(I32, lanes))
            self._scatter_scaled(pred, o, dwords, es.bit_length() - 1, 0)

    def _scatter_scaled(self, pred, offs, dwords, log2_blocks, global_offset):
        self.genx(self.b, "scatter.scaled", VOID,
                  [pred, ir.Constant(I32, log2_blocks), ir.Constant(I16, 0), ir.Constant(I32, SLM_SURFACE),
                   ir.Constant(I32, global_offset), offs, dwords], [pred.type, offs.type, dwords.type])

    # ------------------------------------------------------------------ atomics
    _ATOMIC_INT = {"add": "add", "sub": "sub", "and": "and", "or": "or", "xor": "xor", "xchg": "xchg"}

    def op_atomic(self, op):
        ptr = self.get(op.operands[0])
        elem, kind = ptr.elem, op.attrs["kind"]
        offs_value = op.operands[1]
        n = size_of(offs_value.type)
        if elem.bits not in (32, 64) or elem.is_bool or elem.name == "bf16":
            raise CompileError(f"atomics on {elem} are not supported (32- and 64-bit types only)")
        if kind == "cmpxchg" and len(op.operands) < 4:
            raise CompileError("atomic cmpxchg needs a compare value and a new value")
        ty = reg_type(elem, n)
        v = self.broadcast_like(self.get(op.operands[2]), ty)
        v2 = self.broadcast_like(self.get(op.operands[3]), ty) if kind == "cmpxchg" else None
        at = atomic_mask_index(kind)
        mask = self.get(op.operands[at]) if len(op.operands) > at else None
        if ptr.space == "local":
            if elem.bits != 32:
                self.unsupported("64-bit atomics on shared local memory")
            where = self._slm_offsets(ptr, offs_value)
        else:
            where = self._svm_addresses(ptr, offs_value)
        widths = (16, 8) if ptr.space == "local" else (8, 4, 2)
        pieces = []
        for start, count, lanes in self._chunks(n, widths):
            pred = self._predicate(mask, start, count, lanes)
            args = [self._lanes(x, start, count, lanes) if x is not None else None for x in (where, v, v2)]
            old = self._atomic_message(ptr.space, kind, elem, pred, *args)
            pieces.append((self.piece(old, 0, count), count))
        return self.concat(pieces, value_type(elem))

    def _atomic_message(self, space, kind, elem, pred, where, v, v2):
        """One atomic message: old values of ``lanes`` elements (float data moves as bits)."""
        b = self.b
        if elem.is_float and kind in ("add", "sub") and space == "global":
            return self._float_atomic_loop(kind, pred, where, v)
        ity = ir.VectorType(ir.IntType(elem.bits), lanes_of(v.type))
        if elem.is_float and kind in ("min", "max"):
            name, data = "f" + kind, [v]
        elif elem.is_float and kind in ("add", "sub"):       # SLM: dword.atomic.fadd / fsub
            name, data = "f" + kind, [v]
        elif kind in ("min", "max"):
            name, data = ("i" if elem.is_signed else "") + kind, [v]
        elif kind == "cmpxchg":      # src0 = new value, src1 = compare value (as IGC emits it)
            name, data = "cmpxchg", [v2, v]
        elif kind in self._ATOMIC_INT:
            name, data = self._ATOMIC_INT[kind], [v]
        else:
            raise CompileError(f"atomic '{kind}' is not supported")
        if elem.is_float and not name.startswith("f"):
            data = [b.bitcast(x, ity) for x in data]
        rty = data[0].type
        if space == "local":
            args = [pred, ir.Constant(I32, SLM_SURFACE), where] + data + [constant(rty, 0)]
            overloads = [rty, pred.type] + ([] if name == "cmpxchg" else [where.type])
            old = self.genx(b, "dword.atomic." + name, rty, args, overloads)
        else:
            old = self.genx(b, "svm.atomic." + name, rty, [pred, where] + data + [constant(rty, 0)],
                            [rty, pred.type, where.type])
        return b.bitcast(old, v.type) if old.type != v.type else old

    def _float_atomic_loop(self, kind, pred, addrs, v):
        """Float add/sub on global memory: compare-exchange the bits until every lane succeeds."""
        b = self.b
        lanes = lanes_of(v.type)
        ity = ir.VectorType(ir.IntType(byte_size(v.type) * 8), lanes)
        first = self._svm_gather_message(pred, addrs, scalar_of(v.type), lanes)
        before = b.block
        loop = self.kernel.append_basic_block("atomic.retry")
        done = self.kernel.append_basic_block("atomic.done")
        b.branch(loop)
        b.position_at_end(loop)
        current = b.phi(v.type)
        pending = b.phi(pred.type)
        result = b.phi(v.type)
        new = (b.fadd if kind == "add" else b.fsub)(current, v)
        seen = self.genx(b, "svm.atomic.cmpxchg", ity,
                         [pending, addrs, b.bitcast(new, ity), b.bitcast(current, ity), undef(ity)],
                         [ity, pred.type, addrs.type])
        won = b.and_(pending, b.icmp_unsigned("==", seen, b.bitcast(current, ity)))
        still = b.and_(pending, b.xor(won, constant(won.type, 1)))
        next_result = b.select(won, current, result)
        next_current = b.bitcast(seen, v.type)
        b.cbranch(self.genx(b, "any", I1, [still], [still.type]), loop, done)
        current.add_incoming(first, before)
        current.add_incoming(next_current, loop)
        pending.add_incoming(pred, before)
        pending.add_incoming(still, loop)
        result.add_incoming(constant(v.type, 0), before)     # lanes disabled by the predicate: 0
        result.add_incoming(next_result, loop)
        b.position_at_end(done)
        return next_result
