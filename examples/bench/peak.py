"""The peak probe: the device's f32 FMA throughput, measured by a kernel made for it.

Every value of ``x`` is the start of a chain ``x <- x * a + b`` run ``iters`` times
(``a``, ``b``: run-time scalars, so the compiler can neither fold the FMA into an add nor
the loop into a formula).  A CM thread keeps ``CHAINS`` rows of ``W`` values (``W``: the sub-group size) in
registers, each row one independent chain per lane: the FMAs of one step do not wait for
each other, so with enough rows in flight the FMA units stay busy through their latency
(4 cycles on current x86 cores, two FMA pipes: at least 8 independent 8-lane FMAs).
Nothing is read or written inside the loop; the chains' ends are stored once, so that the
work is observable (and checked).  The grid has ``n / (CHAINS * W)`` CM threads, far
more than cores, so every core is kept busy.

The row count and the sub-group size are chosen by ``cm.autotune`` per device: every
config does the same total work (n chains of ``iters`` FMAs), so the fastest one is the
device's best FMA rate.  ``cmlang bench --peak`` runs this benchmark first and reads the
other rows' GFLOP/s as a fraction of its figure.

With ``|a| < 1`` the chains converge to ``b / (1 - a)`` (no overflow, no denormals, for
any length): ``x_n = a^n x_0 + b (1 - a^n) / (1 - a)``, the float64 reference.
"""
import numpy as np

import cmlang as cm
from cmlang import f32, i32
from cmlang.bench import Benchmark, Run, event_seconds

# CHAINS rows of W values per CM thread (W = the sub-group size: one register per row on
# a CPU whose vectors hold W floats): 8 to 16 vector registers of chains.  Every config
# divides the benchmark sizes' n (4096 and up).
PEAK_CONFIGS = [
    {"CHAINS": 16, "W": 16, "simd": 16},
    {"CHAINS": 8, "W": 16, "simd": 16},
    {"CHAINS": 32, "W": 8, "simd": 8},
    {"CHAINS": 16, "W": 8, "simd": 8},
    {"CHAINS": 8, "W": 32, "simd": 32},
]
A, B = 0.5, 1.0     # the chain's multiplier and addend: it converges to B / (1 - A) = 2


@cm.autotune(configs=PEAK_CONFIGS, key=["x", "iters"])
@cm.kernel(simd=16)
def fma_chains(x: cm.ptr[f32], y: cm.ptr[f32], iters: i32, a: f32, b: f32,
               CHAINS: cm.constexpr, W: cm.constexpr):
    base = cm.thread_id(0) * CHAINS * W
    acc = cm.load(x, base, (CHAINS, W), W)
    for _ in range(iters):
        for c in cm.static_range(CHAINS):
            acc[c] = cm.fma(acc[c], a, b)
    cm.store(y, base, acc, W)


def chains(x: np.ndarray, iters: int, a: float = A, b: float = B):
    """(the chains' ends, the launch) for start values ``x`` (f32, a multiple of 512 long)."""
    n = x.size
    assert all(n % (c["CHAINS"] * c["W"]) == 0 for c in PEAK_CONFIGS)
    y = np.empty_like(x)
    launched = fma_chains[lambda c: (n // (c["CHAINS"] * c["W"]),)](x, y, iters, a, b)
    return y, launched


def reference_chains(x, iters, a=A, b=B):
    """x_iters of every chain in float64 (the closed form of the recurrence)."""
    x, a, b = np.asarray(x, np.float64), np.float64(np.float32(a)), np.float64(np.float32(b))
    power = a ** iters
    return power * x + b * (1 - power) / (1 - a)


def make_inputs(params, rng):
    return {"x": rng.uniform(-4, 4, params["n"]).astype(np.float32), "iters": params["iters"]}


def reference(inputs):
    return reference_chains(inputs["x"], inputs["iters"]).astype(np.float32)


def cmlang_impl(inputs, device):
    x, iters = inputs["x"], inputs["iters"]
    dx, dy = cm.to_device(x), cm.to_device(np.empty_like(x))
    launch = fma_chains[lambda c: (x.size // (c["CHAINS"] * c["W"]),)]
    return Run(lambda: event_seconds([launch(dx, dy, iters, A, B)]), dy.numpy)


# full: 2^16 chains (128 CM threads of 16 x 32 values) of 2^16 FMAs: 8.6 GFLOP, some 50 ms.
SIZES = {"tiny": {"n": 4096, "iters": 64},
         "quick": {"n": 1 << 16, "iters": 1 << 12},
         "full": {"n": 1 << 16, "iters": 1 << 16}}

benchmark = Benchmark(
    name="peak", description="f32 FMA throughput: independent FMA chains in registers",
    sizes=SIZES, make_inputs=make_inputs, reference=reference,
    implementations={"cmlang": cmlang_impl},
    flops=lambda p: 2.0 * p["n"] * p["iters"], rtol=1e-6, atol=1e-6,
    size_label=lambda p: f"{p['n']} chains x {p['iters']}")
