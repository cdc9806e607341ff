"""2-D block IO in SIMT code (``block_load2d`` / ``block_store2d`` / ``block_prefetch2d``):
a mixin of ``simt.KernelLowering``.

Generic lowering (every profile): each lane computes the surface row and column of the
register elements it holds, checks them against the surface (0 <= column < width,
0 <= row < height) and loads under that condition (0 elsewhere) or stores only there.

On a profile with 2-D block messages (PVC) a load whose shape fits one message is one call
of IGC's internal block-read builtin (``__builtin_IB_subgroup_block_read_flat_*``), which
IGC turns into ``load_block2d``; such names are imports the module may keep on that profile
(``allowed_imports``).  The message does the bounds work in hardware (out-of-surface
elements read 0).  The surface is a run-time value, so the message runs where it meets the
message's limits (base, width and pitch below) and the generic code where not.  Other
shapes, transposed loads and every store use the generic lowering.  (Stores: in IGC
1.0.12504 a call of ``__builtin_IB_subgroup_block_write_flat_u16_m{1,8}k16v1`` produced
neither a ``store_block2d`` nor an external call -- the write disappeared from the ISA -- so
the block-write builtin is not used.)

Message layout (sub-group 16, 16-bit elements, ``_u16_m{R}k16v1``): a block of R rows x 16
columns; lane l receives column l, one element per row (R elements).  Our register layout
(element e in lane e % 16 of slot e // 16) for a matrix[T, R, 16] is exactly that: slot r
is row r.  The builtin's surface is given in bytes: base address, width - 1, height - 1,
pitch - 1, and the block's (x, y) in elements.
"""
from __future__ import annotations

from llvmlite import ir

from . import elementwise as so
from .layout import Reg, slot_count
from .llvm_builtins import I32, I64, value_type

I16 = ir.IntType(16)
BLOCK_READ_ROWS = (1, 2, 4, 8, 16)          # rows of one u16 k16 block read (ushortR)
# What the message needs of the surface (PVC's 2-D block limits): a 64-byte aligned base,
# rows at least 64 bytes wide, a pitch of whole 16 bytes not below the width, width, pitch
# (bytes) and height at most 2**24, at least one row.
MIN_WIDTH_BYTES, PITCH_QUANTUM, BASE_ALIGN, MAX_EXTENT = 64, 16, 64, 1 << 24


def block_read_name(rows: int) -> str:
    return f"__builtin_IB_subgroup_block_read_flat_u16_m{rows}k16v1"


def allowed_imports(profile) -> frozenset:
    """The block builtins a SIMT module may import on ``profile`` (IGC resolves them)."""
    if getattr(profile, "block2d", None) is None:
        return frozenset()
    return frozenset(block_read_name(r) for r in BLOCK_READ_ROWS)


