"""The vector-compute target ``spirv-vc``: every API and example kernel compiles and validates.

The Intel OpenCL CPU runtime cannot run vector-compute modules, so these tests check the
modules themselves: validity (spirv-val where it can judge them, otherwise the translator's
own reading checked by the LLVM verifier; see ``codegen.vc_translate``), the vector-compute
declarations, the llvm.genx.* intrinsics each op kind lowers to, the kernel ABI, and the
errors for what the target does not support.
"""
import re
import shutil
import sys

import numpy as np
import pytest

import cmlang as cm
from cmlang import bf16, f16, f32, f64, i32
from cmlang.errors import CompileError
from cmlang.codegen import vc_translate
from cmlang.codegen import spirv as cg_spirv
from cmlang.codegen.spirv import disassemble

import test_api as api
from kernel_utils import make_kernel
from examples.core import bitonic, prefix_sum, histogram, transpose, slm_reverse, dpas_gemm

pytestmark = pytest.mark.skipif(
    __import__("importlib").util.find_spec("dpcpp_llvm_spirv") is None,
    reason="the spirv-vc target needs the dpcpp-llvm-spirv wheel (pip install dpcpp-llvm-spirv)")

needs_spirv_val = pytest.mark.skipif(shutil.which("spirv-val") is None, reason="spirv-val not installed")


def vc(kernel, **constexprs):
    return kernel.compile(target="spirv-vc", **constexprs)


# --- every kernel of test_api.py and examples/core ----------------------------------------------

KERNELS = {
    "arith_f32": lambda: (make_kernel(api.k_arith, f32), dict(T=f32, N=24)),
    "arith_i32": lambda: (make_kernel(api.k_arith, i32), dict(T=i32, N=24)),
    "int_ops": lambda: (make_kernel(api.k_int_ops, i32), dict(N=24)),
    "conversions": lambda: (cm.kernel(api.k_conversions), dict(N=24)),
    "construct": lambda: (make_kernel(api.k_construct, f32), dict(T=f32, N=24)),
    "regions": lambda: (make_kernel(api.k_regions, i32), dict(N=24)),
    "matrix_regions": lambda: (make_kernel(api.k_matrix_regions, f32), dict(T=f32)),
    "shuffles": lambda: (make_kernel(api.k_shuffles, f32), dict(N=24)),
    "merge_masks": lambda: (make_kernel(api.k_merge_masks, f32), dict(N=24)),
    "reductions": lambda: (make_kernel(api.k_reductions, i32), dict(R=3, C=8)),
    "math": lambda: (cm.kernel(api.k_math), dict(N=24)),
    "scalar_math": lambda: (cm.kernel(api.k_scalar_math), {}),
    "dpas": lambda: (cm.kernel(api.k_dpas), dict(M=8, K=16, N=16)),
    "gather_scatter": lambda: (make_kernel(api.k_gather_scatter, f32), dict(N=24)),
    "atomics": lambda: (cm.kernel(api.k_atomics), {}),
    "slm_barrier": lambda: (make_kernel(api.k_slm_barrier, i32), dict(N=24, G=4)),
    "ids": lambda: (cm.kernel(api.k_ids), {}),
    "control": lambda: (make_kernel(api.k_control, f32), dict(N=24)),
    "early_return": lambda: (cm.kernel(api.k_early_return), {}),
    "saxpy": lambda: (cm.kernel(api.k_saxpy), {}),
    "bitonic": lambda: (bitonic.bitonic_sort_rows, dict(N=32, LOG_N=5)),
    "scan_chunks": lambda: (prefix_sum.scan_chunks, dict(N=64, LOG_N=6)),
    "scan_totals": lambda: (prefix_sum.scan_totals, dict(N=64, LOG_N=6)),
    "add_offsets": lambda: (prefix_sum.add_offsets, dict(N=64)),
    "histogram": lambda: (histogram.histogram_kernel, dict(PER_THREAD=256, GROUP=4)),
    "transpose": lambda: (transpose.transpose_kernel, dict(T=16)),
    "slm_reverse": lambda: (slm_reverse.reverse_groups, dict(N=32, GROUP=4)),
    "dpas_gemm": lambda: (dpas_gemm.dpas_gemm, dict(M=8, N=16, KT=8, B2D=0)),
}


