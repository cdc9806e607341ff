"""The numpy meaning of every data op of ``cmlang.ir.ops``: one maker per opcode.

``SEMANTICS[opcode](op)`` runs once per op when a function is prepared and returns a
plain function of the op's operand values that gives its result value (or None).
Everything that depends on the op's types and attributes is decided in the maker,
so the returned function only computes. Control flow, ids, SLM, barriers and the
debug ops need the executing CM thread and live in ``executor.py``.

numpy gives most of the semantics directly; the places where C/CM differ from numpy
are spelled out here: integer ``div``/``rem`` truncate toward zero, shifts take the
count modulo the bit width, float ``min``/``max`` ignore a NaN, float->int conversion
truncates (and saturates on request), bf16 results are rounded after every op.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ...types import ScalarType, VectorType, bf16
from ...ir.ops import BINARY, UNARY
from .memory import MEMORY_SEMANTICS
from .values import (KernelFault, value_dtype, as_scalar, round_to_bf16, f64_to_bf16,
                     bf16_bits_to_f32, f32_to_bf16_bits, float_min, float_max, float_reduce)


def _result_type(op):
    return op.results[0].type


def _with_bf16_rounding(op, fn):
    """bf16 ops compute in float32; round the result back to bf16 once per op."""
    if _result_type(op).elem != bf16:
        return fn
    return lambda *args: round_to_bf16(fn(*args))


# --- construction -----------------------------------------------------------------

def make_const(op):
    t = _result_type(op)
    value = op.attrs["value"]
    dtype = value_dtype(t)
    if t.elem == bf16:
        arr = np.asarray(f64_to_bf16(np.asarray(value, np.float64)), np.float32)
    else:
        arr = np.asarray(value, dtype=dtype)
    if isinstance(t, VectorType):
        arr = np.array(np.broadcast_to(arr.reshape(-1) if arr.ndim else arr, (t.size,))).reshape(t.shape)
        arr.flags.writeable = False     # shared by every execution: no op may write into it
        return lambda: arr
    scalar = dtype.type(arr[()])
    return lambda: scalar


def make_splat(op):
    t = _result_type(op)
    dtype = value_dtype(t)
    return lambda s: np.full(t.shape, s, dtype)


def make_build(op):
    dtype = value_dtype(_result_type(op))
    return lambda *elems: np.array(elems, dtype)


# --- element-wise -------------------------------------------------------------------

def _check_divisor(b):
    zero = np.asarray(b) == 0
    if zero.any():
        where = "" if zero.ndim == 0 else f" (element {int(np.argmax(zero.reshape(-1)))} of the divisor)"
        raise KernelFault(f"integer division by zero{where}")


def _int_div(a, b):
    """Division truncating toward zero (numpy's // floors)."""
    _check_divisor(b)
    q = np.floor_divide(a, b)
    inexact_negative = (np.remainder(a, b) != 0) & ((a < 0) != (b < 0))
    return as_scalar(q + inexact_negative.astype(q.dtype))


def _int_rem(a, b):
    _check_divisor(b)
    return np.fmod(a, b)       # C remainder: the sign of a


def _shift(fn, elem):
    # Bit widths are powers of two: & (bits - 1) is "mod bits", also for negative counts.
    mask = np.dtype(elem.np_dtype).type(elem.bits - 1)
    return lambda a, b: fn(a, b & mask)


def make_binary(op):
    name = op.opcode
    t = op.operands[0].type
    is_int = t.elem.is_int
    if name == "div":
        fn = _int_div if is_int else np.divide
    elif name == "rem":
        fn = _int_rem if is_int else np.fmod
    elif name in ("min", "max"):
        fn = {"min": np.minimum, "max": np.maximum}[name] if not t.elem.is_float else \
            {"min": float_min, "max": float_max}[name]
    elif name in ("shl", "shr"):
        fn = _shift(np.left_shift if name == "shl" else np.right_shift, t.elem)
    elif name == "avg":
        fn = _avg
    elif name == "mulhi":
        fn = _mulhi(t.elem)
    else:
        fn = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "pow": np.power,
              "and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor}[name]
    return _with_bf16_rounding(op, fn)


def _avg(a, b):
    """(a + b + 1) >> 1 without overflow: exact in Python integers, back to the operand type."""
    dtype = np.asarray(a).dtype
    exact = (np.asarray(a, object) + np.asarray(b, object) + 1) // 2
    return as_scalar(np.asarray(exact, dtype=np.int64 if dtype.kind == "i" else np.uint64).astype(dtype))


def _mulhi(elem):
    """The high 32 bits of the 64-bit product (signed or unsigned as the operands)."""
    wide = np.int64 if elem.is_signed else np.uint64
    dtype = np.dtype(elem.np_dtype)

    def mulhi(a, b):
        product = np.asarray(a).astype(wide) * np.asarray(b).astype(wide)   # exact in 64 bits
        return as_scalar((product >> wide(32)).astype(dtype))
    return mulhi


def _bits_u32(a):
    return np.asarray(a).astype(np.uint32)     # i32 -> its two's complement bits


def _cbit(a):
    bits = np.unpackbits(_bits_u32(a).reshape(-1, 1).view(np.uint8), axis=1)
    return as_scalar(bits.sum(axis=1, dtype=np.uint32).reshape(np.shape(a)).astype(np.asarray(a).dtype))


def _leading_zeros(u):
    """Leading zeros of uint32 values (32 for 0): 32 minus the bit length."""
    u = np.asarray(u, np.uint32)
    length = np.zeros(u.shape, np.int64)
    for bit in range(32):
        length = np.where((u >> np.uint32(bit)) != 0, bit + 1, length)
    return 32 - length


def _fbl(a):
    u = _bits_u32(a)
    with np.errstate(over="ignore"):
        lowest = u & (~u + np.uint32(1))              # the lowest set bit alone
    index = 31 - _leading_zeros(lowest)
    out = np.where(u == 0, -1, index)
    return as_scalar(out.astype(np.asarray(a).dtype))


def _lzd(a):
    return as_scalar(_leading_zeros(_bits_u32(a)).astype(np.asarray(a).dtype))


def _fbh(a):
    arr = np.asarray(a)
    if arr.dtype.kind == "i":
        # the leading bits equal to the sign bit (the sign bit included): leading zeros of a or ~a
        u = _bits_u32(np.where(arr < 0, ~arr, arr))
        out = np.where((arr == 0) | (arr == -1), -1, _leading_zeros(u))
    else:
        u = _bits_u32(arr)
        out = np.where(u == 0, -1, _leading_zeros(u))
    return as_scalar(out.astype(arr.dtype))


def _frc(a):
    return np.subtract(a, np.floor(a))


def _rsqrt(a):
    one = a.dtype.type(1)
    return np.divide(one, np.sqrt(a))


def _inv(a):
    return np.divide(a.dtype.type(1), a)


_UNARY_FUNCTIONS = {
    "neg": np.negative, "not": np.invert, "abs": np.abs, "exp": np.exp, "exp2": np.exp2,
    "log": np.log, "log2": np.log2, "sqrt": np.sqrt, "rsqrt": _rsqrt, "inv": _inv,
    "sin": np.sin, "cos": np.cos, "tanh": np.tanh, "floor": np.floor, "ceil": np.ceil,
    "rndd": np.floor, "rndu": np.ceil, "rnde": np.rint, "rndz": np.trunc, "frc": _frc,
    "cbit": _cbit, "fbl": _fbl, "fbh": _fbh, "lzd": _lzd,
}
assert set(_UNARY_FUNCTIONS) == set(UNARY)


def make_unary(op):
    return _with_bf16_rounding(op, _UNARY_FUNCTIONS[op.opcode])


def _fma_f64_scalar(a, b, c):
    """a * b + c rounded once: exactly in rationals (Fraction -> float rounds to nearest even)."""
    rounded_twice = a * b + c
    if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(c)):
        return rounded_twice            # inf and NaN: no rounding to get wrong
    exact = Fraction(a) * Fraction(b) + Fraction(c)
    if exact == 0:     # zeros keep IEEE's signs (-0 * 1 + -0 is -0); x - x is +0
        return rounded_twice if a == 0 or b == 0 else 0.0
    try:
        return float(exact)
    except OverflowError:
        return math.inf if exact > 0 else -math.inf


