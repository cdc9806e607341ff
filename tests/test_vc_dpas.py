"""cm.dpas on the vector-compute target (``codegen/vc_dpas.py``).

- f32 (and every dpas without the systolic unit): per k one multiply and one add on the
  whole accumulator, and from the profile's ``dpas_loop_fmas`` on a loop over k, so a big
  dpas stays a module of proportionate size (it was 9 MiB of SPIR-V for lightning_scan);
  numbers against numpy in the host emulator (tests/vc_emulator.py) for every operand form
  the loop reads (a 2-D load left in global or shared memory, a register).
- The systolic unit (``llvm.genx.dpas2``): i8/u8 inputs with i32 accumulate and f32 inputs
  with ``precision="tf32"``, numbers in the emulator (exact for integers; tf32 against the
  interpreter's definition, ``round_to_tf32`` then f32 products and sums), and in Intel's GPU
  compiler's ISA (dpas instructions, no spill) where ocloc is installed.
- tf32 without the unit (tgllp) rounds in software; the interpreter defines it.
"""
import dataclasses
import re

import numpy as np
import pytest

import cmlang as cm
from cmlang import f16, f32, i8, u8, i32
from cmlang.codegen import intel_gpu
from cmlang.errors import CompileError
from cmlang.runtime.interpreter import round_to_tf32
from cmlang.runtime.binary import constexpr_key
from cmlang.runtime.profiles import get_profile

pytestmark = pytest.mark.skipif(
    __import__("importlib").util.find_spec("dpcpp_llvm_spirv") is None,
    reason="the spirv-vc target needs the dpcpp-llvm-spirv wheel (pip install dpcpp-llvm-spirv)")
needs_ocloc = pytest.mark.skipif(not intel_gpu.available(),
                                 reason="Intel's offline compiler (ocloc) is not installed")

RNG = np.random.default_rng(14)


def emulate(ck, grid, args):
    from vc_emulator import run_isolated
    return run_isolated(ck, grid, None, args)


def vc(kernel, profile="cpu"):
    """The spirv-vc module of a kernel without constexprs for a device profile (no native build)."""
    return kernel.specialization((), "spirv-vc", profile)


def dpas_kernel(A, B, M, K, N, precision=None, C=None):
    """c[M, N] += a[M, K] @ b[K, N], every operand a dense row-major 2-D load."""
    C = C or (i32 if A in (i8, u8) else f32)
    if precision is None:
        def tile(a: cm.ptr[A], b: cm.ptr[B], c: cm.ptr[C]):
            acc = cm.load(c, 0, (M, N), N)
            cm.store(c, 0, cm.dpas(acc, cm.load(a, 0, (M, K), K), cm.load(b, 0, (K, N), N)), N)
    else:
        def tile(a: cm.ptr[A], b: cm.ptr[B], c: cm.ptr[C]):
            acc = cm.load(c, 0, (M, N), N)
            cm.store(c, 0, cm.dpas(acc, cm.load(a, 0, (M, K), K), cm.load(b, 0, (K, N), N),
                                   precision="tf32"), N)
    return cm.kernel(simd=16)(tile)


def dpas2_calls(llvm_ir):
    """(B precision, A precision, depth, repeat count) of every llvm.genx.dpas2 call."""
    return [tuple(int(x) for x in m) for m in re.findall(
        r'call <\d+ x \w+> @"llvm\.genx\.dpas2\.[^"]+"\(.*?, i32 (\d+), i32 (\d+), i32 (\d+), i32 (\d+), '
        r'i32 1, i32 1\)', llvm_ir)]


# --- f32: a loop over k, and a module of proportionate size ---------------------------------------

LIGHTNING_SCAN = dict(D=64, C=64, M=4, NT=64, KS=0, KC=0, B2D=False, P=f32, O=f32)   # the attention benchmark's quick size, CPU form


def test_lightning_scan_module_is_within_a_small_multiple_of_the_simt_module():
    """lightning_scan's f32 dpas unrolled into 16-lane FMA calls made an 8.9 MiB spirv-vc
    module against 126 KiB of SIMT; now both are loops over k of whole-register arithmetic."""
    from examples.attention import kernels
    simt = kernels.lightning_scan.compile(target="spirv", **LIGHTNING_SCAN)
    vector = kernels.lightning_scan.compile(target="spirv-vc", **LIGHTNING_SCAN)
    assert len(vector.spirv) < 2 * len(simt.spirv), (len(vector.spirv), len(simt.spirv))