def check_vector_compute_module(spirv: bytes, name: str):
    """The declarations Intel's vISA path needs, and imports of llvm.genx.* only."""
    caps = vc_translate.capabilities(spirv)
    assert vc_translate.VECTOR_COMPUTE_INTEL in caps
    assert cg_spirv.extensions(spirv) == (vc_translate.EXTENSION,)
    text = disassemble(spirv)
    if text is not None:
        assert 'OpExtension "SPV_INTEL_vector_compute"' in text
        assert "OpCapability VectorComputeINTEL" in text
        kernel_id = re.search(r'OpEntryPoint Kernel (%\w+) "' + name + '"', text).group(1)
        assert f"OpDecorate {kernel_id} VectorComputeFunctionINTEL" in text
        assert f"OpExecutionMode {kernel_id} SubgroupSize 1" in text      # one work-item per thread
    imports = cg_spirv.imported_functions(spirv)
    assert imports and all(n.startswith("llvm.genx.") for n in imports), imports


@pytest.mark.parametrize("case", sorted(KERNELS))
def test_every_api_and_example_kernel_compiles_and_validates(case):
    kernel, constexprs = KERNELS[case]()
    ck = vc(kernel, **constexprs)
    assert ck.target == "spirv-vc"
    assert vc_translate.validate(ck.spirv) in ("spirv-val", "read-back")
    check_vector_compute_module(ck.spirv, ck.binary.name)
    assert ck.binary.extensions == ("SPV_INTEL_vector_compute",)


# Registers of 2, 3, 4, 8 or 16 elements only: spirv-val can judge the whole module.
LEGAL_WIDTHS = [
    ("arith", lambda: make_kernel(api.k_arith, f32), dict(T=f32, N=16)),
    ("int_ops", lambda: make_kernel(api.k_int_ops, i32), dict(N=16)),
    ("conversions", lambda: cm.kernel(api.k_conversions), dict(N=16)),
    ("construct", lambda: make_kernel(api.k_construct, i32), dict(T=i32, N=16)),
    ("shuffles", lambda: make_kernel(api.k_shuffles, i32), dict(N=8)),
    ("merge_masks", lambda: make_kernel(api.k_merge_masks, f32), dict(N=16)),
    ("reductions", lambda: make_kernel(api.k_reductions, f32), dict(R=4, C=4)),
    ("math", lambda: cm.kernel(api.k_math), dict(N=16)),
    ("gather_scatter", lambda: make_kernel(api.k_gather_scatter, i32), dict(N=16)),
    ("slm_barrier", lambda: make_kernel(api.k_slm_barrier, i32), dict(N=16, G=4)),
    ("control", lambda: make_kernel(api.k_control, f32), dict(N=16)),
    ("dpas_fma", lambda: cm.kernel(api.k_dpas), dict(M=4, K=4, N=4)),
    ("atomics", lambda: cm.kernel(api.k_atomics), {}),
    ("ids", lambda: cm.kernel(api.k_ids), {}),
]


@needs_spirv_val
@pytest.mark.parametrize("name,make,constexprs", LEGAL_WIDTHS, ids=[c[0] for c in LEGAL_WIDTHS])
def test_modules_with_standard_vector_widths_pass_spirv_val(name, make, constexprs):
    assert vc_translate.validate(vc(make(), **constexprs).spirv) == "spirv-val"


@needs_spirv_val
def test_spirv_val_gap_is_only_the_vector_any_width():
    """spirv-val stops at <24 x float>; the translator reads the module back and LLVM verifies it."""
    ck = vc(cm.kernel(api.k_saxpy))
    with pytest.raises(CompileError, match=r"Illegal number of components \(32\)"):
        cg_spirv.validate(ck.spirv)
    assert vc_translate.VECTOR_ANY_INTEL in vc_translate.capabilities(ck.spirv)
    assert vc_translate.validate(ck.spirv) == "read-back"
    back = vc_translate.read_back(ck.spirv)
    assert "call <32 x float> @llvm.genx.svm.block.ld.unaligned.v32f32.i64(i64" in back


# --- what each op kind lowers to --------------------------------------------------------------

