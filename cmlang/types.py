"""The type system: scalars, register vectors/matrices, pointers, constexpr.

Every type has a stable textual spelling (``str(t)``) used by the IR printer and
parser: ``f32``, ``vector<f32, 16>``, ``matrix<f32, 8, 16>``, ``ptr<f32>``,
``ptr<f32, local>``.  Types are immutable and compare by value.
"""
from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

from .errors import CompileError
from .limits import REGISTER_ELEMENTS


@dataclass(frozen=True)
class ScalarType:
    name: str
    kind: str  # 'i' signed int, 'u' unsigned int, 'f' float, 'b' bool
    bits: int

    def __str__(self):
        return self.name

    __repr__ = __str__

    @property
    def is_float(self):
        return self.kind == "f"

    @property
    def is_int(self):
        return self.kind in "iu"

    @property
    def is_signed(self):
        return self.kind == "i"

    @property
    def is_bool(self):
        return self.kind == "b"

    @property
    def nbytes(self):
        return max(1, self.bits // 8)

    @property
    def np_dtype(self):
        """The numpy dtype that holds this type in host memory (bf16 travels as uint16)."""
        return _NP_DTYPES[self.name]

    def holds(self, dtype) -> bool:
        """Whether host memory of numpy ``dtype`` holds elements of this type: np_dtype, and
        for bf16 also a numpy bfloat16 dtype (ml_dtypes) of the same bits."""
        dtype = np.dtype(dtype)
        return dtype == np.dtype(self.np_dtype) or (
            self.name == "bf16" and dtype.name == "bfloat16" and dtype.itemsize == 2)

    # Element type of a scalar is itself: lets code treat scalars as 1-element shapes.
    @property
    def elem(self):
        return self

    @property
    def shape(self):
        return ()

    @property
    def size(self):
        return 1

    def __call__(self, value):
        """``cm.f32(1.5)`` in a kernel is a typed constant; on the host, a numpy scalar."""
        return np.dtype(self.np_dtype).type(value)


i8 = ScalarType("i8", "i", 8)
i16 = ScalarType("i16", "i", 16)
i32 = ScalarType("i32", "i", 32)
i64 = ScalarType("i64", "i", 64)
u8 = ScalarType("u8", "u", 8)
u16 = ScalarType("u16", "u", 16)
u32 = ScalarType("u32", "u", 32)
u64 = ScalarType("u64", "u", 64)
f16 = ScalarType("f16", "f", 16)
bf16 = ScalarType("bf16", "f", 16)
f32 = ScalarType("f32", "f", 32)
f64 = ScalarType("f64", "f", 64)
bool_ = ScalarType("bool", "b", 1)

SCALAR_TYPES = {t.name: t for t in (i8, i16, i32, i64, u8, u16, u32, u64, f16, bf16, f32, f64, bool_)}
# The largest finite value of each floating-point type (constant range checks, saturation).
FLOAT_MAX = {"f16": 65504.0, "bf16": float.fromhex("0x1.fep127"),
             "f32": float(np.finfo(np.float32).max), "f64": float(np.finfo(np.float64).max)}

_NP_DTYPES = {
    "i8": np.int8, "i16": np.int16, "i32": np.int32, "i64": np.int64,
    "u8": np.uint8, "u16": np.uint16, "u32": np.uint32, "u64": np.uint64,
    "f16": np.float16, "bf16": np.uint16, "f32": np.float32, "f64": np.float64,
    "bool": np.bool_,
}


def scalar_from_numpy(dtype) -> ScalarType:
    """The cmlang scalar type of a numpy dtype (uint16 maps to u16, never bf16)."""
    dtype = np.dtype(dtype)
    for name, npt in _NP_DTYPES.items():
        if name != "bf16" and np.dtype(npt) == dtype:
            return SCALAR_TYPES[name]
    raise TypeError(f"numpy dtype {dtype} has no cmlang scalar type")


@dataclass(frozen=True)
class VectorType:
    """A register value: ``vector[T, N]`` has shape (N,), ``matrix[T, R, C]`` has (R, C).

    Matrices are row-major; every region operation sees the flattened element order.
    """
    elem: ScalarType
    shape: tuple

    def __post_init__(self):
        if len(self.shape) not in (1, 2) or any((not isinstance(d, int)) or d <= 0 for d in self.shape):
            raise TypeError(f"bad register shape {self.shape}")
        if math.prod(self.shape) > REGISTER_ELEMENTS.value:
            raise CompileError(REGISTER_ELEMENTS.exceeded(
                math.prod(self.shape), f"register {self}"))

    @property
    def size(self):
        return math.prod(self.shape)

    @property
    def is_matrix(self):
        return len(self.shape) == 2

    def with_elem(self, elem):
        return VectorType(elem, self.shape)

    def __str__(self):
        if self.is_matrix:
            return f"matrix<{self.elem}, {self.shape[0]}, {self.shape[1]}>"
        return f"vector<{self.elem}, {self.shape[0]}>"

    __repr__ = __str__


@dataclass(frozen=True)
class ElementParam:
    """The element type of ``cm.ptr[T]`` where ``T`` is a ``cm.constexpr`` parameter of the
    same kernel: each specialization reads the type from that constexpr's value, so one
    kernel source serves f32, f16 and bf16 buffers."""
    name: str

    def __str__(self):
        return self.name

    __repr__ = __str__

    def resolve(self, constexprs: dict, kernel: str, param: str) -> ScalarType:
        value = constexprs.get(self.name)
        try:
            return _scalar(value)
        except TypeError:
            raise CompileError(f"{kernel}: parameter '{param}' is cm.ptr[{self.name}], so the constexpr "
                               f"'{self.name}' must be a cmlang scalar type (cm.f32, cm.f16, cm.bf16, ...), "
                               f"got {value!r}") from None


@dataclass(frozen=True)
class PtrType:
    """A pointer to memory: ``global`` (a kernel buffer argument) or ``local`` (SLM).
    ``elem`` is an ElementParam in a kernel's declared signature only (``cm.ptr[T]``);
    the IR always has a scalar type there."""
    elem: ScalarType
    space: str = "global"

    def __str__(self):
        return f"ptr<{self.elem}>" if self.space == "global" else f"ptr<{self.elem}, {self.space}>"

    __repr__ = __str__


def vec(elem, n):
    return VectorType(elem, (n,))


def mat(elem, r, c):
    return VectorType(elem, (r, c))


def shape_of(t):
    return t.shape if isinstance(t, VectorType) else ()


def elem_of(t):
    return t.elem


def with_elem(t, elem):
    """Same shape as ``t`` (scalar or register) with another element type."""
    return VectorType(elem, t.shape) if isinstance(t, VectorType) else elem


# ---------------------------------------------------------------------------
# The user-facing spellings: vector[f32, 16], matrix[f32, 8, 16], ptr[f32], constexpr.

class TypeSpellingError(CompileError, TypeError):
    """``cm.vector[...]`` / ``cm.matrix[...]`` / ``cm.ptr[...]`` spelled wrong, at the line
    that spells it (also a TypeError, as Python's own subscript errors are)."""


def _spelling_error(message):
    """A TypeSpellingError at the first frame outside cmlang: the user's annotation or
    module line (inside a kernel body the front end puts the node's place instead)."""
    import os
    import sys
    from .ir.core import Location
    here = os.path.dirname(os.path.abspath(__file__))
    frame = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(here + os.sep):
        frame = frame.f_back
    loc = Location(frame.f_code.co_filename, frame.f_lineno, 0) if frame is not None else None
    return TypeSpellingError(message, loc)


def _sizes(spelling, key, count):
    """``key`` of ``spelling`` (e.g. ``cm.vector[T, N]``) as (element type, sizes)."""
    key = key if isinstance(key, tuple) else (key,)
    if len(key) != count + 1:
        raise _spelling_error(f"{spelling} takes an element type and {count} size"
                              f"{'s' if count > 1 else ''}, got {len(key)} item(s): {key!r}")
    sizes = key[1:]
    for n in sizes:
        if type(n) is not int and not (hasattr(n, "__index__") and not isinstance(n, bool)
                                       and type(n).__module__ == "numpy"):
            raise _spelling_error(f"{spelling}: sizes must be ints, got {n!r}")
        if int(n) <= 0:
            raise _spelling_error(f"{spelling}: sizes must be positive, got {int(n)}")
    try:
        elem = _scalar(key[0])
    except TypeError as e:
        raise _spelling_error(f"{spelling}: {e}") from None
    return elem, tuple(int(n) for n in sizes)


class _VectorSpelling:
    def __getitem__(self, key):
        elem, shape = _sizes("cm.vector[T, N]", key, 1)
        return VectorType(elem, shape)

    def __repr__(self):
        return "cmlang.vector"


class _MatrixSpelling:
    def __getitem__(self, key):
        elem, shape = _sizes("cm.matrix[T, ROWS, COLS]", key, 2)
        return VectorType(elem, shape)

    def __repr__(self):
        return "cmlang.matrix"


class _PtrSpelling:
    def __getitem__(self, elem):
        if isinstance(elem, ElementParam):
            return PtrType(elem)
        try:
            return PtrType(_scalar(elem))
        except TypeError as e:
            raise _spelling_error(f"cm.ptr[T]: {e}") from None

    def __repr__(self):
        return "cmlang.ptr"


class _Constexpr:
    """Annotation for a compile-time parameter; each distinct value specializes the kernel."""

    def __repr__(self):
        return "cmlang.constexpr"


def _scalar(t):
    if isinstance(t, ScalarType):
        return t
    if isinstance(t, str) and t in SCALAR_TYPES:
        return SCALAR_TYPES[t]
    try:
        return scalar_from_numpy(t)
    except TypeError:
        raise TypeError(f"{t!r} is not a cmlang scalar type") from None


vector = _VectorSpelling()
matrix = _MatrixSpelling()
ptr = _PtrSpelling()
constexpr = _Constexpr()


def parse_type(text: str):
    """Inverse of ``str(type)``: used by the IR parser and the CLI signatures.

    Accepts the IR spelling (``vector<f32, 16>``, ``ptr<f32>``) and the Python one
    (``vector[f32, 16]``, ``ptr[f32]``).
    """
    s = text.strip().replace("[", "<").replace("]", ">").replace(" ", "")
    if s in SCALAR_TYPES:
        return SCALAR_TYPES[s]
    if "<" in s and s.endswith(">"):
        head, body = s[:-1].split("<", 1)
        parts = body.split(",")
        if head == "ptr" and len(parts) in (1, 2):
            return PtrType(SCALAR_TYPES[parts[0]], parts[1] if len(parts) == 2 else "global")
        if head == "vector" and len(parts) == 2:
            return VectorType(SCALAR_TYPES[parts[0]], (int(parts[1]),))
        if head == "matrix" and len(parts) == 3:
            return VectorType(SCALAR_TYPES[parts[0]], (int(parts[1]), int(parts[2])))
    raise ValueError(f"cannot parse type {text!r}")
