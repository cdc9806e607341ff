"""Memory, atomic and synchronisation ops of the SIMT lowering (a mixin of ``simt.KernelLowering``).

Block accesses (``load``/``store``/``load2d``/``store2d``) give lane l of slot k the
element ``k*simd + l``: contiguous per-lane accesses, which the OpenCL CPU runtime turns
into vector loads and stores, or sub-group block reads/writes where Intel GPUs allow them
(32-bit elements, and 16-bit ones except on the CPU runtime: ``no_16bit_block_io``; start
provably aligned: ``known_multiple``). Partial last slots clamp
their loads and guard their stores; gathers, scatters and atomics branch around the lanes
that must not touch memory. A scalar store needs no guard: the value and offset are
uniform, so every lane writes the same element with the same value.

Atomics on SLM stay per-lane ``atomicrmw`` (workgroup scope, relaxed), which is what an
OpenCL C ``atomic_inc`` on local memory becomes too: on the CPU device the driver
vectorizes either into one scalar increment per lane, and the order it schedules them in
makes them slow there (see ``examples/bench/histogram.py``); nothing in the SPIR-V differs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from llvmlite import ir

from cmlang.errors import CompileError
from cmlang.ir.core import Value
from cmlang.ir.ops import atomic_mask_index
from cmlang.passes import known_multiple
from cmlang.types import ScalarType, VectorType
from . import elementwise as ew
from .layout import Reg, slot_count
from .llvm_builtins import I64, GLOBAL, LOCAL, ptr_type, value_type, memory_type

USE_BLOCK_IO = True     # sub-group block reads/writes where legal (tests may switch them off)
BLOCK_READ_SLOTS = (8, 4, 2, 1)     # slots one sub-group block read may fill (block_read8/4/2)
DEVICE, WORKGROUP = 1, 2    # SPIR-V memory scopes


@dataclass
class RowsInMemory:
    """A ``load2d`` left in memory, read where it is used by a dpas lowered as a loop
    over k: rows of its b operand (columns a multiple of simd), elements of its a operand."""
    type: VectorType
    p: object
    elem: ScalarType
    off: object          # i64 element offset of row 0
    pitch: object        # i64 elements between rows
    block_ok: bool


class MemoryLowering:
    def _elem_ptr(self, p, elem, index64):
        return self.b.gep(p, [index64], inbounds=True, source_etype=memory_type(elem))

    def _offset64(self, value: Value):
        return self._to_i64(self.get(value), value.type)

    def _block_io_ok(self, p, elem, offset_multiple, write):
        """Sub-group block reads/writes: global memory, 32- or 16-bit elements, aligned start.

        cl_intel_subgroups: the pointer must be 4-byte aligned for reads and 16-byte
        aligned for writes (buffers themselves are at least that aligned); 16-bit
        (ushort) elements are cl_intel_subgroups_short, held to the same byte alignment.

        CPU runtime workaround (``profile.cpu.no_16bit_block_io``): 16-bit block IO is
        not used there. The Intel OpenCL CPU runtime was seen to miscompile a ushort block
        read that feeds a ushort block write. (Re-checked later: 1-D and 2-D copies of
        f16/u16/i16/bf16 at simd 8/16/32 came out right, and the CPU gains nothing from
        it: hgemm ran the same.)
        """
        if not USE_BLOCK_IO or p.type.addrspace != GLOBAL or elem.is_bool:
            return False
        if elem.nbytes != 4 and (elem.nbytes != 2 or self.profile.cpu.no_16bit_block_io):
            return False
        return (offset_multiple * elem.nbytes) % (16 if write else 4) == 0

    def _load_elem(self, p, elem, index64):
        mty = memory_type(elem)
        return ew.from_memory(self.b, elem, self.b.load(self._elem_ptr(p, elem, index64), typ=mty))

    def _store_elem(self, p, elem, index64, v):
        self.b.store(ew.to_memory(self.b, elem, v), self._elem_ptr(p, elem, index64))

    def _block_read(self, p, elem, start64):
        mty = memory_type(elem)
        ity = ir.IntType(elem.nbytes * 8)
        raw = self.bi.block_read(self.b, self._elem_ptr(p, elem, start64), ity)
        if mty != ity:
            raw = self.b.bitcast(raw, mty)
        return ew.from_memory(self.b, elem, raw)

    def _block_read_slots(self, p, elem, start64, count):
        """``count`` consecutive slots from start64 by sub-group block reads: one read of 8,
        4 or 2 slots where it fits (lane l gets elements l, l + simd, ...: the slots' own
        layout; a message per read, where a read per slot is one message each), else one a
        slot; one read per slot on the CPU runtime (``one_slot_block_reads``)."""
        if count == 1 or self.profile.cpu.one_slot_block_reads:
            return [self._block_read(p, elem, self._slot_start(start64, k)) for k in range(count)]
        b, mty, ity = self.b, memory_type(elem), ir.IntType(elem.nbytes * 8)
        slots, k = [], 0
        while k < count:
            n = next(n for n in BLOCK_READ_SLOTS if n <= count - k)
            if n == 1:
                slots.append(self._block_read(p, elem, self._slot_start(start64, k)))
            else:
                raw = self.bi.block_read(b, self._elem_ptr(p, elem, self._slot_start(start64, k)),
                                         ir.VectorType(ity, n))
                for i in range(n):
                    part = b.extract_element(raw, ir.Constant(ir.IntType(32), i))
                    slots.append(ew.from_memory(b, elem, b.bitcast(part, mty) if mty != ity else part))
            k += n
        return slots

    def _slot_start(self, start64, k):
        return self.b.add(start64, ir.Constant(I64, k * self.simd)) if k else start64

    def _block_write(self, p, elem, start64, v):
        mv = ew.to_memory(self.b, elem, v)
        ity = ir.IntType(elem.nbytes * 8)
        if mv.type != ity:
            mv = self.b.bitcast(mv, ity)
        self.bi.block_write(self.b, self._elem_ptr(p, elem, start64), mv)

    def op_load(self, op):
        p = self.get(op.operands[0])
        elem = op.operands[0].type.elem
        n = op.result.type.size
        off = self._offset64(op.operands[1])
        block = self._block_io_ok(p, elem, known_multiple(op.operands[1], self.iv_loops), write=False)
        return Reg(op.result.type, self._contiguous_load(p, elem, off, n, block))

    def _contiguous_load(self, p, elem, off, n, block_ok):
        b, simd = self.b, self.simd
        full = n // simd
        slots = self._block_read_slots(p, elem, off, full) if block_ok and full else []
        for k in range(len(slots), slot_count(n, simd)):
            start = self._slot_start(off, k)
            if (k + 1) * simd <= n:
                slots.append(self._load_elem(p, elem, b.add(start, self.lanes.id64)))
            else:   # partial slot: padding lanes re-read the last element (in bounds, no branch)
                slots.append(self._load_elem(p, elem, b.add(start, self.lanes.clamped_id64(n - k * simd))))
        return slots

    def op_store(self, op):
        p = self.get(op.operands[0])
        elem = op.operands[0].type.elem
        off = self._offset64(op.operands[1])
        v = self.get(op.operands[2])
        if not isinstance(v, Reg):
            # A scalar and its offset are uniform: every lane writes the same value to the
            # same address, which needs no branch (the vectorizer emits one scalar store).
            self._store_elem(p, elem, off, v)
            return None
        block = self._block_io_ok(p, elem, known_multiple(op.operands[1], self.iv_loops), write=True)
        self._contiguous_store(p, elem, off, v, block)
        return None

    def _contiguous_store(self, p, elem, off, v, block_ok):
        b, simd = self.b, self.simd
        for k, s in enumerate(v.slots):
            start = b.add(off, ir.Constant(I64, k * simd)) if k else off
            if (k + 1) * simd <= v.n:
                if block_ok:
                    self._block_write(p, elem, start, s)
                else:
                    self._store_elem(p, elem, b.add(start, self.lanes.id64), s)
            else:
                with b.if_then(self.lanes.valid_mask(v.n, k)):
                    self._store_elem(p, elem, b.add(start, self.lanes.id64), s)

    def _lane0(self):
        return self.lanes.mask([l == 0 for l in range(self.simd)])

    def _matrix_index(self, shape, k, off, pitch):
        """Per-lane element index off + i*pitch + j of the matrix element in this lane of slot k.

        Padding lanes use the last element (in bounds)."""
        rows, cols = shape
        n = rows * cols
        simd, b = self.simd, self.b
        last = n - 1
        i = self.lanes.int_vector([min(k * simd + l, last) // cols for l in range(simd)])
        j = self.lanes.int_vector([min(k * simd + l, last) % cols for l in range(simd)])
        return b.add(b.add(off, b.mul(b.zext(i, I64), pitch)), b.zext(j, I64))

    def _row_start(self, cols, k, off, pitch):
        """Slot k of a matrix with cols % simd == 0 is one contiguous run: its first index."""
        i, j = divmod(k * self.simd, cols)
        b = self.b
        start = b.add(off, b.mul(ir.Constant(I64, i), pitch)) if i else off
        return b.add(start, ir.Constant(I64, j)) if j else start

    def op_load2d(self, op):
        p = self.get(op.operands[0])
        elem = op.operands[0].type.elem
        t = op.result.type
        off, pitch = self._offset64(op.operands[1]), self._offset64(op.operands[2])
        rows, cols = t.shape
        slots = []
        contiguous = cols % self.simd == 0
        block = contiguous and self._block_io_ok(
            p, elem, math.gcd(known_multiple(op.operands[1], self.iv_loops),
                                known_multiple(op.operands[2], self.iv_loops)), write=False)
        if op in self.rows_left_in_memory:
            return RowsInMemory(t, p, elem, off, pitch, block)
        if block:            # each row's slots by block reads
            per_row = cols // self.simd
            for r in range(rows):
                slots += self._block_read_slots(p, elem, self._row_start(cols, r * per_row, off, pitch), per_row)
            return Reg(t, slots)
        for k in range(slot_count(t.size, self.simd)):
            if contiguous:
                start = self._row_start(cols, k, off, pitch)
                slots.append(self._load_elem(p, elem, self.b.add(start, self.lanes.id64)))
            else:
                slots.append(self._load_elem(p, elem, self._matrix_index(t.shape, k, off, pitch)))
        return Reg(t, slots)

    def load_row(self, rows: RowsInMemory, r):
        """The slots of row ``r`` (an i32 value) of a matrix left in memory."""
        b = self.b
        start = b.add(rows.off, b.mul(b.zext(r, I64), rows.pitch))
        count = rows.type.shape[1] // self.simd
        if rows.block_ok:
            return self._block_read_slots(rows.p, rows.elem, start, count)
        return [self._load_elem(rows.p, rows.elem, b.add(self._slot_start(start, j), self.lanes.id64))
                for j in range(count)]

    def op_store2d(self, op):
        p = self.get(op.operands[0])
        elem = op.operands[0].type.elem
        off, pitch = self._offset64(op.operands[1]), self._offset64(op.operands[2])
        v = self.get(op.operands[3])
        rows, cols = v.type.shape
        contiguous = cols % self.simd == 0
        block = contiguous and self._block_io_ok(
            p, elem, math.gcd(known_multiple(op.operands[1], self.iv_loops),
                                known_multiple(op.operands[2], self.iv_loops)), write=True)
        for k, s in enumerate(v.slots):
            if contiguous:
                start = self._row_start(cols, k, off, pitch)
                if block:
                    self._block_write(p, elem, start, s)
                else:
                    self._store_elem(p, elem, self.b.add(start, self.lanes.id64), s)
                continue
            index = self._matrix_index(v.type.shape, k, off, pitch)
            if (k + 1) * self.simd <= v.n:
                self._store_elem(p, elem, index, s)
            else:
                with self.b.if_then(self.lanes.valid_mask(v.n, k)):
                    self._store_elem(p, elem, index, s)
        return None

    def _lane_conditions(self, n, mask, k):
        """The i1 that enables lane access in slot k (None: every lane)."""
        cond = None
        if (k + 1) * self.simd > n:
            cond = self.lanes.valid_mask(n, k)
        if mask is not None:
            cond = mask.slots[k] if cond is None else self.b.and_(cond, mask.slots[k])
        return cond

    def _guarded(self, cond, emit, result_type=None):
        """Run ``emit()`` only in lanes where ``cond``; its result is 0 in the other lanes."""
        if cond is None:
            return emit()
        b = self.b
        before = b.block
        with b.if_then(cond):
            value = emit()
            inside = b.block
        if result_type is None:
            return None
        phi = b.phi(value.type)
        phi.add_incoming(value, inside)
        phi.add_incoming(ir.Constant(value.type, 0), before)
        return phi

    def op_gather(self, op):
        p = self.get(op.operands[0])
        elem = op.operands[0].type.elem
        offs = self.get(op.operands[1])
        mask = self.get(op.operands[2]) if len(op.operands) > 2 else None
        t = op.result.type
        slots = []
        for k, o in enumerate(offs.slots):
            index = self._to_i64(o, offs.elem)
            cond = self._lane_conditions(t.size, mask, k)
            slots.append(self._guarded(cond, lambda: self._load_elem(p, elem, index), value_type(elem)))
        return Reg(t, slots)

    def op_scatter(self, op):
        p = self.get(op.operands[0])
        elem = op.operands[0].type.elem
        offs, v = self.get(op.operands[1]), self.get(op.operands[2])
        mask = self.get(op.operands[3]) if len(op.operands) > 3 else None
        n = op.operands[1].type.size
        vslots = self.slots_of(v, len(offs.slots))
        for k, o in enumerate(offs.slots):
            index = self._to_i64(o, offs.elem)
            cond = self._lane_conditions(n, mask, k)
            self._guarded(cond, lambda: self._store_elem(p, elem, index, vslots[k]))
        return None

    # --- atomics ---
    _INT_ATOMICS = {"add": "add", "sub": "sub", "and": "and", "or": "or", "xor": "xor", "xchg": "xchg"}
    _FLOAT_ATOMICS = {"add": "fadd", "sub": "fsub", "min": "fmin", "max": "fmax", "xchg": "xchg"}

    def _atomic_one(self, p, elem, index64, kind, v, v2):
        b = self.b
        if elem.bits not in (32, 64) or elem.is_bool or elem.name == "bf16":
            raise CompileError(f"atomics on {elem} are not supported (32- and 64-bit types only)")
        ptr = self._elem_ptr(p, elem, index64)
        local = p.type.addrspace == LOCAL
        if kind == "cmpxchg":
            ity = ir.IntType(elem.bits)
            as_int = (lambda x: b.bitcast(x, ity)) if elem.is_float else (lambda x: x)
            old = self.bi.atomic_cmpxchg(b, ptr, as_int(v), as_int(v2), WORKGROUP if local else DEVICE)
            return b.bitcast(old, v.type) if elem.is_float else old
        scope = f'syncscope("{"workgroup" if local else "device"}") monotonic'
        if elem.is_float:
            if kind not in self._FLOAT_ATOMICS:
                raise CompileError(f"atomic '{kind}' is not defined on floating-point values")
            rmw = self._FLOAT_ATOMICS[kind]
        elif kind in ("min", "max"):
            rmw = ("" if elem.is_signed else "u") + kind
        else:
            rmw = self._INT_ATOMICS[kind]
        return b.atomic_rmw(rmw, ptr, v, scope)

    def op_atomic(self, op):
        p = self.get(op.operands[0])
        elem = op.operands[0].type.elem
        kind = op.attrs["kind"]
        offs = self.get(op.operands[1])
        v = self.get(op.operands[2])
        v2 = self.get(op.operands[3]) if kind == "cmpxchg" and len(op.operands) > 3 else None
        at = atomic_mask_index(kind)
        mask = self.get(op.operands[at]) if len(op.operands) > at else None
        if kind == "cmpxchg" and v2 is None:
            raise CompileError("atomic cmpxchg needs a compare value and a new value")
        if not isinstance(offs, Reg):
            index = self._to_i64(offs, op.operands[1].type)
            old = self._guarded(self._lane0(), lambda: self._atomic_one(p, elem, index, kind, v, v2),
                                value_type(elem))
            return self.uniform_from_lane0(old)
        t = op.results[0].type if op.results else offs.type.with_elem(elem)
        k_count = len(offs.slots)
        vs = self.slots_of(v, k_count)
        v2s = self.slots_of(v2, k_count) if v2 is not None else [None] * k_count
        slots = []
        for k, o in enumerate(offs.slots):
            index = self._to_i64(o, offs.elem)
            cond = self._lane_conditions(offs.n, mask, k)
            slots.append(self._guarded(cond, lambda: self._atomic_one(p, elem, index, kind, vs[k], v2s[k]),
                                       value_type(elem)))
        return Reg(t, slots)

    def op_slm(self, op):
        t = op.result.type
        n = op.attrs["n"]
        self._slm_count += 1
        arr = ir.ArrayType(memory_type(t.elem), n)
        g = ir.GlobalVariable(self.module, arr, f"cm.slm.{self._slm_count}", addrspace=LOCAL)
        g.linkage = "internal"
        g.initializer = ir.Constant(arr, ir.Undefined)
        g.align = 16
        g.type = ptr_type(LOCAL)      # an opaque pointer, like every other pointer value here
        return g

    def op_barrier(self, op):
        self.bi.barrier(self.b)

    def op_fence(self, op):
        self.bi.memory_fence(self.b)
