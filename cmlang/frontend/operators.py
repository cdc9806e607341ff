"""Python operators on kernel values: ``+ - * / // % ** & | ^ << >> ~ not and or`` and comparisons.

Two compile-time operands fold in Python (Python semantics, like Triton's constexpr:
``7 / 2 == 3.5``, ``-7 // 2 == -4``). Otherwise the operands are promoted
(``typing_rules``), converted and splat to one type, and one element-wise op is emitted:

    a / b    ints: div (truncates toward zero, like C)     floats: div
    a // b   ints: div (truncates, like C and Triton)      floats: floor(div(a, b))
    a % b    ints: rem (C remainder)                      floats: rem (fmod)
    a ** b   floats: pow; ints: unrolled multiplications when b is a constant 0..64
    a == b   cmp [pred=eq] -> bool scalar or mask of the operands' shape
"""
from __future__ import annotations

import ast
import operator

from ..ir import Value
from ..types import ScalarType, VectorType, bool_, f32, with_elem
from . import typing_rules as tr
from .values import is_constexpr, is_weak, is_numeric, describe

BINOPS = {
    ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.FloorDiv: "floordiv",
    ast.Mod: "rem", ast.Pow: "pow", ast.BitAnd: "and", ast.BitOr: "or", ast.BitXor: "xor",
    ast.LShift: "shl", ast.RShift: "shr",
}
SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "floordiv": "//", "rem": "%", "pow": "**",
           "and": "&", "or": "|", "xor": "^", "shl": "<<", "shr": ">>",
           "eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_PYTHON = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv,
           "floordiv": operator.floordiv, "rem": operator.mod, "pow": operator.pow,
           "and": operator.and_, "or": operator.or_, "xor": operator.xor,
           "shl": operator.lshift, "shr": operator.rshift,
           "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le,
           "gt": operator.gt, "ge": operator.ge}
