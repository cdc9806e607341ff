"""2-D block IO in SIMT code (``block_load2d`` / ``block_store2d`` / ``block_prefetch2d``):
a mixin of ``simt.KernelLowering``.

Generic lowering (every profile): each lane computes the surface row and column of the
register elements it holds, checks them against the surface (0 <= column < width,
0 <= row < height) and loads under that condition (0 elsewhere) or stores only there.

On a profile with 2-D block messages (PVC) a load whose shape fits messages is calls of
IGC's internal block-read builtins (``__builtin_IB_subgroup_block_read_flat*``), which IGC
turns into ``load_block2d``; such names are imports the module may keep on that profile
(``allowed_imports``).  The message does the bounds work in hardware (out-of-surface
elements read 0).  The surface is a run-time value, so the messages run where it meets the
message's limits (base, width and pitch: cmlang/passes/block_surfaces.py) and the generic
code where not, unless the launch proved the surface fits (``surface_fits``).  Three
kinds, each checked in IGC 1.0.12504's ISA (tests/test_block2d_messages.py):

- a 16-bit (R, 16c) load, R in 1, 2, 4 or a multiple of 8: one ``load_block2d.d16`` per 8
  (or R) rows x 32 columns, two blocks of 16 (``_u16_m{R}k16v2``, R <= 8, R >= 2), and
  ``_u16_m{R}k16v1`` for a last 16 columns or R = 1.  (IGC 1.0.12504 reads two blocks side
  by side for the one-block names too, 64 bytes a row, and keeps the first; it does not know
  ``_m16``: such a call was left unresolved and the register read uninitialised);
- a 32-bit (R, 16c) load, R in 1, 2, 4 or a multiple of 8: the rows read as 32 halves with
  ``_u16_m{R'}k16v2`` (both blocks kept), one ``load_block2d.d16`` per 8 (or R) rows x 16
  dwords, then two shuffles a row put each dword back in its lane (the 32-bit names,
  ``_u32_m{R}k16v1``, would read 128 bytes a row: over the limit, below);
- a transposed load of 32-bit (16a, 8c) or 16-bit (16a, 16c) blocks: one
  ``_transpose_u32_k8`` (``load_block2d.d32t``: 16 rows x 8 dwords, lane l gets row l) per
  16 x 8 dwords; 16-bit data is read as dwords, as CM does (the hardware transposes 32- and
  64-bit elements only), so the column x and the width must be even, and each dword is
  split into the two halves that are consecutive rows of the result;
- the b operand of a dpas on the systolic unit that comes straight from a ``load_2d`` of
  16-bit (16a, 16c) or 8-bit (32a, 16c) data (``vnni_block_loads``): one
  ``_transform_u16_k16`` / ``_transform_u8_k32`` (``load_block2d.d16v`` / ``d8v``, the VNNI
  packing done by the load) per dpas tile of b, instead of a load and a repacking.

Other shapes, and every store, use the generic lowering; a prefetch is LSC's 1-D prefetch
of the block's cache lines (``op_block_prefetch2d``), nothing without block messages.  IGC 1.0.12504 has no 2-D block write or prefetch for SIMT code: its library
knows one 2-D intrinsic, ``GenISA.LSC2DBlockRead``; calls of
``__builtin_IB_subgroup_block_write_flat_*`` and ``..._block_read_prefetch_*`` are left
unresolved and vanish from the ISA (no message, no ``calla``).  Its 32-bit non-transposed
reads (``_u32_m{R}k16v1``) read two 16-dword blocks side by side, 128 bytes a row, past the
hardware's 64 bytes; they are not used.

Message layout (sub-group 16, 16-bit elements, ``_u16_m{R}k16v1``): a block of R rows x 16
columns; lane l receives column l, one element per row (R elements).  Our register layout
(element e in lane e % 16 of slot e // 16) for a matrix[T, R, 16] is exactly that: slot r
is row r.  The builtin's surface is given in bytes: base address, width - 1, height - 1,
pitch - 1, and the block's (x, y) in elements.
"""
from __future__ import annotations

from llvmlite import ir

from cmlang.passes.block_surfaces import BASE_ALIGN, MAX_EXTENT, MIN_WIDTH_BYTES, PITCH_QUANTUM
from cmlang.types import u16, u32

from . import elementwise as so
from .layout import Reg, slot_count
from .llvm_builtins import I32, I64, value_type

I16 = ir.IntType(16)
BLOCK_READ_ROWS = (1, 2, 4, 8)              # rows of one u16 k16 block read (ushortR); IGC
                                            # 1.0.12504 knows m1, m2, m4 and m8 only
