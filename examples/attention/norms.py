"""RoPE (NeoX style) and RMSNorm in cmlang, as SALA's linear layers apply them to q and k."""
from __future__ import annotations

import functools
import math

import numpy as np

import cmlang as cm
import cmlang.runtime as rt
from cmlang.autotuning import tuning_profile

from . import kernels
from .checks import check_positive_int, float_array
from .layout import F32, element_type, empty, host_dtype, output_type, to_device
from .reference import rope_reference, rmsnorm_reference, rope_tables  # noqa: F401


CPU_ROPE_HEADS = 8         # heads per 2-D block of the RoPE kernel on the CPU runtime (at most)

# The RoPE kernel's heads per block on Intel GPUs (each divides 4), chosen per device by
# cm.autotune (ranked by IGC's stats): at d = 128, 8 heads of f32 in registers (4 KiB, twice
# with the rotated copy) spill on both; at most 2 per block fit PVC's and DG2's register
# files in both flavours.
ROPE_GPU_CONFIGS = {
    "pvc": [dict(HB=2), dict(HB=4)],
    "dg2": [dict(HB=2), dict(HB=1)],
    "default": [dict(HB=1)],
}
rope_gpu = cm.autotune(configs=ROPE_GPU_CONFIGS, key=["HEADS", "HALF", "T"])(kernels.rope_kernel)


def rope_launch(heads: int):
    """The RoPE kernel launch taking (x, cos, sin, out, HEADS, HALF, T, O): autotuned on a GPU
    profile where the configs' blocks divide the heads; else HB = gcd(heads, 8) on the CPU
    runtime (its fastest) and gcd(heads, 2) on GPUs."""
    on_gpu = tuning_profile().name != "cpu"
    if on_gpu and heads % 4 == 0:
        return lambda n, x, cos, sin, out, half, t, o: rope_gpu[n](x, cos, sin, out, heads, half, T=t, O=o)
    hb = math.gcd(heads, 2 if on_gpu else CPU_ROPE_HEADS)
    return lambda n, x, cos, sin, out, half, t, o: kernels.rope_kernel[n](x, cos, sin, out, heads, half, hb, t, o)


@functools.lru_cache(maxsize=8)
def _device_tables(n: int, d: int, theta: float, offset: int, device) -> tuple:
    """cos and sin [n, d/2] as float32 device arrays, kept for the next call with the same
    positions (the q and k of a layer, every layer of a stack)."""
    cos, sin = rope_tables(n, d, theta, offset)        # checks that d is even
    return rt.to_device(cos.astype(F32), device), rt.to_device(sin.astype(F32), device)


def rope(x, theta=1e4, offset=0, *, out_dtype=None):
    """Rotary embedding, NeoX halves, of x [N, H, d] (or [N, d]) at positions offset..offset+N-1.
    The cos/sin tables are computed on the host in float64 (angles reach 1e4+ radians, too
    many for float32 arguments), kept on the device for later calls, and applied by the
    kernel in f32.  The result has ``out_dtype`` (default: x's float16/bfloat16, else float32)."""
    t = element_type(x)
    x = float_array(x, "x", host_dtype(t), (2, 3))
    out_type = output_type(out_dtype, t)
    check_positive_int(offset, "offset", 0)
    n, d = x.shape[0], x.shape[-1]
    cos, sin = _device_tables(n, d, float(theta), int(offset), rt.get_device())
    if x.size == 0:
        return x.astype(host_dtype(out_type))
    heads = x.shape[1] if x.ndim == 3 else 1
    out = empty(x.shape, out_type)
    rope_launch(heads)(n, to_device(x), cos, sin, out, d // 2, t, out_type)
    return out.numpy()


def rmsnorm(x, weight=None, eps=1e-6, *, out_dtype=None, rows_per_thread=4):
    """x / sqrt(mean(x^2, last axis) + eps) * weight (weight [d], ones by default), computed
    in f32 (weight in f32); the result has ``out_dtype`` (default: x's float16/bfloat16, else
    float32)."""
    t = element_type(x)
    x = float_array(x, "x", host_dtype(t))
    out_type = output_type(out_dtype, t)
    if x.ndim == 0:
        raise ValueError("x must have at least one axis")
    d = x.shape[-1]
    weight = np.ones(d, F32) if weight is None else float_array(weight, "weight", F32, 1)
    if weight.shape != (d,):
        raise ValueError(f"weight must have shape ({d},), got {weight.shape}")
    if x.size == 0:
        return x.astype(host_dtype(out_type))
    n_rows = x.size // d
    out = empty(x.shape, out_type)
    kernels.rmsnorm_kernel[-(-n_rows // rows_per_thread)](to_device(x), to_device(weight), out, n_rows,
                                                          float(eps), d, rows_per_thread, t, out_type)
    return out.numpy()
