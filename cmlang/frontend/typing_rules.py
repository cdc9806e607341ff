"""Type rules of the language: promotion of operands, weak Python constants, conversions.

Pure functions on ``cmlang.types`` scalar types (element types); shapes are handled by
the callers. The rules (the user's contract, see ``cmlang.frontend``):

- Two typed operands follow C's usual arithmetic conversions: if either is a float the
  result is the wider float (f64 > f32 > f16/bf16; f16 with bf16 gives f32); otherwise
  both get the integer promotion (bool and types narrower than 32 bits become i32),
  then the wider wins, and at equal width unsigned wins.
- A *weak* value (a Python literal or constexpr number) takes the other operand's type:
  an int with a float type gives that float, with an integer type the promoted integer
  type (it must fit, two's-complement wrap allowed); a float with an integer type gives
  f32; a bool with a bool in a bitwise op or comparison stays bool.
- Wherever a Python number becomes a typed value (``check_constant``: literals, constexprs,
  ``cm.full``, constructors, region writes, ``cm.iota``, loop bounds, call arguments, ...)
  it must fit the type; nothing is silently truncated. An integer constant for an n-bit
  type may be any of the type's values or the other reading of the same n bits: ``-1``
  for ``u32`` is 0xFFFFFFFF and ``0xFFFFFFFF`` for ``i32`` is -1, as CM and C users write
  masks; anything outside [-2**(n-1), 2**n - 1] loses bits and is an error. A float
  constant converted to an integer type must fit the type's own range after truncation.
  A finite float constant that rounds to infinity in its type (f16 above 65504, f32 and
  bf16 above about 3.4e38) is an error; ``inf`` and ``nan`` stay allowed.
"""
from __future__ import annotations

import math

import numpy as np

from ..types import FLOAT_MAX, ScalarType, i32, i64, u64, f16, bf16, f32, f64, bool_


def promote_int(t: ScalarType) -> ScalarType:
    """C integer promotion: bool and integers narrower than 32 bits become i32."""
    if t.is_bool or (t.is_int and t.bits < 32):
        return i32
    return t


def usual_conversions(a: ScalarType, b: ScalarType, keep_bool: bool = False) -> ScalarType:
    """The common type of two typed operands (C usual arithmetic conversions).

    ``keep_bool``: two bools stay bool (bitwise ops and comparisons).
    """
    if keep_bool and a.is_bool and b.is_bool:
        return bool_
    if a.is_float or b.is_float:
        if not a.is_float:
            return b
        if not b.is_float or a == b:
            return a
        if {a, b} == {f16, bf16}:
            return f32
        return a if a.bits > b.bits else b
    a, b = promote_int(a), promote_int(b)
    if a == b:
        return a
    if a.bits != b.bits:
        return a if a.bits > b.bits else b
    return a if not a.is_signed else b


def int_range(t: ScalarType):
    """The values a weak int may take next to ``t``: its own range plus two's-complement wrap."""
    if t.is_bool:
        return 0, 1
    return -(1 << (t.bits - 1)), (1 << t.bits) - 1


def exact_int_range(t: ScalarType):
    if t.is_bool:
        return 0, 1
    if t.is_signed:
        return -(1 << (t.bits - 1)), (1 << (t.bits - 1)) - 1
    return 0, (1 << t.bits) - 1


def fits(value: int, t: ScalarType) -> bool:
    lo, hi = int_range(t)
    return lo <= value <= hi


def default_type(value) -> ScalarType:
    """The type a weak value gets when nothing else decides it (e.g. a loop variable `s = 0`)."""
    if isinstance(value, bool):
        return bool_
    if isinstance(value, float):
        return f32
    for t in (i32, i64, u64):
        lo, hi = exact_int_range(t)
        if lo <= value <= hi:
            return t
    raise OverflowError(f"constant {value} does not fit in 64 bits")


def weak_elem(value, t: ScalarType, keep_bool: bool = False) -> ScalarType:
    """The element type of an operation between a weak ``value`` and a typed operand of ``t``.

    Raises OverflowError when an int constant does not fit the resulting integer type.
    """
    if isinstance(value, float):
        return t if t.is_float else f32
    if isinstance(value, bool) and t.is_bool and keep_bool:
        return bool_
    if t.is_float:
        return t
    result = promote_int(t)
    check_constant(int(value), result)
    return result


