"""Launch-overhead figures of issue 6 (reported, not tested):

1. first launch in a new process with a warm disk cache (target: <= 50 ms);
2. steady-state host time per launch against a raw pyopencl enqueue of the same
   SPIR-V program (target: <= 1.5x).

    python -m examples.bench_launch [--case saxpy|attention] [--iters 2000]

(1) runs child processes against a private cache folder: one cold (compiles and fills
the cache), then warm ones; each child times ``import cmlang`` (and the kernel's module), device set-up and the first
``k[grid](...)`` call separately.  "driver store" is the same with
``cmlang.cache.build_device_kernel`` building the program (the driver's binary from
disk instead of compiling the SPIR-V again).
(2) launches a tiny kernel on device arrays (no host copies): raw pyopencl
(``set_args`` + ``enqueue_nd_range_kernel`` + wait), ``k[grid](...)``, a package
kernel and ``cmlang.runtime.launch``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import cmlang as cm
from cmlang import f32, i32

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@cm.kernel(simd=16)
def saxpy(x: cm.ptr[f32], y: cm.ptr[f32], a: f32, n: i32):
    base = cm.thread_id(0) * 32
    vx = cm.load(x, base, 32)
    vy = cm.load(y, base, 32)
    cm.store(y, base, a * vx + vy)


def case_saxpy(threads=1):
    """(kernel, grid, host args) of the default case."""
    n = 32 * threads
    return saxpy, threads, (np.arange(n, dtype=np.float32), np.ones(n, np.float32), 2.0, n)


def case_attention(n=256, hq=8, hkv=2, d=64, rows=8, keys=64):
    """The flagship: dense causal flash attention (examples/attention), random inputs
    already in the packed layout (the timing does not need meaningful numbers)."""
    from examples.attention import kernels
    rng = np.random.default_rng(0)
    padded = -(-n // keys) * keys
    qs = rng.standard_normal((hq, padded, d), np.float32)
    kt = rng.standard_normal((hkv, d, padded), np.float32)
    vp = rng.standard_normal((hkv, padded, d), np.float32)
    o = np.zeros((n, hq, d), np.float32)
    args = (qs, kt, vp, o, n, hq, hq // hkv, padded, d, rows, keys, d, d, True, False, False, cm.f32, cm.f32)
    return kernels.flash_attention, (-(-n // rows), hq), args


CASES = {"saxpy": case_saxpy, "attention": case_attention}


# ---------------------------------------------------------------------------
# (1) first launch in a new process

def child(case, driver_store, t0):
    """In a fresh process; ``t0``: the clock before ``import cmlang``."""
    from cmlang.runtime import get_device
    kernel, grid, args = CASES[case]()
    t1 = time.perf_counter()
    device = get_device()
    device.context  # noqa: B018 - create the OpenCL context now: process set-up, not launch
    if driver_store:
        install_driver_store(device)
    t2 = time.perf_counter()
    kernel.compile(*args)            # the disk cache (or the compiler)
    t_compiled = time.perf_counter()
    kernel[grid](*args)              # the driver's build, argument set-up, the run
    t3 = time.perf_counter()
    kernel[grid](*args)
    t4 = time.perf_counter()
    print(json.dumps({"setup_ms": 1e3 * (t1 - t0), "device_ms": 1e3 * (t2 - t1),
                      "compile_ms": 1e3 * (t_compiled - t2), "first_ms": 1e3 * (t3 - t2),
                      "second_ms": 1e3 * (t4 - t3)}))


def install_driver_store(device):
    """Route this device's program builds through the driver-binary store (what the
    launcher does once it calls ``cmlang.cache.build_device_kernel``)."""
    from cmlang import cache
    plain = device.build_kernel
    device.build_kernel = lambda spirv, name: cache.build_device_kernel(device, spirv, name, fallback=plain)


def run_child(case, cache_dir, driver_store=False):
    env = {**os.environ, "CMLANG_CACHE_DIR": cache_dir, "PYTHONWARNINGS": "ignore",
           # bytecode as an installed package has it (kept out of the source tree)
           "PYTHONPYCACHEPREFIX": os.path.join(cache_dir, "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    cmd = [sys.executable, "-c", "import time; t0 = time.perf_counter(); import examples.bench_launch as b; "
           f"b.child({case!r}, {driver_store!r}, t0)"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_ms"] = 1e3 * (time.perf_counter() - t0)
    return result


def first_launch(case, runs):
    rows = []
    with tempfile.TemporaryDirectory() as cache_dir:
        rows.append(("cold cache (compile)", [run_child(case, cache_dir)]))
        rows.append(("warm cache", [run_child(case, cache_dir) for _ in range(runs)]))
        run_child(case, cache_dir, driver_store=True)  # stores the driver binary
        rows.append(("warm cache + driver store", [run_child(case, cache_dir, True) for _ in range(runs)]))
    print(f"first launch in a new process ({case}; medians of {runs} warm runs), ms:")
    print(f"  {'':28s} {'first launch':>12s} {'of which compile/cache':>22s} {'second':>7s} "
          f"{'import':>7s} {'device':>7s} {'process':>8s}")
    for label, results in rows:
        med = {k: statistics.median(r[k] for r in results) for k in results[0]}
        print(f"  {label:28s} {med['first_ms']:12.1f} {med['compile_ms']:22.1f} {med['second_ms']:7.2f} "
              f"{med['setup_ms']:7.1f} {med['device_ms']:7.1f} {med['process_ms']:8.1f}")


# ---------------------------------------------------------------------------
# (2) steady-state launch overhead

def steady_state(iters, case="saxpy"):
    """On the tiny saxpy kernel: its device time is small, so host overhead shows."""
    import pyopencl as cl
    from cmlang.package import build_package
    from cmlang.runtime import get_device, launch, to_device
    from cmlang.runtime.package import load_package

    kernel, grid, host_args = CASES[case]()
    device = get_device()
    args = tuple(to_device(a, device) if isinstance(a, np.ndarray) else a for a in host_args)
    binary = kernel.compile().binary
    kernel[grid](*args)

    raw = cl.Kernel(cl.Program(device.context, binary.spirv).build(), binary.name)
    raw_args = [a.buffer if hasattr(a, "buffer") else np.dtype(p.type.np_dtype).type(a)
                for a, p in zip(args, binary.params)]
    global_size, local_size = (grid * binary.simd,), (binary.simd,)
    queue = device.queue

    def raw_enqueue():
        raw.set_args(*raw_args)
        cl.enqueue_nd_range_kernel(queue, raw, global_size, local_size).wait()

    with tempfile.TemporaryDirectory() as folder:
        path = build_package(os.path.join(folder, "bench.cmpkg"), [kernel], progress=False)
        package_kernel = getattr(load_package(path), kernel.__name__)
    contenders = [
        ("raw pyopencl enqueue", raw_enqueue),
        ("k[grid](...)", lambda: kernel[grid](*args)),
        ("package k[grid](...)", lambda: package_kernel[grid](*args)),
        ("runtime.launch(binary)", lambda: launch(binary, grid, None, args)),
    ]
    times = {name: [] for name, _ in contenders}
    for _ in range(7):  # interleaved batches: drifts hit every contender alike
        for name, fn in contenders:
            fn()
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            times[name].append((time.perf_counter() - t0) / iters)
    base = statistics.median(times["raw pyopencl enqueue"])
    print(f"steady-state launch ({case}, device arrays, {iters} launches x 7 batches, median), us:")
    for name, _ in contenders:
        t = statistics.median(times[name])
        print(f"  {name:28s} {1e6 * t:8.1f}   {t / base:5.2f}x raw")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", default="saxpy", choices=sorted(CASES))
    p.add_argument("--iters", type=int, default=2000)
    p.add_argument("--runs", type=int, default=5, help="warm child processes per row")
    args = p.parse_args(argv)
    from cmlang.runtime import get_device
    print(f"device: {get_device()}")
    first_launch(args.case, args.runs)
    steady_state(args.iters)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
