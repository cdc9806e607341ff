"""The installed package and the source checkout resolve the same imports."""
import os
import shutil
import subprocess
import sys
import textwrap

import cmlang

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_source_checkout_resolves_codegen_runtime_examples_inside_cmlang():
    import cmlang.codegen
    import cmlang.runtime
    import cmlang.examples.core.bitonic
    assert os.path.dirname(cmlang.codegen.__file__) == os.path.join(ROOT, "codegen")
    assert os.path.dirname(cmlang.runtime.__file__) == os.path.join(ROOT, "runtime")
    assert cmlang.examples.core.bitonic.__file__.startswith(os.path.join(ROOT, "examples"))


def test_installed_package_has_one_top_level_name_and_runs_a_kernel(tmp_path):
    # Run away from the checkout so neither the sources nor their egg-info shadow the install.
    script = textwrap.dedent("""
        import importlib.metadata, os
        import numpy as np, cmlang, cmlang.codegen, cmlang.runtime
        from cmlang.examples.core import bitonic
        files = importlib.metadata.files("cmlang")
        assert files, "cmlang is not installed: run the README's command (pip install '.[test]')"
        tops = {f.parts[0] for f in files if not f.parts[0].endswith((".dist-info", ".egg-info"))}
        tops.discard("..")          # the console script lives in bin/
        assert tops == {"cmlang"}, tops
        base = os.path.dirname(cmlang.__file__)
        assert os.path.dirname(cmlang.codegen.__file__) == os.path.join(base, "codegen")
        assert os.path.dirname(cmlang.runtime.__file__) == os.path.join(base, "runtime")
        keys = np.random.default_rng(0).standard_normal(64).astype(np.float32)
        assert np.array_equal(bitonic.sort_rows(keys.copy()), bitonic.reference(keys))
        print(base)
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CMLANG_INTERPRET")}
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert not out.stdout.strip().startswith(ROOT), "the subprocess should see the installed copy"


def test_console_script_lists_devices():
    out = subprocess.run([sys.executable, "-m", "cmlang.cli", "devices"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "opencl:cpu" in out.stdout and "*" in out.stdout


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "cmlang.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_cli_compile_emits_ir_llvm_and_spirv_asm(tmp_path):
    kernel = ["compile", "examples/core/bitonic.py::bitonic_sort_rows", "--constexpr", "N=32",
              "--constexpr", "LOG_N=5", "--signature", "ptr[f32]"]
    ir = run_cli(*kernel, "--emit", "ir")
    assert ir.returncode == 0, ir.stderr
    assert ir.stdout.startswith("kernel @bitonic_sort_rows(%keys: ptr<f32>) simd=16")
    llvm = run_cli(*kernel, "--emit", "llvm")
    assert "spir_kernel void @bitonic_sort_rows" in llvm.stdout
    out = tmp_path / "k.spv"
    assert run_cli(*kernel, "--emit", "spirv", "-o", str(out)).returncode == 0
    assert out.read_bytes()[:4] == (0x07230203).to_bytes(4, "little")
    if shutil.which("spirv-dis"):
        assert "OpCapability" in run_cli(*kernel, "--emit", "spirv-asm").stdout


def test_cli_compile_rejects_a_signature_that_does_not_match():
    bad = run_cli("compile", "examples/core/bitonic.py::bitonic_sort_rows", "--constexpr", "N=32",
                  "--constexpr", "LOG_N=5", "--signature", "ptr[i32]")
    assert bad.returncode != 0 and "does not match" in bad.stderr
