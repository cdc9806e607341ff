"""Element-wise arithmetic on single LLVM values: one lane of one slot, or a uniform scalar.

The SIMT lowering applies these per slot; they know cmlang's element types (signedness,
bf16 computed in f32 and rounded back after every operation, bool as i1) and the
semantics in ``cmlang.ir.ops`` (C-like integer division, shift counts taken modulo the
bit width, NaN-ignoring float min/max, CM saturation).
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir

from cmlang.errors import CompileError
from cmlang.types import ScalarType
from .llvm_builtins import I1, I8, I16, I32, FLOAT, Builtins, value_type


def _fsuffix(ty):
    return {"half": "f16", "float": "f32", "double": "f64"}[str(ty)]


def _isuffix(ty):
    return f"i{ty.width}"


def const(elem: ScalarType, value):
    """An LLVM constant of ``elem``'s value type (bf16 values rounded to bf16)."""
    ty = value_type(elem)
    if elem.is_bool:
        return ir.Constant(I1, int(bool(value)))
    if elem.is_float:
        v = float(value)
        if elem.name == "bf16":
            v = round_bf16_host(v)
        return ir.Constant(ty, v)
    bits = elem.bits
    v = int(value) & ((1 << bits) - 1)
    if v >= 1 << (bits - 1):
        v -= 1 << bits
    return ir.Constant(ty, v)


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


# --- bf16 and memory representations ----------------------------------------------------

def round_bf16(b: ir.IRBuilder, x):
    """Round an f32 to the nearest bf16 value (ties to even), keeping NaNs NaN."""
    bits = b.bitcast(x, I32)
    lsb = b.and_(b.lshr(bits, ir.Constant(I32, 16)), ir.Constant(I32, 1))
    rounded = b.add(b.add(bits, ir.Constant(I32, 0x7FFF)), lsb)
    quiet = b.or_(bits, ir.Constant(I32, 0x00400000))
    is_nan = b.fcmp_unordered("uno", x, x)
    out = b.and_(b.select(is_nan, quiet, rounded), ir.Constant(I32, 0xFFFF0000 - (1 << 32)))
    return b.bitcast(out, FLOAT)


def to_memory(b, elem: ScalarType, v):
    """A register/scalar value as stored in memory (bool -> i8, bf16 -> its 16 bits)."""
    if elem.is_bool:
        return b.zext(v, I8)
    if elem.name == "bf16":
        return b.trunc(b.lshr(b.bitcast(v, I32), ir.Constant(I32, 16)), I16)
    return v


def from_memory(b, elem: ScalarType, v):
    if elem.is_bool:
        return b.icmp_unsigned("!=", v, ir.Constant(I8, 0))
    if elem.name == "bf16":
        return b.bitcast(b.shl(b.zext(v, I32), ir.Constant(I32, 16)), FLOAT)
    return v


def to_bits(b, elem: ScalarType, v):
    """The element's bits as an integer of its width (what ``format`` reinterprets)."""
    if elem.is_bool:
        raise CompileError("cannot reinterpret the bits of a bool register")
    if elem.name == "bf16":
        return to_memory(b, elem, v)
    if elem.is_float:
        return b.bitcast(v, ir.IntType(elem.bits))
    return v


def from_bits(b, elem: ScalarType, bits):
    if elem.is_bool:
        raise CompileError("cannot reinterpret bits as a bool register")
    if elem.name == "bf16":
        return from_memory(b, elem, bits)
    if elem.is_float:
        return b.bitcast(bits, value_type(elem))
    return bits


# --- arithmetic -----------------------------------------------------------------------------

def finish(b, elem, v):
    """bf16 results are computed in f32: round them back to bf16."""
    return round_bf16(b, v) if elem.name == "bf16" else v


def binary(b: ir.IRBuilder, bi: Builtins, opcode: str, elem: ScalarType, x, y):
    if elem.is_float:
        return finish(b, elem, _float_binary(b, bi, opcode, x, y))
    if elem.is_bool:
        ops = {"and": b.and_, "or": b.or_, "xor": b.xor, "min": b.and_, "max": b.or_}
        if opcode not in ops:
            raise CompileError(f"'{opcode}' is not defined on bool values")
        return ops[opcode](x, y)
    return _int_binary(b, bi, opcode, elem, x, y)


def _float_binary(b, bi, opcode, x, y):
    simple = {"add": b.fadd, "sub": b.fsub, "mul": b.fmul, "div": b.fdiv, "rem": b.frem}
    if opcode in simple:
        return simple[opcode](x, y)
    if opcode in ("min", "max"):
        name = f"llvm.{opcode}num.{_fsuffix(x.type)}"
        return bi.intrinsic(b, name, x.type, x, y)
    if opcode == "pow":
        return bi.math(b, "pow", x, y)
    raise CompileError(f"'{opcode}' is not defined on floating-point values")


