"""InfLLM-V2 sparse attention in cmlang: prefill, block selection and decode.

Pipeline (one kernel each; the host only allocates and launches):
  pack_keys/values   K -> kt [Hkv, d, Np] (transposed), V -> vp [Hkv, Np, d]
  compress_keys x2   first- and second-level compressed keys, transposed like kt
  infllm_lse         the approximate normaliser per (token, query head), base 2
  infllm_block_scores  grouped scores S(t, j), pooled to block scores
  infllm_select      top-k blocks (forced init/local blocks, ties to the lower index)
  infllm_attend      block-sparse flash attention of the G heads of a token
"""
from __future__ import annotations

import math

import numpy as np

import cmlang as cm
from cmlang.autotuning import tuning_profile

from . import kernels
from .checks import check_qkv, check_infllm_params, check_token, check_heads, float_array
from .layout import (element_type, empty, for_systolic_unit, host_dtype, output_type, pack_kv, packed_type,
                     round_up, softmax_scale, to_device, zeros)
from .reference import (infllmv2_attention_reference, infllmv2_select_reference,  # noqa: F401
                        infllmv2_decode_reference)

ROWS = 8            # query rows per CM thread in the score kernels
SCORE_TILE = 64     # first-level compressed keys per tile (the N of the score dpas)
LSE_TILE = 16       # second-level compressed keys per tile
SELECT_CHUNK = 16   # blocks compared per step of the top-k search
K_SLICE = 16        # the K of one systolic dpas of 16-bit operands
BLOCK_ROW = 32      # compressed keys padded to rows of >= 64 bytes (2-D block messages' minimum)

