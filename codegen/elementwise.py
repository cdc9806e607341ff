"""Element-wise semantics: the one definition both lowerings apply.

Every function here takes an llvmlite builder and LLVM values that are either scalars (the
SIMT lowering, ``simt.py``, calls them once per slot: one value per lane) or vectors
``<N x T>`` (the vector-compute lowering, ``vc.py``, calls them once per register). LLVM
instructions are polymorphic over vectors; constants are splatted to the operand's shape
(``constant``). They know cmlang's element types (signedness, bf16 computed in f32 and
rounded back after every operation, bool as i1) and the semantics of ``cmlang.ir.ops``
(C-like integer division, shift counts taken modulo the bit width, NaN-ignoring float
min/max, CM saturation); the interpreter (``runtime/interpreter/semantics.py``) is the
reference they are tested against.

What really differs per target is a ``TargetMath`` object: which instruction computes
min/max/abs/fma/exp/sqrt/... and a saturating float->int conversion (OpenCL builtins and
LLVM intrinsics for SIMT: ``OpenCLMath`` below; ``llvm.genx.*`` for spirv-vc:
``vc.GenxMath``). It also carries the two device-profile choices made here
(``runtime/profiles.py``, ``CpuRuntimeWorkarounds``): ``guard_int_division`` and
``saturate_with_compares``.
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir

from cmlang.errors import CompileError
from cmlang.types import ScalarType
from .llvm_builtins import I1, I8, I16, I32, FLOAT, Builtins, value_type


# --- shapes and constants -------------------------------------------------------------------

def lanes_of(ty: ir.Type) -> int:
    return ty.count if isinstance(ty, ir.VectorType) else 1


def scalar_of(ty: ir.Type) -> ir.Type:
    return ty.element if isinstance(ty, ir.VectorType) else ty


def like(ty: ir.Type, elem_ty: ir.Type) -> ir.Type:
    """``elem_ty`` in the shape of ``ty``: a vector of as many elements, or the scalar."""
    return ir.VectorType(elem_ty, ty.count) if isinstance(ty, ir.VectorType) else elem_ty


def constant(ty: ir.Type, value):
    """A constant of the LLVM type ``ty``; a vector type gets ``value`` in every element.
    Integers wrap to the width (0xFFFF0000 is i32 -65536)."""
    if isinstance(ty, ir.VectorType):
        return ir.Constant(ty, [constant(ty.element, value)] * ty.count)
    if isinstance(ty, ir.IntType):
        bits = ty.width
        v = int(value) & ((1 << bits) - 1)
        return ir.Constant(ty, v - (1 << bits) if bits > 1 and v >= 1 << (bits - 1) else v)
    return ir.Constant(ty, float(value))


def const(elem: ScalarType, value):
    """A scalar LLVM constant of ``elem``'s value type (bf16 values rounded to bf16)."""
    if elem.is_bool:
        return ir.Constant(I1, int(bool(value)))
    if elem.name == "bf16":
        value = round_bf16_host(float(value))
    return constant(value_type(elem), value)


def bf16_bits_host(v: float) -> int:
    """The bf16 bit pattern nearest to a Python float (ties to even), as the device rounds."""
    with np.errstate(over="ignore"):
        bits = int(np.float32(v).view(np.uint32))
    if math.isnan(v):
        return (bits >> 16) | 0x40
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) & 0xFFFF


def round_bf16_host(v: float) -> float:
    """A Python float rounded to the nearest bf16 value."""
    return float(np.uint32(bf16_bits_host(v) << 16).view(np.float32))


def _fsuffix(ty):
    return {"half": "f16", "float": "f32", "double": "f64"}[str(scalar_of(ty))]


def _isuffix(ty):
    return f"i{scalar_of(ty).width}"


# --- what differs per target --------------------------------------------------------------

