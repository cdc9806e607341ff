"""The builtins users call inside kernels: ``cm.load``, ``cm.exp``, ``cm.static_range``, ...

Each builtin is a marker object: the front end (``cmlang.frontend``) recognises it by
identity (through the kernel's globals, e.g. ``cm.load`` is the attribute ``load`` of
the module ``cmlang``) and compiles the call into IR. Calling one on the host, outside
a kernel, raises ``RuntimeError``. The docstring of each builtin is its user
documentation; ``cmlang.frontend.builtins_impl`` holds how each one compiles.

``@cm.func`` wraps a Python function into a ``DeviceFunction``: kernels and other funcs
call it and the front end inlines its body.
"""
from __future__ import annotations

import functools


class Builtin:
    """A function that only exists inside kernels (``cm.<name>``)."""

    def __init__(self, name: str, doc: str):
        self.name = name
        self.__name__ = name
        self.__qualname__ = name
        self.__doc__ = doc

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"cm.{self.name} can only be used inside a @cm.kernel or @cm.func")

    def __repr__(self):
        return f"<cmlang builtin cm.{self.name}>"


class HostLaunched:
    """Base of what the host launches (``@cm.kernel``, ``cm.autotune`` of one): the front end
    refuses a call to one from a kernel by this type, without importing them."""


class DeviceFunction:
    """A ``@cm.func``: a device function that kernels (and other funcs) call; it is inlined."""

    def __init__(self, fn):
        self.fn = fn
        functools.update_wrapper(self, fn)

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"cm.func '{self.fn.__name__}' can only be called inside a "
                           "@cm.kernel or @cm.func")

    def __repr__(self):
        return f"<cmlang func {self.fn.__qualname__}>"


def func(fn=None):
    """Decorator: ``@cm.func`` (or ``@cm.func()``) makes a device function that is inlined
    at every call. Parameters may be annotated with a cmlang type (the argument is
    converted to it) or ``cm.constexpr`` (the argument must be a compile-time value)."""
    if fn is None:
        return DeviceFunction
    return DeviceFunction(fn)


def _builtin(name, doc):
    b = Builtin(name, doc)
    globals()[name] = b
    return b


# --- authoring --------------------------------------------------------------------
_builtin("static_range", "static_range([start,] stop[, step]): `for i in cm.static_range(n)` unrolls the "
         "loop at compile time; `i` is a compile-time int in every copy of the body.")

_builtin("simd", "simd(mask): only as the condition of `if`/`elif`/`while`: SIMD control flow (CM "
         "SIMD_IF / SIMD_DO_WHILE). The body runs for the lanes where the mask is true: writes of "
         "registers with as many elements as the mask, and memory accesses of that width, happen only "
         "in active lanes; `break`/`continue` in `while cm.simd(...)` act per lane.")

# --- register construction and conversion -------------------------------------------
_builtin("zeros", "zeros(type): a register (or scalar) of `type` filled with 0.")
_builtin("full", "full(type, value): a register of `type` with every element `value` (run-time scalars "
         "are converted and broadcast).")
_builtin("iota", "iota(T, n, start=0, step=1): vector[T, n] with element i = start + i*step.")
_builtin("merge", "merge(a, b, mask): `a` where `mask` else `b`, element-wise (CM merge). An integer "
         "scalar mask is a bit mask: element i takes a[i] where bit i is set (CM merge with an int mask).")
_builtin("sat", "sat(x.astype(T)): saturating conversion: values are clamped to T's range (NaN -> 0); "
         "a floating-point T, or sat(x) of a floating-point x, clamps to [0.0, 1.0] (CM / ESIMD).")
_builtin("pack_mask", "pack_mask(mask) -> u32: bit i is set where element i of the mask (at most 32 "
         "elements, row-major; non-bool registers: != 0) is true (CM cm_pack_mask).")
_builtin("unpack_mask", "unpack_mask(bits, n) -> vector[bool, n]: element i is bit i of the integer `bits` "
         "(n a compile-time int, 1..32; CM cm_unpack_mask).")