TRANSPOSE_READ = "__builtin_IB_subgroup_block_read_flat_transpose_u32_k8"   # 16 rows x 8 dwords
VNNI_READ = {16: "__builtin_IB_subgroup_block_read_flat_transform_u16_k16",  # 16 rows x 16
             8: "__builtin_IB_subgroup_block_read_flat_transform_u8_k32"}    # 32 rows x 16
VNNI_ROWS = {16: 16, 8: 32}
PREFETCH = "__builtin_IB_lsc_prefetch_global_uint"   # (global uint *p, int elements, int cache)
PREFETCH_LINE = 64                                  # bytes between prefetched addresses


def block_read_name(rows: int) -> str:
    return f"__builtin_IB_subgroup_block_read_flat_u16_m{rows}k16v1"


def dword_read_name(rows: int) -> str:
    """Two 16 x 16-bit blocks side by side: rows of 16 dwords, read as halves."""
    return f"__builtin_IB_subgroup_block_read_flat_u16_m{rows}k16v2"


def allowed_imports(profile) -> frozenset:
    """The block builtins a SIMT module may import on ``profile`` (IGC resolves them)."""
    if getattr(profile, "block2d", None) is None:
        return frozenset()
    return frozenset([block_read_name(r) for r in BLOCK_READ_ROWS] + [TRANSPOSE_READ, *VNNI_READ.values()]
                     + [dword_read_name(r) for r in (2, 4, 8)] + [PREFETCH])


class BlockSource:
    """A ``load_2d`` not yet read: the b operand of a dpas that reads it with VNNI-
    transforming block messages where the surface allows (``vnni_block_loads``)."""
    def __init__(self, t, p, elem, x, y, width, height, pitch, proven=False):
        self.type, self.p, self.elem = t, p, elem
        self.surface = (x, y, width, height, pitch)
        self.proven = proven          # the launch proved the surface fits: messages alone


