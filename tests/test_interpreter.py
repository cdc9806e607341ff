"""The interpreter (cmlang.runtime.interpreter): the reference semantics of every op.

Kernels are built directly as IR with cmlang.ir.Builder and checked against numpy.
Every op's result is also checked to have exactly its IR type's numpy form.
"""
import sys
import time
import types as pytypes

import numpy as np
import pytest

from cmlang.errors import KernelRuntimeError
from cmlang.ir import Block, Builder, Function, Location
from cmlang.ir.verify import verify_function
from cmlang.runtime.interpreter import run, executor, round_to_bf16, bf16_bits_to_f32, f32_to_bf16_bits
from cmlang.types import (VectorType, PtrType, ptr, vec, mat, i8, i32, i64, u8, u16, u32, u64,
                          f16, bf16, f32, bool_)


@pytest.fixture(autouse=True)
def check_value_types(monkeypatch):
    monkeypatch.setattr(executor, "CHECK_TYPES", True)


# ---------------------------------------------------------------------------
# Building kernels

class K:
    """A kernel under construction: ``k = K(x=ptr[f32], n=i32)``, ops via ``k.op``, then ``k.fn``."""

    def __init__(self, file="kernel.py", **params):
        self.names = list(params)
        self.body = Block(list(params.values()), self.names)
        self.b = Builder(self.body)
        self.file = file
        self.at(1)
        self.p = pytypes.SimpleNamespace(**dict(zip(self.names, self.body.args)))

    def at(self, line, col=4):
        self.b.loc = Location(self.file, line, col)
        return self

    def op(self, opcode, operands=(), result=None, hint="", **attrs):
        op = self.b.create(opcode, operands, [result] if result is not None else [], attrs)
        if result is not None:
            op.result.hint = hint
            return op.result
        return op

    def const(self, t, value):
        return self.op("const", [], t, value=value)

    def tid(self, dim=0, kind="thread_id"):
        return self.op(kind, [], i32, dim=dim)

    @property
    def fn(self):
        if not self.body.ops or self.body.ops[-1].opcode != "return":
            self.b.create("return")
        fn = Function("k", self.body, self.names)
        verify_function(fn)
        return fn


def _storage(t, value):
    """A numpy array in memory form for elements of type t (bf16 -> uint16 bits)."""
    arr = np.asarray(value)
    if t.elem == bf16:
        return np.atleast_1d(f32_to_bf16_bits(arr.astype(np.float32))).reshape(-1)
    return np.array(arr, dtype=t.elem.np_dtype).reshape(-1)


def _load_value(k, p, t):
    off = k.const(i32, 0)
    if isinstance(t, VectorType) and t.is_matrix:
        return k.op("load2d", [p, off, k.const(i32, t.shape[1])], t)
    v = k.op("load", [p, off], vec(t.elem, t.size))
    return v if isinstance(t, VectorType) else k.op("extract", [v], t, index=0)


def one_op(opcode, operands, result_type, **attrs):
    """Runs one op on (type, value) operands loaded from memory; returns the stored result.

    Values are in register form (bf16 as float32 values); the result comes back the same way.
    """
    params = {f"in{i}": ptr[t.elem] for i, (t, _) in enumerate(operands)}
    k = K(**params, out=ptr[result_type.elem])
    values = [_load_value(k, getattr(k.p, f"in{i}"), t) for i, (t, _) in enumerate(operands)]
    r = k.op(opcode, values, result_type, **attrs)
    zero = k.const(i32, 0)
    if isinstance(result_type, VectorType) and result_type.is_matrix:
        k.op("store2d", [k.p.out, zero, k.const(i32, result_type.shape[1]), r])
    else:
        k.op("store", [k.p.out, zero, r])
    out = _storage(result_type, np.zeros(result_type.size))
    run(k.fn, 1, None, [_storage(t, v) for t, v in operands] + [out])
    if result_type.elem == bf16:
        out = bf16_bits_to_f32(out)
    return out.reshape(result_type.shape)


def v(t, n):
    return vec(t, n)


I32_MIN, I32_MAX = -2 ** 31, 2 ** 31 - 1


# ---------------------------------------------------------------------------
# Element-wise integer semantics: wrap, truncating division, shifts

def test_int_division_truncates_toward_zero():
    a = np.array([-7, 7, -7, 7, I32_MIN, 0, -1, 9], np.int32)
    b = np.array([2, -2, -2, 2, -1, 5, 3, -10], np.int32)
    t = v(i32, 8)
    assert one_op("div", [(t, a), (t, b)], t).tolist() == [-3, -3, 3, 3, I32_MIN, 0, 0, 0]
    assert one_op("rem", [(t, a), (t, b)], t).tolist() == [-1, 1, -1, 1, 0, 0, -1, 9]


def test_scalar_int_ops_wrap_and_truncate():
    assert one_op("div", [(i32, -7), (i32, 2)], i32).tolist() == -3
    assert one_op("add", [(i32, I32_MAX), (i32, 1)], i32).tolist() == I32_MIN
    assert one_op("mul", [(i32, 65536), (i32, 65536)], i32).tolist() == 0
    assert one_op("add", [(u8, 250), (u8, 10)], u8).tolist() == 4
    assert one_op("sub", [(u32, 0), (u32, 1)], u32).tolist() == 2 ** 32 - 1
    assert one_op("neg", [(i32, I32_MIN)], i32).tolist() == I32_MIN
    assert one_op("abs", [(i32, -5)], i32).tolist() == 5


def test_shifts_take_count_mod_bits_and_shr_follows_signedness():
    t = v(i32, 6)
    a = np.array([1, 1, -16, -16, 3, 1], np.int32)
    s = np.array([3, 33, 2, 31, -1, 32], np.int32)
    assert one_op("shl", [(t, a), (t, s)], t).tolist() == [8, 2, -64, 0, I32_MIN, 1]
    assert one_op("shr", [(t, a), (t, s)], t).tolist() == [0, 0, -4, -1, 0, 1]
    tu = v(u32, 2)
    got = one_op("shr", [(tu, np.array([0x80000000, 0xFFFFFFFF], np.uint32)), (tu, np.array([4, 36], np.uint32))], tu)
    assert got.tolist() == [0x08000000, 0x0FFFFFFF]
    assert one_op("shl", [(u8, 0x81), (u8, 9)], u8).tolist() == 0x02


