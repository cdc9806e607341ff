"""Run the core example programs on the current device and check them against numpy.

    python -m examples.tour          (or: cmlang demo)
"""
import time

import numpy as np

import cmlang as cm


def programs(rng):
    from examples.core import bitonic, prefix_sum, histogram, transpose, slm_reverse, dpas_gemm
    keys = rng.standard_normal(1 << 14).astype(np.float32)
    ints = rng.integers(-100, 100, 1 << 16).astype(np.int32)
    pixels = rng.integers(0, 256, 1 << 16).astype(np.uint8)
    img = rng.standard_normal((512, 256)).astype(np.float32)
    vals = rng.standard_normal(1 << 14).astype(np.float32)
    a = rng.standard_normal((128, 64)).astype(np.float32)
    b = rng.standard_normal((64, 128)).astype(np.float32)
    return [
        ("bitonic sort (in-register, 32 keys/thread)",
         lambda: bitonic.sort_rows(keys.copy()), lambda: bitonic.reference(keys)),
        ("prefix sum (regions)", lambda: prefix_sum.inclusive_scan(ints), lambda: prefix_sum.reference(ints)),
        ("histogram (SLM + atomics)", lambda: histogram.histogram(pixels), lambda: histogram.reference(pixels)),
        ("transpose (2-D block IO)", lambda: transpose.transpose(img), lambda: transpose.reference(img)),
        ("group reverse (SLM + barrier)", lambda: slm_reverse.reverse_in_groups(vals),
         lambda: slm_reverse.reference(vals)),
        ("GEMM from dpas tiles", lambda: dpas_gemm.matmul(a, b), lambda: dpas_gemm.reference(a, b)),
    ]


def main():
    from cmlang.runtime import get_device
    print(f"device: {get_device()}")
    rng = np.random.default_rng(0)
    failures = 0
    for name, run, ref in programs(rng):
        t0 = time.perf_counter()
        got = run()
        t1 = time.perf_counter()
        ok = np.allclose(got, ref(), rtol=1e-4, atol=1e-4)
        failures += not ok
        print(f"  {'ok  ' if ok else 'FAIL'} {name:45s} {1e3 * (t1 - t0):8.1f} ms (first run: compile + build)")
    print("all results match numpy" if not failures else f"{failures} mismatches")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
