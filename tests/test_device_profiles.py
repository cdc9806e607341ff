"""Device profiles decide every device-specific code shape (``runtime/profiles.py``).

The CPU runtime's workarounds (``CpuRuntimeWorkarounds``) are on for the ``cpu`` profile
only: for each flag, the cpu profile's LLVM IR has the workaround and the pvc profile's
does not.  The pvc shapes are checked three ways without a GPU: the SIMT modules are
portable SPIR-V, so they also run on the CPU runtime here and must compute the same
numbers; they pass spirv-val; and Intel's offline compiler builds them for pvc.  The
vector-compute dpas takes its tile width from the profile's systolic unit (pvc 16, dg2 8).
"""
import glob
import os
import re
import shutil
import subprocess
import types

import numpy as np
import pytest

import cmlang as cm
from cmlang import bf16, f16, f32, i32, u16, vector, matrix
from cmlang.runtime import launch
from cmlang.runtime.profiles import PROFILES, CpuRuntimeWorkarounds

HAVE_SPIRV_VAL = shutil.which("spirv-val") is not None
HAVE_OCLOC = shutil.which("ocloc") is not None
RNG = np.random.default_rng(12)
BROADCAST = "@_Z19sub_group_broadcastjj("         # of an i32
ANY_BROADCAST = "@_Z19sub_group_broadcast"
BLOCK_READ_16 = "@_Z30__spirv_SubgroupBlockReadINTELPU3AS1Kt("
BLOCK_READ_16x2 = "@_Z30__spirv_SubgroupBlockReadINTELIDv2_tET_PU3AS1Kt("    # block_read2
BLOCK_WRITE_16 = "@_Z31__spirv_SubgroupBlockWriteINTELPU3AS1tt("


@cm.kernel(simd=16)
def thread_ids(y: cm.ptr[i32]):
    t = cm.thread_id(0)
    cm.store(y, t * 16, cm.full(vector[i32, 16], t * 10 + cm.local_id(0)))


@cm.kernel(simd=16)
def bounded_sum(x: cm.ptr[f32], y: cm.ptr[f32], n: i32):
    t = cm.thread_id(0)
    acc = cm.zeros(vector[f32, 16])
    for i in range(cm.min(n, t + 2)):
        acc += cm.load(x, i * 16, 16)
    cm.store(y, t * 16, acc)


@cm.kernel(simd=16)
def invariant_while(y: cm.ptr[i32], n: i32):
    while n == 12345:           # never entered here; if it were, it would store forever
        cm.store(y, 0, cm.full(vector[i32, 16], -1))
    cm.store(y, 0, cm.full(vector[i32, 16], n + 3))


def copy_16bit(elem):
    def copy(x: cm.ptr[elem], y: cm.ptr[elem]):
        t = cm.thread_id(0)
        v = cm.load(x, t * 32, 32)
        cm.store(y, t * 96, v)              # 64-byte aligned: block writes
        cm.store(y, t * 96 + 34, v)         # 4-byte aligned only: per-lane stores
    copy.__name__ = f"copy_{elem}"
    return cm.kernel(simd=16)(copy)


COPY_16BIT = {elem: copy_16bit(elem) for elem in (f16, u16, bf16)}


@cm.kernel(simd=16)
def gemm_tile(a: cm.ptr[f16], b: cm.ptr[f16], c: cm.ptr[f32], K: cm.constexpr, N: cm.constexpr):
    acc = cm.zeros(matrix[f32, 8, N])
    acc = cm.dpas(acc, cm.load(a, 0, (8, K), K), cm.load(b, 0, (K, N), N))
    cm.store(c, 0, acc, N)


# f32 inputs: dpas stays FMA code on every profile (f16 goes to pvc's systolic unit,
# tests/test_systolic.py), so the CPU workaround's k loop is what differs between profiles.
@cm.kernel(simd=16)
def gemm_tile_f32(a: cm.ptr[f32], b: cm.ptr[f32], c: cm.ptr[f32], K: cm.constexpr, N: cm.constexpr):
    acc = cm.zeros(matrix[f32, 8, N])
    acc = cm.dpas(acc, cm.load(a, 0, (8, K), K), cm.load(b, 0, (K, N), N))
    cm.store(c, 0, acc, N)


def ir_of(kernel, device, **constexprs):
    return kernel.compile(device=device, **constexprs).llvm_ir


def run_binary(kernel, device, grid, args, group=None, **constexprs):
    """Launch the ``device`` profile's binary on the device here (the CPU runtime)."""
    launch(kernel.compile(device=device, **constexprs).binary, grid, group, args)
    return args