def test_bitwise_and_bool_logic():
    t = v(i32, 3)
    a, b = np.array([12, -1, 5], np.int32), np.array([10, 7, 0], np.int32)
    assert one_op("and", [(t, a), (t, b)], t).tolist() == [8, 7, 0]
    assert one_op("or", [(t, a), (t, b)], t).tolist() == [14, -1, 5]
    assert one_op("xor", [(t, a), (t, b)], t).tolist() == [6, -8, 5]
    assert one_op("not", [(t, a)], t).tolist() == [-13, 0, -6]
    tb = v(bool_, 4)
    p, q = np.array([0, 0, 1, 1], bool), np.array([0, 1, 0, 1], bool)
    assert one_op("xor", [(tb, p), (tb, q)], tb).tolist() == [False, True, True, False]
    assert one_op("not", [(tb, p)], tb).tolist() == [True, True, False, False]


def test_integer_division_by_zero_names_the_element():
    t = v(i32, 4)
    with pytest.raises(KernelRuntimeError, match=r"integer division by zero \(element 2 of the divisor\)"):
        one_op("div", [(t, np.ones(4)), (t, np.array([1, 2, 0, 3]))], t)


# ---------------------------------------------------------------------------
# Floats

def test_float_min_max_ignore_nan_and_compare_unequal():
    t = v(f32, 4)
    a = np.array([np.nan, 1, np.nan, -0.5], np.float32)
    b = np.array([2, np.nan, np.nan, 3], np.float32)
    assert np.array_equal(one_op("min", [(t, a), (t, b)], t), [2, 1, np.nan, -0.5], equal_nan=True)
    assert np.array_equal(one_op("max", [(t, a), (t, b)], t), [2, 1, np.nan, 3], equal_nan=True)
    tb = v(bool_, 4)
    assert one_op("cmp", [(t, a), (t, b)], tb, pred="ne").tolist() == [True, True, True, True]
    assert one_op("cmp", [(t, a), (t, b)], tb, pred="lt").tolist() == [False, False, False, True]
    assert one_op("cmp", [(t, a), (t, a)], tb, pred="eq").tolist() == [False, True, False, True]


def test_float_unary_math_matches_float32_numpy(rng):
    x = rng.uniform(0.1, 4.0, 16).astype(np.float32)
    t = v(f32, 16)
    expected = {"exp": np.exp(x), "exp2": np.exp2(x), "log": np.log(x), "log2": np.log2(x),
                "sqrt": np.sqrt(x), "rsqrt": 1 / np.sqrt(x), "inv": 1 / x, "sin": np.sin(x),
                "cos": np.cos(x), "tanh": np.tanh(x), "floor": np.floor(x), "ceil": np.ceil(x),
                "neg": -x, "abs": np.abs(-x)}
    for name, want in expected.items():
        got = one_op(name, [(t, -x if name == "abs" else x)], t)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want.astype(np.float32), rtol=2e-7, err_msg=name)


def test_float_binary_and_fma(rng):
    a, b, c = (rng.uniform(-3, 3, 8).astype(np.float32) for _ in range(3))
    t = v(f32, 8)
    assert np.array_equal(one_op("div", [(t, a), (t, b)], t), a / b)
    assert np.array_equal(one_op("rem", [(t, a), (t, b)], t), np.fmod(a, b))
    np.testing.assert_allclose(one_op("pow", [(t, np.abs(a)), (t, b)], t), np.abs(a) ** b, rtol=1e-6)
    fused = (a.astype(np.float64) * b + c).astype(np.float32)
    assert np.array_equal(one_op("fma", [(t, a), (t, b), (t, c)], t), fused)
    # fma rounds once: 1 + 2^-23 squared minus (1 + 2^-22) is 2^-46, not 0 as a*b+c in f32 gives.
    e = np.float32(1 + 2.0 ** -23)
    got = one_op("fma", [(f32, e), (f32, e), (f32, -np.float32(1 + 2.0 ** -22))], f32)
    assert got == np.float32(2.0 ** -46)


def test_f16_ops_compute_in_f16():
    t = v(f16, 2)
    a, b = np.array([2048, 0.1], np.float16), np.array([1, 0.2], np.float16)
    assert np.array_equal(one_op("add", [(t, a), (t, b)], t), a + b)   # 2048 + 1 rounds to 2048


# ---------------------------------------------------------------------------
# bf16

def test_round_to_bf16_is_nearest_even():
    bits = np.array([0x3F808000, 0x3F818000, 0x3F808001, 0x7F7FFFFF, 0xFF800000, 0x7FC00001], np.uint32)
    got = f32_to_bf16_bits(bits.view(np.float32))
    assert got.tolist() == [0x3F80, 0x3F82, 0x3F81, 0x7F80, 0xFF80, 0x7FC0]
    assert np.isnan(round_to_bf16(np.float32(np.nan)))
    assert bf16_bits_to_f32(np.uint16(0x3FC0)) == np.float32(1.5)