def imports_of(kernel, **constexprs):
    return set(vc_translate.genx_imports(vc(kernel, **constexprs).spirv))


def test_saxpy_module_imports_exactly_block_io_and_ids():
    assert imports_of(cm.kernel(api.k_saxpy)) == {
        "llvm.genx.group.id.x", "llvm.genx.local.id.v3i32", "llvm.genx.local.size.v3i32",
        "llvm.genx.svm.block.ld.unaligned.v32f32.i64", "llvm.genx.svm.block.st.i64.v32f32"}


def test_saxpy_llvm_ir_has_the_vc_kernel_abi():
    ir_text = vc(cm.kernel(api.k_saxpy)).llvm_ir
    assert 'target triple = "spir64-unknown-unknown"' in ir_text
    assert ('define spir_kernel void @"k_saxpy"(ptr addrspace(1) %"x", ptr addrspace(1) %"y", '
            'float %"a", i32 %"n") #0 !intel_reqd_sub_group_size !0') in ir_text
    assert 'attributes #0 = { "CMGenxMain" "VCFunction" "VCSLMSize"="0" "oclrt"="1" }' in ir_text
    assert "!0 = !{ i32 1 }" in ir_text
    # thread_id(0) = group_id.x * local_size.x + local_id.x
    assert re.search(r'mul i32 %"\.\d+", %"\.\d+"\n.*call <3 x i32> @"llvm.genx.local.id.v3i32"', ir_text)
    assert "fmul <32 x float>" in ir_text and "fadd <32 x float>" in ir_text


def test_regions_lower_one_to_one_to_genx_regions():
    ir_text = vc(make_kernel(api.k_regions, i32), N=24).llvm_ir
    # w[1:N:3] = v[0:N//3]: an 8-element wrregion with stride 3 at byte offset 4
    assert re.search(r'call <24 x i32> @"llvm.genx.wrregioni.v24i32.v8i32.i16.i1"\(<24 x i32> %"\.\d+", '
                     r'<8 x i32> %"\.\d+", i32 \d+, i32 8, i32 3, i16 4, i32 undef, i1 1\)', ir_text)
    # v.select(N // 2, 2, 1): 12 elements with stride 2 from byte 4
    assert re.search(r'@"llvm.genx.rdregioni.v12i32.v24i32.i16"\(<24 x i32> %"\.\d+", i32 \d+, '
                     r'i32 12, i32 2, i16 4, i32 undef\)', ir_text)


def test_matrix_regions_column_and_dynamic_rotate():
    names = imports_of(make_kernel(api.k_matrix_regions, f32), T=f32)
    assert "llvm.genx.rdregionf.v6f32.v48f32.i16" in names       # m.column(3)
    assert "llvm.genx.wrregionf.v8f32.v4f32.i16.i1" in names      # t[0:4] = m[2, 4:8]
    ir_text = vc(make_kernel(api.k_shuffles, f32), N=24).llvm_ir
    # v.iselect(idx) with run-time indices: one row per element, i16 byte offsets
    assert re.search(r'@"llvm.genx.rdregionf.v24f32.v24f32.v24i16"\(<24 x float> %"\.\d+", i32 0, i32 1, '
                     r'i32 0, <24 x i16> %"\.\d+", i32 undef\)', ir_text)
    assert "shufflevector <24 x float>" in ir_text                 # constant shuffles


def test_reductions_halve_with_rdregion_and_masks_use_any_all():
    names = imports_of(make_kernel(api.k_reductions, f32), R=3, C=8)
    assert {"llvm.genx.fmax.f32.f32", "llvm.genx.fmin.v16f32.v16f32",
            "llvm.genx.rdregionf.v16f32.v32f32.i16"} <= names
    names = imports_of(make_kernel(api.k_merge_masks, i32), N=24)
    assert {"llvm.genx.any.v24i1", "llvm.genx.all.v24i1"} <= names


