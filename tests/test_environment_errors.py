"""Settings and cache states: a bad CMLANG_CACHE_MAX_MB does not stop compiles, an
unwritable cache dir is named as such, and only cmlang's own .icd files are registered."""
import os
import subprocess
import sys

import pytest

from cmlang.runtime import icd

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

KERNEL_SCRIPT = """
import numpy as np, cmlang as cm
@cm.kernel
def k(x: cm.ptr[cm.f32]):
    cm.store(x, 0, cm.load(x, 0, 16) + 1.0)
x = np.zeros(16, np.float32)
k[1](x)
print("sum", x.sum())
"""


def run_child(tmp_path, env_changes, script=KERNEL_SCRIPT):
    env = {k: v for k, v in os.environ.items() if k not in ("OCL_ICD_VENDORS", icd.USER_SOURCE_ENV)}
    env.update(env_changes)
    env["PYTHONPATH"] = REPO
    path = tmp_path / "child.py"
    path.write_text(script)
    return subprocess.run([sys.executable, str(path)], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)


def test_bad_cache_size_setting_warns_and_compiles(tmp_path):
    out = run_child(tmp_path, {"CMLANG_CACHE_DIR": str(tmp_path / "cache"), "CMLANG_CACHE_MAX_MB": "abc"})
    assert out.returncode == 0, out.stderr
    assert "sum 16.0" in out.stdout
    assert ("CMLANG_CACHE_MAX_MB='abc' is not a number of MiB; the disk cache is not trimmed "
            "until it is fixed") in out.stderr


def test_unwritable_cache_dir_is_named_not_a_missing_runtime(tmp_path):
    if icd.find_intel_cpu_runtime() is None:
        pytest.skip("needs the Intel OpenCL CPU runtime (intel-opencl-rt)")
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    out = run_child(tmp_path, {"CMLANG_CACHE_DIR": str(blocker / "cache")})
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("cmlang.errors.LaunchError: no device that runs SPIR-V kernels was found")
    assert (f"cmlang could not register the Intel OpenCL CPU runtime in {blocker / 'cache'}/opencl-vendors"
            in last and "set CMLANG_CACHE_DIR to a folder you can write" in last), last
    assert "pip install intel-opencl-rt" not in last


@pytest.fixture
def private_registration(tmp_path, monkeypatch):
    system = tmp_path / "etc-vendors"
    system.mkdir()
    (system / "pocl.icd").write_text("libpocl.so.2\n")
    monkeypatch.setattr(icd, "SYSTEM_VENDORS_DIR", str(system))
    monkeypatch.setattr(icd, "_done", None)
    monkeypatch.setattr(icd, "find_intel_cpu_runtime", lambda: "/opt/intel/lib/libintelocl.so")
    monkeypatch.setenv("CMLANG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("OCL_ICD_VENDORS", raising=False)
    monkeypatch.delenv(icd.USER_SOURCE_ENV, raising=False)
    monkeypatch.delenv(icd.OPT_OUT_ENV, raising=False)
    return tmp_path


def test_planted_icd_files_are_removed_on_start(private_registration, monkeypatch):
    folder = icd.register_intel_cpu_runtime()
    for planted in ("evil.icd", "system-evil.icd", "user-evil.icd"):
        with open(os.path.join(folder, planted), "w") as f:
            f.write("/tmp/libevil.so\n")
    with open(os.path.join(folder, icd.ICD_NAME), "w") as f:
        f.write("/tmp/libevil.so\n")                        # ours, rewritten
    # A child process inherits OCL_ICD_VENDORS = our folder: it rebuilds the folder too.
    monkeypatch.setattr(icd, "_done", None)
    assert icd.register_intel_cpu_runtime() == folder
    icds = sorted(n for n in os.listdir(folder) if n.endswith(".icd"))
    assert icds == ["intel-cpu-cmlang.icd", "system-pocl.icd"]
    assert open(os.path.join(folder, icd.ICD_NAME)).read() == "/opt/intel/lib/libintelocl.so\n"


def test_child_keeps_the_users_vendors_copies(private_registration, monkeypatch):
    user = private_registration / "mine"
    user.mkdir()
    (user / "custom.icd").write_text("/opt/custom/libcustom.so\n")
    monkeypatch.setenv("OCL_ICD_VENDORS", str(user))
    folder = icd.register_intel_cpu_runtime()
    assert os.environ[icd.USER_SOURCE_ENV] == str(user)
    with open(os.path.join(folder, "planted.icd"), "w") as f:
        f.write("/tmp/libevil.so\n")
    monkeypatch.setattr(icd, "_done", None)                 # the child: OCL_ICD_VENDORS is ours
    assert icd.register_intel_cpu_runtime() == folder
    assert sorted(os.listdir(folder)) == ["intel-cpu-cmlang.icd", "system-pocl.icd", "user-custom.icd"]
