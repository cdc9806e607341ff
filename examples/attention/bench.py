"""Benchmarks of the attention examples for ``cmlang bench`` (this module's ``benchmarks``),
also runnable on their own:

    cmlang bench attention [--size quick]     (or any of attn-dense attn-lightning attn-infllmv2 attn-rope
                                               attn-rmsnorm, each also as NAME-bf16)
    python -m examples.attention.bench [--size quick|full] [--repeat 3] [--sparse-vs-dense 32768] [--bandwidth]

Implementations: ``cmlang`` (this package), ``opencl-simt`` (``simt.py``, the baseline of
every ratio), ``numpy`` (float32, blocked BLAS), ``torch`` (scaled_dot_product_attention,
dense only, when torch imports).  For cmlang and SIMT the time ("median s", and every
ratio) is the device time of all kernels one call of the public function launches
(layout packing included), from profiling events; "wall s" is the whole call, numpy in
and numpy out (allocation, host/device copies and host-side tables included).  Both
allocate from a pyopencl memory pool.  numpy and torch: wall-clock time.  GFLOP/s count
the useful FLOPs of docs/attention.md.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

from cmlang.bench import Benchmark, Skip, host_run, profiled_run

from . import simt
from .baselines import dense_attention_numpy, infllmv2_numpy, lightning_chunked_numpy, torch_sdpa
from .dense import dense_attention
from .infllmv2 import infllmv2_attention
from .lightning import lightning_attention
from .norms import rope, rmsnorm
from .reference import rope_reference, rmsnorm_reference, infllmv2_flops

SPARSE = dict(block=64, l1=32, s1=16, l2=128, s2=64, init_blocks=1, local_blocks=2, topk=16)


def _qkv(params, rng):
    n, hq, hkv, d = params["n"], params["hq"], params["hkv"], params["d"]
    return dict(q=rng.standard_normal((n, hq, d), np.float32), k=rng.standard_normal((n, hkv, d), np.float32),
                v=rng.standard_normal((n, hkv, d), np.float32))


def _host(fn):
    """setup(inputs, device) -> Run timing fn(q, k, v) on the host clock."""
    return lambda inputs, device: host_run(lambda: fn(inputs["q"], inputs["k"], inputs["v"]))


def _device(fn):
    """setup(inputs, device) -> Run timing the kernels fn(q, k, v) launches (and its wall time)."""
    return lambda inputs, device: profiled_run(lambda: fn(inputs["q"], inputs["k"], inputs["v"]))


def _torch(inputs, device):
    found = torch_sdpa()
    if found is None:
        raise Skip("torch is not installed")
    return _host(found[0])(inputs, device)


def _size_label(params):
    return " ".join(f"{name}={value}" for name, value in params.items())


dense_benchmark = Benchmark(
    name="attn-dense",
    description="causal flash attention with GQA; FLOPs 2*d*Hq*N*(N+1)",
    sizes={"tiny": dict(n=256, hq=4, hkv=2, d=64), "quick": dict(n=2048, hq=8, hkv=2, d=64),
           "full": dict(n=8192, hq=8, hkv=2, d=128)},
    make_inputs=_qkv,
    reference=lambda i: dense_attention_numpy(i["q"], i["k"], i["v"], dtype=np.float64),
    implementations={"cmlang": _device(dense_attention), "opencl-simt": _device(simt.dense_attention),
                     "numpy": _host(dense_attention_numpy), "torch": _torch},
    flops=lambda p: 2 * p["d"] * p["hq"] * p["n"] * (p["n"] + 1),
    rtol=1e-4, atol=2e-5, size_label=_size_label)


def _qkv_bf16(params, rng):
    """The inputs of _qkv rounded to bf16 (ml_dtypes' bfloat16 arrays)."""
    import ml_dtypes
    return {name: x.astype(ml_dtypes.bfloat16) for name, x in _qkv(params, rng).items()}


def _as_f32(fn):
    """An f32 implementation run on the bf16 inputs converted (before the timing)."""
    def setup(inputs, device):
        return _device(fn)({name: x.astype(np.float32) for name, x in inputs.items()}, device)
    return setup


def _host_f32(fn):
    """A host f32 implementation run on the bf16 inputs converted (before the timing)."""
    def setup(inputs, device):
        return _host(fn)({name: x.astype(np.float32) for name, x in inputs.items()}, device)
    return setup


def _bf16_check(got, expected):
    """Within 2 * 2^-8 of max |expected| (expected: float64 from the same bf16 inputs)."""
    got = np.asarray(got, np.float64)
    if got.shape != expected.shape:
        return f"shape {got.shape} != {expected.shape}"
    error = np.abs(got - expected).max() / np.abs(expected).max()
    return None if error <= 2 * 2.0 ** -8 else f"max error {error:.2e} of max |expected| > 2 * 2^-8"


dense_bf16_benchmark = Benchmark(
    name="attn-dense-bf16",
    description="causal flash attention with GQA, bf16 in and out, f32 softmax and accumulation "
                "(opencl-simt: its f32 version on the same inputs; torch: bf16 SDPA)",
    sizes={"tiny": dict(n=256, hq=4, hkv=2, d=64), "quick": dict(n=2048, hq=8, hkv=2, d=128),
           "full": dict(n=8192, hq=8, hkv=2, d=128)},
    make_inputs=_qkv_bf16,
    reference=lambda i: dense_attention_numpy(i["q"], i["k"], i["v"], dtype=np.float64),
    implementations={"cmlang": _device(dense_attention), "opencl-simt": _as_f32(simt.dense_attention),
                     "numpy": _host_f32(dense_attention_numpy), "torch": _torch},
    flops=lambda p: 2 * p["d"] * p["hq"] * p["n"] * (p["n"] + 1),
    check=_bf16_check, size_label=_size_label)


def _lightning_flops(p, chunk=64):
    return p["hq"] * p["n"] * (2 * p["d"] * (chunk + 1) + 4 * p["d"] * p["d"])


lightning_benchmark = Benchmark(
    name="attn-lightning",
    description="Lightning attention prefill, chunk 64, ALiBi decays; FLOPs H*N*(2d(C+1)+4d^2)",
    sizes={"tiny": dict(n=256, hq=4, hkv=4, d=64), "quick": dict(n=4096, hq=8, hkv=8, d=64),
           "full": dict(n=32768, hq=8, hkv=8, d=128)},
    make_inputs=_qkv,
    reference=lambda i: lightning_chunked_numpy(i["q"], i["k"], i["v"], dtype=np.float64),
    implementations={"cmlang": _device(lightning_attention), "opencl-simt": _device(simt.lightning_attention),
                     "numpy": _host(lightning_chunked_numpy)},
    flops=_lightning_flops, rtol=1e-3, atol=1e-3, size_label=_size_label)


lightning_bf16_benchmark = Benchmark(
    name="attn-lightning-bf16",
    description="Lightning prefill, bf16 q/k/v and output, f32 state (opencl-simt: f32 on the same inputs)",
    sizes={"tiny": dict(n=256, hq=4, hkv=4, d=64), "quick": dict(n=4096, hq=8, hkv=8, d=128),
           "full": dict(n=32768, hq=8, hkv=8, d=128)},
    make_inputs=_qkv_bf16,
    reference=lambda i: lightning_chunked_numpy(*(i[x].astype(np.float64) for x in "qkv"), dtype=np.float64),
    implementations={"cmlang": _device(lightning_attention), "opencl-simt": _as_f32(simt.lightning_attention),
                     "numpy": _host_f32(lightning_chunked_numpy)},
    flops=_lightning_flops, check=lambda got, expected: _bf16_check(got[0], expected[0]),
    size_label=_size_label)


def _infllm_check(got, expected):
    """Float32 and float64 may order near-tied block scores differently, which changes a
    token's selection: allow 0.2% of rows to differ, all others within 1e-4."""
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        return f"shape {got.shape} != {expected.shape}"
    bad_rows = ~np.isclose(got, expected, rtol=1e-4, atol=2e-5).all(axis=(1, 2))
    if bad_rows.mean() > 2e-3:
        return f"{bad_rows.sum()} of {len(bad_rows)} token rows differ (first {np.argmax(bad_rows)})"
    return None


def _infllm_flops(p):
    # Every token's selection holds its own (partial) block and topk-1 full earlier blocks,
    # or all of its past when that is shorter: attended keys = min(t+1, (topk-1)*64 + t%64 + 1).
    stage1, _ = infllmv2_flops(p["n"], p["hq"], p["d"])
    t = np.arange(p["n"])
    own = t % 64 + 1
    attended = np.minimum(t + 1, (SPARSE["topk"] - 1) * 64 + own)
    return stage1 + 4 * p["d"] * p["hq"] * int(attended.sum())


infllm_benchmark = Benchmark(
    name="attn-infllmv2",
    description="InfLLM-V2 sparse prefill, 16 selected 64-key blocks (init 1, local 2)",
    sizes={"tiny": dict(n=512, hq=4, hkv=1, d=64), "quick": dict(n=4096, hq=8, hkv=1, d=64),
           "full": dict(n=16384, hq=8, hkv=1, d=128)},
    make_inputs=_qkv,
    reference=lambda i: infllmv2_numpy(i["q"], i["k"], i["v"], dtype=np.float64, **SPARSE),
    implementations={"cmlang": _device(lambda q, k, v: infllmv2_attention(q, k, v, **SPARSE)),
                     "opencl-simt": _device(lambda q, k, v: simt.infllmv2_attention(q, k, v, **SPARSE)),
                     "numpy": _host(lambda q, k, v: infllmv2_numpy(q, k, v, **SPARSE))},
    flops=_infllm_flops, check=_infllm_check, size_label=_size_label)


infllm_bf16_benchmark = Benchmark(
    name="attn-infllmv2-bf16",
    description="InfLLM-V2 sparse prefill, bf16 in and out, 16 selected 64-key blocks "
                "(opencl-simt: f32 on the same inputs)",
    sizes={"tiny": dict(n=512, hq=4, hkv=1, d=64), "quick": dict(n=4096, hq=8, hkv=1, d=128),
           "full": dict(n=16384, hq=8, hkv=1, d=128)},
    make_inputs=_qkv_bf16,
    reference=lambda i: infllmv2_numpy(*(i[x].astype(np.float64) for x in "qkv"), dtype=np.float64, **SPARSE),
    implementations={"cmlang": _device(lambda q, k, v: infllmv2_attention(q, k, v, **SPARSE)),
                     "opencl-simt": _as_f32(lambda q, k, v: simt.infllmv2_attention(q, k, v, **SPARSE)),
                     "numpy": _host_f32(lambda q, k, v: infllmv2_numpy(q, k, v, **SPARSE))},
    flops=_infllm_flops, check=lambda got, expected: _bf16_rows_check(got, expected), size_label=_size_label)


def _bf16_rows_check(got, expected):
    """As _infllm_check (0.2% of rows may select differently) within the bf16 bound."""
    got = np.asarray(got, np.float64)
    if got.shape != expected.shape:
        return f"shape {got.shape} != {expected.shape}"
    bound = 2 * 2.0 ** -8 * np.abs(expected).max()
    bad_rows = (np.abs(got - expected) > bound).any(axis=(1, 2))
    if bad_rows.mean() > 2e-3:
        return f"{bad_rows.sum()} of {len(bad_rows)} token rows differ by more than 2 * 2^-8 of max |expected|"
    return None


def _x(params, rng):
    return dict(x=rng.standard_normal((params["n"], params["h"], params["d"]), np.float32))


def _x_host(fn):
    return lambda inputs, device: host_run(lambda: fn(inputs["x"]))


def _x_device(fn):
    return lambda inputs, device: profiled_run(lambda: fn(inputs["x"]))


def _rope_numpy(x):
    from .reference import rope_tables
    cos, sin = (t.astype(np.float32)[:, None, :] for t in rope_tables(x.shape[0], x.shape[-1]))
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def _rmsnorm_numpy(x):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + np.float32(1e-6))


