"""Float64 numpy references: the definitions of docs/attention.md, written for
clarity, not speed.  Every kernel in this package is tested against these.

Layout: q [N, Hq, d], k and v [N, Hkv, d]; query head h reads key/value head h // G.
"""
from __future__ import annotations

import math

import numpy as np

from .checks import (check_qkv, check_slopes, check_state, check_token, check_heads,
                     check_infllm_params, float_array, check_positive_int)

F64 = np.float64


def _expand_kv(x: np.ndarray, group: int) -> np.ndarray:
    """[N, Hkv, d] -> [N, Hq, d]: query head h sees key/value head h // group."""
    return np.repeat(x, group, axis=1)


def _masked_softmax_attention(q, k, v, allowed):
    """softmax(s q k^T) v over the keys where allowed[h, t, j]; q/k/v are [.., H, d]
    with one k/v head per q head.  Rows with no allowed key give 0."""
    d = q.shape[-1]
    scores = np.einsum("thd,jhd->htj", q, k) / math.sqrt(d)
    scores = np.where(allowed, scores, -np.inf)
    row_max = scores.max(axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    p = np.exp(scores - row_max)
    denom = p.sum(axis=-1, keepdims=True)
    p = p / np.where(denom > 0, denom, 1.0)
    return np.einsum("htj,jhd->thd", p, v)


# --------------------------------------------------------------------------- dense

def dense_attention_reference(q, k, v, causal=True):
    """o[t, h] = softmax_{j <= t}(s q[t, h] . k[j, h // G]) @ v[., h // G] (all j if not causal)."""
    q, k, v, group = check_qkv(q, k, v, F64)
    n = q.shape[0]
    t, j = np.arange(n)[:, None], np.arange(n)[None, :]
    allowed = (j <= t) if causal else np.ones((n, n), bool)
    return _masked_softmax_attention(q, _expand_kv(k, group), _expand_kv(v, group), allowed[None])


# --------------------------------------------------------------------------- RoPE / RMSNorm

def rope_frequencies(d: int, theta: float = 1e4) -> np.ndarray:
    """inv_freq[i] = theta^(-2i/d), i < d/2 (float64)."""
    if d % 2:
        raise ValueError(f"RoPE needs an even head dimension, got d={d}")
    return theta ** (-np.arange(0, d, 2, dtype=F64) / d)


def rope_tables(n: int, d: int, theta: float = 1e4, offset: int = 0):
    """cos and sin of position * inv_freq, each [n, d/2] float64."""
    angles = np.arange(offset, offset + n, dtype=F64)[:, None] * rope_frequencies(d, theta)[None, :]
    return np.cos(angles), np.sin(angles)


def rope_reference(x, theta=1e4, offset=0):
    """NeoX-style rotary embedding of x [N, H, d] (or [N, d]) at positions offset..offset+N-1:
    with halves x1 = x[..., :d/2], x2 = x[..., d/2:], out = [x1 cos - x2 sin, x2 cos + x1 sin]."""
    x = float_array(x, "x", F64, (2, 3))
    check_positive_int(offset, "offset", 0)
    n, d = x.shape[0], x.shape[-1]
    cos, sin = rope_tables(n, d, theta, offset)
    if x.ndim == 3:
        cos, sin = cos[:, None, :], sin[:, None, :]
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def rmsnorm_reference(x, weight=None, eps=1e-6):
    """x / sqrt(mean(x^2, last axis) + eps) * weight."""
    x = float_array(x, "x", F64)
    if x.ndim == 0:
        raise ValueError("x must have at least one axis")
    out = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    if weight is not None:
        weight = float_array(weight, "weight", F64, 1)
        if weight.shape != x.shape[-1:]:
            raise ValueError(f"weight must have shape ({x.shape[-1]},), got {weight.shape}")
        out = out * weight
    return out


# --------------------------------------------------------------------------- Lightning

def lightning_attention_reference(q, k, v, slopes=None, state=None):
    """The recurrence, token by token, in float64: per query head h with lambda = exp(-slope_h),
    S_t = lambda S_{t-1} + k_t^T v_t and o_t = s q_t S_t.  Returns (o [N, Hq, d], S_{N-1} [Hq, d, d])."""
    q, k, v, group = check_qkv(q, k, v, F64)
    n, hq, d = q.shape
    slopes = check_slopes(slopes, hq)
    s_state = check_state(state, hq, d, F64).copy()
    k, v = _expand_kv(k, group), _expand_kv(v, group)
    decay = np.exp(-slopes)[:, None, None]
    scale = 1.0 / math.sqrt(d)
    o = np.empty((n, hq, d), F64)
    for t in range(n):
        s_state = decay * s_state + k[t][:, :, None] * v[t][:, None, :]
        o[t] = scale * np.einsum("hc,hce->he", q[t], s_state)
    return o, s_state


def lightning_decode_reference(q_t, k_t, v_t, slopes=None, state=None):
    """One recurrent step for one token ([H, d] or [1, H, d]); returns (o_t, new state)."""
    q_t, had_axis = check_token(q_t, "q_t", F64)
    k_t, _ = check_token(k_t, "k_t", F64)
    v_t, _ = check_token(v_t, "v_t", F64)
    o, new_state = lightning_attention_reference(q_t[None], k_t[None], v_t[None], slopes, state)
    return (o if had_axis else o[0]), new_state


def lightning_chunked_numpy(q, k, v, slopes=None, state=None, chunk=64, dtype=np.float32):
    """The chunked algorithm of docs/attention.md in numpy (float32 by default): the numpy
    baseline of the benchmarks, and in float64 a check of the chunk formulas themselves."""
    q, k, v, group = check_qkv(q, k, v, dtype)
    n, hq, d = q.shape
    chunk = check_positive_int(chunk, "chunk")
    slopes = check_slopes(slopes, hq)
    h_state = check_state(state, hq, d, dtype).copy()
    lam = np.exp(-slopes)
    scale = dtype(1.0 / math.sqrt(d))
    # decay powers lam^p for p = 0..chunk, computed in float64 (never lam^(-j)).
    powers = (lam[:, None] ** np.arange(chunk + 1)[None, :]).astype(dtype)      # [H, C+1]
    kh, vh = _expand_kv(k, group).transpose(1, 0, 2), _expand_kv(v, group).transpose(1, 0, 2)
    qh = q.transpose(1, 0, 2)                                                       # [H, N, d]
    o = np.empty((hq, n, d), dtype)
    for c0 in range(0, n, chunk):
        length = min(chunk, n - c0)
        qc, kc, vc = qh[:, c0:c0 + length], kh[:, c0:c0 + length], vh[:, c0:c0 + length]
        i, j = np.arange(length)[:, None], np.arange(length)[None, :]
        decay_mask = np.where(i >= j, powers[:, np.clip(i - j, 0, chunk)], 0).astype(dtype)  # [H, L, L]
        intra = (qc @ kc.transpose(0, 2, 1)) * decay_mask
        inter = powers[:, 1:length + 1, None] * (qc @ h_state)
        o[:, c0:c0 + length] = scale * (intra @ vc + inter)
        k_decayed = powers[:, length - 1::-1][:, :length, None] * kc                 # lam^(L-1-j) k_j
        h_state = powers[:, length, None, None] * h_state + k_decayed.transpose(0, 2, 1) @ vc
    return o.transpose(1, 0, 2), h_state


# --------------------------------------------------------------------------- InfLLM-V2

def compress_keys(k: np.ndarray, length: int, stride: int) -> np.ndarray:
    """Mean of k over every complete window [stride*j, stride*j + length): [n_windows, Hkv, d]."""
    n = k.shape[0]
    count = (n - length) // stride + 1 if n >= length else 0
    if count == 0:
        return np.zeros((0,) + k.shape[1:], k.dtype)
    return np.stack([k[stride * j: stride * j + length].mean(axis=0) for j in range(count)])


def block_windows(block: int, l1: int, s1: int, n_blocks: int, n1: int):
    """For each block b, the range [lo, hi] of first-level compressed keys j whose window
    overlaps the block (B=64, l1=32, s1=16 gives [4b-1, 4b+3]), clipped to 0..n1-1."""
    b = np.arange(n_blocks)
    lo = np.maximum(-((l1 - 1 - block * b) // s1), 0)          # ceil((B*b - l1 + 1) / s1)
    hi = np.minimum((block * b + block - 1) // s1, n1 - 1)
    return lo, hi


def infllmv2_scores_reference(q, k, positions, *, block, l1, s1, l2, s2, init_blocks, local_blocks):
    """Block scores [T, Hkv, n_blocks] (float64) of the query rows q [T, Hq, d] at
    ``positions`` over the keys k [N, Hkv, d]: steps 1-6 of InfLLM-V2's selection."""
    n, hkv, d = k.shape
    group = q.shape[1] // hkv
    scale = 1.0 / math.sqrt(d)
    k1, k2 = compress_keys(k, l1, s1), compress_keys(k, l2, s2)
    n1, n2 = k1.shape[0], k2.shape[0]
    t = np.asarray(positions)[:, None]
    visible1 = s1 * np.arange(n1)[None, :] + l1 - 1 <= t                     # [T, n1]
    visible2 = s2 * np.arange(n2)[None, :] + l2 - 1 <= t                     # [T, n2]
    any_visible2 = visible2.any(axis=1)
    n_blocks = -(-n // block)
    lo, hi = block_windows(block, l1, s1, n_blocks, n1)
    bq = np.asarray(positions) // block
    b = np.arange(n_blocks)[None, :]
    forced = (b < init_blocks) | ((b >= bq[:, None] - local_blocks) & (b <= bq[:, None]))
    scores = np.empty((len(positions), hkv, n_blocks), F64)
    for g in range(hkv):
        s_tj = np.zeros((len(positions), n1), F64)                              # S(t, j)
        for h in range(g * group, (g + 1) * group):
            z2 = np.where(visible2, scale * q[:, h] @ k2[:, g].T, -np.inf)
            m = np.where(any_visible2, z2.max(axis=1, initial=-np.inf), 0.0)
            with np.errstate(divide="ignore"):        # log(0) for rows without a visible K2
                lse = m + np.log(np.exp(z2 - m[:, None]).sum(axis=1))
            z1 = scale * q[:, h] @ k1[:, g].T
            use = visible1 & any_visible2[:, None]
            s_tj += np.where(use, np.exp(np.where(use, z1 - lse[:, None], 0.0)), 0.0)
        for blk in range(n_blocks):
            window = s_tj[:, lo[blk]:hi[blk] + 1]
            scores[:, g, blk] = window.max(axis=1) if window.shape[1] else -np.inf
        scores[:, g] = np.where(forced, np.inf, scores[:, g])
    return scores


def select_top_blocks(scores: np.ndarray, positions, block: int, topk: int) -> np.ndarray:
    """Top-k blocks per row of ``scores`` [T, Hkv, n_blocks] (ties: lower index first),
    blocks after the token's own block dropped; ascending, -1 padded to [T, Hkv, topk]."""
    t_count, hkv, n_blocks = scores.shape
    out = np.full((t_count, hkv, topk), -1, np.int32)
    for i, t in enumerate(positions):
        for g in range(hkv):
            order = np.argsort(-scores[i, g], kind="stable")[:topk]   # stable: lower index wins ties
            chosen = np.sort(order[order <= t // block])
            out[i, g, :len(chosen)] = chosen
    return out


def infllmv2_attend_reference(q, k, v, selected, positions, block):
    """Step 8: softmax attention of each query row over the keys of its selected blocks
    (selected [T, Hkv, topk], -1 padded) with key position <= the row's position."""
    n, hkv, d = k.shape
    group = q.shape[1] // hkv
    positions = np.asarray(positions)
    key_block = np.arange(n) // block
    allowed = np.zeros((hkv, len(positions), n), bool)
    for g in range(hkv):
        for i in range(len(positions)):
            blocks = selected[i, g][selected[i, g] >= 0]
            allowed[g, i] = np.isin(key_block, blocks) & (np.arange(n) <= positions[i])
    allowed = np.repeat(allowed, group, axis=0)                                   # per query head
    return _masked_softmax_attention(q, _expand_kv(k, group), _expand_kv(v, group), allowed)


def _infllm_inputs(q, k, v, params):
    params = check_infllm_params(**params)
    q, k, v, _ = check_qkv(q, k, v, F64)
    return q, k, v, params


def infllmv2_select_reference(q, k, block=64, l1=32, s1=16, l2=128, s2=64, init_blocks=1,
                              local_blocks=32, topk=96):
    """Selected block indices [N, Hkv, topk] per (token, KV head), ascending, -1 padded."""
    q, k, _, p = _infllm_inputs(q, k, k, dict(block=block, l1=l1, s1=s1, l2=l2, s2=s2,
                                              init_blocks=init_blocks, local_blocks=local_blocks,
                                              topk=topk))
    positions = np.arange(q.shape[0])
    scores = infllmv2_scores_reference(q, k, positions, **_score_params(p))
    return select_top_blocks(scores, positions, p["block"], p["topk"])


def infllmv2_attention_reference(q, k, v, block=64, l1=32, s1=16, l2=128, s2=64, init_blocks=1,
                                 local_blocks=32, topk=96):
    """InfLLM-V2 sparse attention prefill (float64): o [N, Hq, d]."""
    q, k, v, p = _infllm_inputs(q, k, v, dict(block=block, l1=l1, s1=s1, l2=l2, s2=s2,
                                              init_blocks=init_blocks, local_blocks=local_blocks,
                                              topk=topk))
    positions = np.arange(q.shape[0])
    scores = infllmv2_scores_reference(q, k, positions, **_score_params(p))
    selected = select_top_blocks(scores, positions, p["block"], p["topk"])
    return infllmv2_attend_reference(q, k, v, selected, positions, p["block"])


def infllmv2_decode_reference(q_t, k_cache, v_cache, block=64, l1=32, s1=16, l2=128, s2=64,
                              init_blocks=1, local_blocks=32, topk=96):
    """One new token at position L-1 ([Hq, d] or [1, Hq, d]) over a cache of L keys."""
    q_t, had_axis = check_token(q_t, "q_t", F64)
    k_cache = float_array(k_cache, "k_cache", F64, 3)
    v_cache = float_array(v_cache, "v_cache", F64, 3)
    if k_cache.shape != v_cache.shape:
        raise ValueError(f"k_cache and v_cache must have the same shape, got {k_cache.shape} "
                         f"and {v_cache.shape}")
    if k_cache.shape[0] == 0:
        raise ValueError("the cache must hold at least one key (the new token's)")
    check_heads(q_t.shape, k_cache.shape)
    p = check_infllm_params(block, l1, s1, l2, s2, init_blocks, local_blocks, topk)
    positions = np.array([k_cache.shape[0] - 1])
    scores = infllmv2_scores_reference(q_t[None], k_cache, positions, **_score_params(p))
    selected = select_top_blocks(scores, positions, p["block"], p["topk"])
    o = infllmv2_attend_reference(q_t[None], k_cache, v_cache, selected, positions, p["block"])
    return o if had_axis else o[0]


def _score_params(p):
    return {name: p[name] for name in ("block", "l1", "s1", "l2", "s2", "init_blocks", "local_blocks")}


def infllmv2_flops(n, hq, d, *, block=64, l1=32, s1=16, l2=128, s2=64, selected=None):
    """Useful FLOPs of docs/attention.md: stage 1 2*d*Hq*sum_t(|visible K1| + |visible K2|),
    stage 2 4*d*Hq*sum_t(|attended keys of t|) given the selection [N, Hkv, topk]."""
    t = np.arange(n)
    vis1 = np.clip((t - l1 + 1) // s1 + 1, 0, None).sum()
    vis2 = np.clip((t - l2 + 1) // s2 + 1, 0, None).sum()
    stage1 = 2 * d * hq * int(vis1 + vis2)
    if selected is None:
        return stage1, 0
    attended = 0
    for g in range(selected.shape[1]):
        blocks = selected[:, g, :]
        starts = blocks * block
        keys = np.where(blocks >= 0, np.clip(t[:, None] - starts + 1, 0, block), 0)
        attended += int(keys.sum())
    return stage1, 4 * d * (hq // selected.shape[1]) * attended
