"""cmlang IR -> LLVM IR for the vector-compute target ``spirv-vc`` (Intel's vISA path).

Here a CM thread is ONE work-item, as in real C-for-Metal: a register ``vector<T, N>`` /
``matrix<T, R, C>`` is one LLVM vector ``<N x T>`` (matrices flattened row-major; a
1-element register is a plain scalar, since SPIR-V has no 1-component vectors), and the
operations the vISA backend knows are ``llvm.genx.*`` intrinsics (names and signatures:
intel/vc-intrinsics, ``Intrinsic_definitions.py``). ``vc_translate`` turns the module into
SPIR-V with the Khronos translator. Launch ABI and the reasons behind the choices below:
docs/design.md, section "spirv-vc target".

====================================  ==========================================================
op                                    lowering
====================================  ==========================================================
element-wise add sub mul div rem ...  LLVM vector instructions (``fadd <N x float>``, ``icmp``,
and or xor shl shr neg not cmp        ``select``, ``sitofp``...); integer div/rem guard x/0
select convert                        float->int with sat: ``llvm.genx.fpto[su]i.sat``
min max abs                           ``llvm.genx.{f,s,u}{min,max}``, ``llvm.genx.abs{f,i}``
exp exp2 log log2 sin cos pow         ``llvm.genx.exp/log/sin/cos/pow`` (native precision; exp and
                                      log scale by log2(e) / ln 2, in f32 for f16); tanh from
                                      ``genx.exp`` (an odd polynomial for |x| < 1/8); f64:
                                      CompileError
sqrt rsqrt inv floor ceil             OpenCL ``sqrt`` for f32, else ``llvm.genx.(ieee.)sqrt``
                                      (+ ``fdiv``), ``fdiv``,
                                      ``llvm.genx.rndd`` / ``llvm.genx.rndu``
fma (float)                           OpenCL ``fma`` (OpExtInst) on pieces of <= 16 elements
const splat build                     vector constants, insertelement + shufflevector splat
rdregion / wrregion                   ``llvm.genx.rdregion{i,f}`` / ``llvm.genx.wrregion{i,f}``, 1:1
                                      (byte offsets; dynamic offset = i16 operand)
extract / insert                      ``extractelement`` / ``insertelement``
iselect                               shufflevector (constant indices) or ``rdregion`` with a
                                      vector of i16 byte offsets (one row per element)
reduce                                tree of ``rdregion`` halves; bool any/all:
                                      ``llvm.genx.any`` / ``llvm.genx.all``
dpas (f16/bf16, shapes fit)           ``llvm.genx.dpas2`` per 8x16x16 tile (B packed to VNNI with
                                      wrregion); otherwise broadcast-FMA in f32
bitcast (format)                      ``bitcast`` through an integer vector of the element width
load / store (global)                 ``llvm.genx.svm.block.ld.unaligned`` / ``svm.block.st`` on
                                      16..128-byte pieces where aligned, ``svm.gather`` /
                                      ``svm.scatter`` (8/16 lanes, predicated) for the rest
load2d / store2d                      one contiguous access per row
block_load2d / block_store2d          predicated svm gathers / scatters (``vc_block2d.py``)
gather / scatter (global)             ``llvm.genx.svm.gather`` / ``llvm.genx.svm.scatter``
atomic (global)                       ``llvm.genx.svm.atomic.*`` (<= 8 lanes); float add/sub: a
                                      ``svm.atomic.cmpxchg`` retry loop
slm + memory ops on it                SLM byte offsets (``VCSLMSize``); ``llvm.genx.gather.scaled``,
                                      ``scatter.scaled``, ``dword.atomic.*`` on surface 254
barrier / fence                       ``llvm.genx.fence`` (global + SLM) then ``llvm.genx.barrier``
thread_id group_id local_id           group*size+local, ``llvm.genx.group.id.{x,y,z}``,
local_size group_count                ``llvm.genx.local.id/local.size/group.count.v3i32``
for / if / while                      branches and phis (scalar control flow of one thread)
print                                 CompileError: not supported on spirv-vc yet
====================================  ==========================================================
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from llvmlite import ir

from cmlang.errors import CompileError
from cmlang.ir.core import Function, Value
from cmlang.passes import induction_loops, known_multiple
from cmlang.types import PtrType, ScalarType, VectorType, f32, i32
from .llvm_builtins import (I1, I8, I16, I32, I64, FLOAT, VOID, GLOBAL,
                            value_type, memory_type, mangle_code, mangled)
from .control_flow import StructuredControlFlow
from .vc_block2d import VCBlock2DLowering
from .scalar_ops import identity_value, round_bf16_host

TRIPLE = "spir64-unknown-unknown"
DATA_LAYOUT = "e-i64:64-v16:16-v24:32-v32:32-v48:64-v96:128-v192:256-v256:256-v512:512-v1024:1024-n8:16:32:64"
SLM_SURFACE = 254                 # the binding-table index of shared local memory (CM, ESIMD)
FENCE_GLOBAL_AND_SLM = 0x21       # CM_GLOBAL_COHERENT_FENCE | CM_LOCAL_BARRIER
DPAS_EXEC_SIZE = 16               # dpas N on Xe-HPC / Xe2 (DG2 would be 8)
DPAS_DEPTH = 8                    # systolic depth: 8 dwords of K per row
DPAS_PRECISION = {"f16": 10, "bf16": 9}     # vISA precision codes (HF16, BF16)
BUFFER_ALIGN = 64                 # assumed alignment of every buffer base address
BLOCK_SIZES = (128, 64, 32, 16)   # bytes an SVM block message may move
OPENCL_WIDTHS = (16, 8, 4, 2, 1)  # vector widths the VC builtin library implements
LOG2E, LN2 = 1.4426950408889634, 0.6931471805599453


def lower_function(fn: Function, profile=None) -> str:
    """The LLVM IR text of ``fn`` as a vector-compute kernel (unoptimized) for a device
    profile (``cmlang.runtime.profiles``; default: the CPU runtime's)."""
    return VCLowering(fn, profile).run()


# --- LLVM types -------------------------------------------------------------------------

def reg_type(elem: ScalarType, n: int) -> ir.Type:
    """A register of n elements in registers: a vector, or the scalar when n == 1."""
    t = value_type(elem)
    return ir.VectorType(t, n) if n > 1 else t


def size_of(t) -> int:
    return t.size if isinstance(t, VectorType) else 1


def lanes_of(ty: ir.Type) -> int:
    return ty.count if isinstance(ty, ir.VectorType) else 1


def scalar_of(ty: ir.Type) -> ir.Type:
    return ty.element if isinstance(ty, ir.VectorType) else ty


def is_float_ty(ty: ir.Type) -> bool:
    return isinstance(scalar_of(ty), (ir.HalfType, ir.FloatType, ir.DoubleType))


def byte_size(ty: ir.Type) -> int:
    s = scalar_of(ty)
    if isinstance(s, ir.IntType):
        return max(1, s.width // 8)
    return {"half": 2, "float": 4, "double": 8}[str(s)]


def type_suffix(ty: ir.Type) -> str:
    """The overload suffix of an intrinsic name: v16f32, i16, v8i1 ..."""
    if isinstance(ty, ir.VectorType):
        return f"v{ty.count}{type_suffix(ty.element)}"
    if isinstance(ty, ir.IntType):
        return f"i{ty.width}"
    return {"half": "f16", "float": "f32", "double": "f64"}[str(ty)]


def const(ty: ir.Type, value):
    """A constant of ``ty``; a vector type gets ``value`` in every element."""
    if isinstance(ty, ir.VectorType):
        return ir.Constant(ty, [const(ty.element, value)] * ty.count)
    if isinstance(ty, ir.IntType):
        bits = ty.width
        v = int(value) & ((1 << bits) - 1)
        return ir.Constant(ty, v - (1 << bits) if bits > 1 and v >= 1 << (bits - 1) else v)
    return ir.Constant(ty, float(value))


def undef(ty: ir.Type):
    return ir.Constant(ty, ir.Undefined)


@dataclass
class Pointer:
    """A lowered pointer: global memory is an i64 SVM address, SLM a constant byte offset."""
    space: str
    base: object          # ir.Value (i64) for global, int for local
    elem: ScalarType


# --- llvm.genx.* declarations -------------------------------------------------------------

class Genx:
    """Declares ``llvm.genx.*`` intrinsics on first use; the name carries the overloads."""

    def __init__(self, module: ir.Module):
        self.module = module
        self.functions = {}

    def __call__(self, b, name, ret, args, overloads=()):
        full = "llvm.genx." + name + "".join("." + type_suffix(t) for t in overloads)
        fn = self.functions.get(full)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, [a.type for a in args]), full)
            self.functions[full] = fn
        return b.call(fn, list(args))

    def opencl(self, b, name, ret, args):
        """An OpenCL builtin by its mangled name (the translator turns it into OpExtInst)."""
        codes = [self._code(a.type) for a in args]
        if len(set(codes)) == 1 and len(codes) > 1 and isinstance(args[0].type, ir.VectorType):
            codes = [codes[0]] + ["S_"] * (len(codes) - 1)
        full = mangled(name, *codes)
        fn = self.functions.get(full)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, [a.type for a in args]), full)
            fn.calling_convention = "spir_func"
            self.functions[full] = fn
        return b.call(fn, list(args), cconv="spir_func")

    @staticmethod
    def _code(ty):
        if isinstance(ty, ir.VectorType):
            return f"Dv{ty.count}_{mangle_code(ty.element)}"
        return mangle_code(ty)


