"""2-D block IO in vector-compute code (``block_load2d`` / ``block_store2d`` /
``block_prefetch2d``): a mixin of ``vc.VCLowering``.

Every element of the block gets its surface row and column as a vector; elements inside the
surface (0 <= column < width, 0 <= row < height) are enabled lanes of predicated gathers or
scatters (``svm.gather``/``svm.scatter``, SLM: ``gather.scaled``/``scatter.scaled``), so
the others read 0 and are not written.  A transposed load reads the block's (j, i) into
register element (i, j) with the same gather.  Prefetch is a hint and emits nothing here.

Not done yet: ``llvm.genx.lsc.load2d``/``store2d``/``prefetch2d`` messages on PVC.
"""
from __future__ import annotations

from llvmlite import ir

from . import elementwise as ew
from .llvm_builtins import I32, I64, memory_type


class VCBlock2DLowering:
    def _block_lanes(self, op, shape, transpose):
        """(i64 element indices <n x i64>, <n x i1> inside the surface) of the elements of a
        register of ``shape``; transposed, register element (i, j) is the block's (j, i)."""
        b = self.b
        rows, cols = shape
        n = rows * cols
        x, y, width, height, pitch = (self.get(v) for v in op.operands[1:6])
        i = [e // cols for e in range(n)]
        j = [e % cols for e in range(n)]
        block_row, block_col = (j, i) if transpose else (i, j)
        vec = ir.VectorType(I32, n)
        r = b.add(self.splat(y, n), ir.Constant(vec, block_row))
        c = b.add(self.splat(x, n), ir.Constant(vec, block_col))
        zero = ir.Constant(vec, [0] * n)
        inside = b.and_(b.and_(b.icmp_signed(">=", c, zero), b.icmp_signed("<", c, self.splat(width, n))),
                        b.and_(b.icmp_signed(">=", r, zero), b.icmp_signed("<", r, self.splat(height, n))))
        wide = ir.VectorType(I64, n)
        index = b.add(b.mul(b.sext(r, wide), b.sext(self.splat(pitch, n), wide)), b.sext(c, wide))
        return index, inside

    def _block_addresses(self, ptr, index, n):
        es = ir.Constant(index.type, [_byte_size(ptr.elem)] * n)
        if ptr.space == "local":
            offs = self.b.trunc(self.b.mul(index, es), ir.VectorType(I32, n))
            return self.b.add(offs, ir.Constant(offs.type, [ptr.base] * n))
        return self.b.add(self.splat(ptr.base, n), self.b.mul(index, es))

    def op_block_load2d(self, op):
        ptr = self.get(op.operands[0])
        t = op.result.type
        n = t.size
        index, inside = self._block_lanes(op, t.shape, bool(op.attrs.get("transpose")))
        addrs = self._block_addresses(ptr, index, n)
        if ptr.space == "local":
            raw = self._slm_gather(ptr, addrs, n, inside)
        else:
            raw = self._svm_gather(addrs, n, memory_type(ptr.elem), inside)
        return ew.from_memory(self.b, ptr.elem, raw)

    def op_block_store2d(self, op):
        ptr = self.get(op.operands[0])
        t = op.operands[6].type
        n = t.size
        v = ew.to_memory(self.b, ptr.elem, self.get(op.operands[6]))
        index, inside = self._block_lanes(op, t.shape, False)
        addrs = self._block_addresses(ptr, index, n)
        if ptr.space == "local":
            self._slm_scatter(ptr, addrs, v, n, inside)
        else:
            self._svm_scatter(addrs, v, n, inside)

    def op_block_prefetch2d(self, op):
        return None


def _byte_size(elem):
    """Bytes of one element in memory (bool: one byte)."""
    return max(1, elem.bits // 8)