def test_bf16_arithmetic_rounds_after_every_op(rng):
    a = round_to_bf16(rng.uniform(-4, 4, 16).astype(np.float32))
    b = round_to_bf16(rng.uniform(-4, 4, 16).astype(np.float32))
    t = v(bf16, 16)
    assert np.array_equal(one_op("add", [(t, a), (t, b)], t), round_to_bf16(a + b))
    assert np.array_equal(one_op("mul", [(t, a), (t, b)], t), round_to_bf16(a * b))
    assert np.array_equal(one_op("exp", [(t, a)], t), round_to_bf16(np.exp(a)))
    # Rounded after each add: (1 + 2^-8) + 2^-8 is 1, not 1 + 2^-7.
    k = K(x=bf16, out=ptr[bf16])
    once = k.op("add", [k.const(bf16, 1.0), k.p.x], bf16)
    k.op("store", [k.p.out, k.const(i32, 0), k.op("add", [once, k.p.x], bf16)])
    out = np.zeros(1, np.uint16)
    run(k.fn, 1, None, [2.0 ** -8, out])
    assert out[0] == 0x3F80
    # 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even wins.
    assert one_op("add", [(bf16, 1.0), (bf16, 2.0 ** -8)], bf16) == 1.0
    assert one_op("add", [(bf16, 1.0 + 2.0 ** -7), (bf16, 2.0 ** -8)], bf16) == 1.0 + 2.0 ** -6


# ---------------------------------------------------------------------------
# Conversions and bitcasts

def test_convert_float_to_int_truncates_and_saturates():
    x = np.array([-2.7, 2.7, 300.0, -5.0, np.nan, 255.9, 0.5, 1e10], np.float32)
    t, tu8 = v(f32, 8), v(u8, 8)
    assert one_op("convert", [(t, x)], tu8, sat=True).tolist() == [0, 2, 255, 0, 0, 255, 0, 255]
    ti = v(i32, 8)
    assert one_op("convert", [(t, x)], ti, sat=True).tolist() == [-2, 2, 300, -5, 0, 255, 0, I32_MAX]
    got = one_op("convert", [(v(f32, 6), x[[0, 1, 2, 3, 5, 6]])], v(i32, 6), sat=False)
    assert got.tolist() == [-2, 2, 300, -5, 255, 0]
    assert one_op("convert", [(f32, -1e30)], i64, sat=True).tolist() == -2 ** 63
    assert one_op("convert", [(f32, 1e30)], u64, sat=True).tolist() == 2 ** 64 - 1


def test_convert_int_to_int_wraps_or_saturates():
    x = np.array([300, -1, 127, -129], np.int32)
    t = v(i32, 4)
    assert one_op("convert", [(t, x)], v(u8, 4), sat=False).tolist() == [44, 255, 127, 127]
    assert one_op("convert", [(t, x)], v(u8, 4), sat=True).tolist() == [255, 0, 127, 0]
    assert one_op("convert", [(t, x)], v(i8, 4), sat=True).tolist() == [127, -1, 127, -128]
    big = np.array([0xFFFFFFFF, 5], np.uint32)
    assert one_op("convert", [(v(u32, 2), big)], v(i32, 2), sat=True).tolist() == [I32_MAX, 5]
    assert one_op("convert", [(v(u32, 2), big)], v(i32, 2), sat=False).tolist() == [-1, 5]
    assert one_op("convert", [(v(u8, 2), np.array([200, 3]))], v(i32, 2), sat=False).tolist() == [200, 3]


def test_convert_to_float_bool_and_bf16():
    assert one_op("convert", [(v(i32, 2), np.array([16777217, -3]))], v(f32, 2), sat=False).tolist() == \
        [16777216.0, -3.0]
    assert one_op("convert", [(v(f32, 2), np.array([0.0, -0.5]))], v(bool_, 2), sat=False).tolist() == \
        [False, True]
    x = np.array([1.00390625, 1.01171875, 70000.0, -3.4e38], np.float64)
    got = one_op("convert", [(v(f32, 4), x.astype(np.float32))], v(bf16, 4), sat=False)
    assert got.tolist() == [1.0, 1.015625, 70144.0, -np.inf]
    assert one_op("convert", [(f32, 1e6)], f16, sat=True).tolist() == 1.0        # CM: [0, 1]
    assert one_op("convert", [(v(f32, 3), np.array([-2.0, 0.25, np.nan], np.float32))], v(f32, 3),
                  sat=True).tolist() == [0.0, 0.25, 0.0]
    assert one_op("convert", [(f32, 1e6)], f16, sat=False).tolist() == np.inf
    # int -> bf16 rounds once (via float32 it would round twice): 2^24 + 2^16 + 1 -> 2^24 + 2^17
    assert one_op("convert", [(i32, 2 ** 24 + 2 ** 16 + 1)], bf16, sat=False) == 2 ** 24 + 2 ** 17


def test_bitcast_reinterprets_bits_and_reshapes():
    x = np.array([1.0, -2.0], np.float32)
    assert one_op("bitcast", [(v(f32, 2), x)], v(u32, 2)).tolist() == [0x3F800000, 0xC0000000]
    b = np.arange(8, dtype=np.uint8)
    assert one_op("bitcast", [(v(u8, 8), b)], v(u32, 2)).tolist() == [0x03020100, 0x07060504]
    assert one_op("bitcast", [(v(u8, 8), b)], mat(u16, 2, 2)).tolist() == [[0x0100, 0x0302], [0x0504, 0x0706]]
    assert one_op("bitcast", [(v(bf16, 2), np.array([1.5, -2.0]))], v(u16, 2)).tolist() == [0x3FC0, 0xC000]
    assert one_op("bitcast", [(u32, 0x40490FDB)], f32) == np.float32(3.14159274)


# ---------------------------------------------------------------------------
# Construction and select

def test_const_splat_build_select():
    k = K(s=f32, out=ptr[f32], flag=bool_)
    c = k.const(v(f32, 4), (1.0, 2.0, 3.0, 4.0))
    s = k.op("splat", [k.p.s], v(f32, 4))
    bld = k.op("build", [k.p.s, k.const(f32, 7.0), k.p.s, k.const(f32, -1.0)], v(f32, 4))
    mask = k.op("cmp", [c, bld], v(bool_, 4), pred="gt")
    picked = k.op("select", [mask, c, s], v(f32, 4))
    whole = k.op("select", [k.p.flag, picked, bld], v(f32, 4))
    k.op("store", [k.p.out, k.const(i32, 0), whole])
    out = np.zeros(4, np.float32)
    run(k.fn, 1, None, [2.5, out, True])
    assert out.tolist() == [2.5, 2.5, 3.0, 4.0]
    run(k.fn, 1, None, [2.5, out, False])
    assert out.tolist() == [2.5, 7.0, 2.5, -1.0]