# --- the lowering -------------------------------------------------------------------------

class VCLowering(VCBlock2DLowering, StructuredControlFlow):
    def __init__(self, fn: Function, profile=None):
        from cmlang.runtime.profiles import get_profile, DEFAULT_PROFILE
        self.fn = fn
        self.profile = get_profile(profile or DEFAULT_PROFILE)
        self.module = ir.Module(name=fn.name)
        self.module.triple = TRIPLE
        self.module.data_layout = DATA_LAYOUT
        self.genx = Genx(self.module)
        self.values = {}
        self.slm_bytes = 0
        self._ids = {}
        self.iv_loops = induction_loops(fn)

    # ------------------------------------------------------------------ kernel skeleton
    def run(self) -> str:
        fn = self.fn
        kernel = ir.Function(self.module, ir.FunctionType(VOID, [self._param_type(p.type) for p in fn.params]),
                             fn.name)
        kernel.calling_convention = "spir_kernel"
        # SIMD1: one work-item per hardware thread (IGC's reader turns this into "oclrt"="1").
        kernel.set_metadata("intel_reqd_sub_group_size", self.module.add_metadata([ir.Constant(I32, 1)]))
        self.kernel = kernel
        entry = kernel.append_basic_block("entry")
        body = kernel.append_basic_block("body")
        self.prologue = ir.IRBuilder(entry)
        jump = self.prologue.branch(body)
        self.prologue.position_before(jump)
        for name, param, arg in zip(fn.param_names, fn.params, kernel.args):
            arg.name = name
            self.values[param] = self._param_value(param.type, arg)
        self.b = ir.IRBuilder(body)
        self.lower_kernel_body()
        # The OpenCL version tells the translator to read OpenCL builtins (fma) as OpExtInst.
        self.module.add_named_metadata("opencl.ocl.version", [ir.Constant(I32, 2), ir.Constant(I32, 0)])
        return self._with_kernel_attributes(str(self.module))

    def _with_kernel_attributes(self, text: str) -> str:
        """llvmlite cannot spell string attributes: add the VC kernel attribute group by hand."""
        attrs = f'"CMGenxMain" "VCFunction" "VCSLMSize"="{self.slm_bytes}" "oclrt"="1"'
        head = f'define spir_kernel void @"{self.fn.name}"('
        start = text.index(head)
        marker = text.index(") !intel_reqd_sub_group_size", start)
        text = text[:marker] + ") #0" + text[marker + 1:]
        return text + f"\nattributes #0 = {{ {attrs} }}\n"

    def _param_type(self, t):
        if isinstance(t, PtrType):
            if t.space != "global":
                raise CompileError(f"kernel parameter of type {t} is not supported")
            return ir.PointerType(addrspace=GLOBAL)
        if isinstance(t, ScalarType):
            return memory_type(t)
        raise CompileError(f"kernel parameter of type {t} is not supported")

    def _param_value(self, t, arg):
        pb = self.prologue
        if isinstance(t, PtrType):
            return Pointer("global", pb.ptrtoint(arg, I64), t.elem)
        return self.from_memory(pb, t, arg)

    # ------------------------------------------------------------------ blocks and ops
    # lower_kernel_body / lower_block / lower_op / operands: control_flow.StructuredControlFlow.
    def _unsupported_op_message(self, op) -> str:
        return f"op {op.opcode} is not supported on spirv-vc yet"

    def unsupported(self, what):
        raise CompileError(f"{what} is not supported on spirv-vc yet")

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
            return b.icmp_unsigned("!=", wide, const(wide.type, 0))
        if lanes_of(src.type) == 1:
            return self.splat(src, n_out)
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
            return b.icmp_unsigned("!=", wide, const(wide.type, 0))
        off = self._byte_offset(elem, offset, dyn)
        name = "wrregionf" if is_float_ty(elem) else "wrregioni"
        return self.genx(b, name, dst.type, [dst, src, ir.Constant(I32, vstride), ir.Constant(I32, width),
                                             ir.Constant(I32, stride), off, undef(I32), ir.Constant(I1, 1)],
                         [dst.type, src.type, off.type, I1])

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
        width = scalar_of(v.type).width
        target = ir.VectorType(ty, lanes_of(v.type)) if isinstance(v.type, ir.VectorType) else ty
        if width < ty.width:
            return self.b.sext(v, target) if src_t.is_signed else self.b.zext(v, target)
        return self.b.trunc(v, target) if width > ty.width else v

    # ------------------------------------------------------------------ memory representation
    def from_memory(self, b, elem: ScalarType, v):
        if elem.is_bool:
            return b.icmp_unsigned("!=", v, const(v.type, 0))
        if elem.name == "bf16":
            n = lanes_of(v.type)
            wide = b.zext(v, ir.VectorType(I32, n) if n > 1 else I32)
            return b.bitcast(b.shl(wide, const(wide.type, 16)), reg_type(elem, n))
        return v

    def to_memory(self, elem: ScalarType, v):
        b = self.b
        n = lanes_of(v.type)
        if elem.is_bool:
            return b.zext(v, ir.VectorType(I8, n) if n > 1 else I8)
        if elem.name == "bf16":
            bits = b.bitcast(v, ir.VectorType(I32, n) if n > 1 else I32)
            return b.trunc(b.lshr(bits, const(bits.type, 16)), ir.VectorType(I16, n) if n > 1 else I16)
        return v

    def round_bf16(self, x):
        """Round f32 values to the nearest bf16 (ties to even), keeping NaNs NaN."""
        b = self.b
        ity = ir.VectorType(I32, lanes_of(x.type)) if isinstance(x.type, ir.VectorType) else I32
        bits = b.bitcast(x, ity)
        lsb = b.and_(b.lshr(bits, const(ity, 16)), const(ity, 1))
        rounded = b.add(b.add(bits, const(ity, 0x7FFF)), lsb)
        quiet = b.or_(bits, const(ity, 0x00400000))
        is_nan = b.fcmp_unordered("uno", x, x)
        out = b.and_(b.select(is_nan, quiet, rounded), const(ity, 0xFFFF0000))
        return b.bitcast(out, x.type)

    def finish(self, elem: ScalarType, v):
        return self.round_bf16(v) if elem.name == "bf16" else v

    # ------------------------------------------------------------------ construction
    def op_const(self, op):
        t = op.result.type
        value = op.attrs["value"]
        values = list(value) if isinstance(value, (tuple, list)) else [value] * size_of(t)
        if len(values) != size_of(t):
            raise CompileError(f"constant has {len(values)} values for {t}")
        elem = t.elem
        ty = value_type(elem)
        items = [const(ty, round_bf16_host(float(v)) if elem.name == "bf16" else
                       (bool(v) if elem.is_bool else v)) for v in values]
        return items[0] if len(items) == 1 else ir.Constant(ir.VectorType(ty, len(items)), items)

    def op_splat(self, op):
        return self.splat(self.get(op.operands[0]), size_of(op.result.type))

    def op_build(self, op):
        scalars = self.operands(op)
        if len(scalars) == 1:
            return scalars[0]
        v = undef(ir.VectorType(scalars[0].type, len(scalars)))
        for i, s in enumerate(scalars):
            v = self.b.insert_element(v, s, ir.Constant(I32, i))
        return v

    # ------------------------------------------------------------------ element-wise
    def op_binary(self, op):
        elem = op.result.type.elem
        x, y = self.operands(op)
        if elem.is_bool:
            return self._bool_binary(op.opcode, x, y)
        if elem.is_float:
            return self.finish(elem, self._float_binary(op.opcode, elem, x, y))
        return self._int_binary(op.opcode, elem, x, y)

    def _bool_binary(self, opcode, x, y):
        b = self.b
        ops = {"and": b.and_, "or": b.or_, "xor": b.xor, "min": b.and_, "max": b.or_}
        if opcode not in ops:
            raise CompileError(f"'{opcode}' is not defined on bool values")
        return ops[opcode](x, y)

    def _float_binary(self, opcode, elem, x, y):
        b = self.b
        simple = {"add": b.fadd, "sub": b.fsub, "mul": b.fmul, "div": b.fdiv, "rem": b.frem}
        if opcode in simple:
            return simple[opcode](x, y)
        if opcode in ("min", "max"):       # hardware min/max return the non-NaN operand
            return self.genx(b, "f" + opcode, x.type, [x, y], [x.type, x.type])
        if opcode == "pow":
            self._native_math_ok(elem, "pow")
            return self.genx(b, "pow", x.type, [x, y], [x.type])
        raise CompileError(f"'{opcode}' is not defined on floating-point values")

    def _int_binary(self, opcode, elem, x, y):
        b = self.b
        if opcode in ("div", "rem"):
            return self._int_divide(opcode, elem.is_signed, x, y)
        simple = {"add": b.add, "sub": b.sub, "mul": b.mul, "and": b.and_, "or": b.or_, "xor": b.xor}
        if opcode in simple:
            return simple[opcode](x, y)
        if opcode in ("min", "max"):
            name = ("s" if elem.is_signed else "u") + opcode
            return self.genx(b, name, x.type, [x, y], [x.type, x.type])
        if opcode in ("shl", "shr"):
            count = b.and_(y, const(y.type, elem.bits - 1))
            if opcode == "shl":
                return b.shl(x, count)
            return b.ashr(x, count) if elem.is_signed else b.lshr(x, count)
        raise CompileError(f"'{opcode}' is not defined on integer values")

    def _int_divide(self, opcode, signed, x, y):
        """C division; x / 0 and INT_MIN / -1 are undefined: divide by 1 instead (no trap)."""
        b = self.b
        zero, one = const(y.type, 0), const(y.type, 1)
        safe = b.select(b.icmp_unsigned("==", y, zero), one, y)
        if not signed:
            return (b.udiv if opcode == "div" else b.urem)(x, safe)
        minus_one = b.icmp_signed("==", y, const(y.type, -1))
        safe = b.select(minus_one, one, safe)
        if opcode == "div":
            return b.select(minus_one, b.sub(zero, x), b.sdiv(x, safe))
        return b.select(minus_one, zero, b.srem(x, safe))

    def op_unary(self, op):
        elem = op.result.type.elem
        (x,) = self.operands(op)
        b = self.b
        code = op.opcode
        if code == "not":
            if elem.is_float:
                raise CompileError("'not' is not defined on floating-point values")
            return b.xor(x, const(x.type, 1 if elem.is_bool else -1))
        if elem.is_bool:
            raise CompileError(f"'{code}' is not defined on bool values")
        if not elem.is_float:
            if code == "neg":
                return b.sub(const(x.type, 0), x)
            if code == "abs":
                return self.genx(b, "absi", x.type, [x], [x.type]) if elem.is_signed else x
            raise CompileError(f"'{code}' is not defined on integer values")
        if code == "neg":
            return b.fneg(x)
        if code == "abs":
            return self.genx(b, "absf", x.type, [x], [x.type])
        return self.finish(elem, self._float_math(code, elem, x))

    def _float_math(self, code, elem, x):
        b, g = self.b, self.genx
        ty = x.type
        if code == "inv":
            return b.fdiv(const(ty, 1.0), x)
        if code in ("sqrt", "rsqrt"):
            if elem.name == "f32":
                # OpenCL sqrt from IGC's VC library: IEEE where the device has the macro
                # (PVC), native elsewhere. llvm.genx.ieee.sqrt on f32 makes IGC 1.0.12504
                # fail for DG2/TGL ("VISA builder API call failed").
                root = self.opencl_pieces("sqrt", [x])
            else:
                root = g(b, "sqrt" if elem.name == "f16" else "ieee.sqrt", ty, [x], [ty])
            return root if code == "sqrt" else b.fdiv(const(ty, 1.0), root)
        if code in ("floor", "ceil"):
            return g(b, "rndd" if code == "floor" else "rndu", ty, [x], [ty])
        self._native_math_ok(elem, code)
        if elem.name == "f16" and code in ("exp", "log", "tanh"):
            # these scale by log2(e) / ln 2 around the native exp2/log2: in half precision the
            # rounded x * log2(e) carries |x| half-ulps into the result (exp(-9): 6 ulp off)
            wide = ir.VectorType(FLOAT, ty.count) if isinstance(ty, ir.VectorType) else FLOAT
            return b.fptrunc(self._float_math(code, f32, b.fpext(x, wide)), ty)
        if code == "exp":
            return g(b, "exp", ty, [b.fmul(x, const(ty, LOG2E))], [ty])
        if code == "exp2":
            return g(b, "exp", ty, [x], [ty])
        if code == "log":
            return b.fmul(g(b, "log", ty, [x], [ty]), const(ty, LN2))
        if code == "log2":
            return g(b, "log", ty, [x], [ty])
        if code in ("sin", "cos"):
            return g(b, code, ty, [x], [ty])
        if code == "tanh":
            return self._tanh(x)
        raise CompileError(f"'{code}' is not defined on floating-point values")

    def _native_math_ok(self, elem, code):
        if elem.name == "f64":
            self.unsupported(f"op {code} on f64")

    def _tanh(self, x):
        """tanh(x) = sign(x) (1 - e) / (1 + e) with e = exp(-2|x|); an odd polynomial near 0,
        where 1 - e would cancel."""
        b, ty = self.b, x.type
        ax = self.genx(b, "absf", ty, [x], [ty])
        e = self.genx(b, "exp", ty, [b.fmul(ax, const(ty, -2 * LOG2E))], [ty])
        t = b.fdiv(b.fsub(const(ty, 1.0), e), b.fadd(const(ty, 1.0), e))
        signed = b.select(b.fcmp_ordered("<", x, const(ty, 0.0)), b.fneg(t), t)
        x2 = b.fmul(x, x)
        poly = const(ty, -17 / 315)
        for c in (2 / 15, -1 / 3, 1.0):        # x (1 - x^2/3 + 2x^4/15 - 17x^6/315)
            poly = b.fadd(b.fmul(poly, x2), const(ty, c))
        return b.select(b.fcmp_ordered("<", ax, const(ty, 0.125)), b.fmul(x, poly), signed)

    def op_fma(self, op):
        elem = op.result.type.elem
        x, y, z = self.operands(op)
        if elem.is_bool:
            raise CompileError("'fma' is not defined on bool values")
        if not elem.is_float:
            return self.b.add(self.b.mul(x, y), z)
        return self.finish(elem, self.opencl_pieces("fma", [x, y, z]))

    def opencl_pieces(self, name, args):
        """An OpenCL builtin applied to vectors of any width, in pieces the VC library has."""
        n = lanes_of(args[0].type)
        if n in OPENCL_WIDTHS:
            return self.genx.opencl(self.b, name, args[0].type, args)
        pieces, pos = [], 0
        while pos < n:
            w = next(w for w in OPENCL_WIDTHS if w <= n - pos)
            part = [self.piece(a, pos, w) for a in args]
            pieces.append((self.genx.opencl(self.b, name, part[0].type, part), w))
            pos += w
        return self.concat(pieces, scalar_of(args[0].type))

    _CMP = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}

    def op_cmp(self, op):
        elem = op.operands[0].type.elem
        x, y = self.operands(op)
        pred = self._CMP[op.attrs["pred"]]
        b = self.b
        if elem.is_float:
            return b.fcmp_unordered(pred, x, y) if pred == "!=" else b.fcmp_ordered(pred, x, y)
        return (b.icmp_signed if elem.is_signed else b.icmp_unsigned)(pred, x, y)

    def op_select(self, op):
        m, x, y = self.operands(op)
        # SPIR-V 1.0 wants a condition vector as wide as the values: splat a scalar mask.
        return self.b.select(self.broadcast_like(m, x.type), x, y)

    # ------------------------------------------------------------------ conversions
    _FLOAT_MAX = {"f16": 65504.0, "bf16": 3.3895313892515355e38, "f32": 3.4028234663852886e38}

    def op_convert(self, op):
        src, dst = op.operands[0].type.elem, op.result.type.elem
        (x,) = self.operands(op)
        return self.convert(x, src, dst, bool(op.attrs.get("sat", False)))

    def convert(self, x, src: ScalarType, dst: ScalarType, sat=False):
        b = self.b
        if src == dst:
            return x
        n = lanes_of(x.type)
        dty = reg_type(dst, n)
        if dst.is_bool:
            zero = const(x.type, 0)
            return b.fcmp_unordered("!=", x, zero) if src.is_float else b.icmp_unsigned("!=", x, zero)
        if src.is_bool:
            return b.uitofp(x, dty) if dst.is_float else b.zext(x, dty)
        if src.is_int and dst.is_int:
            return self._int_to_int(x, src, dst, sat)
        if src.is_float and dst.is_int:
            return self._float_to_int(x, dst, sat)
        if src.is_int:
            v = b.sitofp(x, dty) if src.is_signed else b.uitofp(x, dty)
        else:
            v = self._float_resize(x, dty)
        if sat and dst.name in self._FLOAT_MAX:
            v = self._clamp_float(v, self._FLOAT_MAX[dst.name])
        return self.finish(dst, v)

    def _float_resize(self, x, ty):
        width = {"half": 16, "float": 32, "double": 64}
        a, c = width[str(scalar_of(x.type))], width[str(scalar_of(ty))]
        return x if a == c else (self.b.fpext(x, ty) if c > a else self.b.fptrunc(x, ty))

    def _clamp_float(self, v, limit):
        b, ty = self.b, v.type
        is_nan = b.fcmp_unordered("uno", v, v)     # before clamping: fmin/fmax ignore a NaN
        v = self.genx(b, "fmin", ty, [v, const(ty, limit)], [ty, ty])
        v = self.genx(b, "fmax", ty, [v, const(ty, -limit)], [ty, ty])
        return b.select(is_nan, const(ty, 0.0), v)

    def _int_to_int(self, x, src, dst, sat):
        b = self.b
        if sat:
            lo_s, hi_s = _int_range(src)
            lo_d, hi_d = _int_range(dst)
            cmp = b.icmp_signed if src.is_signed else b.icmp_unsigned
            if hi_d < hi_s:
                hi = const(x.type, hi_d)
                x = b.select(cmp(">", x, hi), hi, x)
            if lo_d > lo_s:
                lo = const(x.type, lo_d)
                x = b.select(cmp("<", x, lo), lo, x)
        return self.int_to(x, src, value_type(dst))

    def _float_to_int(self, x, dst, sat):
        b = self.b
        dty = reg_type(dst, lanes_of(x.type))
        if sat:      # hardware saturation: clamps to the range, NaN -> 0
            name = "fptosi.sat" if dst.is_signed else "fptoui.sat"
            return self.genx(b, name, dty, [x], [dty, x.type])
        if dst.bits < 32:      # through i32, so out-of-range values wrap like int -> int
            wide = b.fptosi(x, reg_type(i32, lanes_of(x.type)))
            return b.trunc(wide, dty)
        return b.fptosi(x, dty) if dst.is_signed else b.fptoui(x, dty)

    def op_bitcast(self, op):
        src_t, dst_t = op.operands[0].type, op.result.type
        if src_t.elem.is_bool or dst_t.elem.is_bool:
            self.unsupported("bitcast of bool registers")
        b = self.b
        x = self.get(op.operands[0])
        bits = self._to_bits(src_t.elem, x)
        n_dst = size_of(dst_t)
        ity = ir.IntType(dst_t.elem.bits)
        raw = b.bitcast(bits, ir.VectorType(ity, n_dst) if n_dst > 1 else ity)
        return self._from_bits(dst_t.elem, raw)

    def _to_bits(self, elem, x):
        if elem.name == "bf16":
            return self.to_memory(elem, x)
        if elem.is_float:
            n = lanes_of(x.type)
            ity = ir.IntType(elem.bits)
            return self.b.bitcast(x, ir.VectorType(ity, n) if n > 1 else ity)
        return x

    def _from_bits(self, elem, bits):
        if elem.name == "bf16":
            return self.from_memory(self.b, elem, bits)
        if elem.is_float:
            return self.b.bitcast(bits, reg_type(elem, lanes_of(bits.type)))
        return bits

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
            return b.icmp_unsigned("!=", wide, const(wide.type, 0))
        offsets = b.trunc(b.mul(idx, const(idx.type, byte_size(elem))), ir.VectorType(I16, m))
        ret = ir.VectorType(elem, m)
        name = "rdregionf" if is_float_ty(elem) else "rdregioni"
        return self.genx(b, name, ret, [src, ir.Constant(I32, 0), ir.Constant(I32, 1), ir.Constant(I32, 0),
                                        offsets, undef(I32)], [ret, src.type, offsets.type])

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
        identity = _identity(kind, elem)
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
        ident = const(I8, 0 if kind == "or" else 1)
        r = (self._reduce_rows if axis == 0 else self._reduce_columns)(wide, rows, cols, combine, ident)
        return b.icmp_unsigned("!=", r, const(r.type, 0))

    def _combiner(self, kind, elem):
        b = self.b
        if kind in ("add", "mul"):
            if elem.is_float:
                fn = b.fadd if kind == "add" else b.fmul
                return lambda x, y: self.finish(elem, fn(x, y))
            return b.add if kind == "add" else b.mul
        if kind in ("and", "or"):
            if elem.is_float:
                raise CompileError(f"reduce '{kind}' is not defined on floating-point values")
            return b.and_ if kind == "and" else b.or_
        prefix = "f" if elem.is_float else ("s" if elem.is_signed else "u")
        return lambda x, y: self.genx(b, prefix + kind, x.type, [x, y], [x.type, x.type])

    def _pad(self, src, n, padded, identity):
        """src (n elements) followed by identity elements up to ``padded``."""
        if padded == n:
            return src
        base = const(ir.VectorType(identity.type, padded), identity.constant)
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
            base = const(ir.VectorType(identity.type, rows * p), identity.constant)
            v = self.wrregion(base, src, p, cols, 1, 0)
        while p > 1:
            h = p // 2
            left = self.rdregion(v, rows * h, p, h, 1, 0)
            right = self.rdregion(v, rows * h, p, h, 1, h)
            v = combine(left, right)
            p = h
        return v

    # ------------------------------------------------------------------ dpas
    def op_dpas(self, op):
        acc_t, a_t, b_t = (v.type for v in op.operands)
        acc, a, bm = self.operands(op)
        (m, k), n = a_t.shape, b_t.shape[1]
        elem = a_t.elem
        if acc_t.elem.is_int:
            self.unsupported("cm.dpas with i8/u8 inputs")
        if elem.name in DPAS_PRECISION and n % DPAS_EXEC_SIZE == 0 and k % (2 * DPAS_DEPTH) == 0:
            return self._dpas_systolic(acc, a, bm, m, k, n, elem)
        return self._dpas_fma(acc, a, bm, m, k, n, elem)

    def _bits16(self, elem, v):
        """f16 / bf16 register values as their 16-bit patterns."""
        if elem.name == "bf16":
            return self.to_memory(elem, v)
        return self.b.bitcast(v, ir.VectorType(I16, lanes_of(v.type)))

    def _dpas_systolic(self, acc, a, bm, m, k, n, elem):
        """acc[m,n] += a[m,k] @ b[k,n] as llvm.genx.dpas2 tiles of (<=8) x 16 x 16.

        A rows are packed as they lie (pairs along K are adjacent); B is packed to VNNI:
        dword (kk, j) holds b[2kk, j] (low half) and b[2kk+1, j] (high half)."""
        b = self.b
        a16, b16 = self._bits16(elem, a), self._bits16(elem, bm)
        kt, nt = 2 * DPAS_DEPTH, DPAS_EXEC_SIZE
        prec = DPAS_PRECISION[elem.name]
        for m0 in range(0, m, 8):
            rc = min(8, m - m0)
            for n0 in range(0, n, nt):
                tile = self.rdregion(acc, rc * nt, n, nt, 1, m0 * n + n0)
                for k0 in range(0, k, kt):
                    a_tile = b.bitcast(self.rdregion(a16, rc * kt, k, kt, 1, m0 * k + k0),
                                       ir.VectorType(I32, rc * DPAS_DEPTH))
                    b_tile = self._vnni(b16, k0, n0, n)
                    args = [tile, b_tile, a_tile] + [ir.Constant(I32, v) for v in
                                                     (prec, prec, DPAS_DEPTH, rc, 1, 1)]
                    tile = self.genx(b, "dpas2", tile.type, args, [tile.type, tile.type, b_tile.type, a_tile.type])
                acc = self.wrregion(acc, tile, n, nt, 1, m0 * n + n0)
        return acc

    def _vnni(self, b16, k0, n0, n):
        nt = DPAS_EXEC_SIZE
        even = self.rdregion(b16, DPAS_DEPTH * nt, 2 * n, nt, 1, k0 * n + n0)
        odd = self.rdregion(b16, DPAS_DEPTH * nt, 2 * n, nt, 1, (k0 + 1) * n + n0)
        packed = undef(ir.VectorType(I16, 2 * DPAS_DEPTH * nt))
        packed = self.wrregion(packed, even, 2 * nt, nt, 2, 0)
        packed = self.wrregion(packed, odd, 2 * nt, nt, 2, 1)
        return self.b.bitcast(packed, ir.VectorType(I32, DPAS_DEPTH * nt))

    def _dpas_fma(self, acc, a, bm, m, k, n, elem):
        """Broadcast-FMA in f32: row i of acc += a[i, kk] * row kk of b, for every kk."""
        if elem.name != "f32":
            a, bm = (self.convert(v, elem, f32) for v in (a, bm))
        rows = []
        for i in range(m):
            row = self.rdregion(acc, n, n, n, 1, i * n)
            for kk in range(k):
                scale = self.rdregion(a, n, 0, n, 0, i * k + kk)       # a[i, kk] in every element
                brow = self.rdregion(bm, n, n, n, 1, kk * n)
                row = self.opencl_pieces("fma", [scale, brow, row])
            rows.append((row, n))
        return self.concat(rows, FLOAT)

    # ------------------------------------------------------------------ ids
    def op_id(self, op):
        return self._id(op.opcode, op.attrs["dim"])

    def _id(self, kind, d):
        """Ids are read once, in the entry block (uniform and loop-invariant)."""
        if (kind, d) not in self._ids:
            self._ids[(kind, d)] = self._query(kind, d)
        return self._ids[(kind, d)]

    def _query(self, kind, d):
        pb, g = self.prologue, self.genx
        if kind == "group_id":
            return g(pb, "group.id." + "xyz"[d], I32, [])
        if kind == "thread_id":     # CM: group id * group size + local id
            return pb.add(pb.mul(self._id("group_id", d), self._id("local_size", d)), self._id("local_id", d))
        name = {"local_id": "local.id", "local_size": "local.size", "group_count": "group.count"}[kind]
        v3 = ir.VectorType(I32, 3)
        return pb.extract_element(g(pb, name, v3, [], [v3]), ir.Constant(I32, d))

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
        return self.from_memory(self.b, ptr.elem, raw)

    def op_store(self, op):
        ptr = self.get(op.operands[0])
        v = self.to_memory(ptr.elem, self.get(op.operands[2]))
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
        return self.from_memory(self.b, ptr.elem, self.concat(pieces, memory_type(ptr.elem)))

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
        m = self.to_memory(ptr.elem, self.get(op.operands[3]))
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
        return self.from_memory(self.b, ptr.elem, raw)

    def op_scatter(self, op):
        """Where two elements hit one address the later message wins; within one message the
        data port is assumed to write lanes in order (higher lane wins), as the interpreter does."""
        ptr = self.get(op.operands[0])
        offs = op.operands[1]
        n = size_of(offs.type)
        v = self.to_memory(ptr.elem, self.broadcast_like(self.get(op.operands[2]), reg_type(ptr.elem, n)))
        mask = self.get(op.operands[3]) if len(op.operands) > 3 else None
        if ptr.space == "local":
            self._slm_scatter(ptr, self._slm_offsets(ptr, offs), v, n, mask)
        else:
            self._svm_scatter(self._svm_addresses(ptr, offs), v, n, mask)

    def _svm_addresses(self, ptr, offs: Value):
        n = size_of(offs.type)
        idx = self.int_to(self.get(offs), offs.type.elem, I64)
        es = byte_size(memory_type(ptr.elem))
        return self.b.add(self.splat(ptr.base, n), self.b.mul(idx, const(idx.type, es)))

    def _slm_offsets(self, ptr, offs: Value):
        idx = self.int_to(self.get(offs), offs.type.elem, I32)
        es = byte_size(memory_type(ptr.elem))
        return self.b.add(self.b.mul(idx, const(idx.type, es)), const(idx.type, ptr.base))

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
            return b.icmp_unsigned("!=", self._lanes(wide, 0, count, lanes), const(ir.VectorType(I8, lanes), 0))
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
            return self.genx(b, "svm.gather", ty, [pred, ir.Constant(I32, 0), addrs, const(ty, 0)],
                             [ty, pred.type, addrs.type])
        # 1- and 2-byte elements come back one per dword (IGC's own lowering does the same).
        ty = ir.VectorType(I8, 4 * lanes)
        raw = self.genx(b, "svm.gather", ty, [pred, ir.Constant(I32, es // 2), addrs, const(ty, 0)],
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
                              const(dwords, 0)], [dwords, pred.type, offs.type])

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
        v2 = self.broadcast_like(self.get(op.operands[3]), ty) if len(op.operands) > 3 else None
        if ptr.space == "local":
            if elem.bits != 32:
                self.unsupported("64-bit atomics on shared local memory")
            where = self._slm_offsets(ptr, offs_value)
        else:
            where = self._svm_addresses(ptr, offs_value)
        widths = (16, 8) if ptr.space == "local" else (8, 4, 2)
        pieces = []
        for start, count, lanes in self._chunks(n, widths):
            pred = self._predicate(None, start, count, lanes)
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
            args = [pred, ir.Constant(I32, SLM_SURFACE), where] + data + [undef(rty)]
            overloads = [rty, pred.type] + ([] if name == "cmpxchg" else [where.type])
            old = self.genx(b, "dword.atomic." + name, rty, args, overloads)
        else:
            old = self.genx(b, "svm.atomic." + name, rty, [pred, where] + data + [undef(rty)],
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
        still = b.and_(pending, b.xor(won, const(won.type, 1)))
        next_result = b.select(won, current, result)
        next_current = b.bitcast(seen, v.type)
        b.cbranch(self.genx(b, "any", I1, [still], [still.type]), loop, done)
        current.add_incoming(first, before)
        current.add_incoming(next_current, loop)
        pending.add_incoming(pred, before)
        pending.add_incoming(still, loop)
        result.add_incoming(undef(v.type), before)
        result.add_incoming(next_result, loop)
        b.position_at_end(done)
        return next_result

    # ------------------------------------------------------------------ control flow
    # op_for / op_while / op_if: control_flow.StructuredControlFlow, through these hooks.
    def _phi_like(self, template):
        """One phi for a vector or scalar; a global ``Pointer`` merges its i64 base, an SLM
        one (a constant byte offset) passes through unchanged."""
        if isinstance(template, Pointer):
            return Pointer(template.space, self.b.phi(I64), template.elem) if template.space == "global" \
                else template
        return self.b.phi(template.type)

    def _add_incoming_value(self, phi_value, value, block):
        if isinstance(phi_value, Pointer):
            if phi_value.space == "global":
                phi_value.base.add_incoming(value.base, block)
        else:
            phi_value.add_incoming(value, block)

    # ------------------------------------------------------------------ debug
    def op_breakpoint(self, op):
        return None

    def op_print(self, op):
        self.unsupported("op print")


# --- compile-time helpers -------------------------------------------------------------------

def _int_range(t: ScalarType):
    if t.is_signed:
        return -(1 << (t.bits - 1)), (1 << (t.bits - 1)) - 1
    return 0, (1 << t.bits) - 1


def _identity(kind: str, elem: ScalarType):
    """The neutral element of a reduction (what padding contributes): the SIMT table."""
    return const(value_type(elem), identity_value(kind, elem))


def _constant_indices(value: Value):
    """The index list of a constant index register, or None."""
    op = value.defining_op
    if op is None or op.opcode != "const":
        return None
    v = op.attrs["value"]
    n = size_of(value.type)
    values = list(v) if isinstance(v, (tuple, list)) else [v] * n
    return [int(x) for x in values]
