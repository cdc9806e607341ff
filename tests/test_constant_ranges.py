"""A Python number that does not fit the type it becomes is a located CompileError (or a
LaunchError for a launch argument), never a silently truncated or infinite value.

The rule (cmlang/frontend/typing_rules.py): an integer constant for an n-bit type lies in
[-2**(n-1), 2**n - 1] (its values, or the other reading of the same bits: -1 for u32,
0xFFFFFFFF for i32); a finite float constant must not round to infinity in its type.
"""
import inspect
import math

import numpy as np
import pytest

import cmlang as cm
from cmlang import f16, f32, i32, u8, u32, vector, matrix

BIG = 2**40          # a module constant read by a kernel


@cm.func
def takes_u8(x: cm.u8):
    return x


@cm.func
def takes_f16(x: cm.f16):
    return x


# Each kernel has exactly one bad constant; the marker text locates the node the error
# points at (line and column).
def k_full_i32(y: cm.ptr[i32]):
    cm.store(y, 0, cm.full(vector[i32, 16], 10**30))


def k_full_u8(y: cm.ptr[u8]):
    cm.store(y, 0, cm.full(vector[u8, 16], 2**63))


def k_full_f16(y: cm.ptr[f16]):
    cm.store(y, 0, cm.full(vector[f16, 16], 70000.0))


def k_full_f32(y: cm.ptr[f32]):
    cm.store(y, 0, cm.full(vector[f32, 16], 1e39))


def k_full_float_to_int(y: cm.ptr[i32]):
    cm.store(y, 0, cm.full(vector[i32, 16], 1e10))


def k_vector_ctor(y: cm.ptr[i32]):
    cm.store(y, 0, vector[i32, 4](10**30, 2**32 + 7, -2**40, 3))


def k_matrix_ctor(y: cm.ptr[i32]):
    cm.store(y, 0, matrix[i32, 2, 2](1, 2, 3, 2**40))


def k_element_write(y: cm.ptr[i32]):
    w = cm.load(y, 0, 16)
    w[5] = 2**33 + 1
    cm.store(y, 0, w)


def k_region_write(y: cm.ptr[u8]):
    w = cm.load(y, 0, 16)
    w[0:4] = 256
    cm.store(y, 0, w)


def k_arith(y: cm.ptr[i32], n: i32):
    cm.store(y, 0, cm.full(vector[i32, 16], n + 2**40))


def k_arith_f16(y: cm.ptr[f16]):
    h = cm.load(y, 0, 16)
    cm.store(y, 0, h * 1e6)


def k_compare(y: cm.ptr[i32]):
    v = cm.load(y, 0, 16)
    cm.store(y, 0, cm.merge(v, 0, v < 2**40))


def k_merge(y: cm.ptr[i32]):
    v = cm.load(y, 0, 16)
    cm.store(y, 0, cm.merge(v, -2**40, v > 0))


def k_merge_f16(y: cm.ptr[f16]):
    h = cm.load(y, 0, 16)
    cm.store(y, 0, cm.merge(h, -1e5, h > 0))


def k_scalar_cast(y: cm.ptr[u8]):
    cm.store(y, 0, cm.full(vector[u8, 16], cm.u8(300)))


def k_scalar_cast_f16(y: cm.ptr[f16]):
    cm.store(y, 0, cm.full(vector[f16, 16], cm.f16(1e5)))


def k_func_arg(y: cm.ptr[u8]):
    cm.store(y, 0, cm.full(vector[u8, 16], takes_u8(300)))


def k_func_arg_f16(y: cm.ptr[f16]):
    cm.store(y, 0, cm.full(vector[f16, 16], takes_f16(65536.0)))


def k_annotated_local(y: cm.ptr[i32]):
    s: cm.i16 = 70000
    cm.store(y, 0, cm.full(vector[i32, 16], s))


def k_constexpr(y: cm.ptr[i32], K: cm.constexpr):
    v = cm.load(y, 0, 16)
    cm.store(y, 0, v + K)


def k_global(y: cm.ptr[i32]):
    cm.store(y, 0, cm.full(vector[i32, 16], BIG))


def k_iota(y: cm.ptr[u8]):
    cm.store(y, 0, cm.iota(u8, 16, 250))


def k_static_range(y: cm.ptr[i32]):
    acc = cm.load(y, 0, 16)
    for i in cm.static_range(2**32, 2**32 + 1):
        acc += i
    cm.store(y, 0, acc)


def k_loop_bound(y: cm.ptr[i32], n: i32):
    s = 0
    for i in range(n, 2**40):
        s += 1
    cm.store(y, 0, cm.full(vector[i32, 16], s))


