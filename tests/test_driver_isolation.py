"""The driver builds a module it has not built before in a forked child
(runtime/disk_store.py ``build_device_kernel``): a crash of the driver's compiler is a
LaunchError and the interpreter lives on.  The crash here is real: the Intel CPU runtime's
compiler dies with SIGSEGV on a module where one variable's id is given to a second
variable (a damaged module that passes the launcher's word-level check)."""
import dataclasses

import numpy as np
import pytest

import cmlang as cm
from cmlang.runtime.forked import ChildCrashed, call_in_child
from cmlang.runtime import disk_store, launcher
from cmlang.runtime.launcher import launch

OP_VARIABLE = 59


@cm.kernel
def double(x: cm.ptr[cm.f32], y: cm.ptr[cm.f32]):
    t = cm.thread_id(0)
    cm.store(y, t * 16, cm.load(x, t * 16, 16) * 2.0)


def _arrays():
    return np.arange(64, dtype=np.float32), np.zeros(64, np.float32)


def damaged_binary():
    """``double``'s binary with its second OpVariable defining the first one's id."""
    binary = double.compile(*_arrays()).binary
    words = np.frombuffer(binary.spirv, np.uint32).copy()
    variables, at = [], 5
    while at < len(words):
        if words[at] & 0xFFFF == OP_VARIABLE:
            variables.append(at)
        at += words[at] >> 16
    words[variables[1] + 2] = words[variables[0] + 2]
    damaged = dataclasses.replace(binary, spirv=words.tobytes())
    assert launcher.spirv_problem(damaged.spirv) is None      # well-formed word stream
    return damaged


def _launch_outcome(binary):
    """What a launch of ``binary`` does, run in a child so that this test session survives
    even when the driver takes its process down."""
    def run():
        x, y = _arrays()
        try:
            launch(binary, 4, None, [x, y])
        except cm.LaunchError as e:
            return f"LaunchError: {e}"
        return f"ran: {y[:4].tolist()}"
    try:
        return call_in_child(run)
    except ChildCrashed as e:
        return f"crashed with wait status {e.status}"


def test_a_driver_crash_is_a_launch_error(monkeypatch):
    monkeypatch.setenv("CMLANG_CACHE", "0")
    outcome = _launch_outcome(damaged_binary())
    assert outcome.startswith("LaunchError: the driver of opencl:cpu")
    assert "crashed (signal SIGSEGV) building kernel 'double' (in a child process; this one is unharmed)" in outcome


def test_without_isolation_the_same_module_kills_the_process(monkeypatch):
    """Why the isolation exists (and that the module above really crashes the driver)."""
    monkeypatch.setenv("CMLANG_CACHE", "0")
    monkeypatch.setenv(disk_store.ISOLATE_ENV, "0")
    assert _launch_outcome(damaged_binary()) == "crashed with wait status 11"


def test_the_process_goes_on_after_a_crash(monkeypatch):
    monkeypatch.setenv("CMLANG_CACHE", "0")
    with pytest.raises(cm.LaunchError, match="crashed"):
        launch(damaged_binary(), 4, None, list(_arrays()))
    x, y = _arrays()
    double[4](x, y)
    np.testing.assert_array_equal(y, 2 * x)


def test_a_refused_module_still_reports_the_drivers_log(monkeypatch):
    monkeypatch.setenv("CMLANG_CACHE", "0")
    binary = double.compile(*_arrays()).binary
    renamed = dataclasses.replace(binary, name="no_such_kernel")
    with pytest.raises(cm.LaunchError, match="no kernel named 'no_such_kernel'"):
        launch(renamed, 4, None, list(_arrays()))


def test_only_new_modules_are_built_in_a_child(monkeypatch, tmp_path):
    """With the driver-binary store, a module built once (in a child) is loaded from disk
    afterwards: no child, no driver compile."""
    monkeypatch.setenv("CMLANG_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CMLANG_CACHE", "1")
    children = []
    real = disk_store._build_in_child
    monkeypatch.setattr(disk_store, "_build_in_child", lambda *a: children.append(a[2]) or real(*a))
    binary = double.compile(*_arrays()).binary
    launcher.clear_caches()                       # built earlier in this session: forget it
    x, y = _arrays()
    launch(binary, 4, None, [x, y])
    np.testing.assert_array_equal(y, 2 * x)
    assert children == ["double"]
    launcher.clear_caches()
    x, y = _arrays()
    launch(binary, 4, None, [x, y])
    np.testing.assert_array_equal(y, 2 * x)
    assert children == ["double"]                 # the second build came from the store
