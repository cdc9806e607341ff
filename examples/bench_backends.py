"""Launch overhead of the two backends, pyopencl and dpctl, on the same device (issue 7).

    python -m examples.bench_backends [--iters 10000] [--batches 5] [--device-kind cpu]

A tiny cmlang kernel (saxpy on 32 floats, one CM thread) is launched ``--iters`` times
per batch on device-resident arguments (DeviceArrays), on ``opencl:<kind>`` and
``dpctl:opencl:<kind>``.  Per backend, microseconds per launch, the median of the
batches and (in parentheses) the best one:

- ``k[1](...)``: asynchronous launches, one synchronize at the end of the batch
  (host cost of a launch when the device keeps up);
- ``k[1](...).wait()``: each launch waited for (round trip);
- ``raw enqueue`` / ``raw enqueue + wait``: the backend's own call with ready-made
  arguments (pyopencl ``enqueue_nd_range_kernel``, dpctl ``submit_async``), the floor;
- ``k[1](numpy)``: host arrays, copied in and back each launch (synchronous).

Batches of the contenders are interleaved, so machine noise hits them alike.
Not a test: the figures go in the issue's note.
"""
from __future__ import annotations

import argparse
import ctypes
import statistics
import time

import numpy as np

import cmlang as cm
from cmlang import f32

N = 32


@cm.kernel(simd=16)
def saxpy(x: cm.ptr[f32], y: cm.ptr[f32], a: f32):
    base = cm.thread_id(0) * N
    cm.store(y, base, a * cm.load(x, base, N) + cm.load(y, base, N))


def contenders(spec):
    """(name, one-launch function, end-of-batch function) for one backend."""
    device = cm.set_device(spec)
    x = cm.to_device(np.arange(N, dtype=np.float32))
    y = cm.to_device(np.zeros(N, np.float32))
    hx, hy = np.arange(N, dtype=np.float32), np.zeros(N, np.float32)
    binary = saxpy.compile(x, y, 1.0).binary
    saxpy[1](x, y, 1.0).wait()  # builds the program for this device
    raw_enqueue, raw_finish = raw_launcher(device, binary, x, y)
    launch = saxpy[1]
    return [
        ("k[1](...)", lambda: launch(x, y, 1.0), device.synchronize),
        ("k[1](...).wait()", lambda: launch(x, y, 1.0).wait(), None),
        ("raw enqueue", raw_enqueue, raw_finish),
        ("raw enqueue + wait", lambda: raw_enqueue().wait(), None),
        ("k[1](numpy)", lambda: launch(hx, hy, 1.0), None),
    ]


def raw_launcher(device, binary, x, y):
    """The backend's own launch call on a kernel built from the same SPIR-V."""
    global_size, local_size = (binary.simd,), (binary.simd,)
    if device.backend == "opencl":
        import pyopencl as cl
        kernel = device.build_kernel(binary.spirv, binary.name)
        a = np.float32(1.0)

        def enqueue():
            kernel.set_args(x.buffer, y.buffer, a)
            return cl.enqueue_nd_range_kernel(device.queue, kernel, global_size, local_size)
        return enqueue, device.queue.finish
    kernel = device.build_kernel(binary.spirv, binary.name)
    queue, args, sizes = device.queue, [x.buffer, y.buffer, ctypes.c_float(1.0)], [binary.simd]
    return (lambda: queue.submit_async(kernel, args, sizes, sizes)), queue.wait


def measure(specs, iters, batches):
    table = {spec: contenders(spec) for spec in specs}
    times = {(spec, name): [] for spec in specs for name, _, _ in table[spec]}
    for _ in range(batches):
        for spec in specs:
            cm.set_device(spec)
            for name, launch_once, finish in table[spec]:
                launch_once()
                if finish:
                    finish()
                start = time.perf_counter()
                for _ in range(iters):
                    launch_once()
                if finish:
                    finish()
                times[spec, name].append((time.perf_counter() - start) / iters)
    return table, times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=10000)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--device-kind", default="cpu")
    args = parser.parse_args(argv)
    specs = [f"opencl:{args.device_kind}", f"dpctl:opencl:{args.device_kind}"]
    table, times = measure(specs, args.iters, args.batches)
    print(f"launch overhead, {args.iters} launches x {args.batches} batches, "
          "us/launch: median (best)")
    print(f"  device: {cm.get_device().name} ({cm.get_device().platform})")
    print(f"  {'':22s}" + "".join(f"{spec:>22s}" for spec in specs))
    for name, _, _ in table[specs[0]]:
        row = "".join(f"{_figure(times[spec, name]):>22s}" for spec in specs)
        print(f"  {name:22s}{row}")
    return 0


def _figure(seconds) -> str:
    return f"{1e6 * statistics.median(seconds):.1f} ({1e6 * min(seconds):.1f})"


if __name__ == "__main__":
    raise SystemExit(main())