# --- the profiles ------------------------------------------------------------------------------

def test_only_the_cpu_profile_has_cpu_runtime_workarounds():
    cpu = PROFILES["cpu"].cpu
    assert (cpu.uniform_ids_from_lane0, cpu.broadcast_loop_bounds, cpu.no_16bit_block_io,
            cpu.saturate_with_compares, cpu.guard_int_division, cpu.one_slot_block_reads) == (True,) * 6
    for name in ("pvc", "dg2", "tgllp", "generic"):
        assert PROFILES[name].cpu == CpuRuntimeWorkarounds(), name
    # the dpas k-loop is every profile's (it keeps FMA-computed products out of registers)
    assert {p.dpas_loop_fmas for p in PROFILES.values()} == {256}


# --- uniform_ids_from_lane0 ----------------------------------------------------------------------

def test_uniform_ids_from_lane0_only_on_the_cpu_profile():
    cpu, pvc = ir_of(thread_ids, "cpu"), ir_of(thread_ids, "pvc")
    # cpu: get_global_id(0) and get_local_id(0) reach the shift through a lane-0 broadcast
    for query in ("_Z13get_global_idj", "_Z12get_local_idj"):
        m = re.search(r"(%[\w.]+) = tail call spir_func i64 @" + query + r"\(i32 0\)\n\s*(%[\w.]+) = trunc i64 \1 "
                      r"to i32\n\s*(%[\w.]+) = tail call spir_func i32 @_Z19sub_group_broadcastjj\(i32 \2, i32 0\)"
                      r"\n\s*%[\w.]+ = lshr i32 \3, 4", cpu)
        assert m, cpu
    assert ANY_BROADCAST not in pvc, pvc
    assert re.search(r"(%[\w.]+) = trunc i64 %[\w.]+ to i32\n\s*%[\w.]+ = lshr i32 \1, 4", pvc), pvc
    for profile in ("cpu", "pvc"):
        (y,) = run_binary(thread_ids, profile, 4, (np.zeros(64, np.int32),), group=2)
        t = np.arange(4)
        np.testing.assert_array_equal(y.reshape(4, 16), np.repeat(t * 10 + t % 2, 16).reshape(4, 16),
                                      err_msg=profile)


# --- broadcast_loop_bounds -----------------------------------------------------------------------

def test_loop_bound_broadcast_only_on_the_cpu_profile():
    cpu, pvc = ir_of(bounded_sum, "cpu"), ir_of(bounded_sum, "pvc")
    (minimum,) = re.findall(r"(%[\w.]+) = [^\n]*call i32 @llvm\.[su]min\.i32\(", cpu)
    assert BROADCAST[1:] + f"i32 {minimum}, i32 0)" in cpu, cpu
    assert re.search(r"call i32 @llvm\.[su]min\.i32\(", pvc) and ANY_BROADCAST not in pvc, pvc
    x = RNG.standard_normal(16 * 8).astype(np.float32)
    expected = np.stack([x.reshape(8, 16)[:min(5, t + 2)].sum(0) for t in range(4)])
    for profile in ("cpu", "pvc"):
        _, y, _ = run_binary(bounded_sum, profile, 4, (x, np.zeros(64, np.float32), np.int32(5)))
        np.testing.assert_allclose(y.reshape(4, 16), expected, rtol=1e-6, err_msg=profile)


def _self_loops(llvm_ir):
    """Blocks that end in a branch to themselves only (loops with no exit)."""
    return [name for name, body in re.findall(r"^([\w.]+):[^\n]*\n(.*?)(?=^\S|\Z)", llvm_ir, re.M | re.S)
            if re.search(r"br label %" + re.escape(name) + r"\n\s*$", body)]


def test_invariant_while_keeps_its_exit_only_on_the_cpu_profile():
    """On the cpu profile the invariant condition is a lane-0 broadcast tested in the loop
    (the loop keeps its exit); elsewhere LLVM leaves a loop with no exit, correct code that
    Intel's GPU compiler builds, but one the CPU runtime's vectorizer gives up on: the CPU
    runtime refuses the pvc binary, which is why the cpu profile needs the broadcast."""
    from cmlang.errors import LaunchError
    cpu, pvc = ir_of(invariant_while, "cpu"), ir_of(invariant_while, "pvc")
    assert _self_loops(cpu) == [] and BROADCAST in cpu, cpu
    assert _self_loops(pvc) == ["while.body"] and ANY_BROADCAST not in pvc, pvc
    (y, _) = run_binary(invariant_while, "cpu", 1, (np.zeros(16, np.int32), np.int32(4)))
    np.testing.assert_array_equal(y, np.full(16, 7))
    with pytest.raises(LaunchError, match="could not vectorize kernel 'invariant_while'"):
        run_binary(invariant_while, "pvc", 1, (np.zeros(16, np.int32), np.int32(4)))