def test_a_big_f32_dpas_is_one_loop_over_k_with_b_streamed_from_memory():
    ck = vc(dpas_kernel(f32, f32, 8, 128, 64))
    loops = re.findall(r"^loop(?:\.\d+)?:", ck.llvm_ir, re.M)
    assert len(loops) == 1, ck.llvm_ir
    body = ck.llvm_ir.split("\nloop:")[1].split("\nloop.exit:")[0]
    # per k: row k of b in block loads, column k of a in one gather, one multiply and one add
    assert body.count("llvm.genx.svm.block.ld.unaligned") == 2 and body.count("llvm.genx.svm.gather") == 1
    assert body.count("fmul <512 x float>") == 1 and body.count("fadd <512 x float>") == 1
    assert "_Z3fma" not in ck.llvm_ir


def test_the_loop_follows_the_profiles_dpas_loop_fmas():
    unrolled_profile = dataclasses.replace(get_profile("cpu"), name="cpu-unrolled", dpas_loop_fmas=0)
    kernel = dpas_kernel(f32, f32, 8, 128, 64)
    unrolled = vc(kernel, unrolled_profile)
    assert "loop:" not in unrolled.llvm_ir and unrolled.llvm_ir.count("fmul <512 x float>") == 128
    assert len(unrolled.spirv) > 4 * len(vc(kernel).spirv)


def big_f32_kernels():
    """The operand forms the k loop reads: 2-D loads left in global memory, in SLM, and
    registers (read at a run-time offset k)."""
    M, K, N = 5, 32, 32

    def in_memory(a: cm.ptr[f32], b: cm.ptr[f32], c: cm.ptr[f32]):
        acc = cm.load(c, 0, (M, N), N)
        cm.store(c, 0, cm.dpas(acc, cm.load(a, 1, (M, K), K + 3), cm.load(b, 2, (K, N), N + 1)), N)

    def in_registers(a: cm.ptr[f32], b: cm.ptr[f32], c: cm.ptr[f32]):
        acc = cm.load(c, 0, (M, N), N)
        ta = cm.load(a, 1, (M, K), K + 3) * 1.0
        tb = cm.load(b, 2, (K, N), N + 1) * 1.0
        cm.store(c, 0, cm.dpas(acc, ta, tb), N)

    def in_slm(a: cm.ptr[f32], b: cm.ptr[f32], c: cm.ptr[f32]):
        sa = cm.slm(f32, M * (K + 3) + 8)
        sb = cm.slm(f32, K * (N + 1) + 8)
        for r in range(M):
            cm.store(sa, 1 + r * (K + 3), cm.load(a, 1 + r * (K + 3), K))
        for r in range(K):
            cm.store(sb, 2 + r * (N + 1), cm.load(b, 2 + r * (N + 1), N))
        cm.barrier()
        acc = cm.load(c, 0, (M, N), N)
        cm.store(c, 0, cm.dpas(acc, cm.load(sa, 1, (M, K), K + 3), cm.load(sb, 2, (K, N), N + 1)), N)

    return {"global memory": in_memory, "registers": in_registers, "slm": in_slm}, (M, K, N)


@pytest.mark.parametrize("form", ["global memory", "registers", "slm"])
def test_big_f32_dpas_loop_matches_numpy_in_the_emulator(form):
    kernels, (M, K, N) = big_f32_kernels()
    ck = vc(cm.kernel(simd=16)(kernels[form]))
    body = ck.llvm_ir.split("\nloop:")[1].split("\nloop.exit:")[0]
    reads = {"global memory": "llvm.genx.svm.gather", "slm": "llvm.genx.gather.scaled",
             "registers": "llvm.genx.rdregionf"}
    assert reads[form] in body and (form == "registers") == ("gather" not in body), body
    a = RNG.uniform(-1, 1, M * (K + 3) + 8).astype(np.float32)
    b = RNG.uniform(-1, 1, K * (N + 1) + 8).astype(np.float32)
    c = RNG.uniform(-1, 1, (M, N)).astype(np.float32)
    a_m = a[1:1 + M * (K + 3)].reshape(M, K + 3)[:, :K].astype(np.float64)
    b_m = b[2:2 + K * (N + 1)].reshape(K, N + 1)[:, :N].astype(np.float64)
    want = c.astype(np.float64) + a_m @ b_m
    *_, got = emulate(ck, 1, [a, b, c])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * K)


