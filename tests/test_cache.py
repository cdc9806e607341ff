"""The persistent compile cache: keys, hits across processes, invalidation, concurrency,
corrupt entries, the driver-binary store and ``cmlang cache info|clear``."""
import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest

import cmlang as cm
from cmlang import cache
from cmlang.language import func

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HELPERS = """
import cmlang as cm

@cm.func
def inner(v):
    return v * {factor}

@cm.func
def scaled(v):
    return inner(v) + 1.0
"""

KERNELS = """
import cmlang as cm
from cmlang import f32, i32
import helpers

@cm.kernel(simd=16)
def affine(x: cm.ptr[f32], N: cm.constexpr):
    base = cm.thread_id(0) * N
    cm.store(x, base, helpers.scaled(cm.load(x, base, N)))
"""

# Runs in a fresh process: compile (or hit) and launch `affine`, print the result.
# BLOCK=1 makes the compiler unimportable, so only a cache hit can succeed.
CHILD = """
import os, sys
if os.environ.get("BLOCK") == "1":
    for name in ("llvmlite", "cmlang.codegen", "cmlang.frontend", "cmlang.passes"):
        sys.modules[name] = None   # `import name` now raises ImportError
sys.path.insert(0, sys.argv[1])
import numpy as np
import kernels
x = np.arange(32, dtype=np.float32)
kernels.affine[2](x, 16)
print("result", x[:3].tolist())
print("compiler loaded:", any(m.startswith(("cmlang.codegen", "cmlang.frontend", "llvmlite"))
                               and sys.modules[m] is not None for m in list(sys.modules)))
"""


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("CMLANG_CACHE_DIR", str(folder))
    monkeypatch.delenv("CMLANG_CACHE", raising=False)
    monkeypatch.delenv("CMLANG_INTERPRET", raising=False)
    return folder