# --- no_16bit_block_io ---------------------------------------------------------------------------

@pytest.mark.parametrize("elem,dtype", [(f16, np.float16), (u16, np.uint16), (bf16, np.uint16)],
                         ids=["f16", "u16", "bf16"])
def test_16bit_block_io_only_off_on_the_cpu_profile(elem, dtype):
    kernel = COPY_16BIT[elem]
    cpu, pvc = ir_of(kernel, "cpu"), ir_of(kernel, "pvc")
    assert BLOCK_READ_16 not in cpu and BLOCK_READ_16x2 not in cpu and BLOCK_WRITE_16 not in cpu, cpu
    assert pvc.count("call spir_func <2 x i16> " + BLOCK_READ_16x2) == 1, pvc   # two slots of 16 lanes, one read
    assert pvc.count("call spir_func void " + BLOCK_WRITE_16) == 2, pvc      # the aligned store only
    x = RNG.integers(0, 1 << 15, 3 * 32).astype(np.uint16).view(dtype)
    expected = np.zeros((3, 96), np.uint16)
    expected[:, :32] = expected[:, 34:66] = x.view(np.uint16).reshape(3, 32)
    for profile in ("cpu", "pvc"):
        _, y = run_binary(kernel, profile, 3, (x, np.zeros(3 * 96, dtype)))
        np.testing.assert_array_equal(y.view(np.uint16).reshape(3, 96), expected, err_msg=profile)


# --- dpas_loop_fmas ------------------------------------------------------------------------------

def test_dpas_k_loop_on_every_profile_and_threshold_zero_turns_it_off():
    """8x16x32 f32 at simd 16 is 256 slot FMAs: on the cpu and the pvc profile alike the
    dpas loops over k, reading b's rows and a's elements from memory (f32 products have no
    systolic unit; in registers they spill on GPUs too).  With the threshold at 0 the
    operands stay in registers (a[m, k] broadcast from its slot: 128 broadcasts, no loop)."""
    import dataclasses
    from cmlang.codegen import compile_function
    cpu, pvc = ir_of(gemm_tile_f32, "cpu", K=16, N=32), ir_of(gemm_tile_f32, "pvc", K=16, N=32)
    for text in (cpu, pvc):
        assert re.search(r"^loop[\w.]*:", text, re.M) and ANY_BROADCAST not in text, text
    unrolled_profile = dataclasses.replace(PROFILES["pvc"], dpas_loop_fmas=0)
    fn = gemm_tile_f32.compile(K=16, N=32, device="cpu").function
    unrolled = compile_function(fn, "spirv", profile=unrolled_profile).llvm_ir
    assert not re.search(r"^loop[\w.]*:", unrolled, re.M)
    assert unrolled.count("call spir_func float @_Z19sub_group_broadcastfj(") == 8 * 16, unrolled
    a = RNG.standard_normal((8, 16)).astype(np.float32)
    b = RNG.standard_normal((16, 32)).astype(np.float32)
    for profile in ("cpu", "pvc"):
        *_, c = run_binary(gemm_tile_f32, profile, 1, (a, b, np.zeros((8, 32), np.float32)), K=16, N=32)
        np.testing.assert_allclose(c, a.astype(np.float64) @ b.astype(np.float64), rtol=1e-5, atol=1e-5,
                                   err_msg=profile)


# --- the vector-compute dpas tile width ----------------------------------------------------------

@pytest.mark.parametrize("profile,width", [("pvc", 16), ("dg2", 8), ("cpu", 16), ("tgllp", None)])
def test_vc_dpas_tile_width_is_the_profiles_systolic_exec_size(profile, width):
    """pvc 16 and dg2 8 from their systolic units; tgllp has none (FMAs: IGC rejects dpas
    there, checked by its native build); the cpu profile, no particular GPU, keeps 16."""
    from vc_emulator import run_isolated
    ck = gemm_tile.compile(K=16, N=32, target="spirv-vc", device=profile)
    if width is None:
        assert "llvm.genx.dpas2" not in ck.llvm_ir and ck.stats["dpas"] == 0
    else:
        rows = 8 * width
        calls = re.findall(rf'call <{rows} x float> @"llvm\.genx\.dpas2\.v{rows}f32\.v{rows}f32\.v{rows}i32'
                           r'\.v64i32"\(', ck.llvm_ir)
        assert len(calls) == 32 // width, ck.llvm_ir
    a = RNG.standard_normal((8, 16)).astype(np.float16)
    b = RNG.standard_normal((16, 32)).astype(np.float16)
    *_, c = run_isolated(ck, 1, None, [a, b, np.zeros((8, 32), np.float32)])
    np.testing.assert_allclose(c, a.astype(np.float64) @ b.astype(np.float64), rtol=1e-5, atol=1e-5)