_NORM_SIZES = {"tiny": dict(n=256, h=4, d=64), "quick": dict(n=4096, h=8, d=64),
               "full": dict(n=32768, h=8, d=128)}

rope_benchmark = Benchmark(
    name="attn-rope", description="NeoX RoPE of [N, H, d] (cos/sin tables from the host)",
    sizes=_NORM_SIZES, make_inputs=_x, reference=lambda i: rope_reference(i["x"]),
    implementations={"cmlang": _x_device(rope), "opencl-simt": _x_device(simt.rope), "numpy": _x_host(_rope_numpy)},
    bytes=lambda p: 2 * 4 * p["n"] * p["h"] * p["d"] + 4 * p["n"] * p["d"],
    rtol=1e-4, atol=1e-5, size_label=_size_label)

rmsnorm_benchmark = Benchmark(
    name="attn-rmsnorm", description="per-head RMSNorm of [N, H, d]",
    sizes=_NORM_SIZES, make_inputs=_x, reference=lambda i: rmsnorm_reference(i["x"]),
    implementations={"cmlang": _x_device(rmsnorm), "opencl-simt": _x_device(simt.rmsnorm),
                     "numpy": _x_host(_rmsnorm_numpy)},
    bytes=lambda p: 2 * 4 * p["n"] * p["h"] * p["d"], rtol=1e-4, atol=1e-5, size_label=_size_label)

