"""The linear filter of the CM tutorial (``linear_walker``): every CM thread averages the 3x3
neighbourhood of a 6 x 8 block of R8G8B8 pixels (a 6 x 24 block of bytes), and a weighted
variant whose nine weights arrive as a register kernel parameter (``coeff: vector[f32, 9]``).

CM reads an 8 x 32 byte block with a media-block read at (h_pos * 24, v_pos * 6) and writes
the 6 x 24 result at the same corner, so output pixel (r, c) averages input rows r..r+2 and
pixels c..c+2 (its top-left neighbour's corner; the example's own convention).
"""
import numpy as np

import cmlang as cm
from cmlang import f32, u8

BLOCK_ROWS, BLOCK_BYTES = 6, 24          # output block per CM thread: 6 rows x 8 RGB pixels


@cm.kernel(simd=16)
def linear(ibuf: cm.ptr[u8], obuf: cm.ptr[u8], width: cm.i32, height: cm.i32):
    # width: bytes per row (3 per pixel); height: rows
    h_pos = cm.thread_id(0)
    v_pos = cm.thread_id(1)
    # 2-D media-block read: an 8 x 32 block (8 x 30 would do; CM reads whole dwords)
    inp = cm.load_2d(ibuf, (8, 32), h_pos * 24, v_pos * 6, width, height, width)
    # m = in.select<6, 1, 24, 1>(1, 3); m += in.select<6, 1, 24, 1>(0, 0); ...
    m = inp.select(6, 1, 24, 1, 1, 3).astype(f32)
    m += inp.select(6, 1, 24, 1, 0, 0)
    m += inp.select(6, 1, 24, 1, 0, 3)
    m += inp.select(6, 1, 24, 1, 0, 6)
    m += inp.select(6, 1, 24, 1, 1, 0)
    m += inp.select(6, 1, 24, 1, 1, 6)
    m += inp.select(6, 1, 24, 1, 2, 0)
    m += inp.select(6, 1, 24, 1, 2, 3)
    m += inp.select(6, 1, 24, 1, 2, 6)
    # divide by 9 approximately (mul is faster); the implicit float -> uchar conversion
    out = (m * 0.111).astype(u8)
    cm.store_2d(obuf, out, h_pos * 24, v_pos * 6, width, height, width)


@cm.kernel(simd=16)
def linear_weighted(ibuf: cm.ptr[u8], obuf: cm.ptr[u8], coeff: cm.vector[f32, 9], width: cm.i32,
                    height: cm.i32):
    """The same block walk with nine weights passed by value: coeff[3 * dy + dx] weighs the
    pixel dy rows down and dx pixels right; the result saturates to 0..255."""
    h_pos = cm.thread_id(0)
    v_pos = cm.thread_id(1)
    inp = cm.load_2d(ibuf, (8, 32), h_pos * 24, v_pos * 6, width, height, width)
    m = cm.zeros(cm.matrix[f32, 6, 24])
    for dy in cm.static_range(3):
        for dx in cm.static_range(3):
            m += coeff[3 * dy + dx] * inp.select(6, 1, 24, 1, dy, 3 * dx)
    cm.store_2d(obuf, cm.sat(m.astype(u8)), h_pos * 24, v_pos * 6, width, height, width)


def _grid(image):
    rows, row_bytes = image.shape
    assert row_bytes % BLOCK_BYTES == 0 and rows % BLOCK_ROWS == 0
    return (row_bytes // BLOCK_BYTES, rows // BLOCK_ROWS)


def average(image: np.ndarray) -> np.ndarray:
    """``image``: rows x (3 * pixels) bytes; returns the filtered image."""
    out = np.zeros_like(image)
    linear[_grid(image)](image, out, image.shape[1], image.shape[0])
    return out


def weighted(image: np.ndarray, coeff) -> np.ndarray:
    out = np.zeros_like(image)
    linear_weighted[_grid(image)](image, out, coeff, image.shape[1], image.shape[0])
    return out


def _neighbours(image):
    """(dy, dx, the image shifted by dy rows and dx pixels, zero outside: the block read)."""
    rows, cols = image.shape
    padded = np.zeros((rows + 2, cols + 8), np.float32)
    padded[:rows, :cols] = image
    for dy in range(3):
        for dx in range(3):
            yield dy, dx, padded[dy:dy + rows, 3 * dx:3 * dx + cols]


def reference_average(image):
    terms = {(dy, dx): shifted for dy, dx, shifted in _neighbours(image)}
    m = terms[1, 1].copy()                         # the kernel's order of float additions
    for key in ((0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)):
        m += terms[key]
    return (m * np.float32(0.111)).astype(np.uint8)


def reference_weighted(image, coeff):
    m = np.zeros(image.shape, np.float32)          # f32 products and sums in the kernel's order
    for dy, dx, shifted in _neighbours(image):
        m += np.float32(coeff[3 * dy + dx]) * shifted
    return np.clip(np.trunc(m), 0, 255).astype(np.uint8)
