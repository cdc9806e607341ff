"""Precompiled kernel packages: build, load, select a specialization, launch; tampering.

Most tests use hand-made SPIR-V (a one-element-per-work-item kernel written in LLVM IR)
placed into a Kernel's specializations, so they exercise the package format and the
runtime side independently of the compiler; ``test_cli_build_*`` go through the compiler.
"""
import functools
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import cmlang as cm
from kernel_utils import spirv_from_ir
from cmlang import constexpr, f32, f64, i32, ptr
from cmlang.errors import CompileError, LaunchError
from cmlang.kernel import CompiledKernel, Kernel
from cmlang.package import build_package
from cmlang.runtime.binary import KernelBinary, Param
from cmlang.runtime.package import PackageError, load_package

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_IR = """
target triple = "spirv64-unknown-unknown"
declare spir_func i64 @_Z13get_global_idj(i32)
define spir_kernel void @{name}(ptr addrspace(1) %x, ptr addrspace(1) %y, {t} %a, i32 %n) {{
entry:
  %gid = call spir_func i64 @_Z13get_global_idj(i32 0)
  %px = getelementptr {t}, ptr addrspace(1) %x, i64 %gid
  %py = getelementptr {t}, ptr addrspace(1) %y, i64 %gid
  %vx = load {t}, ptr addrspace(1) %px
  %vy = load {t}, ptr addrspace(1) %py
  %m = fmul {t} %a, %vx
  %s = {op} {t} %m, %vy
  store {t} %s, ptr addrspace(1) %py
  ret void
}}
"""


@functools.lru_cache(maxsize=None)
def spirv_of(name, t="float", op="fadd"):
    """SPIR-V of ``y[i] = a * x[i] (op) y[i]``, one element per work-item."""
    return spirv_from_ir(_IR.format(name=name, t=t, op=op))


def hand_made(kernel, constexprs, elem, op):
    """Give ``kernel`` a precompiled specialization for ``constexprs``: SPIR-V of the
    axpy-like body with ``op``, simd 1 (one element per CM thread)."""
    t = {"f32": "float", "f64": "double"}[elem.name]
    binary = KernelBinary(kernel.__name__, spirv_of(kernel.__name__, t, op), 1,
                          (Param("x", ptr[elem]), Param("y", ptr[elem], writes=True),
                           Param("a", elem), Param("n", i32)))
    key = tuple(("int", constexprs[n]) for n, t in kernel.params if t is constexpr)
    kernel._specializations[(key, "spirv", "cpu")] = CompiledKernel(kernel, None, binary, "", "spirv")
    return kernel


def axpy(x: ptr[f32], y: ptr[f32], a: f32, MODE: constexpr, n: i32):
    pass  # never compiled: the specializations are hand-made


def axpy64(x: ptr[f64], y: ptr[f64], a: f64, MODE: constexpr, n: i32):
    pass


axpy64.__name__ = "axpy"  # a second kernel of the same name, for f64 arrays


@pytest.fixture
def package(tmp_path):
    k32, k64 = Kernel(axpy), Kernel(axpy64)
    hand_made(k32, {"MODE": 1}, f32, "fadd")
    hand_made(k32, {"MODE": 2}, f32, "fsub")
    hand_made(k64, {"MODE": 1}, f64, "fadd")
    path = str(tmp_path / "axpy.cmpkg")
    build_package(path, [(k32, {"MODE": 1}), (k32, {"MODE": 2}), (k64, {"MODE": 1})], progress=False)
    return path


def run_axpy(pkg, dtype, mode, n=64):
    x = np.arange(n, dtype=dtype)
    y = np.full(n, 10, dtype=dtype)
    pkg.axpy[n](x, y, 2.0, mode, n)
    return y


def test_manifest_describes_each_specialization(package):
    with zipfile.ZipFile(package) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        assert manifest["format"] == "cmlang-package" and manifest["format_version"] == 1
        assert manifest["cmlang_version"] == cm.__version__
        first = manifest["kernels"][0]
        assert first["name"] == "axpy" and first["constexprs"] == {"MODE": 1}
        assert [p["type"] for p in first["signature"]] == ["ptr<f32>", "ptr<f32>", "f32", "constexpr", "i32"]
        assert [(p["name"], p["writes"]) for p in first["params"]] == [
            ("x", False), ("y", True), ("a", False), ("n", False)]
        assert first["simd"] == 1 and first["target"] == "spirv" and first["extensions"] == []
        assert len(zf.read(first["payload"])) > 20
        assert not [n for n in zf.namelist() if n.endswith((".py", ".pkl", ".pyc"))]


def test_load_and_launch_chooses_by_constexpr_and_dtype(package):
    pkg = load_package(package)
    n = 64
    base = np.arange(n)
    np.testing.assert_array_equal(run_axpy(pkg, np.float32, 1), 2.0 * base + 10)
    np.testing.assert_array_equal(run_axpy(pkg, np.float32, 2), 2.0 * base - 10)
    y64 = run_axpy(pkg, np.float64, 1)
    assert y64.dtype == np.float64
    np.testing.assert_array_equal(y64, 2.0 * base + 10)
    assert "axpy" in dir(pkg) and len(pkg.axpy.specializations) == 3