# ---------------------------------------------------------------------------
# Regions

def test_rdregion_2d_region_of_a_matrix_with_dynamic_offset():
    m = np.arange(64, dtype=np.int32).reshape(8, 8)
    k = K(src=ptr[i32], out=ptr[i32], dyn=i32)
    t = mat(i32, 8, 8)
    src = _load_value(k, k.p.src, t)
    # select<4,1,4,2>(1, 0) in CM terms: rows 1..4, every other column, plus a dynamic offset.
    region = k.op("rdregion", [src, k.p.dyn], mat(i32, 4, 4), offset=8, vsize=4, vstride=8, hsize=4, hstride=2)
    k.op("store2d", [k.p.out, k.const(i32, 0), k.const(i32, 4), region])
    out = np.zeros(16, np.int32)
    run(k.fn, 1, None, [m.reshape(-1), out, 1])
    assert np.array_equal(out.reshape(4, 4), m[1:5, 1::2])
    with pytest.raises(KernelRuntimeError, match=r"rdregion index out of range: index 64 \(element 11 of the "
                                                 r"region\), the register has 64 elements"):
        run(k.fn, 1, None, [m.reshape(-1), out, 34])


def test_wrregion_extract_insert():
    k = K(out=ptr[i32], dyn=i32)
    base = k.op("const", [], v(i32, 16), value=tuple(range(16)))
    src = k.op("splat", [k.const(i32, -1)], v(i32, 4))
    w = k.op("wrregion", [base, src, k.p.dyn], v(i32, 16), offset=1, vsize=2, vstride=8, hsize=2, hstride=3)
    e = k.op("extract", [w, k.p.dyn], i32, index=2)
    w2 = k.op("insert", [w, e, k.p.dyn], v(i32, 16), index=14)
    w3 = k.op("insert", [w2, k.const(i32, 100)], v(i32, 16), index=0)
    k.op("store", [k.p.out, k.const(i32, 0), w3])
    out = np.zeros(16, np.int32)
    run(k.fn, 1, None, [out, 1])
    want = np.arange(16)
    want[[2, 5, 10, 13]] = -1
    want[15] = want[3]
    want[0] = 100
    assert out.tolist() == want.tolist()
    with pytest.raises(KernelRuntimeError, match=r"wrregion index out of range: index 18 \(element 1 of"):
        run(k.fn, 1, None, [out, 14])
    with pytest.raises(KernelRuntimeError, match="extract index out of range: index 8, the register has 4 "):
        one_op("extract", [(v(i32, 4), np.arange(4)), (i32, 7)], i32, index=1)


def test_rdregion_replicates_and_reads_one_element():
    x = np.arange(10, 14, dtype=np.int32)
    t = v(i32, 4)
    twice = one_op("rdregion", [(t, x)], v(i32, 8), offset=0, vsize=2, vstride=0, hsize=4, hstride=1)
    assert twice.tolist() == [10, 11, 12, 13] * 2
    spread = one_op("rdregion", [(t, x)], mat(i32, 2, 3), offset=1, vsize=2, vstride=1, hsize=3, hstride=0)
    assert spread.tolist() == [[11, 11, 11], [12, 12, 12]]
    assert one_op("rdregion", [(t, x), (i32, 2)], i32, offset=1, vsize=1, vstride=0, hsize=1, hstride=0) == 13


def test_iselect_gathers_inside_a_register(rng):
    perm = rng.permutation(16).astype(np.int32)
    x = np.arange(100, 116, dtype=np.float32)
    assert np.array_equal(one_op("iselect", [(v(f32, 16), x), (v(i32, 16), perm)], v(f32, 16)), x[perm])
    got = one_op("iselect", [(v(f32, 16), x), (mat(u16, 2, 2), np.array([[0, 15], [3, 3]]))], mat(f32, 2, 2))
    assert got.tolist() == [[100, 115], [103, 103]]
    with pytest.raises(KernelRuntimeError, match=r"iselect index out of range: index 16 \(element 1 of"):
        one_op("iselect", [(v(f32, 16), x), (v(i32, 2), np.array([0, 16]))], v(f32, 2))


# ---------------------------------------------------------------------------
# Reductions and dpas

def test_reductions_with_axes(rng):
    m = rng.integers(-20, 20, (4, 6)).astype(np.int32)
    t = mat(i32, 4, 6)
    for kind, ref in [("add", np.sum), ("mul", np.prod), ("min", np.min), ("max", np.max),
                      ("and", np.bitwise_and.reduce), ("or", np.bitwise_or.reduce)]:
        assert one_op("reduce", [(t, m)], i32, kind=kind, axis=None).tolist() == \
            int(ref(m.reshape(-1)).astype(np.int32)), kind
        assert one_op("reduce", [(t, m)], v(i32, 6), kind=kind, axis=0).tolist() == \
            ref(m, axis=0).astype(np.int32).tolist(), kind
        assert one_op("reduce", [(t, m)], v(i32, 4), kind=kind, axis=1).tolist() == \
            ref(m, axis=1).astype(np.int32).tolist(), kind
    big = np.full(4, I32_MAX, np.int32)
    assert one_op("reduce", [(v(i32, 4), big)], i32, kind="add", axis=None).tolist() == -4   # wraps
    f = np.array([1.5, np.nan, -2.0, 8.0], np.float32)
    assert one_op("reduce", [(v(f32, 4), f)], f32, kind="max", axis=None) == 8.0
    assert one_op("reduce", [(v(f32, 4), f)], f32, kind="min", axis=None) == -2.0
    x = rng.uniform(-1, 1, 32).astype(np.float32)
    np.testing.assert_allclose(one_op("reduce", [(v(f32, 32), x)], f32, kind="add", axis=None),
                               x.sum(dtype=np.float64), rtol=1e-5)
    masks = np.array([True, False, True], bool)
    assert one_op("reduce", [(v(bool_, 3), masks)], bool_, kind="or", axis=None).tolist() is True
    assert one_op("reduce", [(v(bool_, 3), masks)], bool_, kind="and", axis=None).tolist() is False


