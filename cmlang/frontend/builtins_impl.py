"""How each builtin compiles: ``cm.load`` -> load, ``cm.exp`` -> exp, Python ``min`` -> min, ...

Every implementation is a function ``impl(em, <the builtin's parameters>)`` registered for
its builtin object with ``@implements``; ``call_builtin`` binds the call's arguments to
the implementation's signature (so wrong arity errors name the builtin and its
parameters) and calls it. Arguments arrive evaluated: run-time ``ir.Value``s, weak
Python numbers or other compile-time objects (see ``values``).
"""
from __future__ import annotations

import builtins
import numpy as np

from .. import language as lang
from ..ir import Value
from ..types import ScalarType, VectorType, PtrType, i32, i64, u8, u16, u32, f32, bool_, with_elem
from ..ir.ops import FLOAT_ONLY_UNARY
from . import operators as ops
from . import regions
from . import typing_rules as tr
from .values import is_weak, is_constexpr, is_numeric, is_register, describe, bind_arguments

IMPLS = {}      # builtin object -> (implementation, display name)


def implements(obj, display=None):
    def register(fn):
        IMPLS[obj] = (fn, display or f"cm.{obj.name}")
        return fn
    return register


def lookup(obj):
    """The (implementation, name) of a builtin object, or None."""
    try:
        return IMPLS.get(obj)
    except TypeError:   # unhashable
        return None


def call_builtin(em, obj, args, kwargs):
    fn, display = IMPLS[obj]
    return fn(em, *bind_arguments(fn, display, args, kwargs, em.error))


# --- small argument checks -------------------------------------------------------------

def _const_int(em, x, what, lo=None, hi=None):
    if not (isinstance(x, int) and not isinstance(x, bool)):
        raise em.error(f"{what} must be a compile-time integer, got {describe(x)}")
    if (lo is not None and x < lo) or (hi is not None and x > hi):
        bound = f"in {lo}..{hi}" if hi is not None else f">= {lo}"
        raise em.error(f"{what} must be {bound}, got {x}")
    return x


def _scalar_type(em, t, what):
    if not isinstance(t, ScalarType):
        raise em.error(f"{what} must be a scalar type such as cm.f32, got {describe(t)}")
    return t


def _numeric(em, x, what):
    if not is_numeric(x):
        raise em.error(f"{what} must be a number, scalar or register, got {describe(x)}")
    return x


def _reg(em, x, what):
    if not is_register(x):
        raise em.error(f"{what} must be a vector or matrix, got {describe(x)}")
    return x


# --- construction ----------------------------------------------------------------------

@implements(lang.zeros)
def zeros(em, type):
    return full(em, type, 0)


@implements(lang.full)
def full(em, type, value):
    if not isinstance(type, (ScalarType, VectorType)):
        raise em.error(f"the first argument must be a type such as vector[f32, 16], got {describe(type)}")
    if isinstance(value, Value) and not isinstance(value.type, ScalarType):
        raise em.error(f"the fill value must be a scalar, got {value.type}")
    if not is_weak(value) and not isinstance(value, Value):
        raise em.error(f"the fill value must be a number, got {describe(value)}")
    return em.coerce(value, type)


@implements(lang.iota)
def iota(em, elem, n, start=0, step=1):
    elem = _scalar_type(em, elem, "the element type")
    n = _const_int(em, n, "the length", lo=1)
    if not (is_weak(start) and is_weak(step)):
        raise em.error("iota start and step must be compile-time numbers")
    return em.const(VectorType(elem, (n,)), tuple(start + i * step for i in range(n)))


def construct(em, t: VectorType, args, kwargs):
    """``vector[f32, 4](1, 2, 3, 4)``, ``vector[f32, 16](s)``, ``matrix[f32, 2, 2](v)``."""
    if kwargs:
        raise em.error(f"{t}(...) takes no keyword arguments")
    if len(args) == 1 and isinstance(args[0], tuple):
        args = list(args[0])
    if len(args) == 1 and not isinstance(args[0], tuple):
        x = args[0]
        if is_register(x):
            if x.type.size != t.size:
                raise em.error(f"cannot make a {t} from a {x.type}: sizes differ")
            x = em.convert(x, t.elem)
            return x if x.type == t else em.op("bitcast", [x], t)
        return full(em, t, x)
    if len(args) != t.size:
        raise em.error(f"{t} needs 1 or {t.size} values, got {len(args)}")
    if all(is_weak(a) for a in args):
        return em.const(t, tuple(args))
    for a in args:
        if not (is_weak(a) or (isinstance(a, Value) and isinstance(a.type, ScalarType))):
            raise em.error(f"the elements of {t} must be scalars, got {describe(a)}")
    v = em.op("build", [em.coerce(a, t.elem) for a in args], VectorType(t.elem, (t.size,)))
    return v if v.type == t else em.op("bitcast", [v], t)


