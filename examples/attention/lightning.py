"""Lightning attention (linear attention with per-head decay) in cmlang: chunked prefill
and the one-token recurrent decode step."""
from __future__ import annotations

import math

import numpy as np

import cmlang as cm
from cmlang.autotuning import tuning_profile

from . import kernels
from .checks import check_qkv, check_slopes, check_state, check_token, check_heads, check_positive_int
from .layout import (F32, column_tile, element_type, empty, host_dtype, output_type, pack_kv, packed_type,
                     round_up, to_device)
from .reference import (lightning_attention_reference, lightning_decode_reference,  # noqa: F401
                        lightning_chunked_numpy)


CPU_INTRA_ROWS = 8         # query rows per Q K^T tile of the intra-chunk kernel on the CPU runtime


def scan_tile(d: int, heads: int, chunk: int) -> tuple:
    """(rows, columns) of the scan's output/state tile per dpas: 16 accumulator registers of
    16 lanes (rows x columns = 256), as wide as possible (each a[m, k] broadcast feeds
    columns/16 FMAs: on the CPU runtime 2 x 128 ran the d=128 scan 1.35x faster than 8 x 32)
    while the heads still make 8 CM threads."""
    if d % 16:
        width = d                               # one tile spans the state's columns
    else:
        width = next(w for w in (128, 64, 32, 16) if d % w == 0 and (d // w * heads >= 8 or w == 16))
    return math.gcd(chunk, max(1, 256 // width)), width


# The Lightning kernels' tiles on Intel GPUs, chosen per device by cm.autotune, ranked by
# IGC's stats (0 spill bytes first).  The scan (KS > 0: row tiles and keys in loops; the
# CPU's unrolled rows spill registers there): M rows x NT state columns, KS keys per P V
# dpas.  The intra-chunk kernel: M query rows x NC keys per Q K^T tile, ktw R rows per step.  KS = 16 and
# NT a multiple of the systolic unit's width (16 on PVC, 8 on DG2, whose unit needs simd 8)
# fit its dpas tiles.  Each config needs C % 16 == 0 and D % 64 == 0; other shapes, and the
# CPU, use scan_tile and CPU_INTRA_ROWS.  The first config of each list builds without spills
# on its device for f32 and bf16 in both flavours (d = 64 and 128, chunk 64), so a tuning
# budget that runs out keeps a clean one.
SCAN_CONFIGS = {
    "pvc": [dict(M=8, NT=16, KS=16, grf=256), dict(M=4, NT=16, KS=16, grf=256)],
    "dg2": [dict(M=8, NT=16, KS=16, simd=8), dict(M=4, NT=16, KS=16, simd=8)],
    "default": [dict(M=8, NT=16, KS=16, simd=8)],
}
INTRA_CONFIGS = {
    "pvc": [dict(M=4, NC=0, R=1, grf=256), dict(M=8, NC=0, R=2, grf=256)],
    "dg2": [dict(M=2, NC=32, R=1, simd=8), dict(M=4, NC=16, R=1, simd=8), dict(M=2, NC=16, R=1, simd=8)],
    "default": [dict(M=4, NC=16, R=1, simd=8)],
}
lightning_scan_gpu = cm.autotune(configs=SCAN_CONFIGS, key=["D", "C", "P"])(kernels.lightning_scan)
lightning_intra_gpu = cm.autotune(configs=INTRA_CONFIGS, key=["D", "C", "P"])(kernels.lightning_intra)


def scan_on_gpu_tiles(d: int, chunk: int) -> bool:
    """Whether the Lightning kernels take the GPU configs (a GPU profile and shapes they fit)."""
    return tuning_profile().name != "cpu" and chunk % 16 == 0 and d % 64 == 0


def systolic_form(packed) -> tuple:
    """(KC, B2D) of the GPU configs for packed operands of element type ``packed``: a 16-bit
    type (multiplied by the systolic unit) takes its products in K slices of 16 from
    registers, read by 2-D block loads where the device has them (PVC); f32 streams whole
    products from memory (KC = 0) into FMA loops."""
    if packed == cm.f32:
        return 0, False
    return 16, tuning_profile().block2d is not None


def decay_powers(slopes: np.ndarray, chunk: int) -> np.ndarray:
    """[H, chunk+1] float32: lambda_h^p for p = 0..chunk, from float64 (slope inf -> 0^0 = 1)."""
    lam = np.exp(-np.asarray(slopes, np.float64))
    return np.ascontiguousarray((lam[:, None] ** np.arange(chunk + 1)[None, :]).astype(F32))


def decay_mask(slopes: np.ndarray, chunk: int) -> np.ndarray:
    """[H, chunk, chunk] float32: lambda_h^(i-j) where i >= j, else 0 (never lambda^(-j))."""
    lam = np.exp(-np.asarray(slopes, np.float64))
    i, j = np.arange(chunk)[:, None], np.arange(chunk)[None, :]
    gap = np.where(i >= j, i - j, 0)
    return np.ascontiguousarray(np.where(i >= j, lam[:, None, None] ** gap, 0.0).astype(F32))


def lightning_attention(q, k, v, slopes=None, state=None, chunk=64, *, out_dtype=None):
    """Chunked Lightning attention prefill.  Per query head h (lambda_h = exp(-slopes[h]),
    ALiBi slopes by default): S_t = lambda S_{t-1} + k_t^T v_t, o_t = q_t S_t / sqrt(d),
    starting from ``state`` [Hq, d, d] (zeros by default).  Returns (o [N, Hq, d], S_{N-1}):
    o of ``out_dtype`` (default: the inputs' float16/bfloat16, else float32), the state
    float32.  bf16/f16 inputs are the dpas operands where the device's systolic unit
    multiplies them (packed_type); scores, decays and the state are f32."""
    t = element_type(q, k, v)
    out = output_type(out_dtype, t)
    q, k, v, group = check_qkv(q, k, v, host_dtype(t))
    n, hq, d = q.shape
    chunk = check_positive_int(chunk, "chunk")
    slopes = check_slopes(slopes, hq)
    state = check_state(state, hq, d, F32)
    if n == 0:
        return np.zeros(q.shape, host_dtype(out)), state.copy()
    scan_rows, width = scan_tile(d, hq, chunk)
    gpu_tiles = scan_on_gpu_tiles(d, chunk)
    # bf16/f16 operands go to the systolic unit where the device has one (packed_type) with the
    # GPU tiles; the CPU form's P V product over the rows' key prefix has K = i0 + rows, a
    # multiple of 16 (the unit's) only with rows a multiple of 16, else its operands stay f32
    # (the CPU runtime's choice anyway).
    pt = packed_type(t) if gpu_tiles or scan_rows % 16 == 0 else cm.f32
    n_chunks = -(-n // chunk)
    padded = round_up(n_chunks * chunk, 16)
    qd = to_device(q)
    kt, vp = pack_kv(k, v, padded, t, pt)
    p = empty((hq, n_chunks, chunk, chunk), pt)
    qp, ktw = empty((hq, padded, d), pt), empty((hq, d, padded), pt)
    powers = to_device(decay_powers(slopes, chunk))
    intra_args = (qd, kt, to_device(decay_mask(slopes, chunk)), powers, p, qp, ktw, n, hq, group, padded, n_chunks)
    state_d, o = to_device(state), empty(q.shape, out)
    scan_args = (qp, vp, p, ktw, powers, state_d, o, n, hq, group, padded, n_chunks, 1.0 / math.sqrt(d))
    if gpu_tiles:
        kc, b2d = systolic_form(pt)
        lightning_intra_gpu[(n_chunks, hq)](*intra_args, D=d, C=chunk, KC=kc, B2D=b2d, T=t, P=pt)
        lightning_scan_gpu[lambda c: (d // c["NT"], hq)](*scan_args, D=d, C=chunk, KC=kc, B2D=b2d, P=pt, O=out)
    else:
        kernels.lightning_intra[(n_chunks, hq)](*intra_args, d, chunk, math.gcd(chunk, CPU_INTRA_ROWS), 0, 0,
                                                math.gcd(d, 16), False, t, pt)
        kernels.lightning_scan[(d // width, hq)](*scan_args, d, chunk, scan_rows, width, 0, 0, False, pt, out)
    return o.numpy(), state_d.numpy()


def lightning_decode(q_t, k_t, v_t, slopes=None, state=None, *, out_dtype=None):
    """One recurrent step for one token (q_t [Hq, d] or [1, Hq, d], k_t/v_t [Hkv, d]):
    S = lambda S + k^T v, o = q S / sqrt(d), in f32.  Returns (o_t, new state [Hq, d, d]):
    o_t of ``out_dtype`` (default: the inputs' float16/bfloat16, else float32), the state
    float32."""
    t = element_type(q_t, k_t, v_t)
    out = output_type(out_dtype, t)
    q_t, had_axis = check_token(q_t, "q_t", host_dtype(t))
    k_t, _ = check_token(k_t, "k_t", host_dtype(t))
    v_t, _ = check_token(v_t, "v_t", host_dtype(t))
    if k_t.shape != v_t.shape:
        raise ValueError(f"k_t and v_t must have the same shape, got {k_t.shape} and {v_t.shape}")
    group = check_heads(q_t.shape, k_t.shape)
    hq, d = q_t.shape
    slopes = check_slopes(slopes, hq)
    state_d, o = to_device(check_state(state, hq, d, F32)), empty((hq, d), out)
    width = column_tile(d)
    kernels.lightning_step[(d // width, hq)](to_device(q_t), to_device(k_t), to_device(v_t),
                                             to_device(np.exp(-slopes).astype(F32)), state_d, o, group,
                                             1.0 / math.sqrt(d), d, width, t, out)
    o = o.numpy()
    return (o[None] if had_axis else o), state_d.numpy()