def test_math_uses_genx_math_and_opencl_fma():
    spirv = vc(cm.kernel(api.k_math), N=24).spirv
    names = set(vc_translate.genx_imports(spirv))
    for op in ("exp", "log", "sin", "cos", "rndd", "rndu", "absf", "fmin", "fmax", "pow"):
        assert f"llvm.genx.{op}.v24f32" in {re.sub(r"(\.v24f32)+$", ".v24f32", n) for n in names}, op
    text = disassemble(spirv)
    if text is not None:      # fma on 24 lanes: OpenCL fma on 16 + 8 (widths the VC library has)
        assert re.search(r"OpExtInst %v16float %\w+ fma", text) and re.search(r"OpExtInst %v8float %\w+ fma", text)
        # f32 sqrt: OpenCL sqrt (IGC picks IEEE or native per device; genx.ieee.sqrt breaks DG2)
        assert re.search(r"OpExtInst %v16float %\w+ sqrt", text) and "ieee.sqrt" not in " ".join(names)


def test_memory_ops_use_svm_and_slm_messages():
    names = imports_of(make_kernel(api.k_gather_scatter, f32), N=24)
    assert {"llvm.genx.svm.gather.v16f32.v16i1.v16i64", "llvm.genx.svm.gather.v8f32.v8i1.v8i64",
            "llvm.genx.svm.scatter.v16i1.v16i64.v16f32"} <= names
    names = imports_of(make_kernel(api.k_slm_barrier, i32), N=24, G=4)
    assert {"llvm.genx.gather.scaled.v16i32.v16i1.v16i32", "llvm.genx.scatter.scaled.v16i1.v16i32.v16i32",
            "llvm.genx.fence", "llvm.genx.barrier"} <= names
    ck = vc(make_kernel(api.k_slm_barrier, i32), N=24, G=4)
    assert '"VCSLMSize"="384"' in ck.llvm_ir                         # 24 * 4 i32
    assert re.search(r'call void @"llvm.genx.fence"\(i8 33\)\n\s+call void @"llvm.genx.barrier"\(\)', ck.llvm_ir)
    text = disassemble(ck.spirv)
    if text is not None:
        assert "SharedLocalMemorySizeINTEL 384" in text


def test_unaligned_stores_scatter_and_aligned_stores_use_blocks():
    def k(x: cm.ptr[f32], y: cm.ptr[f32]):
        t = cm.thread_id(0)
        v = cm.load(x, t * 16, 16)
        cm.store(y, t * 16, v)         # 64-byte aligned: one block store
        cm.store(y, t * 16 + 1, v)     # unknown alignment: scatter
    names = imports_of(cm.kernel(k))
    assert {"llvm.genx.svm.block.ld.unaligned.v16f32.i64", "llvm.genx.svm.block.st.i64.v16f32",
            "llvm.genx.svm.scatter.v16i1.v16i64.v16f32"} <= names


def test_atomics_use_svm_atomics_and_a_cmpxchg_loop_for_float_add():
    ck = vc(cm.kernel(api.k_atomics))
    names = set(vc_translate.genx_imports(ck.spirv))
    assert {"llvm.genx.svm.atomic.add.v8i32.v8i1.v8i64", "llvm.genx.svm.atomic.imin.v8i32.v8i1.v8i64",
            "llvm.genx.svm.atomic.imax.v8i32.v8i1.v8i64", "llvm.genx.svm.atomic.xchg.v2i32.v2i1.v2i64",
            "llvm.genx.svm.atomic.cmpxchg.v8i32.v8i1.v8i64", "llvm.genx.any.v8i1"} <= names
    assert "atomic.retry:" in ck.llvm_ir


def test_byte_and_half_gathers_move_one_dword_per_lane():
    names = imports_of(histogram.histogram_kernel, PER_THREAD=256, GROUP=4)
    assert "llvm.genx.dword.atomic.add.v16i32.v16i1.v16i32" in names      # SLM histogram bins
    assert "llvm.genx.svm.block.ld.unaligned.v64i8.i64" in names           # 64 pixels, one block

    def k_small(p: cm.ptr[cm.u8], h: cm.ptr[f16], idx: cm.ptr[i32]):
        o = cm.load(idx, 0, 8)
        cm.scatter(p, o, (cm.gather(p, o) + 1).astype(cm.u8))
        cm.scatter(h, o, cm.gather(h, o) * 2)
    ir_text = vc(cm.kernel(k_small)).llvm_ir
    # as IGC lowers them: 1 block of 1 byte (log2 0) or 2 blocks (log2 1), data <4n x i8>
    pred = r'<8 x i1> (?:%"[^"]+"|<[^>]*>)'
    for log2_blocks in (0, 1):
        assert re.search(r'call <32 x i8> @"llvm.genx.svm.gather.v32i8.v8i1.v8i64"\(' + pred
                         + rf', i32 {log2_blocks}, <8 x i64>', ir_text)
        assert re.search(r'call void @"llvm.genx.svm.scatter.v8i1.v8i64.v32i8"\(' + pred
                         + rf', i32 {log2_blocks}, <8 x i64>', ir_text)


