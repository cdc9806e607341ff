"""Matrix transpose through 2-D block loads.

Each CM thread loads a T x T tile with one 2-D block read, transposes it in
registers (row j of the result is column j of the tile: one region move per row)
and writes it with one 2-D block store.
"""
import numpy as np

import cmlang as cm
from cmlang import f32


@cm.kernel(simd=16)
def transpose_kernel(src: cm.ptr[f32], dst: cm.ptr[f32], rows: cm.i32, cols: cm.i32, T: cm.constexpr):
    ti = cm.thread_id(1)          # tile row
    tj = cm.thread_id(0)          # tile column
    tile = cm.load(src, ti * T * cols + tj * T, (T, T), cols)
    out = cm.zeros(cm.matrix[f32, T, T])
    for j in cm.static_range(T):
        out[j] = tile.column(j)
    cm.store(dst, tj * T * rows + ti * T, out, rows)


def transpose(a: np.ndarray, tile: int = 16) -> np.ndarray:
    rows, cols = a.shape
    assert a.dtype == np.float32 and rows % tile == 0 and cols % tile == 0
    out = np.empty((cols, rows), np.float32)
    transpose_kernel[(cols // tile, rows // tile)](a, out, rows, cols, tile)
    return out


def reference(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.T)