class Block2DLowering:
    def _surface_operands(self, op):
        return [self._i32(v) for v in op.operands[1:6]]

    def _block_message_fits(self, op, elem, shape, transpose) -> bool:
        """Whether a load is one u16 block-read message on this profile."""
        unit = self.profile.block2d
        rows, cols = shape
        return (unit is not None and not transpose and self.simd == 16 and elem.bits == 16
                and cols == 16 and rows in BLOCK_READ_ROWS)

    def op_block_load2d(self, op):
        p = self.get(op.operands[0])
        elem = op.operands[0].type.elem
        t = op.result.type
        transpose = bool(op.attrs.get("transpose"))
        x, y, width, height, pitch = self._surface_operands(op)
        if not self._block_message_fits(op, elem, t.shape, transpose):
            return Reg(t, self._per_lane_load(p, elem, t, transpose, x, y, width, height, pitch))
        # The surface is only known at run time: the message where it meets the limits,
        # the per-lane loads where not (a uniform branch).
        b = self.b
        with b.if_else(self._surface_fits_message(p, width, height, pitch)) as (then, otherwise):
            with then:
                fast = self._block_read_message(p, elem, t, x, y, width, height, pitch)
                fast_end = b.block
            with otherwise:
                slow = self._per_lane_load(p, elem, t, transpose, x, y, width, height, pitch)
                slow_end = b.block
        slots = []
        for f, s in zip(fast, slow):
            phi = b.phi(f.type)
            phi.add_incoming(f, fast_end)
            phi.add_incoming(s, slow_end)
            slots.append(phi)
        return Reg(t, slots)

    def _per_lane_load(self, p, elem, t, transpose, x, y, width, height, pitch):
        rows, cols = t.shape
        slots = []
        for k in range(slot_count(t.size, self.simd)):
            index, cond = self._surface_lane(k, rows, cols, t.size, transpose, x, y, width, height, pitch)
            slots.append(self._guarded(cond, lambda: self._load_elem(p, elem, index), value_type(elem)))
        return slots

    def _surface_fits_message(self, p, width, height, pitch):
        b = self.b
        two = ir.Constant(I32, 2)
        width_bytes, pitch_bytes = b.mul(width, two), b.mul(pitch, two)
        base = b.ptrtoint(p, I64)
        ok = b.icmp_signed(">=", width_bytes, ir.Constant(I32, MIN_WIDTH_BYTES))
        ok = b.and_(ok, b.icmp_signed(">=", pitch_bytes, width_bytes))
        ok = b.and_(ok, b.icmp_signed("<=", pitch_bytes, ir.Constant(I32, MAX_EXTENT)))
        ok = b.and_(ok, b.icmp_signed(">=", height, ir.Constant(I32, 1)))
        ok = b.and_(ok, b.icmp_signed("<=", height, ir.Constant(I32, MAX_EXTENT)))
        ok = b.and_(ok, b.icmp_unsigned("==", b.and_(pitch_bytes, ir.Constant(I32, PITCH_QUANTUM - 1)),
                                        ir.Constant(I32, 0)))
        return b.and_(ok, b.icmp_unsigned("==", b.and_(base, ir.Constant(I64, BASE_ALIGN - 1)),
                                          ir.Constant(I64, 0)))

    def op_block_store2d(self, op):
        p = self.get(op.operands[0])
        elem = op.operands[0].type.elem
        v = self.get(op.operands[6])
        rows, cols = v.type.shape
        x, y, width, height, pitch = self._surface_operands(op)
        for k, s in enumerate(v.slots):
            index, cond = self._surface_lane(k, rows, cols, v.n, False, x, y, width, height, pitch)
            with self.b.if_then(cond):
                self._store_elem(p, elem, index, s)
        return None

    def op_block_prefetch2d(self, op):
        # A hint only: nothing to do where the device has no 2-D prefetch message.
        return None

    def _surface_lane(self, k, rows, cols, n, transpose, x, y, width, height, pitch):
        """(i64 element index, i1 inside the surface and the register) for this lane of slot k
        of a rows x cols register; transposed: register (i, j) is block (j, i)."""
        b, simd = self.b, self.simd
        last = n - 1
        i = [min(k * simd + l, last) // cols for l in range(simd)]
        j = [min(k * simd + l, last) % cols for l in range(simd)]
        block_row, block_col = (j, i) if transpose else (i, j)
        r = b.add(y, self.lanes.int_vector(block_row))
        c = b.add(x, self.lanes.int_vector(block_col))
        zero = ir.Constant(I32, 0)
        inside = b.and_(b.and_(b.icmp_signed(">=", c, zero), b.icmp_signed("<", c, width)),
                        b.and_(b.icmp_signed(">=", r, zero), b.icmp_signed("<", r, height)))
        if (k + 1) * simd > n:
            inside = b.and_(inside, self.lanes.valid_mask(n, k))
        index = b.add(b.mul(b.sext(r, I64), b.sext(pitch, I64)), b.sext(c, I64))
        return index, inside

    def _block_read_message(self, p, elem, t, x, y, width, height, pitch):  # -> slots
        """One ``load_block2d`` message: the builtin returns R 16-bit values per lane, row r
        of the block in element r (lane l: column l) -- slot r of the register."""
        b = self.b
        rows = t.shape[0]
        name = block_read_name(rows)
        ret = I16 if rows == 1 else ir.VectorType(I16, rows)
        fn = self.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(
                ret, [I64, I32, I32, I32, ir.VectorType(I32, 2)]), name)
            fn.calling_convention = "spir_func"
            fn.attributes.add("nounwind")
            fn.attributes.add("convergent")
        two = ir.Constant(I32, 2)
        minus1 = ir.Constant(I32, -1)

        def bytes_minus_one(v):
            return b.add(b.mul(v, two), minus1)
        base = b.ptrtoint(p, I64)
        coord = b.insert_element(b.insert_element(ir.Constant(ir.VectorType(I32, 2), ir.Undefined), x,
                                                  ir.Constant(I32, 0)), y, ir.Constant(I32, 1))
        raw = b.call(fn, [base, bytes_minus_one(width), b.add(height, minus1), bytes_minus_one(pitch), coord])
        slots = []
        for r in range(rows):
            bits = raw if rows == 1 else b.extract_element(raw, ir.Constant(I32, r))
            slots.append(so.from_bits(b, elem, bits))
        return slots
