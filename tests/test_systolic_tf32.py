"""cm.dpas(acc, a, b, precision="tf32"): f32 inputs rounded to tf32 (10 mantissa bits, ties
to even), products and sums in f32.  On PVC the SIMT flavour calls IGC's sub-group tf32
matrix builtin (K = 8 per dpas), checked in IGC's ISA; DG2's unit has no tf32 (an error);
the CPU profile and the interpreter compute it in software, checked against a float64
reference that rounds the inputs its own way (frexp and numpy's round-half-even)."""
import dataclasses

import numpy as np
import pytest

import cmlang as cm
from cmlang import f16, f32
from cmlang.codegen import intel_gpu, spirv as cg_spirv, systolic
from cmlang.errors import CompileError
from cmlang.runtime.interpreter.semantics import round_to_tf32
from cmlang.runtime.profiles import get_profile

needs_ocloc = pytest.mark.skipif(not intel_gpu.available(),
                                 reason="Intel's offline compiler (ocloc) is not installed")


def tf32_tile(M, N, K, simd=16, interpret=False):
    def tf32_gemm(a: cm.ptr[f32], b: cm.ptr[f32], c: cm.ptr[f32]):
        acc = cm.load(c, 0, (M, N), N)
        acc = cm.dpas(acc, cm.load(a, 0, (M, K), K), cm.load(b, 0, (K, N), N), precision="tf32")
        cm.store(c, 0, acc, N)
    return cm.kernel(simd=simd, interpret=interpret)(tf32_gemm)


def tf32_reference(x):
    """float64 values of x rounded to 11 significant bits, ties to even."""
    m, e = np.frexp(np.asarray(x, np.float64))          # x = m * 2**e, 0.5 <= |m| < 1
    return np.ldexp(np.round(m * 2.0**11), e - 11)


def operands(M, N, K, seed):
    rng = np.random.default_rng(seed)
    # values with low mantissa bits set, so that rounding to tf32 shows
    a = rng.uniform(-2, 2, (M, K)).astype(np.float32)
    b = rng.uniform(-2, 2, (K, N)).astype(np.float32)
    c = rng.uniform(-2, 2, (M, N)).astype(np.float32)
    want = c.astype(np.float64) + tf32_reference(a) @ tf32_reference(b)
    exact = c.astype(np.float64) + a.astype(np.float64) @ b.astype(np.float64)
    assert np.abs(want - exact).max() > 1e-3          # tf32 is visibly not f32
    return a, b, c, want


def test_round_to_tf32_rounds_to_nearest_even():
    x = np.array([1 + 2**-11, 1 + 3 * 2**-11, 1 + 2**-11 + 2**-20, -(1 + 3 * 2**-11), 3.4028235e38,
                  np.inf, -np.inf, 0.0, 2**-130, 2**-140], np.float32)
    got = round_to_tf32(x)
    np.testing.assert_array_equal(got[:4], np.array([1, 1 + 4 * 2**-11, 1 + 2 * 2**-11,
                                                     -(1 + 4 * 2**-11)], np.float32))
    assert got[4] == np.inf and got[5] == np.inf and got[6] == -np.inf and got[7] == 0
    assert got[8] == np.float32(2**-130) and got[9] == 0   # subnormals keep their top 10 bits
    assert np.isnan(round_to_tf32(np.array([np.nan], np.float32)))[0]
    y = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    np.testing.assert_array_equal(round_to_tf32(y), tf32_reference(y).astype(np.float32))


@pytest.mark.parametrize("interpret", [False, True], ids=["device", "interpreter"])
@pytest.mark.parametrize("M,N,K,simd", [(8, 16, 8, 16), (5, 16, 24, 16), (3, 12, 7, 8)])
def test_tf32_dpas_matches_a_tf32_reference_on_the_cpu(interpret, M, N, K, simd):
    a, b, c, want = operands(M, N, K, M * N + K)
    tf32_tile(M, N, K, simd, interpret)[1](a, b, c)
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5)


def test_a_large_tf32_dpas_as_a_k_loop_rounds_too():
    # 8 x 32 x 64 is over the profile's dpas_loop_fmas: b's rows are read inside a k loop
    a, b, c, want = operands(8, 32, 64, 3)
    tf32_tile(8, 32, 64)[1](a, b, c)
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-4)


# --- errors ------------------------------------------------------------------------------------

def test_tf32_needs_f32_inputs_and_a_known_precision():
    def halves(a: cm.ptr[f16], c: cm.ptr[f32]):
        m = cm.load(a, 0, (8, 8), 8)
        cm.store(c, 0, cm.dpas(cm.load(c, 0, (8, 8), 8), m, m, precision="tf32"), 8)

    def unknown(a: cm.ptr[f32], c: cm.ptr[f32]):
        m = cm.load(a, 0, (8, 8), 8)
        cm.store(c, 0, cm.dpas(cm.load(c, 0, (8, 8), 8), m, m, precision="bf16x3"), 8)
    with pytest.raises(CompileError, match=r'precision="tf32" takes f32 inputs, got matrix<f16, 8, 8>') as e:
        cm.kernel(simd=8)(halves).compile()
    assert "test_systolic_tf32.py:" in str(e.value)
    with pytest.raises(CompileError, match=r'precision must be "tf32" \(or left out\)'):
        cm.kernel(simd=8)(unknown).compile()