_fma_f64_vector = np.vectorize(_fma_f64_scalar, otypes=[np.float64])


def _fma_f64(a, b, c):
    # numpy has no fused multiply-add, and float64 products are not exact in anything wider
    with np.errstate(all="ignore"):
        result = _fma_f64_vector(np.float64(a), np.float64(b), np.float64(c))
    return result if result.ndim else as_scalar(result)


def make_fma(op):
    elem = _result_type(op).elem
    dtype = value_dtype(_result_type(op))
    if dtype == np.float64:
        return _fma_f64
    # The product of two float32 (or f16/bf16) numbers is exact in float64, so only
    # the sum and the final narrowing round: single rounding except in rare ties.
    narrow = f64_to_bf16 if elem == bf16 else (lambda x: as_scalar(np.asarray(x).astype(dtype)))

    def fma(a, b, c):
        return narrow(np.multiply(a, b, dtype=np.float64) + np.asarray(c, np.float64))
    return fma


_COMPARISONS = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
                "gt": np.greater, "ge": np.greater_equal}


def make_cmp(op):
    return _COMPARISONS[op.attrs["pred"]]


def make_select(op):
    if isinstance(op.operands[0].type, ScalarType):
        return lambda mask, a, b: a if mask else b
    return np.where


# --- conversions -------------------------------------------------------------------

