"""One element-wise semantics for both lowerings (codegen/elementwise.py), tested as tables:
saturating conversions, bf16 rounding and integer division give the same numbers in the
interpreter (the reference), in SIMT code on the device and in spirv-vc code run by
tests/vc_emulator.py, and each agrees with a float64 numpy reference written here. The
device profile picks the spelling: the CPU profile's division guard and compare-spelled
saturation are absent from GPU profiles' code.
"""
import importlib.util
import math
import os

import numpy as np
import pytest

import cmlang as cm
from cmlang import bf16, f16, f32, i8, i16, i32, u8, u32
from cmlang.codegen import elementwise
from cmlang.codegen.spirv import disassemble
from cmlang.ir.parser import parse_function
from cmlang.runtime.profiles import get_profile
from cmlang.targets import get_target

N = 16
NP = {f32: np.float32, f16: np.float16, bf16: np.uint16, i8: np.int8, i16: np.int16,
      i32: np.int32, u8: np.uint8, u32: np.uint32}
INF, NAN = math.inf, math.nan

needs_vc = pytest.mark.skipif(importlib.util.find_spec("dpcpp_llvm_spirv") is None,
                              reason="the spirv-vc target needs the dpcpp-llvm-spirv wheel")


# --- references (float64 numpy) -----------------------------------------------------------------