def test_tf32_is_an_error_on_dg2_whose_unit_has_none():
    with pytest.raises(CompileError, match=r'precision="tf32" needs a systolic unit with tf32 \(pvc\); '
                                           r"the dg2 unit has none"):
        tf32_tile(8, 8, 8, simd=8).specialization((), "spirv", get_profile("dg2"))


def test_tf32_shapes_that_cannot_map_are_errors_on_pvc():
    with pytest.raises(CompileError, match=r"M=8, N=16, K=4 \(tf32\) does not map.*K a multiple of 8"):
        tf32_tile(8, 16, 4).specialization((), "spirv", get_profile("pvc"))


def test_the_tf32_builtin_is_an_import_only_on_pvc():
    name = "_Z43intel_sub_group_tf32_tf32_matrix_mad_k8_f32Dv8_sDv8_iDv8_f"
    assert name in systolic.allowed_imports(get_profile("pvc"))
    assert not any("tf32" in n for n in systolic.allowed_imports(get_profile("dg2")))
    spirv = tf32_tile(8, 16, 8).specialization((), "spirv", get_profile("pvc")).binary.spirv
    assert cg_spirv.imported_functions(spirv) == [name]


# --- IGC's ISA ---------------------------------------------------------------------------------

@needs_ocloc
@pytest.mark.parametrize("M,N,K,dpas", [(8, 16, 8, 1), (1, 16, 8, 1), (8, 32, 16, 4), (16, 16, 32, 8)])
def test_tf32_is_dpas_on_pvc(M, N, K, dpas):
    ck = tf32_tile(M, N, K).compile(target="spirv", device="pvc")
    assert ck.stats["dpas"] == dpas and ck.stats["spill_bytes"] == 0 and ck.stats["external_calls"] == 0
    assert all(":tf32" in line for line in ck.isa.splitlines() if line.strip().startswith("dpas"))


@needs_ocloc
def test_f32_dpas_without_tf32_stays_exact_fma_code_on_pvc():
    def exact(a: cm.ptr[f32], b: cm.ptr[f32], c: cm.ptr[f32]):
        cm.store(c, 0, cm.dpas(cm.load(c, 0, (8, 16), 16), cm.load(a, 0, (8, 8), 8),
                               cm.load(b, 0, (8, 16), 16)), 16)
    assert cm.kernel(simd=16)(exact).compile(target="spirv", device="pvc").stats["dpas"] == 0


# --- the PVC lowering run on the CPU runtime, with the builtin defined by its lanes -----------
#
# intel_sub_group_tf32_tf32_matrix_mad_k8_f32: acc[r] (lane l: column l) += sum over k < 8 of
# a[r, k] * b[k, l], where a[r, k]'s bits are the shorts of lanes 2k (low) and 2k + 1 (high) of
# row r's value, and b[k, l] is dword k of lane l.

def define_tf32_builtin(lowering, fn):
    from llvmlite import ir
    from cmlang.codegen.llvm_builtins import FLOAT, I32
    a, b_dwords, acc = fn.args
    repeat = acc.type.count if isinstance(acc.type, ir.VectorType) else 1
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    bi = lowering.bi

    def element(v, r):
        return v if repeat == 1 else builder.extract_element(v, ir.Constant(I32, r))
    result = acc
    for r in range(repeat):
        row = builder.zext(element(a, r), I32)
        total = element(acc, r)
        for k in range(8):
            low = bi.shuffle(builder, row, ir.Constant(I32, 2 * k))
            high = bi.shuffle(builder, row, ir.Constant(I32, 2 * k + 1))
            a_k = builder.bitcast(builder.or_(low, builder.shl(high, ir.Constant(I32, 16))), FLOAT)
            b_k = builder.bitcast(builder.extract_element(b_dwords, ir.Constant(I32, k)), FLOAT)
            total = bi.intrinsic(builder, "llvm.fma.f32", FLOAT, a_k, b_k, total)
        result = total if repeat == 1 else builder.insert_element(result, total, ir.Constant(I32, r))
    builder.ret(result)


def run_with_emulated_tf32_unit(kernel, args):
    from cmlang.codegen import simt
    from cmlang.codegen.target import CodegenResult
    from cmlang.kernel import _launch_binary, make_binary
    profile = dataclasses.replace(get_profile("cpu"), name="cpu-with-tf32", systolic=get_profile("pvc").systolic)
    fn = kernel.ir_function(())
    lowering = simt.KernelLowering(fn, cg_spirv.data_layout(), profile)
    lowering.run()
    builtins = [f for f in lowering.module.functions if "matrix_mad" in f.name]
    assert builtins and all("tf32_tf32_matrix_mad_k8_f32" in f.name for f in builtins)
    for f in builtins:
        define_tf32_builtin(lowering, f)
    final, spirv = cg_spirv.llvm_to_spirv(str(lowering.module))
    result = CodegenResult(final, spirv, fn.name, cg_spirv.extensions(spirv), "spirv", fn.simd, "")
    _launch_binary(make_binary(fn, result, "cpu"), (1,), None, args).wait()


@pytest.mark.parametrize("M,N,K", [(8, 16, 8), (3, 32, 16), (13, 16, 24), (1, 16, 8)])
def test_the_tf32_operand_layouts_match_numpy_with_an_emulated_unit(M, N, K):
    a, b, c, want = operands(M, N, K, 11 * M + K)
    run_with_emulated_tf32_unit(tf32_tile(M, N, K), [a, b, c])
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5)