def k_atomic(y: cm.ptr[i32]):
    cm.atomic_add(y, cm.iota(i32, 16), 2**40)


def k_store_scalar(y: cm.ptr[u8]):
    cm.store(y, 0, cm.full(vector[u8, 16], 1))
    cm.store(y, 0, 2**9)


ARGS_I32 = (np.zeros(16, np.int32),)
ARGS_U8 = (np.zeros(16, np.uint8),)
ARGS_F16 = (np.zeros(16, np.float16),)
CASES = [
    # kernel, args, text of the node the error points at, message
    (k_full_i32, ARGS_I32, "cm.full(", "constant 1000000000000000000000000000000 does not fit in i32"),
    (k_full_u8, ARGS_U8, "cm.full(", "constant 9223372036854775808 does not fit in u8: integer constants for u8 must lie in -128..255"),
    (k_full_f16, ARGS_F16, "cm.full(", "constant 70000.0 does not fit in f16: finite constants for f16 must lie within +-65504"),
    (k_full_f32, (np.zeros(16, np.float32),), "cm.full(", "constant 1e+39 does not fit in f32"),
    (k_full_float_to_int, ARGS_I32, "cm.full(", "constant 10000000000.0 does not fit in i32"),
    (k_vector_ctor, ARGS_I32, "vector[i32, 4](", "constant 1000000000000000000000000000000 does not fit in i32"),
    (k_matrix_ctor, ARGS_I32, "matrix[i32, 2, 2](", "constant 1099511627776 does not fit in i32"),
    (k_element_write, ARGS_I32, "w[5]", "constant 8589934593 does not fit in i32"),
    (k_region_write, ARGS_U8, "w[0:4]", "constant 256 does not fit in u8"),
    (k_arith, ARGS_I32 + (1,), "n + 2**40", "constant 1099511627776 does not fit in i32"),
    (k_arith_f16, ARGS_F16, "h * 1e6", "constant 1000000.0 does not fit in f16"),
    (k_compare, ARGS_I32, "v < 2**40", "constant 1099511627776 does not fit in i32"),
    (k_merge, ARGS_I32, "cm.merge(", "constant -1099511627776 does not fit in i32"),
    (k_merge_f16, ARGS_F16, "cm.merge(", "constant -100000.0 does not fit in f16"),
    (k_scalar_cast, ARGS_U8, "cm.u8(300)", "constant 300 does not fit in u8"),
    (k_scalar_cast_f16, ARGS_F16, "cm.f16(1e5)", "constant 100000.0 does not fit in f16"),
    (k_func_arg, ARGS_U8, "takes_u8(300)", "constant 300 does not fit in u8"),
    (k_func_arg_f16, ARGS_F16, "takes_f16(65536.0)", "constant 65536.0 does not fit in f16"),
    (k_annotated_local, ARGS_I32, "s: cm.i16", "constant 70000 does not fit in i16"),
    (k_constexpr, ARGS_I32 + (2**40,), "v + K", "constant 1099511627776 does not fit in i32"),
    (k_global, ARGS_I32, "cm.full(", "constant 1099511627776 does not fit in i32"),
    (k_iota, ARGS_U8, "cm.iota(", "constant 256 does not fit in u8"),
    (k_static_range, ARGS_I32, "acc += i", "constant 4294967296 does not fit in i32"),
    (k_loop_bound, ARGS_I32 + (1,), "range(n, 2**40)", "constant 1099511627776 does not fit in i32"),
    (k_atomic, ARGS_I32, "cm.atomic_add(", "cm.atomic_add: constant 1099511627776 does not fit in i32"),
    (k_store_scalar, ARGS_U8, "cm.store(y, 0, 2**9)", "cm.store: constant 512 does not fit in u8"),
]


def location_of(fn, text):
    """(line, column) of the first occurrence of ``text`` in ``fn``'s source, as the
    compiler reports them (1-based)."""
    lines, start = inspect.getsourcelines(fn)
    for i, line in enumerate(lines):
        if text in line:
            return start + i, line.index(text) + 1
    raise AssertionError(f"{text!r} not in {fn.__name__}")


@pytest.mark.parametrize("fn, args, node_text, message", CASES, ids=[c[0].__name__ for c in CASES])
def test_a_constant_that_does_not_fit_is_a_located_compile_error(fn, args, node_text, message):
    with pytest.raises(cm.CompileError) as info:
        cm.kernel(simd=8)(fn).compile(*args)
    text = str(info.value)
    line, col = location_of(fn, node_text)
    assert f"test_constant_ranges.py:{line}:{col}:" in text, text
    assert message in text, text