def scalar_cast(em, t: ScalarType, args, kwargs):
    """``cm.f32(x)``: a typed constant, or a conversion of a run-time value."""
    if kwargs or len(args) != 1:
        raise em.error(f"{t}() expects 1 argument, got {len(args) + len(kwargs)}")
    x = args[0]
    if is_weak(x):
        return em.const(t, x)
    if isinstance(x, Value) and not isinstance(x.type, PtrType):
        return em.convert(x, t)
    raise em.error(f"cannot convert {describe(x)} to {t}")


@implements(lang.merge)
def merge(em, a, b, mask):
    """select(mask, a, b): a where mask else b; an integer scalar mask is a bit mask."""
    for x, what in ((a, "merge's first value"), (b, "merge's second value"), (mask, "merge's mask")):
        _numeric(em, x, what)
    shape = ops.common_shape(em, [a, b, mask], "cm.merge")
    elem = ops.common_elem(em, [a, b], promote=False)
    t = VectorType(elem, shape) if shape else elem
    if shape and _is_int_scalar(mask):
        m = _bits_to_mask(em, mask, shape, "cm.merge: the bit mask")
    else:
        m = em.as_bool(mask) if not is_weak(mask) else em.const(bool_, bool(mask))
    if shape and isinstance(m.type, ScalarType):
        m = em.splat(m, VectorType(bool_, shape))
    return em.op("select", [m, em.coerce(a, t), em.coerce(b, t)], t)


def _is_int_scalar(x):
    if isinstance(x, bool):
        return False
    if isinstance(x, int):
        return True
    return isinstance(x, Value) and isinstance(x.type, ScalarType) and x.type.is_int


def _bits_to_mask(em, bits, shape, what):
    """bool register of ``shape``: element i (row-major) is bit i of the integer ``bits``."""
    n = int(np.prod(shape))
    if n > 32:
        raise em.error(f"{what}: a 32-bit mask covers at most 32 elements, the register has {n}")
    if is_weak(bits):
        return em.const(VectorType(bool_, shape), tuple(bool((int(bits) >> i) & 1) for i in range(n)))
    it = VectorType(u32, shape)
    word = em.splat(em.convert(bits, u32), it)
    shifted = em.op("shr", [word, em.const(it, tuple(range(n)))], it)
    return em.op("cmp", [em.op("and", [shifted, em.const(it, 1)], it), em.const(it, 0)],
                 VectorType(bool_, shape), pred="ne")


@implements(lang.pack_mask)
def pack_mask(em, mask):
    """u32 with bit i = element i of the mask: or-reduction of mask[i] << i."""
    if is_weak(mask):
        return int(bool(mask))
    _numeric(em, mask, "the mask of cm.pack_mask")
    m = em.as_bool(mask)
    if isinstance(m.type, ScalarType):
        return em.convert(m, u32)
    n = m.type.size
    if n > 32:
        raise em.error(f"cm.pack_mask: a mask of at most 32 elements fits in u32, got {m.type}")
    it = VectorType(u32, m.type.shape)
    placed = em.op("shl", [em.convert(m, u32), em.const(it, tuple(range(n)))], it)
    return em.op("reduce", [placed], u32, kind="or", axis=None)


@implements(lang.unpack_mask)
def unpack_mask(em, bits, n):
    n = _const_int(em, n, "cm.unpack_mask: the number of elements", 1, 32)
    if not _is_int_scalar(bits):
        raise em.error(f"cm.unpack_mask: the bits must be an integer scalar, got {describe(bits)}")
    return _bits_to_mask(em, bits, (n,), "cm.unpack_mask")


# --- cross-lane ----------------------------------------------------------------------------

@implements(lang.shuffle)
def shuffle(em, v, idx):
    _reg(em, v, "the shuffled value")
    return regions.iselect(em, v, regions.index_register(em, idx, v.type))


def _lane_index(em, t):
    """The index of each element (an i32 register of t's shape), 0..size-1."""
    return em.const(VectorType(i32, t.shape), tuple(range(t.size)))