def test_f16_dpas_without_the_unit_loops_in_f32():
    """tgllp has no systolic unit: a big f16 dpas is the same f32 loop on converted inputs."""
    ck = vc(dpas_kernel(f16, f16, 8, 64, 32), "tgllp")
    assert "loop:" in ck.llvm_ir and "dpas2" not in ck.llvm_ir
    a = RNG.uniform(-1, 1, (8, 64)).astype(np.float16)
    b = RNG.uniform(-1, 1, (64, 32)).astype(np.float16)
    c = np.zeros((8, 32), np.float32)
    *_, got = emulate(ck, 1, [a, b, c])
    np.testing.assert_allclose(got, a.astype(np.float64) @ b.astype(np.float64), rtol=1e-5, atol=1e-4)


def lightning_scan_args(D, C, M, NT, n_chunks=2, hq=2, **types):
    n = n_chunks * C - 5                 # the last chunk is short
    padded = n_chunks * C
    u = lambda *shape: RNG.uniform(-1, 1, shape).astype(np.float32)     # noqa: E731
    powers = np.ascontiguousarray((0.97 ** np.arange(C + 1))[None, :].repeat(hq, 0).astype(np.float32))
    return [u(hq, padded, D), u(hq, padded, D), u(hq, n_chunks, C, C), u(hq, D, padded), powers,
            u(hq, D, D), np.zeros((n, hq, D), np.float32), n, hq, 1, padded, n_chunks, np.float32(0.25)]


