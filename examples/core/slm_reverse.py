"""Reverse each group's span of an array through shared local memory.

The CM threads of a group each write their reversed chunk to the mirrored place
in SLM, meet at a barrier, and read back their own place: data crosses threads
only through SLM.
"""
import numpy as np

import cmlang as cm
from cmlang import f32, i32


@cm.kernel(simd=16)
def reverse_groups(x: cm.ptr[f32], y: cm.ptr[f32], N: cm.constexpr, GROUP: cm.constexpr):
    shared = cm.slm(f32, N * GROUP)
    lid = cm.local_id(0)
    v = cm.load(x, cm.thread_id(0) * N, N)
    backwards = v.iselect((N - 1) - cm.iota(i32, N))
    cm.store(shared, (GROUP - 1 - lid) * N, backwards)
    cm.barrier()
    cm.store(y, cm.thread_id(0) * N, cm.load(shared, lid * N, N))


def reverse_in_groups(x: np.ndarray, n: int = 32, group: int = 4) -> np.ndarray:
    assert x.dtype == np.float32 and x.size % (n * group) == 0
    y = np.empty_like(x)
    reverse_groups[x.size // n, cm.group(group)](x, y, n, group)
    return y


def reference(x: np.ndarray, n: int = 32, group: int = 4) -> np.ndarray:
    return x.reshape(-1, n * group)[:, ::-1].reshape(-1).copy()