@implements(lang.shuffle_xor)
def shuffle_xor(em, v, k):
    t = _reg(em, v, "the shuffled value").type
    if isinstance(k, int) and not isinstance(k, bool):
        idx = tuple(i ^ k for i in range(t.size))
        if max(idx) >= t.size or min(idx) < 0:
            raise em.error(f"shuffle_xor by {k} leaves {t}: some lane i ^ {k} is out of range")
        return regions.iselect(em, v, em.const(VectorType(i32, t.shape), idx))
    kk = em.splat(em.int_index(k, "the shuffle_xor mask"), VectorType(i32, t.shape))
    return regions.iselect(em, v, em.op("xor", [_lane_index(em, t), kk], kk.type))


@implements(lang.rotate)
def rotate(em, v, k):
    t = _reg(em, v, "the rotated value").type
    n = t.size
    if isinstance(k, int) and not isinstance(k, bool):
        return regions.iselect(em, v, em.const(VectorType(i32, t.shape), tuple((i + k) % n for i in range(n))))
    # (i + (k % n + n)) % n keeps the index non-negative with C's remainder.
    k = em.int_index(k, "the rotation")
    nn = em.const(i32, n)
    k = em.op("add", [em.op("rem", [k, nn], i32), nn], i32)
    it = VectorType(i32, t.shape)
    idx = em.op("add", [_lane_index(em, t), em.splat(k, it)], it)
    return regions.iselect(em, v, em.op("rem", [idx, em.const(it, n)], it))


@implements(lang.broadcast)
def broadcast(em, v, i):
    t = _reg(em, v, "the broadcast value").type
    if isinstance(i, int) and not isinstance(i, bool):
        if not 0 <= i < t.size:
            raise em.error(f"index {i} out of bounds for {t}")
        rows, cols = t.shape if t.is_matrix else (1, t.size)
        return em.op("rdregion", [v], t, offset=i, vsize=rows, vstride=0, hsize=cols, hstride=0)
    s = em.op("extract", [v, em.int_index(i, "the broadcast index")], t.elem, index=0)
    return em.splat(s, t)


def _reduction(kind, promote):
    def reduce(em, v, axis=None):
        _numeric(em, v, "the reduced value")
        if not is_register(v):
            if axis is not None:
                raise em.error("axis is only valid for matrices")
            return v
        t = v.type
        if promote and (t.elem.is_bool or t.elem.is_int):
            v = em.convert(v, tr.promote_int(t.elem))
        elem = v.type.elem
        if axis is None:
            return em.op("reduce", [v], elem, kind=kind, axis=None)
        if not t.is_matrix:
            raise em.error(f"axis is only valid for matrices, got {t}")
        axis = _const_int(em, axis, "axis", 0, 1)
        n = t.shape[1] if axis == 0 else t.shape[0]
        return em.op("reduce", [v], VectorType(elem, (n,)), kind=kind, axis=axis)
    return reduce


implements(lang.reduce_sum)(_reduction("add", promote=True))
implements(lang.reduce_prod)(_reduction("mul", promote=True))
implements(lang.reduce_max)(_reduction("max", promote=False))
implements(lang.reduce_min)(_reduction("min", promote=False))


# --- math -------------------------------------------------------------------------------

_NP_MATH = {
    "exp": np.exp, "exp2": np.exp2, "log": np.log, "log2": np.log2, "sqrt": np.sqrt,
    "rsqrt": lambda x: 1.0 / np.sqrt(x), "inv": lambda x: 1.0 / x, "sin": np.sin, "cos": np.cos,
    "tanh": np.tanh, "floor": np.floor, "ceil": np.ceil,
    "rndd": np.floor, "rndu": np.ceil, "rnde": np.rint, "rndz": np.trunc,
    "frc": lambda x: x - np.floor(x),
}


def _fold_math(name, x):
    """cm.exp(1.0) and friends on weak numbers: computed in float64 at compile time."""
    with np.errstate(all="ignore"):
        return float(_NP_MATH[name](np.float64(x)))


def _unary_math(name):
    def impl(em, x):
        _numeric(em, x, f"the argument of cm.{name}")
        if is_weak(x):
            return _fold_math(name, x)
        x = ops.float_of(em, x)
        return em.op(name, [x], x.type)
    return impl


for _name in sorted(FLOAT_ONLY_UNARY):
    implements(getattr(lang, _name))(_unary_math(_name))


# --- CM bit operations and integer arithmetic ------------------------------------------------

def _int_operand(em, x, who):
    """An integer operand of at most 32 bits as a run-time value (weak ints become i32 or u32)."""
    if is_weak(x):
        if isinstance(x, float):
            raise em.error(f"{who} takes integers, got {x!r}")
        return em.const(i32 if -2**31 <= x < 2**31 else u32, x)
    _numeric(em, x, f"the argument of {who}")
    elem = x.type.elem
    if not elem.is_int or elem.bits > 32:
        raise em.error(f"{who} takes integers of at most 32 bits, got {x.type}")
    return x


