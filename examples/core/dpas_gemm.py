"""A GEMM from dpas tiles: each CM thread owns an M x N tile of C in registers and
accumulates dpas(acc, A tile, B tile) over K in steps of KT."""
import numpy as np

import cmlang as cm
from cmlang import f32


@cm.kernel(simd=16)
def dpas_gemm(a: cm.ptr[f32], b: cm.ptr[f32], c: cm.ptr[f32], K: cm.i32, Ncols: cm.i32,
              M: cm.constexpr, N: cm.constexpr, KT: cm.constexpr):
    row0 = cm.thread_id(1) * M
    col0 = cm.thread_id(0) * N
    acc = cm.zeros(cm.matrix[f32, M, N])
    for k in range(0, K, KT):
        ta = cm.load(a, row0 * K + k, (M, KT), K)
        tb = cm.load(b, k * Ncols + col0, (KT, N), Ncols)
        acc = cm.dpas(acc, ta, tb)
    cm.store(c, row0 * Ncols + col0, acc, Ncols)


def matmul(a: np.ndarray, b: np.ndarray, m=8, n=16, kt=8) -> np.ndarray:
    (rows, k), (_, cols) = a.shape, b.shape
    assert rows % m == 0 and cols % n == 0 and k % kt == 0
    c = np.empty((rows, cols), np.float32)
    dpas_gemm[(cols // n, rows // m)](a, b, c, k, cols, m, n, kt)
    return c


def reference(a, b):
    return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32)
