"""How the interpreter holds cmlang values in numpy, and the bf16 (and tf32) rounding helpers.

- A scalar is a numpy scalar of its type's dtype (``i32`` -> ``np.int32``, ``bool`` ->
  ``np.bool_``); a register is a numpy array of its shape; a pointer is a ``Buffer``.
- ``bf16`` values are computed as ``float32`` numbers that are rounded to bf16 after
  every op (so they always hold a bf16-representable value); in memory a bf16
  element is its 16 bits in a ``uint16`` array.
"""
from __future__ import annotations

import numpy as np

from ...types import ScalarType, VectorType, bf16

_F32 = np.dtype(np.float32)


class KernelFault(Exception):
    """A failure of one op (out of bounds, division by zero); the executor adds line and thread."""


def value_dtype(t) -> np.dtype:
    """The numpy dtype that holds values of the scalar or register type ``t`` in registers."""
    elem = t.elem
    return _F32 if elem == bf16 else np.dtype(elem.np_dtype)


def as_scalar(x):
    """numpy sometimes answers a 0-d array where a scalar is meant; take the scalar out."""
    return x[()] if type(x) is np.ndarray else x


# --- float min/max ---------------------------------------------------------------

def _ignoring_nan(pick):
    """min/max as ops.py defines them for floats: a NaN operand loses to the other, also a
    signaling one (np.fmin/np.fmax answer a quiet NaN for a signaling NaN, as C's fmin
    may; devices, like OpenCL's fmin, return the other operand)."""
    def fn(a, b):
        a_nan, b_nan = np.isnan(a), np.isnan(b)
        with np.errstate(invalid="ignore"):
            return as_scalar(np.where(a_nan, b, np.where(b_nan, a, pick(a, b))))
    return fn


float_min = _ignoring_nan(np.minimum)
float_max = _ignoring_nan(np.maximum)


def float_reduce(kind, src, axis):
    """reduce min/max over floats: NaN elements are ignored; all NaN gives NaN."""
    nan = np.isnan(src)
    fill = np.inf if kind == "min" else -np.inf
    with np.errstate(invalid="ignore"):
        filled = np.where(nan, src.dtype.type(fill), src)
        result = filled.min(axis=axis) if kind == "min" else filled.max(axis=axis)
        return as_scalar(np.where(nan.all(axis=axis), src.dtype.type(np.nan), result).astype(src.dtype))


# --- bf16 -----------------------------------------------------------------------

def _round_mantissa(x, dropped: int):
    """float32 values rounded to the nearest value with the low ``dropped`` mantissa bits
    zero (ties to even), kept as float32; NaN stays a quiet NaN, values beyond the narrow
    format's range become infinity."""
    arr = np.asarray(x, dtype=np.float32)
    bits = arr.view(np.uint32)
    keep = np.uint32((0xFFFFFFFF << dropped) & 0xFFFFFFFF)
    lsb = (bits >> np.uint32(dropped)) & np.uint32(1)
    rounded = (bits + np.uint32((1 << (dropped - 1)) - 1) + lsb) & keep
    nan_bits = (bits & keep) | np.uint32(0x00400000)
    out = np.where(np.isnan(arr), nan_bits, rounded).astype(np.uint32).view(np.float32)
    return out[()] if out.ndim == 0 else out


def round_to_bf16(x):
    """Round float32 values to the nearest bf16 value (ties to even), kept as float32.

    NaN stays a quiet NaN; values beyond bf16's range become infinity.
    """
    return _round_mantissa(x, 16)


def round_to_tf32(x):
    """Round float32 values to the nearest tf32 value (10 mantissa bits, ties to even), kept
    as float32: what ``cm.dpas(..., precision="tf32")`` does to each element of a and b
    before its exact products and f32 sums. NaN stays a quiet NaN."""
    return _round_mantissa(x, 13)


def f64_to_bf16(x):
    """Round float64 (or integer) values to bf16 correctly, kept as float32.

    Going through float32 with round-to-nearest would round twice; rounding to float32
    *to odd* first keeps the final rounding to bf16 exact (float32 has > 2 extra bits).
    """
    wide = np.asarray(x, dtype=np.float64)
    narrow = wide.astype(np.float32)
    bits = narrow.view(np.uint32).copy()
    inexact = (narrow != wide) & ~np.isnan(wide)
    bits = np.where(inexact & (np.abs(narrow) > np.abs(wide)), bits - np.uint32(1), bits)  # toward zero
    bits = np.where(inexact, bits | np.uint32(1), bits)                                    # ... and odd
    return round_to_bf16(bits.astype(np.uint32).view(np.float32))


def bf16_bits_to_f32(bits):
    """uint16 bf16 bit patterns -> their float32 values."""
    out = (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)
    return out[()] if out.ndim == 0 else out


def f32_to_bf16_bits(x):
    """float32 values -> uint16 bf16 bit patterns (rounded to nearest even)."""
    bits = np.asarray(round_to_bf16(x), dtype=np.float32).view(np.uint32) >> np.uint32(16)
    out = bits.astype(np.uint16)
    return out[()] if out.ndim == 0 else out


# --- making values of an exact type ----------------------------------------------

def make_value(t, x):
    """``x`` (a Python number, numpy scalar or array) as a value of cmlang type ``t``.

    Integers wrap into the type (two's complement), as a C cast would.
    """
    dtype = value_dtype(t)
    arr = np.asarray(x)
    if t.elem == bf16:
        arr = f64_to_bf16(arr) if arr.dtype != _F32 else round_to_bf16(arr)
        arr = np.asarray(arr, dtype=_F32)
    elif dtype.kind in "iu" and arr.dtype.kind in "iu" and arr.dtype != dtype:
        arr = arr.astype(np.int64 if arr.dtype.kind == "i" else np.uint64).astype(dtype)
    else:
        arr = arr.astype(dtype)
    if isinstance(t, VectorType):
        return np.array(np.broadcast_to(arr, t.shape))
    return arr[()] if arr.ndim == 0 else arr.reshape(-1)[0]


def type_matches(t, value) -> bool:
    """Does ``value`` have exactly the numpy representation of type ``t``? (used by tests)"""
    if isinstance(t, ScalarType):
        ok = isinstance(value, np.generic) and value.dtype == value_dtype(t)
    elif isinstance(t, VectorType):
        ok = isinstance(value, np.ndarray) and value.shape == t.shape and value.dtype == value_dtype(t)
    else:
        return True
    if ok and t.elem == bf16:   # a bf16 value must be one that bf16 can hold
        ok = bool(np.all((round_to_bf16(value) == value) | np.isnan(value)))
    return ok