def _as_u32_bits(em, x):
    """x's own bits zero-extended to u32 (i8 -1 -> 0xFF): what cbit/fbl count."""
    elem = x.type.elem
    if elem.is_signed:
        x = em.op("bitcast", [x], with_elem(x.type, {8: u8, 16: u16, 32: u32}[elem.bits]))
    return em.convert(x, u32)


def _promoted_32(em, x):
    """C integer promotion to i32 or u32 (what CM's dword-only fbh/lzd see)."""
    return em.convert(x, tr.promote_int(x.type.elem))


def _bit_scan(name, operand, result_u32):
    def impl(em, x):
        x = operand(em, _int_operand(em, x, f"cm.{name}"))
        r = em.op(name, [x], x.type)
        return em.convert(r, u32) if result_u32 else r
    return impl


implements(lang.cbit)(_bit_scan("cbit", _as_u32_bits, True))
implements(lang.fbl)(_bit_scan("fbl", _as_u32_bits, True))
implements(lang.fbh)(_bit_scan("fbh", _promoted_32, False))
implements(lang.lzd)(_bit_scan("lzd", _promoted_32, True))


@implements(lang.avg)
def avg(em, a, b):
    if is_weak(a) and is_weak(b) and not isinstance(a, float) and not isinstance(b, float):
        return (a + b + 1) >> 1
    (a, b), t = ops.unify(em, [_int_operand(em, a, "cm.avg") if not is_weak(a) else a,
                               _int_operand(em, b, "cm.avg") if not is_weak(b) else b],
                          "cm.avg", promote=False)
    if not t.elem.is_int or t.elem.bits > 32:
        raise em.error(f"cm.avg takes integers of at most 32 bits, got {t}")
    return em.op("avg", [a, b], t)


@implements(lang.mulhi)
def mulhi(em, a, b):
    a = _int_operand(em, a, "cm.mulhi") if not is_weak(a) else a
    b = _int_operand(em, b, "cm.mulhi") if not is_weak(b) else b
    (a, b), t = ops.unify(em, [a, b], "cm.mulhi")
    if not t.elem.is_int or t.elem.bits != 32:
        raise em.error(f"cm.mulhi takes integers of at most 32 bits, got {t}")
    return em.op("mulhi", [a, b], t)


def _dot(name):
    """CM's dp2/dp3/dp4/dph: per group of 4 elements, one sum of products, replicated in it."""
    terms = {"dp2": 2, "dp3": 3, "dp4": 4, "dph": 3}[name]

    def impl(em, a, b):
        _reg(em, a, f"the first argument of cm.{name}")
        _numeric(em, b, f"the second argument of cm.{name}")
        (a, b), t = ops.unify(em, [ops.float_of(em, a), ops.float_of(em, b)], f"cm.{name}")
        if not t.elem.is_float:
            (a, b), t = ops.unify(em, [em.convert(a, f32), em.convert(b, f32)], f"cm.{name}")
        n = t.size
        if n % 4:
            raise em.error(f"cm.{name} works on groups of 4 elements: the size must be a multiple "
                           f"of 4, got {t}")
        g = n // 4
        lane_t = VectorType(t.elem, (g,))

        def lane(v, k):      # element k of every group of 4
            return em.op("rdregion", [v], lane_t, offset=k, vsize=g, vstride=4, hsize=1, hstride=1)

        product = em.op("mul", [a, b], t)
        total = lane(product, 0)
        for k in range(1, terms):
            total = em.op("add", [total, lane(product, k)], lane_t)
        if name == "dph":
            total = em.op("add", [total, lane(b, 3)], lane_t)
        flat = VectorType(t.elem, (n,))
        spread = em.op("rdregion", [total], flat, offset=0, vsize=g, vstride=1, hsize=4, hstride=0)
        return spread if flat == t else em.op("bitcast", [spread], t)
    return impl


for _name in ("dp2", "dp3", "dp4", "dph"):
    implements(getattr(lang, _name))(_dot(_name))


@implements(lang.abs)
def abs_(em, x):
    _numeric(em, x, "the argument of abs")
    if is_weak(x):
        return builtins.abs(x)
    if x.type.elem.is_bool:
        x = em.convert(x, i32)
    if x.type.elem.is_int and not x.type.elem.is_signed:
        return x
    return em.op("abs", [x], x.type)


implements(builtins.abs, "abs")(abs_)


