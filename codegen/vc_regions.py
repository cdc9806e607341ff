"""spirv-vc lowering of register regions: vector helpers on ``llvm.genx.rdregion`` /
``wrregion``, the region ops, extract/insert, iselect, format (bitcast) and reductions
(dpas: ``vc_dpas.py``; a mixin of ``vc.VCLowering``; the op table is in ``vc.py``'s docstring)."""
from __future__ import annotations

from llvmlite import ir

from cmlang.errors import CompileError
from cmlang.ir.core import Value
from cmlang.types import ScalarType, VectorType
from . import elementwise as ew
from .elementwise import constant, lanes_of, scalar_of
from .llvm_builtins import I1, I8, I16, I32
from .vc_intrinsics import byte_size, is_float_ty, size_of, undef


class VCRegionLowering:
    """Needs from the lowering: ``b`` (the builder), ``genx``, ``math``, ``get``/``operands``."""

    # ------------------------------------------------------------------ vector helpers
    def splat(self, x, n):
        """x (a scalar) in every element of an n-vector (x itself when n == 1)."""
        if n == 1:
            return x
        b = self.b
        one = b.insert_element(undef(ir.VectorType(x.type, n)), x, ir.Constant(I32, 0))
        return b.shuffle_vector(one, undef(one.type), ir.Constant(ir.VectorType(I32, n), [0] * n))

    def broadcast_like(self, x, ty):
        return self.splat(x, lanes_of(ty)) if lanes_of(x.type) != lanes_of(ty) else x

    def rdregion(self, src, n_out, vstride, width, stride, offset, dyn=None):
        """``llvm.genx.rdregion``: n_out elements, rows of ``width`` (elements apart by
        ``stride``) starting ``vstride`` apart, from element ``offset`` (+ dyn, an i32)."""
        b = self.b
        elem = scalar_of(src.type)
        if elem == I1:        # regions move bytes: predicates travel as i8
            wide = self.rdregion(b.zext(src, ir.VectorType(I8, lanes_of(src.type)) if lanes_of(src.type) > 1 else I8),
                                 n_out, vstride, width, stride, offset, dyn)
            return b.icmp_unsigned("!=", wide, constant(wide.type, 0))
        if lanes_of(src.type) == 1:
            return self.splat(src, n_out)
        if stride < 0 or vstride < 0:
            mirrored = self._mirrored(n_out, vstride, width, stride, offset)
            start, order = mirrored
            wide = self.rdregion(src, n_out, abs(vstride), width, abs(stride), start, dyn)
            return self._permuted(wide, order)
        ret = ir.VectorType(elem, n_out) if n_out > 1 else elem
        off = self._byte_offset(elem, offset, dyn)
        name = "rdregionf" if is_float_ty(elem) else "rdregioni"
        return self.genx(b, name, ret, [src, ir.Constant(I32, vstride), ir.Constant(I32, width),
                                        ir.Constant(I32, stride), off, undef(I32)],
                         [ret, src.type, off.type])

    def wrregion(self, dst, src, vstride, width, stride, offset, dyn=None):
        """``llvm.genx.wrregion``: dst with the region (as in ``rdregion``) replaced by src."""
        b = self.b
        elem = scalar_of(dst.type)
        if lanes_of(dst.type) == 1:
            return src
        if elem == I1:
            n, m = lanes_of(dst.type), lanes_of(src.type)
            wide = self.wrregion(b.zext(dst, ir.VectorType(I8, n)),
                                 b.zext(src, ir.VectorType(I8, m) if m > 1 else I8),
                                 vstride, width, stride, offset, dyn)
            return b.icmp_unsigned("!=", wide, constant(wide.type, 0))
        if stride < 0 or vstride < 0:
            start, order = self._mirrored(lanes_of(src.type), vstride, width, stride, offset)
            return self.wrregion(dst, self._permuted(src, order), abs(vstride), width, abs(stride),
                                 start, dyn)
        off = self._byte_offset(elem, offset, dyn)
        name = "wrregionf" if is_float_ty(elem) else "wrregioni"
        return self.genx(b, name, dst.type, [dst, src, ir.Constant(I32, vstride), ir.Constant(I32, width),
                                             ir.Constant(I32, stride), off, undef(I32), ir.Constant(I1, 1)],
                         [dst.type, src.type, off.type, I1])

    @staticmethod
    def _mirrored(n, vstride, width, stride, offset):
        """A region with a negative stride as the same elements read with positive strides
        (the hardware's region strides are unsigned): the mirrored region's first element
        and, for each element of the asked-for region, its place in the mirrored one."""
        rows = max(n // width, 1)
        start = offset + (rows - 1) * vstride * (vstride < 0) + (width - 1) * stride * (stride < 0)
        order = [(rows - 1 - r if vstride < 0 else r) * width + (width - 1 - c if stride < 0 else c)
                 for r in range(rows) for c in range(width)]
        return start, order

    def _permuted(self, v, order):
        """Elements of v in ``order`` (a constant permutation, its own inverse here)."""
        if lanes_of(v.type) == 1 or order == sorted(order):
            return v
        return self.b.shuffle_vector(v, undef(v.type), ir.Constant(ir.VectorType(I32, len(order)), order))

    def _byte_offset(self, elem, offset, dyn):
        size = byte_size(elem)
        if dyn is None:
            return ir.Constant(I16, offset * size)
        b = self.b
        index = b.add(dyn, ir.Constant(I32, offset)) if offset else dyn
        return b.trunc(b.mul(index, ir.Constant(I32, size)), I16)

    def piece(self, v, start, n):
        """Elements start..start+n-1 of a vector."""
        if n == lanes_of(v.type) and start == 0:
            return v
        return self.rdregion(v, n, n, n, 1, start)

    def concat(self, pieces, elem_ty):
        """One vector from (value, count) pieces, in order."""
        total = sum(n for _, n in pieces)
        if len(pieces) == 1:
            return pieces[0][0]
        out = undef(ir.VectorType(elem_ty, total))
        pos = 0
        for v, n in pieces:
            out = self.wrregion(out, v, n, n, 1, pos)
            pos += n
        return out

    def iota(self, ty, n, scale=1, start=0):
        values = [start + i * scale for i in range(n)]
        return ir.Constant(ir.VectorType(ty, n), [ir.Constant(ty, v) for v in values]) if n > 1 else \
            ir.Constant(ty, values[0])

    def lane_mask(self, n, active):
        """A constant <n x i1> that is true in the first ``active`` lanes."""
        return ir.Constant(ir.VectorType(I1, n), [ir.Constant(I1, int(i < active)) for i in range(n)])

    def int_to(self, v, src_t: ScalarType, ty: ir.IntType):
        """An integer value (scalar or vector) resized to ``ty`` elements, by its signedness."""
        return ew.int_resize(self.b, v, src_t.is_signed, ty)

    # ------------------------------------------------------------------ regions
    def _region_attrs(self, op):
        a = op.attrs
        return a["vsize"], a["vstride"], a["hsize"], a["hstride"], a["offset"]

    def _dyn(self, op, index):
        """The optional dynamic offset operand as an i32."""
        if len(op.operands) <= index:
            return None
        v = op.operands[index]
        return self.int_to(self.get(v), v.type, I32)

    def op_rdregion(self, op):
        vsize, vstride, hsize, hstride, offset = self._region_attrs(op)
        src = self.get(op.operands[0])
        return self.rdregion(src, vsize * hsize, vstride, hsize, hstride, offset, self._dyn(op, 1))

    def op_wrregion(self, op):
        vsize, vstride, hsize, hstride, offset = self._region_attrs(op)
        dst, src = self.get(op.operands[0]), self.get(op.operands[1])
        return self.wrregion(dst, src, vstride, hsize, hstride, offset, self._dyn(op, 2))

    def _element_index(self, op, operand_index):
        index = op.attrs["index"]
        dyn = self._dyn(op, operand_index)
        if dyn is None:
            return ir.Constant(I32, index)
        return self.b.add(dyn, ir.Constant(I32, index)) if index else dyn

    def op_extract(self, op):
        src = self.get(op.operands[0])
        if lanes_of(src.type) == 1:
            return src
        return self.b.extract_element(src, self._element_index(op, 1))

    def op_insert(self, op):
        dst, s = self.get(op.operands[0]), self.get(op.operands[1])
        if lanes_of(dst.type) == 1:
            return s
        return self.b.insert_element(dst, s, self._element_index(op, 2))

    def op_iselect(self, op):
        src = self.get(op.operands[0])
        idx_value = op.operands[1]
        m = size_of(idx_value.type)
        n = lanes_of(src.type)
        static = _constant_indices(idx_value)
        if n == 1:
            return self.splat(src, m)
        if static is not None and m > 1:
            mask = ir.Constant(ir.VectorType(I32, m), [ir.Constant(I32, i) for i in static])
            return self.b.shuffle_vector(src, undef(src.type), mask)
        idx = self.int_to(self.get(idx_value), idx_value.type.elem, I32)
        if m == 1:
            return self.rdregion(src, 1, 0, 1, 0, 0, idx)
        return self._gather_region(src, idx, m)

    def _gather_region(self, src, idx, m):
        """r[i] = src[idx[i]]: a region with one row per element, rows at a vector of offsets."""
        b = self.b
        elem = scalar_of(src.type)
        if elem == I1:
            wide = self._gather_region(b.zext(src, ir.VectorType(I8, lanes_of(src.type))), idx, m)
            return b.icmp_unsigned("!=", wide, constant(wide.type, 0))
        offsets = b.trunc(b.mul(idx, constant(idx.type, byte_size(elem))), ir.VectorType(I16, m))
        ret = ir.VectorType(elem, m)
        name = "rdregionf" if is_float_ty(elem) else "rdregioni"
        return self.genx(b, name, ret, [src, ir.Constant(I32, 0), ir.Constant(I32, 1), ir.Constant(I32, 0),
                                        offsets, undef(I32)], [ret, src.type, offsets.type])

    def op_bitcast(self, op):
        src_t, dst_t = op.operands[0].type, op.result.type
        if src_t.elem.is_bool or dst_t.elem.is_bool:
            self.unsupported("bitcast of bool registers")
        b = self.b
        x = self.get(op.operands[0])
        bits = ew.to_bits(b, src_t.elem, x)
        n_dst = size_of(dst_t)
        ity = ir.IntType(dst_t.elem.bits)
        raw = b.bitcast(bits, ir.VectorType(ity, n_dst) if n_dst > 1 else ity)
        return ew.from_bits(b, dst_t.elem, raw)

    # ------------------------------------------------------------------ reductions
    def op_reduce(self, op):
        kind, axis = op.attrs["kind"], op.attrs.get("axis")
        t = op.operands[0].type
        elem = t.elem
        src = self.get(op.operands[0])
        rows, cols = (t.shape if isinstance(t, VectorType) and t.is_matrix else (1, size_of(t)))
        if axis in (None, "none"):
            rows, cols, axis = 1, rows * cols, 1
        if elem.is_bool:
            return self._reduce_bool(kind, src, rows, cols, axis)
        combine = self._combiner(kind, elem)
        identity = ew.identity(kind, elem)
        if axis == 0:      # each column: combine halves of the rows
            return self._reduce_rows(src, rows, cols, combine, identity)
        return self._reduce_columns(src, rows, cols, combine, identity)

    def _reduce_bool(self, kind, src, rows, cols, axis):
        kind = {"min": "and", "max": "or", "mul": "and"}.get(kind, kind)
        if kind not in ("and", "or"):
            raise CompileError(f"reduce '{kind}' is not defined on bool values")
        if rows * cols == 1:
            return src
        if rows == 1 and axis == 1:       # the whole mask: any / all
            return self.genx(self.b, "any" if kind == "or" else "all", I1, [src], [src.type])
        b = self.b
        wide = b.zext(src, ir.VectorType(I8, rows * cols))
        combine = (lambda x, y: b.or_(x, y)) if kind == "or" else (lambda x, y: b.and_(x, y))
        ident = constant(I8, 0 if kind == "or" else 1)
        r = (self._reduce_rows if axis == 0 else self._reduce_columns)(wide, rows, cols, combine, ident)
        return b.icmp_unsigned("!=", r, constant(r.type, 0))

    def _combiner(self, kind, elem):
        """The element-wise op a reduction combines halves with (elementwise.binary)."""
        if elem.is_float and kind in ("and", "or"):
            raise CompileError(f"reduce '{kind}' is not defined on floating-point values")
        return lambda x, y: ew.binary(self.b, self.math, kind, elem, x, y)

    def _pad(self, src, n, padded, identity):
        """src (n elements) followed by identity elements up to ``padded``."""
        if padded == n:
            return src
        base = constant(ir.VectorType(identity.type, padded), identity.constant)
        return self.wrregion(base, src, n, n, 1, 0)

    def _reduce_rows(self, src, rows, cols, combine, identity):
        """Combine the rows of a rows x cols matrix: the top half with the bottom half, repeatedly."""
        p = 1 << (rows - 1).bit_length()
        v = self._pad(src, rows * cols, p * cols, identity)
        while p > 1:
            h = p // 2
            v = combine(self.piece(v, 0, h * cols), self.piece(v, h * cols, h * cols))
            p = h
        return v

    def _reduce_columns(self, src, rows, cols, combine, identity):
        """Combine within each row: the left half of every row with its right half, repeatedly."""
        p = 1 << (cols - 1).bit_length()
        v = src
        if p != cols:    # widen every row to p columns of identity
            base = constant(ir.VectorType(identity.type, rows * p), identity.constant)
            v = self.wrregion(base, src, p, cols, 1, 0)
        while p > 1:
            h = p // 2
            left = self.rdregion(v, rows * h, p, h, 1, 0)
            right = self.rdregion(v, rows * h, p, h, 1, h)
            v = combine(left, right)
            p = h
        return v


def _constant_indices(value: Value):
    """The index list of a constant index register, or None."""
    op = value.defining_op
    if op is None or op.opcode != "const":
        return None
    v = op.attrs["value"]
    n = size_of(value.type)
    values = list(v) if isinstance(v, (tuple, list)) else [v] * n
    return [int(x) for x in values]