def _x_bf16(params, rng):
    import ml_dtypes
    return dict(x=_x(params, rng)["x"].astype(ml_dtypes.bfloat16))


def _x_as_f32(fn):
    return lambda inputs, device: _x_device(fn)(dict(x=inputs["x"].astype(np.float32)), device)


rope_bf16_benchmark = Benchmark(
    name="attn-rope-bf16", description="NeoX RoPE of bf16 [N, H, d], f32 math (opencl-simt: f32 on the same inputs)",
    sizes=_NORM_SIZES, make_inputs=_x_bf16, reference=lambda i: rope_reference(i["x"].astype(np.float64)),
    implementations={"cmlang": _x_device(rope), "opencl-simt": _x_as_f32(simt.rope),
                     "numpy": lambda inputs, device: _x_host(_rope_numpy)(dict(x=inputs["x"].astype(np.float32)),
                                                                          device)},
    bytes=lambda p: 2 * 2 * p["n"] * p["h"] * p["d"] + 4 * p["n"] * p["d"],
    check=_bf16_check, size_label=_size_label)

rmsnorm_bf16_benchmark = Benchmark(
    name="attn-rmsnorm-bf16", description="per-head RMSNorm of bf16 [N, H, d], f32 math (opencl-simt: f32 on the same inputs)",
    sizes=_NORM_SIZES, make_inputs=_x_bf16, reference=lambda i: rmsnorm_reference(i["x"].astype(np.float64)),
    implementations={"cmlang": _x_device(rmsnorm), "opencl-simt": _x_as_f32(simt.rmsnorm),
                     "numpy": lambda inputs, device: _x_host(_rmsnorm_numpy)(dict(x=inputs["x"].astype(np.float32)),
                                                                             device)},
    bytes=lambda p: 2 * 2 * p["n"] * p["h"] * p["d"], check=_bf16_check, size_label=_size_label)

