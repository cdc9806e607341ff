"""cm.dpas on the systolic (XMX) unit: the SIMT flavour calls Intel's sub-group matrix
builtins on device profiles with the unit (codegen/systolic.py) and keeps the FMA lowering
on the CPU profile.

No Intel GPU is here, so the systolic path is checked in the ISA Intel's compiler (IGC, via
ocloc) makes of it: dpas instructions, no external call (a misspelt builtin becomes
``calla``), no spills.  Numbers are checked on the CPU profile (the default device and the
interpreter) against numpy.  The ISA tests skip only where ocloc is not installed (CI
installs it)."""
import numpy as np
import pytest

import cmlang as cm
from cmlang import bf16, f16, f32, i32, i8, u8
from cmlang.codegen import intel_gpu, spirv as cg_spirv, systolic
from cmlang.errors import CompileError
from cmlang.runtime.profiles import get_profile

needs_ocloc = pytest.mark.skipif(not intel_gpu.available(),
                                 reason="Intel's offline compiler (ocloc) is not installed")
EXEC_SIZE = {"pvc": 16, "dg2": 8}


def gemm_tile(T, M, N, K, simd, interpret=False, TB=None):
    """c[M, N] += a[M, K] @ b[K, N], every operand row-major and dense (c: i32 for i8/u8)."""
    TB = TB or T
    TC = i32 if T in (i8, u8) else f32

    def dpas_tile(a: cm.ptr[T], b: cm.ptr[TB], c: cm.ptr[TC]):
        acc = cm.load(c, 0, (M, N), N)
        acc = cm.dpas(acc, cm.load(a, 0, (M, K), K), cm.load(b, 0, (K, N), N))
        cm.store(c, 0, acc, N)
    return cm.kernel(simd=simd, interpret=interpret)(dpas_tile)