@pytest.mark.parametrize("elem", [f32, f16, bf16])
def test_dpas_is_acc_plus_matmul_in_f32(rng, elem):
    acc = rng.uniform(-1, 1, (8, 16)).astype(np.float32)
    a = rng.uniform(-1, 1, (8, 16)).astype(np.float32)
    b = rng.uniform(-1, 1, (16, 16)).astype(np.float32)
    if elem == f16:
        a, b = a.astype(np.float16), b.astype(np.float16)
    elif elem == bf16:
        a, b = round_to_bf16(a), round_to_bf16(b)
    got = one_op("dpas", [(mat(f32, 8, 16), acc), (mat(elem, 8, 16), a), (mat(elem, 16, 16), b)], mat(f32, 8, 16))
    want = acc.astype(np.float64) + a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# Memory

def test_load2d_store2d_with_pitch():
    src = np.arange(100, dtype=np.float32)
    k = K(src=ptr[f32], dst=ptr[f32])
    m = k.op("load2d", [k.p.src, k.const(i32, 12), k.const(i32, 10)], mat(f32, 3, 4))
    k.op("store2d", [k.p.dst, k.const(i32, 1), k.const(i32, 5), m])
    dst = np.zeros(16, np.float32)
    run(k.fn, 1, None, [src, dst])
    want = np.zeros(16, np.float32)
    for i in range(3):
        want[1 + 5 * i: 5 + 5 * i] = src[12 + 10 * i: 16 + 10 * i]
    assert np.array_equal(dst, want)


def test_gather_scatter_with_masks_and_duplicates():
    src = np.arange(10, 20, dtype=np.int32)
    k = K(src=ptr[i32], dst=ptr[i32])
    offs = k.const(v(i32, 6), (3, 999, 0, -5, 9, 3))
    mask = k.const(v(bool_, 6), (True, False, True, False, True, True))
    g = k.op("gather", [k.p.src, offs, mask], v(i32, 6))
    k.op("store", [k.p.dst, k.const(i32, 0), g])
    # duplicates: offset 7 written by elements 0, 2 and 3; the highest index (3, value 33) wins
    soffs = k.const(v(i32, 4), (7, 8, 7, 7))
    vals = k.const(v(i32, 4), (30, 31, 32, 33))
    k.op("scatter", [k.p.dst, soffs, vals])
    smask = k.const(v(bool_, 4), (True, True, False, False))
    k.op("scatter", [k.p.dst, k.const(v(i32, 4), (9, -1, 9, 9)), vals, smask])  # masked OOB lanes: no access
    dst = np.zeros(10, np.int32)
    with pytest.raises(KernelRuntimeError, match=r"out-of-bounds scatter to 'dst': index -1 \(element 1"):
        run(k.fn, 1, None, [src, dst])
    assert dst[:6].tolist() == [13, 0, 10, 0, 19, 13]
    assert dst[7:9].tolist() == [33, 31]


def test_bf16_memory_round_trips_bits():
    bits = np.array([0x3F80, 0xC040, 0x7F80, 0x0001], np.uint16)
    k = K(src=ptr[bf16], dst=ptr[bf16])
    x = k.op("load", [k.p.src, k.const(i32, 0)], v(bf16, 4))
    k.op("store", [k.p.dst, k.const(i32, 0), k.op("add", [x, x], v(bf16, 4))])
    dst = np.zeros(4, np.uint16)
    run(k.fn, 1, None, [bits, dst])
    assert dst.tolist() == [0x4000, 0xC0C0, 0x7F80, 0x0002]


def test_atomics_run_in_element_order_and_return_old_values():
    k = K(p=ptr[i32], old=ptr[i32], q=ptr[f32])
    offs = k.const(v(i32, 4), (0, 1, 0, 0))
    old = k.op("atomic", [k.p.p, offs, k.const(v(i32, 4), (1, 2, 3, 4))], v(i32, 4), kind="add")
    k.op("store", [k.p.old, k.const(i32, 0), old])
    swapped = k.op("atomic", [k.p.p, k.const(i32, 2), k.const(i32, 5), k.const(i32, 9)], i32, kind="cmpxchg")
    failed = k.op("atomic", [k.p.p, k.const(i32, 2), k.const(i32, 5), k.const(i32, 11)], i32, kind="cmpxchg")
    k.op("store", [k.p.old, k.const(i32, 4), k.op("build", [swapped, failed], v(i32, 2))])
    k.op("atomic", [k.p.p, k.const(v(i32, 2), (3, 3)), k.const(v(i32, 2), (-7, 4))], v(i32, 2), kind="min")
    fo = k.op("atomic", [k.p.q, k.const(v(i32, 2), (0, 0)), k.const(v(f32, 2), (0.5, 0.25))], v(f32, 2), kind="add")
    k.op("store", [k.p.q, k.const(i32, 1), fo])
    p, old_out, q = np.array([10, 20, 5, 0], np.int32), np.zeros(6, np.int32), np.zeros(3, np.float32)
    run(k.fn, 1, None, [p, old_out, q])
    assert p.tolist() == [18, 22, 9, -7]
    assert old_out.tolist() == [10, 20, 11, 14, 5, 9]
    assert q.tolist() == [0.75, 0.0, 0.5]