benchmarks = [dense_benchmark, dense_bf16_benchmark, lightning_benchmark, lightning_bf16_benchmark,
              infllm_benchmark, infllm_bf16_benchmark, rope_benchmark, rope_bf16_benchmark, rmsnorm_benchmark,
              rmsnorm_bf16_benchmark]
for _bench in benchmarks:
    _bench.group = "attention"       # `cmlang bench attention` runs them all


# --------------------------------------------------------------------------- sparse vs dense

def sparse_vs_dense(n: int, hq=8, hkv=1, d=128, repeat=1, report=print):
    """cmlang InfLLM-V2 (16 selected blocks of 64) against cmlang's dense kernel at length n."""
    rng = np.random.default_rng(0)
    inputs = _qkv(dict(n=n, hq=hq, hkv=hkv, d=d), rng)
    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    small = slice(0, 256)
    infllmv2_attention(q[small], k[small], v[small], **SPARSE)        # compile + build outside the timing
    dense_attention(q[small], k[small], v[small])
    from cmlang.runtime import profile
    times, walls = {}, {}
    for name, fn in (("infllmv2", lambda: infllmv2_attention(q, k, v, **SPARSE)),
                     ("dense", lambda: dense_attention(q, k, v))):
        best = (math.inf, math.inf)
        for _ in range(repeat):
            with profile() as launched:
                start = time.perf_counter()
                fn()
                wall = time.perf_counter() - start
            best = min(best, (launched.seconds, wall))
        times[name], walls[name] = best
    p = dict(n=n, hq=hq, hkv=hkv, d=d)
    report(f"N={n} Hq={hq} Hkv={hkv} d={d} (device time of the kernels; wall in brackets): "
           f"cmlang InfLLM-V2 {times['infllmv2']:.2f} s [{walls['infllmv2']:.2f} s] "
           f"({_infllm_flops(p) / times['infllmv2'] * 1e-9:.1f} GFLOP/s), cmlang dense {times['dense']:.2f} s "
           f"[{walls['dense']:.2f} s] ({dense_benchmark.flops(p) / times['dense'] * 1e-9:.1f} GFLOP/s): "
           f"sparse is {times['dense'] / times['infllmv2']:.1f}x faster")
    return times