class TargetMath:
    """The instructions one target computes element-wise math with, and the device
    profile's choices for the spelling of element-wise semantics.

    ``guard_int_division``: x / 0 and INT_MIN / -1 divide by 1 instead (on a CPU they trap;
    both are undefined in cmlang). ``saturate_with_compares``: saturating float -> int is
    spelled with compares and selects rather than the target's saturating conversion; only
    where the target's code reaches the CPU runtime's vectorizer (``via_cpu_runtime``)."""

    via_cpu_runtime = False

    def __init__(self, profile):
        self.guard_int_division = profile.cpu.guard_int_division
        self.saturate_with_compares = profile.cpu.saturate_with_compares and self.via_cpu_runtime

    def float_min_max(self, b, opcode: str, x, y):
        """min/max returning the other operand where one is NaN."""
        raise NotImplementedError

    def int_min_max(self, b, opcode: str, signed: bool, x, y):
        raise NotImplementedError

    def float_abs(self, b, x):
        raise NotImplementedError

    def int_abs(self, b, x):
        """|x| of a signed integer (INT_MIN stays INT_MIN)."""
        raise NotImplementedError

    def fma(self, b, x, y, z):
        """x * y + z rounded once (float)."""
        raise NotImplementedError

    def math(self, b, opcode: str, elem: ScalarType, *args):
        """exp exp2 log log2 sqrt rsqrt sin cos tanh floor ceil (one operand), pow (two)."""
        raise NotImplementedError

    def float_to_int_sat(self, b, x, dty, signed: bool):
        """The target's saturating conversion: clamp to dty's range, NaN -> 0, toward zero."""
        raise NotImplementedError

    def round(self, b, mode: str, x):
        """Float rounding, mode in rndd rndu rnde rndz (down, up, to even, toward zero)."""
        raise NotImplementedError

    def bit_scan(self, b, opcode: str, signed: bool, x):
        """cbit fbl fbh lzd of 32-bit integers, exactly as ``cmlang.ir.ops`` says (0xFFFFFFFF
        where fbl/fbh find no bit, lzd(0) = 32)."""
        raise NotImplementedError


class OpenCLMath(TargetMath):
    """SIMT (``target="spirv"``): LLVM intrinsics the SPIR-V backend knows and OpenCL
    builtins, declared through ``llvm_builtins.Builtins``. Its code runs on the CPU runtime
    when the profile is the CPU's."""

    via_cpu_runtime = True

    def __init__(self, builtins: Builtins, profile):
        super().__init__(profile)
        self.bi = builtins

    def _intrinsic(self, b, name, *args):
        return self.bi.intrinsic(b, name, args[0].type, *args)

    def float_min_max(self, b, opcode, x, y):
        return self._intrinsic(b, f"llvm.{opcode}num.{_fsuffix(x.type)}", x, y)

    def int_min_max(self, b, opcode, signed, x, y):
        return self._intrinsic(b, f"llvm.{'s' if signed else 'u'}{opcode}.{_isuffix(x.type)}", x, y)

    def float_abs(self, b, x):
        return self._intrinsic(b, f"llvm.fabs.{_fsuffix(x.type)}", x)

    def int_abs(self, b, x):
        return self.bi.intrinsic(b, f"llvm.abs.{_isuffix(x.type)}", x.type, x, ir.Constant(I1, 0))

    def fma(self, b, x, y, z):
        return self._intrinsic(b, f"llvm.fma.{_fsuffix(x.type)}", x, y, z)

    def math(self, b, opcode, elem, *args):
        return self.bi.math(b, opcode, *args)

    def float_to_int_sat(self, b, x, dty, signed):
        name = f"llvm.fpto{'s' if signed else 'u'}i.sat.{_isuffix(dty)}.{_fsuffix(x.type)}"
        return self.bi.intrinsic(b, name, dty, x)

    _ROUNDING = {"rndd": "floor", "rndu": "ceil", "rnde": "rint", "rndz": "trunc"}

    def round(self, b, mode, x):
        return self.bi.math(b, self._ROUNDING[mode], x)

    def bit_scan(self, b, opcode, signed, x):
        """OpenCL popcount / ctz / clz (defined at 0: 32), with CM's no-bit answers selected."""
        if opcode == "cbit":
            return self.bi.math(b, "popcount", x)
        none = constant(x.type, -1)
        is_zero = b.icmp_unsigned("==", x, constant(x.type, 0))
        if opcode == "fbl":
            return b.select(is_zero, none, self.bi.math(b, "ctz", x))
        if opcode == "lzd":
            return self.bi.math(b, "clz", x)
        return fbh_from_clz(b, signed, x, lambda v: self.bi.math(b, "clz", v))


