"""Dense causal flash attention in cmlang (the full-attention baseline)."""
from __future__ import annotations

import numpy as np

from . import kernels
from .checks import check_qkv, check_positive_int
from .layout import element_type, empty, for_systolic_unit, host_dtype, output_type, pack_kv, round_up, softmax_scale, to_device
from .reference import dense_attention_reference  # noqa: F401  (beside the kernel, as documented)


def dense_attention(q, k, v, causal=True, *, out_dtype=None, rows=4, keys=64):
    """o[t, h] = softmax_{j <= t}(q[t, h] . k[j, h // G] / sqrt(d)) @ v[., h // G]  (all j
    when not causal).  q [N, Hq, d], k and v [N, Hkv, d]; returns [N, Hq, d] of ``out_dtype``
    (default: the inputs' float16/bfloat16, else float32).  bf16/f16 inputs stay bf16/f16 in
    the packed Q, K, V (the dpas inputs); softmax and accumulation are f32.
    ``rows`` query rows and ``keys`` keys make one tile of a CM thread."""
    t = element_type(q, k, v)
    q, k, v, group = check_qkv(q, k, v, host_dtype(t))
    out = output_type(out_dtype, t)
    rows, keys = check_positive_int(rows, "rows"), check_positive_int(keys, "keys")
    n, hq, d = q.shape
    if n == 0:
        return np.zeros(q.shape, host_dtype(out))
    padded = round_up(round_up(round_up(n, rows), keys), 16)   # causal tiles run to the row tile's end
    kt, vp = pack_kv(k, v, padded, t)
    qs, o = empty((hq, padded, d), t), empty(q.shape, out)
    kernels.pack_queries[(padded // kernels.TOKENS, hq)](to_device(q), qs, n, hq, padded, softmax_scale(d), d, t)
    flash = for_systolic_unit(kernels.flash_attention, t)
    flash[(-(-n // rows), hq)](qs, kt, vp, o, n, hq, group, padded, d, rows, keys, bool(causal), t, out)
    return o.numpy()