# --- regions and cross-lane operations ---------------------------------------------
_builtin("shuffle", "shuffle(v, idx): r[i] = v[idx[i]] (same as v.iselect(idx)).")
_builtin("shuffle_xor", "shuffle_xor(v, k): r[i] = v[i ^ k].")
_builtin("rotate", "rotate(v, k): r[i] = v[(i + k) % N].")
_builtin("broadcast", "broadcast(v, i): every element is v[i].")
_builtin("reduce_sum", "reduce_sum(v, axis=None): sum of the elements; on a matrix axis=0 sums each "
         "column, axis=1 each row. Integers narrower than 32 bits (and bool) sum as i32.")
_builtin("reduce_prod", "reduce_prod(v, axis=None): product of the elements (see reduce_sum).")
_builtin("reduce_max", "reduce_max(v, axis=None): largest element (see reduce_sum).")
_builtin("reduce_min", "reduce_min(v, axis=None): smallest element (see reduce_sum).")

# --- math ---------------------------------------------------------------------------
for _name, _what in [("exp", "e ** x"), ("exp2", "2 ** x"), ("log", "natural logarithm"),
                     ("log2", "base-2 logarithm"), ("sqrt", "square root"), ("rsqrt", "1 / sqrt(x)"),
                     ("inv", "1 / x"), ("sin", "sine"), ("cos", "cosine"),
                     ("tanh", "hyperbolic tangent"), ("floor", "round toward -inf"),
                     ("ceil", "round toward +inf")]:
    _builtin(_name, f"{_name}(x): element-wise {_what}; integer inputs are converted to f32 first.")
_builtin("abs", "abs(x): element-wise absolute value.")
for _name, _what in [("rndd", "round down (toward -inf)"), ("rndu", "round up (toward +inf)"),
                     ("rnde", "round to the nearest integer, ties to even"),
                     ("rndz", "round toward zero"), ("frc", "fraction: x - rndd(x), in [0, 1)")]:
    _builtin(_name, f"{_name}(x): element-wise {_what} (CM cm_{_name}); integer inputs are converted "
             "to f32 first.")
_builtin("cbit", "cbit(x) -> u32 register or scalar: the number of set bits of each element of an "
         "integer x of at most 32 bits (its own width; CM cm_cbit).")
_builtin("fbl", "fbl(x) -> u32: the index of the lowest set bit of each element (integers of at most "
         "32 bits), 0xFFFFFFFF where the element is 0 (CM cm_fbl).")
_builtin("fbh", "fbh(x): CM cm_fbh, the first bit from the MSB side, of the type of x after integer "
         "promotion (i32 or u32): unsigned, the number of leading zeros; signed, the number of "
         "leading bits equal to the sign bit; 0xFFFFFFFF (-1 for i32) for 0 (and for -1 when signed).")
_builtin("lzd", "lzd(x) -> u32: the number of leading zeros of each element as a 32-bit integer "
         "(after integer promotion), 32 for 0 (CM cm_lzd).")
_builtin("avg", "avg(a, b): (a + b + 1) >> 1 element-wise on integers, computed without overflow; "
         "the operands' common type without integer promotion (CM cm_avg).")
_builtin("mulhi", "mulhi(a, b): the high 32 bits of the 64-bit product of 32-bit integers (after "
         "integer promotion; signed or unsigned by the type; CM cm_imul's high result).")
for _name, _what in [("dp2", "a[0]*b[0] + a[1]*b[1]"), ("dp3", "a[0]*b[0] + a[1]*b[1] + a[2]*b[2]"),
                     ("dp4", "a[0]*b[0] + ... + a[3]*b[3]"),
                     ("dph", "a[0]*b[0] + a[1]*b[1] + a[2]*b[2] + b[3]")]:
    _builtin(_name, f"{_name}(a, b): for each group of 4 elements (float registers of a multiple of 4 "
             f"elements; b may be a scalar), {_what} of the group, written to all 4 elements of it "
             f"(CM cm_{_name}).")
