"""The GEMM tile kernel (examples/core/dpas_gemm.py, also the dpas kernel of the
hgemm/bgemm/igemm benchmarks) reaches the systolic unit on the GPUs and matches numpy on
the CPU device.

- ISA (Intel's compiler, via ocloc): with f16, bf16 and i8 inputs, built for PVC (simd 16)
  and DG2 (simd 8) in SIMT, and f16/bf16 in spirv-vc: one ``dpas`` per 8 x E x K-step tile
  of the k-loop body, no external call, no spill.  i8 on spirv-vc is not built here (not
  supported there yet).
- With its tiles by ``cm.load_2d`` (B2D=1) on PVC: 2-D block messages (b through the
  VNNI-transforming load), and, the matrices' surfaces proven at launch, no per-element
  path: fewer instructions than the row loads.  The same code's numbers in the
  vector-compute emulator (its messages defined from their documented meaning).
- The benchmark kernels' tile (M x N and simd) is chosen by cm.autotune per device: ranked
  by IGC's stats for PVC and DG2, the choice runs on the unit without spilling.
- Numbers on the CPU device and in the interpreter: f16 and bf16 products are exact in f32
  (11 + 11 and 8 + 8 significand bits < 24), so against the float64 product of the rounded
  inputs the only error is f32 accumulation, |C - A @ B| <= gamma_K * (|A| @ |B|) with
  gamma_K = K u / (1 - K u), u = 2^-24 (Higham's bound for a sum of K terms; K here
  includes the k-steps, summed in any order).  Against the unrounded float64 inputs the
  input rounding adds (2 u_in + u_in^2) * (|A| @ |B|), u_in = 2^-11 (f16), 2^-8 (bf16).
  i8 with i32 accumulate is exact.
"""
import warnings

import numpy as np
import pytest

import cmlang as cm
from cmlang import bf16, f16, i8
from cmlang.codegen import intel_gpu
from examples.core import dpas_gemm
from examples.bench import sgemm as bench_gemm

needs_ocloc = pytest.mark.skipif(not intel_gpu.available(),
                                 reason="Intel's offline compiler (ocloc) is not installed")
EXEC_SIZE = {"pvc": 16, "dg2": 8}
TYPES = {"f16": f16, "bf16": bf16, "i8": i8}
U32 = 2.0 ** -24
INPUT_UNIT_ROUNDOFF = {"f16": 2.0 ** -11, "bf16": 2.0 ** -8}


def operands(inputs, rows, k, cols, seed=0):
    """(a, b as the kernel takes them, a and b as float64 values of what it reads, a and b
    before rounding to the input type)."""
    rng = np.random.default_rng(seed)
    if inputs == "i8":
        a = rng.integers(-128, 128, (rows, k)).astype(np.int8)
        b = rng.integers(-128, 128, (k, cols)).astype(np.int8)
        return a, b, a.astype(np.float64), b.astype(np.float64), None, None
    exact_a, exact_b = rng.uniform(-2, 2, (rows, k)), rng.uniform(-2, 2, (k, cols))
    if inputs == "f16":
        a, b = exact_a.astype(np.float16), exact_b.astype(np.float16)
        return a, b, a.astype(np.float64), b.astype(np.float64), exact_a, exact_b
    a, b = dpas_gemm.to_bf16(exact_a), dpas_gemm.to_bf16(exact_b)
    values = [cm.runtime.interpreter.bf16_bits_to_f32(x).astype(np.float64) for x in (a, b)]
    return a, b, *values, exact_a, exact_b


def check_within_rounding(c, inputs, a64, b64, exact_a, exact_b):
    """C against float64 references within the bounds of the module docstring."""
    if inputs == "i8":
        np.testing.assert_array_equal(c, (a64 @ b64).astype(np.int64))
        return
    k = a64.shape[1]
    gamma = k * U32 / (1 - k * U32)
    magnitude = np.abs(a64) @ np.abs(b64)
    error = np.abs(c.astype(np.float64) - a64 @ b64)
    assert (error <= gamma * magnitude).all(), (error / magnitude).max()
    u_in = INPUT_UNIT_ROUNDOFF[inputs]
    exact_magnitude = np.abs(exact_a) @ np.abs(exact_b)
    bound = (2 * u_in + u_in ** 2 + gamma * (1 + u_in) ** 2) * exact_magnitude
    assert (np.abs(c.astype(np.float64) - exact_a @ exact_b) <= bound).all()