def _int_range(elem):
    info = np.iinfo(elem.np_dtype)
    return int(info.min), int(info.max)


def _float_to_int(dst, sat):
    dtype = np.dtype(dst.np_dtype)
    if not sat:
        # Out of range is undefined; numpy's cast gives some value without complaint.
        return lambda a: as_scalar(np.trunc(a).astype(dtype))
    lo, hi = _int_range(dst)
    # The largest float64 that still fits (float(2**63 - 1) would round up to 2**63).
    hi_inside = float(hi) if int(float(hi)) <= hi else float(np.nextafter(float(hi), 0.0))

    def saturate(a):
        x = np.trunc(np.asarray(a, np.float64))
        x = np.where(np.isnan(x), 0.0, x)
        out = np.clip(x, float(lo), hi_inside).astype(dtype)
        return as_scalar(np.where(x >= float(hi), dtype.type(hi), out))
    return saturate


def _int_to_int(src, dst, sat):
    dtype = np.dtype(dst.np_dtype)
    if not sat or src.is_bool:
        return lambda a: a.astype(dtype)       # numpy wraps, as two's complement does
    (slo, shi), (dlo, dhi) = _int_range(src), _int_range(dst)
    sdtype = np.dtype(src.np_dtype)
    lo, hi = sdtype.type(max(slo, dlo)), sdtype.type(min(shi, dhi))
    return lambda a: np.clip(a, lo, hi).astype(dtype)


def _to_float(src, dst, sat):
    if dst == bf16:
        exact_in_f32 = src.is_float and src.bits <= 32
        narrow = round_to_bf16 if exact_in_f32 and not sat else f64_to_bf16
    else:
        dtype = np.dtype(dst.np_dtype)
        narrow = lambda a: as_scalar(np.asarray(a).astype(dtype))     # noqa: E731  (nearest even)
    if not sat:
        return narrow

    def saturate(a):            # CM / ESIMD float saturation: [0.0, 1.0], NaN -> 0
        x = np.asarray(a, np.float64)
        return narrow(np.where(np.isnan(x), 0.0, np.clip(x, 0.0, 1.0)))
    return saturate


def make_convert(op):
    src, dst = op.operands[0].type.elem, _result_type(op).elem
    sat = op.attrs["sat"]
    if dst.is_bool:
        return lambda a: a != 0
    if dst.is_float:
        return _to_float(src, dst, sat)
    if src.is_float:
        return _float_to_int(dst, sat)
    return _int_to_int(src, dst, sat)


def _to_bytes(a, elem):
    if elem == bf16:
        return np.ravel(f32_to_bf16_bits(a))
    if elem.is_bool:                      # a bool register is a bit mask, element 0 in bit 0
        return np.packbits(np.ravel(a), bitorder="little")
    return np.ravel(a)


def make_bitcast(op):
    src, dst = op.operands[0].type, _result_type(op)
    shape = dst.shape

    def bitcast(a):
        raw = np.ascontiguousarray(_to_bytes(a, src.elem))
        if dst.elem.is_bool:
            out = np.unpackbits(raw.view(np.uint8), bitorder="little").astype(bool)
        else:
            out = raw.view(np.dtype(dst.elem.np_dtype))   # storage dtype: uint16 for bf16
            if dst.elem == bf16:
                out = bf16_bits_to_f32(out)
        return out[0] if shape == () else out.reshape(shape).copy()
    return bitcast


# --- regions ------------------------------------------------------------------------

def _region_fault(what, index, element, size):
    raise KernelFault(f"{what} index out of range: index {index} (element {element} of the region), "
                      f"the register has {size} elements")


def _region_indices(attrs):
    rows = np.arange(attrs["vsize"], dtype=np.int64)[:, None] * attrs["vstride"]
    cols = np.arange(attrs["hsize"], dtype=np.int64)[None, :] * attrs["hstride"]
    return (attrs["offset"] + rows + cols).reshape(-1)