@pytest.fixture
def project(tmp_path):
    """A user project in a temp folder: kernels.py calling @cm.funcs of helpers.py."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "helpers.py").write_text(HELPERS.format(factor=2.0))
    (folder / "kernels.py").write_text(KERNELS)
    return folder


def run_child(project, cache_dir, block=False):
    env = {**os.environ, "CMLANG_CACHE_DIR": str(cache_dir), "BLOCK": "1" if block else "0",
           "PYTHONPATH": ROOT}
    out = subprocess.run([sys.executable, "-c", CHILD, str(project)], capture_output=True,
                         text=True, timeout=120, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return out.stdout


def kernel_entries(cache_dir):
    folder = cache_dir / cache.KERNELS
    return sorted(folder.glob("*" + cache.ENTRY_SUFFIX)) if folder.exists() else []


def load_project_kernel(project, name="affine"):
    """A fresh Kernel object (empty in-memory cache) from the project's kernels.py."""
    sys.modules.pop("helpers", None)
    sys.path.insert(0, str(project))
    try:
        spec = importlib.util.spec_from_file_location("kernels", project / "kernels.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(project))
        sys.modules.pop("helpers", None)
    return getattr(module, name)


# --- entries ------------------------------------------------------------------------

def test_entry_round_trip_and_corruption(tmp_path):
    sections = {"manifest": b'{"a": 1}', "spirv": bytes(range(256)), "ir": b""}
    path = str(tmp_path / "e.entry")
    assert cache.write_entry(path, sections)
    assert cache.read_entry(path) == sections
    blob = open(path, "rb").read()
    for bad in (blob[:-1] + bytes([blob[-1] ^ 1]),   # a flipped bit in the body
                blob[: len(blob) // 2],               # a truncated file
                b"garbage"):
        with open(path, "wb") as f:
            f.write(bad)
        assert cache.read_entry(path) is None
        assert not os.path.exists(path), "a corrupt entry is removed"


# --- keys ---------------------------------------------------------------------------

TILE = 8


@func
def _leaf(v):
    return v * TILE


@func
def _mid(v):
    return _leaf(v) + 1


def test_the_record_holds_every_value_the_front_end_read(monkeypatch):
    from cmlang import reads
    from cmlang.kernel import Kernel
    width = 16

    def kern(x: cm.ptr[cm.f32]):
        cm.store(x, 0, _mid(cm.load(x, 0, width)).astype(cm.f32))
    record = Kernel(kern).ir_function().python_reads
    found = {"/".join(f"{k}:{n}" for k, n in path): fp for path, fp in record["reads"]}
    assert record["complete"]
    assert found["kernel:/closure:width"] == "builtins.int 16"                  # a closure variable
    assert found["kernel:/global:cm/attr:f32"].endswith(" f32")                 # an attribute of a module
    assert "def _mid(v)" in found["kernel:/global:_mid"]                        # a func's source
    assert "def _leaf(v)" in found["kernel:/global:_mid/global:_leaf"]          # a func it calls
    assert found["kernel:/global:_mid/global:_leaf/global:TILE"] == "builtins.int 8"
    assert reads.still_valid(record, kern, {})
    monkeypatch.setattr(sys.modules[__name__], "TILE", 4)   # a constant a reached func reads
    assert not reads.still_valid(record, kern, {})


def test_key_changes_with_what_changes_the_code(monkeypatch):
    from cmlang.kernel import Kernel

    def kern(x: cm.ptr[cm.f32], N: cm.constexpr):
        cm.store(x, 0, _mid(cm.load(x, 0, N)))
    k16, k8 = Kernel(kern, simd=16), Kernel(kern, simd=8)
    base = cache.kernel_key(k16, (("int", 16),), "spirv")
    assert base == cache.kernel_key(Kernel(kern, simd=16), (("int", 16),), "spirv")
    others = {cache.kernel_key(k16, (("int", 32),), "spirv"),
              cache.kernel_key(k16, (("float", 16.0),), "spirv"),
              cache.kernel_key(k8, (("int", 16),), "spirv"),
              cache.kernel_key(k16, (("int", 16),), "spirv-vc"),
              cache.kernel_key(k16, (("int", 16),), "spirv", "pvc")}
    monkeypatch.setattr(cache, "llvmlite_fingerprint", lambda: "another llvmlite")
    others.add(cache.kernel_key(k16, (("int", 16),), "spirv"))
    assert base not in others and len(others) == 6


# --- kernels through the cache ------------------------------------------------------

def test_cache_hit_in_a_second_process_does_not_compile(project, cache_dir):
    first = run_child(project, cache_dir)
    assert "result [1.0, 3.0, 5.0]" in first and "compiler loaded: True" in first
    assert len(kernel_entries(cache_dir)) == 1
    second = run_child(project, cache_dir, block=True)   # the compiler cannot even be imported
    assert "result [1.0, 3.0, 5.0]" in second and "compiler loaded: False" in second


def test_changing_a_called_func_invalidates(project, cache_dir):
    assert "result [1.0, 3.0, 5.0]" in run_child(project, cache_dir)
    (project / "helpers.py").write_text(HELPERS.format(factor=3.0))   # inner() changes
    assert "result [1.0, 4.0, 7.0]" in run_child(project, cache_dir)
    assert len(kernel_entries(cache_dir)) == 1      # the same key: the stale entry was replaced
    assert "result [1.0, 4.0, 7.0]" in run_child(project, cache_dir, block=True)


def test_concurrent_processes_compile_the_same_kernel(project, cache_dir):
    env = {**os.environ, "CMLANG_CACHE_DIR": str(cache_dir), "BLOCK": "0", "PYTHONPATH": ROOT}
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(project)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
                for _ in range(4)]
    for child in children:
        out, err = child.communicate(timeout=180)
        assert child.returncode == 0, err
        assert "result [1.0, 3.0, 5.0]" in out
    entries = kernel_entries(cache_dir)
    assert len(entries) == 1 and cache.read_entry(str(entries[0])) is not None
    assert not [p for p in (cache_dir / cache.KERNELS).iterdir() if p.name.startswith(".tmp-")]
    assert "result [1.0, 3.0, 5.0]" in run_child(project, cache_dir, block=True)


def counting_compiles(monkeypatch):
    import cmlang.codegen
    calls = []
    real = cmlang.codegen.compile_function

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(cmlang.codegen, "compile_function", counted)
    return calls


def test_corrupt_entry_is_rebuilt(project, cache_dir, monkeypatch):
    calls = counting_compiles(monkeypatch)
    ck = load_project_kernel(project).compile(N=16)
    [entry] = kernel_entries(cache_dir)
    good = entry.read_bytes()
    entry.write_bytes(good[:-10] + b"0123456789")   # same size, wrong checksum
    again = load_project_kernel(project).compile(N=16)
    assert len(calls) == 2 and again.spirv == ck.spirv
    assert cache.read_entry(str(entry)) is not None     # rewritten, valid again
    hit = load_project_kernel(project).compile(N=16)
    assert len(calls) == 2 and type(hit).__name__ == "CachedCompiledKernel"
    assert hit.ir == ck.ir and hit.llvm_ir == ck.llvm_ir and hit.binary == ck.binary
    assert hit.function.name == ck.function.name      # the IR text parses back when asked
    os.remove(cache.llvm_ir_path(entry.stem))           # the LLVM IR side file is lost:
    assert load_project_kernel(project).compile(N=16).llvm_ir == ck.llvm_ir   # made again


def test_disabled_cache_writes_nothing(project, cache_dir, monkeypatch):
    monkeypatch.setenv("CMLANG_CACHE", "0")
    load_project_kernel(project).compile(N=16)
    assert kernel_entries(cache_dir) == []


def test_cli_cache_info_and_clear(project, cache_dir, capsys):
    from cmlang.cli import main
    load_project_kernel(project).compile(N=16)
    assert main(["cache", "info", "--list"]) == 0
    out = capsys.readouterr().out
    assert f"cache dir: {cache_dir}  [on; kept under 2048 MiB, CMLANG_CACHE_MAX_MB]" in out
    assert "compiled kernels       1 entries" in out and ".affine" in out
    [entry] = kernel_entries(cache_dir)
    sections = cache.read_entry(str(entry))
    manifest = json.loads(sections["manifest"])
    manifest["toolchain"]["compiler"] = "an older compiler"
    cache.write_entry(str(entry.with_name("old" + entry.name)),
                      {**sections, "manifest": json.dumps(manifest).encode()})
    assert main(["cache", "clear", "--stale"]) == 0
    assert "removed 1 cache entry" in capsys.readouterr().out
    assert kernel_entries(cache_dir) == [entry]
    assert main(["cache", "clear"]) == 0
    assert "removed 1 cache entry" in capsys.readouterr().out
    assert kernel_entries(cache_dir) == []


def test_least_recently_used_entries_go_when_the_cache_is_over_its_limit(cache_dir, monkeypatch):
    def put(store, name, nbytes, age):
        path = cache.entry_path(store, name)
        assert cache.write_entry(path, {"data": b"x" * nbytes})
        os.utime(path, (time.time() - age, time.time() - age))
        return path
    mib = 2**20
    old_kernel = put(cache.KERNELS, "old", mib, age=300)
    side = cache.llvm_ir_path("old")
    assert cache.write_entry(side, {"llvm_ir": b"y" * mib})     # goes with its entry
    used = put(cache.DEVICE_BINARIES, "used", mib, age=200)
    newer = put(cache.KERNELS, "newer", mib, age=100)
    assert cache.read_entry(used) is not None                   # a hit makes it the most recent
    monkeypatch.setenv(cache.MAX_MB_ENV, "2.5")
    assert cache.info()["max_bytes"] == int(2.5 * mib)
    fresh = put(cache.KERNELS, "fresh", mib, age=0)              # 5 MiB now: evict down to 2.25
    assert not os.path.exists(old_kernel) and not os.path.exists(side)
    assert not os.path.exists(newer)
    assert os.path.exists(used) and os.path.exists(fresh)
    monkeypatch.setenv(cache.MAX_MB_ENV, "0.5")                 # smaller than one entry:
    assert cache.write_entry(fresh, {"data": b"z" * mib})        # the one just written stays
    assert os.path.exists(fresh) and not os.path.exists(used)
    monkeypatch.setenv(cache.MAX_MB_ENV, "lots")
    with pytest.raises(ValueError, match="CMLANG_CACHE_MAX_MB='lots' is not a number of MiB"):
        cache.max_bytes()


# --- driver binaries ----------------------------------------------------------------

def test_driver_binary_store(cache_dir):
    from cmlang.runtime import get_device
    from test_package import spirv_of
    device = get_device()
    if device.backend != "opencl":
        pytest.skip("the driver-binary store is for OpenCL devices")
    spirv = spirv_of("axpy")
    cache.build_device_kernel(device, spirv, "axpy")
    [entry] = (cache_dir / cache.DEVICE_BINARIES).glob("*.entry")
    cache.build_device_kernel(device, spirv, "axpy")                  # from the stored binary
    sections = cache.read_entry(str(entry))
    cache.write_entry(str(entry), {"binary": b"not a driver binary"})  # a refused binary
    kernel = cache.build_device_kernel(device, spirv, "axpy")
    assert kernel is not None and cache.read_entry(str(entry)) == sections  # rebuilt, stored again
