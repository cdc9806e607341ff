"""Kernels compiled from several threads at once (``concurrent.futures.ThreadPoolExecutor``)
all finish and are right.

LLVM's SPIR-V backend runs in a forked child (codegen/spirv.py).  A fork copies only the
forking thread: when another thread was inside llvmlite at that moment (a spirv-vc compile,
a program's own llvmlite use), llvmlite's lock stayed held in the child, whose first call
into LLVM then waited forever, and so did the compile.  The work runs in a subprocess with a
deadline, so that a hang fails the test instead of stalling the session, and the
subprocess's whole process group (the forked children too) is killed on the way out.
"""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import cmlang as cm
from cmlang.runtime.forked import ChildTimedOut, call_in_child

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEADLINE_S = 60          # a normal run takes 5-15 s on a busy 2-core machine
N = 64                   # elements per launch: 4 CM threads of 16


@cm.kernel
def weighted(x: cm.ptr[cm.f32], y: cm.ptr[cm.f32], K: cm.constexpr, S: cm.constexpr):
    """y = x * (K + (K+1) + ... + (K+S-1)), term by term (S unrolled multiply-adds)."""
    t = cm.thread_id(0)
    v = cm.load(x, t * 16, 16)
    acc = cm.zeros(cm.vector[cm.f32, 16])
    for i in cm.static_range(S):
        acc += v * float(K + i)
    cm.store(y, t * 16, acc)


# Distinct specializations per target: (K, S).  spirv-vc compiles run llvmlite in this
# process while spirv compiles fork; a third kind of thread uses llvmlite directly.  Before
# the fix each fork hung with some chance: 24 of them hung the run 8 times in 8.
SPIRV_SPECS = [(k, s) for k in range(1, 13) for s in (8, 24)]
VC_SPECS = [(k, s) for k in (1, 7) for s in (24, 40)]


def _llvmlite_user(stop):
    """A program's own llvmlite use in another thread (as numba's would be)."""
    import llvmlite.binding as llvm
    adds = 3000         # a few ms in LLVM's parser per round, with llvmlite's lock held
    text = "define i32 @f(i32 %v0) {\n" + "".join(
        f"  %v{i + 1} = add i32 %v{i}, {i}\n" for i in range(adds)) + f"  ret i32 %v{adds}\n}}\n"
    while not stop.is_set():
        llvm.parse_assembly(text).verify()


def _worker():
    """Compile every specialization from 8 threads at once, then run them; print JSON."""
    import threading
    from concurrent.futures import ThreadPoolExecutor
    sys.path.insert(0, HERE)
    from vc_emulator import run_isolated

    stop = threading.Event()
    user = threading.Thread(target=_llvmlite_user, args=(stop,), daemon=True)
    user.start()
    jobs = [("spirv", k, s) for k, s in SPIRV_SPECS] + [("spirv-vc", k, s) for k, s in VC_SPECS]
    with ThreadPoolExecutor(8) as pool:
        compiled = list(pool.map(lambda job: weighted.compile(target=job[0], K=job[1], S=job[2]), jobs))
    stop.set()
    user.join()          # the emulator below forks too, and runs llvmlite in its child
    x = np.linspace(-1.0, 1.0, N, dtype=np.float32)
    out = []
    for (target, k, s), ck in zip(jobs, compiled):
        y = np.zeros(N, np.float32)
        if target == "spirv":
            weighted[4](x, y, k, s)                  # the default device (the CPU runtime)
        else:                                        # the host emulator of spirv-vc modules
            y = run_isolated(ck, 4, None, [x, y])[1]
        out.append({"target": ck.target, "K": k, "S": s, "y": y.tolist()})
    print(json.dumps(out))


def test_specializations_compiled_from_threads_all_finish_and_compute_right():
    env = dict(os.environ, CMLANG_CACHE="0", PYTHONPATH=os.pathsep.join([ROOT, HERE]))
    proc = subprocess.Popen([sys.executable, __file__], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        stdout, stderr = "", "(killed)"
    finally:
        _kill_group(proc)
    assert proc.returncode == 0, (f"compiling from 8 threads did not finish in {DEADLINE_S} s "
                                  f"or failed (exit {proc.returncode}):\n{stderr[-3000:]}")
    results = json.loads(stdout.strip().splitlines()[-1])
    assert [(r["target"], r["K"], r["S"]) for r in results] == \
        [("spirv", k, s) for k, s in SPIRV_SPECS] + [("spirv-vc", k, s) for k, s in VC_SPECS]
    x = np.linspace(-1.0, 1.0, N, dtype=np.float64)
    for r in results:
        want = x * sum(r["K"] + i for i in range(r["S"]))
        np.testing.assert_allclose(r["y"], want, rtol=1e-5, atol=1e-4,
                                   err_msg=f"{r['target']} K={r['K']} S={r['S']}")


def _kill_group(proc):
    """The subprocess and anything it forked (a child stuck on a lock outlives its parent)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@pytest.mark.parametrize("wait", ["pidfd", "polling"])
def test_a_child_past_its_timeout_is_killed_and_reported(wait, monkeypatch):
    import time
    if wait == "polling":                  # as on systems without pidfd_open
        monkeypatch.delattr(os, "pidfd_open", raising=False)
    assert call_in_child(lambda a: a * 2, 21, timeout=30) == 42
    start = time.monotonic()
    with pytest.raises(ChildTimedOut, match=r"did not finish in 0.5 s") as info:
        call_in_child(lambda: (os.write(2, b"still waiting\n"), time.sleep(60)), timeout=0.5)
    assert time.monotonic() - start < 10
    assert info.value.log == "still waiting"


def test_a_stuck_spirv_backend_is_a_compile_error_naming_the_kernel(monkeypatch):
    """A backend child that never finishes becomes a CompileError naming the kernel, the
    backend and the setting that allows longer."""
    import time
    from cmlang import limits
    from cmlang.codegen import spirv as cg_spirv

    monkeypatch.setenv(limits.CHILD_SECONDS.env, "1")
    monkeypatch.setenv("CMLANG_CACHE", "0")
    monkeypatch.setattr(cg_spirv, "_compile", lambda *args: time.sleep(60))

    @cm.kernel
    def stuck_kernel(x: cm.ptr[cm.f32]):
        cm.store(x, 0, cm.load(x, 0, 16) + 1.0)
    with pytest.raises(cm.CompileError, match=r"kernel 'stuck_kernel': LLVM's SPIR-V backend did "
                                              r"not finish in 1 s .*CMLANG_CHILD_TIMEOUT_S"):
        stuck_kernel.compile(target="spirv")


def test_the_recursion_limit_stays_raised_while_any_thread_compiles():
    """Thread a starts compiling, then b; a finishes while b still compiles.  The limit is
    one per process: b must keep the raised one (its deep kernel would otherwise be "nested
    too deeply"), and once both are done the limit is the one found before."""
    import threading
    from cmlang import limits
    before = sys.getrecursionlimit()
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def a():
        with limits.compiler_recursion() as raised:
            seen["raised"] = raised
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def b():
        a_in.wait(10)
        with limits.compiler_recursion():
            b_in.set()
            a_out.wait(10)
            seen["b after a"] = sys.getrecursionlimit()
    threads = [threading.Thread(target=f) for f in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen["raised"] > before
    assert seen["b after a"] == seen["raised"]
    assert sys.getrecursionlimit() == before


if __name__ == "__main__":
    _worker()
