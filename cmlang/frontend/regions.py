"""How subscripts and register methods compile (reads -> rdregion/extract, writes -> wrregion/insert).

Vector ``v: vector[T, N]``:
    v[3]          extract [index=3]            (negative constants wrap like Python)
    v[i]          extract [index=0] with i as the dynamic index
    v[a:b:s]      rdregion [offset=a, vsize=1, vstride=0, hsize=len, hstride=s]
Matrix ``m: matrix[T, R, C]`` (row-major; strides count elements):
    m[i]          row i:    rdregion [offset=i*C, vsize=1, vstride=0, hsize=C, hstride=1]
    m[i, j]       extract [index=i*C+j]
    m[a:b:s, c:d:t]  rdregion [offset=a*C+c, vsize=rows, vstride=s*C, hsize=cols, hstride=t]
    m[a:b, j]     a column: rdregion [vsize=rows, vstride=C, hsize=1, hstride=1] -> vector
    m[i, a:b]     part of a row -> vector
Run-time indices become the dynamic offset operand (i32), e.g. m[i] -> offset i*C.
A slice may start at a run-time ``i`` when its length is a compile-time constant:
``v[i:i + 8]``, ``v[i:i + 16:2]``, ``m[r, c:c + 8]`` (CM ``select<8, 1>(i)``): the front end
reads such a slice as a ``DynamicSlice`` and ``i`` becomes the dynamic offset.
The same regions on the left of ``=`` write: ``v[2:10:2] = w`` -> wrregion, ``v[3] = x``
-> insert; the variable is rebound to the new register (SSA).

A region read is a *view* (numpy's rule): ``visitor`` remembers which variable and regions a
read came from (``values.View``) and turns writes through it into writes of the variable.

Register methods (``v.select(...)``, ``v.astype(T)``, ...) are the functions in METHODS.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..ir import Value
from ..types import ScalarType, VectorType, PtrType, i32, bool_
from .values import RegisterMethod, describe, bind_arguments


@dataclass
class Region:
    """A selection in a register's flattened elements. ``shape`` None: a single element."""
    offset: int
    vsize: int = 1
    vstride: int = 0
    hsize: int = 1
    hstride: int = 1
    shape: Optional[tuple] = None
    dyn: Optional[Value] = None     # run-time part of the offset (i32)

    def attrs(self):
        return dict(offset=self.offset, vsize=self.vsize, vstride=self.vstride if self.vsize > 1 else 0,
                    hsize=self.hsize, hstride=self.hstride)

    def indices(self):
        return [self.offset + r * self.vstride + c * self.hstride
                for r in range(self.vsize) for c in range(self.hsize)]


@dataclass(frozen=True)
class DynamicSlice:
    """``i:i + n:step`` with a run-time start ``i`` (i32) and ``count`` elements."""
    start: Value
    count: int
    step: int = 1


@dataclass
class _Pick:
    """What a subscript selects in one dimension: an index (count None) or a slice."""
    start: int
    count: Optional[int]
    step: int = 1
    dyn: Optional[Value] = None


# --- subscripts -----------------------------------------------------------------------

def read(em, base: Value, key):
    return read_region(em, base, subscript_region(em, base, key))


def write(em, base: Value, key, value):
    return write_region(em, base, subscript_region(em, base, key), value)


def read_region(em, base: Value, region: Region):
    t = base.type
    if region.shape is None:
        operands = [base] + ([region.dyn] if region.dyn is not None else [])
        return em.op("extract", operands, t.elem, index=region.offset)
    operands = [base] + ([region.dyn] if region.dyn is not None else [])
    return em.op("rdregion", operands, VectorType(t.elem, region.shape), **region.attrs())


def write_region(em, base: Value, region: Region, value):
    t = base.type
    if region.shape is None:
        if isinstance(value, Value) and not isinstance(value.type, ScalarType):
            raise em.error(f"cannot assign a {value.type} to one element of {t}")
        s = em.coerce(value, t.elem)
        operands = [base, s] + ([region.dyn] if region.dyn is not None else [])
        return em.op("insert", operands, t, index=region.offset)
    target = VectorType(t.elem, region.shape)
    value = reshaped(em, value, target.shape)
    if isinstance(value, Value) and isinstance(value.type, VectorType) and value.type.shape != target.shape:
        raise em.error(f"cannot assign a {value.type} to a region of {t} of type {target}")
    src = em.coerce(value, target)
    operands = [base, src] + ([region.dyn] if region.dyn is not None else [])
    return em.op("wrregion", operands, t, **region.attrs())


