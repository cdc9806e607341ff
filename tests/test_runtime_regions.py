"""Slices with a run-time start and a compile-time length (CM ``select<8, 1>(i)``):
``v[i:i + 8]``, ``v[i:i + 16:2]``, ``m[r, c:c + 8]``, ``m[r:r + 2, c:c + 4]``, read and written
(also through views and with ``+=``), on the device and in the interpreter, against numpy."""
import importlib.util

import numpy as np
import pytest

import cmlang as cm
from cmlang import f32, i32
from cmlang.errors import CompileError
from cmlang.frontend import compile_to_ir

THREADS = 4
N = 32

needs_vc = pytest.mark.skipif(importlib.util.find_spec("dpcpp_llvm_spirv") is None,
                              reason="the spirv-vc target needs the dpcpp-llvm-spirv wheel")


def k_vector(x: cm.ptr[f32], out: cm.ptr[f32], i: i32, j: i32):
    t = cm.thread_id(0)
    v = cm.load(x, t * N, N)
    a = v[i:i + 8]                  # read at a run-time offset
    b = v[j:j + 16:2]               # strided
    v[j:j + 16:2] = a               # write at a run-time offset
    v[i + 1:i + 1 + 4] += 100.0     # a compound write
    k = t * 2
    w = v[k:k + 4]                  # a view at a run-time offset
    w[0] = -1.0
    cm.store(out, t * (N + 16), v)
    cm.store(out, t * (N + 16) + N, a)
    cm.store(out, t * (N + 16) + N + 8, b)


def ref_vector(v, t, i, j):
    v = v.copy()
    a = v[i:i + 8]                  # views, as in the kernel
    b = v[j:j + 16:2]
    v[j:j + 16:2] = a.copy()        # the kernel reads a whole first; numpy copies overlaps in order
    v[i + 1:i + 1 + 4] += 100.0
    k = t * 2
    w = v[k:k + 4]
    w[0] = -1.0
    return np.concatenate([v, a, b])


@pytest.mark.parametrize("simd", [8, 16, 32])
@pytest.mark.parametrize("i,j", [(0, 0), (3, 11), (24, 16)])
def test_vector_regions_at_run_time_offsets(mode, rng, simd, i, j):
    x = rng.uniform(-9, 9, THREADS * N).astype(np.float32)
    out = np.zeros(THREADS * (N + 16), np.float32)
    cm.kernel(simd=simd)(k_vector)[THREADS](x, out, i, j)
    want = np.concatenate([ref_vector(x[t * N:(t + 1) * N], t, i, j) for t in range(THREADS)])
    np.testing.assert_array_equal(out, want)


def k_matrix(x: cm.ptr[i32], out: cm.ptr[i32], r: i32, c: i32):
    t = cm.thread_id(0)
    m = cm.load(x, t * 64, (8, 8), 8)
    row_part = m[r, c:c + 4]
    m[r, c:c + 4] = row_part * 3
    block = m[r:r + 2, c:c + 4]             # 2-D, both offsets at run time
    m[6 - r:6 - r + 2, 0:8:2] = block
    m[1, c:c + 4:2] -= 5
    cm.store(out, t * 72, m.format(i32))
    cm.store(out, t * 72 + 64, block.format(i32))


def ref_matrix(m, r, c):
    m = m.copy()
    m[r, c:c + 4] = m[r, c:c + 4] * 3
    block = m[r:r + 2, c:c + 4]
    m[6 - r:6 - r + 2, 0:8:2] = block
    m[1, c:c + 4:2] -= 5
    return np.concatenate([m.reshape(-1), block.reshape(-1)])


@pytest.mark.parametrize("simd", [8, 16, 32])
@pytest.mark.parametrize("r,c", [(0, 0), (2, 3), (6, 4)])
def test_matrix_regions_at_run_time_offsets(mode, rng, simd, r, c):
    x = rng.integers(-50, 50, THREADS * 64).astype(np.int32)
    out = np.zeros(THREADS * 72, np.int32)
    cm.kernel(simd=simd)(k_matrix)[THREADS](x, out, r, c)
    want = np.concatenate([ref_matrix(x[t * 64:(t + 1) * 64].reshape(8, 8), r, c) for t in range(THREADS)])
    np.testing.assert_array_equal(out, want)