def _checked(idx, lo, hi, dyn, size, what):
    """idx + dyn, after checking that every index is in 0..size-1 (lo/hi: idx's bounds)."""
    if dyn:
        idx = idx + dyn
        lo, hi = lo + dyn, hi + dyn
    if lo < 0 or hi >= size:
        bad = (idx < 0) | (idx >= size)
        element = int(np.argmax(bad))
        _region_fault(what, int(idx[element]), element, size)
    return idx


def make_rdregion(op):
    idx = _region_indices(op.attrs)
    lo, hi = int(idx.min()), int(idx.max())
    shape = _result_type(op).shape
    size = op.operands[0].type.size

    def rdregion(src, dyn=0):
        flat = _checked(idx, lo, hi, int(dyn), size, "rdregion")
        out = src.reshape(-1)[flat]
        return out[0] if shape == () else out.reshape(shape)
    return rdregion


def make_wrregion(op):
    idx = _region_indices(op.attrs)
    lo, hi = int(idx.min()), int(idx.max())
    size = op.operands[0].type.size

    def wrregion(dst, src, dyn=0):
        flat = _checked(idx, lo, hi, int(dyn), size, "wrregion")
        out = dst.copy()
        out.reshape(-1)[flat] = np.ravel(src)
        return out
    return wrregion


def _element_index(op, size, dyn):
    i = op.attrs["index"] + int(dyn)
    if not 0 <= i < size:
        raise KernelFault(f"{op.opcode} index out of range: index {i}, the register has {size} elements")
    return i


def make_extract(op):
    size = op.operands[0].type.size
    return lambda src, dyn=0: src.reshape(-1)[_element_index(op, size, dyn)]


def make_insert(op):
    size = op.operands[0].type.size

    def insert(dst, s, dyn=0):
        out = dst.copy()
        out.reshape(-1)[_element_index(op, size, dyn)] = s
        return out
    return insert


def make_iselect(op):
    size = op.operands[0].type.size

    def iselect(src, idx):
        flat = idx.reshape(-1).astype(np.int64)
        bad = (flat < 0) | (flat >= size)
        if bad.any():
            element = int(np.argmax(bad))
            raise KernelFault(f"iselect index out of range: index {int(flat[element])} (element {element} "
                              f"of the indices), the register has {size} elements")
        return src.reshape(-1)[flat].reshape(idx.shape)
    return iselect


def make_reduce(op):
    src_t = op.operands[0].type
    dtype = value_dtype(src_t)
    is_float = src_t.elem.is_float
    kind, axis = op.attrs["kind"], op.attrs["axis"]
    if is_float and kind in ("min", "max"):
        return _with_bf16_rounding(op, lambda src: float_reduce(kind, src.reshape(-1) if axis is None else src, axis))
    ufunc = {"add": np.add, "mul": np.multiply, "and": np.bitwise_and, "or": np.bitwise_or,
             "min": np.minimum, "max": np.maximum}[kind]
    if axis is None:
        # Order of a float sum is unspecified (numpy: pairwise); ints wrap in their own type.
        fn = lambda src: ufunc.reduce(src.reshape(-1), dtype=dtype)      # noqa: E731
    else:
        fn = lambda src: ufunc.reduce(src, axis=axis, dtype=dtype)       # noqa: E731
    return _with_bf16_rounding(op, fn)


def make_dpas(op):
    if op.results[0].type.elem.is_int:
        def integer_dpas(acc, a, b):
            total = acc.astype(np.int64) + np.matmul(a.astype(np.int64), b.astype(np.int64))
            return ((total + 2**31) % 2**32 - 2**31).astype(np.int32)    # i32 wraps
        return integer_dpas

    def dpas(acc, a, b):
        product = np.matmul(a.astype(np.float32), b.astype(np.float32))
        return (acc.astype(np.float32) + product).astype(np.float32)
    return dpas


def make_fence(op):
    return lambda: None        # the interpreter's memory is always coherent


SEMANTICS = {
    "const": make_const, "splat": make_splat, "build": make_build,
    **{name: make_binary for name in BINARY},
    **{name: make_unary for name in UNARY},
    "fma": make_fma, "cmp": make_cmp, "select": make_select,
    "convert": make_convert, "bitcast": make_bitcast,
    "rdregion": make_rdregion, "wrregion": make_wrregion, "extract": make_extract,
    "insert": make_insert, "iselect": make_iselect, "reduce": make_reduce, "dpas": make_dpas,
    "fence": make_fence,
    **MEMORY_SEMANTICS,
}