def _squeezed(shape):
    return tuple(n for n in shape if n != 1) or (1,)


def reshaped(em, value, shape):
    """A register whose shape differs from ``shape`` only in dimensions of 1 (a 1 x N matrix
    region for an N-vector, as CM allows), reshaped; anything else unchanged."""
    if not (isinstance(value, Value) and isinstance(value.type, VectorType)) or value.type.shape == tuple(shape):
        return value
    if _squeezed(value.type.shape) != _squeezed(tuple(shape)):
        return value
    return whole(em, value, VectorType(value.type.elem, tuple(shape)))


def whole(em, value: Value, t=None) -> Value:
    """A new register holding all of ``value``'s elements in order (as type ``t``, a reshape)."""
    n = value.type.size
    return em.op("rdregion", [value], t or value.type, offset=0, vsize=1, vstride=0, hsize=n, hstride=1)


def subscript_region(em, base: Value, key) -> Region:
    t = base.type
    if not isinstance(t, VectorType):
        if isinstance(t, ScalarType):
            raise em.error(f"a {t} scalar cannot be subscripted")
        raise em.error(f"cannot index {t} directly; use cm.load/cm.store or cm.gather/cm.scatter")
    if key is Ellipsis:         # v[...]: all of it
        rows, cols = t.shape if t.is_matrix else (1, t.size)
        return Region(0, rows, cols, cols, 1, shape=tuple(t.shape))
    if not t.is_matrix:
        if isinstance(key, tuple):
            raise em.error(f"{t} takes one index, got {len(key)}")
        p = _pick(em, key, t.size, t, 0)
        if p.count is None:
            return Region(p.start, dyn=p.dyn)
        return Region(p.start, 1, 0, p.count, p.step, shape=(p.count,), dyn=p.dyn)
    rows, cols = t.shape
    keys = key if isinstance(key, tuple) else (key, slice(None, None, None))
    if len(keys) != 2:
        raise em.error(f"{t} takes one or two indices, got {len(keys)}")
    r, c = _pick(em, keys[0], rows, t, 0), _pick(em, keys[1], cols, t, 1)
    offset = r.start * cols + c.start
    dyn = em.add_i32(em.mul_i32(r.dyn, cols) if r.dyn is not None else None, c.dyn)
    if r.count is None and c.count is None:
        return Region(offset, dyn=dyn)
    if r.count is None:
        return Region(offset, 1, 0, c.count, c.step, shape=(c.count,), dyn=dyn)
    if c.count is None:
        return Region(offset, r.count, r.step * cols, 1, 1, shape=(r.count,), dyn=dyn)
    return Region(offset, r.count, r.step * cols, c.count, c.step, shape=(r.count, c.count), dyn=dyn)


def _pick(em, key, extent, t, dim) -> _Pick:
    where = f" (dimension {dim} has {extent})" if t.is_matrix else ""
    if isinstance(key, DynamicSlice):
        last = (key.count - 1) * key.step
        if last >= extent:
            raise em.error(f"a region of {key.count} elements {key.step} apart does not fit {t}{where}")
        return _Pick(0, key.count, key.step, dyn=key.start)
    if isinstance(key, slice):
        return _slice_pick(em, key, extent, t, where)
    if isinstance(key, int) and not isinstance(key, bool):
        i = key + extent if key < 0 else key
        if not 0 <= i < extent:
            raise em.error(f"index {key} out of bounds for {t}{where}")
        return _Pick(i, None)
    if isinstance(key, Value) and isinstance(key.type, ScalarType) and key.type.is_int:
        return _Pick(0, None, dyn=em.int_index(key, "an index"))
    raise em.error(f"a register index must be an integer or a slice, got {describe(key)}")


def _slice_pick(em, key: slice, extent, t, where) -> _Pick:
    parts = (key.start, key.stop, key.step)
    if not all(x is None or (isinstance(x, int) and not isinstance(x, bool)) for x in parts):
        raise em.error("slice bounds of a register must be compile-time integers, or a run-time "
                       "start with a compile-time length: v[i:i + 8], v[i:i + 16:2]")
    step = 1 if key.step is None else key.step
    if step == 0:
        raise em.error("slice step cannot be zero")
    if step > 0:
        start = 0 if key.start is None else key.start
        stop = extent if key.stop is None else key.stop
    else:
        start = extent - 1 if key.start is None else key.start
        stop = -extent - 1 if key.stop is None else key.stop
    text = f"[{start}:{'' if key.stop is None and step < 0 else stop}:{step}]"
    start = start + extent if start < 0 else start
    stop = stop + extent if stop < 0 else stop
    count = len(range(start, stop, step))
    if count == 0:
        raise em.error(f"empty region {text} of {t}{where}")
    last = start + (count - 1) * step
    if not (0 <= start < extent and 0 <= last < extent):
        raise em.error(f"region {text} out of bounds for {t}{where}")
    return _Pick(start, count, step)