def test_atomics_across_cm_threads():
    k = K(counter=ptr[u32], tickets=ptr[u32])
    ticket = k.op("atomic", [k.p.counter, k.const(i32, 0), k.const(u32, 1)], u32, kind="add")
    k.op("store", [k.p.tickets, k.tid(), ticket])
    counter, tickets = np.zeros(1, np.uint32), np.zeros(40, np.uint32)
    run(k.fn, (5, 8), (1, 2), [counter, tickets])   # dim 1 does not enter the offset: 8 hits per slot
    assert counter[0] == 40
    # groups run in order (x fastest), a group's threads in local order: the last row writes last
    assert tickets[:5].tolist() == [31, 33, 35, 37, 39] and not tickets[5:].any()


# ---------------------------------------------------------------------------
# SLM, barriers, groups and ids

def _reverse_through_slm(skip_barrier_for=None):
    k = K(src=ptr[f32], dst=ptr[f32])
    slm = k.op("slm", [], PtrType(f32, "local"), hint="tile", n=64)
    lid, gid = k.tid(0, "local_id"), k.tid(0, "group_id")
    c16 = k.const(i32, 16)
    mine = k.op("load", [k.p.src, k.op("mul", [k.tid(), c16], i32)], v(f32, 16))
    k.op("store", [slm, k.op("mul", [lid, c16], i32), mine])
    k.op("fence")
    if skip_barrier_for is None:
        k.at(7).op("barrier")
    else:
        cond = k.op("cmp", [lid, k.const(i32, skip_barrier_for)], bool_, pred="ne")
        if_op = k.op("if", [cond], None)
        then_b, else_b = Block(), Block()
        with k.b.at(then_b):
            k.at(7).op("barrier")
            k.op("yield")
        with k.b.at(else_b):
            k.op("yield")
        if_op.blocks[:] = [then_b, else_b]
    other = k.op("sub", [k.const(i32, 3), lid], i32)
    theirs = k.op("load", [slm, k.op("mul", [other, c16], i32)], v(f32, 16))
    reversed_ = k.op("iselect", [theirs, k.const(v(i32, 16), tuple(range(15, -1, -1)))], v(f32, 16))
    base = k.op("mul", [k.op("mul", [gid, k.const(i32, 4)], i32), c16], i32)
    k.op("store", [k.p.dst, k.op("add", [base, k.op("mul", [lid, c16], i32)], i32), reversed_])
    return k.fn


def test_slm_and_barrier_reverse_a_group_of_4():
    src, dst = np.arange(128, dtype=np.float32), np.zeros(128, np.float32)
    run(_reverse_through_slm(), 8, 4, [src, dst])
    assert np.array_equal(dst, src.reshape(2, 64)[:, ::-1].reshape(-1))


def test_barrier_divergence_is_an_error():
    src, dst = np.arange(64, dtype=np.float32), np.zeros(64, np.float32)
    with pytest.raises(KernelRuntimeError, match=r"kernel.py:7:5: barrier divergence: .*local_id \(2, 0, 0\)"):
        run(_reverse_through_slm(skip_barrier_for=2), 4, 4, [src, dst])


def test_slm_starts_as_garbage():
    k = K(dst=ptr[f32], idst=ptr[i32])
    fs = k.op("slm", [], PtrType(f32, "local"), n=4)
    is_ = k.op("slm", [], PtrType(i32, "local"), n=4)
    k.op("store", [k.p.dst, k.const(i32, 0), k.op("load", [fs, k.const(i32, 0)], v(f32, 4))])
    k.op("store", [k.p.idst, k.const(i32, 0), k.op("load", [is_, k.const(i32, 0)], v(i32, 4))])
    dst, idst = np.zeros(4, np.float32), np.zeros(4, np.int32)
    run(k.fn, 1, None, [dst, idst])
    assert np.isnan(dst).all() and (idst.view(np.uint32) == 0xCDCDCDCD).all()