@pytest.mark.parametrize("elem,precision", [(f16, 10), (bf16, 9)])
def test_dpas_on_16_bit_inputs_is_a_systolic_dpas2(elem, precision):
    def k_dpas16(a: cm.ptr[elem], b: cm.ptr[elem], c: cm.ptr[f32], M: cm.constexpr, K: cm.constexpr,
                 N: cm.constexpr):
        acc = cm.load(c, 0, (M, N), N)
        cm.store(c, 0, cm.dpas(acc, cm.load(a, 0, (M, K), K), cm.load(b, 0, (K, N), N)), N)
    ck = vc(cm.kernel(k_dpas16), M=8, K=32, N=16)
    # two K steps of 16, each 8 rows x 16 columns; B is packed to VNNI (stride-2 wrregion)
    calls = re.findall(r'call <128 x float> @"llvm.genx.dpas2.v128f32.v128f32.v128i32.v64i32"\((.*)\)', ck.llvm_ir)
    assert len(calls) == 2
    assert calls[0].endswith(f"i32 {precision}, i32 {precision}, i32 8, i32 8, i32 1, i32 1")
    assert re.search(r'@"llvm.genx.wrregioni.v256i16.v128i16.i16.i1"\(<256 x i16> %"\.\d+", <128 x i16> '
                     r'%"\.\d+", i32 32, i32 16, i32 2, i16 2, i32 undef, i1 1\)', ck.llvm_ir)
    assert vc_translate.validate(ck.spirv) == "read-back"


def test_f32_dpas_keeps_f32_products():
    """f32 inputs would lose precision in the TF32 systolic path: broadcast-FMA instead."""
    names = imports_of(cm.kernel(api.k_dpas), M=8, K=16, N=16)
    assert not any("dpas" in n for n in names)


# --- ids and grids --------------------------------------------------------------------------

def test_ids_read_group_local_and_count_registers():
    assert imports_of(cm.kernel(api.k_ids)) == {
        "llvm.genx.group.id.x", "llvm.genx.group.id.y", "llvm.genx.group.id.z",
        "llvm.genx.local.id.v3i32", "llvm.genx.local.size.v3i32", "llvm.genx.group.count.v3i32",
        "llvm.genx.svm.block.st.i64.v8i32"}      # out[flat * 8] is 32-byte aligned


# --- what the target rejects ------------------------------------------------------------------

def test_print_is_a_located_compile_error():
    def k_print(x: cm.ptr[f32]):
        v = cm.load(x, 0, 8)
        print("v = {}", v)
    with pytest.raises(CompileError, match=r"test_vc\.py:\d+:\d+: op print is not supported on spirv-vc yet"):
        vc(cm.kernel(k_print))


def test_f64_transcendentals_are_not_supported_yet():
    def k_exp64(x: cm.ptr[f64]):
        cm.store(x, 0, cm.exp(cm.load(x, 0, 8)))
    with pytest.raises(CompileError, match=r"op exp on f64 is not supported on spirv-vc yet"):
        vc(cm.kernel(k_exp64))


def test_a_module_importing_anything_but_genx_is_rejected():
    text = ('target triple = "spir64-unknown-unknown"\n'
            'declare spir_func float @mystery(float)\n'
            'define spir_kernel void @k(float %a) #0 {\n  %r = call spir_func float @mystery(float %a)\n  ret void\n}\n'
            'attributes #0 = { "CMGenxMain" "VCFunction" "VCSLMSize"="0" "oclrt"="1" }\n')
    with pytest.raises(CompileError, match=r"would import mystery \(only llvm\.genx\.\* intrinsics"):
        vc_translate.llvm_to_spirv_vc(text)