def k_boundaries(ya: cm.ptr[i32], yu: cm.ptr[u8], yw: cm.ptr[u32], yh: cm.ptr[f16], yf: cm.ptr[f32],
                 n: i32):
    cm.store(ya, 0, vector[i32, 8](2**31 - 1, -2**31, 0xFFFFFFFF, 0x80000000, -1, 0, 1, 7))
    cm.store(ya, 8, cm.full(vector[i32, 8], n) + 2**31 - 1 - n)        # int arithmetic at the edge
    cm.store(yu, 0, vector[u8, 8](255, -1, -128, 0, 128, 1, 254, 127))
    cm.store(yw, 0, cm.full(vector[u32, 8], -1) & 0xFFFF0000)           # a C-style mask
    cm.store(yh, 0, vector[f16, 8](65504.0, -65504.0, 65519.0, math.inf, -math.inf, 6e-8, 1.0, 0.5))
    cm.store(yf, 0, vector[f32, 8](3.4028234663852886e38, -3.4e38, math.inf, 1e-45, 0.0, -0.0, 2.5, 1e38))


def test_in_range_boundary_values_keep_their_exact_value(mode):
    k = cm.kernel(simd=8)(k_boundaries)
    ya, yu, yw = np.zeros(16, np.int32), np.zeros(8, np.uint8), np.zeros(8, np.uint32)
    yh, yf = np.zeros(8, np.float16), np.zeros(8, np.float32)
    k[1](ya, yu, yw, yh, yf, 5)
    assert ya.tolist() == [2**31 - 1, -2**31, -1, -2**31, -1, 0, 1, 7] + [2**31 - 1] * 8
    assert yu.tolist() == [255, 255, 128, 0, 128, 1, 254, 127]
    assert yw.tolist() == [0xFFFF0000] * 8
    np.testing.assert_array_equal(
        yh, np.array([65504, -65504, 65504, np.inf, -np.inf, 6e-8, 1, 0.5], np.float16))
    np.testing.assert_array_equal(
        yf, np.array([3.4028234663852886e38, -3.4e38, np.inf, 1e-45, 0, 0, 2.5, 1e38], np.float32))


# --- launch-time scalar arguments ----------------------------------------------------------

def k_scalars(y: cm.ptr[f32], a: f32, h: f16, b: cm.bf16, n: i32):
    cm.store(y, 0, vector[f32, 4](a, h, b, n))


@pytest.mark.parametrize("a, h, b, n, message", [
    (1e39, 1.0, 1.0, 1, "is out of the range of f32"),
    (1.0, 70000.0, 1.0, 1, "is out of the range of f16"),
    (1.0, 1.0, 3.4e38, 1, "is out of the range of bf16"),
    (10**400, 1.0, 1.0, 1, "is out of the range of f32"),
    (True, 1.0, 1.0, 1, "takes a number, got bool True"),
    (1.0, 1.0, 1.0, True, "takes an integer, got bool True"),
], ids=["f32", "f16", "bf16", "huge-int-f32", "bool-f32", "bool-i32"])
def test_launch_refuses_scalars_that_do_not_fit_or_are_bools(mode, a, h, b, n, message):
    k = cm.kernel(simd=8)(k_scalars)
    with pytest.raises(cm.LaunchError, match=message):
        k[1](np.zeros(4, np.float32), a, h, b, n)


def test_launch_keeps_boundary_and_infinite_scalars(mode):
    k = cm.kernel(simd=8)(k_scalars)
    y = np.zeros(4, np.float32)
    k[1](y, 3.4028234663852886e38, 65504.0, -math.inf, -2**31)
    assert y.tolist() == [3.4028234663852886e38, 65504.0, -math.inf, float(-2**31)]
    k[1](y, math.inf, -65504.0, 1.0, 2**31 - 1)
    assert y.tolist() == [math.inf, -65504.0, 1.0, float(np.float32(2**31 - 1))]


def test_errors_name_the_file_of_the_kernel_even_when_a_twin_elsewhere_failed_first(tmp_path):
    """Code objects of the same text at the same line compare equal across files: the front
    end's source cache must still report each kernel's own file (found by the differential
    test, whose generated kernels repeat)."""
    import importlib.util
    paths = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        path = tmp_path / folder / "twin.py"
        path.write_text("import cmlang as cm\n\n\ndef k(p: cm.ptr[cm.i16]):\n"
                        "    v = cm.full(cm.vector[cm.i16, 16], 65536)\n    cm.store(p, 0, v)\n")
        paths.append(str(path))
    for path in paths:
        spec = importlib.util.spec_from_file_location(f"twin_{len(path)}_{path[-12]}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        with pytest.raises(cm.CompileError) as info:
            cm.kernel(module.k).compile()
        assert f"{path}:5:" in str(info.value)