def _int_binary(b, bi, opcode, elem, x, y):
    signed = elem.is_signed
    if opcode in ("div", "rem"):
        return _int_divide(b, opcode, signed, x, y)
    simple = {"add": b.add, "sub": b.sub, "mul": b.mul, "and": b.and_, "or": b.or_, "xor": b.xor}
    if opcode in simple:
        return simple[opcode](x, y)
    if opcode in ("min", "max"):
        name = f"llvm.{'s' if signed else 'u'}{opcode}.{_isuffix(x.type)}"
        return bi.intrinsic(b, name, x.type, x, y)
    if opcode in ("shl", "shr"):
        count = b.and_(y, ir.Constant(y.type, elem.bits - 1))
        if opcode == "shl":
            return b.shl(x, count)
        return b.ashr(x, count) if signed else b.lshr(x, count)
    raise CompileError(f"'{opcode}' is not defined on integer values")


def _int_divide(b, opcode, signed, x, y):
    """C division/remainder. x / 0 and INT_MIN / -1 are undefined, but on a CPU they trap and
    end the whole process: divide by 1 instead (x / -1 is computed as -x, x % -1 as 0)."""
    zero, one = ir.Constant(y.type, 0), ir.Constant(y.type, 1)
    safe = b.select(b.icmp_unsigned("==", y, zero), one, y)
    if not signed:
        return (b.udiv if opcode == "div" else b.urem)(x, safe)
    minus_one = b.icmp_signed("==", y, ir.Constant(y.type, -1))
    safe = b.select(minus_one, one, safe)
    if opcode == "div":
        return b.select(minus_one, b.sub(zero, x), b.sdiv(x, safe))
    return b.select(minus_one, zero, b.srem(x, safe))


def unary(b: ir.IRBuilder, bi: Builtins, opcode: str, elem: ScalarType, x):
    if opcode == "not":
        if elem.is_float:
            raise CompileError("'not' is not defined on floating-point values")
        return b.xor(x, ir.Constant(x.type, -1 if not elem.is_bool else 1))
    if elem.is_bool:
        raise CompileError(f"'{opcode}' is not defined on bool values")
    if not elem.is_float:
        if opcode == "neg":
            return b.sub(ir.Constant(x.type, 0), x)
        if opcode == "abs":
            if not elem.is_signed:
                return x
            return bi.intrinsic(b, f"llvm.abs.{_isuffix(x.type)}", x.type, x, ir.Constant(I1, 0))
        raise CompileError(f"'{opcode}' is not defined on integer values")
    if opcode == "neg":
        return b.fneg(x)           # exact: no rounding needed even for bf16
    if opcode == "abs":
        return bi.intrinsic(b, f"llvm.fabs.{_fsuffix(x.type)}", x.type, x)
    if opcode == "inv":
        return finish(b, elem, b.fdiv(ir.Constant(x.type, 1.0), x))
    return finish(b, elem, bi.math(b, opcode, x))


def fma(b, bi, elem: ScalarType, x, y, z):
    if elem.is_float:
        return finish(b, elem, bi.intrinsic(b, f"llvm.fma.{_fsuffix(x.type)}", x.type, x, y, z))
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


def select(b, mask, x, y):
    return b.select(mask, x, y)


# --- conversions ------------------------------------------------------------------------------

def _int_range(t: ScalarType):
    if t.is_signed:
        return -(1 << (t.bits - 1)), (1 << (t.bits - 1)) - 1
    return 0, (1 << t.bits) - 1


_FLOAT_MAX = {"f16": 65504.0, "bf16": 3.3895313892515355e38, "f32": 3.4028234663852886e38}


def convert(b: ir.IRBuilder, bi: Builtins, src: ScalarType, dst: ScalarType, x, sat: bool = False):
    if src == dst:
        return x
    dty = value_type(dst)
    if dst.is_bool:
        if src.is_float:
            return b.fcmp_unordered("!=", x, ir.Constant(x.type, 0.0))
        return b.icmp_unsigned("!=", x, ir.Constant(x.type, 0))
    if src.is_bool:
        return b.uitofp(x, dty) if dst.is_float else b.zext(x, dty)
    if src.is_int and dst.is_int:
        return _int_to_int(b, src, dst, x, sat)
    if src.is_float and dst.is_int:
        return _float_to_int(b, bi, src, dst, x, sat)
    if src.is_int:            # int -> float
        v = b.sitofp(x, dty) if src.is_signed else b.uitofp(x, dty)
    else:                     # float -> float
        v = _float_resize(b, x, dty)
    if sat and dst.name in _FLOAT_MAX:
        v = _clamp_float(b, bi, v, _FLOAT_MAX[dst.name])
    return finish(b, dst, v)