COMPARES = {ast.Eq: "eq", ast.NotEq: "ne", ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge"}
MAX_INT_POWER = 64


def fold(em, opname, a, b):
    """Evaluates an operator on two compile-time values in Python."""
    try:
        return _PYTHON[opname](a, b)
    except ZeroDivisionError:
        raise em.error("division by zero in a constant expression") from None
    except Exception:
        raise em.error(f"unsupported operand types for {SYMBOLS[opname]}: {describe(a)} and "
                       f"{describe(b)}") from None


# --- promotion of operands -------------------------------------------------------------

def common_shape(em, operands, what):
    """The register shape of an element-wise op (None: all scalars); shapes must agree."""
    shape, first = None, None
    for x in operands:
        if isinstance(x, Value) and isinstance(x.type, VectorType):
            if shape is None:
                shape, first = x.type.shape, x.type
            elif x.type.shape != shape:
                raise em.error(f"shape mismatch in {what}: {first} and {x.type}")
    return shape


def common_elem(em, operands, keep_bool=False, promote=True):
    """The element type of an element-wise op over typed values and weak numbers.

    ``promote=False`` (comparisons, min/max, select): operands of one identical type keep
    it and weak numbers that fit it exactly do not widen it.
    """
    try:
        return _common_elem(operands, keep_bool, promote)
    except OverflowError as e:
        raise em.error(str(e)) from None


def _common_elem(operands, keep_bool, promote):
    typed = [x.type.elem for x in operands if isinstance(x, Value)]
    weak = [x for x in operands if is_weak(x)]
    if not typed:
        return tr.join_weak_types(weak)
    if not promote and all(t == typed[0] for t in typed) and \
            all(tr.weak_fits_exactly(w, typed[0]) for w in weak):
        return typed[0]       # e.g. min of two i16 stays i16 (no integer promotion)
    elem = typed[0]
    for t in typed[1:]:
        elem = tr.usual_conversions(elem, t, keep_bool)
    for w in weak:
        elem = tr.weak_elem(w, elem, keep_bool)
    return elem


def unify(em, operands, what, keep_bool=False, promote=True):
    """Converts operands to one type: returns (converted values, type)."""
    shape = common_shape(em, operands, what)
    elem = common_elem(em, operands, keep_bool, promote)
    t = VectorType(elem, shape) if shape else elem
    return [em.coerce(x, t) for x in operands], t


def _check_numeric(em, opname, *operands):
    if not all(is_numeric(x) for x in operands):
        kinds = " and ".join(describe(x) for x in operands)
        raise em.error(f"unsupported operand types for {SYMBOLS.get(opname, opname)}: {kinds}")


# --- binary operators ------------------------------------------------------------------

def binary(em, opname, a, b):
    """``a <op> b`` for an opname of BINOPS' values."""
    if is_constexpr(a) and is_constexpr(b):
        return fold(em, opname, a, b)
    _check_numeric(em, opname, a, b)
    what = f"'{SYMBOLS[opname]}'"
    if opname in ("shl", "shr"):
        return _shift(em, opname, a, b)
    if opname == "pow":
        return power(em, a, b)
    keep_bool = opname in ("and", "or", "xor")
    (a, b), t = unify(em, [a, b], what, keep_bool=keep_bool)
    if keep_bool and t.elem.is_float:
        raise em.error(f"bitwise {what} needs integer or bool operands, got {t}")
    if opname == "floordiv":
        q = em.op("div", [a, b], t)
        return em.op("floor", [q], t) if t.elem.is_float else q
    return em.op(opname, [a, b], t)


def _shift(em, opname, a, b):
    """C shifts: the result has the promoted type of the left operand."""
    for x in (a, b):
        if isinstance(x, float) or (isinstance(x, Value) and x.type.elem.is_float):
            raise em.error(f"'{SYMBOLS[opname]}' needs integer operands, got {describe(x)}")
    shape = common_shape(em, [a, b], f"'{SYMBOLS[opname]}'")
    if isinstance(a, Value):
        elem = tr.promote_int(a.type.elem)
    else:
        elem = common_elem(em, [a, b])
    t = VectorType(elem, shape) if shape else elem
    return em.op(opname, [em.coerce(a, t), em.coerce(b, t)], t)


def power(em, base, exp):
    """``base ** exp``: pow on floats; integer powers by a constant are multiplications."""
    if is_constexpr(base) and is_constexpr(exp):
        return fold(em, "pow", base, exp)
    _check_numeric(em, "pow", base, exp)
    if isinstance(exp, int) and isinstance(base, Value) and not base.type.elem.is_float:
        if not 0 <= exp <= MAX_INT_POWER:
            raise em.error(f"integer ** needs a constant exponent in 0..{MAX_INT_POWER}, got {exp}")
        t = with_elem(base.type, tr.promote_int(base.type.elem))
        return _int_power(em, em.coerce(base, t), exp, t)
    (b, e), t = unify(em, [base, exp], "'**'")
    if not t.elem.is_float:
        raise em.error(f"'**' on integers ({describe(base)} ** {describe(exp)}) needs a constant "
                       f"exponent in 0..{MAX_INT_POWER}; convert to a float type for pow")
    return em.op("pow", [b, e], t)


def _int_power(em, x, n, t):
    """x ** n by square-and-multiply, unrolled."""
    result = None
    square = x
    while n:
        if n & 1:
            result = square if result is None else em.op("mul", [result, square], t)
        n >>= 1
        if n:
            square = em.op("mul", [square, square], t)
    return result if result is not None else em.const(t, 1)


# --- comparisons -----------------------------------------------------------------------

def compare(em, pred, a, b):
    """``a <pred> b`` -> Python bool (compile time) or bool scalar/mask."""
    if is_constexpr(a) and is_constexpr(b):
        return fold(em, pred, a, b)
    _check_numeric(em, pred, a, b)
    (a, b), t = unify(em, [a, b], f"'{SYMBOLS[pred]}'", keep_bool=True, promote=False)
    return em.op("cmp", [a, b], with_elem(t, bool_), pred=pred)


def logical_and(em, a, b):
    """Combines two comparison results (chained comparisons): Python ``and`` or element-wise and."""
    if is_constexpr(a) and is_constexpr(b):
        return a and b
    (a, b), t = unify(em, [as_bool_value(em, a), as_bool_value(em, b)], "'and'", keep_bool=True)
    return em.op("and", [a, b], t)


def as_bool_value(em, x):
    return bool(x) if is_constexpr(x) else em.as_bool(x)


def bool_op(em, opname, values):
    """``a and b``/``a or b``: folded when all are compile-time, else an and/or op on bool
    scalars (every run-time side is evaluated; compile-time sides fold away)."""
    for x in values:
        if isinstance(x, Value) and not isinstance(x.type, ScalarType):
            raise em.error(f"'{opname}' needs scalar operands, got {x.type}; use "
                           f"{'&' if opname == 'and' else '|'} for element-wise logic on masks")
    if all(is_constexpr(x) for x in values):
        result = values[0]
        for x in values[1:]:
            result = (result and x) if opname == "and" else (result or x)
        return result
    constants = [bool(x) for x in values if is_constexpr(x)]
    if opname == "and" and not all(constants):
        return False
    if opname == "or" and any(constants):
        return True
    runtime = [em.as_bool(x) for x in values if not is_constexpr(x)]
    result = runtime[0]
    for x in runtime[1:]:
        result = em.op(opname, [result, x], bool_)
    return result


# --- unary operators -------------------------------------------------------------------

def unary(em, node_op, a):
    if isinstance(node_op, ast.Not):
        return logical_not(em, a)
    if is_constexpr(a):
        try:
            if isinstance(node_op, ast.Invert) and isinstance(a, bool):
                return not a
            return {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Invert: operator.invert}[type(node_op)](a)
        except TypeError:
            raise em.error(f"bad operand type for unary operator: {describe(a)}") from None
    _check_numeric(em, "unary operator", a)
    elem = a.type.elem
    if isinstance(node_op, ast.Invert):
        if elem.is_float:
            raise em.error(f"'~' needs integer or bool operands, got {a.type}")
        if elem.is_bool:
            return em.op("not", [a], a.type)
        t = with_elem(a.type, tr.promote_int(elem))
        return em.op("not", [em.convert(a, t.elem)], t)
    t = with_elem(a.type, elem if elem.is_float else tr.promote_int(elem))
    a = em.convert(a, t.elem)
    if isinstance(node_op, ast.UAdd):
        return a
    return em.op("neg", [a], t)


def logical_not(em, a):
    if is_constexpr(a):
        return not a
    if isinstance(a, Value) and isinstance(a.type, ScalarType):
        return em.op("not", [em.as_bool(a)], bool_)
    raise em.error(f"'not' needs a scalar, got {describe(a)}; use ~ for element-wise not of a mask")


def truth(em, x):
    """A condition of if/while/ternary: a Python bool at compile time, else a bool scalar."""
    if is_constexpr(x):
        return bool(x)
    if isinstance(x, Value) and isinstance(x.type, ScalarType):
        return em.as_bool(x)
    if isinstance(x, Value) and isinstance(x.type, VectorType) and x.type.elem.is_bool:
        raise em.error(f"the condition is a {x.type} mask; use mask.any() or mask.all(), or "
                       f"cm.simd(mask) to run the body per lane")
    raise em.error(f"the condition must be a scalar, got {describe(x)}")


def truth_or_mask(em, x):
    """The condition of ``a if c else b``: like ``truth``, but a mask selects element-wise."""
    if isinstance(x, Value) and isinstance(x.type, VectorType):
        return em.as_bool(x)
    return truth(em, x)


def float_of(em, x):
    """Integer inputs of float-only math become f32 (weak numbers stay weak)."""
    if isinstance(x, Value) and not x.type.elem.is_float:
        return em.convert(x, f32)
    return x
