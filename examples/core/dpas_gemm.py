"""A GEMM from dpas tiles: each CM thread owns an M x N tile of C in registers and
accumulates dpas(acc, A tile, B tile) over K in steps of KT.

The same kernel is built for each input type: f32 (computed with FMAs everywhere), f16
and bf16 (f32 accumulate) and i8 (i32 accumulate).  On a device profile with a systolic
unit (``pvc``, ``dg2``) the 16- and 8-bit products are ``dpas`` instructions; the tile
then needs N a multiple of the unit's width (16 on PVC, 8 on DG2), the kernel's simd
equal to it, and KT a multiple of 16 (f16/bf16) or 32 (i8).  On the CPU device they are
exact products summed in f32 (i32 for i8).  bf16 matrices travel as their uint16 bits
(``to_bf16``).

``B2D=1`` reads the tiles with ``cm.load_2d`` of the whole matrices as surfaces: on PVC
2-D block messages (b through the VNNI-transforming load), with no run-time surface check
where the launch proves the matrices fit the messages (rows of 64 bytes or more, whole
16 bytes of pitch); elsewhere per-element loads.  ``B2D=0``: row loads (``cm.load``)."""
import numpy as np

import cmlang as cm
from cmlang import bf16, f16, f32, i8, i32
from cmlang.runtime.interpreter import bf16_bits_to_f32, f32_to_bf16_bits

INPUT_TYPES = {"f32": f32, "f16": f16, "bf16": bf16, "i8": i8}
K_STEP = {"f32": 8, "f16": 16, "bf16": 16, "i8": 32}    # the smallest KT the unit takes


def gemm_kernel(T, simd=16):
    """The dpas GEMM kernel for inputs of cmlang type ``T`` (accumulating in i32 for i8,
    else f32), at ``simd`` (the systolic unit's width on a GPU)."""
    TC = i32 if T == i8 else f32

    @cm.kernel(simd=simd)
    def dpas_gemm(a: cm.ptr[T], b: cm.ptr[T], c: cm.ptr[TC], Mrows: cm.i32, K: cm.i32, Ncols: cm.i32,
                  M: cm.constexpr, N: cm.constexpr, KT: cm.constexpr, B2D: cm.constexpr):
        row0 = cm.thread_id(1) * M
        col0 = cm.thread_id(0) * N
        acc = cm.zeros(cm.matrix[TC, M, N])
        for k in range(0, K, KT):
            if B2D:       # A is Mrows x K, B is K x Ncols
                ta = cm.load_2d(a, (M, KT), k, row0, K, Mrows, K)
                tb = cm.load_2d(b, (KT, N), col0, k, Ncols, K, Ncols)
            else:
                ta = cm.load(a, row0 * K + k, (M, KT), K)
                tb = cm.load(b, k * Ncols + col0, (KT, N), Ncols)
            acc = cm.dpas(acc, ta, tb)
        cm.store(c, row0 * Ncols + col0, acc, Ncols)
    return dpas_gemm


dpas_gemm = gemm_kernel(f32)
dpas_gemm_f16 = gemm_kernel(f16)
dpas_gemm_bf16 = gemm_kernel(bf16)
dpas_gemm_i8 = gemm_kernel(i8)
KERNELS = {"f32": dpas_gemm, "f16": dpas_gemm_f16, "bf16": dpas_gemm_bf16, "i8": dpas_gemm_i8}


def to_bf16(x: np.ndarray) -> np.ndarray:
    """float values -> bf16 bits (uint16), rounded to nearest even."""
    return f32_to_bf16_bits(np.asarray(x, np.float32))


def matmul(a: np.ndarray, b: np.ndarray, m=8, n=16, kt=None, inputs=None, block2d=False) -> np.ndarray:
    """C = A @ B from m x n tiles; ``inputs`` names the element type ("f32", "f16", "bf16"
    with uint16 bits, "i8"), by default that of ``a``'s dtype; ``block2d``: tiles by
    ``cm.load_2d``."""
    inputs = inputs or {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16",
                        np.dtype(np.int8): "i8"}[a.dtype]
    kt = kt or K_STEP[inputs]
    (rows, k), (_, cols) = a.shape, b.shape
    assert rows % m == 0 and cols % n == 0 and k % kt == 0
    c = np.empty((rows, cols), np.int32 if inputs == "i8" else np.float32)
    KERNELS[inputs][(cols // n, rows // m)](a, b, c, rows, k, cols, m, n, kt, int(block2d))
    return c


def reference(a, b, inputs=None):
    """float64 products (exact int64 for i8) of the values the kernel reads."""
    if inputs == "bf16":
        a, b = bf16_bits_to_f32(a), bf16_bits_to_f32(b)
    if a.dtype == np.int8:
        return (a.astype(np.int64) @ b.astype(np.int64)).astype(np.int32)
    return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32)
