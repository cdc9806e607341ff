"""The CM example ``histogram_64``: a grey-scale image with pixel values 0..255 binned into 64
bins (value >> 2). Each CM thread reads a 64 x 32 block as eight 8 x 32 media-block reads,
counts into a 64-bin histogram in registers (``histogram(in(i, j) >> 2) += 1``, a write at
a run-time index), and adds it to the global histogram with atomic adds of 8 bins at a time.
"""
import numpy as np

import cmlang as cm
from cmlang import i32, u8, u32

NUM_BINS = 64
BLOCK_WIDTH = 32
BLOCK_HEIGHT = 64


@cm.kernel(simd=16)
def histogram_atomic(inbuf: cm.ptr[u8], outbuf: cm.ptr[u32], width: i32, height: i32):
    h_pos = cm.thread_id(0) * BLOCK_WIDTH
    v_pos = cm.thread_id(1) * BLOCK_HEIGHT
    histogram = cm.zeros(cm.vector[i32, NUM_BINS])
    offset = cm.iota(u32, 8)
    for y in range(BLOCK_HEIGHT // 8):
        inp = cm.load_2d(inbuf, (8, 32), h_pos, v_pos, width, height, width)
        for i in range(8):
            for j in range(32):
                histogram[inp[i, j] >> 2] += 1
        v_pos += 8
    for i in cm.static_range(0, NUM_BINS, 8):
        src = histogram.select(8, 1, i).astype(u32)
        cm.atomic_add(outbuf, offset, src)
        offset += 8


def histogram(image: np.ndarray) -> np.ndarray:
    """``image``: rows x columns bytes (multiples of 64 and 32)."""
    bins = np.zeros(NUM_BINS, np.uint32)
    rows, cols = image.shape
    histogram_atomic[(cols // BLOCK_WIDTH, rows // BLOCK_HEIGHT)](image, bins, cols, rows)
    return bins


def reference(image):
    return np.bincount(image.reshape(-1) >> 2, minlength=NUM_BINS).astype(np.uint32)