def fbh_from_clz(b, signed, x, clz):
    """CM fbh through a leading-zero count: of x (unsigned) or of x ^ (x >> 31) (signed: the
    leading bits equal to the sign bit, the sign bit included); 0xFFFFFFFF where none differs."""
    none = constant(x.type, -1)
    if not signed:
        return b.select(b.icmp_unsigned("==", x, constant(x.type, 0)), none, clz(x))
    flipped = b.xor(x, b.ashr(x, constant(x.type, 31)))
    return b.select(b.icmp_unsigned("==", flipped, constant(x.type, 0)), none, clz(flipped))


# --- bf16 and memory representations ----------------------------------------------------

def _round_mantissa(b: ir.IRBuilder, x, dropped: int):
    """f32 values rounded to the nearest value whose low ``dropped`` mantissa bits are zero
    (ties to even), keeping NaNs NaN: the interpreter's ``values._round_mantissa``."""
    ity = like(x.type, I32)
    keep = (0xFFFFFFFF << dropped) & 0xFFFFFFFF
    bits = b.bitcast(x, ity)
    lsb = b.and_(b.lshr(bits, constant(ity, dropped)), constant(ity, 1))
    rounded = b.add(b.add(bits, constant(ity, (1 << (dropped - 1)) - 1)), lsb)
    quiet = b.or_(bits, constant(ity, 0x00400000))
    is_nan = b.fcmp_unordered("uno", x, x)
    out = b.and_(b.select(is_nan, quiet, rounded), constant(ity, keep))
    return b.bitcast(out, x.type)


def round_bf16(b: ir.IRBuilder, x):
    """Round f32 values to the nearest bf16 value (ties to even), keeping NaNs NaN."""
    return _round_mantissa(b, x, 16)


def round_tf32(b: ir.IRBuilder, x):
    """Round f32 values to the nearest tf32 value (10 mantissa bits, ties to even), keeping
    NaNs NaN: the inputs of ``cm.dpas(..., precision="tf32")`` (interpreter:
    ``values.round_to_tf32``)."""
    return _round_mantissa(b, x, 13)


def to_memory(b, elem: ScalarType, v):
    """A register value as stored in memory (bool -> i8, bf16 -> its 16 bits)."""
    if elem.is_bool:
        return b.zext(v, like(v.type, I8))
    if elem.name == "bf16":
        widened = _widened_bf16(v)
        if widened is not None:       # from_memory's value: its low 16 bits are the element's
            return b.trunc(widened, like(v.type, I16))
        bits = b.bitcast(v, like(v.type, I32))
        return b.trunc(b.lshr(bits, constant(bits.type, 16)), like(v.type, I16))
    return v


def _widened_bf16(v):
    """W where v is ``bitcast(shl(W, 16))``, the f32 form ``from_memory`` gives bf16 bits
    (trunc(W) is then the element's 16 bits), else None. Said so, the round trip of a bf16
    register from memory to memory (a load feeding a store or a dpas) is visibly
    trunc(zext(bits)), which a code generator folds even where it converts in pieces."""
    if not (isinstance(v, ir.CastInstr) and v.opname == "bitcast"):
        return None
    shifted = v.operands[0]
    if not (isinstance(shifted, ir.Instruction) and shifted.opname == "shl" and scalar_of(shifted.type) == I32):
        return None
    amount = shifted.operands[1]
    if not isinstance(amount, ir.Constant):
        return None
    amounts = amount.constant if isinstance(amount.type, ir.VectorType) else [amount]
    return shifted.operands[0] if all(a.constant == 16 for a in amounts) else None


def from_memory(b, elem: ScalarType, v):
    if elem.is_bool:
        return b.icmp_unsigned("!=", v, constant(v.type, 0))
    if elem.name == "bf16":
        wide = b.zext(v, like(v.type, I32))
        return b.bitcast(b.shl(wide, constant(wide.type, 16)), like(v.type, FLOAT))
    return v


