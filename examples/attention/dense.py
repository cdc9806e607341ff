"""Dense causal flash attention in cmlang (the full-attention baseline)."""
from __future__ import annotations

import math

import numpy as np

import cmlang as cm

from . import kernels
from .checks import check_qkv, check_positive_int
from .layout import (current_profile, element_type, empty, for_systolic_unit, host_dtype, output_type, pack_kv,
                     packed_type, round_up, softmax_scale, systolic_types, to_device)
from .reference import dense_attention_reference  # noqa: F401  (beside the kernel, as documented)


# The flash kernel's tile per device profile where its systolic unit multiplies the input
# type (bf16/f16 on PVC and DG2): query rows M, keys KB, the d-slice KD of Q K^T and the
# V columns VN of P V per dpas; chosen so that IGC builds the kernel with 0 spill bytes at
# d = 128 (`cmlang isa attn-dense-bf16 --device pvc,dg2`).  Elsewhere (the CPU runtime, f32):
# M = 4, KB = 64 and whole-d products, streamed from memory (see the README).  ROWS_VN: the V
# columns where V comes by rows, not 2-D block loads (PVC with block_loads=False): rows of 64
# bf16, each one sub-group block read of 4 slots, spill 1,536 bytes in SIMT; 32 none.
SYSTOLIC_TILES = {"pvc": dict(M=4, KB=32, KD=16, VN=64, ROWS_VN=32), "dg2": dict(M=2, KB=16, KD=16, VN=16)}


# Where the device has 2-D block messages (PVC), the flash kernel can read K^T and V in
# slices of KD rows of d and VN columns of V by 2-D block loads (BLOCK2D), each slice the b
# of a dpas from registers: F32_BLOCK_SLICES for f32 (the bf16/f16 ones are SYSTOLIC_TILES').
# Elsewhere (DG2, without block messages; the CPU runtime) the slices are rows read by
# cm.load, and f32 products run over all of d, streamed from memory.
F32_BLOCK_SLICES = dict(KD=16, VN=64)
# Whether dense_attention takes those block loads (on PVC): yes.  IGC builds them as block
# messages with 0 spill in both flavours (bf16, d = 128: 32 load_block2d in SIMT, 16 in
# spirv-vc, 32 dpas; tests/test_dense_isa.py); False: the rows of DG2 on PVC as well.
BLOCK_LOADS = True


# For f32 inputs on Intel GPUs the tile (M rows, KB keys; each divides 64) is chosen per
# device by cm.autotune, ranked by IGC's stats: on PVC 8 x 16 with grf=256 builds without
# spills in both flavours (first: the ranking's time budget may end after one config, and
# 4 x 64 with block loads takes long to build and spills), DG2 runs at simd 8.
FLASH_F32_GPU_CONFIGS = {
    "pvc": [dict(M=8, KB=16, grf=256), dict(M=4, KB=64)],
    "dg2": [dict(M=4, KB=64, simd=8), dict(M=8, KB=16, simd=8)],
    "default": [dict(M=4, KB=64, simd=8)],
}
flash_attention_f32_gpu = cm.autotune(configs=FLASH_F32_GPU_CONFIGS, key=["D", "CAUSAL"])(
    kernels.flash_attention)


# The CPU runtime's tile (f32 products as FMA loops streaming both operands from memory):
# 8 query rows, 32 keys, Q K^T over all of d, and P staged in SLM so that P V, in 32-column
# tiles of V, reads it from memory too (STAGE_P).  Each product's loop then keeps its 16
# accumulator registers of AVX-512's 32 and nothing else: with 4 x 64 and P in registers the
# P V loop spilled half of a 4 x 128 accumulator and picked P's elements through the stack
# (the runtime's assembly, CL_CONFIG_DUMP_ASM); N=4096, d=128: 185 against 143 GFLOP/s.
CPU_TILE = dict(M=8, KB=32, VN=32, STAGE_P=True)


def tuned_on_gpu(t, rows, keys, profile=None) -> bool:
    """Whether dense_attention lets cm.autotune pick the f32 tile: on a GPU profile whose
    systolic unit does not multiply t, when the caller gave no tile."""
    profile = profile or current_profile()
    return (rows is None and keys is None and profile.name != "cpu"
            and t.name not in systolic_types(profile))


def _systolic_tile(d: int, t, profile):
    """SYSTOLIC_TILES' entry where the systolic unit of ``profile`` multiplies t, else None."""
    if t.name in systolic_types(profile) and d % 16 == 0:
        return SYSTOLIC_TILES.get(profile.name)
    return None