def weak_fits(value, t: ScalarType) -> bool:
    """May a weak value be used where element type ``t`` is required, without changing t?"""
    if isinstance(value, bool):
        return True
    if isinstance(value, float):
        return t.is_float
    if t.is_float:
        return True
    return fits(value, t)


def weak_fits_exactly(value, t: ScalarType) -> bool:
    """Like weak_fits, but an int must lie in t's own range (no wrap)."""
    if isinstance(value, (bool, float)) or t.is_float:
        return weak_fits(value, t)
    lo, hi = exact_int_range(t)
    return lo <= value <= hi


def join_weak_types(values) -> ScalarType:
    """One type for several weak values (e.g. 0 in one branch of an if, 1.5 in the other)."""
    result = None
    for v in values:
        t = default_type(v)
        result = t if result is None else usual_conversions(result, t, keep_bool=True)
    return result


def is_lossless(src: ScalarType, dst: ScalarType) -> bool:
    """Is every value of ``src`` exactly representable in ``dst``?"""
    if src == dst or src.is_bool:
        return True
    if dst.is_bool:
        return False
    if src.is_float:
        return dst.is_float and (dst == f64 or (dst == f32 and src in (f16, bf16)))
    if dst.is_float:
        mantissa = {f16: 11, bf16: 8, f32: 24, f64: 53}[dst]
        return src.bits - (1 if src.is_signed else 0) <= mantissa
    if src.is_signed == dst.is_signed:
        return dst.bits >= src.bits
    return not src.is_signed and dst.bits > src.bits




def _round_bf16(x: float) -> float:
    bits = int(np.array(x, dtype=np.float32).view(np.uint32))
    if (bits & 0x7F800000) == 0x7F800000 and bits & 0x7FFFFF:
        return float("nan")
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return float(np.array(bits, dtype=np.uint32).view(np.float32))


class ConstantRangeError(OverflowError, ValueError):
    """A Python number that does not fit the type it is given (see ``check_constant``)."""


def check_constant(value, t: ScalarType):
    """Raises ConstantRangeError unless the Python number ``value`` fits type ``t``
    (the rule in this module's docstring); returns ``value`` rounded to ``t``."""
    return cast_constant(value, t)


def _int_does_not_fit(value, t: ScalarType, lo: int, hi: int) -> ConstantRangeError:
    other = "unsigned" if t.is_signed else "two's-complement"
    return ConstantRangeError(
        f"constant {value} does not fit in {t}: integer constants for {t} must lie in "
        f"{lo}..{hi} (its values, or the same {t.bits} bits written as {other} numbers)")


def cast_constant(value, t: ScalarType):
    """A Python number as an exact value of type ``t`` (C conversion: float->int truncates,
    a negative int for an unsigned type (or the reverse) gives the same bits, a float
    rounds to the nearest representable value). ConstantRangeError when it does not fit."""
    if t.is_bool:
        return bool(value)
    if t.is_float:
        try:
            x = float(value)
        except OverflowError:
            x = math.inf        # an int beyond f64: reported below as out of range
        with np.errstate(over="ignore"):
            if t == f64:
                rounded = x
            elif t == bf16:
                rounded = _round_bf16(x)
            else:
                rounded = float(np.array(x, dtype=np.float16 if t == f16 else np.float32))
        if math.isinf(rounded) and not (isinstance(value, float) and math.isinf(value)):
            biggest = FLOAT_MAX[t.name]
            raise ConstantRangeError(
                f"constant {value} does not fit in {t}: finite constants for {t} must lie within "
                f"+-{biggest:.6g} (it would become infinity; write math.inf if that is meant)")
        return rounded
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ConstantRangeError(f"cannot convert {value} to {t}")
        truncated = int(value)  # toward zero
        lo, hi = exact_int_range(t)
        if not lo <= truncated <= hi:
            raise ConstantRangeError(f"constant {value} does not fit in {t}: float constants "
                                     f"converted to {t} must lie in {lo}..{hi}")
        return truncated
    lo, hi = int_range(t)
    if not lo <= int(value) <= hi:
        raise _int_does_not_fit(value, t, lo, hi)
    value = int(value) & ((1 << t.bits) - 1)
    if t.is_signed and value >= 1 << (t.bits - 1):
        value -= 1 << t.bits
    return value
