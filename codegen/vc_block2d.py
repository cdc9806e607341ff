"""2-D block IO in vector-compute code (``block_load2d`` / ``block_store2d`` /
``block_prefetch2d``): a mixin of ``vc.VCLowering``.

Every element of the block gets its surface row and column as a vector; elements inside the
surface (0 <= column < width, 0 <= row < height) are enabled lanes of predicated gathers or
scatters (``svm.gather``/``svm.scatter``, SLM: ``gather.scaled``/``scatter.scaled``), so
the others read 0 and are not written.  A transposed load reads the block's (j, i) into
register element (i, j) with the same gather.  Prefetch is a hint and emits nothing here.

On a profile with 2-D block messages (PVC) a block of global memory whose shape the messages
can take is instead LSC 2-D block messages (``llvm.genx.lsc.load2d/store2d/prefetch2d.stateless``,
``lsc_load_block2d.ugm`` in vISA): the hardware checks every element against the surface, so
out-of-surface elements read 0 and are not written -- CM's meaning -- with no per-element
code.  A block larger than one message (a row of at most ``max_width_bytes``, at most
``max_height`` rows, ``max_store_height`` for stores) is several messages.  The surface is a
run-time value: the messages run where it meets their limits (``_surface_fits``), the gathers
and scatters above where not -- unless the launch proved it fits (``surface_fits``:
cmlang/passes/block_surfaces.py, whose rule is this check's), then messages alone.

- Transposed: the hardware transposes 32-bit (at most 8 block columns; at most 16 rows in
  IGC 1.0.12504) and 64-bit data (1, 2 or 4 columns of exactly 8 rows).  8- and 16-bit
  blocks are read as dwords, as CM does (the SIMT lowering too): the transposed dword block
  holds 4 or 2 neighbouring columns per dword, which strided regions spread over the
  register's rows (the surface check already asks for a column x and a width of whole dwords).
- The b operand of a dpas on the systolic unit that comes straight from a ``load_2d`` of 16- or
  8-bit data (``operand_plan.vnni_block_loads``) is read by VNNI-transforming messages (operand
  VNNI = 1: a dword holds 2 or 4 consecutive rows of one column, the packing dpas wants), with
  several blocks per message (array length): two 16-column blocks of 16-bit data, four of
  8-bit, up to 32 rows -- one message per 32 x 32 (16-bit) or 32 x 64 (8-bit) piece of b.
- Plain loads keep one block per message: the row limit (64 bytes) holds for all blocks of a
  message together, so more blocks would only change the register layout.

Not yet by message: SLM.

A message's data in registers (vc-intrinsics / ESIMD's ``lsc_load_2d``): one block of h rows
of w elements is h rows of ``next_pow2(w)`` elements (transposed: w rows of
``next_pow2(h)``, row c holding the block's column c; VNNI: h / p rows of ``next_pow2(w)``
dwords, p = 4 / element bytes), the whole padded to 64 bytes; the blocks of a message follow
one another, block k holding columns x + k w ...
"""
from __future__ import annotations

from llvmlite import ir

from cmlang.passes.block_surfaces import BASE_ALIGN, MAX_EXTENT, MIN_WIDTH_BYTES, PITCH_QUANTUM

from . import elementwise as ew
from .llvm_builtins import I32, I64, memory_type
from .vc_intrinsics import undef