def test_ids_in_a_3d_grid():
    k = K(out=ptr[i32])
    kinds = ("thread_id", "group_id", "local_id", "group_count", "local_size")
    ids = [k.tid(d, kind) for kind in kinds for d in range(3)]
    x, y, z = k.tid(0), k.tid(1), k.tid(2)
    row = k.op("add", [y, k.op("mul", [z, k.const(i32, 3)], i32)], i32)       # y + 3z
    linear = k.op("add", [x, k.op("mul", [row, k.const(i32, 4)], i32)], i32)  # x + 4(y + 3z)
    k.op("store", [k.p.out, k.op("mul", [linear, k.const(i32, 15)], i32), k.op("build", ids, v(i32, 15))])
    out = np.zeros((2, 3, 4, 15), np.int32)
    run(k.fn, (4, 3, 2), (2, 1, 2), [out])
    for zz in range(2):
        for yy in range(3):
            for xx in range(4):
                t, lsz = (xx, yy, zz), (2, 1, 2)
                want = (*t, *(a // b for a, b in zip(t, lsz)), *(a % b for a, b in zip(t, lsz)),
                        2, 3, 1, *lsz)
                assert tuple(out[zz, yy, xx]) == want


# ---------------------------------------------------------------------------
# Control flow

def test_for_loop_with_iteration_values_and_negative_step():
    k = K(out=ptr[i32], n=i32)
    zero, one = k.const(i32, 0), k.const(i32, 1)
    for_op = k.op("for", [zero, k.p.n, k.const(i32, 3), zero], None)
    total, = _add_results(for_op, (i32, "total"))
    body = Block([i32, i32], ["i", "acc"])
    with k.b.at(body):
        k.op("yield", [k.op("add", [body.args[1], body.args[0]], i32)])
    for_op.blocks.append(body)
    down = k.op("for", [k.p.n, zero, k.const(i32, -2), one], None)
    prod, = _add_results(down, (i32, "prod"))
    body2 = Block([i32, i32], ["j", "p"])
    with k.b.at(body2):
        k.op("yield", [k.op("mul", [body2.args[1], body2.args[0]], i32)])
    down.blocks.append(body2)
    k.op("store", [k.p.out, zero, k.op("build", [total, prod], v(i32, 2))])
    out = np.zeros(2, np.int32)
    run(k.fn, 1, None, [out, 10])
    assert out.tolist() == [0 + 3 + 6 + 9, 10 * 8 * 6 * 4 * 2]
    run(k.fn, 1, None, [out, -1])
    assert out.tolist() == [0, 1]


def _add_results(op, *types_and_hints):
    from cmlang.ir import Value
    op.results.extend(Value(t, h, owner=op, index=i) for i, (t, h) in enumerate(types_and_hints))
    return op.results


def test_if_and_while():
    # while (x != 1) { x = x even ? x / 2 : 3x + 1; steps++ }  (Collatz)
    k = K(out=ptr[i32], x0=i32)
    one, two = k.const(i32, 1), k.const(i32, 2)
    w = k.op("while", [k.p.x0, k.const(i32, 0)], None)
    x_final, steps = _add_results(w, (i32, "x"), (i32, "steps"))
    before, after = Block([i32, i32], ["x", "steps"]), Block([i32, i32], ["x", "steps"])
    with k.b.at(before):
        ne = k.op("cmp", [before.args[0], one], bool_, pred="ne")
        k.op("condition", [ne, *before.args])
    with k.b.at(after):
        x, n = after.args
        even = k.op("cmp", [k.op("rem", [x, two], i32), k.const(i32, 0)], bool_, pred="eq")
        branch = k.op("if", [even], None)
        nx, = _add_results(branch, (i32, "x"))
        then_b, else_b = Block(), Block()
        with k.b.at(then_b):
            k.op("yield", [k.op("div", [x, two], i32)])
        with k.b.at(else_b):
            k.op("yield", [k.op("add", [k.op("mul", [x, k.const(i32, 3)], i32), one], i32)])
        branch.blocks[:] = [then_b, else_b]
        k.op("yield", [nx, k.op("add", [n, one], i32)])
    w.blocks[:] = [before, after]
    k.op("store", [k.p.out, k.const(i32, 0), k.op("build", [x_final, steps], v(i32, 2))])
    out = np.zeros(2, np.int32)
    run(k.fn, 1, None, [out, 27])
    assert out.tolist() == [1, 111]


# ---------------------------------------------------------------------------
# Errors name the line, the thread, the index and the buffer

SAXPY_SOURCE = """\
import cmlang as cm

@cm.kernel
def saxpy(x: cm.ptr[cm.f32], y: cm.ptr[cm.f32], a: cm.f32):
    base = cm.thread_id(0) * 32
    vx = cm.load(x, base, 32)
    vy = cm.load(y, base, 32)
    cm.store(y, base + 16, a * vx + vy)
"""


def _saxpy(file):
    k = K(file=str(file), x=ptr[f32], y=ptr[f32], a=f32)
    base = k.at(5).op("mul", [k.tid(), k.const(i32, 32)], i32, hint="base")
    vx = k.at(6, 9).op("load", [k.p.x, base], v(f32, 32), hint="vx")
    vy = k.at(7, 9).op("load", [k.p.y, base], v(f32, 32), hint="vy")
    k.at(8)
    r = k.op("add", [k.op("mul", [k.op("splat", [k.p.a], v(f32, 32)), vx], v(f32, 32)), vy], v(f32, 32))
    k.op("store", [k.p.y, k.op("add", [base, k.const(i32, 16)], i32), r])
    return k.fn


def test_out_of_bounds_store_names_line_thread_index_and_buffer(tmp_path):
    src = tmp_path / "saxpy.py"
    src.write_text(SAXPY_SOURCE)
    x, y = np.ones(1024, np.float32), np.ones(1024, np.float32)
    with pytest.raises(KernelRuntimeError) as info:
        run(_saxpy(src), 32, None, [x, y, 2.0])
    msg = str(info.value)
    assert msg.startswith(f"{src}:8:5: out-of-bounds store to 'y': index 1024 (element 16 of the access), "
                          "buffer has 1024 elements; CM thread (thread_id=(31, 0, 0), group_id=(31, 0, 0), "
                          "local_id=(0, 0, 0))")
    assert "    cm.store(y, base + 16, a * vx + vy)\n        ^" in msg
    assert info.value.thread_id == (31, 0, 0)
    assert y[:16].tolist() == [1.0] * 16 and y[16:48].tolist() == [3.0] * 32   # earlier threads ran


def test_out_of_bounds_load_with_negative_offset(tmp_path):
    k = K(x=ptr[f32], off=i32)
    k.at(3).op("load", [k.p.x, k.p.off], v(f32, 8))
    with pytest.raises(KernelRuntimeError, match=r"kernel.py:3:5: out-of-bounds load from 'x': index -3 "
                                                 r"\(element 0 of the access\), buffer has 16 elements"):
        run(k.fn, 1, None, [np.zeros(16, np.float32), -3])


def test_errors_inside_loops_name_the_inner_op():
    k = K(out=ptr[i32])
    loop = k.at(2).op("for", [k.const(i32, 0), k.const(i32, 4), k.const(i32, 1)], None)
    body = Block([i32], ["i"])
    with k.b.at(body):
        k.at(3).op("store", [k.p.out, k.op("mul", [body.args[0], k.const(i32, 2)], i32), body.args[0]])
        k.op("yield")
    loop.blocks.append(body)
    out = np.full(5, -1, np.int32)
    with pytest.raises(KernelRuntimeError, match=r"^kernel.py:3:5: out-of-bounds store to 'out': index 6 "):
        run(k.fn, 1, None, [out])
    assert out.tolist() == [0, -1, 1, -1, 2]


def test_other_python_errors_are_wrapped_with_the_cause():
    k = K(n=i32)
    k.at(4).op("print", [k.p.n], fmt="{0} {1}")
    with pytest.raises(KernelRuntimeError, match=r"kernel.py:4:5: IndexError: .*CM thread \(thread_id=\(0, 0, 0\)") \
            as info:
        run(k.fn, 1, None, [1])
    assert isinstance(info.value.__cause__, IndexError)


# ---------------------------------------------------------------------------
# Debugging: print and breakpoint

def test_print_once_per_cm_thread(capsys):
    k = K(x=ptr[f32])
    acc = k.op("load", [k.p.x, k.op("mul", [k.tid(), k.const(i32, 3)], i32)], v(f32, 3))
    k.op("print", [k.tid(), acc, k.op("reduce", [acc], f32, kind="add", axis=None)],
         fmt="t={} acc = {} sum={:.1f}")
    k.op("print", [acc], fmt="{:.2f}")
    run(k.fn, 2, None, [np.arange(6, dtype=np.float32)])
    assert capsys.readouterr().out.splitlines() == [
        "[thread (0, 0, 0)] t=0 acc = [0., 1., 2.] sum=3.0",
        "[thread (0, 0, 0)] [0.00, 1.00, 2.00]",
        "[thread (1, 0, 0)] t=1 acc = [3., 4., 5.] sum=12.0",
        "[thread (1, 0, 0)] [3.00, 4.00, 5.00]",
    ]


def _breakpoint_kernel(tmp_path):
    src = tmp_path / "bp.py"
    src.write_text(SAXPY_SOURCE)
    k = K(file=str(src), x=ptr[f32], n=i32)
    acc = k.at(6).op("load", [k.p.x, k.const(i32, 0)], v(f32, 4), hint="acc")
    k.op("add", [acc, acc], v(f32, 4), hint="acc")
    k.at(7).op("breakpoint")
    return k.fn


def test_breakpoint_calls_the_hook_in_a_frame_at_the_kernel_line(tmp_path, monkeypatch):
    seen = []

    def hook(*args, **kwargs):
        frame = sys._getframe(1)
        seen.append((frame.f_code.co_filename, frame.f_lineno, dict(frame.f_locals)))
    monkeypatch.setattr(sys, "breakpointhook", hook)
    x = np.arange(4, dtype=np.float32)
    run(_breakpoint_kernel(tmp_path), 2, None, [x, 7])
    assert len(seen) == 2
    file, line, local_vars = seen[0]
    assert file == str(tmp_path / "bp.py") and line == 7
    assert np.array_equal(local_vars["acc"], 2 * x)      # the later 'acc' wins
    assert local_vars["n"] == 7 and local_vars["x"] is not None


def test_breakpoint_in_a_loop_sees_the_enclosing_scopes_only(monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "breakpointhook", lambda: seen.append(dict(sys._getframe(1).f_locals)))
    k = K(n=i32)
    before = k.op("add", [k.p.n, k.p.n], i32, hint="before")
    loop = k.op("for", [k.const(i32, 0), k.const(i32, 2), k.const(i32, 1), before], None)
    _add_results(loop, (i32, "total"))
    body = Block([i32, i32], ["i", "total"])
    with k.b.at(body):
        k.op("breakpoint")
        k.op("yield", [k.op("add", [body.args[1], body.args[0]], i32, hint="later")])
    loop.blocks.append(body)
    k.op("add", [k.p.n, k.p.n], i32, hint="after")
    run(k.fn, 1, None, [5])
    assert seen == [{"n": 5, "before": 10, "i": 0, "total": 10}, {"n": 5, "before": 10, "i": 1, "total": 10}]


def test_breakpoint_respects_PYTHONBREAKPOINT(tmp_path, monkeypatch):
    calls = []
    probe = pytypes.ModuleType("cm_bp_probe")
    probe.hook = lambda: calls.append(sorted(sys._getframe(1).f_locals))
    monkeypatch.setitem(sys.modules, "cm_bp_probe", probe)
    monkeypatch.setattr(sys, "breakpointhook", sys.__breakpointhook__)
    monkeypatch.setenv("PYTHONBREAKPOINT", "cm_bp_probe.hook")
    run(_breakpoint_kernel(tmp_path), 1, None, [np.zeros(4, np.float32), 1])
    assert calls == [["acc", "n", "x"]]
    monkeypatch.setenv("PYTHONBREAKPOINT", "0")
    run(_breakpoint_kernel(tmp_path), 1, None, [np.zeros(4, np.float32), 1])
    assert len(calls) == 1


# ---------------------------------------------------------------------------
# Arguments and speed

def test_scalar_arguments_take_the_exact_parameter_type():
    k = K(a=u8, out=ptr[u8])
    k.op("store", [k.p.out, k.const(i32, 0), k.op("add", [k.p.a, k.const(u8, 1)], u8)])
    out = np.zeros(1, np.uint8)
    run(k.fn, 1, None, [255, out])
    assert out[0] == 0


def test_bf16_scalar_arguments_as_numbers_or_bits():
    k = K(a=bf16, out=ptr[bf16])
    k.op("store", [k.p.out, k.const(i32, 0), k.p.a])
    out = np.zeros(1, np.uint16)
    run(k.fn, 1, None, [1.00390625, out])       # a tie: rounds to 1.0
    assert out[0] == 0x3F80
    run(k.fn, 1, None, [np.uint16(0xC040), out])
    assert out[0] == 0xC040


def test_non_contiguous_arrays_are_written_back():
    k = K(y=ptr[i32])
    k.op("store", [k.p.y, k.tid(), k.tid()])
    base = np.full((4, 2), -1, np.int32)
    run(k.fn, 4, None, [base[:, 0]])
    assert base.tolist() == [[0, -1], [1, -1], [2, -1], [3, -1]]


def test_saxpy_with_1000_cm_threads_is_quick(tmp_path, monkeypatch):
    monkeypatch.setattr(executor, "CHECK_TYPES", False)
    fn = _saxpy(tmp_path / "none.py")
    x, y = np.arange(32016, dtype=np.float32), np.ones(32016, np.float32)
    start = time.perf_counter()
    run(fn, 1000, None, [x, y, 2.0])
    assert time.perf_counter() - start < 0.5
    assert y[16] == 2 * x[0] + 1
