"""The SIMT OpenCL C versions of every kernel, run through pyopencl on cmlang's
current device (the same device and queue the cmlang kernels use).

Same public signatures as the cmlang versions (numpy in, float32 numpy out); the
benchmarks compare the two.  The OpenCL C source is in ``simt_kernels.py``.
"""
from __future__ import annotations

import math

import numpy as np

from . import simt_kernels
from .checks import (check_qkv, check_slopes, check_state, check_token, check_heads,
                     check_infllm_params, check_positive_int, float_array)
from .reference import rope_tables

F32 = np.float32
_programs: dict = {}


def _device():
    import cmlang.runtime as rt   # registers the Intel OpenCL CPU runtime before pyopencl loads
    return rt.get_device()


class _Program:
    """A built program; attribute access gives its kernels, each made once."""

    def __init__(self, program):
        self._program, self._kernels = program, {}

    def __getattr__(self, name):
        import pyopencl as cl
        kernel = self._kernels.get(name)
        if kernel is None:
            kernel = self._kernels[name] = cl.Kernel(self._program, name)
        return kernel


def _program(source: str, **defines) -> _Program:
    """Build (once per device and defines) and return the program."""
    import warnings
    import pyopencl as cl
    dev = _device()
    key = (id(dev), source, tuple(sorted(defines.items())))
    prog = _programs.get(key)
    if prog is None:
        options = [f"-D{name}={value}" for name, value in sorted(defines.items())] + ["-cl-std=CL2.0"]
        with warnings.catch_warnings():   # the driver's build log is informational
            warnings.simplefilter("ignore", cl.CompilerWarning)
            prog = _programs[key] = _Program(cl.Program(dev.context, source).build(options=options))
    return prog


class _Buffers:
    """Device buffers for one call: uploads, outputs, and the copy back.  Buffers come
    from the cmlang device's allocator (its memory pool, as cmlang's arrays do: a fresh
    buffer pays a page fault per 4 KiB on first touch), and launches are reported to
    ``cmlang.runtime.profile``."""

    def __init__(self):
        self.dev = _device()
        self.queue = self.dev.queue

    def upload(self, array):
        return self.dev.upload(np.ascontiguousarray(array))

    def empty(self, shape, dtype=F32):
        return self.dev.alloc(int(np.prod(shape)) * np.dtype(dtype).itemsize)

    def run(self, kernel, global_size, local_size, *args):
        from cmlang.runtime import profiling
        event = kernel(self.queue, global_size, local_size, *args)
        if profiling.recording():
            profiling.record("simt." + kernel.function_name, event)

    def read(self, buffer, shape, dtype=F32):
        out = np.empty(shape, dtype)
        self.dev.copy_to_host(out, buffer)
        return out