# --- the systolic unit, in IGC's ISA -----------------------------------------------------------

ISA_CASES = [(inputs, device, target) for inputs in TYPES for device in EXEC_SIZE
             for target in ("spirv", "spirv-vc") if not (inputs == "i8" and target == "spirv-vc")]


@needs_ocloc
@pytest.mark.parametrize("inputs,device,target", ISA_CASES, ids=["-".join(c) for c in ISA_CASES])
def test_gemm_tile_is_dpas_without_spills(inputs, device, target):
    E = EXEC_SIZE[device]
    # 16 x 2E: the tile IGC's ranking picks for f16/bf16; for i8 8 x 2E (16 x 32 spills
    # 1,152 bytes on PVC: the i8 operands' packing needs more registers)
    M, N, KT = 8 if inputs == "i8" else 16, 2 * E, dpas_gemm.K_STEP[inputs]
    kernel = dpas_gemm.gemm_kernel(TYPES[inputs], simd=E)
    a, b, *_ = operands(inputs, 64, 64, 64)
    c = np.zeros((64, 64), np.int32 if inputs == "i8" else np.float32)
    ck = kernel.compile(a, b, c, 64, 64, 64, M, N, KT, 0, target=target, device=device)
    # the k-loop body: M / 8 repeat-8 tiles times N / E column tiles, one K-step each
    assert ck.stats["dpas"] == (M // 8) * (N // E) > 0, ck.isa
    assert "dpas.8x8" in ck.isa
    assert ck.stats["spill_bytes"] == 0
    assert "calla" not in ck.isa           # every builtin resolved (a misspelt one is a call)


@needs_ocloc
@pytest.mark.parametrize("inputs,target", [(i, t) for i in TYPES for t in ("spirv", "spirv-vc")])
def test_block2d_tiles_are_block_messages_on_pvc(inputs, target):
    M, N, KT = 8, 32, dpas_gemm.K_STEP[inputs]
    kernel = dpas_gemm.gemm_kernel(TYPES[inputs], simd=16)
    a, b, *_ = operands(inputs, 64, 64, 64)
    c = np.zeros((64, 64), np.int32 if inputs == "i8" else np.float32)
    rows = kernel.compile(a, b, c, 64, 64, 64, M, N, KT, 0, target=target, device="pvc")
    blocks = kernel.compile(a, b, c, 64, 64, 64, M, N, KT, 1, target=target, device="pvc")
    assert blocks.ir.count("surface_fits=1") == 2           # A's and B's surfaces proven
    assert blocks.stats["block2d"] >= 2 and blocks.stats["dpas"] == rows.stats["dpas"] == 2
    assert blocks.stats["spill_bytes"] == 0
    assert blocks.stats["instructions"] < rows.stats["instructions"], (blocks.stats, rows.stats)


@pytest.mark.parametrize("inputs", ["f16", "bf16"])
def test_block2d_tiles_match_numpy_in_the_emulator(inputs):
    """PVC's vector-compute code with the surfaces proven: messages alone, then dpas."""
    from vc_emulator import run_isolated
    from cmlang.runtime.profiles import get_profile
    from test_vc_block2d_messages import aligned
    M, N, KT, rows, k, cols = 8, 32, 16, 16, 32, 64
    a, b, a64, b64, exact_a, exact_b = operands(inputs, rows, k, cols, seed=21)
    c = np.zeros((rows, cols), np.float32)
    kernel = dpas_gemm.gemm_kernel(TYPES[inputs], simd=16)
    args = (a, b, c, rows, k, cols, M, N, KT, 1)
    key, runtime = kernel._split_args(args)
    surfaces = kernel.proven_surfaces(key, runtime, "pvc")
    assert surfaces == (0, 1)
    spec = kernel.specialization(key, "spirv-vc", get_profile("pvc"), surfaces=surfaces)
    assert "llvm.genx.lsc.load2d" in spec.llvm_ir and "svm.gather" not in spec.llvm_ir
    out = run_isolated(spec, (cols // N, rows // M), None,
                       [aligned(x.ravel()) if isinstance(x, np.ndarray) else x for x in runtime])
    check_within_rounding(out[2].reshape(rows, cols), inputs, a64, b64, exact_a, exact_b)


@pytest.mark.parametrize("inputs", list(TYPES))
def test_block2d_tiles_match_numpy_on_the_device_and_in_the_interpreter(inputs):
    KT = dpas_gemm.K_STEP[inputs]
    rows, k, cols = 24, 3 * KT, 48
    a, b, a64, b64, exact_a, exact_b = operands(inputs, rows, k, cols, seed=17)
    kernel = dpas_gemm.gemm_kernel(TYPES[inputs], simd=16)
    for run in (kernel, cm.kernel(simd=16, interpret=True)(kernel.fn)):
        c = np.zeros((rows, cols), np.int32 if inputs == "i8" else np.float32)
        run[(cols // 16, rows // 8)](a, b, c, rows, k, cols, 8, 16, KT, 1)
        check_within_rounding(c, inputs, a64, b64, exact_a, exact_b)


@needs_ocloc
@pytest.mark.parametrize("inputs", list(TYPES))
@pytest.mark.parametrize("device", list(EXEC_SIZE))
def test_the_tuned_tile_for_each_gpu_is_on_the_unit(inputs, device):
    """cm.autotune ranks the benchmark kernel's configs by IGC's stats for the GPU: the
    configs at another simd cannot map there and are skipped; the choice has no spill."""
    a, b, *_ = operands(inputs, 256, 256, 256)
    c = np.zeros((256, 256), np.int32 if inputs == "i8" else np.float32)
    tuned = bench_gemm.DPAS_KERNELS[inputs]
    with pytest.warns(cm.AutotuneWarning, match="needs simd="):
        config = tuned[lambda cf: (256 // cf["N"], 256 // cf["M"])].tune(a, b, c, 256, 256, 256, device=device)
    assert tuned.how in ("ranked", "cached")
    assert config["simd"] == EXEC_SIZE[device]
    chosen = [row for row in tuned.table if row.config == config][0]
    assert chosen.stats["dpas"] > 0 and chosen.stats["spill_bytes"] == 0
    assert all(row.status == "ok" or "needs simd" in row.status or "spill" in row.status
               for row in tuned.table)


@needs_ocloc
@pytest.mark.parametrize("inputs", ["f16", "bf16"])
@pytest.mark.parametrize("device", list(EXEC_SIZE))
def test_the_tuned_tile_for_each_gpu_in_spirv_vc(inputs, device):
    """Ranked by the stats of the spirv-vc code, a choice of its own (another memo and
    disk key than SIMT's), on the unit without spilling (a spirv-vc thread is not a
    sub-group: the unit's width is the dpas tile's N, whatever the simd)."""
    a, b, *_ = operands(inputs, 256, 256, 256)
    c = np.zeros((256, 256), np.float32)
    tuned = bench_gemm.DPAS_KERNELS[inputs]
    launch = tuned[lambda cf: (256 // cf["N"], 256 // cf["M"])]
    with warnings.catch_warnings():     # on DG2 the simd-16 configs do not build; PVC takes all
        warnings.simplefilter("ignore", cm.AutotuneWarning)
        config = launch.tune(a, b, c, 256, 256, 256, device=device, target="spirv-vc")
    chosen = [row for row in tuned.table if row.config == config][0]
    assert chosen.stats["dpas"] > 0 and chosen.stats["spill_bytes"] == 0
    assert any(where == f"{device}/spirv-vc" for where, _ in tuned._choices)


def test_a_tile_the_unit_cannot_take_is_an_error_on_pvc():
    kernel = dpas_gemm.gemm_kernel(f16, simd=16)
    a = np.zeros((16, 16), np.float16)
    with pytest.raises(cm.CompileError, match=r"M=8, N=8, K=16 \(f16\) does not map onto the systolic unit"):
        kernel.compile(a, a, np.zeros((16, 16), np.float32), 16, 16, 16, 8, 8, 16, 0, device="pvc")


# --- numbers on the CPU device and in the interpreter ---------------------------------------

@pytest.mark.parametrize("inputs", list(TYPES))
@pytest.mark.parametrize("simd,M,N", [(16, 8, 16), (16, 16, 32), (8, 8, 8), (8, 16, 16)])
def test_gemm_tile_matches_numpy_on_the_device(inputs, simd, M, N):
    KT = dpas_gemm.K_STEP[inputs]
    rows, k, cols = 32, 4 * KT, 64
    a, b, a64, b64, exact_a, exact_b = operands(inputs, rows, k, cols, seed=simd + M + N)
    c = np.zeros((rows, cols), np.int32 if inputs == "i8" else np.float32)
    dpas_gemm.gemm_kernel(TYPES[inputs], simd=simd)[(cols // N, rows // M)](a, b, c, rows, k, cols, M, N, KT, 0)
    check_within_rounding(c, inputs, a64, b64, exact_a, exact_b)


@pytest.mark.parametrize("inputs", list(TYPES))
def test_gemm_tile_matches_numpy_in_the_interpreter(inputs):
    KT = dpas_gemm.K_STEP[inputs]
    rows, k, cols = 16, 2 * KT, 32
    a, b, a64, b64, exact_a, exact_b = operands(inputs, rows, k, cols, seed=3)
    c = np.zeros((rows, cols), np.int32 if inputs == "i8" else np.float32)
    kernel = cm.kernel(simd=16, interpret=True)(dpas_gemm.gemm_kernel(TYPES[inputs]).fn)
    kernel[(cols // 16, rows // 8)](a, b, c, rows, k, cols, 8, 16, KT, 0)
    check_within_rounding(c, inputs, a64, b64, exact_a, exact_b)


@pytest.mark.parametrize("inputs", list(TYPES))
def test_the_benchmark_matmul_matches_numpy(inputs):
    a, b, a64, b64, exact_a, exact_b = operands(inputs, 64, 128, 64, seed=5)
    check_within_rounding(bench_gemm.dpas_matmul(a, b, inputs), inputs, a64, b64, exact_a, exact_b)
    check_within_rounding(dpas_gemm.matmul(a, b, inputs=inputs), inputs, a64, b64, exact_a, exact_b)


def test_the_bound_catches_a_product_rounded_to_the_input_type():
    """The check is tight enough to see a kernel that rounds each product to f16."""
    a, b, a64, b64, exact_a, exact_b = operands("f16", 8, 64, 16, seed=9)
    products = (a[:, :, None].astype(np.float32) * b[None, :, :].astype(np.float32)).astype(np.float16)
    c = products.astype(np.float32).sum(axis=1)
    with pytest.raises(AssertionError):
        check_within_rounding(c, "f16", a64, b64, exact_a, exact_b)


# --- cmlang isa: the benchmark kernels, ranked per GPU ------------------------------------------

@needs_ocloc
@pytest.mark.parametrize("device", list(EXEC_SIZE))
def test_cmlang_isa_shows_the_dpas_gemm_on_the_unit_of_each_gpu(device):
    """``cmlang isa hgemm bgemm igemm``: the launches are recorded with the tiles ranked for
    the GPU, so each build is that GPU's config (simd = its unit's width) with IGC's dpas."""
    from cmlang.isa_report import build_rows, launched_specializations
    with warnings.catch_warnings():     # the configs at the other GPU's simd are skipped
        warnings.simplefilter("ignore", cm.AutotuneWarning)
        specs = launched_specializations(["hgemm", "bgemm", "igemm"], size="tiny", report=print,
                                         devices=[device])
    tuned = [s for s in specs if s.name == "dpas_gemm"]
    assert len(tuned) == 3 and all(s.kernel.simd == EXEC_SIZE[device] for s in tuned)
    rows = build_rows(tuned, [device], ["spirv"], progress=False)
    assert len(rows) == 3
    for row in rows:
        assert not row.error, row.error
        assert row.dpas > 0 and row.spill_bytes == 0, row