def to_bits(b, elem: ScalarType, v):
    """The element's bits as integers of its width (what ``format`` reinterprets)."""
    if elem.is_bool:
        raise CompileError("cannot reinterpret the bits of a bool register")
    if elem.name == "bf16":
        return to_memory(b, elem, v)
    if elem.is_float:
        return b.bitcast(v, like(v.type, ir.IntType(elem.bits)))
    return v


def from_bits(b, elem: ScalarType, bits):
    if elem.is_bool:
        raise CompileError("cannot reinterpret bits as a bool register")
    if elem.name == "bf16":
        return from_memory(b, elem, bits)
    if elem.is_float:
        return b.bitcast(bits, like(bits.type, value_type(elem)))
    return bits


# --- arithmetic -----------------------------------------------------------------------------

def finish(b, elem, v):
    """bf16 results are computed in f32: round them back to bf16."""
    return round_bf16(b, v) if elem.name == "bf16" else v


def binary(b: ir.IRBuilder, m: TargetMath, opcode: str, elem: ScalarType, x, y):
    if elem.is_float:
        return finish(b, elem, _float_binary(b, m, opcode, elem, x, y))
    if elem.is_bool:
        ops = {"and": b.and_, "or": b.or_, "xor": b.xor, "min": b.and_, "max": b.or_}
        if opcode not in ops:
            raise CompileError(f"'{opcode}' is not defined on bool values")
        return ops[opcode](x, y)
    return _int_binary(b, m, opcode, elem, x, y)


def _float_binary(b, m, opcode, elem, x, y):
    simple = {"add": b.fadd, "sub": b.fsub, "mul": b.fmul, "div": b.fdiv, "rem": b.frem}
    if opcode in simple:
        return simple[opcode](x, y)
    if opcode in ("min", "max"):
        return m.float_min_max(b, opcode, x, y)
    if opcode == "pow":
        return m.math(b, "pow", elem, x, y)
    raise CompileError(f"'{opcode}' is not defined on floating-point values")


def _int_binary(b, m, opcode, elem, x, y):
    signed = elem.is_signed
    if opcode in ("div", "rem"):
        return _int_divide(b, opcode, signed, x, y, m.guard_int_division)
    simple = {"add": b.add, "sub": b.sub, "mul": b.mul, "and": b.and_, "or": b.or_, "xor": b.xor}
    if opcode in simple:
        return simple[opcode](x, y)
    if opcode in ("min", "max"):
        return m.int_min_max(b, opcode, signed, x, y)
    if opcode == "avg":
        # ceil((x + y) / 2) without a wider type: (x | y) - ((x ^ y) >> 1)
        half_diff = b.xor(x, y)
        half_diff = (b.ashr if signed else b.lshr)(half_diff, constant(x.type, 1))
        return b.sub(b.or_(x, y), half_diff)
    if opcode == "mulhi":
        wide = ir.IntType(2 * elem.bits)
        product = b.mul(int_resize(b, x, signed, wide), int_resize(b, y, signed, wide))
        high = (b.ashr if signed else b.lshr)(product, constant(product.type, elem.bits))
        return b.trunc(high, x.type)
    if opcode in ("shl", "shr"):
        count = b.and_(y, constant(y.type, elem.bits - 1))
        if opcode == "shl":
            return b.shl(x, count)
        return b.ashr(x, count) if signed else b.lshr(x, count)
    raise CompileError(f"'{opcode}' is not defined on integer values")


def _int_divide(b, opcode, signed, x, y, guard: bool):
    """C division/remainder. x / 0 and INT_MIN / -1 are undefined; with ``guard`` (a CPU,
    where they trap and end the whole process) divide by 1 instead (x / -1 is computed as
    -x, x % -1 as 0)."""
    if not guard:
        if signed:
            return (b.sdiv if opcode == "div" else b.srem)(x, y)
        return (b.udiv if opcode == "div" else b.urem)(x, y)
    zero, one = constant(y.type, 0), constant(y.type, 1)
    safe = b.select(b.icmp_unsigned("==", y, zero), one, y)
    if not signed:
        return (b.udiv if opcode == "div" else b.urem)(x, safe)
    minus_one = b.icmp_signed("==", y, constant(y.type, -1))
    safe = b.select(minus_one, one, safe)
    if opcode == "div":
        return b.select(minus_one, b.sub(zero, x), b.sdiv(x, safe))
    return b.select(minus_one, zero, b.srem(x, safe))


