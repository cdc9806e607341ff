"""Dense causal flash attention in cmlang (the full-attention baseline)."""
from __future__ import annotations

import numpy as np

from . import kernels
from .checks import check_qkv, check_positive_int
from .layout import F32, empty, pack_kv, round_up, softmax_scale, to_device
from .reference import dense_attention_reference  # noqa: F401  (beside the kernel, as documented)


def dense_attention(q, k, v, causal=True, *, rows=4, keys=64):
    """o[t, h] = softmax_{j <= t}(q[t, h] . k[j, h // G] / sqrt(d)) @ v[., h // G]  (all j
    when not causal).  q [N, Hq, d], k and v [N, Hkv, d]; returns float32 [N, Hq, d].
    ``rows`` query rows and ``keys`` keys make one tile of a CM thread."""
    q, k, v, group = check_qkv(q, k, v, F32)
    rows, keys = check_positive_int(rows, "rows"), check_positive_int(keys, "keys")
    n, hq, d = q.shape
    if n == 0:
        return np.zeros_like(q)
    padded = round_up(round_up(round_up(n, rows), keys), 16)   # causal tiles run to the row tile's end
    kt, vp = pack_kv(k, v, padded)
    qs, o = empty((hq, padded, d)), empty(q.shape)
    kernels.pack_queries[(padded // kernels.TOKENS, hq)](to_device(q), qs, n, hq, padded, softmax_scale(d), d)
    kernels.flash_attention[(-(-n // rows), hq)](qs, kt, vp, o, n, hq, group, padded, d, rows, keys,
                                                       bool(causal))
    return o.numpy()