def test_signature_mismatch_lists_what_the_package_has(package):
    pkg = load_package(package)
    x = np.zeros(64, np.int32)
    with pytest.raises(LaunchError) as e:
        pkg.axpy[64](x, x, 2.0, 1, 64)
    text = str(e.value)
    assert "no specialization for the arguments (ndarray[int32], ndarray[int32], float 2.0, int 1, int 64)" in text
    assert "axpy(x: ptr<f32>, y: ptr<f32>, a: f32, MODE=2, n: i32) simd=1 target=spirv" in text
    assert "axpy(x: ptr<f64>, y: ptr<f64>, a: f64, MODE=1, n: i32)" in text
    with pytest.raises(LaunchError, match="no specialization"):   # constexpr value not built
        run_axpy(pkg, np.float32, 3)
    with pytest.raises(LaunchError, match="no specialization"):   # wrong argument count
        pkg.axpy[64](np.zeros(64, np.float32))
    with pytest.raises(AttributeError, match="has no kernel 'saxpy'; it has: axpy"):
        pkg.saxpy


def test_tampered_payload_is_refused(package, tmp_path):
    tampered = str(tmp_path / "tampered.cmpkg")
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith(".spv") and item.filename.startswith("spirv/0001"):
                data = data[:-4] + b"\0\0\0\0"
            dst.writestr(item, data)
    with pytest.raises(PackageError, match=r"payload spirv/0001-axpy.spv of kernel 'axpy' does not "
                                           r"match its sha256 in the manifest"):
        load_package(tampered)


def test_unknown_format_version_and_non_packages(package, tmp_path):
    newer = str(tmp_path / "newer.cmpkg")
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(newer, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "manifest.json":
                manifest = json.loads(data)
                manifest["format_version"] = 99
                data = json.dumps(manifest)
            dst.writestr(item, data)
    with pytest.raises(PackageError, match="package format version 99; this cmlang reads version 1"):
        load_package(newer)
    junk = tmp_path / "junk.cmpkg"
    junk.write_bytes(b"not a zip")
    with pytest.raises(PackageError, match="not a cmlang package"):
        load_package(str(junk))
    with pytest.raises(PackageError, match="no such package"):
        load_package(str(tmp_path / "missing.cmpkg"))


def test_build_checks_the_specs(tmp_path):
    k = hand_made(Kernel(axpy), {"MODE": 1}, f32, "fadd")
    with pytest.raises(CompileError, match="missing MODE"):
        build_package(str(tmp_path / "a.cmpkg"), [k])
    with pytest.raises(CompileError, match="unknown TILE"):
        build_package(str(tmp_path / "a.cmpkg"), [(k, {"MODE": 1, "TILE": 4})])
    with pytest.raises(CompileError, match="not a @cm.kernel"):
        build_package(str(tmp_path / "a.cmpkg"), [(axpy, {"MODE": 1})])
    assert not os.path.exists(tmp_path / "a.cmpkg")


def test_loaded_in_a_process_without_llvmlite_or_compiler(package, tmp_path):
    # A fake llvmlite first on sys.path makes any import of it fail.
    fake = tmp_path / "fake" / "llvmlite"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('llvmlite is not available here')\n")
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path / 'fake')!r})
        import numpy as np
        import cmlang as cm
        from cmlang.runtime.package import load_package
        pkg = load_package({package!r})
        x = np.arange(64, dtype=np.float32); y = np.full(64, 10, np.float32)
        pkg.axpy[64](x, y, 2.0, 2, 64)
        assert np.array_equal(y, 2 * np.arange(64) - 10), y
        loaded = [m for m in sys.modules if m.split('.')[0] == 'llvmlite' or m.startswith(
            ('cmlang.frontend', 'cmlang.codegen', 'cmlang.passes', 'lark'))]
        print('loaded:', loaded)
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 0, out.stderr
    assert "loaded: []" in out.stdout


# --- through the compiler -------------------------------------------------------------

SCALE = """
import cmlang as cm
from cmlang import f32

@cm.kernel(simd=16)
def scale(x: cm.ptr[f32], a: f32, N: cm.constexpr):
    base = cm.thread_id(0) * N
    cm.store(x, base, cm.load(x, base, N) * a)

PACKAGE_SPECS = [(scale, {"N": 16})]
"""


@pytest.fixture
def scale_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CMLANG_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "scale.py"
    path.write_text(SCALE)
    return str(path)


def test_cli_build_specialization_sets(scale_file, tmp_path, capsys):
    from cmlang.cli import main
    out = str(tmp_path / "scale.cmpkg")
    assert main(["build", f"{scale_file}::scale", "--signature", "ptr[f32], f32",
                 "--constexpr", "N=16", "--constexpr", "N=32", "-o", out]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}:" in printed
    assert "scale(x: ptr<f32>, a: f32, N=32) simd=16 target=spirv" in printed
    pkg = cm.load_package(out)
    for n in (16, 32):
        x = np.arange(4 * n, dtype=np.float32)
        pkg.scale[4](x, 3.0, n)
        np.testing.assert_array_equal(x, 3.0 * np.arange(4 * n))
    with pytest.raises(SystemExit, match=r"no --signature/--constexpr set fits scale\(x: ptr<f32>"):
        main(["build", f"{scale_file}::scale", "--signature", "ptr[f64], f32", "--constexpr", "N=16",
              "-o", out])


def test_cli_build_from_a_recipe(scale_file, tmp_path):
    from cmlang.cli import main
    out = str(tmp_path / "recipe.cmpkg")
    assert main(["build", scale_file, "-o", out, "-q"]) == 0
    [spec] = cm.load_package(out).scale.specializations
    assert spec.constexprs == {"N": 16} and spec.binary.params[0].writes