def unary(b: ir.IRBuilder, m: TargetMath, opcode: str, elem: ScalarType, x):
    if opcode == "not":
        if elem.is_float:
            raise CompileError("'not' is not defined on floating-point values")
        return b.xor(x, constant(x.type, 1 if elem.is_bool else -1))
    if elem.is_bool:
        raise CompileError(f"'{opcode}' is not defined on bool values")
    if not elem.is_float:
        if opcode == "neg":
            return b.sub(constant(x.type, 0), x)
        if opcode == "abs":
            return m.int_abs(b, x) if elem.is_signed else x
        if opcode in ("cbit", "fbl", "fbh", "lzd"):
            if elem.bits != 32:
                raise CompileError(f"'{opcode}' is defined on 32-bit integers, got {elem}")
            return m.bit_scan(b, opcode, elem.is_signed, x)
        raise CompileError(f"'{opcode}' is not defined on integer values")
    if opcode == "neg":
        return b.fneg(x)           # exact: no rounding needed even for bf16
    if opcode == "abs":
        return m.float_abs(b, x)
    if opcode == "inv":
        return finish(b, elem, b.fdiv(constant(x.type, 1.0), x))
    if opcode in ("rndd", "rndu", "rnde", "rndz"):
        return m.round(b, opcode, x)        # exact: an integer of a bf16 value is a bf16 value
    if opcode == "frc":
        return finish(b, elem, b.fsub(x, m.round(b, "rndd", x)))
    return finish(b, elem, m.math(b, opcode, elem, x))


def fma(b, m: TargetMath, elem: ScalarType, x, y, z):
    if elem.is_float:
        return finish(b, elem, m.fma(b, x, y, z))
    if elem.is_bool:
        raise CompileError("'fma' is not defined on bool values")
    return b.add(b.mul(x, y), z)


_CMP = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def compare(b, pred: str, elem: ScalarType, x, y):
    op = _CMP[pred]
    if elem.is_float:
        # Ordered compares are false with a NaN; 'ne' is unordered so NaN != anything.
        return b.fcmp_unordered(op, x, y) if pred == "ne" else b.fcmp_ordered(op, x, y)
    if elem.is_signed:
        return b.icmp_signed(op, x, y)
    return b.icmp_unsigned(op, x, y)


# --- conversions ------------------------------------------------------------------------------

def int_range(t: ScalarType):
    if t.is_signed:
        return -(1 << (t.bits - 1)), (1 << (t.bits - 1)) - 1
    return 0, (1 << t.bits) - 1




def convert(b: ir.IRBuilder, m: TargetMath, src: ScalarType, dst: ScalarType, x, sat: bool = False):
    if src == dst and not (sat and dst.is_float):
        return x
    dty = like(x.type, value_type(dst))
    if dst.is_bool:
        if src.is_float:
            return b.fcmp_unordered("!=", x, constant(x.type, 0.0))
        return b.icmp_unsigned("!=", x, constant(x.type, 0))
    if src.is_bool:
        return b.uitofp(x, dty) if dst.is_float else b.zext(x, dty)
    if src.is_int and dst.is_int:
        return _int_to_int(b, src, dst, x, sat)
    if src.is_float and dst.is_int:
        return _float_to_int(b, m, dst, x, sat)
    if src.is_int:            # int -> float
        v = b.sitofp(x, dty) if src.is_signed else b.uitofp(x, dty)
    else:                     # float -> float
        v = _float_resize(b, x, dty)
    if sat:                   # CM / ESIMD float saturation
        v = clamp_unit(b, m, v)
    return finish(b, dst, v)


def _float_resize(b, x, ty):
    width = {"half": 16, "float": 32, "double": 64}
    a, c = width[str(scalar_of(x.type))], width[str(scalar_of(ty))]
    return x if a == c else (b.fpext(x, ty) if c > a else b.fptrunc(x, ty))


