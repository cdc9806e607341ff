"""The CM operations real kernels use (cm.cbit/fbl/fbh/lzd, rndd/rndu/rnde/rndz/frc, avg, mulhi,
dp2/dp3/dp4/dph, pack_mask/unpack_mask, merge with a bit mask), float saturation, and register
kernel parameters: each checked against numpy (or exact Python integers) in the interpreter, on
the device (SIMT) and in the spirv-vc lowering run by tests/vc_emulator.py, with the edge cases
the CM language spec names (0 for fbl/fbh/lzd, negative values for fbh, overflow for avg and
mulhi, .5 ties for rnde)."""
import importlib.util
import re
import os

import numpy as np
import pytest

import cmlang as cm
from cmlang import f16, f32, i8, i16, i32, u8, u16, u32

needs_vc = pytest.mark.skipif(importlib.util.find_spec("dpcpp_llvm_spirv") is None,
                              reason="the spirv-vc target needs the dpcpp-llvm-spirv wheel")
PATHS = ["interpreter", "simt", pytest.param("vc", marks=needs_vc)]
NONE = 0xFFFFFFFF


def run(kernel, args, where, grid=1):
    """The arguments after the kernel ran on ``where``: "interpreter", "simt" (the default
    device) or "vc" (the spirv-vc lowering in the emulator)."""
    args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    if where == "vc":
        from vc_emulator import run_isolated
        key, runtime = kernel._split_args(tuple(args))
        return run_isolated(kernel.specialization(key, "spirv-vc"), grid, None, list(runtime))
    saved = os.environ.get("CMLANG_INTERPRET")
    os.environ["CMLANG_INTERPRET"] = "1" if where == "interpreter" else "0"
    try:
        kernel[grid](*args)
    finally:
        if saved is None:
            del os.environ["CMLANG_INTERPRET"]
        else:
            os.environ["CMLANG_INTERPRET"] = saved
    return args


# --- references: exact Python integers -----------------------------------------------------------

def ref_cbit(x, bits):
    return bin(int(x) & ((1 << bits) - 1)).count("1")


def ref_fbl(x):
    u = int(x) & 0xFFFFFFFF
    return NONE if u == 0 else (u & -u).bit_length() - 1


def ref_lzd(x):
    return 32 - (int(x) & 0xFFFFFFFF).bit_length()


def ref_fbh(x, signed):
    v = int(x)
    if signed:
        if v in (0, -1):
            return -1
        return 32 - (~v if v < 0 else v).bit_length()     # leading bits equal to the sign bit
    return NONE if v == 0 else 32 - v.bit_length()


U32_EDGES = [0, 1, 2, 3, 0x80000000, 0xFFFFFFFF, 0x7FFFFFFF, 0x00010000, 12, 0xF0F0F0F0, 0x40000000,
             0x80000001, 0x00000100, 5, 0xFFFFFFFE, 0x10]
I32_EDGES = [0, -1, 1, -2, 2**31 - 1, -2**31, 5, -5, 0x40000000, -0x40000000, 255, -256, 7, -8,
             0x7FFF0000, -0x7FFF0001]


def _bit_kernel(simd, n):
    @cm.kernel(simd=simd)
    def bit_ops(u: cm.ptr[u32], s: cm.ptr[i32], ou: cm.ptr[u32], os_: cm.ptr[i32]):
        a = cm.load(u, 0, n)
        b = cm.load(s, 0, n)
        cm.store(ou, 0, cm.cbit(a))
        cm.store(ou, n, cm.fbl(a))
        cm.store(ou, 2 * n, cm.fbh(a))
        cm.store(ou, 3 * n, cm.lzd(a))
        cm.store(ou, 4 * n, cm.cbit(b))
        cm.store(ou, 5 * n, cm.fbl(b))
        cm.store(ou, 6 * n, cm.lzd(b))
        cm.store(os_, 0, cm.fbh(b))
    return bit_ops


