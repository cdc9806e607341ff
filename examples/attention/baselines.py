"""Host baselines for the benchmarks: blocked numpy versions of dense and InfLLM-V2
attention (float32: the "numpy" column; float64: the reference at sizes where the
simple references of ``reference.py`` would need too much memory), Lightning's chunked
numpy version, and torch's scaled_dot_product_attention when torch imports."""
from __future__ import annotations

import math

import numpy as np

from .checks import check_qkv, check_infllm_params
from .reference import lightning_chunked_numpy, block_windows  # noqa: F401  (re-exported)


def dense_attention_numpy(q, k, v, causal=True, dtype=np.float32, rows=512):
    """Causal softmax attention, ``rows`` query rows at a time per head (BLAS matmuls)."""
    q, k, v, group = check_qkv(q, k, v, dtype)
    n, hq, d = q.shape
    scale = dtype(1.0 / math.sqrt(d))
    o = np.empty_like(q)
    for h in range(hq):
        kh, vh = k[:, h // group], v[:, h // group]
        for r0 in range(0, n, rows):
            r1 = min(n, r0 + rows)
            end = r1 if causal else n
            s = (q[r0:r1, h] @ kh[:end].T) * scale
            if causal:
                s[np.arange(r1 - r0)[:, None] + r0 < np.arange(end)[None, :]] = -np.inf
            s = np.exp(s - s.max(axis=1, keepdims=True))
            o[r0:r1, h] = (s @ vh[:end]) / s.sum(axis=1, keepdims=True)
    return o


def _compress(k, length, stride):
    n = k.shape[0]
    if n < length:
        return np.zeros((0,) + k.shape[1:], k.dtype)
    windows = np.lib.stride_tricks.sliding_window_view(k, length, axis=0)[::stride]   # [n_w, hkv, d, len]
    return windows.mean(axis=-1)


def infllmv2_numpy(q, k, v, block=64, l1=32, s1=16, l2=128, s2=64, init_blocks=1, local_blocks=32, topk=96,
                   dtype=np.float32, tile=64):
    """InfLLM-V2 prefill in numpy, ``tile`` tokens at a time: the same steps as the reference
    (compressed keys, normaliser, grouped scores, pooling, forced blocks, stable top-k)."""
    p = check_infllm_params(block, l1, s1, l2, s2, init_blocks, local_blocks, topk)
    q, k, v, group = check_qkv(q, k, v, dtype)
    n, hq, d = q.shape
    hkv = k.shape[1]
    scale = 1.0 / math.sqrt(d)
    k1, k2 = _compress(k, l1, s1), _compress(k, l2, s2)
    n1, n2 = k1.shape[0], k2.shape[0]
    n_blocks = -(-n // block)
    lo, hi = block_windows(block, l1, s1, n_blocks, n1)
    o = np.empty_like(q)
    for t0 in range(0, n, tile):
        t = np.arange(t0, min(n, t0 + tile))
        bq = t // block
        b = np.arange(n_blocks)[None, :]
        forced = (b < init_blocks) | ((b >= bq[:, None] - local_blocks) & (b <= bq[:, None]))
        visible1 = s1 * np.arange(n1)[None, :] + l1 - 1 <= t[:, None]
        visible2 = s2 * np.arange(n2)[None, :] + l2 - 1 <= t[:, None]
        any2 = visible2.any(axis=1)
        for g in range(hkv):
            qg = q[t, g * group:(g + 1) * group]                                      # [T, G, d]
            z2 = np.where(visible2[:, None, :], scale * qg @ k2[:, g].T, -np.inf)    # [T, G, n2]
            m = np.where(any2[:, None], z2.max(axis=2, initial=-np.inf), 0)
            with np.errstate(divide="ignore"):
                lse = m + np.log(np.exp(z2 - m[..., None]).sum(axis=2))
            use = visible1 & any2[:, None]
            z1 = np.where(use[:, None, :], scale * qg @ k1[:, g].T - lse[..., None], -np.inf)
            s_tj = np.where(use, np.exp(z1).sum(axis=1), 0)                            # [T, n1]
            padded = np.concatenate([s_tj, np.full((len(t), 1), -np.inf, s_tj.dtype)], axis=1)
            score = np.full((len(t), n_blocks), -np.inf)
            for blk in range(n_blocks):                                                # pool the windows
                if lo[blk] <= hi[blk]:
                    score[:, blk] = padded[:, lo[blk]:hi[blk] + 1].max(axis=1)
            score = np.where(forced, np.inf, score)
            order = np.argsort(-score, axis=1, kind="stable")[:, :topk]                # [T, topk]
            keep = order <= bq[:, None]
            keys = order[:, :, None] * block + np.arange(block)[None, None, :]          # [T, topk, B]
            valid = keep[..., None] & (keys <= t[:, None, None])
            keys = np.where(valid, keys, 0).reshape(len(t), -1)
            ks, vs = k[keys, g], v[keys, g]                                           # [T, topk*B, d]
            s = np.einsum("tgd,tjd->tgj", qg, ks) * scale
            s = np.where(valid.reshape(len(t), 1, -1), s, -np.inf)
            s = np.exp(s - s.max(axis=2, keepdims=True))
            o[t, g * group:(g + 1) * group] = np.einsum("tgj,tjd->tgd", s, vs) / s.sum(axis=2, keepdims=True)
    return o


def torch_sdpa():
    """(function(q, k, v) -> o, torch version) or None when torch does not import.
    The function takes our [N, H, d] numpy layout, causal, GQA by repeating K/V heads;
    float32 arrays run in float32, ml_dtypes bfloat16 arrays in torch.bfloat16 (their
    bits move over as uint16, numpy having no bf16 of its own)."""
    try:
        import torch
    except ImportError:
        return None

    def to_torch(x):
        if x.dtype.name == "bfloat16":
            return torch.from_numpy(x.view(np.uint16)).view(torch.bfloat16)
        return torch.from_numpy(x)

    def to_numpy(t, like):
        if t.dtype == torch.bfloat16:
            return t.view(torch.uint16).numpy().view(like.dtype)
        return t.numpy()

    def run(q, k, v):
        group = q.shape[1] // k.shape[1]
        qt = to_torch(q).transpose(0, 1).unsqueeze(0)
        kt = to_torch(k).transpose(0, 1).repeat_interleave(group, 0).unsqueeze(0)
        vt = to_torch(v).transpose(0, 1).repeat_interleave(group, 0).unsqueeze(0)
        with torch.no_grad():
            o = torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=True)
        return to_numpy(o[0].transpose(0, 1).contiguous(), q)

    return run, torch.__version__
