"""Launch budgets (grid size, shared local memory) and tracebacks trimmed to the user's
frames."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import cmlang as cm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@cm.kernel
def nothing(x: cm.ptr[cm.f32]):
    cm.store(x, 0, cm.load(x, 0, 16))


@cm.kernel
def big_slm(x: cm.ptr[cm.f32]):
    s = cm.slm(cm.f32, 1 << 22)
    cm.store(s, 0, cm.load(x, 0, 16))
    cm.barrier()
    cm.store(x, 0, cm.load(s, 0, 16) + 1.0)


@pytest.mark.parametrize("grid, threads", [(2**40, 2**40), (2**60, 2**60), ((2**20, 2**20), 2**40)])
def test_grid_budget(grid, threads):
    start = time.perf_counter()
    with pytest.raises(cm.LaunchError) as info:
        nothing[grid](np.zeros(16, np.float32))
    assert time.perf_counter() - start < 5
    shown = grid if isinstance(grid, tuple) else (grid,)
    assert str(info.value) == (f"nothing(): grid {shown}: the grid has: {threads} CM threads in one "
                               "grid, over the limit of 4294967296 (set CMLANG_MAX_GRID_THREADS to "
                               "raise it)")


def test_grid_budget_setting(monkeypatch):
    monkeypatch.setenv("CMLANG_MAX_GRID_THREADS", "4")
    x = np.zeros(16, np.float32)
    nothing[4](x)
    with pytest.raises(cm.LaunchError, match=r"5 CM threads in one grid, over the limit of 4"):
        nothing[5](x)
    monkeypatch.setenv("CMLANG_MAX_GRID_THREADS", str(2**70))
    with pytest.raises(cm.LaunchError, match=r"more than a launch can express \(2\*\*63\)"):
        nothing[2**62](x)


def test_slm_beyond_the_device_is_a_launch_error():
    device = cm.get_device()
    if not getattr(device, "local_mem_size", 0) or device.local_mem_size >= 1 << 24:
        pytest.skip("needs a device that reports less than 16 MiB of local memory")
    x = np.zeros(16, np.float32)
    with pytest.raises(cm.LaunchError) as info:
        big_slm[1](x)
    assert str(info.value) == (f"big_slm(): the kernel's shared local memory (cm.slm) is 16777216 "
                               f"bytes per group, more than {device.spec} has "
                               f"({device.local_mem_size} bytes)")
    assert big_slm.compile(x).binary.slm_bytes == 1 << 24


BAD_KERNEL = """\
import numpy as np
import cmlang as cm

@cm.kernel
def k(x: cm.ptr[cm.f32]):
    v = cm.load(x, 0, 16)
    cm.store(x, 0, v + undefined_name)

k[1](np.zeros(16, np.float32))
"""


@pytest.mark.parametrize("full", [False, True])
def test_compile_error_traceback_shows_the_users_frames(tmp_path, full):
    script = tmp_path / "user.py"
    script.write_text(BAD_KERNEL)
    env = dict(os.environ, PYTHONPATH=REPO, CMLANG_FULL_TRACEBACK="1" if full else "0")
    out = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    frames = [line for line in lines if line.startswith('  File "')]
    assert lines[-3].startswith(f"cmlang.errors.CompileError: {script}:7:24: name 'undefined_name' "
                                "is not defined"), out.stderr
    if full:
        assert len(frames) > 10, out.stderr   # the compiler's frames, for bug reports
    else:
        # The user's launch line, and the one line of cmlang that re-raises.
        assert len(frames) == 2, out.stderr
        assert frames[0] == f'  File "{script}", line 9, in <module>'
        assert "cmlang/kernel.py" in frames[1]
        assert len(lines) <= 10, out.stderr


def test_driver_refusals_at_launch_are_launch_errors(monkeypatch):
    # Whatever cmlang's checks do not foresee, the driver's error comes out as a LaunchError.
    monkeypatch.setattr(cm.runtime.launcher, "_check_budgets", lambda *a: None)
    device = cm.get_device()
    if device.backend != "opencl" or not getattr(device, "local_mem_size", 0):
        pytest.skip("needs an OpenCL device that reports its local memory")
    with pytest.raises(cm.LaunchError) as info:
        big_slm[1](np.zeros(16, np.float32))
    assert str(info.value).startswith(f"{device.spec} refused the launch of 'big_slm' (global size "), info.value
    assert "OUT_OF_RESOURCES" in str(info.value)
