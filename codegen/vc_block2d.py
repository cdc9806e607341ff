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
``max_height`` rows, ``max_store_height`` for stores; transposed: 32-bit, at most 8 columns)
is several messages.  The surface is a run-time value: the messages run where it meets their
limits (``_surface_fits``), the gathers and scatters above where not.  Not yet by message:
transposed 8/16/64-bit blocks, SLM, VNNI-transforming loads for dpas.

A message's data in registers (vc-intrinsics / ESIMD's ``lsc_load_2d``): one block of h rows
of w elements is h rows of ``next_pow2(w)`` elements (transposed: w rows of
``next_pow2(h)``, row c holding the block's column c), the whole padded to 64 bytes.
"""
from __future__ import annotations

from llvmlite import ir

from . import elementwise as ew
from .llvm_builtins import I32, I64, memory_type
from .vc_intrinsics import undef

I1, I8, I16 = ir.IntType(1), ir.IntType(8), ir.IntType(16)
VOID = ir.VoidType()
# What a 2-D block message needs of the surface (PVC): a 64-byte aligned base, rows of at
# least 64 bytes and whole dwords, a pitch of whole 16 bytes not below the width, extents
# at most 2**24, at least one row; 8- and 16-bit blocks start at a whole dword (x).
MIN_WIDTH_BYTES, PITCH_QUANTUM, BASE_ALIGN, MAX_EXTENT = 64, 16, 64, 1 << 24
MAX_MESSAGES = 64               # more than this: the gathers are no worse
GATHER_PIECE = 16               # elements per gather of the generic path (one message)
NONTRANSPOSED, TRANSPOSED = 1, 2                        # LSC data order
DATA_SIZE = {1: 1, 2: 2, 4: 3, 8: 4}                    # LSC data size codes: d8 d16 d32 d64
MAX_TRANSPOSED_COLS = {4: 8}                            # transposed: 32-bit, <= 8 columns


def _lanes_constant(ty, values):
    """A constant of ``values``: a vector of them, or the scalar where there is one (as
    ``splat`` gives for one lane)."""
    return ir.Constant(ty, values[0]) if len(values) == 1 else ir.Constant(ir.VectorType(ty, len(values)), values)


def _next_pow2(n):
    return 1 << (n - 1).bit_length()


class Message:
    """One 2-D block message: the block's rows r0.., columns c0.. (in the surface, from the
    op's x, y) and its size; ``data`` the register vector it reads or writes."""
    def __init__(self, r0, c0, height, width, es, transpose):
        self.r0, self.c0, self.height, self.width = r0, c0, height, width
        self.transpose = transpose
        # the data's rows in registers: block rows, or (transposed) block columns
        self.reg_rows, self.reg_cols = (width, height) if transpose else (height, width)
        self.reg_pitch = _next_pow2(self.reg_cols)
        per_grf = 64 // es
        self.n = -(-self.reg_rows * self.reg_pitch // per_grf) * per_grf


class VCBlock2DLowering:
    def _block_lanes(self, op, shape, transpose, start, count):
        """(i64 element indices <count x i64>, <count x i1> inside the surface) of elements
        start..start+count-1 of a register of ``shape``; transposed, register
        element (i, j) is the block's (j, i).  The index is a scalar, the first element's
        row start (y + r0) * pitch + x, plus constant columns, plus (row - r0) * pitch only
        where the elements span rows: a loop-invariant y then leaves scalars to hoist out of
        a loop, not vectors (which spill)."""
        b = self.b
        rows, cols = shape
        n = count
        x, y, width, height, pitch = (self.get(v) for v in op.operands[1:6])
        i = [e // cols for e in range(start, start + n)]
        j = [e % cols for e in range(start, start + n)]
        block_row, block_col = (j, i) if transpose else (i, j)
        r0 = block_row[0]
        first_row = b.add(y, ir.Constant(I32, r0))
        base = b.add(b.mul(b.sext(first_row, I64), b.sext(pitch, I64)), b.sext(x, I64))
        index = b.add(self.splat(base, n), _lanes_constant(I64, block_col))
        c = b.add(self.splat(x, n), _lanes_constant(I32, block_col))
        zero = _lanes_constant(I32, [0] * n)
        inside = b.and_(b.icmp_signed(">=", c, zero), b.icmp_signed("<", c, self.splat(width, n)))
        if all(r == r0 for r in block_row):           # one row: its check is a scalar
            row_inside = b.and_(b.icmp_signed(">=", first_row, ir.Constant(I32, 0)),
                                b.icmp_signed("<", first_row, height))
            return index, b.and_(inside, self.splat(row_inside, n))
        index = b.add(index, b.mul(_lanes_constant(I64, [r - r0 for r in block_row]), self.splat(b.sext(pitch, I64), n)))
        r = b.add(self.splat(y, n), _lanes_constant(I32, block_row))
        return index, b.and_(inside, b.and_(b.icmp_signed(">=", r, zero), b.icmp_signed("<", r, self.splat(height, n))))

    def _block_addresses(self, ptr, index, n):
        es = _lanes_constant(I64, [_byte_size(ptr.elem)] * n)
        if ptr.space == "local":
            offs = self.b.trunc(self.b.mul(index, es), ir.VectorType(I32, n) if n > 1 else I32)
            return self.b.add(offs, _lanes_constant(I32, [ptr.base] * n))
        return self.b.add(self.splat(ptr.base, n), self.b.mul(index, es))

    # ------------------------------------------------------------------ the generic path
    def _gathered_load(self, op, ptr, t, transpose):
        """The block by gathers of GATHER_PIECE elements, each with its own addresses and
        surface checks: a block's addresses at once (a 16 x 64 block: 8 KB of i64) spill.
        A block of several rows of global memory goes row by row in a loop (``_row_loop``)."""
        rows, cols = t.shape
        if not transpose and rows > 1 and ptr.space != "local":
            return self._row_loop(op, ptr, t)
        pieces = []
        for start in range(0, t.size, GATHER_PIECE):
            count = min(GATHER_PIECE, t.size - start)
            index, inside = self._block_lanes(op, t.shape, transpose, start, count)
            addrs = self._block_addresses(ptr, index, count)
            if ptr.space == "local":
                raw = self._slm_gather(ptr, addrs, count, inside)
            else:
                raw = self._svm_gather(addrs, count, memory_type(ptr.elem), inside)
            pieces.append((raw, count))
        return self.concat(pieces, memory_type(ptr.elem))

    def _row_loop(self, op, ptr, t):
        """A rows x cols block read by a loop over its rows, each row gathers written into
        the register at row * cols: code for one row, whose addresses and checks depend on
        the loop's row (nothing per row for the compiler to hoist out of an enclosing loop,
        which spilled in flash attention's key loop)."""
        b = self.b
        rows, cols = t.shape
        mty = memory_type(ptr.elem)
        x, y, width, height, pitch = (self.get(v) for v in op.operands[1:6])
        before = b.block
        loop = self.kernel.append_basic_block("block2d.row")
        done = self.kernel.append_basic_block("block2d.rows_done")
        b.branch(loop)
        b.position_at_end(loop)
        row = b.phi(I32)
        block = b.phi(ir.VectorType(mty, t.size))
        surface_row = b.add(y, row)
        base = b.add(b.mul(b.sext(surface_row, I64), b.sext(pitch, I64)), b.sext(x, I64))
        row_inside = b.and_(b.icmp_signed(">=", surface_row, ir.Constant(I32, 0)),
                            b.icmp_signed("<", surface_row, height))
        written = block
        for c0 in range(0, cols, GATHER_PIECE):
            count = min(GATHER_PIECE, cols - c0)
            columns = list(range(c0, c0 + count))
            index = b.add(self.splat(base, count), _lanes_constant(I64, columns))
            c = b.add(self.splat(x, count), _lanes_constant(I32, columns))
            inside = b.and_(b.and_(b.icmp_signed(">=", c, _lanes_constant(I32, [0] * count)),
                                   b.icmp_signed("<", c, self.splat(width, count))),
                            self.splat(row_inside, count))
            raw = self._svm_gather(self._block_addresses(ptr, index, count), count, mty, inside)
            written = self.wrregion(written, raw, count, count, 1, c0, b.mul(row, ir.Constant(I32, cols)))
        following = b.add(row, ir.Constant(I32, 1))
        b.cbranch(b.icmp_signed("<", following, ir.Constant(I32, rows)), loop, done)
        row.add_incoming(ir.Constant(I32, 0), before)
        row.add_incoming(following, loop)
        block.add_incoming(undef(block.type), before)
        block.add_incoming(written, loop)
        b.position_at_end(done)
        return written

    def _scattered_store(self, op, ptr, t, v):
        """The block by scatters of GATHER_PIECE elements (as ``_gathered_load``)."""
        for start in range(0, t.size, GATHER_PIECE):
            count = min(GATHER_PIECE, t.size - start)
            index, inside = self._block_lanes(op, t.shape, False, start, count)
            addrs = self._block_addresses(ptr, index, count)
            data = self.piece(v, start, count)
            if ptr.space == "local":
                self._slm_scatter(ptr, addrs, data, count, inside)
            else:
                self._svm_scatter(addrs, data, count, inside)

    # ------------------------------------------------------------------ the ops
    def op_block_load2d(self, op):
        ptr = self.get(op.operands[0])
        t = op.result.type
        transpose = bool(op.attrs.get("transpose"))
        plan = self._message_plan(ptr, t.shape, transpose, "load")
        if plan is None:
            raw = self._gathered_load(op, ptr, t, transpose)
        else:
            raw = self._either(self._surface_fits(op, ptr),
                               lambda: self._load_messages(op, ptr, t, plan),
                               lambda: self._gathered_load(op, ptr, t, transpose))
        return ew.from_memory(self.b, ptr.elem, raw)

    def op_block_store2d(self, op):
        ptr = self.get(op.operands[0])
        t = op.operands[6].type
        v = ew.to_memory(self.b, ptr.elem, self.get(op.operands[6]))
        plan = self._message_plan(ptr, t.shape, False, "store")
        if plan is None:
            self._scattered_store(op, ptr, t, v)
            return None
        self._either(self._surface_fits(op, ptr), lambda: self._store_messages(op, ptr, t, v, plan),
                     lambda: self._scattered_store(op, ptr, t, v))
        return None

    def op_block_prefetch2d(self, op):
        """A hint: 2-D block prefetches where the messages can take the block and the surface,
        nothing elsewhere."""
        ptr = self.get(op.operands[0])
        shape = (op.attrs["rows"], op.attrs["cols"])
        plan = self._message_plan(ptr, shape, False, "prefetch")
        if plan is not None:
            with self.b.if_then(self._surface_fits(op, ptr)):
                self._prefetch_messages(op, ptr, plan)
        return None

    # ------------------------------------------------------------------ 2-D block messages
    def _message_plan(self, ptr, shape, transpose, kind):
        """The messages that cover a register of ``shape`` (transposed: the block is its
        transpose), or None where messages cannot (no unit, SLM, a shape past the limits)."""
        unit = self.profile.block2d
        es = _byte_size(ptr.elem)
        rows, cols = shape
        if unit is None or ptr.space != "global" or es not in DATA_SIZE or rows * cols < 2:
            return None
        block_rows, block_cols = (cols, rows) if transpose else (rows, cols)
        if transpose:
            if not unit.transpose or es not in MAX_TRANSPOSED_COLS:
                return None
            max_width, max_height = MAX_TRANSPOSED_COLS[es], unit.max_height
        else:
            max_width = unit.max_width_bytes // es
            max_height = unit.max_store_height if kind == "store" else unit.max_height
        width_steps = [(c0, min(max_width, block_cols - c0)) for c0 in range(0, block_cols, max_width)]
        if any(w * es < 4 for _, w in width_steps):        # a message row is at least a dword
            return None
        plan = [Message(r0, c0, min(max_height, block_rows - r0), w, es, transpose)
                for r0 in range(0, block_rows, max_height) for c0, w in width_steps]
        return plan if len(plan) <= MAX_MESSAGES else None

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

    def _either(self, fits, fast, slow):
        """``fast()`` where ``fits`` (a uniform i1), ``slow()`` where not; their values (if
        any) joined."""
        b = self.b
        with b.if_else(fits) as (then, otherwise):
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

    def _message_operands(self, op, ptr, m):
        """The operands of one message up to its surface position: predicate, cache controls
        (default), data size, order, one block, its width and height, no VNNI, the surface
        in bytes less one, and the block's x (elements) and y."""
        b = self.b
        x, y, width, height, pitch = (self.get(v) for v in op.operands[1:6])
        es = _byte_size(ptr.elem)
        size, minus1 = ir.Constant(I32, es), ir.Constant(I32, -1)
        return [ir.Constant(ir.VectorType(I1, 1), [1]), ir.Constant(I8, 0), ir.Constant(I8, 0),
                ir.Constant(I8, DATA_SIZE[es]), ir.Constant(I8, TRANSPOSED if m.transpose else NONTRANSPOSED),
                ir.Constant(I8, 1), ir.Constant(I16, m.width), ir.Constant(I16, m.height), ir.Constant(I8, 0),
                ptr.base, b.add(b.mul(width, size), minus1), b.add(height, minus1),
                b.add(b.mul(pitch, size), minus1),
                b.add(x, ir.Constant(I32, m.c0)), b.add(y, ir.Constant(I32, m.r0))]

    @staticmethod
    def _register_offset(m, cols):
        """The register element where message ``m``'s data starts (a register of ``cols``
        columns); its rows there are ``cols`` apart."""
        first_row, first_col = (m.c0, m.r0) if m.transpose else (m.r0, m.c0)
        return first_row * cols + first_col

    def _load_messages(self, op, ptr, t, plan):
        b = self.b
        es = _byte_size(ptr.elem)
        bits = ir.IntType(8 * es)
        cols = t.shape[1]
        out = ir.Constant(ir.VectorType(bits, t.size), ir.Undefined)
        for m in plan:
            args = self._message_operands(op, ptr, m)
            ret = ir.VectorType(bits, m.n)
            data = self.genx(b, "lsc.load2d.stateless", ret, args, [ret, args[0].type, I64])
            dense = self.rdregion(data, m.reg_rows * m.reg_cols, m.reg_pitch, m.reg_cols, 1, 0)
            out = self.wrregion(out, dense, cols, m.reg_cols, 1, self._register_offset(m, cols))
        mty = memory_type(ptr.elem)
        return b.bitcast(out, ir.VectorType(mty, t.size)) if mty != bits else out

    def _store_messages(self, op, ptr, t, v, plan):
        b = self.b
        es = _byte_size(ptr.elem)
        bits = ir.IntType(8 * es)
        cols = t.shape[1]
        ints = b.bitcast(v, ir.VectorType(bits, t.size)) if v.type.element != bits else v
        for m in plan:
            part = self.rdregion(ints, m.reg_rows * m.reg_cols, cols, m.reg_cols, 1, self._register_offset(m, cols))
            data = self.wrregion(ir.Constant(ir.VectorType(bits, m.n), [0] * m.n), part,
                                 m.reg_pitch, m.reg_cols, 1, 0)
            args = self._message_operands(op, ptr, m) + [data]
            self.genx(b, "lsc.store2d.stateless", VOID, args, [args[0].type, I64, data.type])
        return None

    def _prefetch_messages(self, op, ptr, plan):
        for m in plan:
            args = self._message_operands(op, ptr, m)
            self.genx(self.b, "lsc.prefetch2d.stateless", VOID, args, [args[0].type, I64])


def _byte_size(elem):
    """Bytes of one element in memory (bool: one byte)."""
    return max(1, elem.bits // 8)