I1, I8, I16 = ir.IntType(1), ir.IntType(8), ir.IntType(16)
VOID = ir.VoidType()
# What a 2-D block message needs of the surface (PVC): block_surfaces' limits, with rows
# of whole dwords; 8- and 16-bit blocks start at a whole dword (x).
MAX_MESSAGES = 64               # more than this: the gathers are no worse
GATHER_PIECE = 16               # elements per gather or scatter of the generic path (one message)
NONTRANSPOSED, TRANSPOSED = 1, 2                        # LSC data order
DATA_SIZE = {1: 1, 2: 2, 4: 3, 8: 4}                    # LSC data size codes: d8 d16 d32 d64
# transposed messages (by element bytes): the block widths and heights they take.  32-bit:
# at most 8 columns; IGC 1.0.12504 fails ("VISA builder API call failed") on more than 16
# rows, so 16.  64-bit: 1, 2 or 4 columns of exactly 8 rows.
TRANSPOSED_WIDTHS = {4: (8, 7, 6, 5, 4, 3, 2, 1), 8: (4, 2, 1)}
TRANSPOSED_HEIGHTS = {4: range(1, 17), 8: (8,)}
# VNNI-transforming loads (by element bytes): block width (= the dpas tile's N), blocks per
# message (at most 64 bytes of row together), rows per message (K tiles of 16 / 32 rows)
VNNI_WIDTH, VNNI_BLOCKS, VNNI_HEIGHTS = 16, {2: 2, 1: 4}, {2: (32, 16), 1: (32,)}


def _lanes_constant(ty, values):
    """A constant of ``values``: a vector of them, or the scalar where there is one (as
    ``splat`` gives for one lane)."""
    return ir.Constant(ty, values[0]) if len(values) == 1 else ir.Constant(ir.VectorType(ty, len(values)), values)


def _next_pow2(n):
    return 1 << (n - 1).bit_length()