# Tiles on Intel GPUs, chosen per device by cm.autotune (ranked by IGC's stats: the first
# config of a list is the one kept when the tuning budget runs out after it, so it is one
# that builds without spills at the workloads' d = 64 and 128; f32 attend on DG2 has none for
# both: GR=4 at 64, GR=2 at 128); the CPU keeps
# ROWS x SCORE_TILE score tiles and attends all G heads of a token per CM thread, with every
# product whole and streamed from memory (KD = VN = d).  DG2 has half PVC's register file: its
# sub-group of 8 lanes halves the registers a tile takes.
# f32 products (FMA code on every device):
SCORE_CONFIGS = {
    "pvc": [dict(M=8, JT=16), dict(M=4, JT=16)],
    "dg2": [dict(M=8, JT=16, simd=8), dict(M=4, JT=16, simd=8)],
    "default": [dict(M=8, JT=16, simd=8)],
}
ATTEND_CONFIGS = {                  # GR query heads of the G of a token per CM thread
    "pvc": [dict(GR=8, KB=16, grf=256), dict(GR=8, KB=64), dict(GR=4, KB=64)],
    "dg2": [dict(GR=4, KB=64, simd=8), dict(GR=8, KB=64, simd=8), dict(GR=2, KB=64, simd=8)],
    "default": [dict(GR=4, KB=64, simd=8)],
}
LSE_CONFIGS = {
    "pvc": [dict(M=ROWS, JT=LSE_TILE)],
    "dg2": [dict(M=ROWS, JT=LSE_TILE, simd=8), dict(M=ROWS // 2, JT=LSE_TILE)],
    "default": [dict(M=ROWS // 2, JT=LSE_TILE)],
}
# 16-bit operands on the systolic unit (bf16/f16 on PVC and DG2; d = 128 in the model): it
# reads its operands from registers, so the products run in KD = 16 deep slices of d (the
# query rows of a tile in registers, one 16-row slice of the key tile at a time) and P V in
# VN-column tiles of V; chosen for 0 spill bytes in both flavours at d = 128
# (`cmlang isa attn-infllmv2-bf16 --device pvc,dg2`).  On PVC the K/V tiles come by 2-D block
# loads (B2D; the launch proves their surfaces, so the builds have the block messages alone):
# fewer instructions than row loads, and IGC ranks them first.  DG2 (simd 8, 4 KiB of
# registers a thread, no 2-D block messages) takes 2 query rows and 1 head per CM thread.
SCORE_LOWP_CONFIGS = {
    "pvc": [dict(M=8, JT=16, B2D=True, grf=256), dict(M=8, JT=16, B2D=False, grf=256)],
    "dg2": [dict(M=2, JT=16, B2D=False, simd=8)],
    "default": [dict(M=2, JT=16, B2D=False, simd=8)],
}
ATTEND_LOWP_CONFIGS = {
    "pvc": [dict(GR=8, KB=16, VN=128, B2D=True, grf=256), dict(GR=8, KB=16, VN=32, B2D=True, grf=256),
            dict(GR=8, KB=32, VN=32, B2D=True, grf=256), dict(GR=8, KB=16, VN=128, B2D=False, grf=256)],
    "dg2": [dict(GR=1, KB=16, VN=16, B2D=False, simd=8), dict(GR=2, KB=16, VN=16, B2D=False, simd=8)],
    "default": [dict(GR=1, KB=16, VN=16, B2D=False, simd=8)],
}
LSE_LOWP_CONFIGS = {
    "pvc": [dict(M=8, JT=LSE_TILE, B2D=True, grf=256), dict(M=8, JT=LSE_TILE, B2D=False, grf=256)],
    "dg2": [dict(M=4, JT=LSE_TILE, B2D=False, simd=8)],
    "default": [dict(M=4, JT=LSE_TILE, B2D=False, simd=8)],
}
# The CPU runtime's attend tile (as dense.CPU_TILE): P staged in SLM, so that P V, in
# 32-column tiles of V over 32 keys, reads both operands from memory and keeps 16 accumulator
# registers; Q K^T over 32 keys keeps 16 too (with 64 keys and all of d per P V product the
# accumulators of 8 heads x 128 columns were 64 registers, most of them spilled).
CPU_ATTEND = dict(KB=32, VN=32)


lse_gpu = cm.autotune(configs=LSE_CONFIGS, key=["D"])(kernels.infllm_lse)
block_scores_gpu = cm.autotune(configs=SCORE_CONFIGS, key=["D", "R", "O"])(kernels.infllm_block_scores)
attend_gpu = cm.autotune(configs=ATTEND_CONFIGS, key=["D", "G"])(kernels.infllm_attend)
lse_lowp_gpu = cm.autotune(configs=LSE_LOWP_CONFIGS, key=["D"])(kernels.infllm_lse)
block_scores_lowp_gpu = cm.autotune(configs=SCORE_LOWP_CONFIGS, key=["D", "R", "O"])(kernels.infllm_block_scores)
attend_lowp_gpu = cm.autotune(configs=ATTEND_LOWP_CONFIGS, key=["D", "G"])(kernels.infllm_attend)


def _products(d: int, pt) -> dict:
    """The constexprs of the products on Intel GPUs: for 16-bit operands on the systolic unit
    KD = 16 deep slices; f32 whole products (KD = d), as on the CPU."""
    return dict(KD=K_SLICE if pt.bits == 16 and d % K_SLICE == 0 else d)


def _on_gpu():
    return tuning_profile().name != "cpu"


def geometry(p: dict) -> tuple[int, int]:
    """(R, O): block = R * s1 and l1 = (O + 1) * s1 with O <= R, so that block b's windows
    are its own R plus the last O of block b-1 (the model's 64/32/16 gives R=4, O=1)."""
    block, l1, s1 = p["block"], p["l1"], p["s1"]
    if block % s1 or l1 % s1 or SCORE_TILE % (block // s1) or block // s1 > SCORE_TILE // 2 \
            or l1 // s1 - 1 > block // s1:
        raise ValueError(
            f"the cmlang InfLLM-V2 kernels need block = R*s1 with R dividing {SCORE_TILE // 2} and "
            f"l1 = m*s1 with 1 <= m <= R+1; got block={block}, l1={l1}, s1={s1} "
            "(the reference functions accept any geometry)")
    return block // s1, l1 // s1 - 1


def _windows(n, length, stride):
    return (n - length) // stride + 1 if n >= length else 0


def _compressed(kd, n, hkv, d, length, stride, padded, t, pt):
    """Transposed compressed keys [Hkv, d, padded] of element type pt, zero past the last
    complete window."""
    out = zeros((hkv, d, padded), host_dtype(pt))
    count = _windows(n, length, stride)
    if count:
        kernels.compress_keys[(count, hkv)](kd, out, hkv, length, stride, padded, d, t, pt)
    return out, count


def _select_and_attend(q, k, v, pos0, p, want_output=True, out=cm.f32):
    """Selection (and attention) for the query rows q [rows, Hq, d] at positions pos0..
    over the keys k, v [N, Hkv, d] (all of one element type t: f32, f16 or bf16; the
    products' operands are packed to packed_type(t), scores and softmax are f32).
    Returns (o of element type ``out`` or None, selected [rows, Hkv, topk])."""
    t = element_type(q, k, v)
    pt = packed_type(t)
    rows, hq, d = q.shape
    n, hkv = k.shape[0], k.shape[1]
    group = hq // hkv
    r, o_tail = geometry(p)
    block = p["block"]
    keys = math.gcd(block, 64)
    qscale = softmax_scale(d)
    rows_padded = round_up(rows, ROWS)
    if rows_padded != rows:        # the score kernel reads whole tiles of query rows
        q = np.concatenate([q, np.zeros((rows_padded - rows, hq, d), q.dtype)])
    qd, kd = to_device(q), to_device(k)
    padded = round_up(n, math.lcm(block, keys, 16))        # whole blocks of keys
    kt, vp = pack_kv(kd, to_device(v), padded, t, pt)
    n_blocks = -(-n // block)
    # The score kernels run to the last (padding) row of their tile: cover its windows.
    last = pos0 + rows_padded - 1
    padded1 = round_up(r * (last // block + 1), SCORE_TILE)
    k1t, n1 = _compressed(kd, n, hkv, d, p["l1"], p["s1"], padded1, t, pt)
    padded2 = round_up(max((last - p["l2"] + 1) // p["s2"] + 1, 1), BLOCK_ROW)
    k2t, n2 = _compressed(kd, n, hkv, d, p["l2"], p["s2"], padded2, t, pt)
    lse = empty((hq, rows_padded))
    lse_args = (qd, k2t, lse, rows, pos0, hq, group, n2, padded2, rows_padded, p["l2"], p["s2"], qscale)
    lowp = pt.bits == 16
    if _on_gpu():
        (lse_lowp_gpu if lowp else lse_gpu)[lambda c: (rows_padded // c["M"], hq)](
            *lse_args, D=d, T=t, P=pt, **_products(d, pt), **({} if lowp else dict(B2D=False)))
    else:
        for_systolic_unit(kernels.infllm_lse, pt)[(rows_padded // ROWS, hq)](*lse_args, d, ROWS, LSE_TILE, d, False,
                                                                               t, pt)
    score_pitch = round_up(padded1 // r, SELECT_CHUNK)
    scores = empty((hkv, rows_padded, score_pitch))
    score_args = (qd, k1t, lse, scores, rows, pos0, hq, group, n1, padded1, rows_padded, score_pitch,
                  rows_padded, block, p["l1"], p["s1"], qscale)
    if _on_gpu() and r <= 8:      # the GPU tiles hold at least two blocks' windows (JT = 16)
        (block_scores_lowp_gpu if lowp else block_scores_gpu)[lambda c: (rows_padded // c["M"], hkv)](
            *score_args, D=d, R=r, O=o_tail, T=t, P=pt, **_products(d, pt), **({} if lowp else dict(B2D=False)))
    else:
        for_systolic_unit(kernels.infllm_block_scores, pt)[(rows_padded // ROWS, hkv)](
            *score_args, d, ROWS, SCORE_TILE, r, o_tail, d, False, t, pt)
    selected = empty((rows, hkv, p["topk"]), np.int32)
    kernels.infllm_select[(rows, hkv)](scores, selected, pos0, hkv, rows_padded, score_pitch, n_blocks, block,
                                       p["init_blocks"], p["local_blocks"], p["topk"], SELECT_CHUNK)
    if not want_output:
        return None, selected.numpy()
    o = empty((rows, hq, d), out)
    attend_args = (qd, kt, vp, selected, o, pos0, hq, hkv, padded, block, p["topk"], qscale)
    if _on_gpu() and group % 8 == 0 and block % 64 == 0:
        if lowp:
            attend_lowp_gpu[lambda c: (rows, hkv * (group // c["GR"]))](*attend_args, D=d, G=group, STAGE_P=False,
                                                                          T=t, P=pt, OT=out, **_products(d, pt))
        else:
            attend_gpu[lambda c: (rows, hkv * (group // c["GR"]))](*attend_args, D=d, G=group, T=t, P=pt, OT=out,
                                                                     VN=d, B2D=False, STAGE_P=False,
                                                                     **_products(d, pt))
    else:
        cpu = not _on_gpu()
        tile_keys = math.gcd(keys, CPU_ATTEND["KB"]) if cpu else keys
        columns = CPU_ATTEND["VN"] if cpu and d % CPU_ATTEND["VN"] == 0 else d
        for_systolic_unit(kernels.infllm_attend, pt)[(rows, hkv)](*attend_args, d, group, tile_keys, group, d,
                                                                  columns, False, cpu, t, pt, out)
    return o.numpy(), selected


def _params(block, l1, s1, l2, s2, init_blocks, local_blocks, topk):
    p = check_infllm_params(block, l1, s1, l2, s2, init_blocks, local_blocks, topk)
    geometry(p)
    return p


def infllmv2_attention(q, k, v, block=64, l1=32, s1=16, l2=128, s2=64, init_blocks=1, local_blocks=32,
                       topk=96, *, out_dtype=None):
    """InfLLM-V2 sparse attention prefill: each token attends (causally) to the top-k key
    blocks chosen by compressed-key scores shared by its KV head's G query heads.
    q [N, Hq, d], k and v [N, Hkv, d]; returns [N, Hq, d] of ``out_dtype`` (default: the
    inputs' float16/bfloat16, else float32)."""
    p = _params(block, l1, s1, l2, s2, init_blocks, local_blocks, topk)
    t = element_type(q, k, v)
    out = output_type(out_dtype, t)
    q, k, v, _ = check_qkv(q, k, v, host_dtype(t))
    if q.shape[0] == 0:
        return np.zeros(q.shape, host_dtype(out))
    return _select_and_attend(q, k, v, 0, p, out=out)[0]


def infllmv2_select(q, k, block=64, l1=32, s1=16, l2=128, s2=64, init_blocks=1, local_blocks=32, topk=96):
    """The selected block indices [N, Hkv, topk] int32 per (token, KV head), ascending, -1 padded."""
    p = _params(block, l1, s1, l2, s2, init_blocks, local_blocks, topk)
    t = element_type(q, k)
    q, k, _, _ = check_qkv(q, k, k, host_dtype(t))
    if q.shape[0] == 0:
        return np.zeros((0, k.shape[1], p["topk"]), np.int32)
    selected = _select_and_attend(q, k, k, 0, p, want_output=False)[1]
    return sort_selection(selected)


def sort_selection(selected: np.ndarray) -> np.ndarray:
    """Ascending block indices with the -1 padding last (the kernels write pick order)."""
    big = np.iinfo(np.int32).max
    ordered = np.sort(np.where(selected < 0, big, selected), axis=-1)
    return np.where(ordered == big, -1, ordered).astype(np.int32)


def infllmv2_decode(q_t, k_cache, v_cache, block=64, l1=32, s1=16, l2=128, s2=64, init_blocks=1,
                    local_blocks=32, topk=96, *, out_dtype=None):
    """One new token at position L-1 (q_t [Hq, d] or [1, Hq, d]) over a cache of L keys
    (k_cache, v_cache [L, Hkv, d], the new token's key included): equals the last row of a
    prefill of length L.  The result has ``out_dtype`` (default: the inputs' float16/
    bfloat16, else float32)."""
    p = _params(block, l1, s1, l2, s2, init_blocks, local_blocks, topk)
    t = element_type(q_t, k_cache, v_cache)
    out = output_type(out_dtype, t)
    q_t, had_axis = check_token(q_t, "q_t", host_dtype(t))
    k_cache = float_array(k_cache, "k_cache", host_dtype(t), 3)
    v_cache = float_array(v_cache, "v_cache", host_dtype(t), 3)
    if k_cache.shape != v_cache.shape:
        raise ValueError(f"k_cache and v_cache must have the same shape, got {k_cache.shape} and "
                         f"{v_cache.shape}")
    if k_cache.shape[0] == 0:
        raise ValueError("the cache must hold at least one key (the new token's)")
    check_heads(q_t.shape, k_cache.shape)
    o, _ = _select_and_attend(q_t[None], k_cache, v_cache, k_cache.shape[0] - 1, p, out=out)
    return o if had_axis else o[0]