def bf16_bits(x):
    """float32 -> bf16 bits, round to nearest even."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_value(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


# --- ISA facts ---------------------------------------------------------------------------

def tiles(M, N, K, E):
    return -(-M // 8) * (N // E) * (K // 16)


@needs_ocloc
@pytest.mark.parametrize("device", ["pvc", "dg2"])
@pytest.mark.parametrize("T", [f16, bf16], ids=["f16", "bf16"])
@pytest.mark.parametrize("M", [1, 2, 4, 5, 8])
def test_one_tile_is_one_dpas(device, T, M):
    E = EXEC_SIZE[device]
    ck = gemm_tile(T, M, E, 16, E).compile(target="spirv", device=device)
    assert ck.stats["dpas"] == 1, ck.isa
    assert ck.stats["external_calls"] == 0 and "calla" not in ck.isa
    assert ck.stats["spill_bytes"] == 0
    assert f"dpas.8x{min(M if M in (1, 2, 4, 8) else 8, 8)}" in ck.isa


@needs_ocloc
@pytest.mark.parametrize("device", ["pvc", "dg2"])
@pytest.mark.parametrize("T", [f16, bf16], ids=["f16", "bf16"])
def test_a_larger_dpas_is_tiled_over_m_n_and_k(device, T):
    E = EXEC_SIZE[device]
    M, N, K = 8, 2 * E, 32
    ck = gemm_tile(T, M, N, K, E).compile(target="spirv", device=device)
    assert ck.stats["dpas"] == tiles(M, N, K, E) == 4
    assert ck.stats["external_calls"] == 0 and ck.stats["spill_bytes"] == 0
    ck = gemm_tile(T, 16, E, 16, E).compile(target="spirv", device=device)
    assert ck.stats["dpas"] == 2 and ck.stats["external_calls"] == 0


@needs_ocloc
def test_f32_dpas_stays_fma_code_on_pvc():
    ck = gemm_tile(f32, 8, 16, 16, 16).compile(target="spirv", device="pvc")
    assert ck.stats["dpas"] == 0 and ck.stats["external_calls"] == 0


# --- what cannot map -----------------------------------------------------------------------

@pytest.mark.parametrize("M,N,K,simd,message", [
    (8, 8, 16, 16, "M=8, N=8, K=16 (f16) does not map onto the systolic unit"),
    (8, 16, 8, 16, "M=8, N=16, K=8 (f16) does not map"),
    (8, 16, 16, 8, "needs simd=16, the kernel has simd=8"),
])
def test_a_shape_that_cannot_map_is_an_error_on_pvc(M, N, K, simd, message):
    with pytest.raises(CompileError) as e:
        _lower(gemm_tile(f16, M, N, K, simd), "pvc")
    assert message in str(e.value)
    assert "N a multiple of 16, K a multiple of 16" in str(e.value)
    assert "test_systolic.py:" in str(e.value)       # the dpas line


def _lower(kernel, profile):
    """The compiled SIMT kernel for a device profile (no native build needed)."""
    return kernel.specialization((), "spirv", get_profile(profile))


def test_the_builtins_are_imports_only_on_profiles_with_the_unit():
    assert systolic.allowed_imports(get_profile("cpu")) == frozenset()
    assert systolic.allowed_imports(get_profile("tgllp")) == frozenset()
    pvc = systolic.allowed_imports(get_profile("pvc"))
    assert "_Z38intel_sub_group_f16_f16_matrix_mad_k16Dv8_sDv8_iDv8_f" in pvc
    assert "_Z40intel_sub_group_bf16_bf16_matrix_mad_k16Dv8_sDv8_iDv8_f" in pvc
    # DG2 runs at sub-group 8: a is int8 there, so b's type repeats (Itanium S_)
    assert "_Z38intel_sub_group_f16_f16_matrix_mad_k16Dv8_iS_Dv8_f" in systolic.allowed_imports(get_profile("dg2"))
    spirv = _lower(gemm_tile(f16, 8, 16, 16, 16), "pvc").binary.spirv
    assert cg_spirv.imported_functions(spirv) == ["_Z38intel_sub_group_f16_f16_matrix_mad_k16Dv8_sDv8_iDv8_f"]
    with pytest.raises(CompileError, match="did not recognise the builtin.*matrix_mad_k16"):
        cg_spirv.check_imports(spirv)           # nothing allowed: the CPU profile's check
    cg_spirv.check_imports(spirv, pvc)
    # on the CPU profile the same kernel imports nothing: the FMA lowering
    assert cg_spirv.imported_functions(_lower(gemm_tile(f16, 8, 16, 16, 16), "cpu").binary.spirv) == []


# --- numbers on the CPU profile (the software path) ------------------------------------------

@pytest.mark.parametrize("interpret", [False, True], ids=["device", "interpreter"])
@pytest.mark.parametrize("M,N,K,simd", [(8, 16, 16, 16), (5, 16, 32, 16), (8, 8, 16, 8), (16, 32, 32, 16)])
def test_f16_dpas_matches_numpy(interpret, M, N, K, simd):
    rng = np.random.default_rng(M * 1000 + N * 10 + K)
    a = rng.uniform(-2, 2, (M, K)).astype(np.float16)
    b = rng.uniform(-2, 2, (K, N)).astype(np.float16)
    c = rng.uniform(-2, 2, (M, N)).astype(np.float32)
    want = c.astype(np.float64) + a.astype(np.float64) @ b.astype(np.float64)
    gemm_tile(f16, M, N, K, simd, interpret)[1](a, b, c)
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("interpret", [False, True], ids=["device", "interpreter"])
def test_bf16_dpas_matches_numpy(interpret):
    rng = np.random.default_rng(7)
    M, N, K = 8, 16, 32
    a = bf16_bits(rng.uniform(-2, 2, (M, K)))
    b = bf16_bits(rng.uniform(-2, 2, (K, N)))
    c = rng.uniform(-2, 2, (M, N)).astype(np.float32)
    want = c.astype(np.float64) + bf16_value(a).astype(np.float64) @ bf16_value(b).astype(np.float64)
    gemm_tile(bf16, M, N, K, 16, interpret)[1](a, b, c)
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5)


# --- the systolic lowering's layouts, run on the CPU runtime ------------------------------------
#
# No Intel GPU is here; to check the operand layouts and the tiling numerically, the SIMT
# lowering for a profile with the unit runs on the CPU runtime with each matrix builtin
# *defined* (in LLVM IR, with sub-group shuffles) by its documented per-lane semantics:
# acc[r] (lane l: column l) += sum over k of a[r, k] * b[k, l], where a[r, k] is in lane k
# (sub-group 16: a short per row) or in half k % 2 of lane k // 2 (sub-group 8: an int per
# row), and b[k, l] is in half k % 2 of dword k // 2 of lane l.

def define_matrix_builtin(lowering, fn, simd):
    from llvmlite import ir
    from cmlang.codegen.llvm_builtins import FLOAT, I32
    i16, half = ir.IntType(16), ir.HalfType()
    bf16_inputs = "_bf16_bf16_" in fn.name
    integer = "_matrix_mad_k32" in fn.name
    if integer:
        return define_integer_matrix_builtin(lowering, fn, simd)
    a, b_packed, acc = fn.args
    repeat = acc.type.count if isinstance(acc.type, ir.VectorType) else 1
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    bi = lowering.bi

    def half_of(dword, k):
        bits = builder.trunc(builder.lshr(dword, ir.Constant(I32, 16 * (k % 2))), i16)
        if bf16_inputs:
            return builder.bitcast(builder.shl(builder.zext(bits, I32), ir.Constant(I32, 16)), FLOAT)
        return builder.fpext(builder.bitcast(bits, half), FLOAT)

    def element(v, r):
        return v if repeat == 1 else builder.extract_element(v, ir.Constant(I32, r))
    result = acc
    for r in range(repeat):
        a_row = element(a, r)
        total = element(acc, r)
        for k in range(16):
            if simd == 16:
                a_k = half_of(bi.shuffle(builder, builder.zext(a_row, I32), ir.Constant(I32, k)), 0)
            else:
                a_k = half_of(bi.shuffle(builder, a_row, ir.Constant(I32, k // 2)), k)
            b_k = half_of(builder.extract_element(b_packed, ir.Constant(I32, k // 2)), k)
            total = bi.intrinsic(builder, "llvm.fma.f32", FLOAT, a_k, b_k, total)
        result = total if repeat == 1 else builder.insert_element(result, total, ir.Constant(I32, r))
    builder.ret(result)


def define_integer_matrix_builtin(lowering, fn, simd):
    """intel_sub_group_{i8,u8}_{i8,u8}_matrix_mad_k32: a[r, k] is byte k % per of lane
    k // per's value of row r (per = 32 / simd), b[k, l] byte k % 4 of dword k // 4 of lane l."""
    from llvmlite import ir
    from cmlang.codegen.llvm_builtins import I32
    i8 = ir.IntType(8)
    stem = fn.name.split("intel_sub_group_")[1]
    a_signed, b_signed = stem.startswith("i8"), stem.split("_")[1] == "i8"
    a, b_packed, acc = fn.args
    repeat = acc.type.count if isinstance(acc.type, ir.VectorType) else 1
    per = 32 // simd
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    bi = lowering.bi

    def byte_of(value, q, signed):
        byte = builder.trunc(builder.lshr(value, ir.Constant(I32, 8 * q)), i8)
        return builder.sext(byte, I32) if signed else builder.zext(byte, I32)

    def element(v, r):
        return v if repeat == 1 else builder.extract_element(v, ir.Constant(I32, r))
    result = acc
    for r in range(repeat):
        a_row = element(a, r)
        a_row = a_row if a_row.type == I32 else builder.zext(a_row, I32)
        total = element(acc, r)
        for k in range(32):
            a_k = byte_of(bi.shuffle(builder, a_row, ir.Constant(I32, k // per)), k % per, a_signed)
            b_k = byte_of(builder.extract_element(b_packed, ir.Constant(I32, k // 4)), k % 4, b_signed)
            total = builder.add(total, builder.mul(a_k, b_k))
        result = total if repeat == 1 else builder.insert_element(result, total, ir.Constant(I32, r))
    builder.ret(result)


def run_with_emulated_unit(kernel, device, args):
    """Launch ``kernel`` on the CPU runtime, lowered as for ``device``'s systolic unit."""
    import dataclasses
    from cmlang.codegen import simt
    from cmlang.codegen.target import CodegenResult
    from cmlang.kernel import _launch_binary, make_binary
    profile = dataclasses.replace(get_profile("cpu"), name="cpu-with-systolic",
                                  systolic=get_profile(device).systolic)
    fn = kernel.ir_function(())
    lowering = simt.KernelLowering(fn, cg_spirv.data_layout(), profile)
    lowering.run()
    builtins = [f for f in lowering.module.functions if "matrix_mad" in f.name]
    assert builtins and {f.name for f in builtins} <= systolic.allowed_imports(profile)
    for f in builtins:
        define_matrix_builtin(lowering, f, fn.simd)
    final, spirv = cg_spirv.llvm_to_spirv(str(lowering.module))      # nothing imported now
    result = CodegenResult(final, spirv, fn.name, cg_spirv.extensions(spirv), "spirv", fn.simd, "")
    _launch_binary(make_binary(fn, result, "cpu"), (1,), None, args).wait()


@pytest.mark.parametrize("device", ["pvc", "dg2"])
@pytest.mark.parametrize("T", [f16, bf16], ids=["f16", "bf16"])
@pytest.mark.parametrize("M,n_tiles,K", [(8, 1, 16), (3, 2, 32), (13, 2, 48), (1, 1, 16), (2, 3, 16), (4, 1, 32)])
def test_systolic_layouts_and_tiling_match_numpy(device, T, M, n_tiles, K):
    E = EXEC_SIZE[device]
    N = n_tiles * E
    rng = np.random.default_rng(M * 100 + N + K)
    a = rng.uniform(-2, 2, (M, K)).astype(np.float32)
    b = rng.uniform(-2, 2, (K, N)).astype(np.float32)
    if T == f16:
        a, b = a.astype(np.float16), b.astype(np.float16)
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
    else:
        a, b = bf16_bits(a), bf16_bits(b)
        a64, b64 = bf16_value(a).astype(np.float64), bf16_value(b).astype(np.float64)
    c = rng.uniform(-2, 2, (M, N)).astype(np.float32)
    want = c.astype(np.float64) + a64 @ b64
    run_with_emulated_unit(gemm_tile(T, M, N, K, E), device, [a, b, c])
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5)


# --- i8 / u8 inputs, i32 accumulate -----------------------------------------------------------

def int_operands(rng, A, B, M, N, K):
    def draw(T, shape):
        lo, hi = (-128, 128) if T == i8 else (0, 256)
        return rng.integers(lo, hi, shape).astype(T.np_dtype)
    a, b = draw(A, (M, K)), draw(B, (K, N))
    c = rng.integers(-10**6, 10**6, (M, N)).astype(np.int32)
    return a, b, c, c + a.astype(np.int64) @ b.astype(np.int64)


@pytest.mark.parametrize("interpret", [False, True], ids=["device", "interpreter"])
@pytest.mark.parametrize("A,B", [(i8, i8), (u8, i8), (i8, u8), (u8, u8)], ids=str)
@pytest.mark.parametrize("M,N,K,simd", [(8, 16, 32, 16), (3, 12, 7, 8)])
def test_integer_dpas_matches_numpy(interpret, A, B, M, N, K, simd):
    a, b, c, want = int_operands(np.random.default_rng(M + N + K), A, B, M, N, K)
    gemm_tile(A, M, N, K, simd, interpret, TB=B)[1](a, b, c)
    np.testing.assert_array_equal(c, want)


@pytest.mark.parametrize("device", ["pvc", "dg2"])
@pytest.mark.parametrize("A,B", [(i8, i8), (u8, i8), (i8, u8), (u8, u8)], ids=str)
@pytest.mark.parametrize("M,n_tiles,K", [(8, 1, 32), (3, 2, 64)])
def test_integer_systolic_layouts_match_numpy(device, A, B, M, n_tiles, K):
    E = EXEC_SIZE[device]
    a, b, c, want = int_operands(np.random.default_rng(M * K), A, B, M, n_tiles * E, K)
    run_with_emulated_unit(gemm_tile(A, M, n_tiles * E, K, E, TB=B), device, [a, b, c])
    np.testing.assert_array_equal(c, want)


@needs_ocloc
@pytest.mark.parametrize("device", ["pvc", "dg2"])
@pytest.mark.parametrize("A,B", [(i8, i8), (u8, u8), (u8, i8)], ids=str)
def test_integer_dpas_is_dpas_on_the_unit(device, A, B):
    E = EXEC_SIZE[device]
    ck = gemm_tile(A, 8, E, 32, E, TB=B).compile(target="spirv", device=device)
    assert ck.stats["dpas"] == 1 and ck.stats["external_calls"] == 0 and ck.stats["spill_bytes"] == 0
    ck = gemm_tile(A, 3, 2 * E, 64, E, TB=B).compile(target="spirv", device=device)
    assert ck.stats["dpas"] == 4 and ck.stats["external_calls"] == 0


def test_integer_dpas_k_must_be_a_multiple_of_32_on_pvc():
    with pytest.raises(CompileError, match=r"M=8, N=16, K=16 \(i8\) does not map.*K a multiple of 32"):
        _lower(gemm_tile(i8, 8, 16, 16, 16), "pvc")


def test_integer_dpas_needs_an_i32_accumulator():
    def wrong(a: cm.ptr[i8], c: cm.ptr[f32]):
        cm.store(c, 0, cm.dpas(cm.load(c, 0, (8, 16), 16), cm.load(a, 0, (8, 32), 32),
                               cm.load(a, 0, (32, 16), 16)), 16)
    with pytest.raises(CompileError, match=r"with i8/u8 inputs the accumulator must be matrix\[i32, M, N\]"):
        cm.kernel(simd=16)(wrong).compile()