class Message:
    """One 2-D block message: the block's rows r0.., columns c0.. (in the surface, from the
    op's x, y), its size and ``blocks`` side by side (VNNI: rows packed in dwords); ``n``
    the elements of the register vector it reads or writes."""
    def __init__(self, r0, c0, height, width, es, transpose, blocks=1, vnni=False):
        self.r0, self.c0, self.height, self.width = r0, c0, height, width
        self.transpose, self.blocks, self.vnni = transpose, blocks, vnni
        # the data's rows in registers: block rows, or (transposed) block columns
        self.reg_rows, self.reg_cols = (width, height) if transpose else (height, width)
        self.reg_pitch = _next_pow2(self.reg_cols)
        per_grf = 64 // es
        self.block_n = -(-self.reg_rows * self.reg_pitch // per_grf) * per_grf
        self.n = self.block_n * blocks


class Surface:
    """The surface of a 2-D block op as LLVM values (element units of ``es`` bytes): base
    address, the block's x and y, width, height and pitch."""
    def __init__(self, base, x, y, width, height, pitch, es):
        self.base, self.x, self.y, self.width, self.height, self.pitch, self.es = (
            base, x, y, width, height, pitch, es)

    def as_dwords(self, b):
        """The same memory seen as dwords (x, width and pitch whole dwords: ``_surface_fits``)."""
        shift = ir.Constant(I32, {1: 2, 2: 1, 4: 0}[self.es])
        return Surface(self.base, b.ashr(self.x, shift), self.y, b.ashr(self.width, shift), self.height,
                       b.ashr(self.pitch, shift), 4)


class VNNIBlock:
    """A ``load_2d`` not yet read: the b operand of the dpas that reads it with VNNI-
    transforming messages where the surface allows (``operand_plan.vnni_block_loads``)."""
    def __init__(self, op, ptr):
        self.op, self.ptr = op, ptr


class VCBlock2DLowering:
    def _block_lanes(self, op, positions):
        """(i64 element indices <n x i64>, <n x i1> inside the surface) of the block's
        elements at ``positions`` [(row, column)] (from the op's x, y).  The index is a
        scalar, the first position's row start (y + r0) * pitch + x, plus constant columns,
        plus (row - r0) * pitch only where the positions span rows: a loop-invariant y then
        leaves scalars for IGC to hoist out of a loop, not vectors (which spilled)."""
        b = self.b
        n = len(positions)
        x, y, width, height, pitch = (self.get(v) for v in op.operands[1:6])
        rows = [row for row, _ in positions]
        cols = [col for _, col in positions]
        r0 = rows[0]
        first_row = b.add(y, ir.Constant(I32, r0))
        base = b.add(b.mul(b.sext(first_row, I64), b.sext(pitch, I64)), b.sext(x, I64))
        index = b.add(self.splat(base, n), _lanes_constant(I64, cols))
        c = b.add(self.splat(x, n), _lanes_constant(I32, cols))
        zero = _lanes_constant(I32, [0] * n)
        inside = b.and_(b.icmp_signed(">=", c, zero), b.icmp_signed("<", c, self.splat(width, n)))
        if all(r == r0 for r in rows):                # one row: its check is a scalar
            row_inside = b.and_(b.icmp_signed(">=", first_row, ir.Constant(I32, 0)),
                                b.icmp_signed("<", first_row, height))
            return index, b.and_(inside, self.splat(row_inside, n))
        index = b.add(index, b.mul(_lanes_constant(I64, [r - r0 for r in rows]), self.splat(b.sext(pitch, I64), n)))
        r = b.add(self.splat(y, n), _lanes_constant(I32, rows))
        return index, b.and_(inside, b.and_(b.icmp_signed(">=", r, zero), b.icmp_signed("<", r, self.splat(height, n))))

    def _block_addresses(self, ptr, index, n):
        es = _lanes_constant(I64, [_byte_size(ptr.elem)] * n)
        if ptr.space == "local":
            offs = self.b.trunc(self.b.mul(index, es), ir.VectorType(I32, n) if n > 1 else I32)
            return self.b.add(offs, _lanes_constant(I32, [ptr.base] * n))
        return self.b.add(self.splat(ptr.base, n), self.b.mul(index, es))

    # ------------------------------------------------------------------ the generic path
    # In pieces of GATHER_PIECE elements (one message each): the addresses of a whole large
    # block at once were 8 bytes an element of live registers (IGC spilled them).
    def _gathered_load(self, op, ptr, positions, shape=None):
        """The block's elements at ``positions`` (0 outside the surface), in that order.  A
        block of several rows of global memory read in its own order (``shape``: its rows
        and columns) goes row by row in a loop (``_row_loop``)."""
        if shape is not None and shape[0] > 1 and ptr.space != "local" \
                and positions == register_positions(shape, False):
            return self._row_loop(op, ptr, shape)
        pieces = []
        for first, n in _pieces(len(positions)):
            index, inside = self._block_lanes(op, positions[first:first + n])
            addrs = self._block_addresses(ptr, index, n)
            if ptr.space == "local":
                piece = self._slm_gather(ptr, addrs, n, inside)
            else:
                piece = self._svm_gather(addrs, n, memory_type(ptr.elem), inside)
            pieces.append((piece, n))
        return self.concat(pieces, memory_type(ptr.elem))

    def _scattered_store(self, op, ptr, t, v):
        positions = register_positions(t.shape, False)
        for first, n in _pieces(t.size):
            index, inside = self._block_lanes(op, positions[first:first + n])
            addrs = self._block_addresses(ptr, index, n)
            part = self.piece(v, first, n) if t.size > 1 else v
            if ptr.space == "local":
                self._slm_scatter(ptr, addrs, part, n, inside)
            else:
                self._svm_scatter(addrs, part, n, inside)

    def _row_loop(self, op, ptr, shape, r0=0, c0=0):
        """A rows x cols block (rows r0.., columns c0.. of the op's) read by a loop over its
        rows (``counted_loop``), each row's gathers written into the register at row * cols:
        code for one row, whose addresses and checks depend on the loop's row (nothing per
        row for the compiler to hoist out of an enclosing loop, which spilled in flash
        attention's key loop)."""
        b = self.b
        rows, cols = shape
        mty = memory_type(ptr.elem)
        x, y, width, height, pitch = (self.get(v) for v in op.operands[1:6])
        if r0 or c0:
            y, x = b.add(y, ir.Constant(I32, r0)), b.add(x, ir.Constant(I32, c0))

        def one_row(row, carried):
            (written,) = carried
            surface_row = b.add(y, row)
            base = b.add(b.mul(b.sext(surface_row, I64), b.sext(pitch, I64)), b.sext(x, I64))
            row_inside = b.and_(b.icmp_signed(">=", surface_row, ir.Constant(I32, 0)),
                                b.icmp_signed("<", surface_row, height))
            for first in range(0, cols, GATHER_PIECE):
                count = min(GATHER_PIECE, cols - first)
                columns = list(range(first, first + count))
                index = b.add(self.splat(base, count), _lanes_constant(I64, columns))
                c = b.add(self.splat(x, count), _lanes_constant(I32, columns))
                inside = b.and_(b.and_(b.icmp_signed(">=", c, _lanes_constant(I32, [0] * count)),
                                       b.icmp_signed("<", c, self.splat(width, count))),
                                self.splat(row_inside, count))
                raw = self._svm_gather(self._block_addresses(ptr, index, count), count, mty, inside)
                written = self.wrregion(written, raw, count, count, 1, first, b.mul(row, ir.Constant(I32, cols)))
            return [written]
        return self.counted_loop(rows, [undef(ir.VectorType(mty, rows * cols))], one_row, "block2d.row")[0]

    # ------------------------------------------------------------------ the ops
    def op_block_load2d(self, op):
        ptr = self.get(op.operands[0])
        t = op.result.type
        if op in self.vnni_loads:           # read by the dpas that uses it (vnni_tiles)
            return VNNIBlock(op, ptr)
        transpose = bool(op.attrs.get("transpose"))
        es = _byte_size(ptr.elem)
        if transpose and es < 4:            # 8/16-bit transposed: read as dwords
            per_dword = 4 // es
            rows, cols = t.shape
            plan = (self._message_plan(ptr, (rows // per_dword, cols), True, "load", es=4)
                    if rows % per_dword == 0 else None)
            fast = lambda: self._dword_transposed_messages(op, ptr, t, plan)       # noqa: E731
        else:
            plan = self._message_plan(ptr, t.shape, transpose, "load")
            fast = lambda: self._load_messages(self._surface(op, ptr), t.shape, plan)  # noqa: E731
        positions = register_positions(t.shape, transpose)
        if plan is None:
            raw = self._gathered_load(op, ptr, positions, t.shape)
        else:
            raw = self._either(op, ptr, lambda: self._as_memory(ptr, fast()),
                               lambda: self._gathered_load(op, ptr, positions, t.shape))
        return ew.from_memory(self.b, ptr.elem, raw)

    def op_block_store2d(self, op):
        ptr = self.get(op.operands[0])
        t = op.operands[6].type
        v = ew.to_memory(self.b, ptr.elem, self.get(op.operands[6]))
        plan = self._message_plan(ptr, t.shape, False, "store")
        if plan is None:
            self._scattered_store(op, ptr, t, v)
            return None
        self._either(op, ptr, lambda: self._store_messages(op, ptr, t, v, plan),
                     lambda: self._scattered_store(op, ptr, t, v))
        return None

    def op_block_prefetch2d(self, op):
        """A hint: 2-D block prefetches where the messages can take the block and the surface,
        nothing elsewhere."""
        ptr = self.get(op.operands[0])
        shape = (op.attrs["rows"], op.attrs["cols"])
        plan = self._message_plan(ptr, shape, False, "prefetch")
        if plan is not None and op.attrs.get("surface_fits"):
            self._prefetch_messages(op, ptr, plan)
        elif plan is not None:
            with self.b.if_then(self._surface_fits(op, ptr)):
                self._prefetch_messages(op, ptr, plan)
        return None

    # ------------------------------------------------------------------ 2-D block messages
    def _message_plan(self, ptr, shape, transpose, kind, es=None):
        """The messages that cover a register of ``shape`` (transposed: the block is its
        transpose) of ``es``-byte elements (default: the pointer's), or None where messages
        cannot (no unit, SLM, a shape past the limits)."""
        unit = self.profile.block2d
        es = es or _byte_size(ptr.elem)
        rows, cols = shape
        if unit is None or ptr.space != "global" or es not in DATA_SIZE or rows * cols < 2:
            return None
        block_rows, block_cols = (cols, rows) if transpose else (rows, cols)
        if transpose:
            if not unit.transpose or es not in TRANSPOSED_WIDTHS:
                return None
            widths, heights = TRANSPOSED_WIDTHS[es], TRANSPOSED_HEIGHTS[es]
            row_steps = _steps(block_rows, heights)
            width_steps = _steps(block_cols, widths)
        else:
            max_width = unit.max_width_bytes // es
            max_height = unit.max_store_height if kind == "store" else unit.max_height
            row_steps = [(r0, min(max_height, block_rows - r0)) for r0 in range(0, block_rows, max_height)]
            width_steps = [(c0, min(max_width, block_cols - c0)) for c0 in range(0, block_cols, max_width)]
            if any(w * es < 4 for _, w in width_steps):        # a message row is at least a dword
                return None
        if row_steps is None or width_steps is None:
            return None
        plan = [Message(r0, c0, h, w, es, transpose) for r0, h in row_steps for c0, w in width_steps]
        return plan if len(plan) <= MAX_MESSAGES else None

    def _surface(self, op, ptr):
        x, y, width, height, pitch = (self.get(v) for v in op.operands[1:6])
        return Surface(ptr.base, x, y, width, height, pitch, _byte_size(ptr.elem))

    def _surface_fits(self, op, ptr):
        """Whether the run-time surface meets the messages' limits (an i1)."""
        b = self.b
        x, _y, width, height, pitch = (self.get(v) for v in op.operands[1:6])
        es = _byte_size(ptr.elem)
        size = ir.Constant(I32, es)
        width_bytes, pitch_bytes = b.mul(width, size), b.mul(pitch, size)

        def c(v):
            return ir.Constant(I32, v)

        def multiple(v, q):
            return b.icmp_unsigned("==", b.and_(v, c(q - 1)), c(0))
        ok = b.icmp_signed(">=", width_bytes, c(MIN_WIDTH_BYTES))
        ok = b.and_(ok, multiple(width_bytes, 4))
        ok = b.and_(ok, b.icmp_signed(">=", pitch_bytes, width_bytes))
        ok = b.and_(ok, b.icmp_signed("<=", pitch_bytes, c(MAX_EXTENT)))
        ok = b.and_(ok, multiple(pitch_bytes, PITCH_QUANTUM))
        ok = b.and_(ok, b.icmp_signed(">=", height, c(1)))
        ok = b.and_(ok, b.icmp_signed("<=", height, c(MAX_EXTENT)))
        if es < 4:
            ok = b.and_(ok, multiple(b.mul(x, size), 4))
        aligned = b.icmp_unsigned("==", b.and_(ptr.base, ir.Constant(I64, BASE_ALIGN - 1)), ir.Constant(I64, 0))
        return b.and_(ok, aligned)

    def _either(self, op, ptr, fast, slow):
        """``fast()`` where the surface fits (a uniform branch), ``slow()`` where not; their
        values (if any) joined.  Only ``fast()`` where the launch proved the surface fits
        (``surface_fits``, cmlang/passes/block_surfaces.py)."""
        if op.attrs.get("surface_fits"):
            return fast()
        b = self.b
        with b.if_else(self._surface_fits(op, ptr)) as (then, otherwise):
            with then:
                fast_value = fast()
                fast_end = b.block
            with otherwise:
                slow_value = slow()
                slow_end = b.block
        if fast_value is None:
            return None
        phi = b.phi(fast_value.type)
        phi.add_incoming(fast_value, fast_end)
        phi.add_incoming(slow_value, slow_end)
        return phi

    def _message_operands(self, s: Surface, m):
        """The operands of one message up to its surface position: predicate, cache controls
        (default), data size, order, blocks, their width and height, VNNI, the surface in
        bytes less one, and the block's x (elements) and y."""
        b = self.b
        size, minus1 = ir.Constant(I32, s.es), ir.Constant(I32, -1)
        return [ir.Constant(ir.VectorType(I1, 1), [1]), ir.Constant(I8, 0), ir.Constant(I8, 0),
                ir.Constant(I8, DATA_SIZE[s.es]), ir.Constant(I8, TRANSPOSED if m.transpose else NONTRANSPOSED),
                ir.Constant(I8, m.blocks), ir.Constant(I16, m.width), ir.Constant(I16, m.height),
                ir.Constant(I8, int(m.vnni)), s.base, b.add(b.mul(s.width, size), minus1),
                b.add(s.height, minus1), b.add(b.mul(s.pitch, size), minus1),
                b.add(s.x, ir.Constant(I32, m.c0)), b.add(s.y, ir.Constant(I32, m.r0))]

    @staticmethod
    def _register_offset(m, cols):
        """The register element where message ``m``'s data starts (a register of ``cols``
        columns); its rows there are ``cols`` apart."""
        first_row, first_col = (m.c0, m.r0) if m.transpose else (m.r0, m.c0)
        return first_row * cols + first_col

    def _load_message(self, s: Surface, m):
        ret = ir.VectorType(ir.IntType(8 * s.es), m.n)
        args = self._message_operands(s, m)
        return self.genx(self.b, "lsc.load2d.stateless", ret, args, [ret, args[0].type, I64])

    def _load_messages(self, s: Surface, shape, plan):
        """A register of ``shape`` read by the messages of ``plan``: a vector of integers of
        the surface's element size."""
        rows, cols = shape
        out = ir.Constant(ir.VectorType(ir.IntType(8 * s.es), rows * cols), ir.Undefined)
        for m in plan:
            data = self._load_message(s, m)
            dense = self.rdregion(data, m.reg_rows * m.reg_cols, m.reg_pitch, m.reg_cols, 1, 0)
            out = self.wrregion(out, dense, cols, m.reg_cols, 1, self._register_offset(m, cols))
        return out

    def _as_memory(self, ptr, ints):
        """Integers of the element size as the pointer's memory type."""
        mty = memory_type(ptr.elem)
        return self.b.bitcast(ints, ir.VectorType(mty, ints.type.count)) if mty != ints.type.element else ints

    def _dword_transposed_messages(self, op, ptr, t, plan):
        """A transposed 8/16-bit register (R, C) read as the transposed dword register
        (R / p, C) of the same memory, p elements a dword: register row q holds the dwords
        of block column q, whose element h is register row p q + h (low bits first)."""
        es = _byte_size(ptr.elem)
        per_dword = 4 // es
        rows, cols = t.shape
        dwords = self._load_messages(self._surface(op, ptr).as_dwords(self.b), (rows // per_dword, cols), plan)
        parts = self.b.bitcast(dwords, ir.VectorType(ir.IntType(8 * es), t.size))
        # dword row q (p cols elements) -> register rows p q .. p q + p - 1: element h, h + p, ..
        rows_of = [(self.rdregion(parts, per_dword * cols, 1, cols, per_dword, q * cols * per_dword),
                    per_dword * cols) for q in range(rows // per_dword)]
        return self.concat(rows_of, parts.type.element)

    def _store_messages(self, op, ptr, t, v, plan):
        b = self.b
        s = self._surface(op, ptr)
        bits = ir.IntType(8 * s.es)
        cols = t.shape[1]
        ints = b.bitcast(v, ir.VectorType(bits, t.size)) if v.type.element != bits else v
        for m in plan:
            part = self.rdregion(ints, m.reg_rows * m.reg_cols, cols, m.reg_cols, 1, self._register_offset(m, cols))
            data = self.wrregion(ir.Constant(ir.VectorType(bits, m.n), [0] * m.n), part,
                                 m.reg_pitch, m.reg_cols, 1, 0)
            args = self._message_operands(s, m) + [data]
            self.genx(b, "lsc.store2d.stateless", VOID, args, [args[0].type, I64, data.type])
        return None

    def _prefetch_messages(self, op, ptr, plan):
        s = self._surface(op, ptr)
        for m in plan:
            args = self._message_operands(s, m)
            self.genx(self.b, "lsc.prefetch2d.stateless", VOID, args, [args[0].type, I64])

    # ------------------------------------------------------------------ VNNI loads for dpas
    def vnni_tiles(self, src: VNNIBlock, nt):
        """The dpas's b tiles {(k0, n0): <8 nt x i32>} (8 dwords of K x nt columns, VNNI
        packed) of a ``VNNIBlock``: per message, the VNNI-transforming message where the
        surface meets the limits, else its part of b read row by row (``_row_loop``) and
        packed as ``vc_dpas._vnni`` does, in the message's layout (block after block, each its
        8-dword rows of K)."""
        op, ptr = src.op, src.ptr
        es = _byte_size(ptr.elem)
        per_dword = 4 // es
        K, N = op.result.type.shape
        kt, tile_n = 8 * per_dword, 8 * nt
        s = self._surface(op, ptr)
        tiles = {}
        for m in _vnni_plan(K, N, es):
            def message(m=m):
                return self.b.bitcast(self._load_message(s, m), ir.VectorType(I32, m.n // per_dword))

            def gathers(m=m):          # the message's rows by the row loop, then in its order
                width = m.blocks * VNNI_WIDTH
                raw = self._row_loop(op, ptr, (m.height, width), m.r0, m.c0)
                order = [(per_dword * kk + t) * width + j * VNNI_WIDTH + c
                         for j in range(m.blocks) for kk in range(m.height // per_dword)
                         for c in range(VNNI_WIDTH) for t in range(per_dword)]
                packed = self.b.shuffle_vector(raw, undef(raw.type), ir.Constant(ir.VectorType(I32, len(order)), order))
                return self.b.bitcast(packed, ir.VectorType(I32, m.n // per_dword))
            data = self._either(op, ptr, message, gathers)
            block_dwords = m.block_n // per_dword
            for j in range(m.blocks):
                for t in range(m.height // kt):
                    tiles[(m.r0 + t * kt, m.c0 + j * VNNI_WIDTH)] = (
                        self.rdregion(data, tile_n, tile_n, tile_n, 1, j * block_dwords + t * tile_n))
        return tiles


def register_positions(shape, transpose):
    """The block (row, column) of each element of a register of ``shape``, in order;
    transposed, register element (i, j) is the block's (j, i)."""
    rows, cols = shape
    return [(e % cols, e // cols) if transpose else (e // cols, e % cols) for e in range(rows * cols)]


def _vnni_plan(K, N, es):
    """The VNNI-transforming messages of a (K, N) b: rows in pieces of 32 (or 16), columns
    in blocks of 16, as many blocks per message as the row limit lets (1, 2 or 4)."""
    plan = []
    r0 = 0
    while r0 < K:
        height = next(h for h in VNNI_HEIGHTS[es] if h <= K - r0)
        c0 = 0
        while c0 < N:
            blocks = next(n for n in (4, 2, 1) if n <= VNNI_BLOCKS[es] and n * VNNI_WIDTH <= N - c0)
            plan.append(Message(r0, c0, height, VNNI_WIDTH, es, False, blocks=blocks, vnni=True))
            c0 += blocks * VNNI_WIDTH
        r0 += height
    return plan


def _pieces(n):
    """[(first, count)] covering n elements in pieces of at most GATHER_PIECE, none of one
    element (a register of one element is a scalar) unless n is 1."""
    out, first = [], 0
    while first < n:
        count = min(GATHER_PIECE, n - first)
        if n - first - count == 1:
            count -= 1
        out.append((first, count))
        first += count
    return out


def _steps(extent, sizes):
    """``extent`` cut into pieces whose sizes are among ``sizes`` (largest first): [(start,
    size)], or None where the last piece fits none."""
    steps, start = [], 0
    while start < extent:
        size = next((s for s in sorted(sizes, reverse=True) if s <= extent - start), None)
        if size is None:
            return None
        steps.append((start, size))
        start += size
    return steps


def _byte_size(elem):
    """Bytes of one element in memory (bool: one byte)."""
    return max(1, elem.bits // 8)
