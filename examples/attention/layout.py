"""Host helpers shared by the cmlang paths: device arrays, padding, packing K and V."""
from __future__ import annotations

import math

import numpy as np

import cmlang.runtime as rt

from . import kernels

F32 = np.float32
LOG2E = 1.4426950408889634


def round_up(x: int, multiple: int) -> int:
    return -(-x // multiple) * multiple


def to_device(x):
    return x if isinstance(x, rt.DeviceArray) else rt.to_device(np.ascontiguousarray(x))


def empty(shape, dtype=F32):
    return rt.empty(shape, dtype)


def zeros(shape, dtype=F32):
    return rt.zeros(shape, dtype)


def softmax_scale(d: int) -> float:
    """Queries are multiplied by this so that the kernels' exp2 is exp(q.k / sqrt(d))."""
    return LOG2E / math.sqrt(d)


def pack_kv(k, v, padded: int):
    """K as kt [Hkv, d, padded] (transposed) and V as vp [Hkv, padded, d], zero past N."""
    n, hkv, d = k.shape
    kt, vp = empty((hkv, d, padded)), empty((hkv, padded, d))
    assert padded % kernels.TOKENS == 0
    grid = (padded // kernels.TOKENS, hkv)
    kernels.pack_keys[grid](to_device(k), kt, n, hkv, padded, d)
    kernels.pack_values[grid](to_device(v), vp, n, hkv, padded, d)
    return kt, vp


def column_tile(d: int) -> int:
    """Columns of a state/output tile per CM thread: the widest of 64/32/16 dividing d."""
    for width in (64, 32, 16):
        if d % width == 0:
            return width
    return d
