"""Integer GEMM on the systolic unit, as the ESIMD dpas tests write it: C (i32) = A (i8 or u8)
x B (i8 or u8) with one ``dpas`` per 8 x 16 tile of C and per 32-deep slice of K (systolic
depth 8, four 8-bit values per dword, repeat count 8, execution size 16).

ESIMD passes B already packed in VNNI form (four K-consecutive bytes per dword); cmlang's
``cm.dpas`` takes B as the K x N matrix it is and arranges VNNI itself, so the port loads
B's rows as they lie in memory.
"""
import numpy as np

import cmlang as cm
from cmlang import i32

M_TILE, N_TILE, K_STEP = 8, 16, 32        # repeat count, execution size, systolic depth * 4


@cm.kernel(simd=16)
def gemm_i8(a: cm.ptr[cm.i8], b: cm.ptr[cm.i8], c: cm.ptr[i32], K: cm.constexpr, N: i32):
    m0 = cm.thread_id(1) * M_TILE
    n0 = cm.thread_id(0) * N_TILE
    acc = cm.zeros(cm.matrix[i32, M_TILE, N_TILE])
    for k in cm.static_range(0, K, K_STEP):
        tile_a = cm.load(a, m0 * K + k, (M_TILE, K_STEP), K)
        tile_b = cm.load(b, k * N + n0, (K_STEP, N_TILE), N)
        acc = cm.dpas(acc, tile_a, tile_b)
    cm.store(c, m0 * N + n0, acc, N)


@cm.kernel(simd=16)
def gemm_u8_i8(a: cm.ptr[cm.u8], b: cm.ptr[cm.i8], c: cm.ptr[i32], K: cm.constexpr, N: i32):
    """Unsigned activations times signed weights (ESIMD's u8 x s8 precision pair)."""
    m0 = cm.thread_id(1) * M_TILE
    n0 = cm.thread_id(0) * N_TILE
    acc = cm.zeros(cm.matrix[i32, M_TILE, N_TILE])
    for k in cm.static_range(0, K, K_STEP):
        acc = cm.dpas(acc, cm.load(a, m0 * K + k, (M_TILE, K_STEP), K),
                      cm.load(b, k * N + n0, (K_STEP, N_TILE), N))
    cm.store(c, m0 * N + n0, acc, N)


def gemm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    (m, k), (_, n) = a.shape, b.shape
    assert m % M_TILE == 0 and n % N_TILE == 0 and k % K_STEP == 0
    c = np.zeros((m, n), np.int32)
    kernel = gemm_i8 if a.dtype == np.int8 else gemm_u8_i8
    kernel[(n // N_TILE, m // M_TILE)](a, b, c, k, n)
    return c


def reference(a, b):
    return (a.astype(np.int64) @ b.astype(np.int64)).astype(np.int32)
