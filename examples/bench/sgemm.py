"""SGEMM, C = A @ B: f32, and f16 inputs with f32 accumulation (``hgemm``).

cmlang: one CM thread owns a TM x TN tile of C in registers (register blocking; the
shape is tuned per device, e.g. 4 x 64: 16 registers of 16 lanes). Each step over k loads one row of B as a
TN-wide block and adds the broadcast A[m, k] times it to row m of the tile:
TM * TN / simd FMAs per B row read, no shared memory, no barriers. With f16
inputs (hgemm) the B row is converted as it is loaded and the A tile once per
k-step: on the CPU device the conversion of a loaded row is one instruction per
16 elements (it folds into the load), so converting B once per work-group tile
through local memory, as the OpenCL C version does, would only add traffic; the
f16 data halves what the kernel reads. f32 GEMMs with rows of 1024 floats or more take a
packed path on the CPU device (``packed_sgemm``: the same tile kernel over copies of A and B
laid out tile by tile, C walked in cache-sized groups; see ``PACKED_CONFIGS``).

``cmlang-dpas`` in hgemm, and ``cmlang`` in ``bgemm`` (bf16 inputs, f32 accumulate) and
``igemm`` (i8 inputs, i32 accumulate): the tile kernel of ``examples/core/dpas_gemm.py``, whose products are one ``cm.dpas`` per
k-step, so that on a GPU with a systolic unit (PVC, DG2) they are ``dpas`` instructions.
Its tile (M x N, and simd: the unit's width, 16 on PVC and 8 on DG2) is chosen per device
by cm.autotune: timed on the device that runs, ranked by Intel's compiler's stats on a
compile-only profile (``cmlang isa`` ranks for each GPU it builds for).  On the CPU device
the products are exact and summed in f32 (i32), as the unit does.

OpenCL C (SIMT): the classic local-memory tiled kernel. A 16 x 16 work-group
computes a 64 x 64 block of C; each k-step stages a 64 x 16 tile of A (transposed)
and a 16 x 64 tile of B in local memory, and each work-item accumulates a 4 x 4
micro-tile with strided columns so that neighbouring work-items read neighbouring
addresses. bf16 inputs (ushort bits) are widened by a shift as they are staged; i8
inputs accumulate in int.
"""
import numpy as np

import cmlang as cm
import cmlang.runtime
from cmlang import bf16, f16, f32, i8, i32
from cmlang.bench import (Benchmark, Run, Skip, event_seconds, from_buffer, host_run, opencl_kernel,
                          span_seconds, to_buffer)
from cmlang.runtime.interpreter import bf16_bits_to_f32, f32_to_bf16_bits

from ..core.dpas_gemm import K_STEP, gemm_kernel

# cmlang: the C tile per CM thread (TM x TN), the k unrolling (KU) and the sub-group size,
# chosen per device and problem shape by timing (cm.autotune; CMLANG_AUTOTUNE_LOG=1 prints
# the table).  On the CPU device at 1024^3, f32 chose 16 x 16 x 16, 1.5-1.9x faster than
# 4 x 64 x 16 in three runs on a loaded machine (f32 there now takes the packed path below);
# f16 kept 4 x 64 x 16.  The first config is
# the shape picked by hand, taken when tuning is off (CMLANG_AUTOTUNE=0).
# Every config divides the benchmark sizes (64, 256, 1024) in each dimension.
GEMM_CONFIGS = [
    {"TM": 4, "TN": 64, "KU": 16},
    {"TM": 16, "TN": 16, "KU": 16},
    {"TM": 8, "TN": 16, "KU": 16},
    {"TM": 32, "TN": 16, "KU": 16},
    {"TM": 8, "TN": 32, "KU": 16},
    {"TM": 4, "TN": 64, "KU": 8},
    {"TM": 8, "TN": 32, "KU": 16, "simd": 8},
]
# Timing a 1024^3 config takes about a second, compiling it a few more the first time.
TUNING_BUDGET_S = 60