def check_region(em, region: Region, t, text):
    """A region given by numbers (select/replicate): every index must be inside ``t``."""
    if region.dyn is not None:
        return
    idx = region.indices()
    if min(idx) < 0 or max(idx) >= t.size:
        raise em.error(f"region {text} out of bounds for {t}")


# --- register methods: v.select(...), v.astype(T), ... --------------------------------------

def call_method(em, value: Value, name: str, args, kwargs):
    """``value.name(*args)`` -> (result, step): ``step`` is the region (or the ``format`` type)
    that makes the result a view of ``value``, None for a method whose result is new."""
    fn = METHODS[name]
    bound = bind_arguments(fn, f"{value.type}.{name}()", args, kwargs, em.error, skip=2)
    result = fn(em, value, *bound)
    return result if isinstance(result, tuple) else (result, None)


def _view(em, v, region):
    return read_region(em, v, region), region


def _const_int(em, x, what, positive=False):
    if not (isinstance(x, int) and not isinstance(x, bool)):
        raise em.error(f"{what} must be a compile-time integer, got {describe(x)}")
    if positive and x <= 0:
        raise em.error(f"{what} must be positive, got {x}")
    return x


def _offset_parts(em, x, what):
    """A static or dynamic offset: (int, None) or (0, i32 value)."""
    if isinstance(x, int) and not isinstance(x, bool):
        return x, None
    return 0, em.int_index(x, what)


def _register(em, v, method):
    if not isinstance(v.type, VectorType):
        raise em.error(f"{method}() needs a vector or matrix, got {v.type}")
    return v.type


def m_select(em, v, *args):
    """v.select(size, stride, offset=0); m.select(vsize, vstride, hsize, hstride, i=0, j=0)."""
    t = _register(em, v, "select")
    if not t.is_matrix:
        if not 2 <= len(args) <= 3:
            raise em.error(f"{t}.select() expects 2 to 3 arguments (size, stride, offset), got {len(args)}")
        size = _const_int(em, args[0], "select size", positive=True)
        stride = _const_int(em, args[1], "select stride")
        offset, dyn = _offset_parts(em, args[2] if len(args) > 2 else 0, "select offset")
        region = Region(offset, 1, 0, size, stride, shape=(size,), dyn=dyn)
        check_region(em, region, t, f"select({size}, {stride}, {offset})")
        return _view(em, v, region)
    if not 4 <= len(args) <= 6:
        raise em.error(f"{t}.select() expects 4 to 6 arguments (vsize, vstride, hsize, hstride, i, j), "
                       f"got {len(args)}")
    vsize = _const_int(em, args[0], "select vsize", positive=True)
    vstride = _const_int(em, args[1], "select vstride")
    hsize = _const_int(em, args[2], "select hsize", positive=True)
    hstride = _const_int(em, args[3], "select hstride")
    i, di = _offset_parts(em, args[4] if len(args) > 4 else 0, "select row offset")
    j, dj = _offset_parts(em, args[5] if len(args) > 5 else 0, "select column offset")
    cols = t.shape[1]
    dyn = em.add_i32(em.mul_i32(di, cols) if di is not None else None, dj)
    region = Region(i * cols + j, vsize, vstride * cols, hsize, hstride, shape=(vsize, hsize), dyn=dyn)
    if dyn is None:
        rows_used = i + (vsize - 1) * vstride
        cols_used = [j, j + (hsize - 1) * hstride]
        if not (0 <= i and rows_used < t.shape[0] and min(cols_used) >= 0 and max(cols_used) < cols):
            raise em.error(f"region select({vsize}, {vstride}, {hsize}, {hstride}, {i}, {j}) "
                           f"out of bounds for {t}")
    return _view(em, v, region)


def m_replicate(em, v, rep, vstride=0, width=None, hstride=1, offset=0):
    """r[i*width + j] = v[offset + i*vstride + j*hstride]: rep*width elements."""
    t = _register(em, v, "replicate")
    rep = _const_int(em, rep, "replicate count", positive=True)
    vstride = _const_int(em, vstride, "replicate vstride")
    width = t.size if width is None else _const_int(em, width, "replicate width", positive=True)
    hstride = _const_int(em, hstride, "replicate hstride")
    offset, dyn = _offset_parts(em, offset, "replicate offset")
    region = Region(offset, rep, vstride, width, hstride, shape=(rep * width,), dyn=dyn)
    check_region(em, region, t, f"replicate({rep}, {vstride}, {width}, {hstride}, {offset})")
    return read_region(em, v, region)