def _float_resize(b, x, ty):
    if x.type == ty:
        return x
    width = {"half": 16, "float": 32, "double": 64}
    return b.fpext(x, ty) if width[str(ty)] > width[str(x.type)] else b.fptrunc(x, ty)


def _clamp_float(b, bi, v, limit):
    sfx = _fsuffix(v.type)
    is_nan = b.fcmp_unordered("uno", v, v)     # before clamping: minnum would hide the NaN
    v = bi.intrinsic(b, f"llvm.minnum.{sfx}", v.type, v, ir.Constant(v.type, limit))
    v = bi.intrinsic(b, f"llvm.maxnum.{sfx}", v.type, v, ir.Constant(v.type, -limit))
    return b.select(is_nan, ir.Constant(v.type, 0.0), v)


def _int_to_int(b, src, dst, x, sat):
    if sat:
        (slo, shi), (dlo, dhi) = _int_range(src), _int_range(dst)
        cmp = b.icmp_signed if src.is_signed else b.icmp_unsigned
        if dhi < shi:
            hi = ir.Constant(x.type, dhi)
            x = b.select(cmp(">", x, hi), hi, x)
        if dlo > slo:
            lo = ir.Constant(x.type, dlo)
            x = b.select(cmp("<", x, lo), lo, x)
    dty = value_type(dst)
    if dst.bits < src.bits:
        return b.trunc(x, dty)
    if dst.bits > src.bits:
        return b.sext(x, dty) if src.is_signed else b.zext(x, dty)
    return x


def _float_to_int(b, bi, src, dst, x, sat):
    dty = value_type(dst)
    if sat:
        return _float_to_int_sat(b, dst, x)
    if dst.bits < 32:
        # Convert through i32 so that out-of-range values wrap like an int->int conversion.
        wide = b.fptosi(x, I32)
        return b.trunc(wide, dty)
    return b.fptosi(x, dty) if dst.is_signed else b.fptoui(x, dty)


def _float_to_int_sat(b, dst, x):
    """CM saturation: clamp to dst's range, NaN -> 0, then truncate toward zero.

    Spelled out with compares rather than llvm.fpto[su]i.sat: the backend turns those into
    a SaturatedConversion decoration that the CPU runtime cannot vectorize at 32 lanes
    (it looks for a missing ``convert_short32_sat`` builtin)."""
    if isinstance(x.type, ir.HalfType):
        x = b.fpext(x, FLOAT)           # the limits below are exact in f32, not in half
    dty = value_type(dst)
    lo, hi = _int_range(dst)
    below = b.fcmp_ordered("<", x, ir.Constant(x.type, float(lo)))
    above = b.fcmp_ordered(">=", x, ir.Constant(x.type, float(hi + 1)))   # a power of two: exact
    is_nan = b.fcmp_unordered("uno", x, x)
    inside = b.select(b.or_(b.or_(below, above), is_nan), ir.Constant(x.type, 0.0), x)
    v = b.fptosi(inside, dty) if dst.is_signed else b.fptoui(inside, dty)
    v = b.select(below, ir.Constant(dty, lo), v)
    return b.select(above, ir.Constant(dty, hi if dst.is_signed else -1), v)


# --- reductions -----------------------------------------------------------------------------

def identity_value(kind: str, elem: ScalarType):
    """The neutral element of a reduction as a Python number: what padding lanes contribute.
    The one table both code generators (SIMT here, vector-compute in vc.py) pad with."""
    if elem.is_bool:
        return 1 if kind in ("and", "min", "mul") else 0
    if elem.is_float:
        # min/max ignore a NaN operand (the interpreter's float_reduce, LLVM minnum/maxnum,
        # genx fmin/fmax), so NaN is their neutral element: padding then never turns an
        # all-NaN input into an infinity.
        return {"add": 0.0, "mul": 1.0, "min": math.nan, "max": math.nan}[kind]
    lo, hi = _int_range(elem)
    return {"add": 0, "mul": 1, "and": -1, "or": 0, "min": hi, "max": lo}[kind]


def identity(kind: str, elem: ScalarType):
    """The neutral element of a reduction (``identity_value``) as an LLVM constant."""
    if elem.is_bool:
        return ir.Constant(I1, identity_value(kind, elem))
    return const(elem, identity_value(kind, elem))

