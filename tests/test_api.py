"""Every construct of docs/api.md, numerically against numpy, on the device and in the interpreter.

Core constructs run over simd 8/16/32 and vector sizes that are and are not multiples
of the lane count; the rest at simd 16 with N = 24 (one full and one partial slot).
"""
import numpy as np
import pytest

import cmlang as cm
from cmlang import f32, i32, u8, vector, matrix

from kernel_utils import P, S, make_kernel, random_array

LAYOUTS = [(8, 8), (8, 24), (16, 8), (16, 24), (16, 64), (32, 24), (32, 64)]
DTYPES = [f32, i32]
THREADS = 3


def trunc_div(a, b):
    q = np.abs(a) // np.abs(b)
    return (q * np.sign(a) * np.sign(b)).astype(a.dtype)


# --- element-wise arithmetic ---------------------------------------------------------

def k_arith(x: P, y: P, out: P, T: cm.constexpr, N: cm.constexpr):
    base = cm.thread_id(0) * N
    a = cm.load(x, base, N)
    b = cm.load(y, base, N)
    o = cm.thread_id(0) * (9 * N)
    cm.store(out, o, a + b)
    cm.store(out, o + N, a - b)
    cm.store(out, o + 2 * N, a * b)
    cm.store(out, o + 3 * N, a * 3 + 1)
    cm.store(out, o + 4 * N, -a)
    cm.store(out, o + 5 * N, cm.min(a, b))
    cm.store(out, o + 6 * N, cm.max(a, b))
    cm.store(out, o + 7 * N, (a < b).astype(T))
    cm.store(out, o + 8 * N, a / b)


