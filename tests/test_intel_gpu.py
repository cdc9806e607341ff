"""Intel's GPU compiler in the loop (cmlang.codegen.intel_gpu): native builds with ocloc,
IGC's ISA and stats, the errors, the native cache, the CLI and native binaries in packages.

The tests that run ocloc skip only where it is not installed; CI installs it
(.ci/run: intel-opencl-icd)."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import cmlang as cm
from cmlang import f16, f32, i32
from cmlang.codegen import intel_gpu
from cmlang.errors import CompileError

needs_ocloc = pytest.mark.skipif(not intel_gpu.available(),
                                 reason="Intel's offline compiler (ocloc) is not installed")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@cm.kernel(simd=16)
def saxpy(x: cm.ptr[f32], y: cm.ptr[f32], a: f32):
    i = cm.thread_id(0) * 16
    cm.store(y, i, cm.load(x, i, 16) * a + cm.load(y, i, 16))


@cm.kernel(simd=16)
def dpas_f16(a: cm.ptr[f16], b: cm.ptr[f16], c: cm.ptr[f32]):
    acc = cm.zeros(cm.matrix[f32, 8, 16])
    acc = cm.dpas(acc, cm.load(a, 0, (8, 16), 16), cm.load(b, 0, (16, 16), 16))
    cm.store(c, 0, acc, 16)


@cm.kernel(simd=16)
def big_register(x: cm.ptr[f32], y: cm.ptr[f32], n: i32):
    big = cm.load(x, 0, 4096)          # 16 KiB per thread: twice PVC's register file
    for i in range(n):
        big[i] = big[i] * 2.0
    cm.store(y, 0, big)


@cm.kernel(simd=16)
def rms_scale(x: cm.ptr[f32], out: cm.ptr[f32]):
    row = cm.load(x, 0, 64)
    cm.store(out, 0, row * cm.rsqrt(cm.reduce_sum(row * row) * (1.0 / 64) + 1e-6) + cm.sqrt(row))


# ---------------------------------------------------------------------------
# Reading IGC's listing (no compiler needed)

LISTING = textwrap.dedent("""\
    //.kernel k
    //.platform PVCXT
    //.thread_config numGRF=256, numAcc=4, numSWSB=16
    //.instCount 9
    //.spill size 1024
    //.declare V32 (38)  rf=r size=6 type=w align=1 words (r1.0)
    k_BB_0:
    (W)     mov (16|M0)  r127.0<1>:ud  0x0:ud
            load.ugm.d32x16t.a32.ca.ca (1|M0)  r1:1 bti[255][r127:1]
    (W&f0.0) send.dc1 (16|M0)  r4  r7  null:0  0x0  0x021D0BFF
            dpas.8x8 (16|M0)  r34:f  r34:f  r26:hf  r22.0:hf
            dpas.8x8 (16|M0)  r50:f  r50:f  r26:hf  r22.0:hf
            load_block2d.ugm.d16.a64 (1|M0)  r10:8  [r5:1]
            prefetch_block2d.ugm.d16.a64 (1|M0)  null:0  [r5:1]
            store.ugm.d32x16t.a64 (1|M0)  [r9:1]  r6:1
    (W)     send.gtwy (1|M0)  null  r127  null:0  0x0  0x02000010  {EOT}
    """)


def test_parse_isa_reads_the_header_and_counts_opcodes():
    stats = intel_gpu.parse_isa(LISTING)
    assert stats == {"instructions": 9, "spill_bytes": 1024, "grf": 256, "dpas": 2, "block2d": 2,
                     "messages": 6, "external_calls": 0}


def test_parse_isa_without_spill_header_is_zero_spill():
    stats = intel_gpu.parse_isa(LISTING.replace("//.spill size 1024\n", ""))
    assert stats["spill_bytes"] == 0 and stats["instructions"] == 9


def test_parse_isa_refuses_text_that_is_not_a_listing():
    with pytest.raises(CompileError, match="instCount"):
        intel_gpu.parse_isa("mov (16|M0) r1 r2\n")


def test_options_table_per_flavour_and_register_file():
    assert intel_gpu.ocloc_options("spirv") == ()
    assert intel_gpu.ocloc_options("spirv-vc") == ("-vc-codegen",)
    assert intel_gpu.ocloc_options("spirv", 256) == ("-ze-opt-large-register-file",)
    with pytest.raises(CompileError, match="grf must be one of 128, 256"):
        intel_gpu.ocloc_options("spirv", 192)


# ---------------------------------------------------------------------------
# Finding the compiler

def test_missing_compiler_says_how_to_install(monkeypatch):
    monkeypatch.setenv("CMLANG_OCLOC", "/nonexistent/ocloc")
    with pytest.raises(CompileError, match=r"CMLANG_OCLOC='/nonexistent/ocloc' is not an executable; "
                                           r".*apt-get install intel-opencl-icd"):
        saxpy.compile(target="spirv", device="pvc")


def test_no_ocloc_on_path_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.delenv("CMLANG_OCLOC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CompileError, match=r"ocloc\) was not found; .*apt-get install intel-opencl-icd"):
        intel_gpu.find_ocloc()


def test_without_device_nothing_changes():
    ck = saxpy.compile(target="spirv")
    assert ck.native_build is None
    with pytest.raises(CompileError, match=r"saxpy: no Intel GPU build; compile it with device="):
        ck.stats


# ---------------------------------------------------------------------------
# Real builds

@needs_ocloc
@pytest.mark.parametrize("target", ["spirv", "spirv-vc"])
@pytest.mark.parametrize("device", ["pvc", "dg2"])
def test_saxpy_builds_without_spills(target, device):
    ck = saxpy.compile(target=target, device=device)
    s = ck.stats
    print(target, device, s)
    assert s["instructions"] > 0 and s["spill_bytes"] == 0 and s["grf"] == 128
    assert s["messages"] >= 3 and s["dpas"] == 0            # two loads and a store at least
    assert ck.isa.startswith("//.kernel saxpy")
    assert len(ck.native) > 1000 and ck.native[:4] == b"\x7fELF"   # ocloc's ELF container
    # the SPIR-V built is the device profile's specialization (no CPU-runtime workarounds)
    from cmlang.runtime.profiles import PROFILES
    assert ck.profile == device and ck.spirv == saxpy.specialization((), target, PROFILES[device]).spirv


@needs_ocloc
@pytest.mark.parametrize("device", ["pvc", "dg2"])
def test_f16_dpas_in_vector_compute_uses_the_systolic_unit(device):
    ck = dpas_f16.compile(target="spirv-vc", device=device)
    assert ck.stats["dpas"] >= 1
    assert "dpas.8x8" in ck.isa


@needs_ocloc
@pytest.mark.parametrize("device", ["dg2", "tgllp", "pvc"])
def test_vector_compute_sqrt_builds_for_every_device(device):
    # llvm.genx.ieee.sqrt on f32 made IGC fail for DG2 and TGL ("VISA builder API call
    # failed"): the spirv-vc rmsnorm example did not build for DG2.
    ck = rms_scale.compile(target="spirv-vc", device=device)
    assert ck.stats["instructions"] > 0 and " math." in ck.isa


@needs_ocloc
def test_a_big_register_spills_and_says_so():
    ck = big_register.compile(target="spirv", device="pvc")
    assert ck.stats["spill_bytes"] > 4096
    assert f"//.spill size {ck.stats['spill_bytes']}" in ck.isa


@needs_ocloc
def test_large_register_file_mode():
    spirv = saxpy.compile(target="spirv").spirv
    build = intel_gpu.build_native(spirv, "saxpy", "pvc", "spirv", grf=256)
    assert build.options == ("-ze-opt-large-register-file",)
    assert build.stats["grf"] == 256


@needs_ocloc
def test_igc_rejection_names_kernel_device_flavour_and_log():
    # A register indexed at run time must fit the register file in vISA: 16 KiB does not.
    with pytest.raises(CompileError) as info:
        big_register.compile(target="spirv-vc", device="dg2")
    message = str(info.value)
    assert "kernel 'big_register', device dg2, target spirv-vc: IGC rejected the module" in message
    assert "VISA builder API call failed" in message          # IGC's log


@needs_ocloc
def test_a_truncated_module_is_an_error():
    spirv = saxpy.compile(target="spirv").spirv[:64]
    with pytest.raises(CompileError, match=r"kernel 'saxpy', device dg2, target spirv-vc: IGC rejected "
                                           r"the module \(ocloc exit -?\d+\):\n."):
        intel_gpu.build_native(spirv, "saxpy", "dg2", "spirv-vc")
    with pytest.raises(CompileError, match=r"kernel 'saxpy', device pvc, target spirv: IGC built no "
                                           r"kernel of that name"):
        intel_gpu.build_native(spirv, "saxpy", "pvc", "spirv")


@needs_ocloc
def test_unknown_builtin_that_igc_calls_externally_is_an_error(monkeypatch):
    from cmlang.codegen import spirv as spirv_backend
    ir = saxpy.compile(target="spirv").llvm_ir.replace("_Z19sub_group_broadcastjj", "_Z19sub_group_brodcastjj")
    assert "_Z19sub_group_brodcastjj" in ir
    monkeypatch.setattr(spirv_backend, "check_imports", lambda spirv, allowed=frozenset(): None)  # let it through to IGC
    _, module = spirv_backend.llvm_to_spirv(ir)
    with pytest.raises(CompileError, match=r"kernel 'saxpy', device pvc, target spirv: the ISA calls 1 "
                                           r"external function\(s\) \(calla\).*imports _Z19sub_group_brodcastjj"):
        intel_gpu.build_native(module, "saxpy", "pvc", "spirv")


@needs_ocloc
def test_native_builds_are_cached_on_disk(monkeypatch, tmp_path):
    monkeypatch.setenv("CMLANG_CACHE_DIR", str(tmp_path))
    spirv = saxpy.compile(target="spirv").spirv
    first = intel_gpu.build_native(spirv, "saxpy", "pvc", "spirv")
    assert len(os.listdir(tmp_path / "native-binaries")) == 1

    def no_ocloc(*args):
        raise AssertionError("ocloc ran on a cache hit")
    monkeypatch.setattr(intel_gpu, "_run_ocloc", no_ocloc)
    again = intel_gpu.build_native(spirv, "saxpy", "pvc", "spirv")
    assert (again.binary, again.isa, again.stats) == (first.binary, first.isa, first.stats)
    with pytest.raises(AssertionError, match="ocloc ran"):       # another device is another key
        intel_gpu.build_native(spirv, "saxpy", "dg2", "spirv")
    with pytest.raises(AssertionError, match="ocloc ran"):       # so are other options
        intel_gpu.build_native(spirv, "saxpy", "pvc", "spirv", grf=256)


# ---------------------------------------------------------------------------
# The command line

def cli(*args):
    return subprocess.run([sys.executable, "-m", "cmlang.cli", *args], capture_output=True,
                          cwd=ROOT, timeout=600)


@needs_ocloc
def test_cli_compile_emits_isa_stats_and_native(tmp_path):
    ref = f"{__file__}::dpas_f16"
    r = cli("compile", ref, "--target", "spirv-vc", "--device", "pvc", "--emit", "stats")
    assert r.returncode == 0, r.stderr.decode()
    stats = json.loads(r.stdout)
    assert stats["kernel"] == "dpas_f16" and stats["device"] == "pvc" and stats["dpas"] >= 1
    r = cli("compile", ref, "--target", "spirv-vc", "--device", "pvc", "--emit", "isa")
    assert b"dpas.8x8" in r.stdout
    out = tmp_path / "k.bin"
    r = cli("compile", ref, "--target", "spirv-vc", "--device", "pvc", "--emit", "native", "-o", str(out))
    assert r.returncode == 0 and out.read_bytes()[:4] == b"\x7fELF"
    r = cli("compile", ref, "--emit", "isa")
    assert r.returncode != 0 and b"--emit isa needs --device" in r.stderr


@needs_ocloc
def test_cli_isa_lists_what_a_benchmark_launches(tmp_path):
    out = tmp_path / "isa.json"
    r = cli("isa", "transpose", "--size", "tiny", "--device", "pvc,dg2", "--target", "spirv",
            "--json", str(out), "-q")
    text = r.stdout.decode()
    assert r.returncode == 0, text + r.stderr.decode()
    rows = json.loads(out.read_text())
    assert {row["device"] for row in rows} == {"pvc", "dg2"} and len(rows) % 2 == 0
    assert all(row["kernel"].startswith("transpose") and row["instructions"] > 0 for row in rows)
    assert "| kernel | constexprs | arguments | target | device | instructions |" in text
    assert f"{len(rows)} of {len(rows)} builds succeeded" in text
    grid = cli("isa", "transpose", "--size", "tiny", "--device", "pvc,dg2", "--target", "spirv", "--grid", "-q")
    lines = [l for l in grid.stdout.decode().splitlines() if l.startswith("| transpose |")]
    assert len(lines) == len(rows) // 2                      # one line per specialization
    assert lines[0].count(" / ") == 2                        # instructions / spill, for pvc and dg2


@needs_ocloc
def test_cli_build_stores_native_binaries(tmp_path):
    out = tmp_path / "saxpy.cmpkg"
    r = cli("build", f"{__file__}::saxpy", "--device", "pvc,dg2", "-o", str(out))
    assert r.returncode == 0, r.stderr.decode()
    assert b"target=spirv native=pvc,dg2" in r.stdout
    with zipfile.ZipFile(out) as zf:
        assert sorted(n for n in zf.namelist() if n.startswith("native/")) == [
            "native/0000-saxpy.dg2.bin", "native/0000-saxpy.pvc.bin"]


# ---------------------------------------------------------------------------
# Packages with native binaries

@pytest.fixture
def native_package(tmp_path):
    if not intel_gpu.available():
        pytest.skip("Intel's offline compiler (ocloc) is not installed")
    from cmlang.package import build_package
    path = str(tmp_path / "saxpy.cmpkg")
    build_package(path, [saxpy], progress=False, devices=("pvc", "dg2"))
    return path


def test_package_manifest_names_native_devices_and_compiler(native_package):
    with zipfile.ZipFile(native_package) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        natives = manifest["kernels"][0]["native"]
        assert [n["device"] for n in natives] == ["pvc", "dg2"]
        assert manifest["native_devices"] == ["pvc", "dg2"]
        assert manifest["intel_gpu_compiler"].startswith("NEO ")
        pvc = zf.read(natives[0]["payload"])
    assert pvc == saxpy.compile(target="spirv", device="pvc").native


def _run_saxpy(pkg, device=None):
    x = np.arange(64, dtype=np.float32)
    y = np.ones(64, dtype=np.float32)
    pkg.saxpy._launch(4, None, (x, y, 2.0), device)
    return y, 2.0 * np.arange(64) + 1.0


def test_package_on_another_device_uses_the_spirv(native_package):
    from cmlang.runtime.package import load_package
    pkg = load_package(native_package)
    spec = pkg.saxpy.specializations[0]
    assert set(spec.natives) == {"pvc", "dg2"}
    assert spec.native_for(cm.get_device()) is None         # the CPU runtime is no Intel GPU
    got, want = _run_saxpy(pkg)
    np.testing.assert_array_equal(got, want)


def test_package_on_a_matching_device_uses_the_native_binary(native_package, monkeypatch):
    """A fake Intel GPU record (this machine has none): the CPU device, named pvc. The
    native binary is what gets built; the kernel handle then runs (built here from SPIR-V,
    since the CPU cannot run PVC code)."""
    from cmlang.runtime import package as runtime_package
    from cmlang.runtime.device import OpenCLDevice
    cpu = cm.get_device()
    if not isinstance(cpu, OpenCLDevice):
        pytest.skip("needs the OpenCL CPU device")

    class FakePVC(OpenCLDevice):
        ocloc_device = "pvc"

    fake = FakePVC(cpu.cl_device, "opencl:fake-pvc:0")
    pkg = runtime_package.load_package(native_package)
    spec = pkg.saxpy.specializations[0]
    built = []

    def build_native_kernel(device, native, name):
        built.append((device, native, name))
        return device.build_kernel(spec.binary.spirv, name)   # stands in for the GPU's loader
    monkeypatch.setattr(runtime_package, "build_native_kernel", build_native_kernel)
    got, want = _run_saxpy(pkg, fake)
    np.testing.assert_array_equal(got, want)
    assert built == [(fake, spec.natives["pvc"], "saxpy")]
    _run_saxpy(pkg, fake)
    assert len(built) == 1                                  # built once per device


def test_native_binary_the_driver_refuses_falls_back_to_spirv(native_package):
    """On the CPU device (named dg2 here) clCreateProgramWithBinary refuses a DG2 binary:
    a warning, then the SPIR-V runs."""
    from cmlang.runtime import package as runtime_package
    from cmlang.runtime.device import OpenCLDevice
    cpu = cm.get_device()
    if not isinstance(cpu, OpenCLDevice):
        pytest.skip("needs the OpenCL CPU device")

    class FakeDG2(OpenCLDevice):
        ocloc_device = "dg2"

    pkg = runtime_package.load_package(native_package)
    with pytest.warns(UserWarning, match="native binary of 'saxpy' does not load"):
        got, want = _run_saxpy(pkg, FakeDG2(cpu.cl_device, "opencl:fake-dg2:0"))
    np.testing.assert_array_equal(got, want)


def test_dpctl_devices_take_the_spirv():
    """dpctl has no program-from-binary call: a dpctl device named pvc still builds SPIR-V."""
    import types
    from cmlang.runtime.package import build_native_kernel
    assert build_native_kernel(types.SimpleNamespace(backend="dpctl", ocloc_device="pvc"), b"ELF", "k") is None


def test_ocloc_device_name_of_real_devices():
    from cmlang.runtime.package import ocloc_device_name
    assert ocloc_device_name(cm.get_device()) is None       # the CPU runtime

    class Record:
        backend, kind, is_intel = "opencl", "gpu", True

        class cl_device:
            @staticmethod
            def get_info(param):
                assert param == 0x4251                          # CL_DEVICE_ID_INTEL
                return 0x0BD5                                   # a Data Center GPU Max 1550
    assert ocloc_device_name(Record()) == "pvc"


# ---------------------------------------------------------------------------
# Intel's GPU ICD on a machine without an Intel GPU

GPU_ICD_LIBRARY = "libigdrcl.so"


def _gpu_icd_library():
    for folder in ("/usr/lib/x86_64-linux-gnu/intel-opencl", "/usr/lib/x86_64-linux-gnu", "/usr/lib64"):
        path = os.path.join(folder, GPU_ICD_LIBRARY)
        if os.path.exists(path):
            return path
    return None


@pytest.mark.skipif(_gpu_icd_library() is None, reason="Intel's GPU ICD (intel-opencl-icd) is not installed")
def test_runtime_works_with_the_gpu_icd_registered_and_no_gpu(tmp_path):
    vendors = tmp_path / "vendors"
    vendors.mkdir()
    (vendors / "intel-gpu.icd").write_text(_gpu_icd_library() + "\n")
    script = textwrap.dedent(f"""
        import numpy as np
        import cmlang as cm
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_intel_gpu import saxpy
        names = [d.spec for d in cm.devices()]
        print(names, cm.get_device().spec)
        assert cm.get_device().kind == "cpu", cm.get_device()
        assert all("gpu" not in n for n in names), names
        x = np.arange(64, dtype=np.float32); y = np.ones(64, dtype=np.float32)
        saxpy[4](x, y, 2.0)
        assert np.array_equal(y, 2 * np.arange(64) + 1), y
        print("ok")
    """)
    env = dict(os.environ, OCL_ICD_VENDORS=str(vendors))
    env.pop("CMLANG_DEVICE", None)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr


# ---------------------------------------------------------------------------
# Acceptance: every specialization the quick benchmarks launch builds for PVC and DG2

@needs_ocloc
def test_every_quick_benchmark_specialization_builds_for_pvc_and_dg2():
    import time
    from cmlang.isa_report import build_rows, format_table, launched_specializations, summary
    start = time.perf_counter()
    # as cmlang isa does: each GPU's launches, with the tiles tuned for it (the dpas GEMM's
    # simd is the GPU's systolic width: PVC's choice does not build for DG2)
    specs = launched_specializations(size="quick", report=print, devices=["pvc", "dg2"])
    rows = build_rows(specs, ["pvc", "dg2"], ["spirv", "spirv-vc"], progress=False)
    print()
    print(format_table(rows))
    print(summary(rows, time.perf_counter() - start))
    # a specialization every GPU launched is built for both, one planned for a GPU for it only
    assert len(specs) >= 40 and len(rows) == sum(2 * (1 if s.device else 2) for s in specs)
    failed = [f"{r.kernel} {r.target} {r.device}: {r.error.splitlines()[-1]}" for r in rows if r.error]
    assert not failed, "\n".join(failed)
    assert all(r.instructions > 0 and r.grf in (128, 256) for r in rows if not r.error)
