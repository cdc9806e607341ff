"""Inclusive prefix sum by regions.

Each CM thread scans a chunk of N elements in a register with log2(N) shifted adds
(``v[d:] += v[:-d]`` is one region read, one add, one region write), writes the
chunk total, then the chunk totals are scanned and added back.
"""
import numpy as np

import cmlang as cm
from cmlang import i32


@cm.func
def scan_register(v, N: cm.constexpr, LOG_N: cm.constexpr):
    for s in cm.static_range(LOG_N):
        d = 1 << s
        v[d:N] += v[0:N - d]
    return v


@cm.kernel(simd=16)
def scan_chunks(x: cm.ptr[i32], y: cm.ptr[i32], totals: cm.ptr[i32], N: cm.constexpr, LOG_N: cm.constexpr):
    t = cm.thread_id(0)
    v = scan_register(cm.load(x, t * N, N), N, LOG_N)
    cm.store(y, t * N, v)
    cm.store(totals, t, v[N - 1])


@cm.kernel(simd=16)
def scan_totals(totals: cm.ptr[i32], count: i32, N: cm.constexpr, LOG_N: cm.constexpr):
    # One CM thread walks the (short) totals array, carrying the running sum.
    carry = 0
    for c in range(0, count, N):
        v = scan_register(cm.load(totals, c, N), N, LOG_N) + carry
        cm.store(totals, c, v)
        carry = v[N - 1]


@cm.kernel(simd=16)
def add_offsets(y: cm.ptr[i32], totals: cm.ptr[i32], N: cm.constexpr):
    t = cm.thread_id(0)
    if t > 0:
        off = cm.load(totals, t - 1, 1)[0]
        cm.store(y, t * N, cm.load(y, t * N, N) + off)


def inclusive_scan(x: np.ndarray, n: int = 64) -> np.ndarray:
    """Inclusive prefix sum of an int32 array whose size is a multiple of n * n."""
    chunks = x.size // n
    assert x.dtype == np.int32 and x.size % n == 0 and chunks % n == 0
    log_n = n.bit_length() - 1
    y = cm.to_device(np.empty_like(x))
    totals = cm.to_device(np.empty(chunks, np.int32))
    scan_chunks[chunks](cm.to_device(x), y, totals, n, log_n)
    scan_totals[1](totals, chunks, n, log_n)
    add_offsets[chunks](y, totals, n)
    return y.numpy()


def reference(x: np.ndarray) -> np.ndarray:
    return np.cumsum(x, dtype=np.int32)