# --- the pvc modules are valid and build for pvc -------------------------------------------------

GPU_KERNELS = {
    "f16 block loads and stores": (COPY_16BIT[f16], {}),
    "dpas": (gemm_tile, dict(K=16, N=32)),
    "loop with a computed bound": (bounded_sum, {}),
    "loop with no exit": (invariant_while, {}),
    "thread ids": (thread_ids, {}),
}


def ocloc(spirv: bytes, device: str, folder, options=""):
    """Build with Intel's offline compiler; returns (exit status, output, the ISA dump text)."""
    path = os.path.join(folder, "k.spv")
    with open(path, "wb") as f:
        f.write(spirv)
    dump = os.path.join(folder, "dump") + os.sep
    env = dict(os.environ, IGC_ShaderDumpEnable="1", IGC_DumpToCustomDir=dump)
    cmd = ["ocloc", "compile", "-spirv_input", "-file", path, "-device", device,
           "-out_dir", str(folder), "-output", "k"] + (["-options", options] if options else [])
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    isa = "".join(open(p, encoding="utf-8", errors="replace").read() for p in glob.glob(dump + "*.asm"))
    return r.returncode, r.stdout + r.stderr, isa


@pytest.mark.parametrize("case", sorted(GPU_KERNELS))
def test_pvc_spirv_validates_and_builds_for_pvc(case, tmp_path):
    kernel, constexprs = GPU_KERNELS[case]
    spirv = kernel.compile(device="pvc", **constexprs).spirv
    if HAVE_SPIRV_VAL:
        (tmp_path / "v.spv").write_bytes(spirv)
        r = subprocess.run(["spirv-val", str(tmp_path / "v.spv")], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    if not HAVE_OCLOC:
        pytest.skip("ocloc (Intel's offline compiler) not installed")
    status, output, _ = ocloc(spirv, "pvc", tmp_path)
    assert status == 0 and "Build succeeded" in output, output


@pytest.mark.skipif(not HAVE_OCLOC, reason="ocloc (Intel's offline compiler) not installed")
@pytest.mark.parametrize("profile,systolic", [("pvc", "(16|M0)"), ("dg2", "(8|M0)")])
def test_vc_dpas_becomes_one_hardware_dpas_per_tile(profile, systolic, tmp_path):
    """8x16x32 is 32 / exec size tiles: IGC's ISA has that many ``dpas.8x8`` at that width."""
    spirv = gemm_tile.compile(K=16, N=32, target="spirv-vc", device=profile).spirv
    status, output, isa = ocloc(spirv, profile, tmp_path, "-vc-codegen")
    assert status == 0, output
    width = 16 if profile == "pvc" else 8
    assert re.findall(r"dpas\.8x8 \((\d+)\|M0\)", isa) == [str(width)] * (32 // width), isa[-3000:]


# --- the runtime's check is the CPU runtime's ----------------------------------------------------

def test_the_not_vectorized_refusal_is_a_cpu_runtime_check():
    from cmlang.errors import LaunchError
    from cmlang.runtime.device import OpenCLDevice
    spirv = thread_ids.compile(device="cpu").spirv       # requires sub-group size 16
    log = 'Kernel "thread_ids" was not vectorized'
    cl = types.SimpleNamespace(program_build_info=types.SimpleNamespace(LOG="log"))
    program = types.SimpleNamespace(get_build_info=lambda device, what: log)
    gpu = types.SimpleNamespace(kind="gpu", cl_device=None, _cl=cl, spec="opencl:gpu:0")
    OpenCLDevice.check_vectorized(gpu, program, spirv, "thread_ids")      # not read on a GPU
    cpu = types.SimpleNamespace(kind="cpu", cl_device=None, _cl=cl, spec="opencl:cpu:0")
    with pytest.raises(LaunchError, match="could not vectorize kernel 'thread_ids'"):
        OpenCLDevice.check_vectorized(cpu, program, spirv, "thread_ids")