def m_iselect(em, v, idx):
    """r[i] = v[idx[i]]: a gather inside a register by an index vector."""
    t = _register(em, v, "iselect")
    return iselect(em, v, index_register(em, idx, t))


def iselect(em, v, idx):
    return em.op("iselect", [v, idx], VectorType(v.type.elem, idx.type.shape))


def index_register(em, idx, t):
    """An index vector for iselect: a compile-time tuple or an integer register, as i32."""
    if isinstance(idx, tuple) and all(isinstance(i, int) and not isinstance(i, bool) for i in idx):
        bad = [i for i in idx if not 0 <= i < t.size]
        if bad:
            raise em.error(f"index {bad[0]} out of bounds for {t}")
        return em.const(VectorType(i32, (len(idx),)), idx)
    if isinstance(idx, Value) and isinstance(idx.type, VectorType) and idx.type.elem.is_int:
        return em.convert(idx, i32)
    raise em.error(f"indices must be an integer register or a tuple of ints, got {describe(idx)}")


def m_row(em, v, i):
    t = _register(em, v, "row")
    if not t.is_matrix:
        raise em.error(f"row() needs a matrix, got {t}")
    return _view(em, v, subscript_region(em, v, (i, slice(None, None, None))))


def m_column(em, v, j):
    t = _register(em, v, "column")
    if not t.is_matrix:
        raise em.error(f"column() needs a matrix, got {t}")
    return _view(em, v, subscript_region(em, v, (slice(None, None, None), j)))


def m_astype(em, v, elem):
    """Element-wise conversion (C semantics; cm.sat(v.astype(T)) saturates)."""
    if not isinstance(elem, ScalarType):
        raise em.error(f"astype() needs a scalar type such as cm.f32, got {describe(elem)}")
    return em.convert(v, elem)


def m_format(em, v, elem, rows=None, cols=None):
    """Reinterprets the bits (CM format): format(T) -> vector, format(T, R, C) -> matrix."""
    t = v.type
    if not isinstance(elem, ScalarType) or elem.is_bool or t.elem.is_bool:
        raise em.error(f"format() reinterprets numeric registers as another numeric type, got "
                       f"{t} -> {describe(elem)}")
    bits = t.size * t.elem.bits
    if rows is None:
        if bits % elem.bits:
            raise em.error(f"cannot format {t} ({bits} bits) as {elem} elements")
        target = VectorType(elem, (bits // elem.bits,))
    else:
        shape = (rows,) if cols is None else (rows, cols)
        for n in shape:
            _const_int(em, n, "format size", positive=True)
        target = VectorType(elem, shape)
    if target.size * elem.bits != bits:
        raise em.error(f"cannot format {t} ({bits} bits) as {target} ({target.size * elem.bits} bits)")
    if target == t:
        return v
    return em.op("bitcast", [v], target), target


def m_copy(em, v):
    """An independent register with the same elements (not a view of ``v``)."""
    _register(em, v, "copy")
    return whole(em, v)


def _reduce_bool(em, v, kind):
    if isinstance(v.type, ScalarType):
        return em.as_bool(v)
    return em.op("reduce", [em.as_bool(v)], bool_, kind=kind, axis=None)


def m_any(em, v):
    """True if any element is nonzero."""
    return _reduce_bool(em, v, "or")


def m_all(em, v):
    """True if every element is nonzero."""
    return _reduce_bool(em, v, "and")


METHODS = {
    "select": m_select, "replicate": m_replicate, "iselect": m_iselect, "row": m_row,
    "column": m_column, "astype": m_astype, "format": m_format, "any": m_any, "all": m_all,
    "copy": m_copy,
}


def attribute(em, v: Value, name: str):
    """``v.<name>``: compile-time properties, or a method to call."""
    t = v.type
    if name in ("dtype", "elem"):
        return t.elem
    if isinstance(t, PtrType):
        raise em.error(f"{t} has no attribute '{name}'")
    if name == "shape":
        return tuple(t.shape)
    if name == "size":
        return t.size
    if name in METHODS:
        return RegisterMethod(v, name)
    if name == "merge":
        raise em.error(f"{t}.merge(x, mask) changes the register in place and is a statement of its "
                       "own (CM's member merge); for a new value use cm.merge(x, y, mask)")
    raise em.error(f"{t} has no attribute '{name}'")