def _min_max(opname):
    def impl(em, *values):
        if len(values) == 1 and isinstance(values[0], tuple):
            values = values[0]
        if len(values) < 2:
            if len(values) == 1 and is_register(values[0]):
                raise em.error(f"{opname}() of one register: use cm.reduce_{opname}(v)")
            raise em.error(f"{opname}() expects at least 2 arguments, got {len(values)}")
        result = values[0]
        for x in values[1:]:
            if is_constexpr(result) and is_constexpr(x):
                result = builtins.min(result, x) if opname == "min" else builtins.max(result, x)
                continue
            _numeric(em, result, f"an argument of {opname}")
            _numeric(em, x, f"an argument of {opname}")
            (a, b), t = ops.unify(em, [result, x], f"{opname}()", promote=False)
            result = em.op(opname, [a, b], t)
        return result
    return impl


for _obj, _name in ((lang.min, "min"), (lang.max, "max")):
    implements(_obj)(_min_max(_name))
implements(builtins.min, "min")(_min_max("min"))
implements(builtins.max, "max")(_min_max("max"))


@implements(lang.fma)
def fma(em, a, b, c):
    for x in (a, b, c):
        _numeric(em, x, "an argument of cm.fma")
    if all(is_weak(x) for x in (a, b, c)):
        return a * b + c
    operands, t = ops.unify(em, [a, b, c], "cm.fma")
    return em.op("fma", operands, t)


@implements(lang.pow)
def pow_(em, a, b):
    _numeric(em, a, "the base of cm.pow")
    _numeric(em, b, "the exponent of cm.pow")
    if is_weak(a) and is_weak(b):
        return float(a) ** float(b)
    (a, b), t = ops.unify(em, [ops.float_of(em, a), ops.float_of(em, b)], "cm.pow")
    if not t.elem.is_float:
        (a, b), t = ops.unify(em, [em.convert(a, f32), em.convert(b, f32)], "cm.pow")
    return em.op("pow", [a, b], t)


@implements(lang.dpas)
def dpas(em, acc, a, b):
    for x, what in ((acc, "the accumulator"), (a, "a"), (b, "b")):
        if not (is_register(x) and x.type.is_matrix):
            raise em.error(f"cm.dpas: {what} must be a matrix, got {describe(x)}")
    ta, tb, tc = a.type, b.type, acc.type
    integer = ta.elem.name in ("i8", "u8") and tb.elem.name in ("i8", "u8")
    if integer:
        if tc.elem != i32:
            raise em.error(f"cm.dpas: with i8/u8 inputs the accumulator must be matrix[i32, M, N], got {tc}")
    elif tc.elem != f32:
        raise em.error(f"cm.dpas: the accumulator must be matrix[f32, M, N], got {tc}")
    elif ta.elem != tb.elem or ta.elem.name not in ("f16", "bf16", "f32"):
        raise em.error(f"cm.dpas: a and b need one element type of f16, bf16, f32 (or each of i8, u8); "
                       f"got {ta} and {tb}")
    (m, k), (k2, n) = ta.shape, tb.shape
    if k != k2 or tc.shape != (m, n):
        raise em.error(f"cm.dpas: shapes do not match: acc {tc}, a {ta}, b {tb} "
                       f"(need acc[M, N] + a[M, K] @ b[K, N])")
    return em.op("dpas", [acc, a, b], tc)


# --- memory -----------------------------------------------------------------------------

def _pointer(em, p, who):
    if not (isinstance(p, Value) and isinstance(p.type, PtrType)):
        raise em.error(f"{who}: the first argument must be a pointer (a cm.ptr[T] parameter or "
                       f"cm.slm), got {describe(p)}")
    return p.type


def _stored(em, v, t, who):
    """A value written to memory of element type ``t.elem`` as exactly type ``t``:
    lossless conversions and weak numbers that fit are implicit, others need astype."""
    if is_weak(v):
        if isinstance(v, float) and not t.elem.is_float:
            raise em.error(f"{who}: the float constant {v!r} cannot be stored into memory of "
                           f"{t.elem} implicitly")
        try:
            tr.check_constant(v, t.elem)
        except tr.ConstantRangeError as e:
            raise em.error(f"{who}: {e}") from None
        return em.coerce(v, t)
    if not (isinstance(v, Value) and not isinstance(v.type, PtrType)):
        raise em.error(f"{who}: the value must be a number, scalar or register, got {describe(v)}")
    if not tr.is_lossless(v.type.elem, t.elem):
        raise em.error(f"{who}: cannot store {v.type} into memory of {t.elem} implicitly; convert it "
                       f"with .astype(cm.{t.elem})")
    return em.coerce(v, t, what=f"{who}: the value")