def test_run_time_slices_lower_to_dynamic_regions():
    f = compile_to_ir(k_vector, {"x": cm.ptr[f32], "out": cm.ptr[f32], "i": i32, "j": i32}, {}, 16)
    regions = [op for op in f.walk() if op.opcode in ("rdregion", "wrregion") and
               len(op.operands) == (2 if op.opcode == "rdregion" else 3)]
    shapes = {(op.opcode, op.attrs["hsize"], op.attrs["hstride"]) for op in regions}
    assert {("rdregion", 8, 1), ("rdregion", 8, 2), ("wrregion", 8, 2), ("wrregion", 4, 1)} <= shapes


def k_bad_length(x: cm.ptr[f32], i: i32, n: i32):
    v = cm.load(x, 0, 16)
    w = v[i:i + n]


def k_bad_step(x: cm.ptr[f32], i: i32):
    v = cm.load(x, 0, 16)
    w = v[i:i + 8:-1]


def k_too_long(x: cm.ptr[f32], i: i32):
    v = cm.load(x, 0, 16)
    w = v[i:i + 32:2]


def k_out_of_range(x: cm.ptr[f32], i: i32):
    v = cm.load(x, 0, 16)
    v[i:i + 8] = 1.0
    cm.store(x, 0, v)


def test_run_time_slice_errors(monkeypatch):
    cases = [(k_bad_length, "a slice with a run-time start needs the stop written as start + n with n a "
                            "compile-time integer"),
             (k_bad_step, "the step of a slice with a run-time start must be a positive compile-time integer"),
             (k_too_long, "a region of 16 elements 2 apart does not fit vector<f32, 16>")]
    for fn, message in cases:
        types = {"x": cm.ptr[f32], "i": i32, "n": i32}
        with pytest.raises(CompileError) as e:
            compile_to_ir(fn, {k: types[k] for k in fn.__code__.co_varnames[:fn.__code__.co_argcount]}, {}, 16)
        assert message in str(e.value)
        assert e.value.loc.line == fn.__code__.co_firstlineno + 2
    # the interpreter checks the run-time offset
    monkeypatch.setenv("CMLANG_INTERPRET", "1")
    with pytest.raises(cm.KernelRuntimeError) as e:
        cm.kernel(k_out_of_range)[1](np.zeros(16, np.float32), 9)
    assert "wrregion" in str(e.value)


@needs_vc
def test_spirv_vc_lowers_run_time_regions(rng):
    import test_vc
    test_vc.run_both(cm.kernel(k_matrix), THREADS, None, rng.integers(-50, 50, THREADS * 64).astype(np.int32),
                     np.zeros(THREADS * 72, np.int32), 2, 3)
    test_vc.run_both(cm.kernel(k_vector), THREADS, None, rng.uniform(-9, 9, THREADS * N).astype(np.float32),
                     np.zeros(THREADS * (N + 16), np.float32), 3, 11)


def k_select_lvalues(x: cm.ptr[i32], out: cm.ptr[i32], i: i32, r: i32):
    t = cm.thread_id(0)
    v = cm.load(x, t * 16, 16)
    m = cm.load(x, t * 16, (4, 4), 4)
    v.select(4, 2, i)[...] = -1          # CM v.select<4, 2>(i) = -1
    m.select(2, 1, 2, 2, r, 1)[...] = 9  # CM m.select<2, 1, 2, 2>(r, 1) = 9
    v.format(i32, 2, 8)[1, i:i + 2] += 100
    cm.store(out, t * 32, v)
    cm.store(out, t * 32 + 16, m.format(i32))


@pytest.mark.parametrize("simd", [8, 16])
def test_select_and_format_as_lvalues(mode, rng, simd):
    x = rng.integers(-50, 50, THREADS * 16).astype(np.int32)
    out = np.zeros(THREADS * 32, np.int32)
    cm.kernel(simd=simd)(k_select_lvalues)[THREADS](x, out, 3, 2)
    for t in range(THREADS):
        v = x[t * 16:(t + 1) * 16].copy()
        m = v.copy().reshape(4, 4)
        v[3:3 + 8:2] = -1
        m[2:4, 1:4:2] = 9
        v.reshape(2, 8)[1, 3:5] += 100
        np.testing.assert_array_equal(out[t * 32:(t + 1) * 32], np.concatenate([v, m.reshape(-1)]))