def operand_slices(d: int, t, profile=None, block_loads=None) -> dict:
    """KD, VN and BLOCK2D of the flash kernel for head dim d and packed element type t on
    ``profile`` (default: the current device's): with ``block_loads`` (default BLOCK_LOADS)
    16-row slices of K^T and V by 2-D block loads where the device has block messages; the
    systolic unit's slices by rows where it has that unit; else whole-d products of rows
    streamed from memory."""
    profile = profile or current_profile()
    block_loads = BLOCK_LOADS if block_loads is None else block_loads
    block2d = block_loads and profile.block2d is not None and d % 16 == 0
    slices = _systolic_tile(d, t, profile) or (F32_BLOCK_SLICES if block2d else None)
    if slices is None:
        return dict(KD=d, VN=d, BLOCK2D=False)
    vn = slices["VN"] if block2d else slices.get("ROWS_VN", slices["VN"])
    return dict(KD=slices["KD"], VN=math.gcd(vn, d), BLOCK2D=block2d)


def flash_tile(d: int, t, rows=None, keys=None, profile=None, block_loads=None) -> dict:
    """The flash kernel's tile constexprs (M, KB and operand_slices') for head dim d and
    packed element type t on ``profile`` (default: the current device's; rows/keys: the
    caller's M and KB instead)."""
    profile = profile or current_profile()
    systolic = _systolic_tile(d, t, profile)
    if systolic:
        tile = dict(M=systolic["M"], KB=systolic["KB"], **operand_slices(d, t, profile, block_loads), STAGE_P=False)
    elif profile.name == "cpu":
        vn = CPU_TILE["VN"] if d % CPU_TILE["VN"] == 0 else d
        tile = dict(M=CPU_TILE["M"], KB=CPU_TILE["KB"], KD=d, VN=vn, BLOCK2D=False, STAGE_P=CPU_TILE["STAGE_P"])
    else:
        tile = dict(M=4, KB=64, **operand_slices(d, t, profile, block_loads), STAGE_P=False)
    if rows is not None:
        tile["M"] = check_positive_int(rows, "rows")
    if keys is not None:
        tile["KB"] = check_positive_int(keys, "keys")
    return tile


def dense_attention(q, k, v, causal=True, *, out_dtype=None, rows=None, keys=None):
    """o[t, h] = softmax_{j <= t}(q[t, h] . k[j, h // G] / sqrt(d)) @ v[., h // G]  (all j
    when not causal).  q [N, Hq, d], k and v [N, Hkv, d]; returns [N, Hq, d] of ``out_dtype``
    (default: the inputs' float16/bfloat16, else float32).  bf16/f16 inputs stay bf16/f16 in
    the packed Q, K, V (the dpas inputs) where the device's systolic unit multiplies them,
    f32 elsewhere (packed_type); softmax and accumulation are f32.
    ``rows`` query rows and ``keys`` keys make one tile of a CM thread (default: flash_tile)."""
    t = element_type(q, k, v)
    q, k, v, group = check_qkv(q, k, v, host_dtype(t))
    out = output_type(out_dtype, t)
    n, hq, d = q.shape
    p = packed_type(t)
    tuned = tuned_on_gpu(p, rows, keys)
    tile = flash_tile(d, p, rows, keys)
    rows, keys = tile["M"], tile["KB"]
    if n == 0:
        return np.zeros(q.shape, host_dtype(out))
    pad_rows, pad_keys = (64, 64) if tuned else (tile["M"], tile["KB"])   # a tuned tile's M and KB divide 64
    padded = round_up(round_up(round_up(n, pad_rows), pad_keys), 16)     # causal tiles run to the row tile's end
    kt, vp = pack_kv(k, v, padded, t, p)
    qs, o = empty((hq, padded, d), p), empty(q.shape, out)
    kernels.pack_queries[(padded // kernels.TOKENS, hq)](to_device(q), qs, n, hq, padded, softmax_scale(d), d, t, p)
    flash_args = (qs, kt, vp, o, n, hq, group, padded)
    if tuned:
        flash_attention_f32_gpu[lambda c: (-(-n // c["M"]), hq)](
            *flash_args, D=d, KD=tile["KD"], VN=tile["VN"], CAUSAL=bool(causal), BLOCK2D=tile["BLOCK2D"],
            STAGE_P=tile["STAGE_P"], T=p, O=out)
    else:
        flash = for_systolic_unit(kernels.flash_attention, p)
        flash[(-(-n // rows), hq)](*flash_args, d, rows, keys, tile["KD"], tile["VN"], bool(causal),
                                   tile["BLOCK2D"], tile["STAGE_P"], p, out)
    return o.numpy()


def flash_specialization(d: int, t, causal=True, profile=None, out=None, block_loads=None):
    """(kernel, constexprs) of the flash kernel that dense_attention launches for head dim
    d and inputs of type t on ``profile`` (a name or profile; default: the current
    device's): what `cmlang isa` and the register-file tests build (``block_loads``: as
    operand_slices)."""
    from cmlang.runtime.profiles import get_profile
    profile = get_profile(profile) if profile is not None else current_profile()
    p = packed_type(t, profile)
    tile = flash_tile(d, p, profile=profile, block_loads=block_loads)
    return for_systolic_unit(kernels.flash_attention, p, profile), dict(
        D=d, **tile, CAUSAL=bool(causal), T=p, O=out or t)