@pytest.mark.parametrize("where", PATHS)
@pytest.mark.parametrize("simd", [8, 16, 32])
def test_bit_scans_against_exact_integers(where, simd):
    n = 32
    rng = np.random.default_rng(simd)
    u = np.array(U32_EDGES + list(rng.integers(0, 2**32, n - len(U32_EDGES), dtype=np.uint64)), np.uint32)
    s = np.array(I32_EDGES + list(rng.integers(-2**31, 2**31, n - len(I32_EDGES))), np.int32)
    got = run(_bit_kernel(simd, n), [u, s, np.zeros(7 * n, np.uint32), np.zeros(n, np.int32)], where)
    ou, os_ = got[2].reshape(7, n), got[3]
    assert ou[0].tolist() == [ref_cbit(x, 32) for x in u]
    assert ou[1].tolist() == [ref_fbl(x) for x in u]
    assert ou[2].tolist() == [ref_fbh(x, False) for x in u]
    assert ou[3].tolist() == [ref_lzd(x) for x in u]
    assert ou[4].tolist() == [ref_cbit(x, 32) for x in s]
    assert ou[5].tolist() == [ref_fbl(x) for x in s]
    assert ou[6].tolist() == [ref_lzd(x) for x in s]
    assert os_.tolist() == [ref_fbh(x, True) for x in s]
    # the spec's own cases
    assert ou[1][0] == ou[2][0] == NONE and ou[3][0] == 32          # 0
    assert os_[0] == os_[1] == -1 and os_[3] == 31 and os_[5] == 1     # 0, -1, -2, INT_MIN


@cm.kernel(simd=16)
def _narrow_bits(a: cm.ptr[i8], b: cm.ptr[u16], s: cm.ptr[i16], out: cm.ptr[u32], sfbh: cm.ptr[i32]):
    x = cm.load(a, 0, 16)
    y = cm.load(b, 0, 16)
    z = cm.load(s, 0, 16)
    cm.store(out, 0, cm.cbit(x))          # counts the element's own 8 bits
    cm.store(out, 16, cm.fbl(x))
    cm.store(out, 32, cm.cbit(y))
    cm.store(out, 48, cm.lzd(y))          # after promotion to 32 bits
    cm.store(sfbh, 0, cm.fbh(z))          # i16 promotes to i32: signed fbh


@pytest.mark.parametrize("where", PATHS)
def test_bit_scans_of_narrow_integers_count_their_own_bits(where):
    a = np.array([-1, 0, 1, -128, 127, 64, -2, 3] * 2, np.int8)
    b = np.array([0, 1, 0xFFFF, 0x8000, 0x00FF, 2, 3, 4] * 2, np.uint16)
    s = np.array([0, -1, 1, -32768, 32767, -2, 100, -100] * 2, np.int16)
    got = run(_narrow_bits, [a, b, s, np.zeros(64, np.uint32), np.zeros(16, np.int32)], where)
    out = got[3].reshape(4, 16)
    assert out[0].tolist() == [ref_cbit(x, 8) for x in a]
    assert out[1].tolist() == [ref_fbl(int(x) & 0xFF) for x in a]
    assert out[2].tolist() == [ref_cbit(x, 16) for x in b]
    assert out[3].tolist() == [ref_lzd(x) for x in b]
    assert got[4].tolist() == [ref_fbh(x, True) for x in s]


# --- avg and mulhi ---------------------------------------------------------------------------

@cm.kernel(simd=8)
def _avg_mulhi(a: cm.ptr[i32], b: cm.ptr[i32], ua: cm.ptr[u32], ub: cm.ptr[u32], p: cm.ptr[u8],
               q: cm.ptr[u8], oi: cm.ptr[i32], ou: cm.ptr[u32], o8: cm.ptr[u8]):
    x, y = cm.load(a, 0, 16), cm.load(b, 0, 16)
    ux, uy = cm.load(ua, 0, 16), cm.load(ub, 0, 16)
    cm.store(oi, 0, cm.avg(x, y))
    cm.store(oi, 16, cm.mulhi(x, y))
    cm.store(ou, 0, cm.avg(ux, uy))
    cm.store(ou, 16, cm.mulhi(ux, uy))
    cm.store(o8, 0, cm.avg(cm.load(p, 0, 16), cm.load(q, 0, 16)))   # u8 stays u8: no overflow