def bf16_bits(values):
    """f32 values rounded to the nearest bf16 (ties to even; NaN stays a quiet NaN), as bits."""
    bits = np.asarray(values, np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(np.asarray(values, np.float32))
    return np.where(nan, ((bits >> 16) | 0x40).astype(np.uint16), rounded)


def bf16_values(bits):
    return (np.asarray(bits, np.uint32) << 16).view(np.float32)


def saturated(values, dst):
    """CM saturation: NaN -> 0, clamped to dst's range; integers truncate toward zero; float
    destinations clamp to [0.0, 1.0] (CM / ESIMD float saturation)."""
    x = np.nan_to_num(np.asarray(values, np.float64), nan=0.0, posinf=np.inf, neginf=-np.inf)
    if dst == bf16:
        return bf16_bits(np.clip(x, 0.0, 1.0).astype(np.float32))
    if dst == f16:
        return np.clip(x, 0.0, 1.0).astype(np.float16)
    info = np.iinfo(NP[dst])
    return np.clip(np.trunc(x), info.min, info.max).astype(NP[dst])


# --- runners --------------------------------------------------------------------------------------

def run(kernel, args, where):
    """The arrays after one CM thread of ``kernel``: "interpreter", "simt" (the default device)
    or "vc" (the spirv-vc lowering in the emulator)."""
    args = [a.copy() for a in args]
    if where == "vc":
        from vc_emulator import run_isolated
        return run_isolated(kernel.compile(target="spirv-vc"), 1, None, args)
    saved = os.environ.get("CMLANG_INTERPRET")
    os.environ["CMLANG_INTERPRET"] = "1" if where == "interpreter" else "0"
    try:
        kernel[1](*args)
    finally:
        if saved is None:
            del os.environ["CMLANG_INTERPRET"]
        else:
            os.environ["CMLANG_INTERPRET"] = saved
    return args


PATHS = ["interpreter", "simt", pytest.param("vc", marks=needs_vc)]


# --- saturating conversions ----------------------------------------------------------------------

CONVERSIONS = {
    "f32-i8": (f32, i8, [NAN, INF, -INF, 1e10, -1e10, 127.5, 127.0, 128.0, -128.9, -129.0,
                         -0.7, 0.7, 3.99, -0.0, 100.0, -100.5]),
    "f32-u8": (f32, u8, [NAN, -1.0, -0.5, 255.5, 256.0, 1e30, 3.7, -INF, INF, 0.99, 254.9, 17.0]),
    "f16-i16": (f16, i16, [NAN, INF, -INF, 65504.0, -65504.0, 32752.0, 32768.0, -32768.0,
                           -32800.0, 1.5, -1.5, 0.25]),
    "f16-u8": (f16, u8, [NAN, -3.0, 255.0, 256.0, 300.0, 254.875, 0.5, INF]),
    "f32-u32": (f32, u32, [NAN, -1.0, 4294967040.0, 4294967296.0, 1e20, 123.9, -INF, 2147483648.0]),
    "f32-i32": (f32, i32, [NAN, 2147483520.0, 2147483648.0, -2147483648.0, -3e9, INF, -INF, -7.9]),
    # NaN -> 0 here too (spirv-vc gave the limit: genx fmin/fmax hid the NaN before the check)
    "f32-f16": (f32, f16, [NAN, 1e6, -1e6, 65504.0, 65520.0, INF, -INF, 1.0, 0.99999, 0.9997,
                           -0.0, -3e-8, 3e-8, 0.5]),
    "f32-bf16": (f32, bf16, [NAN, INF, -INF, 3.4028234663852886e38, 1.00390625, 0.999, 0.9980469,
                             0.5, -2.5, 1e-40, -1e-40]),
}


def padded(values, dtype):
    values = list(values) + [0.0] * (N - len(values))
    return np.array(values, np.float64).astype(dtype)


def conversion_kernel(src, dst):
    def k_sat_convert(x: cm.ptr[src], out: cm.ptr[dst]):
        cm.store(out, 0, cm.sat(cm.load(x, 0, N).astype(dst)))
    return cm.kernel(simd=16)(k_sat_convert)


@pytest.mark.parametrize("where", PATHS)
@pytest.mark.parametrize("case", list(CONVERSIONS))
def test_saturating_conversions_agree_with_the_reference(case, where):
    src, dst, values = CONVERSIONS[case]
    with np.errstate(over="ignore"):
        x = padded(values, NP[src])
    want = saturated(x, dst)
    _, got = run(conversion_kernel(src, dst), [x, np.zeros(N, NP[dst])], where)
    np.testing.assert_array_equal(got, want, err_msg=f"{case} on {where}, inputs {x}")


# --- bf16 rounding after every operation --------------------------------------------------------

def bf16_kernel():
    def k_bf16(x: cm.ptr[f32], a: cm.ptr[bf16], b: cm.ptr[bf16], cvt: cm.ptr[bf16], total: cm.ptr[bf16]):
        cm.store(cvt, 0, cm.load(x, 0, N).astype(bf16))
        cm.store(total, 0, cm.load(a, 0, N) + cm.load(b, 0, N))
    return cm.kernel(simd=16)(k_bf16)


@pytest.mark.parametrize("where", PATHS)
def test_bf16_rounds_to_nearest_even_after_each_operation(where):
    # exact halfway cases (ties to even, down and up), just above halfway, NaN, overflow to inf
    x = np.array([1.00390625, 1.01171875, 1.0039063, -1.00390625, NAN, INF, 3.4028234663852886e38,
                  0.1, -0.1, 3.0, 1e-40, 65504.0, 2.0 ** -126, 7.0, -0.0, 1.5], np.float32)
    a = bf16_bits(np.array([1.0, 1.0078125, 256.0, -1.0, 3.0, 0.5, 1e30, -2.0] * 2, np.float32))
    b = bf16_bits(np.array([0.00390625, 0.00390625, 1.0, -0.005859375, NAN, 0.25, 1e30, 2.0] * 2,
                           np.float32))
    sums = bf16_values(a).astype(np.float64) + bf16_values(b).astype(np.float64)
    zeros = np.zeros(N, np.uint16)
    _, _, _, cvt, total = run(bf16_kernel(), [x, a, b, zeros, zeros], where)
    np.testing.assert_array_equal(cvt, bf16_bits(x), err_msg=f"f32 -> bf16 on {where}")
    # the sums are exact in f32 (exponents are close), so one rounding to bf16 remains
    np.testing.assert_array_equal(total, bf16_bits(sums.astype(np.float32)), err_msg=f"bf16 add on {where}")


# --- integer division ------------------------------------------------------------------------------

def division_kernel(elem):
    def k_divide(x: cm.ptr[elem], y: cm.ptr[elem], q: cm.ptr[elem], r: cm.ptr[elem]):
        a, b = cm.load(x, 0, N), cm.load(y, 0, N)
        cm.store(q, 0, a / b)
        cm.store(r, 0, a % b)
    return cm.kernel(simd=8)(k_divide)


INT_MIN, INT_MAX = -2 ** 31, 2 ** 31 - 1
DIVISIONS = {   # (x, y) pairs that cmlang defines: C division, truncating toward zero
    i32: [(7, 2), (-7, 2), (7, -2), (-7, -2), (INT_MIN, 3), (INT_MAX, -3), (INT_MIN, INT_MIN),
          (5, 7), (-5, 7), (0, -9), (INT_MAX, 1), (INT_MIN, 2), (100, -100), (-1, 1), (3, 3), (9, 4)],
    u32: [(7, 2), (2 ** 32 - 1, 2), (2 ** 32 - 1, 2 ** 32 - 1), (5, 7), (0, 9), (2 ** 31, 3),
          (12, 5), (1, 2 ** 32 - 1), (100, 10), (99, 10), (3, 3), (9, 4), (1, 1), (2, 1), (6, 4), (8, 3)],
}


def c_division(pairs):
    q = [abs(x) // abs(y) * (1 if (x < 0) == (y < 0) else -1) for x, y in pairs]
    return q, [x - qq * y for (x, y), qq in zip(pairs, q)]


@pytest.mark.parametrize("where", PATHS)
@pytest.mark.parametrize("elem", [i32, u32], ids=str)
def test_integer_division_truncates_toward_zero(elem, where):
    dtype = NP[elem]
    pairs = DIVISIONS[elem]
    x, y = (np.array(v, np.int64).astype(dtype) for v in zip(*pairs))
    q, r = c_division(pairs)
    zeros = np.zeros(N, dtype)
    _, _, got_q, got_r = run(division_kernel(elem), [x, y, zeros, zeros], where)
    np.testing.assert_array_equal(got_q, np.array(q, np.int64).astype(dtype), err_msg=f"div on {where}")
    np.testing.assert_array_equal(got_r, np.array(r, np.int64).astype(dtype), err_msg=f"rem on {where}")


@pytest.mark.parametrize("where", ["simt", pytest.param("vc", marks=needs_vc)])
@pytest.mark.parametrize("elem", [i32, u32], ids=str)
def test_undefined_divisions_divide_by_one_on_the_cpu_profile(elem, where):
    """x / 0 and INT_MIN / -1 are undefined in cmlang (the interpreter reports x / 0); on the
    CPU profile both lowerings guard them (a CPU traps): x / 0 = x, x % 0 = 0, and
    INT_MIN / -1 = INT_MIN (computed as -x), INT_MIN % -1 = 0."""
    dtype = NP[elem]
    x = np.array([7, -7, INT_MIN, INT_MAX, 0, INT_MIN, 5, -1] * 2, np.int64).astype(dtype)
    y = np.array([0, 0, 0, 0, 0, -1, -1, -1] * 2, np.int64).astype(dtype)
    if elem.is_signed:
        want_q = np.where(y == 0, x, -x.astype(np.int64)).astype(dtype)
        want_r = np.zeros(N, dtype)
    else:   # -1 is 0xFFFFFFFF, an ordinary divisor
        big = np.uint64(0xFFFFFFFF)
        want_q = np.where(y == 0, x, x.astype(np.uint64) // big).astype(dtype)
        want_r = np.where(y == 0, 0, x.astype(np.uint64) % big).astype(dtype)
    zeros = np.zeros(N, dtype)
    _, _, got_q, got_r = run(division_kernel(elem), [x, y, zeros, zeros], where)
    np.testing.assert_array_equal(got_q, want_q, err_msg=f"div on {where}")
    np.testing.assert_array_equal(got_r, want_r, err_msg=f"rem on {where}")


def test_the_interpreter_reports_division_by_zero():
    x = np.arange(N, dtype=np.int32)
    with pytest.raises(Exception, match="integer division by zero"):
        run(division_kernel(i32), [x, np.zeros(N, np.int32), x, x], "interpreter")


# --- one module, two targets; spelling by device profile ----------------------------------------

IR = """kernel @k(%a: ptr<i32>, %f: ptr<f32>, %q: ptr<i32>, %s: ptr<u8>) simd=8 {
  %zero: i32 = const [value=0]
  %x: vector<i32, 8> = load %a, %zero
  %quot: vector<i32, 8> = div %x, %x
  store %q, %zero, %quot
  %v: vector<f32, 8> = load %f, %zero
  %sat: vector<u8, 8> = convert %v [sat=true]
  store %s, %zero, %sat
  return
}"""


@pytest.mark.parametrize("target, value_type", [("spirv", "i32"), ("spirv-vc", "<8 x i32>")])
def test_both_lowerings_compute_elementwise_ops_with_the_shared_module(monkeypatch, target, value_type):
    """SIMT calls elementwise.binary once per slot on scalars, spirv-vc once on the vector."""
    seen = []
    binary = elementwise.binary

    def spy(b, math, opcode, elem, x, y):
        seen.append((opcode, str(x.type), type(math).__name__))
        return binary(b, math, opcode, elem, x, y)
    monkeypatch.setattr(elementwise, "binary", spy)
    get_target(target).lower(parse_function(IR), get_profile("cpu"))
    math_name = "OpenCLMath" if target == "spirv" else "GenxMath"
    assert seen == [("div", value_type, math_name)]


@pytest.mark.parametrize("device, decorated", [("cpu", False), ("pvc", True), ("dg2", True), ("generic", True)])
def test_saturation_is_a_spirv_decoration_except_on_the_cpu_profile(device, decorated):
    result = get_target("spirv").compile(parse_function(IR), get_profile(device))
    text = disassemble(result.spirv)
    if text is None:
        pytest.skip("spirv-dis not installed")
    assert ("SaturatedConversion" in text) == decorated, text
    guard = "OpSelect" in text      # the division guard and the compare-spelled saturation
    assert guard == (not decorated), text
