"""In-register bitonic sort: each CM thread sorts N keys held in one register.

Every compare-exchange stage pairs element i with element i ^ j: a cross-lane
``shuffle_xor`` followed by element-wise min/max and a ``merge`` by direction.
No memory traffic between stages: the CM way.
"""
import numpy as np

import cmlang as cm
from cmlang import f32, i32


@cm.kernel(simd=16)
def bitonic_sort_rows(keys: cm.ptr[f32], N: cm.constexpr, LOG_N: cm.constexpr):
    base = cm.thread_id(0) * N
    v = cm.load(keys, base, N)
    lane = cm.iota(i32, N)
    for s in cm.static_range(1, LOG_N + 1):
        ascending = (lane & (1 << s)) == 0
        for t in cm.static_range(s):
            j = 1 << (s - 1 - t)
            partner = cm.shuffle_xor(v, j)
            take_min = ascending == ((lane & j) == 0)
            v = cm.merge(cm.min(v, partner), cm.max(v, partner), take_min)
    cm.store(keys, base, v)


def sort_rows(keys: np.ndarray, n: int = 32) -> np.ndarray:
    """Sort each consecutive run of n keys (n a power of two) in place and return keys."""
    assert keys.size % n == 0 and n & (n - 1) == 0
    bitonic_sort_rows[keys.size // n](keys, n, n.bit_length() - 1)
    return keys


def reference(keys: np.ndarray, n: int = 32) -> np.ndarray:
    return np.sort(keys.reshape(-1, n), axis=1).reshape(-1)
