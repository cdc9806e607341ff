"""256-bin histogram of 8-bit pixels with atomics.

A group of CM threads builds a shared histogram in shared local memory with SLM
atomics (one 64-lane atomic per 64 pixels), then merges it into the global one
with one atomic per bin. This example shows the atomics; the benchmark version
(``examples/bench/histogram.py``) is the fast one on the CPU device, where the
driver turns a vector atomic into per-lane increments.
"""
import numpy as np

import cmlang as cm
from cmlang import i32, u8

BINS = 256


@cm.kernel(simd=16)
def histogram_kernel(pixels: cm.ptr[u8], hist: cm.ptr[i32], PER_THREAD: cm.constexpr,
                     GROUP: cm.constexpr):
    local = cm.slm(i32, BINS)
    lid = cm.local_id(0)
    share = BINS // GROUP                     # bins this CM thread clears and merges
    cm.store(local, lid * share, cm.zeros(cm.vector[i32, BINS // GROUP]))
    cm.barrier()
    base = cm.thread_id(0) * PER_THREAD
    for c in cm.static_range(PER_THREAD // 64):
        px = cm.load(pixels, base + c * 64, 64)
        cm.atomic_add(local, px.astype(i32), 1)
    cm.barrier()
    counts = cm.load(local, lid * share, share)
    cm.atomic_add(hist, cm.iota(i32, BINS // GROUP) + lid * share, counts)


def histogram(pixels: np.ndarray, per_thread: int = 256, group: int = 4) -> np.ndarray:
    assert pixels.dtype == np.uint8 and pixels.size % (per_thread * group) == 0
    hist = np.zeros(BINS, np.int32)
    histogram_kernel[pixels.size // per_thread, cm.group(group)](pixels, hist, per_thread, group)
    return hist


def reference(pixels: np.ndarray) -> np.ndarray:
    return np.bincount(pixels.reshape(-1), minlength=BINS).astype(np.int32)
