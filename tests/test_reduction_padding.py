"""Reductions over registers whose size is not a multiple of the lanes (or of a power of
two) agree on every path: the SIMT device code, the interpreter (the reference semantics)
and the spirv-vc lowering run by tests/vc_emulator.py. Both code generators pad with the
neutral elements of one table (codegen.elementwise.identity_value); min/max ignore NaN
elements, so an all-NaN register gives NaN, never the padding's infinity.
"""
import importlib.util
import math
import os

import numpy as np
import pytest

import cmlang as cm
from cmlang import f16, f32, i16, i32, u8, vector

SIZES = (1, 5, 17, 33)
TYPES = {"f32": (f32, np.float32), "f16": (f16, np.float16), "i32": (i32, np.int32),
         "i16": (i16, np.int16), "u8": (u8, np.uint8)}


def make_kernel(elem, simd):
    def k_reduce_all(x: cm.ptr[elem], out: cm.ptr[elem], N: cm.constexpr):
        v = cm.load(x, 0, N)
        cm.store(out, 0, vector[elem, 4](cm.reduce_sum(v), cm.reduce_prod(v),
                                         cm.reduce_min(v), cm.reduce_max(v)))
    return cm.kernel(simd=simd)(k_reduce_all)


def inputs(name, n):
    """(label, array) pairs: NaN patterns for floats, extremes and random values for ints."""
    dtype = TYPES[name][1]
    rng = np.random.default_rng(n)
    if np.issubdtype(dtype, np.floating):
        some = rng.uniform(0.5, 1.5, n).astype(dtype) * np.where(rng.random(n) < 0.5, -1, 1).astype(dtype)
        partly = some.copy()
        partly[::2] = np.nan
        return [("all-nan", np.full(n, np.nan, dtype)), ("partly-nan", partly), ("no-nan", some)]
    info = np.iinfo(dtype)
    values = rng.integers(info.min, int(info.max) + 1, n, dtype=np.int64)
    values[0] = info.max if n > 1 else info.min
    return [("random", values.astype(dtype))]


def reference(x):
    """sum, prod, min, max in float64 (NaN-ignoring min/max; all-NaN gives NaN), or for
    integers exactly, wrapped to the element type as the store converts them."""
    if np.issubdtype(x.dtype, np.floating):
        w = x.astype(np.float64)
        if np.isnan(w).all():
            lo = hi = math.nan
        else:
            lo, hi = np.nanmin(w), np.nanmax(w)
        return np.array([w.sum(), np.prod(w), lo, hi])
    ints = [int(e) for e in x]
    total, product = sum(ints), math.prod(ints)
    return np.array([_wrap(total, x.dtype), _wrap(product, x.dtype), min(ints), max(ints)], x.dtype)


def _wrap(value, dtype):
    bits = np.dtype(dtype).itemsize * 8
    value &= (1 << bits) - 1
    if np.issubdtype(dtype, np.signedinteger) and value >= 1 << (bits - 1):
        value -= 1 << bits
    return value


def check(got, want, dtype, where):
    if np.issubdtype(dtype, np.floating):
        rtol = 2e-2 if dtype == np.float16 else 1e-5
        # sum/prod may add in another order; min/max are exact (NaN only where expected)
        np.testing.assert_allclose(got[:2].astype(np.float64), want[:2], rtol=rtol, err_msg=where)
        np.testing.assert_array_equal(got[2:].astype(np.float64), want[2:], err_msg=where)
    else:
        np.testing.assert_array_equal(got, want, err_msg=where)


def run(kernel, x, n, interpret):
    out = np.zeros(4, x.dtype)
    saved = os.environ.get("CMLANG_INTERPRET")
    os.environ["CMLANG_INTERPRET"] = "1" if interpret else "0"
    try:
        kernel[1](x.copy(), out, n)
    finally:
        if saved is None:
            del os.environ["CMLANG_INTERPRET"]
        else:
            os.environ["CMLANG_INTERPRET"] = saved
    return out


CASES = [(name, n, simd) for name in TYPES for n in SIZES for simd in (8, 16)]


@pytest.mark.parametrize("name, n, simd", CASES, ids=[f"{t}-N{n}-simd{s}" for t, n, s in CASES])
def test_reductions_of_padded_registers_agree_with_the_interpreter(name, n, simd):
    kernel = make_kernel(TYPES[name][0], simd)
    for label, x in inputs(name, n):
        want = reference(x)
        check(run(kernel, x, n, interpret=True), want, x.dtype, f"interpreter, {label}")
        check(run(kernel, x, n, interpret=False), want, x.dtype, f"SIMT device, {label}")


needs_vc = pytest.mark.skipif(importlib.util.find_spec("dpcpp_llvm_spirv") is None,
                              reason="the spirv-vc target needs the dpcpp-llvm-spirv wheel")


@needs_vc
@pytest.mark.parametrize("name, n", [(t, n) for t in TYPES for n in SIZES],
                         ids=[f"{t}-N{n}" for t in TYPES for n in SIZES])
def test_reductions_of_padded_registers_agree_on_spirv_vc(name, n):
    from vc_emulator import run_isolated
    kernel = make_kernel(TYPES[name][0], 16)
    compiled = kernel.compile(target="spirv-vc", N=n)
    for label, x in inputs(name, n):
        out = np.zeros(4, x.dtype)
        _, got = run_isolated(compiled, 1, None, [x.copy(), out])
        check(got, reference(x), x.dtype, f"spirv-vc emulated, {label}")