@pytest.mark.parametrize("where", PATHS)
def test_avg_rounds_up_and_mulhi_is_the_high_half_without_overflow(where):
    imax, imin, umax = 2**31 - 1, -2**31, 2**32 - 1
    a = np.array([imax, imin, imax, -1, -1, 3, -3, 0, 7, -7, imin, imax, 1, -2, 100000, -65536], np.int32)
    b = np.array([imax, imin, imin, 0, -2, 4, -4, 0, 8, 8, -1, -1, 1, -3, 300000, 65536], np.int32)
    ua = np.array([umax, umax, 0, 1, 2**31, 3, 0x10000, 5] * 2, np.uint32)
    ub = np.array([umax, 0, 0, 2, 2**31, 3, 0x10000, 6] * 2, np.uint32)
    p = np.array([255, 255, 0, 1, 254, 3, 100, 7] * 2, np.uint8)
    q = np.array([255, 254, 0, 2, 255, 4, 101, 8] * 2, np.uint8)
    got = run(_avg_mulhi, [a, b, ua, ub, p, q, np.zeros(32, np.int32), np.zeros(32, np.uint32),
                           np.zeros(16, np.uint8)], where)
    oi, ou, o8 = got[6], got[7], got[8]
    assert oi[:16].tolist() == [(int(x) + int(y) + 1) >> 1 for x, y in zip(a, b)]
    assert oi[16:].tolist() == [(int(x) * int(y)) >> 32 for x, y in zip(a, b)]
    assert ou[:16].tolist() == [(int(x) + int(y) + 1) >> 1 for x, y in zip(ua, ub)]
    assert ou[16:].tolist() == [(int(x) * int(y)) >> 32 for x, y in zip(ua, ub)]
    assert o8.tolist() == [(int(x) + int(y) + 1) >> 1 for x, y in zip(p, q)]
    assert oi[0] == imax and oi[1] == imin and oi[2] == 0          # no overflow at the extremes


# --- rounding ------------------------------------------------------------------------------------

@cm.kernel(simd=16)
def _rounding(x: cm.ptr[f32], h: cm.ptr[f16], out: cm.ptr[f32], oh: cm.ptr[f16]):
    v = cm.load(x, 0, 32)
    cm.store(out, 0, cm.rndd(v))
    cm.store(out, 32, cm.rndu(v))
    cm.store(out, 64, cm.rnde(v))
    cm.store(out, 96, cm.rndz(v))
    cm.store(out, 128, cm.frc(v))
    w = cm.load(h, 0, 16)
    cm.store(oh, 0, cm.rnde(w))
    cm.store(oh, 16, cm.frc(w))


@pytest.mark.parametrize("where", PATHS)
def test_rounding_modes_and_fraction(where):
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, 4.5, 1e7 + 0.5, -0.0, 0.49999997, -1e-8,
                  2.7, -2.7, 1e30, -1e30, np.inf, -np.inf, 0.0, 8388607.5, 16777216.0, 100.25,
                  -100.75, 0.1, -0.1, 5.0, -5.0, 123456.5, -7.5, 6.5, 0.75, -0.25], np.float32)
    h = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 1023.5, -3.25, 7.75, 0.0, -0.0, 2.0, -2.0, 0.3, -0.3,
                  65504.0, 11.5], np.float16)
    got = run(_rounding, [x, h, np.zeros(160, np.float32), np.zeros(32, np.float16)], where)
    out, oh = got[2].reshape(5, 32), got[3]
    np.testing.assert_array_equal(out[0], np.floor(x))
    np.testing.assert_array_equal(out[1], np.ceil(x))
    np.testing.assert_array_equal(out[2], np.rint(x))          # ties to even: 0.5 -> 0, 2.5 -> 2
    np.testing.assert_array_equal(out[3], np.trunc(x))
    finite = np.isfinite(x)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(out[4][finite], (x - np.floor(x))[finite])
    assert out[2][:8].tolist() == [0.0, 2.0, 2.0, -0.0, -2.0, -2.0, 4.0, 4.0]
    assert np.signbit(out[2][3]) and np.signbit(out[3][3])     # -0.5 rounds to -0.0
    np.testing.assert_array_equal(oh[:16], np.rint(h))
    np.testing.assert_array_equal(oh[16:], (h - np.floor(h)).astype(np.float16))