def test_lightning_scan_on_vector_compute_matches_the_interpreter(monkeypatch):
    """The attention kernel whose module was 9 MiB, with its three dpas looping over k
    (operands in global memory), run in the emulator against the interpreter."""
    from examples.attention import kernels
    shape = dict(D=16, C=16, M=4, NT=16, KS=0, KC=0, B2D=False, P=f32, O=f32)
    # a small size whose dpas loop as the quick size's do (the emulator's JIT is slow on big modules)
    looping = dataclasses.replace(get_profile("cpu"), name="cpu-loop-32", dpas_loop_fmas=32)
    key = tuple(constexpr_key(v) for v in shape.values())
    ck = kernels.lightning_scan.specialization(key, "spirv-vc", looping)
    assert ck.llvm_ir.count("\nloop") >= 3
    args = lightning_scan_args(**shape)
    grid = (shape["D"] // shape["NT"], args[8])
    got = emulate(ck, grid, [x.copy() if isinstance(x, np.ndarray) else x for x in args])
    monkeypatch.setenv("CMLANG_INTERPRET", "1")
    want = [x.copy() if isinstance(x, np.ndarray) else x for x in args]
    kernels.lightning_scan[grid](*want, *shape.values())
    for index, what in ((5, "state"), (6, "o")):
        np.testing.assert_allclose(got[index], want[index], rtol=1e-4, atol=1e-4, err_msg=what)


# --- i8 / u8 on the systolic unit -----------------------------------------------------------------

def int_operands(A, B, M, K, N):
    lo = {i8: -128, u8: 0}
    a = RNG.integers(lo[A], lo[A] + 256, (M, K)).astype(np.int8 if A is i8 else np.uint8)
    b = RNG.integers(lo[B], lo[B] + 256, (K, N)).astype(np.int8 if B is i8 else np.uint8)
    c = RNG.integers(-2 ** 20, 2 ** 20, (M, N)).astype(np.int32)
    return a, b, c, (c.astype(np.int64) + a.astype(np.int64) @ b.astype(np.int64)).astype(np.int32)


@pytest.mark.parametrize("A,B,M,K,N", [
    (i8, i8, 8, 32, 16), (u8, u8, 8, 32, 16), (u8, i8, 8, 32, 16), (i8, u8, 8, 32, 16),
    (i8, u8, 11, 64, 16), (u8, i8, 2, 32, 32), (i8, i8, 1, 32, 16)], ids=str)
def test_integer_dpas_is_dpas2_and_exact_in_the_emulator(A, B, M, K, N):
    ck = vc(dpas_kernel(A, B, M, K, N))
    code = {i8: 8, u8: 7}
    repeats = [min(8, M - m0) for m0 in range(0, M, 8)]
    want_calls = [(code[B], code[A], 8, r) for r in repeats for _ in range(N // 16) for _ in range(K // 32)]
    assert sorted(dpas2_calls(ck.llvm_ir)) == sorted(want_calls), ck.llvm_ir
    a, b, c, want = int_operands(A, B, M, K, N)
    *_, got = emulate(ck, 1, [a, b, c])
    np.testing.assert_array_equal(got, want)


def test_integer_dpas_without_the_unit_is_exact_multiply_adds():
    ck = vc(dpas_kernel(i8, u8, 3, 8, 5), "tgllp")
    assert "dpas2" not in ck.llvm_ir
    a, b, c, want = int_operands(i8, u8, 3, 8, 5)
    *_, got = emulate(ck, 1, [a, b, c])
    np.testing.assert_array_equal(got, want)


# --- tf32 ------------------------------------------------------------------------------------------

def tf32_operands(M, K, N):
    """Inputs whose nearest tf32 value is not their truncation (a unit fed unrounded values
    would be off by ~2^-11 per element) plus a spread of magnitudes."""
    def values(shape):
        base = RNG.integers(-1024, 1024, shape) * 2.0 ** -10 + 1.0
        return ((base + 0.75 * 2.0 ** -10) * RNG.choice([-4.0, 0.5, 1.0, 2.0], shape)).astype(np.float32)
    return values((M, K)), values((K, N)), RNG.uniform(-1, 1, (M, N)).astype(np.float32)


def tf32_reference(a, b, c):
    return c.astype(np.float64) + round_to_tf32(a).astype(np.float64) @ round_to_tf32(b).astype(np.float64)


def test_round_to_tf32_is_nearest_even_at_ten_mantissa_bits():
    ulp = 2.0 ** -10
    big = np.finfo(np.float32).max                 # past tf32's largest value (2 - 2^-10) 2^127
    x = np.array([1 + ulp / 2, 1 + 3 * ulp / 2, 1 + ulp / 2 + 2.0 ** -20, -(1 + 0.49 * ulp), big,
                  np.inf, -0.0, 2.0 ** -149, 2.0 ** -126 * (1 + 2 * ulp)], np.float32)
    want = np.array([1.0, 1 + 2 * ulp, 1 + ulp, -1.0, np.inf, np.inf, -0.0, 0.0, 2.0 ** -126 * (1 + 2 * ulp)],
                    np.float32)
    np.testing.assert_array_equal(round_to_tf32(x), want)
    assert np.isnan(round_to_tf32(np.float32(np.nan)))


def test_tf32_dpas_in_the_interpreter_rounds_its_inputs(monkeypatch):
    a, b, c = tf32_operands(4, 8, 16)
    want = tf32_reference(a, b, c)
    got = c.copy()
    monkeypatch.setenv("CMLANG_INTERPRET", "1")
    dpas_kernel(f32, f32, 4, 8, 16, precision="tf32")[1](a, b, got)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    exact = c.astype(np.float64) + a.astype(np.float64) @ b.astype(np.float64)
    assert np.abs(got - exact).max() > 1e-3          # tf32 is not f32


@pytest.mark.parametrize("M,K,N", [(8, 8, 16), (5, 16, 32)])
def test_tf32_dpas_is_dpas2_on_rounded_inputs_in_the_emulator(M, K, N):
    ck = vc(dpas_kernel(f32, f32, M, K, N, precision="tf32"))
    repeats = [min(8, M - m0) for m0 in range(0, M, 8)]
    assert sorted(dpas2_calls(ck.llvm_ir)) == sorted(
        [(12, 12, 8, r) for r in repeats for _ in range(N // 16) for _ in range(K // 8)]), ck.llvm_ir
    a, b, c = tf32_operands(M, K, N)
    *_, got = emulate(ck, 1, [a, b, c])
    np.testing.assert_allclose(got, tf32_reference(a, b, c), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("M,K,N", [(4, 8, 16), (8, 64, 32)], ids=["unrolled", "loop"])
def test_tf32_without_the_unit_rounds_in_software(M, K, N):
    ck = vc(dpas_kernel(f32, f32, M, K, N, precision="tf32"), "tgllp")
    assert "dpas2" not in ck.llvm_ir and ("loop:" in ck.llvm_ir) == (M * K * N // 16 >= 256)
    a, b, c = tf32_operands(M, K, N)
    *_, got = emulate(ck, 1, [a, b, c])
    np.testing.assert_allclose(got, tf32_reference(a, b, c), rtol=1e-6, atol=1e-5)


# --- what cannot map -------------------------------------------------------------------------------

def test_tf32_on_a_unit_without_it_is_an_error():
    with pytest.raises(CompileError, match=r"tf32 inputs: the systolic unit of dg2 does not take them"):
        vc(dpas_kernel(f32, f32, 8, 8, 8, precision="tf32"), "dg2")


@pytest.mark.parametrize("A,K,N,kt", [(i8, 16, 16, 32), (f32, 4, 16, 8), (i8, 32, 8, 32)])
def test_a_shape_that_does_not_tile_the_unit_is_an_error_on_pvc(A, K, N, kt):
    precision = "tf32" if A is f32 else None
    with pytest.raises(CompileError, match=rf"tiles of \(1-8\) x 16 x {kt}.*N must be a multiple of 16 and K of {kt}"):
        vc(dpas_kernel(A, A, 8, K, N, precision=precision), "pvc")


def test_precision_is_tf32_on_f32_inputs_only():
    def bad_name(a: cm.ptr[f32], c: cm.ptr[f32]):
        t = cm.load(a, 0, (8, 8), 8)
        cm.store(c, 0, cm.dpas(cm.zeros(cm.matrix[f32, 8, 8]), t, t, precision="fp8"), 8)

    def on_f16(a: cm.ptr[f16], c: cm.ptr[f32]):
        t = cm.load(a, 0, (8, 16), 16)
        cm.store(c, 0, cm.dpas(cm.zeros(cm.matrix[f32, 8, 16]), t, cm.load(a, 0, (16, 16), 16),
                               precision="tf32"), 16)
    with pytest.raises(CompileError, match=r'precision must be "tf32" \(or left out\), got'):
        cm.kernel(simd=16)(bad_name).compile(target="spirv-vc")
    with pytest.raises(CompileError, match=r'precision="tf32" takes f32 inputs, got matrix<f16'):
        cm.kernel(simd=16)(on_f16).compile(target="spirv-vc")


# --- Intel's GPU compiler ----------------------------------------------------------------------------

@needs_ocloc
@pytest.mark.parametrize("device,A,B,K,N", [
    ("pvc", i8, i8, 32, 16), ("pvc", u8, u8, 32, 16), ("pvc", u8, i8, 32, 16),
    ("pvc", f32, f32, 8, 16), ("dg2", i8, i8, 32, 8), ("dg2", u8, u8, 32, 8)],
    ids=["pvc-i8", "pvc-u8", "pvc-u8xi8", "pvc-tf32", "dg2-i8", "dg2-u8"])
def test_integer_and_tf32_dpas_are_dpas_instructions_without_spill(device, A, B, K, N):
    precision = "tf32" if A is f32 else None
    ck = dpas_kernel(A, B, 8, K, N, precision=precision).compile(target="spirv-vc", device=device)
    assert ck.stats["dpas"] == 1 and ck.stats["spill_bytes"] == 0, ck.stats
    assert re.search(r"\bdpas\.8x8\b", ck.isa)


@needs_ocloc
def test_lightning_scan_on_vector_compute_does_not_spill_on_pvc():
    """It spilled 13,888 bytes with 58,930 instructions when its dpas were unrolled."""
    from examples.attention import kernels
    ck = kernels.lightning_scan.compile(target="spirv-vc", device="pvc", **LIGHTNING_SCAN)
    assert ck.stats["spill_bytes"] == 0 and ck.stats["instructions"] < 10000, ck.stats


def test_the_simt_target_never_ignores_tf32():
    """Until the SIMT lowering computes tf32 it refuses it; either way never exact f32."""
    a, b, c = tf32_operands(4, 8, 16)
    got = c.copy()
    try:
        dpas_kernel(f32, f32, 4, 8, 16, precision="tf32")[1](a, b, got)
    except CompileError as e:
        assert 'precision="tf32" is not lowered for target spirv' in str(e)
        return
    np.testing.assert_allclose(got, tf32_reference(a, b, c), rtol=1e-6, atol=1e-5)