def test_missing_translator_wheel_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "dpcpp_llvm_spirv", None)
    with pytest.raises(CompileError, match=r"pip install dpcpp-llvm-spirv \(or the cmlang\[vc\] extra\)"):
        vc_translate.translator_path()


# --- the lowering computes what the interpreter computes (host emulation) ---------------------
#
# vc_emulator.py JIT-compiles a kernel's spirv-vc LLVM IR for the host, with every llvm.genx.*
# intrinsic replaced by a definition of its documented semantics; the same launch then runs in
# the interpreter, and every array must come out the same.

def run_both(kernel, grid, group, *args, rtol=0.0, atol=0.0):
    from vc_emulator import run_isolated
    key, runtime = kernel._split_args(args)
    compiled = kernel.specialization(key, "spirv-vc")
    expected = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    _interpret(kernel, grid, group, expected)
    emulated = run_isolated(compiled, grid, group, [a.copy() if isinstance(a, np.ndarray) else a for a in runtime])
    want = [a for a in expected if isinstance(a, np.ndarray)]
    got = [a for a in emulated if isinstance(a, np.ndarray)]
    for i, (w, g) in enumerate(zip(want, got)):
        if np.issubdtype(w.dtype, np.floating):
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"array argument #{i}")
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"array argument #{i}")


def _interpret(kernel, grid, group, args):
    import os
    saved = os.environ.get("CMLANG_INTERPRET")
    os.environ["CMLANG_INTERPRET"] = "1"
    try:
        kernel.launch(grid, *args, group=group)
    finally:
        if saved is None:
            del os.environ["CMLANG_INTERPRET"]
        else:
            os.environ["CMLANG_INTERPRET"] = saved


R = np.random.default_rng(7)
N = 24


def rand(dtype, n, lo=-50, hi=50):
    if np.issubdtype(np.dtype(dtype), np.floating):
        return R.uniform(lo, hi, n).astype(dtype)
    return R.integers(lo, hi, n).astype(dtype)


def nonzero(dtype, n):
    return (R.integers(1, 20, n) * np.where(R.random(n) < 0.5, -1, 1)).astype(dtype)


def f16_dpas_kernel():
    def k_dpas_f16(a: cm.ptr[f16], b: cm.ptr[f16], c: cm.ptr[f32], M: cm.constexpr, K: cm.constexpr,
                   N: cm.constexpr):
        acc = cm.load(c, 0, (M, N), N)
        cm.store(c, 0, cm.dpas(acc, cm.load(a, 0, (M, K), K), cm.load(b, 0, (K, N), N)), N)
    return cm.kernel(k_dpas_f16)