class Block2DLowering:
    def _surface_operands(self, op):
        """x, y, width, height, pitch as i32, each lane 0's: they are CM scalars (the same in
        every lane), and IGC does not know that of values derived from thread_id(1).  Where
        it does not, the per-lane path's row offsets (y + r) * pitch are vectors, and with y
        loop-invariant (a K^T slice of flash attention, its loop moving along x) IGC hoists
        every slot's out of the loop: 28,288 bytes of spill in flash_attention on PVC, 0
        with the broadcast."""
        return [self.bi.broadcast(self.b, self._i32(v), 0) for v in op.operands[1:6]]

    def _block_message(self, elem, shape, transpose):
        """The message lowering of a load of ``shape`` (the block's rows, cols) on this
        profile, or None where none fits."""
        unit = self.profile.block2d
        rows, cols = shape
        if unit is None or self.simd != 16:
            return None
        if not transpose:
            ok = cols % 16 == 0 and (rows in BLOCK_READ_ROWS or rows % 8 == 0)
            if ok and elem.bits == 16:
                return self._block_read_messages
            if ok and elem.bits == 32:
                return self._dword_read_messages
            return None
        per_message = {32: 8, 16: 16}.get(elem.bits)       # block columns per 8-dword message
        if unit.transpose and per_message and rows % 16 == 0 and cols % per_message == 0:
            return self._transposed_read_messages
        return None

    def op_block_load2d(self, op):
        p = self.get(op.operands[0])
        elem = op.operands[0].type.elem
        t = op.result.type
        transpose = bool(op.attrs.get("transpose"))
        x, y, width, height, pitch = self._surface_operands(op)
        if op in self.vnni_loads:         # read by the dpas that uses it (dpas_systolic)
            return BlockSource(t, p, elem, x, y, width, height, pitch, bool(op.attrs.get("surface_fits")))
        shape = t.shape[::-1] if transpose else t.shape
        message = self._block_message(elem, shape, transpose)
        if message is None:
            return Reg(t, self._per_lane_load(p, elem, t, transpose, x, y, width, height, pitch))
        if op.attrs.get("surface_fits"):    # proven at launch (cmlang/passes/block_surfaces.py)
            return Reg(t, message(p, elem, t, x, y, width, height, pitch))
        # 16-bit data read as dwords: an even column and width keep dwords whole
        even = transpose and elem.bits == 16
        return Reg(t, self._message_or_per_lane(
            self._surface_fits_message(p, elem, width, height, pitch, even_x=x if even else None),
            lambda: message(p, elem, t, x, y, width, height, pitch),
            lambda: self._per_lane_load(p, elem, t, transpose, x, y, width, height, pitch)))

    def _message_or_per_lane(self, fits, fast, slow):
        """The surface is only known at run time: ``fast()`` (messages) where it meets
        the limits, ``slow()`` (per-lane loads) where not -- a uniform branch; the values
        (lists of equal types) joined."""
        b = self.b
        with b.if_else(fits) as (then, otherwise):
            with then:
                fast_values = fast()
                fast_end = b.block
            with otherwise:
                slow_values = slow()
                slow_end = b.block
        joined = []
        for f, s in zip(fast_values, slow_values):
            phi = b.phi(f.type)
            phi.add_incoming(f, fast_end)
            phi.add_incoming(s, slow_end)
            joined.append(phi)
        return joined

    def _per_lane_load(self, p, elem, t, transpose, x, y, width, height, pitch):
        rows, cols = t.shape
        slots = []
        for k in range(slot_count(t.size, self.simd)):
            index, cond = self._surface_lane(k, rows, cols, t.size, transpose, x, y, width, height, pitch)
            slots.append(self._guarded(cond, lambda: self._load_elem(p, elem, index), value_type(elem)))
        return slots

    def _surface_fits_message(self, p, elem, width, height, pitch, even_x=None):
        """Whether the surface meets the message's limits (and, with ``even_x``, that
        column and the width are even: 16-bit data read as dwords)."""
        b = self.b
        size = ir.Constant(I32, elem.bits // 8)
        width_bytes, pitch_bytes = b.mul(width, size), b.mul(pitch, size)
        base = b.ptrtoint(p, I64)
        ok = b.icmp_signed(">=", width_bytes, ir.Constant(I32, MIN_WIDTH_BYTES))
        ok = b.and_(ok, b.icmp_signed(">=", pitch_bytes, width_bytes))
        ok = b.and_(ok, b.icmp_signed("<=", pitch_bytes, ir.Constant(I32, MAX_EXTENT)))
        ok = b.and_(ok, b.icmp_signed(">=", height, ir.Constant(I32, 1)))
        ok = b.and_(ok, b.icmp_signed("<=", height, ir.Constant(I32, MAX_EXTENT)))
        ok = b.and_(ok, b.icmp_unsigned("==", b.and_(pitch_bytes, ir.Constant(I32, PITCH_QUANTUM - 1)),
                                        ir.Constant(I32, 0)))
        if even_x is not None:
            odd = b.and_(b.or_(even_x, width), ir.Constant(I32, 1))
            ok = b.and_(ok, b.icmp_unsigned("==", odd, ir.Constant(I32, 0)))
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
        """A hint.  IGC 1.0.12504 has no 2-D block prefetch for SIMT code; on a profile with
        block messages (PVC) the block's cache lines are prefetched with LSC's 1-D prefetch
        (``__builtin_IB_lsc_prefetch_global_uint``: ``load.ugm`` into ``null``), one address
        per lane: in each row the block's first element, every 64 bytes after it, and its
        last, each clamped to the part of the row inside the surface, so that every 64-byte
        line of that part gets one and nothing outside does.  Elsewhere nothing."""
        if self.profile.block2d is None or self.simd != 16:
            return None
        b, simd = self.b, self.simd
        p = self.get(op.operands[0])
        elem = op.operands[0].type.elem
        x, y, width, height, pitch = self._surface_operands(op)
        rows, cols = op.attrs["rows"], op.attrs["cols"]
        step = max(1, PREFETCH_LINE // (elem.bits // 8))
        points = sorted(set(range(0, cols, step)) | {cols - 1})
        tasks = rows * len(points)
        base = b.ptrtoint(p, I64)
        size = ir.Constant(I64, elem.bits // 8)
        zero = ir.Constant(I32, 0)
        def clamp(v, lo, hi):
            v = b.select(b.icmp_signed("<", v, lo), lo, v)
            return b.select(b.icmp_signed(">", v, hi), hi, v)
        # the row's span inside the surface: columns first..last (none where first > last)
        first = b.select(b.icmp_signed("<", x, zero), zero, x)
        end = b.add(x, ir.Constant(I32, cols - 1))
        last = b.select(b.icmp_signed(">", end, b.sub(width, ir.Constant(I32, 1))),
                        b.sub(width, ir.Constant(I32, 1)), end)
        for k in range(-(-tasks // simd)):
            t = [min(k * simd + l, tasks - 1) for l in range(simd)]
            row = b.add(y, self.lanes.int_vector([i // len(points) for i in t]))
            col = clamp(b.add(x, self.lanes.int_vector([points[i % len(points)] for i in t])), first, last)
            inside = b.and_(b.icmp_signed("<=", first, last),
                            b.and_(b.icmp_signed(">=", row, zero), b.icmp_signed("<", row, height)))
            if (k + 1) * simd > tasks:
                inside = b.and_(inside, self.lanes.valid_mask(tasks, k))
            with b.if_then(inside):
                index = b.add(b.mul(b.sext(row, I64), b.sext(pitch, I64)), b.sext(col, I64))
                address = b.and_(b.add(base, b.mul(index, size)), ir.Constant(I64, -4))   # whole dwords
                b.call(self._prefetch_builtin(), [b.inttoptr(address, ir.PointerType(I32, 1)),
                                                  zero, zero])
        return None

    def _prefetch_builtin(self):
        fn = self.module.globals.get(PREFETCH)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [ir.PointerType(I32, 1), I32, I32]),
                             PREFETCH)
            fn.calling_convention = "spir_func"
            fn.attributes.add("nounwind")
        return fn

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

    def _read_builtin(self, name, ret, p, elem, x, y, width, height, pitch):
        """A call of one block-read builtin; its surface in bytes (base, width - 1,
        height - 1, pitch - 1) and the block's (x, y) in its own element units."""
        b = self.b
        fn = self.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(
                ret, [I64, I32, I32, I32, ir.VectorType(I32, 2)]), name)
            fn.calling_convention = "spir_func"
            fn.attributes.add("nounwind")
            fn.attributes.add("convergent")
        size = ir.Constant(I32, elem.bits // 8)
        minus1 = ir.Constant(I32, -1)

        def bytes_minus_one(v):
            return b.add(b.mul(v, size), minus1)
        base = b.ptrtoint(p, I64)
        coord = b.insert_element(b.insert_element(ir.Constant(ir.VectorType(I32, 2), ir.Undefined), x,
                                                  ir.Constant(I32, 0)), y, ir.Constant(I32, 1))
        return b.call(fn, [base, bytes_minus_one(width), b.add(height, minus1), bytes_minus_one(pitch), coord])

    def _block_read_messages(self, p, elem, t, x, y, width, height, pitch):  # -> slots
        """(R, 16c) 16-bit as messages of (R', 16 or 32), R' = R if R <= 8 else 8: the
        builtin returns R' values per lane per block, row r of block k in element k R' + r
        (lane l: column l of the block) -- for the message at rows r0.., columns 16j: slot
        (r0 + r) * c + j + k of the register.  Two neighbouring blocks of 16 columns are one
        message (``_u16_m{R'}k16v2``: 64 bytes a row) where R' >= 2 (IGC 1.0.12504's
        one-block names read the same 64 bytes and drop half)."""
        b = self.b
        rows, cols = t.shape
        per_row = cols // 16
        step = min(rows, 8)
        slots = [None] * (rows * per_row)
        for r0 in range(0, rows, step):
            j = 0
            while j < per_row:
                blocks = 2 if step >= 2 and j + 1 < per_row else 1
                name = dword_read_name(step) if blocks == 2 else block_read_name(step)
                count = blocks * step
                ret = I16 if count == 1 else ir.VectorType(I16, count)
                raw = self._read_builtin(name, ret, p, elem, b.add(x, ir.Constant(I32, 16 * j)),
                                         b.add(y, ir.Constant(I32, r0)), width, height, pitch)
                for k in range(blocks):
                    for r in range(step):
                        bits = raw if count == 1 else b.extract_element(raw, ir.Constant(I32, k * step + r))
                        slots[(r0 + r) * per_row + j + k] = so.from_bits(b, elem, bits)
                j += blocks
        return slots

    def _dword_read_messages(self, p, elem, t, x, y, width, height, pitch):  # -> slots
        """(R, 16c) 32-bit as 16-bit messages of two blocks (``_u16_m{R'}k16v2``, R' = 8, or
        2 for R = 1, 2; 4 for R = 4): each row of 16 dwords is 32 halves, block 0 the first 16
        (lane l: half l), block 1 the rest.  Per row, lane l packs its halves of both blocks
        into a dword; two shuffles then give lane c dwords 2(c % 8) and 2(c % 8) + 1, and the
        halves of block c // 8 of those are the low and high half of element c."""
        b = self.b
        rows, cols = t.shape
        per_row = cols // 16
        step = 8 if rows >= 8 else max(rows, 2)
        lo_lane = self.lanes.int_vector([2 * (c % 8) for c in range(16)])
        hi_lane = self.lanes.int_vector([2 * (c % 8) + 1 for c in range(16)])
        shift = self.lanes.int_vector([16 * (c // 8) for c in range(16)])
        low16 = ir.Constant(I32, 0xFFFF)
        slots = [None] * (rows * per_row)
        for r0 in range(0, rows, step):
            for j in range(per_row):
                raw = self._read_builtin(dword_read_name(step),
                                         ir.VectorType(I16, 2 * step), p, u16,
                                         b.add(b.mul(x, ir.Constant(I32, 2)), ir.Constant(I32, 32 * j)),
                                         b.add(y, ir.Constant(I32, r0)), b.mul(width, ir.Constant(I32, 2)),
                                         height, b.mul(pitch, ir.Constant(I32, 2)))
                for r in range(min(step, rows - r0)):
                    first, second = (b.zext(b.extract_element(raw, ir.Constant(I32, q)), I32)
                                     for q in (r, step + r))
                    both = b.or_(first, b.shl(second, ir.Constant(I32, 16)))
                    low = b.and_(b.lshr(self.bi.shuffle(b, both, lo_lane), shift), low16)
                    high = b.and_(b.lshr(self.bi.shuffle(b, both, hi_lane), shift), low16)
                    bits = b.or_(low, b.shl(high, ir.Constant(I32, 16)))
                    slots[(r0 + r) * per_row + j] = so.from_bits(b, elem, bits)
        return slots

    def _transposed_read_messages(self, p, elem, t, x, y, width, height, pitch):  # -> slots
        """A transposed block (rows = 16a, result matrix[T, cols, rows]) as 16 x 8-dword
        messages: message (tr, tc) gives lane l dword q = the block's row 16 tr + l, dword
        column 8 tc + q.  Result row i takes slots i*a .. i*a + a - 1 (row element j in
        slot i*a + j // 16, lane j % 16).  16-bit data: dword q holds block columns 2q (low
        half) and 2q + 1, i.e. result rows 2q and 2q + 1."""
        b = self.b
        cols, rows = t.shape                  # the block is rows x cols
        a = rows // 16
        halves = 2 if elem.bits == 16 else 1
        dword = ir.IntType(32)
        slots = [None] * (cols * a)
        x_dwords = b.ashr(x, ir.Constant(I32, 1)) if halves == 2 else x
        width_dwords = b.ashr(width, ir.Constant(I32, 1)) if halves == 2 else width
        pitch_dwords = b.ashr(pitch, ir.Constant(I32, 1)) if halves == 2 else pitch
        for tr in range(a):
            for tc in range(cols // (8 * halves)):
                raw = self._read_builtin(
                    TRANSPOSE_READ, ir.VectorType(dword, 8), p, u32, b.add(x_dwords, ir.Constant(I32, 8 * tc)),
                    b.add(y, ir.Constant(I32, 16 * tr)), width_dwords, height, pitch_dwords)
                for q in range(8):
                    bits = b.extract_element(raw, ir.Constant(I32, q))
                    for h in range(halves):
                        i = (8 * tc + q) * halves + h
                        part = b.trunc(b.lshr(bits, ir.Constant(dword, 16 * h)), I16) if halves == 2 else bits
                        slots[i * a + tr] = so.from_bits(b, elem, part)
        return slots

    def vnni_tiles(self, src: BlockSource, K_STEP, N):
        """The dpas's b tiles {(k0, n0): <8 x i32>} of a ``BlockSource``: one VNNI-transforming
        message per tile where the surface meets the limits, else the per-lane load and the
        packing of ``dpas_systolic``."""
        b = self.b
        x, y, width, height, pitch = src.surface
        K = src.type.shape[0]
        keys = [(k0, n0) for k0 in range(0, K, K_STEP) for n0 in range(0, N, self.simd)]

        def messages():
            return [self._read_builtin(VNNI_READ[src.elem.bits], ir.VectorType(I32, 8), src.p, src.elem,
                                       b.add(x, ir.Constant(I32, n0)), b.add(y, ir.Constant(I32, k0)),
                                       width, height, pitch) for k0, n0 in keys]

        def per_lane():
            reg = Reg(src.type, self._per_lane_load(src.p, src.elem, src.type, False, *src.surface))
            return [self._vnni_b(reg, src.elem, k0, n0, N) for k0, n0 in keys]
        if src.proven:
            return dict(zip(keys, messages()))
        fits = self._surface_fits_message(src.p, src.elem, width, height, pitch)
        return dict(zip(keys, self._message_or_per_lane(fits, messages, per_lane)))