def _gemm_kernel(T):
    @cm.autotune(configs=GEMM_CONFIGS, key=["a", "b"], budget=TUNING_BUDGET_S)
    @cm.kernel(simd=16)
    def gemm(a: cm.ptr[T], b: cm.ptr[T], c: cm.ptr[f32], K: i32, N: i32,
             TM: cm.constexpr, TN: cm.constexpr, KU: cm.constexpr):
        row0 = cm.thread_id(1) * TM
        col0 = cm.thread_id(0) * TN
        acc = cm.zeros(cm.matrix[f32, TM, TN])
        for k in range(0, K, KU):
            ta = cm.load(a, row0 * K + k, (TM, KU), K).astype(f32)   # A[row0:+TM, k:+KU]
            for kk in cm.static_range(KU):
                bk = cm.load(b, (k + kk) * N + col0, TN).astype(f32)  # B[k+kk, col0:+TN]
                for m in cm.static_range(TM):
                    acc[m] = cm.fma(ta[m, kk], bk, acc[m])
        cm.store(c, row0 * N + col0, acc, N)
    return gemm


sgemm_kernel = _gemm_kernel(f32)
hgemm_kernel = _gemm_kernel(f16)


# Large f32 GEMMs on the CPU device: packed panels.  From rows of 1024 floats (4 KiB, the
# L1 cache's set period) on, the plain kernel's tile rows alias in the caches: at 4096^3 its
# row loads are 16 KiB apart and it made 7-10 GFLOP/s against 40-100+ at 1024^3 (loaded
# machine), and each CM thread streams B from memory.  So A is copied into TM x KU tiles
# (each TM-row panel contiguous) and B into K x TN column panels (contiguous), and the CM
# threads walk C in groups of GM row panels per column panel, so that the GM A panels stay
# in the L3 cache while each B panel is read GM times from the L2.  The copies run on the
# device and count in the time (1-2% of it at 4096^3).  At 4096^3 the packed kernel ran
# 4-5x faster than the plain one; at 1024^3 about 10% (two loaded runs, interleaved).
# (32 x 16 tiles, 32 accumulator rows, ran 3.6x slower than 16 x 16 at 4096^3: not listed.)
PACK_FROM = 1024
PACKED_CONFIGS = [
    {"TM": 16, "TN": 16, "KU": 16, "GM": 16},
    {"TM": 16, "TN": 16, "KU": 16, "GM": 4},
    {"TM": 8, "TN": 32, "KU": 16, "GM": 16},
    {"TM": 4, "TN": 64, "KU": 16, "GM": 32},
]
PACKED_TUNING_BUDGET_S = 120     # a 4096^3 run takes 1-4 s


@cm.kernel(simd=16)
def copy_tiles(src: cm.ptr[f32], dst: cm.ptr[f32], pitch: i32, stride1: i32, stride0: i32,
               R: cm.constexpr, C: cm.constexpr):
    """The R x C tile (thread_id(1), thread_id(0)) of a matrix with rows ``pitch`` apart,
    stored contiguously at thread_id(1) * stride1 + thread_id(0) * stride0."""
    tile = cm.load(src, cm.thread_id(1) * R * pitch + cm.thread_id(0) * C, (R, C), pitch)
    cm.store(dst, cm.thread_id(1) * stride1 + cm.thread_id(0) * stride0, tile, C)