def bf16_bits(x):
    return (np.asarray(x, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def bf16_dpas_kernel():
    def k_dpas_bf16(a: cm.ptr[bf16], b: cm.ptr[bf16], c: cm.ptr[f32], M: cm.constexpr, K: cm.constexpr,
                    N: cm.constexpr):
        acc = cm.load(c, 0, (M, N), N)
        cm.store(c, 0, cm.dpas(acc, cm.load(a, 0, (M, K), K), cm.load(b, 0, (K, N), N)), N)
    return cm.kernel(k_dpas_bf16)


def k_small_types(p: cm.ptr[cm.u8], h: cm.ptr[f16], idx: cm.ptr[i32], out: cm.ptr[f16]):
    o = cm.load(idx, 0, 11)                              # 11 lanes: a 16-lane message, 5 masked off
    cm.scatter(p, o, (cm.gather(p, o) + 1).astype(cm.u8))
    cm.scatter(h, o, cm.gather(h, o) * 2, (o & 1) == 0)
    cm.store(out, 3, cm.load(h, 1, 13))                  # unaligned 2-byte rows: gathers and scatters


def k_misaligned(x: cm.ptr[f32], y: cm.ptr[f32]):
    t = cm.thread_id(0)
    v = cm.load(x, t * 16 + 1, 19)                       # a 64-byte block, then a 3-lane gather
    cm.store(y, t * 20 + 1, v * 2)                       # unknown alignment: scattered


EMULATED = {
    "small_types": lambda: (cm.kernel(k_small_types), 1, None,
                            (R.integers(0, 256, 64).astype(np.uint8), rand(np.float16, 64, -4, 4),
                             R.permutation(64)[:11].astype(np.int32), np.zeros(20, np.float16)), {}),
    "misaligned": lambda: (cm.kernel(k_misaligned), 3, None,
                           (rand(np.float32, 64), np.zeros(64, np.float32)), {}),
    "dpas_bf16_systolic": lambda: (bf16_dpas_kernel(), 1, None,
                                   (bf16_bits(rand(np.float32, 4 * 32, -1, 1)), bf16_bits(rand(np.float32, 32 * 32, -1, 1)),
                                    rand(np.float32, 4 * 32, -1, 1), 4, 32, 32), dict(rtol=1e-5, atol=1e-5)),
    "arith_f32": lambda: (make_kernel(api.k_arith, f32), 3, None,
                          (rand(np.float32, 3 * N), nonzero(np.float32, 3 * N), np.zeros(27 * N, np.float32), f32, N),
                          dict(rtol=1e-6)),
    "arith_i32": lambda: (make_kernel(api.k_arith, i32), 3, None,
                          (rand(np.int32, 3 * N), nonzero(np.int32, 3 * N), np.zeros(27 * N, np.int32), i32, N), {}),
    "int_ops": lambda: (make_kernel(api.k_int_ops, i32), 3, None,
                        (rand(np.int32, 3 * N, -1000, 1000), nonzero(np.int32, 3 * N), np.zeros(24 * N, np.int32), N),
                        {}),
    "conversions": lambda: (cm.kernel(api.k_conversions), 3, None,
                            (rand(np.float32, 3 * N, -400, 400), np.zeros(3 * N, np.int32), np.zeros(3 * N, np.uint8),
                             np.zeros(3 * N, np.int32), N), {}),
    "construct": lambda: (make_kernel(api.k_construct, i32), 3, None, (np.zeros(12 * N, np.int32), 5, i32, N), {}),
    "regions": lambda: (make_kernel(api.k_regions, f32), 3, None,
                        (rand(np.float32, 3 * N), np.zeros(12 * N, np.float32), N), {}),
    "matrix_regions": lambda: (make_kernel(api.k_matrix_regions, i32), 3, None,
                               (rand(np.int32, 3 * 48), np.zeros(3 * 64, np.int32), i32), {}),
    "shuffles": lambda: (make_kernel(api.k_shuffles, f32), 3, None,
                         (rand(np.float32, 3 * N), R.integers(0, N, 3 * N).astype(np.int32),
                          np.zeros(18 * N, np.float32), N), {}),
    "merge_masks": lambda: (make_kernel(api.k_merge_masks, i32), 3, None,
                            (rand(np.int32, 3 * N), rand(np.int32, 3 * N), np.zeros(3 * N, np.int32),
                             np.zeros(3, np.int32), N), {}),
    "reductions_i32": lambda: (make_kernel(api.k_reductions, i32), 3, None,
                               (rand(np.int32, 72, -9, 9), np.zeros(3 * 15, np.int32), 3, 8), {}),
    "reductions_f32": lambda: (make_kernel(api.k_reductions, f32), 3, None,
                               (rand(np.float32, 3 * 48, -9, 9), np.zeros(3 * 30, np.float32), 2, 24),
                               dict(rtol=1e-5, atol=1e-5)),
    "math": lambda: (cm.kernel(api.k_math), 3, None,
                     (rand(np.float32, 3 * N, -4, 4), np.zeros(51 * N, np.float32), N), dict(rtol=2e-6, atol=2e-6)),
    "scalar_math": lambda: (cm.kernel(api.k_scalar_math), 3, None,
                            (np.array([0.5, -2.0, 3.0], np.float32), np.zeros(12, np.float32)), dict(rtol=1e-6)),
    "dpas_f32": lambda: (cm.kernel(api.k_dpas), 1, None,
                         (rand(np.float32, 128, -1, 1), rand(np.float32, 256, -1, 1), rand(np.float32, 128, -1, 1),
                          8, 16, 16), dict(rtol=1e-5, atol=1e-5)),
    "dpas_f16_systolic": lambda: (f16_dpas_kernel(), 1, None,
                                  (rand(np.float16, 8 * 32, -1, 1), rand(np.float16, 32 * 16, -1, 1),
                                   rand(np.float32, 8 * 16, -1, 1), 8, 32, 16), dict(rtol=1e-5, atol=1e-5)),
    "gather_scatter": lambda: (make_kernel(api.k_gather_scatter, i32), 3, None,
                               (rand(np.int32, 200), R.integers(0, 200, 3 * N).astype(np.int32),
                                np.full(6 * N, 77, np.int32), N), {}),
    "atomics": lambda: (cm.kernel(api.k_atomics), 8, None,
                        (np.zeros(10, np.int32), np.zeros(10, np.float32), np.full(10, 1 << 20, np.int32),
                         np.full(10, -1, np.int32), np.zeros(8, np.int32), np.zeros(8, np.int32),
                         np.zeros(128, np.int32), R.integers(0, 10, 128).astype(np.int32)), dict(rtol=1e-6)),
    "slm_barrier": lambda: (make_kernel(api.k_slm_barrier, i32), 12, 4,
                            (rand(np.int32, 12 * N, -100, 100), np.zeros(12 * N, np.int32), N, 4), {}),
    "ids": lambda: (cm.kernel(api.k_ids), (4, 6), (2, 3), (np.full(24 * 8, -1, np.int32),), {}),
    "ids_3d": lambda: (cm.kernel(api.k_ids), (4, 2, 2), (2, 1, 2), (np.full(16 * 8, -1, np.int32),), {}),
    "control": lambda: (make_kernel(api.k_control, f32), 3, None,
                        (rand(np.float32, 3 * N, -5, 5), np.zeros(3 * N + 3, np.float32), 4, N), dict(rtol=1e-5)),
    "early_return": lambda: (cm.kernel(api.k_early_return), 6, None, (np.zeros(64, np.float32), 48), {}),
    "bitonic": lambda: (bitonic.bitonic_sort_rows, 2, None, (rand(np.float32, 64), 32, 5), {}),
    "scan_chunks": lambda: (prefix_sum.scan_chunks, 4, None,
                            (rand(np.int32, 256, 0, 9), np.zeros(256, np.int32), np.zeros(4, np.int32), 64, 6), {}),
    "histogram": lambda: (histogram.histogram_kernel, 8, 4,
                          (R.integers(0, 256, 2048).astype(np.uint8), np.zeros(256, np.int32), 256, 4), {}),
    "transpose": lambda: (transpose.transpose_kernel, (2, 1), None,
                          (rand(np.float32, 16 * 32), np.zeros(32 * 16, np.float32), 16, 32, 16), {}),
    "slm_reverse": lambda: (slm_reverse.reverse_groups, 8, 4,
                            (rand(np.float32, 256), np.zeros(256, np.float32), 32, 4), {}),
    "dpas_gemm": lambda: (dpas_gemm.dpas_gemm, (1, 1), None,
                          (rand(np.float32, 8 * 16, -1, 1), rand(np.float32, 16 * 16, -1, 1), np.zeros(128, np.float32),
                           8, 16, 16, 8, 16, 8, 0), dict(rtol=1e-5, atol=1e-5)),
}


@pytest.mark.parametrize("case", sorted(EMULATED))
def test_emulated_spirv_vc_kernel_matches_the_interpreter(case):
    kernel, grid, group, args, tolerance = EMULATED[case]()
    run_both(kernel, grid, group, *args, **tolerance)


def test_launcher_runs_vector_compute_modules_one_work_item_per_cm_thread():
    """VC binaries build with -vc-codegen and map one CM thread to one work-item, as
    their target records in the binary."""
    from cmlang.runtime.launcher import lanes_per_cm_thread, _Plan

    @cm.kernel(simd=16)
    def k(x: cm.ptr[cm.f32]):
        cm.store(x, 0, cm.load(x, 0, 16) + 1.0)
    vc, simt = (k.compile(target=t).binary for t in ("spirv-vc", "spirv"))
    assert (vc.target, simt.target) == ("spirv-vc", "spirv")
    assert (lanes_per_cm_thread(vc), lanes_per_cm_thread(simt)) == (1, 16)
    assert (_Plan(vc).build_options, _Plan(simt).build_options) == ("-vc-codegen", "")