def _round_up(x, m):
    return -(-x // m) * m


# --------------------------------------------------------------------------- dense

def dense_attention(q, k, v, causal=True, rows_per_group=32, keys_per_tile=32):
    q, k, v, _ = check_qkv(q, k, v, F32)
    n, hq, d = q.shape
    hkv = k.shape[1]
    if n == 0:
        return np.zeros_like(q)
    prog = _program(simt_kernels.DENSE, D=d, WG=rows_per_group, TK=keys_per_tile)
    io = _Buffers()
    o = io.empty(q.shape)
    io.run(prog.dense_attention, (_round_up(n, rows_per_group), hq), (rows_per_group, 1),
           io.upload(q), io.upload(k), io.upload(v), o, np.int32(n), np.int32(hq), np.int32(hkv),
           np.int32(bool(causal)), F32(1 / math.sqrt(d)))
    return io.read(o, q.shape)


# --------------------------------------------------------------------------- Lightning

def decay_powers(slopes: np.ndarray, chunk: int) -> np.ndarray:
    """[H, chunk+1] float32 table of lambda_h^p, p = 0..chunk, from float64 (exp(-inf) = 0)."""
    lam = np.exp(-np.asarray(slopes, np.float64))
    return np.ascontiguousarray((lam[:, None] ** np.arange(chunk + 1)[None, :]).astype(F32))


def lightning_attention(q, k, v, slopes=None, state=None, chunk=64):
    q, k, v, _ = check_qkv(q, k, v, F32)
    n, hq, d = q.shape
    hkv = k.shape[1]
    chunk = check_positive_int(chunk, "chunk")
    slopes = check_slopes(slopes, hq)
    state = check_state(state, hq, d, F32).copy()
    if n == 0:
        return np.zeros_like(q), state
    n_chunks = -(-n // chunk)
    prog = _program(simt_kernels.LIGHTNING, D=d, C=chunk)
    io = _Buffers()
    qb, kb, powers = io.upload(q), io.upload(k), io.upload(decay_powers(slopes, chunk))
    p = io.empty((hq, n_chunks, chunk, chunk))
    io.run(prog.lightning_intra, (chunk, n_chunks, hq), (chunk, 1, 1), qb, kb, powers, p,
           np.int32(n), np.int32(hq), np.int32(hkv))
    sb, o = io.upload(state), io.empty(q.shape)
    io.run(prog.lightning_scan, (d, hq), (d, 1), qb, kb, io.upload(v), p, powers, sb, o,
           np.int32(n), np.int32(hq), np.int32(hkv), F32(1 / math.sqrt(d)))
    return io.read(o, q.shape), io.read(sb, state.shape)


def lightning_decode(q_t, k_t, v_t, slopes=None, state=None):
    q_t, had_axis = check_token(q_t, "q_t", F32)
    k_t, _ = check_token(k_t, "k_t", F32)
    v_t, _ = check_token(v_t, "v_t", F32)
    check_heads(q_t.shape, k_t.shape)
    if k_t.shape != v_t.shape:
        raise ValueError(f"k_t and v_t must have the same shape, got {k_t.shape} and {v_t.shape}")
    hq, d = q_t.shape
    slopes = check_slopes(slopes, hq)
    state = check_state(state, hq, d, F32).copy()
    prog = _program(simt_kernels.LIGHTNING, D=d, C=1)
    io = _Buffers()
    sb, o = io.upload(state), io.empty((hq, d))
    io.run(prog.lightning_decode, (d, hq), None, io.upload(q_t), io.upload(k_t), io.upload(v_t),
           io.upload(np.exp(-slopes).astype(F32)), sb, o, np.int32(hq), np.int32(k_t.shape[0]),
           F32(1 / math.sqrt(d)))
    o = io.read(o, (hq, d))
    return (o[None] if had_axis else o), io.read(sb, state.shape)


# --------------------------------------------------------------------------- InfLLM-V2

_WG, _TK = 32, 16


def _infllm_select(io, prog, qb, kb, n, hq, hkv, d, p):
    """Compressed keys, normaliser, block scores and top-k on the device: the selection buffer."""
    scale = F32(1 / math.sqrt(d))
    n1 = (n - p["l1"]) // p["s1"] + 1 if n >= p["l1"] else 0
    n2 = (n - p["l2"]) // p["s2"] + 1 if n >= p["l2"] else 0
    nb = -(-n // p["block"])
    k1, k2 = io.empty((max(n1, 1), hkv, d)), io.empty((max(n2, 1), hkv, d))
    if n1:
        io.run(prog.compress, (d, hkv, n1), None, kb, k1, np.int32(hkv), np.int32(p["l1"]), np.int32(p["s1"]))
    if n2:
        io.run(prog.compress, (d, hkv, n2), None, kb, k2, np.int32(hkv), np.int32(p["l2"]), np.int32(p["s2"]))
    lse = io.empty((n, hq))
    io.run(prog.lse_kernel, (_round_up(n, _WG), hq), (_WG, 1), qb, k2, lse, np.int32(n), np.int32(hq),
           np.int32(hkv), np.int32(n2), np.int32(p["l2"]), np.int32(p["s2"]), scale)
    scores = io.empty((n, hkv, nb))
    io.run(prog.block_scores, (_round_up(n, _WG), hkv), (_WG, 1), qb, k1, lse, scores, np.int32(n),
           np.int32(hq), np.int32(hkv), np.int32(n1), np.int32(nb), np.int32(p["l1"]), np.int32(p["s1"]),
           scale)
    selected = io.empty((n, hkv, p["topk"]), np.int32)
    io.run(prog.select_blocks, (hkv, n), None, scores, selected, np.int32(n), np.int32(hkv), np.int32(nb),
           np.int32(p["init_blocks"]), np.int32(p["local_blocks"]), np.int32(p["topk"]))
    return selected


def _infllm_program(d, group, p):
    return _program(simt_kernels.INFLLM, D=d, G=group, WG=_WG, TK=_TK, B=p["block"])


def infllmv2_select(q, k, block=64, l1=32, s1=16, l2=128, s2=64, init_blocks=1, local_blocks=32, topk=96):
    p = check_infllm_params(block, l1, s1, l2, s2, init_blocks, local_blocks, topk)
    q, k, _, group = check_qkv(q, k, k, F32)
    n, hq, d = q.shape
    io = _Buffers()
    selected = _infllm_select(io, _infllm_program(d, group, p), io.upload(q), io.upload(k),
                              n, hq, k.shape[1], d, p)
    return io.read(selected, (n, k.shape[1], p["topk"]), np.int32)


def infllmv2_attention(q, k, v, block=64, l1=32, s1=16, l2=128, s2=64, init_blocks=1, local_blocks=32,
                       topk=96):
    p = check_infllm_params(block, l1, s1, l2, s2, init_blocks, local_blocks, topk)
    q, k, v, group = check_qkv(q, k, v, F32)
    n, hq, d = q.shape
    if n == 0:
        return np.zeros_like(q)
    return _infllm_attend(q, k, v, group, p, first_row=0)


def _infllm_attend(q, k, v, group, p, first_row):
    """Selection and sparse attention for the query rows q (positions first_row..) over k, v."""
    rows, hq, d = q.shape
    n, hkv = k.shape[0], k.shape[1]
    prog = _infllm_program(d, group, p)
    io = _Buffers()
    kb = io.upload(k)
    # The selection kernels work on full-length q; decode passes one row placed at its position.
    q_full = q if first_row == 0 and rows == n else _place_rows(q, n, first_row)
    qb = io.upload(q_full)
    selected = _infllm_select(io, prog, qb, kb, n, hq, hkv, d, p)
    o = io.empty((n, hq, d))
    io.run(prog.sparse_attend, (n * hkv * d,), (d,), qb, kb, io.upload(v), selected, o, np.int32(n),
           np.int32(hq), np.int32(hkv), np.int32(p["topk"]), F32(1 / math.sqrt(d)))
    return io.read(o, (n, hq, d))[first_row:first_row + rows]


def _place_rows(q, n, first_row):
    full = np.zeros((n,) + q.shape[1:], F32)
    full[first_row:first_row + q.shape[0]] = q
    return full


def infllmv2_decode(q_t, k_cache, v_cache, block=64, l1=32, s1=16, l2=128, s2=64, init_blocks=1,
                    local_blocks=32, topk=96):
    """Baseline decode: runs the prefill pipeline over the whole cache (the SIMT version has
    no single-row path) and keeps the last row."""
    p = check_infllm_params(block, l1, s1, l2, s2, init_blocks, local_blocks, topk)
    q_t, had_axis = check_token(q_t, "q_t", F32)
    k_cache = float_array(k_cache, "k_cache", F32, 3)
    v_cache = float_array(v_cache, "v_cache", F32, 3)
    if k_cache.shape != v_cache.shape or k_cache.shape[0] == 0:
        raise ValueError(f"k_cache and v_cache must have the same non-empty shape, got {k_cache.shape} "
                         f"and {v_cache.shape}")
    group = check_heads(q_t.shape, k_cache.shape)
    o = _infllm_attend(q_t[None], k_cache, v_cache, group, p, first_row=k_cache.shape[0] - 1)
    return o if had_axis else o[0]


# --------------------------------------------------------------------------- RoPE / RMSNorm

def rope(x, theta=1e4, offset=0):
    x = float_array(x, "x", F32, (2, 3))
    check_positive_int(offset, "offset", 0)
    n, d = x.shape[0], x.shape[-1]
    cos, sin = rope_tables(n, d, theta, offset)
    if x.size == 0:
        return x.copy()
    heads = x.shape[1] if x.ndim == 3 else 1
    io = _Buffers()
    out = io.empty(x.shape)
    io.run(_program(simt_kernels.NORMS, D=d).rope, (d // 2, n * heads), None, io.upload(x),
           io.upload(cos.astype(F32)), io.upload(sin.astype(F32)), out, np.int32(heads))
    return io.read(out, x.shape)


def rmsnorm(x, weight=None, eps=1e-6):
    x = float_array(x, "x", F32)
    d = x.shape[-1]
    weight = np.ones(d, F32) if weight is None else float_array(weight, "weight", F32, 1)
    if weight.shape != (d,):
        raise ValueError(f"weight must have shape ({d},), got {weight.shape}")
    if x.size == 0:
        return x.copy()
    io = _Buffers()
    out = io.empty(x.shape)
    io.run(_program(simt_kernels.NORMS, D=d).rmsnorm, (x.size // d,), None, io.upload(x), io.upload(weight),
           out, F32(eps))
    return io.read(out, x.shape)