COPY_KERNEL = """
__kernel void copy(__global const float4 *src, __global float4 *dst) {
    dst[get_global_id(0)] = src[get_global_id(0)];
}
"""


def copy_bandwidth(n_floats: int, repeat: int = 5, report=print) -> float:
    """GB/s (read + write) of a plain OpenCL C copy of n_floats, best of ``repeat``: the
    ceiling for a kernel that streams as many bytes (RoPE, RMSNorm)."""
    import cmlang.runtime as runtime
    from cmlang.bench import event_seconds, opencl_kernel, to_buffer
    device = runtime.get_device()
    kernel = opencl_kernel(device, COPY_KERNEL, "copy")
    n_floats -= n_floats % 4
    src = to_buffer(device, np.ones(n_floats, np.float32))
    dst = to_buffer(device, np.empty(n_floats, np.float32), copy=False)
    kernel(device.queue, (n_floats // 4,), None, src, dst).wait()      # first touch of dst
    best = min(event_seconds([kernel(device.queue, (n_floats // 4,), None, src, dst)]) for _ in range(repeat))
    gbs = 2 * 4 * n_floats / best * 1e-9
    report(f"OpenCL C copy of {4 * n_floats / 2**20:.1f} MiB: {best * 1e3:.2f} ms, {gbs:.1f} GB/s (read + write)")
    return gbs


def main(argv=None):
    from cmlang import bench as harness
    import cmlang.runtime as runtime
    parser = argparse.ArgumentParser(description="Attention benchmarks (cmlang vs SIMT OpenCL C vs numpy/torch)")
    parser.add_argument("names", nargs="*", help="benchmarks (default: all)")
    parser.add_argument("--size", choices=harness.SIZES, default="quick")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--impl", action="append")
    parser.add_argument("--sparse-vs-dense", type=int, metavar="N", help="also compare at this length")
    parser.add_argument("--bandwidth", action="store_true",
                        help="also time a plain copy of the RoPE/RMSNorm input size (the memory-bound ceiling)")
    args = parser.parse_args(argv)
    device = runtime.get_device()
    print(f"device: {device.name} [{device.platform}]; sizes: {args.size}; median of {args.repeat} runs")
    records = []
    for bench in harness.select(benchmarks, args.names):
        records += harness.measure(bench, args.size, device, repeat=args.repeat, warmup=0, impls=args.impl)
        print(harness.format_table(records), flush=True)
    print(harness.summary(records))
    for r in records:
        if r.status != "ok":
            print(f"{r.status}: {r.kernel} {r.impl}: {r.note}")
    if args.sparse_vs_dense:
        sparse_vs_dense(args.sparse_vs_dense)
    if args.bandwidth:
        params = _NORM_SIZES[args.size]
        copy_bandwidth(params["n"] * params["h"] * params["d"])


if __name__ == "__main__":
    main()
