"""Cold compile time of a 20-line kernel: Python source -> IR -> LLVM IR -> SPIR-V.

    python bench/compile_time.py

"cold" is the first compile in a fresh process (includes importing the compiler and
llvmlite); "warm" compiles a new specialization once everything is loaded. Driver build
time (SPIR-V -> machine code, on first launch) is reported separately.
"""
import time

T0 = time.perf_counter()
import numpy as np  # noqa: E402

import cmlang as cm  # noqa: E402
from cmlang import f32, i32  # noqa: E402


@cm.kernel(simd=16)
def softmax_rows(x: cm.ptr[f32], y: cm.ptr[f32], cols: i32, N: cm.constexpr):
    row = cm.thread_id(0)
    v = cm.load(x, row * N, N)
    m = cm.reduce_max(v)
    e = cm.exp(v - m)
    s = cm.reduce_sum(e)
    out = e * (1.0 / s)
    lo = out[0:N // 2]
    hi = out[N // 2:N]
    mix = cm.merge(lo, hi, lo > hi)
    acc = cm.zeros(cm.vector[f32, N // 2])
    for i in range(cols):
        acc += mix * 0.5
    w = cm.shuffle_xor(out, 1)
    t = cm.thread_id(0) % 2
    if t == 0:
        w = w + 1.0
    cm.store(y, row * N, w)
    cm.store(y, row * N, out)
    cm.store(y, row * N, acc.replicate(2))


def main():
    t_import = time.perf_counter() - T0
    t0 = time.perf_counter()
    ck = softmax_rows.compile(N=32)
    t_cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    softmax_rows.compile(N=64)
    t_warm = time.perf_counter() - t0
    x = np.random.default_rng(0).standard_normal(32 * 4).astype(np.float32)
    y = np.zeros_like(x)
    t0 = time.perf_counter()
    softmax_rows[4](x, y, 2, 32)
    t_build = time.perf_counter() - t0
    print(f"import cmlang: {1e3 * t_import:.0f} ms; cold compile (20-line kernel, incl. compiler "
          f"imports): {1e3 * t_cold:.0f} ms; warm compile: {1e3 * t_warm:.0f} ms; first launch "
          f"(driver build): {1e3 * t_build:.0f} ms; SPIR-V {len(ck.spirv)} bytes")


if __name__ == "__main__":
    main()