_builtin("min", "min(a, b, ...): element-wise minimum (floats: a NaN loses to a number).")
_builtin("max", "max(a, b, ...): element-wise maximum (floats: a NaN loses to a number).")
_builtin("fma", "fma(a, b, c): a * b + c element-wise, rounded once.")
_builtin("pow", "pow(a, b): a ** b element-wise on floats (integers are converted to f32).")
_builtin("dpas", "dpas(acc, a, b): acc + a @ b with acc: matrix[f32, M, N], a: matrix[T, M, K], "
         "b: matrix[T, K, N], T in f16 bf16 f32; products and sums in f32. With a, b each i8 or u8: "
         "acc: matrix[i32, M, N], sums in i32. dpas(acc, a, b, precision=\"tf32\") with f32 a, b: "
         "each element of a and b rounded to tf32 (10 mantissa bits, nearest even) first.")

# --- memory -------------------------------------------------------------------------
_builtin("load", "load(p, offset, n) -> vector[T, n]: p[offset : offset + n]. "
         "load(p, offset, (r, c), pitch) -> matrix[T, r, c]: rows `pitch` elements apart.")
_builtin("store", "store(p, offset, v): p[offset + i] = v[i]. store(p, offset, m, pitch): 2-D store of "
         "a matrix with rows `pitch` elements apart.")
_builtin("load_2d", "load_2d(p, (rows, cols), x, y, width, height, pitch, transpose=False) -> "
         "matrix[T, rows, cols]: the block at column x, row y of a surface of width x height elements "
         "with rows pitch elements apart; elements outside the surface read 0. transpose=True: "
         "matrix[T, cols, rows], the block transposed. On PVC a 2-D block message.")
_builtin("store_2d", "store_2d(p, m, x, y, width, height, pitch): writes matrix m as the block at column "
         "x, row y of the surface (see load_2d); elements outside the surface are not written.")
_builtin("prefetch_2d", "prefetch_2d(p, (rows, cols), x, y, width, height, pitch): a hint that the block "
         "will be read (see load_2d); no effect on values.")
_builtin("gather", "gather(p, offsets, mask=None): r[i] = p[offsets[i]] where mask (else 0).")
_builtin("scatter", "scatter(p, offsets, v, mask=None): p[offsets[i]] = v[i] where mask.")
for _kind in ("add", "sub", "min", "max", "xchg", "and", "or", "xor"):
    _builtin(f"atomic_{_kind}", f"atomic_{_kind}(p, offsets, v) -> old values: atomically "
             f"p[offsets[i]] = {_kind}(p[offsets[i]], v[i]) element by element.")
_builtin("atomic_cmpxchg", "atomic_cmpxchg(p, offsets, expected, desired) -> old values: atomically "
         "p[offsets[i]] = desired[i] where p[offsets[i]] == expected[i].")
_builtin("slm", "slm(T, n) -> ptr[T] to n elements of shared local memory of the group (only at the "
         "top level of the kernel body; n a compile-time int).")
_builtin("barrier", "barrier(): every CM thread of the group arrives before any proceeds; memory "
         "written before is visible after.")
_builtin("fence", "fence(): orders this CM thread's memory writes.")

# --- ids ----------------------------------------------------------------------------
for _name, _what in [("thread_id", "global CM-thread index"), ("group_id", "index of the group"),
                     ("local_id", "index of this CM thread inside its group"),
                     ("group_count", "number of groups"), ("local_size", "CM threads per group")]:
    _builtin(_name, f"{_name}(dim) -> i32: {_what} in dimension dim (a constant 0, 1 or 2).")

del _name, _what, _kind

BUILTINS = {name: obj for name, obj in globals().items() if isinstance(obj, Builtin)}

__all__ = ["func", "DeviceFunction", "Builtin", *BUILTINS]