def clamp_unit(b, m, v):
    """v clamped to [0.0, 1.0], NaN -> 0 (exact in every float type: rounding after it is
    the identity)."""
    is_nan = b.fcmp_unordered("uno", v, v)     # before clamping: min/max would hide the NaN
    v = m.float_min_max(b, "min", v, constant(v.type, 1.0))
    v = m.float_min_max(b, "max", v, constant(v.type, 0.0))
    return b.select(is_nan, constant(v.type, 0.0), v)


def int_resize(b, x, signed: bool, ity: ir.IntType):
    """Integers (scalar or vector) resized to ``ity`` elements, extended by their signedness."""
    width, ty = scalar_of(x.type).width, like(x.type, ity)
    if width < ity.width:
        return b.sext(x, ty) if signed else b.zext(x, ty)
    return b.trunc(x, ty) if width > ity.width else x


def _int_to_int(b, src, dst, x, sat):
    if sat:
        (slo, shi), (dlo, dhi) = int_range(src), int_range(dst)
        cmp = b.icmp_signed if src.is_signed else b.icmp_unsigned
        if dhi < shi:
            hi = constant(x.type, dhi)
            x = b.select(cmp(">", x, hi), hi, x)
        if dlo > slo:
            lo = constant(x.type, dlo)
            x = b.select(cmp("<", x, lo), lo, x)
    return int_resize(b, x, src.is_signed, value_type(dst))


def _float_to_int(b, m, dst, x, sat):
    dty = like(x.type, value_type(dst))
    if sat:
        if m.saturate_with_compares:
            return _float_to_int_sat_compares(b, dst, x)
        return m.float_to_int_sat(b, x, dty, dst.is_signed)
    if dst.bits < 32:
        # Convert through i32 so that out-of-range values wrap like an int->int conversion.
        return b.trunc(b.fptosi(x, like(x.type, I32)), dty)
    return b.fptosi(x, dty) if dst.is_signed else b.fptoui(x, dty)


def _float_to_int_sat_compares(b, dst, x):
    """CM saturation: clamp to dst's range, NaN -> 0, then truncate toward zero, spelled
    with compares (the CPU runtime cannot vectorize the SaturatedConversion decoration that
    a saturating conversion becomes at 32 lanes: it looks for a missing
    ``convert_short32_sat`` builtin)."""
    if isinstance(scalar_of(x.type), ir.HalfType):
        x = b.fpext(x, like(x.type, FLOAT))      # the limits below are exact in f32, not in half
    dty = like(x.type, value_type(dst))
    lo, hi = int_range(dst)
    below = b.fcmp_ordered("<", x, constant(x.type, float(lo)))
    above = b.fcmp_ordered(">=", x, constant(x.type, float(hi + 1)))   # a power of two: exact
    is_nan = b.fcmp_unordered("uno", x, x)
    inside = b.select(b.or_(b.or_(below, above), is_nan), constant(x.type, 0.0), x)
    v = b.fptosi(inside, dty) if dst.is_signed else b.fptoui(inside, dty)
    v = b.select(below, constant(dty, lo), v)
    return b.select(above, constant(dty, hi if dst.is_signed else -1), v)


# --- reductions -----------------------------------------------------------------------------

def identity_value(kind: str, elem: ScalarType):
    """The neutral element of a reduction as a Python number: what padding lanes contribute.
    The one table both lowerings pad with."""
    if elem.is_bool:
        return 1 if kind in ("and", "min", "mul") else 0
    if elem.is_float:
        # min/max ignore a NaN operand (the interpreter's float_reduce, LLVM minnum/maxnum,
        # genx fmin/fmax), so NaN is their neutral element: padding then never turns an
        # all-NaN input into an infinity.
        return {"add": 0.0, "mul": 1.0, "min": math.nan, "max": math.nan}[kind]
    lo, hi = int_range(elem)
    return {"add": 0, "mul": 1, "and": -1, "or": 0, "min": hi, "max": lo}[kind]


def identity(kind: str, elem: ScalarType):
    """The neutral element of a reduction (``identity_value``) as an LLVM constant."""
    return const(elem, identity_value(kind, elem))
