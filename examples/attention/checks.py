"""Input checks shared by every attention entry point.

Each public function validates its arguments here first, so bad input fails with
one clear ValueError before any kernel is built or launched.  The helpers return
C-contiguous arrays in the dtype the caller computes in (float32 for kernels,
float64 for references).
"""
from __future__ import annotations

import math

import numpy as np

FLOAT_KINDS = "f"          # numpy kind letters accepted as floating point


def as_array(x, name: str) -> np.ndarray:
    """A numpy view of ``x`` (numpy array, cmlang DeviceArray, anything array-like)."""
    if x is None:
        raise ValueError(f"{name} is required, got None")
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception as exc:  # noqa: BLE001 - any failure means "not an array"
            raise ValueError(f"{name} must be an array, got {type(x).__name__}: {exc}") from None
    if x.dtype.kind not in FLOAT_KINDS and x.dtype.name != "bfloat16":
        raise ValueError(f"{name} must have a floating-point dtype (float16/bfloat16/float32/float64), "
                         f"got {x.dtype}")
    return x


def float_array(x, name: str, dtype, ndim=None) -> np.ndarray:
    x = as_array(x, name)
    if ndim is not None and x.ndim not in np.atleast_1d(ndim):
        want = " or ".join(str(n) for n in np.atleast_1d(ndim))
        raise ValueError(f"{name} must have rank {want}, got shape {x.shape} (rank {x.ndim})")
    return np.ascontiguousarray(x, dtype=dtype)


def check_qkv(q, k, v, dtype=np.float32):
    """q [N, Hq, d], k and v [N, Hkv, d] with Hq a multiple of Hkv.

    Returns (q, k, v, G) converted to ``dtype``; N' must equal N.
    """
    q = float_array(q, "q", dtype, 3)
    k = float_array(k, "k", dtype, 3)
    v = float_array(v, "v", dtype, 3)
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape, got k {k.shape} and v {v.shape}")
    if q.shape[0] != k.shape[0]:
        raise ValueError(f"q and k must have the same sequence length, got q {q.shape} and k {k.shape}")
    return (q, k, v) + (check_heads(q.shape, k.shape),)


def check_heads(q_shape, kv_shape) -> int:
    """The GQA group size G = Hq / Hkv, after checking head counts and head dims."""
    hq, d = q_shape[-2], q_shape[-1]
    hkv, dk = kv_shape[-2], kv_shape[-1]
    if d != dk:
        raise ValueError(f"q and k must have the same head dimension, got {d} and {dk}")
    if d == 0:
        raise ValueError("the head dimension d must be at least 1")
    if hq == 0 or hkv == 0:
        raise ValueError(f"head counts must be positive, got Hq={hq}, Hkv={hkv}")
    if hq % hkv:
        raise ValueError(f"the number of query heads Hq={hq} must be a multiple of the number of "
                         f"key/value heads Hkv={hkv} (grouped-query attention)")
    return hq // hkv


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def alibi_slopes(n_heads: int) -> np.ndarray:
    """ALiBi slopes (float64): 2^(-8(h+1)/H) for H a power of two; otherwise the
    slopes of the nearest smaller power of two, then every other slope of twice that."""
    n_heads = check_positive_int(n_heads, "the number of heads")

    def power_of_two(n):
        return 2.0 ** (-8.0 * np.arange(1, n + 1) / n)

    p = 1 << int(math.floor(math.log2(n_heads)))
    if p == n_heads:
        return power_of_two(n_heads)
    return np.concatenate([power_of_two(p), power_of_two(2 * p)[0::2][: n_heads - p]])


def check_slopes(slopes, n_heads: int) -> np.ndarray:
    """Per-head decay slopes (lambda_h = exp(-slope_h)); None gives the ALiBi slopes."""
    if slopes is None:
        return alibi_slopes(n_heads)
    slopes = np.asarray(slopes, dtype=np.float64).reshape(-1) if np.ndim(slopes) else \
        np.full(n_heads, float(slopes))
    if slopes.shape != (n_heads,):
        raise ValueError(f"slopes must have one value per query head ({n_heads}), got {slopes.shape[0]}")
    if np.isnan(slopes).any() or (slopes < 0).any():
        raise ValueError("slopes must be >= 0 (decay lambda = exp(-slope) in (0, 1]); "
                         f"got {slopes}")
    return slopes


def check_state(state, n_heads: int, d: int, dtype) -> np.ndarray:
    """The Lightning state [Hq, d, d]; None gives zeros."""
    if state is None:
        return np.zeros((n_heads, d, d), dtype)
    state = float_array(state, "state", dtype)
    if state.shape != (n_heads, d, d):
        raise ValueError(f"state must have shape (Hq, d, d) = {(n_heads, d, d)}, got {state.shape}")
    return state


def check_token(x, name: str, dtype) -> tuple[np.ndarray, bool]:
    """One decode token: [H, d] or [1, H, d]. Returns the [H, d] array and whether it had the 1."""
    x = float_array(x, name, dtype, (2, 3))
    if x.ndim == 3:
        if x.shape[0] != 1:
            raise ValueError(f"{name} must be one token: shape [H, d] or [1, H, d], got {x.shape}")
        return x[0], True
    return x, False


def check_infllm_params(block, l1, s1, l2, s2, init_blocks, local_blocks, topk) -> dict:
    params = dict(block=check_positive_int(block, "block"),
                  l1=check_positive_int(l1, "l1"), s1=check_positive_int(s1, "s1"),
                  l2=check_positive_int(l2, "l2"), s2=check_positive_int(s2, "s2"),
                  init_blocks=check_positive_int(init_blocks, "init_blocks", 0),
                  local_blocks=check_positive_int(local_blocks, "local_blocks", 0),
                  topk=check_positive_int(topk, "topk"))
    return params