def _offsets(em, offs, who, allow_scalar=False):
    """Per-element offsets: an integer register (or tuple) as i32 (i64 stays i64)."""
    if isinstance(offs, tuple):
        if not all(isinstance(o, int) and not isinstance(o, bool) for o in offs):
            raise em.error(f"{who}: offsets must be integers")
        return em.const(VectorType(i32, (len(offs),)), offs)
    if is_register(offs) and offs.type.elem.is_int:
        return em.convert(offs, i64 if offs.type.elem.bits == 64 else i32)
    if allow_scalar:
        return em.memory_offset(offs, f"{who}: the offset")
    raise em.error(f"{who}: offsets must be an integer register, got {describe(offs)}")


def _mask(em, mask, shape, who):
    if mask is None:
        return []
    if is_weak(mask):
        m = em.const(bool_, bool(mask))
    elif isinstance(mask, Value) and not isinstance(mask.type, PtrType):
        m = em.as_bool(mask)
    else:
        raise em.error(f"{who}: the mask must be a bool register, got {describe(mask)}")
    want = VectorType(bool_, shape)
    if isinstance(m.type, ScalarType):
        return [em.splat(m, want)]
    if m.type != want:
        raise em.error(f"{who}: the mask must be {want}, got {m.type}")
    return [m]


@implements(lang.simd)
def simd(em, mask):
    raise em.error("cm.simd(mask) can only be the whole condition of an if, elif or while")


