"""Dense causal flash attention in cmlang (the full-attention baseline)."""
from __future__ import annotations

import numpy as np

import cmlang as cm
from cmlang.autotuning import tuning_profile

from . import kernels
from .checks import check_qkv, check_positive_int
from .layout import F32, empty, pack_kv, round_up, softmax_scale, to_device
from .reference import dense_attention_reference  # noqa: F401  (beside the kernel, as documented)


# Tiles on Intel GPUs (M rows, KB keys; each divides 64), chosen per device by cm.autotune,
# ranked by IGC's stats: on PVC 8 x 16 with grf=256 builds without spills in both flavours.
FLASH_CONFIGS = {
    "pvc": [dict(M=4, KB=64), dict(M=8, KB=16, grf=256)],
    "dg2": [dict(M=4, KB=64, simd=8), dict(M=8, KB=16, simd=8)],
    "default": [dict(M=4, KB=64, simd=8)],
}
flash_attention_gpu = cm.autotune(configs=FLASH_CONFIGS, key=["D", "CAUSAL"])(kernels.flash_attention)


def dense_attention(q, k, v, causal=True, *, rows=None, keys=None):
    """o[t, h] = softmax_{j <= t}(q[t, h] . k[j, h // G] / sqrt(d)) @ v[., h // G]  (all j
    when not causal).  q [N, Hq, d], k and v [N, Hkv, d]; returns float32 [N, Hq, d].
    ``rows`` query rows and ``keys`` keys make one tile of a CM thread (default: 4 x 64 on
    the CPU, the device's tuned tile on a GPU)."""
    q, k, v, group = check_qkv(q, k, v, F32)
    tuned = rows is None and keys is None and tuning_profile().name != "cpu"
    rows = check_positive_int(4 if rows is None else rows, "rows")
    keys = check_positive_int(64 if keys is None else keys, "keys")
    n, hq, d = q.shape
    if n == 0:
        return np.zeros_like(q)
    pad_rows, pad_keys = (64, 64) if tuned else (rows, keys)    # a tuned tile's M and KB divide 64
    padded = round_up(round_up(round_up(n, pad_rows), pad_keys), 16)   # causal tiles run to the row tile's end
    kt, vp = pack_kv(k, v, padded)
    qs, o = empty((hq, padded, d)), empty(q.shape)
    kernels.pack_queries[(padded // kernels.TOKENS, hq)](to_device(q), qs, n, hq, padded, softmax_scale(d), d)
    flash_args = (qs, kt, vp, o, n, hq, group, padded)
    if tuned:
        flash_attention_gpu[lambda c: (-(-n // c["M"]), hq)](*flash_args, D=d, CAUSAL=bool(causal))
    else:
        kernels.flash_attention[(-(-n // rows), hq)](*flash_args, d, rows, keys, bool(causal))
    return o.numpy()
