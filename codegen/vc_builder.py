"""The LLVM IR builder of the spirv-vc lowering: llvmlite's, with conversions of large
registers done in pieces.

The Khronos translator writes a vector conversion (zext, sext, trunc, fpext, fptrunc,
fpto[su]i, [su]itofp) as OpUConvert, OpFConvert ..., and reads it back, as a reader of the
module does, as a call of an OpenCL ``convert_*`` builtin. LLVM's verifier refuses a call
whose result or argument is aligned above 16 KiB ("Incorrect alignment of return type to
called function"), and a vector's alignment here is its size rounded up to a power of two
(``vc.DATA_LAYOUT`` names none past 1024 bits). A bf16 register is widened to f32 where it
is loaded, so a strided bf16 load of more than 4096 elements (128 x 64 keys) made a module
that did not validate. Conversions with a larger operand or result convert pieces of it
(``rdregion``) and join them (``wrregion``), as the rest of the lowering moves regions.
(``llvm.genx.*`` calls are intrinsics to the verifier: they may take any register.)
"""
from __future__ import annotations

from llvmlite import ir

from .elementwise import lanes_of, scalar_of
from .llvm_builtins import I1
from .vc_intrinsics import byte_size

CONVERSION_BYTES = 16384     # the most bytes a conversion's operand or result may have


def piece_lanes(src: ir.Type, dst: ir.Type) -> int:
    """Elements per piece: the most, a power of two, whose operand and result both fit."""
    widest = max(byte_size(scalar_of(src)), byte_size(scalar_of(dst)))
    return 1 << (CONVERSION_BYTES // widest).bit_length() - 1


class VCBuilder(ir.IRBuilder):
    """``lowering`` supplies ``piece`` and ``concat`` (``vc_regions.VCRegionLowering``)."""

    def __init__(self, block, lowering):
        super().__init__(block)
        self.lowering = lowering
        self._zext_sources = {}      # a zext done in pieces -> what it extended

    def zext(self, value, typ, name=""):
        result = self._in_pieces(ir.IRBuilder.zext, value, typ, name)
        if lanes_of(typ) > piece_lanes(value.type, typ):
            self._zext_sources[result] = value
        return result

    def sext(self, value, typ, name=""):
        return self._in_pieces(ir.IRBuilder.sext, value, typ, name)

    def trunc(self, value, typ, name=""):
        # trunc(zext(x)) is x; IGC folds it, but not through the regions that join pieces
        # (a bf16 register loaded and stored, or fed to a dpas: ew.to_memory)
        source = self._zext_sources.get(value)
        if source is not None and source.type == typ:
            return source
        return self._in_pieces(ir.IRBuilder.trunc, value, typ, name)

    def fpext(self, value, typ, name=""):
        return self._in_pieces(ir.IRBuilder.fpext, value, typ, name)

    def fptrunc(self, value, typ, name=""):
        return self._in_pieces(ir.IRBuilder.fptrunc, value, typ, name)

    def fptosi(self, value, typ, name=""):
        return self._in_pieces(ir.IRBuilder.fptosi, value, typ, name)

    def fptoui(self, value, typ, name=""):
        return self._in_pieces(ir.IRBuilder.fptoui, value, typ, name)

    def sitofp(self, value, typ, name=""):
        return self._in_pieces(ir.IRBuilder.sitofp, value, typ, name)

    def uitofp(self, value, typ, name=""):
        return self._in_pieces(ir.IRBuilder.uitofp, value, typ, name)

    def _in_pieces(self, convert, value, typ, name):
        n = lanes_of(typ)
        per = piece_lanes(value.type, typ)
        if n <= per:
            return convert(self, value, typ, name)
        elem, pieces = scalar_of(typ), []
        for pos in range(0, n, per):
            count = min(per, n - pos)
            part_type = ir.VectorType(elem, count) if count > 1 else elem
            pieces.append((convert(self, self._slice(value, pos, count), part_type, name), count))
        return self.lowering.concat(pieces, elem)

    def _slice(self, v, pos, count):
        """Elements pos..pos+count-1; predicates by a shuffle (their regions would widen the
        whole register to bytes, itself a conversion)."""
        if scalar_of(v.type) != I1:
            return self.lowering.piece(v, pos, count)
        return self.shuffle_vector(v, ir.Constant(v.type, ir.Undefined),
                                   ir.Constant(ir.VectorType(ir.IntType(32), count), list(range(pos, pos + count))))