def _lane_offsets(em, off, rows, cols, pitch=None):
    """The element offsets of a load/store of rows x cols elements at ``off`` (rows ``pitch``
    apart), as a vector: how a predicated (SIMD control flow) load/store addresses memory."""
    n = rows * cols
    t = VectorType(off.type, (n,))
    offs = em.op("add", [em.splat(off, t), em.const(t, tuple(i % cols for i in range(n)))], t)
    if rows > 1:
        row_starts = em.op("mul", [em.const(t, tuple(i // cols for i in range(n))), em.splat(pitch, t)], t)
        offs = em.op("add", [offs, row_starts], t)
    return offs


def _flat(em, v):
    if not v.type.is_matrix:
        return v
    n = v.type.size
    return em.op("rdregion", [v], VectorType(v.type.elem, (n,)), offset=0, vsize=1, vstride=0, hsize=n, hstride=1)


def _predicated_load(em, p, off, shape, pitch, lanes):
    """A load under SIMD control flow: a gather of the active lanes (the others read 0)."""
    rows, cols = shape if len(shape) == 2 else (1, shape[0])
    t = VectorType(p.type.elem, shape)
    v = em.op("gather", [p, _lane_offsets(em, off, rows, cols, pitch), lanes], VectorType(t.elem, (rows * cols,)))
    if t.is_matrix:
        v = em.op("rdregion", [v], t, offset=0, vsize=1, vstride=0, hsize=rows * cols, hstride=1)
    return v


def _predicated_store(em, p, off, v, pitch, lanes):
    """A store under SIMD control flow: a scatter of the active lanes."""
    rows, cols = v.type.shape if v.type.is_matrix else (1, v.type.size)
    em.effect("scatter", [p, _lane_offsets(em, off, rows, cols, pitch), _flat(em, v), lanes])


def _simd_mask_and(em, mask_operands, shape):
    """The mask operands of a gather/scatter of ``shape`` with SIMD control flow's active lanes
    and-ed in (when it has as many lanes as the access has elements)."""
    if shape is None:
        return mask_operands       # one element: not predicated (as a scalar store)
    n = 1
    for d in shape:
        n *= d
    lanes = em.simd_lanes(n)
    if lanes is None:
        return mask_operands
    want = VectorType(bool_, tuple(shape))
    if lanes.type != want:
        lanes = em.op("rdregion", [lanes], want, offset=0, vsize=1, vstride=0, hsize=n, hstride=1)
    if not mask_operands:
        return [lanes]
    return [em.op("and", [mask_operands[0], lanes], want)]


def _shape(t):
    """A register's shape; a scalar (one element, e.g. an atomic at a scalar offset) has none."""
    return t.shape if isinstance(t, VectorType) else None


def _no_simd(em, n, who):
    if em.simd_lanes(n) is not None:
        raise em.error(f"{who} of {n} elements under SIMD control flow of {n} lanes is not supported "
                       "yet (it would not be predicated); move it out of the cm.simd block")


@implements(lang.load)
def load(em, p, offset, shape, pitch=None):
    t = _pointer(em, p, "cm.load")
    off = em.memory_offset(offset, "cm.load: the offset")
    if isinstance(shape, tuple):
        if len(shape) != 2 or pitch is None:
            raise em.error("cm.load of a matrix takes (p, offset, (rows, cols), pitch)")
        r = _const_int(em, shape[0], "the number of rows", lo=1)
        c = _const_int(em, shape[1], "the number of columns", lo=1)
        pitch = em.memory_offset(pitch, "cm.load: the pitch")
        pitch = em.convert(pitch, off.type)
        lanes = em.simd_lanes(r * c)
        if lanes is not None:
            return _predicated_load(em, p, off, (r, c), pitch, lanes)
        return em.op("load2d", [p, off, pitch], VectorType(t.elem, (r, c)))
    n = _const_int(em, shape, "the number of elements", lo=1)
    if pitch is not None:
        raise em.error("cm.load: a pitch needs a (rows, cols) shape")
    lanes = em.simd_lanes(n)
    if lanes is not None:
        return _predicated_load(em, p, off, (n,), None, lanes)
    return em.op("load", [p, off], VectorType(t.elem, (n,)))


@implements(lang.store)
def store(em, p, offset, value, pitch=None):
    t = _pointer(em, p, "cm.store")
    off = em.memory_offset(offset, "cm.store: the offset")
    # A register stores all its elements, a scalar one element.
    target = with_elem(value.type, t.elem) if is_register(value) else t.elem
    v = _stored(em, value, target, "cm.store")
    lanes = em.simd_lanes(v.type.size) if isinstance(v.type, VectorType) else None
    if pitch is None:
        if lanes is not None:
            _predicated_store(em, p, off, v, None, lanes)
        else:
            em.effect("store", [p, off, v])
        return None
    if not (isinstance(v.type, VectorType) and v.type.is_matrix):
        raise em.error(f"cm.store with a pitch stores a matrix, got {v.type}")
    pitch = em.convert(em.memory_offset(pitch, "cm.store: the pitch"), off.type)
    if lanes is not None:
        _predicated_store(em, p, off, v, pitch, lanes)
        return None
    em.effect("store2d", [p, off, pitch, v])
    return None


def _surface(em, who, x, y, width, height, pitch):
    """The i32 operands (x, y, width, height, pitch) of a 2-D block access."""
    out = []
    for value, what in ((x, "x"), (y, "y"), (width, "the width"), (height, "the height"), (pitch, "the pitch")):
        if isinstance(value, int) and not isinstance(value, bool):
            if not -2**31 <= value < 2**31:
                raise em.error(f"{who}: {what} must fit in i32, got {value}")
            out.append(em.const(i32, value))
        elif isinstance(value, Value) and isinstance(value.type, ScalarType) and value.type.is_int:
            out.append(em.convert(value, i32))
        else:
            raise em.error(f"{who}: {what} must be an integer scalar, got {describe(value)}")
    return out


def _block_shape(em, shape, who):
    if not (isinstance(shape, tuple) and len(shape) == 2):
        raise em.error(f"{who}: the block shape must be (rows, cols), got {describe(shape)}")
    return (_const_int(em, shape[0], f"{who}: the number of rows", lo=1),
            _const_int(em, shape[1], f"{who}: the number of columns", lo=1))


@implements(lang.load_2d)
def load_2d(em, p, shape, x, y, width, height, pitch, transpose=False):
    t = _pointer(em, p, "cm.load_2d")
    rows, cols = _block_shape(em, shape, "cm.load_2d")
    if not isinstance(transpose, bool):
        raise em.error(f"cm.load_2d: transpose must be True or False, got {describe(transpose)}")
    result = VectorType(t.elem, (cols, rows) if transpose else (rows, cols))
    _no_simd(em, result.size, "cm.load_2d")
    return em.op("block_load2d", [p, *_surface(em, "cm.load_2d", x, y, width, height, pitch)], result,
                 transpose=int(transpose))


@implements(lang.store_2d)
def store_2d(em, p, m, x, y, width, height, pitch):
    t = _pointer(em, p, "cm.store_2d")
    if not (is_register(m) and m.type.is_matrix):
        raise em.error(f"cm.store_2d stores a matrix, got {describe(m)}")
    v = _stored(em, m, with_elem(m.type, t.elem), "cm.store_2d")
    _no_simd(em, v.type.size, "cm.store_2d")
    em.effect("block_store2d", [p, *_surface(em, "cm.store_2d", x, y, width, height, pitch), v])
    return None


@implements(lang.prefetch_2d)
def prefetch_2d(em, p, shape, x, y, width, height, pitch):
    _pointer(em, p, "cm.prefetch_2d")
    rows, cols = _block_shape(em, shape, "cm.prefetch_2d")
    em.effect("block_prefetch2d", [p, *_surface(em, "cm.prefetch_2d", x, y, width, height, pitch)],
              rows=rows, cols=cols)
    return None


@implements(lang.gather)
def gather(em, p, offsets, mask=None):
    t = _pointer(em, p, "cm.gather")
    offs = _offsets(em, offsets, "cm.gather")
    m = _simd_mask_and(em, _mask(em, mask, offs.type.shape, "cm.gather"), offs.type.shape)
    return em.op("gather", [p, offs, *m], VectorType(t.elem, offs.type.shape))


@implements(lang.scatter)
def scatter(em, p, offsets, values, mask=None):
    t = _pointer(em, p, "cm.scatter")
    offs = _offsets(em, offsets, "cm.scatter")
    v = _stored(em, values, VectorType(t.elem, offs.type.shape), "cm.scatter")
    m = _simd_mask_and(em, _mask(em, mask, offs.type.shape, "cm.scatter"), offs.type.shape)
    em.effect("scatter", [p, offs, v, *m])
    return None


def _atomic(kind):
    who = f"cm.atomic_{kind}"

    def impl(em, p, offsets, value):
        t = _pointer(em, p, who)
        offs = _offsets(em, offsets, who, allow_scalar=True)
        vt = with_elem(offs.type, t.elem)
        v = _stored(em, value, vt, who)
        return em.op("atomic", [p, offs, v, *_simd_mask_and(em, [], _shape(vt))], vt, kind=kind)
    return impl


for _kind in ("add", "sub", "min", "max", "xchg", "and", "or", "xor"):
    implements(getattr(lang, f"atomic_{_kind}"))(_atomic(_kind))


@implements(lang.atomic_cmpxchg)
def atomic_cmpxchg(em, p, offsets, expected, desired):
    who = "cm.atomic_cmpxchg"
    t = _pointer(em, p, who)
    offs = _offsets(em, offsets, who, allow_scalar=True)
    vt = with_elem(offs.type, t.elem)
    e, d = _stored(em, expected, vt, who), _stored(em, desired, vt, who)
    return em.op("atomic", [p, offs, e, d, *_simd_mask_and(em, [], _shape(vt))], vt, kind="cmpxchg")


@implements(lang.slm)
def slm(em, elem, n):
    elem = _scalar_type(em, elem, "the element type of cm.slm")
    n = _const_int(em, n, "the number of cm.slm elements", lo=1)
    if not em.at_top_level():
        raise em.error("cm.slm can only be called at the top level of the kernel body "
                       "(not inside loops or branches)")
    return em.op("slm", [], PtrType(elem, "local"), n=n)


@implements(lang.barrier)
def barrier(em):
    em.effect("barrier")


@implements(lang.fence)
def fence(em):
    em.effect("fence")


def _id(name):
    def impl(em, dim):
        dim = _const_int(em, dim, f"the dimension of cm.{name}", 0, 2)
        return em.op(name, [], i32, dim=dim)
    return impl


for _name in ("thread_id", "group_id", "local_id", "group_count", "local_size"):
    implements(getattr(lang, _name))(_id(_name))


# --- Python builtins ---------------------------------------------------------------------

@implements(builtins.int, "int")
def int_(em, x):
    if is_weak(x):
        return int(x)
    _numeric(em, x, "the argument of int()")
    return em.convert(x, i32)


@implements(builtins.float, "float")
def float_(em, x):
    if is_weak(x):
        return float(x)
    _numeric(em, x, "the argument of float()")
    return em.convert(x, f32)


@implements(builtins.bool, "bool")
def bool_of(em, x):
    if is_constexpr(x):
        return bool(x)
    _numeric(em, x, "the argument of bool()")
    return em.as_bool(x)


@implements(builtins.len, "len")
def len_(em, x):
    if isinstance(x, tuple):
        return len(x)
    if is_register(x):
        return x.type.shape[0]
    raise em.error(f"len() needs a tuple or a register, got {describe(x)}")


@implements(builtins.breakpoint, "breakpoint")
def breakpoint_(em):
    em.effect("breakpoint")


@implements(builtins.enumerate, "enumerate")
def enumerate_(em, items, start=0):
    if not isinstance(items, tuple):
        raise em.error(f"enumerate() in a kernel needs a tuple, got {describe(items)}")
    return tuple((start + i, x) for i, x in enumerate(items))


@implements(builtins.zip, "zip")
def zip_(em, *items):
    if not all(isinstance(x, tuple) for x in items):
        raise em.error("zip() in a kernel needs tuples")
    return tuple(zip(*items))