@pytest.mark.parametrize("simd,n", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_arithmetic(mode, rng, dtype, simd, n):
    x = random_array(rng, dtype, THREADS * n)
    y = random_array(rng, dtype, THREADS * n, 1, 20) * np.where(rng.random(THREADS * n) < 0.5, -1, 1).astype(x.dtype)
    out = np.zeros(THREADS * 9 * n, x.dtype)
    make_kernel(k_arith, dtype, simd)[THREADS](x, y, out, dtype, n)
    a, b = x.reshape(THREADS, n), y.reshape(THREADS, n)
    div = a / b if dtype.is_float else trunc_div(a, b)
    want = np.concatenate([a + b, a - b, a * b, a * 3 + 1, -a, np.minimum(a, b), np.maximum(a, b),
                           (a < b).astype(x.dtype), div.astype(x.dtype)], axis=1)
    got = out.reshape(THREADS, 9 * n)
    if dtype.is_float:
        np.testing.assert_allclose(got, want, rtol=1e-6)
    else:
        np.testing.assert_array_equal(got, want)


def k_int_ops(x: P, y: P, out: P, N: cm.constexpr):
    base = cm.thread_id(0) * N
    a = cm.load(x, base, N)
    b = cm.load(y, base, N)
    o = cm.thread_id(0) * (8 * N)
    cm.store(out, o, a % b)
    cm.store(out, o + N, a // b)
    cm.store(out, o + 2 * N, a & b)
    cm.store(out, o + 3 * N, a | b)
    cm.store(out, o + 4 * N, a ^ b)
    cm.store(out, o + 5 * N, ~a)
    cm.store(out, o + 6 * N, a << 3)
    cm.store(out, o + 7 * N, a >> 2)


@pytest.mark.parametrize("simd,n", [(8, 24), (16, 24), (32, 64)])
def test_integer_operators(mode, rng, simd, n):
    x = rng.integers(-1000, 1000, THREADS * n).astype(np.int32)
    y = rng.integers(1, 30, THREADS * n).astype(np.int32) * np.where(rng.random(THREADS * n) < 0.5, -1, 1).astype(np.int32)
    out = np.zeros(THREADS * 8 * n, np.int32)
    make_kernel(k_int_ops, i32, simd)[THREADS](x, y, out, n)
    a, b = x.reshape(THREADS, n), y.reshape(THREADS, n)
    q = trunc_div(a, b)
    want = np.concatenate([a - b * q, q, a & b, a | b, a ^ b, ~a, a << 3, a >> 2], axis=1)
    np.testing.assert_array_equal(out.reshape(THREADS, 8 * n), want)


def k_conversions(x: cm.ptr[f32], i_out: cm.ptr[i32], u_out: cm.ptr[u8], bits: cm.ptr[i32], N: cm.constexpr):
    base = cm.thread_id(0) * N
    v = cm.load(x, base, N)
    cm.store(i_out, base, v.astype(i32))
    cm.store(u_out, base, cm.sat(v.astype(u8)))
    cm.store(bits, base, v.format(i32))


def test_conversions_saturation_format(mode, rng):
    n = 24
    x = rng.uniform(-400, 400, THREADS * n).astype(np.float32)
    i_out = np.zeros(THREADS * n, np.int32)
    u_out = np.zeros(THREADS * n, np.uint8)
    bits = np.zeros(THREADS * n, np.int32)
    cm.kernel(k_conversions)[THREADS](x, i_out, u_out, bits, n)
    np.testing.assert_array_equal(i_out, np.trunc(x).astype(np.int32))
    np.testing.assert_array_equal(u_out, np.clip(np.trunc(x), 0, 255).astype(np.uint8))
    np.testing.assert_array_equal(bits, x.view(np.int32))


# --- construction ---------------------------------------------------------------------

def k_construct(out: P, s: S, T: cm.constexpr, N: cm.constexpr):
    o = cm.thread_id(0) * (4 * N)
    cm.store(out, o, cm.zeros(vector[T, N]))
    cm.store(out, o + N, cm.full(vector[T, N], 7))
    cm.store(out, o + 2 * N, cm.iota(T, N) + s)
    cm.store(out, o + 3 * N, vector[T, 4](1, 2, 3, 4).replicate(N // 4))


@pytest.mark.parametrize("dtype", DTYPES)
def test_construction(mode, dtype):
    n = 24
    out = np.full(THREADS * 4 * n, -1, np.dtype(dtype.np_dtype))
    make_kernel(k_construct, dtype, 16)[THREADS](out, 5, dtype, n)
    row = np.concatenate([np.zeros(n), np.full(n, 7), np.arange(n) + 5, np.tile([1, 2, 3, 4], n // 4)])
    np.testing.assert_array_equal(out.reshape(THREADS, -1), np.tile(row, (THREADS, 1)).astype(out.dtype))


# --- regions ------------------------------------------------------------------------------

def k_regions(x: P, out: P, N: cm.constexpr):
    base = cm.thread_id(0) * N
    v = cm.load(x, base, N)
    o = cm.thread_id(0) * (4 * N)
    w = v
    w[1:N:3] = v[0:N // 3]               # strided region write from a region read
    cm.store(out, o, w)
    cm.store(out, o + N, v.select(N // 2, 2, 1).replicate(2))          # odd elements, twice
    r = v.replicate(N // 4, 4, 4, 1, 0)                                  # same as v
    cm.store(out, o + 2 * N, r)
    u = v
    u[2] = v[N - 1]
    u[N - 1] += 100
    cm.store(out, o + 3 * N, u)


@pytest.mark.parametrize("simd,n", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_regions(mode, rng, dtype, simd, n):
    if n % 12:
        n = 24 if n < 24 else 48
    x = random_array(rng, dtype, THREADS * n)
    out = np.zeros(THREADS * 4 * n, x.dtype)
    make_kernel(k_regions, dtype, simd)[THREADS](x, out, n)
    for t in range(THREADS):
        v = x[t * n:(t + 1) * n]
        got = out[t * 4 * n:(t + 1) * 4 * n].reshape(4, n)
        w = v.copy()
        w[1:n:3] = v[0:n // 3]
        np.testing.assert_array_equal(got[0], w)
        np.testing.assert_array_equal(got[1], np.tile(v[1::2], 2))
        np.testing.assert_array_equal(got[2], v)
        u = v.copy()
        u[2] = v[n - 1]
        u[n - 1] += 100
        np.testing.assert_array_equal(got[3], u)


def k_matrix_regions(x: P, out: P, T: cm.constexpr):
    m = cm.load(x, cm.thread_id(0) * 48, (6, 8), 8)       # 2-D block load, pitch 8
    o = cm.thread_id(0) * 64
    cm.store(out, o, m[1])                                  # row
    cm.store(out, o + 8, m.column(3))                       # column (6 elements)
    cm.store(out, o + 14, m[0:6:2, 1:8:3].format(T))        # 3 x 3 region, flattened
    cm.store(out, o + 23, m.select(2, 1, 4, 2, 4, 0))       # CM select<2,1,4,2>(4, 0)
    t = m.row(5).copy()                                     # a register of its own, not a view of m
    t[0:4] = m[2, 4:8]
    cm.store(out, o + 31, t)
    cm.store(out, o + 39, m[3, 7])
    cm.store(out, o + 40, m[:, 0])


@pytest.mark.parametrize("simd", [8, 16, 32])
@pytest.mark.parametrize("dtype", DTYPES)
def test_matrix_regions(mode, rng, dtype, simd):
    x = random_array(rng, dtype, THREADS * 48)
    out = np.zeros(THREADS * 64, x.dtype)
    make_kernel(k_matrix_regions, dtype, simd)[THREADS](x, out, dtype)
    for t in range(THREADS):
        m = x[t * 48:(t + 1) * 48].reshape(6, 8)
        g = out[t * 64:(t + 1) * 64]
        np.testing.assert_array_equal(g[0:8], m[1])
        np.testing.assert_array_equal(g[8:14], m[:, 3])
        np.testing.assert_array_equal(g[14:23], m[0:6:2, 1:8:3].reshape(-1))
        np.testing.assert_array_equal(g[23:31], m[4:6, 0:8:2].reshape(-1))
        row = m[5].copy()
        row[0:4] = m[2, 4:8]
        np.testing.assert_array_equal(g[31:39], row)
        assert g[39] == m[3, 7]
        np.testing.assert_array_equal(g[40:46], m[:, 0])


def k_shuffles(x: P, idx: cm.ptr[i32], out: P, N: cm.constexpr):
    base = cm.thread_id(0) * N
    v = cm.load(x, base, N)
    o = cm.thread_id(0) * (6 * N)
    cm.store(out, o, v.iselect(cm.load(idx, base, N)))
    cm.store(out, o + N, cm.shuffle(v, (N - 1) - cm.iota(i32, N)))
    cm.store(out, o + 2 * N, cm.shuffle_xor(v, 1))
    cm.store(out, o + 3 * N, cm.rotate(v, 3))
    cm.store(out, o + 4 * N, cm.broadcast(v, 5))
    k = cm.thread_id(0) + 2
    cm.store(out, o + 5 * N, cm.rotate(v, k))


@pytest.mark.parametrize("simd,n", [(8, 8), (8, 24), (16, 16), (16, 24), (32, 32), (32, 64)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_shuffles(mode, rng, dtype, simd, n):
    x = random_array(rng, dtype, THREADS * n)
    idx = rng.integers(0, n, THREADS * n).astype(np.int32)
    out = np.zeros(THREADS * 6 * n, x.dtype)
    make_kernel(k_shuffles, dtype, simd)[THREADS](x, idx, out, n)
    lanes = np.arange(n)
    for t in range(THREADS):
        v = x[t * n:(t + 1) * n]
        g = out[t * 6 * n:(t + 1) * 6 * n].reshape(6, n)
        np.testing.assert_array_equal(g[0], v[idx[t * n:(t + 1) * n]])
        np.testing.assert_array_equal(g[1], v[::-1])
        np.testing.assert_array_equal(g[2], v[lanes ^ 1])
        np.testing.assert_array_equal(g[3], v[(lanes + 3) % n])
        np.testing.assert_array_equal(g[4], np.full(n, v[5]))
        np.testing.assert_array_equal(g[5], v[(lanes + t + 2) % n])


def k_merge_masks(x: P, y: P, out: P, flags: cm.ptr[i32], N: cm.constexpr):
    base = cm.thread_id(0) * N
    a = cm.load(x, base, N)
    b = cm.load(y, base, N)
    cm.store(out, base, cm.merge(a, b, a > b))
    f = 0
    if (a > 1000).any():
        f = f + 1
    if (a > -1000).all():
        f = f + 2
    if (a == b).any():
        f = f + 4
    cm.store(flags, cm.thread_id(0), f)


@pytest.mark.parametrize("dtype", DTYPES)
def test_merge_any_all(mode, rng, dtype):
    n = 24
    x = random_array(rng, dtype, THREADS * n)
    y = random_array(rng, dtype, THREADS * n)
    y[n + 3] = x[n + 3]                       # thread 1 has an equal pair
    out = np.zeros_like(x)
    flags = np.zeros(THREADS, np.int32)
    make_kernel(k_merge_masks, dtype, 16)[THREADS](x, y, out, flags, n)
    np.testing.assert_array_equal(out, np.where(x > y, x, y))
    np.testing.assert_array_equal(flags, [2, 6, 2])


def k_reductions(x: P, out: P, R: cm.constexpr, C: cm.constexpr):
    m = cm.load(x, cm.thread_id(0) * (R * C), (R, C), C)
    v = cm.load(x, cm.thread_id(0) * (R * C), R * C)
    o = cm.thread_id(0) * (4 + C + R)
    cm.store(out, o, cm.reduce_sum(v))
    cm.store(out, o + 1, cm.reduce_max(v))
    cm.store(out, o + 2, cm.reduce_min(v))
    cm.store(out, o + 3, cm.reduce_prod(v[0:4]))
    cm.store(out, o + 4, cm.reduce_sum(m, axis=0))
    cm.store(out, o + 4 + C, cm.reduce_max(m, axis=1))


@pytest.mark.parametrize("simd,rows,cols", [(8, 3, 8), (16, 3, 8), (16, 4, 16), (16, 2, 24), (32, 4, 32), (32, 3, 8)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_reductions(mode, rng, dtype, simd, rows, cols):
    n = rows * cols
    x = random_array(rng, dtype, THREADS * n, -9, 9)
    out = np.zeros(THREADS * (4 + cols + rows), x.dtype)
    make_kernel(k_reductions, dtype, simd)[THREADS](x, out, rows, cols)
    for t in range(THREADS):
        v = x[t * n:(t + 1) * n]
        m = v.reshape(rows, cols)
        g = out[t * (4 + cols + rows):(t + 1) * (4 + cols + rows)]
        want = np.concatenate([[v.sum(dtype=v.dtype), v.max(), v.min(), np.prod(v[0:4], dtype=v.dtype)],
                               m.sum(axis=0, dtype=v.dtype), m.max(axis=1)]).astype(v.dtype)
        np.testing.assert_allclose(g, want, rtol=1e-5)


# --- math ---------------------------------------------------------------------------------

def k_math(x: cm.ptr[f32], out: cm.ptr[f32], N: cm.constexpr):
    base = cm.thread_id(0) * N
    v = cm.load(x, base, N)
    p = cm.abs(v) + 0.5
    o = cm.thread_id(0) * (17 * N)
    cm.store(out, o, cm.exp(v))
    cm.store(out, o + N, cm.exp2(v))
    cm.store(out, o + 2 * N, cm.log(p))
    cm.store(out, o + 3 * N, cm.log2(p))
    cm.store(out, o + 4 * N, cm.sqrt(p))
    cm.store(out, o + 5 * N, cm.rsqrt(p))
    cm.store(out, o + 6 * N, cm.inv(p))
    cm.store(out, o + 7 * N, cm.abs(v))
    cm.store(out, o + 8 * N, cm.min(v, 0.25))
    cm.store(out, o + 9 * N, cm.max(v, 0.25))
    cm.store(out, o + 10 * N, cm.fma(v, p, 1.5))
    cm.store(out, o + 11 * N, cm.pow(p, 1.5))
    cm.store(out, o + 12 * N, cm.sin(v))
    cm.store(out, o + 13 * N, cm.cos(v))
    cm.store(out, o + 14 * N, cm.tanh(v))
    cm.store(out, o + 15 * N, cm.floor(v))
    cm.store(out, o + 16 * N, cm.ceil(v))


@pytest.mark.parametrize("simd", [8, 16, 32])
def test_math(mode, rng, simd):
    n = 24
    x = rng.uniform(-4, 4, THREADS * n).astype(np.float32)
    out = np.zeros(THREADS * 17 * n, np.float32)
    cm.kernel(simd=simd)(k_math)[THREADS](x, out, n)
    v = x.reshape(THREADS, n).astype(np.float64)
    p = np.abs(v) + 0.5
    want = [np.exp(v), np.exp2(v), np.log(p), np.log2(p), np.sqrt(p), 1 / np.sqrt(p), 1 / p, np.abs(v),
            np.minimum(v, 0.25), np.maximum(v, 0.25), v * p + 1.5, p ** 1.5, np.sin(v), np.cos(v),
            np.tanh(v), np.floor(v), np.ceil(v)]
    got = out.reshape(THREADS, 17, n)
    for i, w in enumerate(want):
        np.testing.assert_allclose(got[:, i], w, rtol=2e-6, atol=2e-6, err_msg=f"math op #{i}")


def k_scalar_math(x: cm.ptr[f32], out: cm.ptr[f32]):
    s = cm.load(x, cm.thread_id(0), 1)[0]
    o = cm.thread_id(0) * 4
    cm.store(out, o, cm.exp(s))
    cm.store(out, o + 1, cm.sqrt(abs(s)))
    cm.store(out, o + 2, max(s, 1.0))
    cm.store(out, o + 3, cm.fma(s, s, 2.0))


def test_math_on_scalars(mode):
    x = np.array([0.5, -2.0, 3.0], np.float32)
    out = np.zeros(12, np.float32)
    cm.kernel(k_scalar_math)[3](x, out)
    want = np.stack([np.exp(x), np.sqrt(np.abs(x)), np.maximum(x, 1.0), x * x + 2], axis=1).reshape(-1)
    np.testing.assert_allclose(out, want, rtol=1e-6)


def k_dpas(a: cm.ptr[f32], b: cm.ptr[f32], c: cm.ptr[f32], M: cm.constexpr, K: cm.constexpr, N: cm.constexpr):
    acc = cm.load(c, 0, (M, N), N)
    ta = cm.load(a, 0, (M, K), K)
    tb = cm.load(b, 0, (K, N), N)
    cm.store(c, 0, cm.dpas(acc, ta, tb), N)


@pytest.mark.parametrize("simd,m,k,n", [(8, 8, 8, 8), (16, 8, 16, 16), (16, 4, 8, 24), (32, 8, 8, 32)])
def test_dpas(mode, rng, simd, m, k, n):
    a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
    c = rng.uniform(-1, 1, (m, n)).astype(np.float32)
    want = c + a @ b
    cm.kernel(simd=simd)(k_dpas)[1](a, b, c, m, k, n)
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5)


# --- memory ------------------------------------------------------------------------------

def k_gather_scatter(x: P, offs: cm.ptr[i32], out: P, N: cm.constexpr):
    base = cm.thread_id(0) * N
    o = cm.load(offs, base, N)
    g = cm.gather(x, o)
    keep = (o & 1) == 0
    gm = cm.gather(x, o, keep)
    cm.scatter(out, base + (N - 1) - cm.iota(i32, N), g)
    cm.scatter(out, base + cm.iota(i32, N) + N * cm.group_count(0), gm, keep)


@pytest.mark.parametrize("simd,n", [(8, 24), (16, 16), (16, 24), (32, 64)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_scatter(mode, rng, dtype, simd, n):
    x = random_array(rng, dtype, 200)
    offs = rng.integers(0, 200, THREADS * n).astype(np.int32)
    out = np.full(2 * THREADS * n, 77, x.dtype)
    make_kernel(k_gather_scatter, dtype, simd)[THREADS](x, offs, out, n)
    g = x[offs].reshape(THREADS, n)
    np.testing.assert_array_equal(out[:THREADS * n].reshape(THREADS, n), g[:, ::-1])
    masked = np.where(offs % 2 == 0, x[offs], 77).astype(x.dtype)
    np.testing.assert_array_equal(out[THREADS * n:], masked)


def k_atomics(counts: cm.ptr[i32], fsum: cm.ptr[f32], mins: cm.ptr[i32], maxs: cm.ptr[i32],
              xch: cm.ptr[i32], cas: cm.ptr[i32], old: cm.ptr[i32], keys: cm.ptr[i32]):
    t = cm.thread_id(0)
    k = cm.load(keys, t * 16, 16)
    cm.atomic_add(counts, k, 1)
    cm.atomic_add(fsum, k, k.astype(f32) * 0.5)
    cm.atomic_min(mins, k, t * 100 + cm.iota(i32, 16))
    cm.atomic_max(maxs, k, t * 100 + cm.iota(i32, 16))
    cm.atomic_xchg(xch, t, t + 1)
    prev = cm.atomic_cmpxchg(cas, cm.iota(i32, 16) * 0 + t, cm.zeros(vector[i32, 16]), cm.full(vector[i32, 16], 9))
    cm.store(old, t * 16, prev)


def test_atomics(mode, rng):
    threads = 8
    keys = rng.integers(0, 10, threads * 16).astype(np.int32)
    counts = np.zeros(10, np.int32)
    fsum = np.zeros(10, np.float32)
    mins = np.full(10, 1 << 20, np.int32)
    maxs = np.full(10, -1, np.int32)
    xch = np.zeros(threads, np.int32)
    cas = np.zeros(threads, np.int32)
    old = np.zeros(threads * 16, np.int32)
    cm.kernel(k_atomics)[threads](counts, fsum, mins, maxs, xch, cas, old, keys)
    np.testing.assert_array_equal(counts, np.bincount(keys, minlength=10))
    np.testing.assert_allclose(fsum, np.bincount(keys, weights=keys * 0.5, minlength=10), rtol=1e-6)
    vals = np.arange(threads)[:, None] * 100 + np.arange(16)[None, :]
    for b in range(10):
        hit = keys.reshape(threads, 16) == b
        assert mins[b] == (vals[hit].min() if hit.any() else 1 << 20)
        assert maxs[b] == (vals[hit].max() if hit.any() else -1)
    np.testing.assert_array_equal(xch, np.arange(1, threads + 1))
    np.testing.assert_array_equal(cas, np.full(threads, 9))
    # Exactly one of the 16 compare-exchanges per thread saw the 0; the rest saw 9.
    o = old.reshape(threads, 16)
    np.testing.assert_array_equal((o == 0).sum(axis=1), np.ones(threads))
    np.testing.assert_array_equal((o == 9).sum(axis=1), np.full(threads, 15))


def k_slm_barrier(x: P, out: P, N: cm.constexpr, G: cm.constexpr):
    s = cm.slm(cm.i32, N * G)
    lid = cm.local_id(0)
    v = cm.load(x, cm.thread_id(0) * N, N)
    cm.store(s, ((lid + 1) % G) * N, v.astype(cm.i32))
    cm.fence()
    cm.barrier()
    w = cm.load(s, lid * N, N)
    cm.store(out, cm.thread_id(0) * N, w + cm.group_id(0) * 1000 + (cm.local_size(0) - G))


@pytest.mark.parametrize("simd", [8, 16, 32])
def test_slm_and_barrier_rotate_between_threads(mode, rng, simd):
    n, g, groups = 24, 4, 3
    x = rng.integers(-100, 100, groups * g * n).astype(np.int32)
    out = np.zeros_like(x)
    make_kernel(k_slm_barrier, i32, simd)[groups * g, cm.group(g)](x, out, n, g)
    want = np.empty_like(x)
    for gr in range(groups):
        for lid in range(g):
            src = gr * g + (lid - 1) % g          # thread lid reads what (lid-1) wrote
            want[(gr * g + lid) * n:(gr * g + lid + 1) * n] = x[src * n:(src + 1) * n] + gr * 1000
    np.testing.assert_array_equal(out, want)


# --- ids and grids -------------------------------------------------------------------------

def k_ids(out: cm.ptr[i32]):
    t0, t1, t2 = cm.thread_id(0), cm.thread_id(1), cm.thread_id(2)
    flat = (t2 * cm.group_count(1) * cm.local_size(1) + t1) * (cm.group_count(0) * cm.local_size(0)) + t0
    v = vector[i32, 8](t0, t1, t2, cm.group_id(0), cm.group_id(1), cm.group_id(2), cm.local_id(0), cm.local_id(1))
    cm.store(out, flat * 8, v)


@pytest.mark.parametrize("grid,group", [(6, None), (6, 2), ((4, 3), None), ((4, 6), (2, 3)),
                                        ((2, 3, 4), None), ((4, 2, 2), (2, 1, 2))])
def test_ids_in_1_2_3_dimensional_grids(mode, grid, group):
    g3 = (grid,) if isinstance(grid, int) else grid
    g3 = tuple(g3) + (1,) * (3 - len(g3))
    grp = (1, 1, 1) if group is None else ((group,) if isinstance(group, int) else tuple(group))
    grp = grp + (1,) * (3 - len(grp))
    out = np.full(int(np.prod(g3)) * 8, -1, np.int32)
    k = cm.kernel(k_ids)
    (k[grid] if group is None else k[grid, cm.group(group)])(out)
    got = out.reshape(g3[2], g3[1], g3[0], 8)
    for z in range(g3[2]):
        for y in range(g3[1]):
            for x in range(g3[0]):
                want = [x, y, z, x // grp[0], y // grp[1], z // grp[2], x % grp[0], y % grp[1]]
                np.testing.assert_array_equal(got[z, y, x], want)


# --- Python control flow, funcs, tuples -----------------------------------------------------

@cm.func
def clamp_sum(v, lo, hi):
    return cm.max(cm.min(v, hi), lo), cm.reduce_sum(v)


def k_control(x: P, out: P, n_iter: cm.i32, N: cm.constexpr):
    base = cm.thread_id(0) * N
    v = cm.load(x, base, N)
    acc = v * 0
    for i in range(n_iter):                     # runtime trip count, loop-carried register
        acc += v
    k = 0
    while k < 3:                                # while with a loop-carried scalar
        acc = acc + 1
        k += 1
    t = cm.thread_id(0)
    if t == 0:
        acc = acc * 2
    elif t == 1:
        acc = acc - 5
    else:
        acc = -acc
    scale = (1, 2, 3, 4)
    for j in cm.static_range(len(scale)):       # unrolled; tuple of constants
        acc += scale[j]
    clamped, total = clamp_sum(acc, -50, 50)
    cm.store(out, base, clamped)
    cm.store(out, cm.thread_id(0) + 3 * N, total)


@pytest.mark.parametrize("dtype", DTYPES)
def test_control_flow_funcs_tuples(mode, rng, dtype):
    n = 24
    x = random_array(rng, dtype, THREADS * n, -5, 5)
    out = np.zeros(THREADS * n + THREADS, x.dtype)
    make_kernel(k_control, dtype, 16)[THREADS](x, out, 4, n)
    for t in range(THREADS):
        acc = x[t * n:(t + 1) * n] * 4 + 3
        acc = acc * 2 if t == 0 else acc - 5 if t == 1 else -acc
        acc = acc + 10
        np.testing.assert_allclose(out[t * n:(t + 1) * n], np.clip(acc, -50, 50), rtol=1e-6)
        np.testing.assert_allclose(out[3 * n + t], acc.sum(), rtol=1e-5)


def k_early_return(x: cm.ptr[f32], n: cm.i32):
    t = cm.thread_id(0)
    if t * 16 >= n:
        return
    cm.store(x, t * 16, cm.load(x, t * 16, 16) + 1.0)


def test_early_return_guards_the_tail(mode):
    x = np.zeros(64, np.float32)
    cm.kernel(k_early_return)[6](x, 48)
    np.testing.assert_array_equal(x, np.r_[np.ones(48), np.zeros(16)].astype(np.float32))


# --- launching and arrays ---------------------------------------------------------------------

def k_saxpy(x: cm.ptr[f32], y: cm.ptr[f32], a: f32, n: i32):
    base = cm.thread_id(0) * 32
    vx = cm.load(x, base, 32)
    vy = cm.load(y, base, 32)
    cm.store(y, base, a * vx + vy)


def test_saxpy_from_the_api_doc_with_numpy_and_device_arrays(mode):
    saxpy = cm.kernel(simd=16)(k_saxpy)
    x = np.arange(1024, dtype=np.float32)
    y = np.ones(1024, np.float32)
    saxpy[1024 // 32](x, y, 2.0, 1024)
    np.testing.assert_array_equal(y, 2 * np.arange(1024) + 1)
    if mode == "device":
        dx, dy = cm.to_device(x), cm.to_device(np.ones(1024, np.float32))
        saxpy[32](dx, dy, 3.0, 1024)
        np.testing.assert_array_equal(dy.numpy(), 3 * np.arange(1024) + 1)
