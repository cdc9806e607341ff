"""Host helpers shared by the cmlang paths: device arrays, padding, packing K and V."""
from __future__ import annotations

import functools
import math

import numpy as np

import cmlang as cm
from cmlang.types import ScalarType
import cmlang.runtime as rt

from . import kernels

F32 = np.float32
LOG2E = 1.4426950408889634

# Element types of the kernels' inputs and outputs.  On the host a bf16 array is a numpy
# array of ml_dtypes' bfloat16 (numpy has no bf16 of its own); on the device its bits.
ELEMENT_TYPES = {"float32": cm.f32, "float16": cm.f16, "bfloat16": cm.bf16}


def host_dtype(t) -> np.dtype:
    """The numpy dtype of cmlang element type t (f32, f16, bf16) on the host."""
    if t == cm.bf16:
        import ml_dtypes          # present wherever a bf16 array came in
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(t.np_dtype)


def element_type(*arrays):
    """The element type the kernels compute on for these inputs: f16 or bf16 when all of
    them have it, f32 otherwise (f64 inputs are rounded to f32, as before)."""
    names = {getattr(getattr(a, "dtype", None), "name", None) for a in arrays}
    if len(names) == 1 and (name := names.pop()) in ("float16", "bfloat16"):
        return ELEMENT_TYPES[name]
    return cm.f32


def output_type(out_dtype, default):
    """The element type of a result: ``out_dtype`` (a numpy dtype, its name, or cm.f32/f16/
    bf16) or, when None, ``default`` (the inputs' type)."""
    if out_dtype is None:
        return default
    if out_dtype in (cm.f32, cm.f16, cm.bf16):
        return out_dtype
    try:
        name = np.dtype(out_dtype).name
    except TypeError:
        name = str(out_dtype)
    if name not in ELEMENT_TYPES:
        raise ValueError(f"out_dtype must be float32, float16 or bfloat16, got {out_dtype!r}")
    return ELEMENT_TYPES[name]


def round_up(x: int, multiple: int) -> int:
    return -(-x // multiple) * multiple


def to_device(x):
    return x if isinstance(x, rt.DeviceArray) else rt.to_device(np.ascontiguousarray(x))


def empty(shape, dtype=F32):
    """A device array; dtype a numpy dtype or a cmlang element type (bf16: ml_dtypes' bfloat16)."""
    return rt.empty(shape, host_dtype(dtype) if isinstance(dtype, ScalarType) else dtype)


def zeros(shape, dtype=F32):
    return rt.zeros(shape, dtype)


def softmax_scale(d: int) -> float:
    """Queries are multiplied by this so that the kernels' exp2 is exp(q.k / sqrt(d))."""
    return LOG2E / math.sqrt(d)


def pack_kv(k, v, padded: int, t=cm.f32, packed=cm.f32):
    """K as kt [Hkv, d, padded] (transposed) and V as vp [Hkv, padded, d], zero past N:
    from element type t (that of k and v) to ``packed``."""
    n, hkv, d = k.shape
    kt, vp = empty((hkv, d, padded), packed), empty((hkv, padded, d), packed)
    assert padded % kernels.TOKENS == 0
    grid = (padded // kernels.TOKENS, hkv)
    kernels.pack_keys[grid](to_device(k), kt, n, hkv, padded, d, t, packed)
    kernels.pack_values[grid](to_device(v), vp, n, hkv, padded, d, t, packed)
    return kt, vp


def systolic_types(profile=None) -> tuple:
    """The input types the systolic unit of ``profile`` (default: the current device's)
    multiplies (none on the CPU)."""
    unit = (profile or current_profile()).systolic
    return unit.types if unit is not None else ()


def packed_type(t, profile=None):
    """The element type of packed operands of a dpas for inputs of type t: t where the
    device's systolic unit multiplies it (PVC, DG2), else f32 (the CPU runtime computes
    a bf16/f16 dpas with f32 FMAs: converting once when packing is 4x faster than in
    every product, measured on the flash kernel)."""
    return t if t.name in systolic_types(profile) else cm.f32


def column_tile(d: int) -> int:
    """Columns of a state/output tile per CM thread: the widest of 64/32/16 dividing d."""
    for width in (64, 32, 16):
        if d % width == 0:
            return width
    return d


def current_profile():
    """The device profile (cmlang.runtime.profiles) to choose tiles and packing for: the
    device kernels launch on, or the one ``cmlang isa`` or the autotuner plans for."""
    from cmlang.autotuning import tuning_profile
    return tuning_profile()


@functools.lru_cache(maxsize=None)
def _at_simd(kernel, simd: int):
    return cm.kernel(kernel.fn, simd=simd, grf=kernel.grf)


def for_systolic_unit(kernel, t, profile=None):
    """``kernel`` at the sub-group size at which the systolic unit of ``profile`` (default:
    the current device's) multiplies element type t (8 on DG2 for f16/bf16), else as
    declared: the same source, one Kernel per simd."""
    profile = profile or current_profile()
    if t.name not in systolic_types(profile) or profile.systolic.exec_size == kernel.simd:
        return kernel
    return _at_simd(kernel, profile.systolic.exec_size)