# --- dot products (cross-element: every simd) ---------------------------------------------------

def _dot_kernel(simd, n):
    @cm.kernel(simd=simd)
    def dots(a: cm.ptr[f32], b: cm.ptr[f32], out: cm.ptr[f32]):
        x, y = cm.load(a, 0, n), cm.load(b, 0, n)
        cm.store(out, 0, cm.dp2(x, y))
        cm.store(out, n, cm.dp3(x, y))
        cm.store(out, 2 * n, cm.dp4(x, y))
        cm.store(out, 3 * n, cm.dph(x, y))
        cm.store(out, 4 * n, cm.dp4(x, 2.0))                       # a scalar second operand
        m = cm.load(a, 0, (2, n // 2), n // 2)
        cm.store(out, 5 * n, cm.dp4(m, m), n // 2)                 # a matrix: groups of its rows
    return dots


def ref_dot(x, y, kind):
    g = (x * y).reshape(-1, 4).astype(np.float64)
    terms = {"dp2": 2, "dp3": 3, "dp4": 4, "dph": 3}[kind]
    s = g[:, :terms].sum(axis=1) + (y.reshape(-1, 4)[:, 3] if kind == "dph" else 0)
    return np.repeat(s, 4)


@pytest.mark.parametrize("where", PATHS)
@pytest.mark.parametrize("simd,n", [(8, 8), (16, 24), (32, 64)])
def test_dot_products_replicate_each_group_sum(where, simd, n):
    rng = np.random.default_rng(n)
    a = rng.uniform(-4, 4, n).astype(np.float32)
    b = rng.uniform(-4, 4, n).astype(np.float32)
    out = run(_dot_kernel(simd, n), [a, b, np.zeros(6 * n, np.float32)], where)[2].reshape(6, n)
    for row, kind in enumerate(("dp2", "dp3", "dp4", "dph")):
        np.testing.assert_allclose(out[row], ref_dot(a, b, kind), rtol=1e-5, atol=1e-5, err_msg=kind)
    np.testing.assert_allclose(out[4], ref_dot(a, np.full(n, 2.0, np.float32), "dp4"), rtol=1e-5)
    np.testing.assert_allclose(out[5], ref_dot(a, a, "dp4"), rtol=1e-5)


def test_dot_products_need_groups_of_four():
    @cm.kernel(simd=8)
    def bad(a: cm.ptr[f32], out: cm.ptr[f32]):
        x = cm.load(a, 0, 6)
        cm.store(out, 0, cm.dp4(x, x))
    with pytest.raises(cm.CompileError, match=r"cm.dp4 works on groups of 4 elements.*vector<f32, 6>"):
        bad.compile(np.zeros(8, np.float32), np.zeros(8, np.float32))


# --- masks ---------------------------------------------------------------------------------------

def _mask_kernel(simd, n):
    @cm.kernel(simd=simd)
    def masks(x: cm.ptr[i32], bits: u32, packed: cm.ptr[u32], unpacked: cm.ptr[u8], merged: cm.ptr[i32]):
        v = cm.load(x, 0, n)
        cm.store(packed, 0, cm.pack_mask(v > 0))
        cm.store(packed, 1, cm.pack_mask(v))                        # non-bool: != 0
        cm.store(unpacked, 0, cm.unpack_mask(bits, n).astype(u8))
        cm.store(merged, 0, cm.merge(v, -v, bits))                  # a run-time bit mask
        cm.store(merged, n, cm.merge(v, 0, 0b1011))                 # a constant bit mask
        m = cm.load(x, 0, (2, n // 2), n // 2)
        cm.store(merged, 2 * n, cm.merge(m, 7, bits), n // 2)      # row-major bits of a matrix
    return masks


@pytest.mark.parametrize("where", PATHS)
@pytest.mark.parametrize("simd,n", [(8, 8), (16, 16), (32, 32), (16, 20)])
def test_pack_unpack_and_merge_with_a_bit_mask(where, simd, n):
    rng = np.random.default_rng(n + simd)
    x = rng.integers(-5, 6, n).astype(np.int32)
    x[0], x[-1] = 3, 0
    bits = int(rng.integers(0, 2**32)) | 1 | (1 << (n - 1))
    got = run(_mask_kernel(simd, n), [x, bits, np.zeros(2, np.uint32), np.zeros(n, np.uint8),
                                      np.zeros(3 * n, np.int32)], where)
    packed, unpacked, merged = got[2], got[3], got[4].reshape(3, n)
    bit = np.array([(bits >> i) & 1 for i in range(n)], bool)
    assert packed[0] == sum(1 << i for i in range(n) if x[i] > 0)
    assert packed[1] == sum(1 << i for i in range(n) if x[i] != 0)
    assert unpacked.tolist() == bit.astype(np.uint8).tolist()
    assert merged[0].tolist() == np.where(bit, x, -x).tolist()
    assert merged[1].tolist() == np.where([(0b1011 >> i) & 1 for i in range(n)], x, 0).tolist()
    assert merged[2].tolist() == np.where(bit, x, 7).tolist()


def test_pack_mask_refuses_more_than_32_elements():
    @cm.kernel(simd=16)
    def bad(x: cm.ptr[i32], out: cm.ptr[u32]):
        cm.store(out, 0, cm.pack_mask(cm.load(x, 0, 48) > 0))
    with pytest.raises(cm.CompileError, match="at most 32 elements"):
        bad.compile(np.zeros(48, np.int32), np.zeros(1, np.uint32))


# --- float saturation ------------------------------------------------------------------------

@cm.kernel(simd=16)
def _float_sat(x: cm.ptr[f32], n: cm.ptr[i32], out: cm.ptr[f32], oh: cm.ptr[f16], ob: cm.ptr[u8]):
    v = cm.load(x, 0, 16)
    cm.store(out, 0, cm.sat(v))                        # CM / ESIMD: [0.0, 1.0]
    cm.store(out, 16, cm.sat(v * 0.5 + 0.25))          # of an expression
    cm.store(oh, 0, cm.sat(v.astype(f16)))            # float -> float conversion
    cm.store(out, 32, cm.sat(cm.load(n, 0, 16).astype(f32)))   # int -> float
    cm.store(ob, 0, cm.sat(v.astype(u8)))             # integers keep their range


@pytest.mark.parametrize("where", PATHS)
def test_float_saturation_clamps_to_the_unit_interval(where):
    x = np.array([-1.0, 0.0, -0.0, 0.25, 0.5, 0.999, 1.0, 1.5, 255.9, np.nan, np.inf, -np.inf,
                  1e-40, -1e-30, 70000.0, 300.0], np.float32)
    n = np.array([-3, 0, 1, 2, 7, -1, 0, 1] * 2, np.int32)
    got = run(_float_sat, [x, n, np.zeros(48, np.float32), np.zeros(16, np.float16),
                           np.zeros(16, np.uint8)], where)
    out, oh, ob = got[2], got[3], got[4]
    unit = np.nan_to_num(np.clip(x.astype(np.float64), 0.0, 1.0), nan=0.0)
    np.testing.assert_array_equal(out[:16], unit.astype(np.float32))
    with np.errstate(invalid="ignore"):
        half = np.nan_to_num(np.clip(x.astype(np.float64) * 0.5 + 0.25, 0, 1), nan=0.0)
    np.testing.assert_array_equal(out[16:32], half.astype(np.float32))
    np.testing.assert_array_equal(oh, unit.astype(np.float16))
    np.testing.assert_array_equal(out[32:], np.clip(n, 0, 1).astype(np.float32))
    assert ob.tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 255, 0, 255, 0, 0, 0, 255, 255]


def test_sat_of_an_integer_value_still_needs_a_conversion():
    @cm.kernel(simd=8)
    def bad(x: cm.ptr[i32], out: cm.ptr[i32]):
        cm.store(out, 0, cm.sat(cm.load(x, 0, 8) + 1))
    with pytest.raises(cm.CompileError, match=r"cm.sat\(\) takes a conversion.*or a floating-point value"):
        bad.compile(np.zeros(8, np.int32), np.zeros(8, np.int32))


def test_bit_operations_refuse_floats_and_64_bit_integers():
    @cm.kernel(simd=8)
    def bad_float(x: cm.ptr[f32], out: cm.ptr[u32]):
        cm.store(out, 0, cm.cbit(cm.load(x, 0, 8)))

    @cm.kernel(simd=8)
    def bad_wide(x: cm.ptr[cm.i64], out: cm.ptr[cm.i64]):
        cm.store(out, 0, cm.mulhi(cm.load(x, 0, 8), cm.load(x, 0, 8)))
    with pytest.raises(cm.CompileError, match=r"cm.cbit takes integers of at most 32 bits, got vector<f32, 8>"):
        bad_float.compile(np.zeros(8, np.float32), np.zeros(8, np.uint32))
    with pytest.raises(cm.CompileError, match=r"cm.mulhi takes integers of at most 32 bits"):
        bad_wide.compile(np.zeros(8, np.int64), np.zeros(8, np.int64))


# --- register kernel parameters -------------------------------------------------------------

def _filter_kernel(simd):
    @cm.kernel(simd=simd)
    def linear(x: cm.ptr[f32], coeff: cm.vector[f32, 9], shift: cm.matrix[i32, 2, 3], out: cm.ptr[f32]):
        v = cm.load(x, 0, 40)
        acc = cm.zeros(cm.vector[f32, 32])
        for k in cm.static_range(9):
            acc += coeff[k] * v[k:k + 32]
        cm.store(out, 0, acc)
        cm.store(out, 32, shift.astype(f32)[1])
        cm.store(out, 35, cm.reduce_sum(shift).astype(f32))
    return linear


@pytest.mark.parametrize("where", PATHS)
@pytest.mark.parametrize("simd", [8, 16, 32])
def test_register_parameters_pass_by_value(where, simd):
    x = np.arange(40, dtype=np.float32) * 0.5
    coeff = np.linspace(-1, 1, 9).astype(np.float32)
    shift = [[1, -2, 3], [40, 50, -60]] if where != "vc" else np.array([[1, -2, 3], [40, 50, -60]], np.int32)
    got = run(_filter_kernel(simd), [x, list(coeff) if where == "simt" else coeff, shift,
                                     np.zeros(36, np.float32)], where)[3]
    want = np.array([sum(np.float64(coeff[k]) * x[i + k] for k in range(9)) for i in range(32)])
    np.testing.assert_allclose(got[:32], want, rtol=1e-5, atol=1e-5)
    assert got[32:].tolist() == [40.0, 50.0, -60.0, 32.0]


def test_register_parameter_shapes_and_values_are_checked_at_launch():
    k = _filter_kernel(8)
    x, out, shift = np.zeros(40, np.float32), np.zeros(36, np.float32), np.zeros((2, 3), np.int32)
    with pytest.raises(cm.LaunchError, match=r"argument 'coeff' \(vector<f32, 9>\) takes an array of "
                                             r"shape \(9,\), got shape \(8,\)"):
        k[1](x, np.zeros(8, np.float32), shift, out)
    with pytest.raises(cm.LaunchError, match=r"argument 'shift' \(matrix<i32, 2, 3>\) takes an array of "
                                             r"shape \(2, 3\), got shape \(6,\)"):
        k[1](x, np.zeros(9), np.zeros(6, np.int32), out)
    with pytest.raises(cm.LaunchError, match=r"argument 'shift' \(matrix<i32, 2, 3>\): element 5: "
                                             r"4294967296 is out of range"):
        k[1](x, np.zeros(9), [[0, 0, 0], [0, 0, 2**32]], out)
    with pytest.raises(cm.LaunchError, match=r"argument 'coeff' \(vector<f32, 9>\) takes a sequence or numpy "
                                             r"array of shape \(9,\), got float"):
        k[1](x, 1.0, shift, out)
    with pytest.raises(cm.LaunchError, match=r"argument 'coeff'.*shape \(9,\), got shape \(\)"):
        k[1](x, np.array(2.0), shift, out)


def test_register_parameters_through_a_package(tmp_path):
    from cmlang.package import build_package
    from cmlang.runtime.package import load_package
    k = _filter_kernel(16)
    path = str(tmp_path / "filter.cmpkg")
    build_package(path, [(k, {})], progress=False)
    pkg = load_package(path)
    x = np.arange(40, dtype=np.float32)
    coeff = np.ones(9, np.float32)
    out = np.zeros(36, np.float32)
    pkg.linear[1](x, coeff, np.array([[1, 2, 3], [4, 5, 6]], np.int32), out)
    np.testing.assert_array_equal(out[:32], [sum(x[i:i + 9]) for i in range(32)])
    assert out[32:].tolist() == [4.0, 5.0, 6.0, 21.0]


# --- CM's in-place member merge -------------------------------------------------------------

@cm.kernel(simd=8)
def _member_merge(x: cm.ptr[f32], out: cm.ptr[f32]):
    v = cm.load(x, 0, 16)
    w = cm.zeros(cm.vector[f32, 16])
    w.merge(v, v > 0)                                   # v where v > 0, else w unchanged
    w[0:8].merge(100.0, 0b11)                           # through a view, an integer bit mask
    m = cm.zeros(cm.matrix[f32, 2, 8])
    m.merge(v.format(f32, 2, 8), -v.format(f32, 2, 8), v.format(f32, 2, 8) < 0)   # x, y, mask
    cm.store(out, 0, w)
    cm.store(out, 16, m.format(f32))


@pytest.mark.parametrize("where", PATHS)
def test_member_merge_changes_the_register_in_place(where):
    x = np.linspace(-4, 4, 16).astype(np.float32)
    out = run(_member_merge, [x, np.zeros(32, np.float32)], where)[1]
    want = np.where(x > 0, x, 0)
    want[:2] = 100
    assert out[:16].tolist() == want.tolist()
    assert out[16:].tolist() == np.where(x < 0, x, -x).tolist()


def test_member_merge_inside_an_expression_is_refused():
    @cm.kernel(simd=8)
    def bad(x: cm.ptr[f32], out: cm.ptr[f32]):
        v = cm.load(x, 0, 8)
        cm.store(out, 0, v.merge(v * 2, v > 0))
    with pytest.raises(cm.CompileError, match=r"merge\(x, mask\) changes the register in place and is a "
                                              r"statement of its own.*cm.merge\(x, y, mask\)"):
        bad.compile(np.zeros(8, np.float32), np.zeros(8, np.float32))


# --- scalars, and register parameters of every element kind ---------------------------------

@cm.kernel(simd=16)
def _scalars_and_registers(n: u32, s: i32, f: f32, half: f16, h: cm.vector[f16, 4], b: cm.vector[cm.bool_, 3],
                           w: cm.matrix[cm.i64, 2, 2], bf: cm.vector[cm.bf16, 2], out: cm.ptr[f32]):
    r = cm.vector[f32, 8](cm.cbit(n), cm.fbl(n), cm.fbh(s), cm.lzd(n), cm.avg(s, 7), cm.mulhi(s, s),
                          cm.rnde(f), cm.sat(f))
    cm.store(out, 0, r)
    cm.store(out, 8, h.astype(f32) * half)
    cm.store(out, 12, b.astype(f32))
    cm.store(out, 15, w.astype(f32).format(f32))
    cm.store(out, 19, bf.astype(f32))
    cm.store(out, 21, f32(cm.cbit(5) + cm.avg(3, 4)))       # compile-time operands


@pytest.mark.parametrize("where", PATHS)
def test_scalar_operands_and_register_parameters_of_each_element_kind(where):
    """Also a scalar f16 kernel parameter on spirv-vc (the emulator passed half arguments in
    the wrong registers and crashed)."""
    out = run(_scalars_and_registers,
              [12, -5, 2.5, 2.0, np.array([1.5, -2, 3.25, 0.5], np.float16), [True, False, True],
               np.array([[1, -2], [2**40, 3]], np.int64), [1.5, -0.25], np.zeros(22, np.float32)], where)[-1]
    assert out.tolist() == [2, 2, 29, 28, 1, (25 >> 32), 2, 1, 3, -4, 6.5, 1, 1, 0, 1,
                            1, -2, 2.0**40, 3, 1.5, -0.25, 6]


def test_register_parameters_through_the_disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CMLANG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CMLANG_CACHE", raising=False)
    monkeypatch.delenv("CMLANG_INTERPRET", raising=False)

    def weigh(x: cm.ptr[f32], w: cm.vector[f32, 4], out: cm.ptr[f32]):
        cm.store(out, 0, cm.load(x, 0, 4) * w)
    first, second = cm.kernel(simd=8)(weigh), cm.kernel(simd=8)(weigh)
    x, out = np.arange(4, dtype=np.float32), np.zeros(4, np.float32)
    first[1](x, [1, 2, 3, 4], out)
    assert out.tolist() == [0, 2, 6, 12]
    ck = second.compile(cm.ptr[f32], cm.vector[f32, 4], cm.ptr[f32])
    from cmlang.cache import CachedCompiledKernel
    assert isinstance(ck, CachedCompiledKernel)                      # loaded, not compiled
    second[1](x, np.full(4, 0.5, np.float32), out)                # from the disk cache
    assert out.tolist() == [0, 0.5, 1, 1.5]
    assert [str(p.type) for p in ck.binary.params] == ["ptr<f32>", "vector<f32, 4>", "ptr<f32>"]


# --- Intel's GPU compiler: the operations become the hardware's instructions -----------------

@cm.kernel(simd=16)
def _every_cm_op(x: cm.ptr[u32], s: cm.ptr[i32], f: cm.ptr[f32], coeff: cm.vector[f32, 9], o: cm.ptr[u32],
                 oi: cm.ptr[i32], of: cm.ptr[f32]):
    u, v, w = cm.load(x, 0, 16), cm.load(s, 0, 16), cm.load(f, 0, 16)
    cm.store(o, 0, cm.cbit(u) + cm.fbl(u) + cm.fbh(u) + cm.lzd(u) + cm.avg(u, u) + cm.mulhi(u, u)
             + cm.pack_mask(u > 3))
    cm.store(oi, 0, cm.fbh(v) + cm.avg(v, v) + cm.mulhi(v, v))
    cm.store(of, 0, cm.rndd(w) + cm.rndu(w) + cm.rnde(w) + cm.rndz(w) + cm.frc(w) + cm.dp4(w, w)
             + cm.sat(w) * coeff[3] + cm.merge(w, 0.0, 0x5555))


@pytest.mark.skipif(not __import__("cmlang.codegen.intel_gpu", fromlist=["available"]).available(),
                    reason="Intel's offline compiler (ocloc) is not installed")
@pytest.mark.parametrize("target", ["spirv", "spirv-vc"])
@pytest.mark.parametrize("device", ["pvc", "dg2"])
def test_cm_operations_build_with_intel_gpu_compiler(target, device):
    ck = _every_cm_op.compile(cm.ptr[u32], cm.ptr[i32], cm.ptr[f32], cm.vector[f32, 9], cm.ptr[u32],
                              cm.ptr[i32], cm.ptr[f32], target=target, device=device)
    assert ck.stats["spill_bytes"] == 0
    opcodes = set(re.findall(r"^\s*(?:\(\S+\)\s*)?([a-z]+)[.\s(]", ck.isa, re.M))
    # both flavours reach the hardware's bit-scan and rounding instructions (SIMT's ctz becomes
    # bfrev + lzd; the genx intrinsics of spirv-vc are fbl and fbh themselves)
    want = {"cbit", "lzd", "rndd", "rnde", "rndu", "rndz"} | ({"fbl", "fbh"} if target == "spirv-vc" else set())
    assert want <= opcodes, sorted(opcodes)