@cm.kernel(simd=16)
def gemm_packed(ap: cm.ptr[f32], bp: cm.ptr[f32], c: cm.ptr[f32], M: i32, N: i32, K: i32,
                TM: cm.constexpr, TN: cm.constexpr, KU: cm.constexpr, GM: cm.constexpr):
    """The TM x TN tile kernel over packed A (TM x KU tiles) and B (K x TN panels).  The CM
    threads of a group cover GM row panels (fewer in a short last group) times every column
    panel, row panel fastest, so consecutive threads share a B panel."""
    t = cm.thread_id(0)
    panels = M // TM
    group = t // (GM * (N // TN))
    within = t - group * GM * (N // TN)
    rows = min(GM, panels - group * GM)          # the last group may be short
    rb = group * GM + within % rows
    cb = within // rows
    acc = cm.zeros(cm.matrix[f32, TM, TN])
    for k in range(0, K, KU):
        ta = cm.load(ap, rb * TM * K + k * TM, (TM, KU), KU)      # A[rb*TM:+TM, k:+KU]
        for kk in cm.static_range(KU):
            bk = cm.load(bp, cb * TN * K + (k + kk) * TN, TN)     # B[k+kk, cb*TN:+TN]
            for m in cm.static_range(TM):
                acc[m] = cm.fma(ta[m, kk], bk, acc[m])
    cm.store(c, rb * TM * N + cb * TN, acc, N)


@cm.autotune(configs=PACKED_CONFIGS, key=["a", "b"], restore=(), budget=PACKED_TUNING_BUDGET_S)
def packed_sgemm(a, b, c, a_packed, b_packed, TM, TN, KU, GM):
    """C = A @ B through packed copies (device arrays; the packed ones of A's and B's size);
    returns the three launches."""
    (m, k), (_, n) = a.shape, b.shape
    return [copy_tiles[(k // KU, m // TM)](a, a_packed, k, TM * k, TM * KU, TM, KU),
            copy_tiles[(n // TN, k // KU)](b, b_packed, n, KU * TN, k * TN, KU, TN),
            gemm_packed[((m // TM) * (n // TN),)](a_packed, b_packed, c, m, n, k, TM, TN, KU, GM)]


def packs(a, b) -> bool:
    """Whether C = A @ B takes the packed path: f32, on the CPU device, rows of PACK_FROM
    floats or more, and every packed config's tiles divide the shape."""
    from cmlang.autotuning import tuning_profile
    (m, k), (_, n) = a.shape, b.shape
    return (np.dtype(a.dtype) == np.float32 and tuning_profile().name == "cpu"
            and max(k, n) >= PACK_FROM
            and all(m % c["TM"] == 0 and n % c["TN"] == 0 and k % c["KU"] == 0 for c in PACKED_CONFIGS))


def _launcher(a, b):
    """The tuned kernel for ``a``'s dtype, launched over C in tiles of the chosen config."""
    (m, k), (_, n) = a.shape, b.shape
    assert all(m % c["TM"] == 0 and n % c["TN"] == 0 and k % c["KU"] == 0 for c in GEMM_CONFIGS)
    kernel = hgemm_kernel if a.dtype == np.float16 else sgemm_kernel
    return kernel[lambda config: (n // config["TN"], m // config["TM"])]


# cmlang-dpas: the C tile (M x N) per CM thread, the simd, and whether the tiles come by
# 2-D block loads (B2D), per device.  A GPU's systolic unit takes the configs whose simd is
# its width (16 on PVC, 8 on DG2) and N a multiple of it; the others do not compile there and
# are skipped.  IGC's ranking picks, per GPU, the tile with the fewest instructions per
# output without spilling (`cmlang isa hgemm bgemm igemm` shows the choice); on PVC the
# 2-D block configs read A and B by block messages (the launch proves the matrices fit
# them, so there is no per-element path).  The first config is the one-instruction tile of PVC.
DPAS_CONFIGS = [
    {"M": 8, "N": 16, "simd": 16, "B2D": 0},
    {"M": 16, "N": 32, "simd": 16, "B2D": 0},
    {"M": 8, "N": 32, "simd": 16, "B2D": 0},
    {"M": 32, "N": 32, "simd": 16, "B2D": 0},
    {"M": 8, "N": 16, "simd": 16, "B2D": 1},
    {"M": 16, "N": 32, "simd": 16, "B2D": 1},
    {"M": 8, "N": 32, "simd": 16, "B2D": 1},
    {"M": 8, "N": 8, "simd": 8, "B2D": 0},
    {"M": 8, "N": 16, "simd": 8, "B2D": 0},
    {"M": 16, "N": 16, "simd": 8, "B2D": 0},
]


def _dpas_kernel(T, inputs):
    configs = [dict(c, KT=K_STEP[inputs]) for c in DPAS_CONFIGS]
    return cm.autotune(configs=configs, key=["a", "b"], budget=TUNING_BUDGET_S)(gemm_kernel(T))


DPAS_KERNELS = {"f16": _dpas_kernel(f16, "f16"), "bf16": _dpas_kernel(bf16, "bf16"),
                "i8": _dpas_kernel(i8, "i8")}


def dpas_matmul(a: np.ndarray, b: np.ndarray, inputs="f16") -> np.ndarray:
    """C = A @ B through cm.dpas: ``inputs`` "f16", "bf16" (uint16 bits) or "i8" (C in
    i32); sizes multiples of every config's tile (64 in each dimension do)."""
    (m, k), (_, n) = a.shape, b.shape
    c = np.empty((m, n), np.int32 if inputs == "i8" else np.float32)
    _dpas_launcher(inputs, a, b)(a, b, c, m, k, n)
    return c


def _dpas_launcher(inputs, a, b):
    (m, k), (_, n) = a.shape, b.shape
    assert all(m % c["M"] == 0 and n % c["N"] == 0 and k % K_STEP[inputs] == 0 for c in DPAS_CONFIGS)
    return DPAS_KERNELS[inputs][lambda config: (n // config["N"], m // config["M"])]


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """C = A @ B (f32 or f16 inputs, f32 result); sizes multiples of every config's tile."""
    (m, k), (_, n) = a.shape, b.shape
    if packs(a, b):
        da, db = cm.to_device(a), cm.to_device(b)
        dc = cm.to_device(np.empty((m, n), np.float32))
        packed_sgemm(da, db, dc, cm.to_device(np.empty_like(a)), cm.to_device(np.empty_like(b)))
        return dc.numpy()
    c = np.empty((m, n), np.float32)
    _launcher(a, b)(a, b, c, k, n)
    return c


OPENCL_SOURCE = r"""
#ifdef USE_HALF
#pragma OPENCL EXTENSION cl_khr_fp16 : enable
#endif
#ifdef INT8                 /* i8 inputs accumulate in int; ACC is the accumulator type */
#define ACC int
#define MAD(a, b, c) ((a) * (b) + (c))
#else
#define ACC float
#define MAD(a, b, c) fma(a, b, c)
#endif
#ifdef BF16                 /* bf16 inputs arrive as their ushort bits */
#define LOAD(x) as_float((uint)(x) << 16)
#else
#define LOAD(x) (x)
#endif
#define TS 64               /* C block per work-group */
#define TK 16               /* k-step staged in local memory */
#define WPT 4               /* WPT x WPT outputs per work-item */
#define WG (TS / WPT)

__kernel __attribute__((reqd_work_group_size(WG, WG, 1)))
void gemm_tiled(const int M, const int N, const int K,
                __global const T* A, __global const T* B, __global ACC* C)
{
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int lid = ty * WG + tx;
    const int col0 = get_group_id(0) * TS, row0 = get_group_id(1) * TS;
    __local ACC As[TK][TS];          /* A tile, transposed: As[k][m] */
    __local ACC Bs[TK][TS];
    ACC acc[WPT][WPT];
    for (int i = 0; i < WPT; i++)
        for (int j = 0; j < WPT; j++)
            acc[i][j] = 0;
    for (int k0 = 0; k0 < K; k0 += TK) {
        for (int i = lid; i < TS * TK; i += WG * WG) {
            const int r = i / TK, c = i % TK;
            As[c][r] = LOAD(A[(row0 + r) * K + k0 + c]);
            const int br = i / TS, bc = i % TS;
            Bs[br][bc] = LOAD(B[(k0 + br) * N + col0 + bc]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int k = 0; k < TK; k++) {
            ACC a[WPT], b[WPT];
            for (int w = 0; w < WPT; w++) {
                a[w] = As[k][ty + w * WG];
                b[w] = Bs[k][tx + w * WG];
            }
            for (int i = 0; i < WPT; i++)
                for (int j = 0; j < WPT; j++)
                    acc[i][j] = MAD(a[i], b[j], acc[i][j]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    for (int i = 0; i < WPT; i++)
        for (int j = 0; j < WPT; j++)
            C[(row0 + ty + i * WG) * N + col0 + tx + j * WG] = acc[i][j];
}
"""
OPENCL_TILE, OPENCL_WPT = 64, 4
# Per input dtype: bf16 (uint16 bits) widens by a shift, i8 accumulates in int.
OPENCL_OPTIONS = {
    np.dtype(np.float32).str: "-DT=float",
    np.dtype(np.float16).str: "-DT=half -DUSE_HALF",
    np.dtype(np.uint16).str: "-DT=ushort -DBF16",
    np.dtype(np.int8).str: "-DT=char -DINT8",
}


def opencl_matmul(a: np.ndarray, b: np.ndarray, device=None) -> np.ndarray:
    """The SIMT OpenCL C version on ``device`` (default: cmlang's current device)."""
    device = device or cmlang.runtime.get_device()
    run = opencl_simt({"a": a, "b": b}, device)
    run.run()
    return run.output()


# ---------------------------------------------------------------------------
# Benchmark

def make_inputs(params, rng, dtype=np.float32):
    m, n, k = params["m"], params["n"], params["k"]
    return {"a": rng.uniform(-1, 1, (m, k)).astype(dtype), "b": rng.uniform(-1, 1, (k, n)).astype(dtype)}


def reference(inputs):
    a, b = inputs["a"].astype(np.float64), inputs["b"].astype(np.float64)
    return (a @ b).astype(np.float32)


def make_bf16_inputs(params, rng):
    """bf16 matrices as their uint16 bits (rounded to nearest even)."""
    f32_inputs = make_inputs(params, rng)
    return {name: f32_to_bf16_bits(x) for name, x in f32_inputs.items()}


def bf16_reference(inputs):
    return reference({name: bf16_bits_to_f32(x) for name, x in inputs.items()})


def make_i8_inputs(params, rng):
    m, n, k = params["m"], params["n"], params["k"]
    return {"a": rng.integers(-128, 128, (m, k)).astype(np.int8),
            "b": rng.integers(-128, 128, (k, n)).astype(np.int8)}


def i8_reference(inputs):
    return (inputs["a"].astype(np.int64) @ inputs["b"].astype(np.int64)).astype(np.int32)


def numpy_as(convert):
    """numpy's matmul after ``convert`` (numpy has no f16/bf16/i8 BLAS), timed with it."""
    def setup(inputs, device):
        a, b = inputs["a"], inputs["b"]
        return host_run(lambda: convert(a) @ convert(b))
    return setup


def cmlang_impl(inputs, device):
    a, b = inputs["a"], inputs["b"]
    (m, k), (_, n) = a.shape, b.shape
    da, db, dc = cm.to_device(a), cm.to_device(b), cm.to_device(np.zeros((m, n), np.float32))
    if packs(a, b):
        a_packed, b_packed = cm.to_device(np.zeros_like(a)), cm.to_device(np.zeros_like(b))
        return Run(lambda: event_seconds(packed_sgemm(da, db, dc, a_packed, b_packed)), dc.numpy)
    launch = _launcher(a, b)
    return Run(lambda: event_seconds([launch(da, db, dc, k, n)]), dc.numpy)


def cmlang_dpas(inputs_type):
    def setup(inputs, device):
        a, b = inputs["a"], inputs["b"]
        (m, k), (_, n) = a.shape, b.shape
        out = np.int32 if inputs_type == "i8" else np.float32
        da, db, dc = cm.to_device(a), cm.to_device(b), cm.to_device(np.zeros((m, n), out))
        launch = _dpas_launcher(inputs_type, a, b)
        return Run(lambda: event_seconds([launch(da, db, dc, m, k, n)]), dc.numpy)
    return setup


def opencl_simt(inputs, device):
    a, b = inputs["a"], inputs["b"]
    (m, k), (_, n) = a.shape, b.shape
    options = OPENCL_OPTIONS[a.dtype.str]
    out = np.int32 if a.dtype == np.int8 else np.float32
    kernel = opencl_kernel(device, OPENCL_SOURCE, "gemm_tiled", options)
    da, db, dc = to_buffer(device, a), to_buffer(device, b), to_buffer(device, np.empty((m, n), out), copy=False)
    wg = OPENCL_TILE // OPENCL_WPT
    grid = (n // OPENCL_WPT, m // OPENCL_WPT)

    def run():
        return event_seconds([kernel(device.queue, grid, (wg, wg), np.int32(m), np.int32(n), np.int32(k), da, db, dc)])
    return Run(run, lambda: from_buffer(device, dc, ((m, n), out)))


def numpy_impl(inputs):
    a, b = inputs["a"], inputs["b"]
    if a.dtype == np.float16:   # numpy has no f16 BLAS: convert, then sgemm
        return host_run(lambda: a.astype(np.float32) @ b.astype(np.float32))
    return host_run(lambda: a @ b)


def clblast_impl(inputs, device):
    try:
        import pyclblast
    except ImportError:
        raise Skip("pyclblast is not installed") from None
    import pyopencl.array as cla
    a, b = inputs["a"], inputs["b"]
    (m, k), (_, n) = a.shape, b.shape
    if a.dtype != np.float32:
        raise Skip("CLBlast is compared on f32 only")
    queue = device.queue
    da, db = cla.to_device(queue, a), cla.to_device(queue, b)
    dc = cla.zeros(queue, (m, n), np.float32)

    def enqueue():
        pyclblast.gemm(queue, m, n, k, da, db, dc, a_ld=k, b_ld=n, c_ld=n)
    # CLBlast runs helper kernels besides the GEMM and returns one event: time them all.
    return Run(lambda: span_seconds(queue, enqueue), dc.get)


SIZES = {"tiny": {"m": 64, "n": 64, "k": 64},
         "quick": {"m": 256, "n": 256, "k": 256},
         "full": {"m": 1024, "n": 1024, "k": 1024}}
SGEMM_SIZES = dict(SIZES, large={"m": 4096, "n": 4096, "k": 4096})   # --size large


def _flops(p):
    return 2.0 * p["m"] * p["n"] * p["k"]


def _bytes(itemsize):
    return lambda p: itemsize * (p["m"] * p["k"] + p["k"] * p["n"]) + 4 * p["m"] * p["n"]


benchmarks = [
    Benchmark(
        name="sgemm", description="C = A @ B, f32",
        sizes=SGEMM_SIZES, make_inputs=make_inputs, reference=reference,
        implementations={"cmlang": cmlang_impl, "opencl-simt": opencl_simt,
                         "numpy": lambda inputs, device: numpy_impl(inputs), "clblast": clblast_impl},
        flops=_flops, bytes=_bytes(4), rtol=1e-3, atol=1e-3,
        size_label=lambda p: f"{p['m']}x{p['n']}x{p['k']}"),
    Benchmark(
        name="hgemm", description="C = A @ B, f16 inputs, f32 accumulate",
        sizes=SIZES, make_inputs=lambda p, rng: make_inputs(p, rng, np.float16), reference=reference,
        implementations={"cmlang": cmlang_impl, "opencl-simt": opencl_simt,
                         "numpy": lambda inputs, device: numpy_impl(inputs),
                         "cmlang-dpas": cmlang_dpas("f16")},
        flops=_flops, bytes=_bytes(2), rtol=1e-3, atol=1e-3,
        size_label=lambda p: f"{p['m']}x{p['n']}x{p['k']}"),
    Benchmark(
        name="bgemm", description="C = A @ B, bf16 inputs, f32 accumulate (cm.dpas)",
        sizes=SIZES, make_inputs=make_bf16_inputs, reference=bf16_reference,
        implementations={"cmlang": cmlang_dpas("bf16"), "opencl-simt": opencl_simt,
                         "numpy": numpy_as(bf16_bits_to_f32)},
        flops=_flops, bytes=_bytes(2), rtol=1e-3, atol=1e-3,
        size_label=lambda p: f"{p['m']}x{p['n']}x{p['k']}"),
    Benchmark(
        name="igemm", description="C = A @ B, i8 inputs, i32 accumulate (cm.dpas)",
        sizes=SIZES, make_inputs=make_i8_inputs, reference=i8_reference,
        implementations={"cmlang": cmlang_dpas("i8"), "opencl-simt": opencl_simt,
                         "numpy": numpy_as(lambda x: x.astype(np.int32))},
        flops=_flops, bytes=lambda p: p["m"] * p["k"] + p["k"] * p["n"] + 4 * p["m"] * p["n"],
        rtol=0, atol=0, size_label=lambda p: f"{p['m']}x{p['n']}x{p['k']}"),
]
