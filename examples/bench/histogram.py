"""256-bin histogram of 8-bit pixels.

cmlang: each CM thread (its own group) counts a 64 Ki-pixel slice into a private
histogram in shared local memory. It streams the slice as 32-bit words with scalar
loads: a CM thread's scalar code runs once per thread, not once per lane, so every
pixel costs one shift, one mask and one read-modify-write of an SLM counter, with
no atomics (nobody else sees this SLM) and no cross-lane work. Byte k of every word
counts into its own sub-histogram k (of 4): runs of equal pixels, common in images,
then update four different counters instead of chaining read-modify-writes on one.
At the end the sub-histograms are added with vector adds (16 bins per instruction)
and merged into the global histogram with one vector atomic per 16 bins.

Why not vector atomics or gathers/scatters on the CPU device: the driver turns a
16-lane SLM ``cm.atomic_add`` into 16 scalar increments, and the order in which
it schedules them makes the core's memory disambiguation mispredict (measured:
about 10x slower than the same increments in program order, the same for an
OpenCL C sub-group kernel); per-lane sub-histograms with gather/add/scatter avoid
atomics but AVX-512 scatters are slow. On an Intel GPU the per-lane sub-histogram
(or SLM atomics) is the natural choice; this kernel is tuned for the device the
benchmark runs on.

OpenCL C (SIMT): the textbook GPU histogram. Each work-group builds its histogram
in local memory with local atomics (4 pixels per load), then adds it to the
global one with one global atomic per bin.
"""
import numpy as np

import cmlang as cm
import cmlang.runtime
from cmlang import i32, u32
from cmlang.bench import Benchmark, Run, event_seconds, from_buffer, host_run, opencl_kernel, refill, to_buffer

BINS = 256
SUBS = 4              # sub-histograms: byte k of each 32-bit word counts into number k
PER_THREAD = 65536    # pixels per CM thread


@cm.kernel(simd=16)
def histogram_kernel(words: cm.ptr[u32], hist: cm.ptr[i32], per_thread: i32):
    sub = cm.slm(i32, SUBS * BINS)
    for s in cm.static_range(SUBS):
        cm.store(sub, s * BINS, cm.zeros(cm.vector[i32, BINS]))
    count = per_thread // 4
    base = cm.thread_id(0) * count
    for i in range(count):
        w = cm.load(words, base + i, 1)[0]               # 4 pixels in one uniform scalar
        for s in cm.static_range(SUBS):
            where = ((w >> (8 * s)) & 255).astype(i32) + s * BINS
            cm.store(sub, where, cm.load(sub, where, 1)[0] + 1)
    counts = cm.load(sub, 0, BINS)
    for s in cm.static_range(1, SUBS):
        counts += cm.load(sub, s * BINS, BINS)
    cm.atomic_add(hist, cm.iota(i32, BINS), counts)


def histogram(pixels: np.ndarray, per_thread: int = PER_THREAD) -> np.ndarray:
    """Histogram of uint8 pixels whose count is a multiple of per_thread (itself of 4)."""
    pixels = np.ascontiguousarray(pixels.reshape(-1))
    assert pixels.dtype == np.uint8 and pixels.size % per_thread == 0 and per_thread % 4 == 0
    hist = np.zeros(BINS, np.int32)
    histogram_kernel[pixels.size // per_thread](pixels.view(np.uint32), hist, per_thread)
    return hist


OPENCL_SOURCE = r"""
#define BINS 256
__kernel void histogram_local(__global const uchar4* pixels, const int per_group,
                              __global int* hist)
{
    __local int local_hist[BINS];
    const int lid = get_local_id(0), lsize = get_local_size(0);
    for (int i = lid; i < BINS; i += lsize)
        local_hist[i] = 0;
    barrier(CLK_LOCAL_MEM_FENCE);
    __global const uchar4* mine = pixels + get_group_id(0) * (per_group / 4);
    for (int i = lid; i < per_group / 4; i += lsize) {   /* coalesced: neighbours read neighbours */
        const uchar4 p = mine[i];
        atomic_inc(&local_hist[p.x]);
        atomic_inc(&local_hist[p.y]);
        atomic_inc(&local_hist[p.z]);
        atomic_inc(&local_hist[p.w]);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int i = lid; i < BINS; i += lsize)
        atomic_add(&hist[i], local_hist[i]);
}
"""
OPENCL_GROUP = 256
OPENCL_PER_GROUP = 65536


def opencl_histogram(pixels, device=None) -> np.ndarray:
    run = opencl_simt({"pixels": pixels.reshape(-1)}, device or cmlang.runtime.get_device())
    run.run()
    return run.output()


def reference(inputs) -> np.ndarray:
    return np.bincount(inputs["pixels"], minlength=BINS).astype(np.int32)


# ---------------------------------------------------------------------------
# Benchmark

def make_inputs(params, rng):
    # An image-like distribution (not uniform): neighbouring bins are hit in runs.
    n = params["n"]
    smooth = np.cumsum(rng.integers(-3, 4, n)) % BINS
    return {"pixels": smooth.astype(np.uint8)}


def per_thread_for(n):
    return min(PER_THREAD, n)


def cmlang_impl(inputs, device):
    pixels = inputs["pixels"]
    per_thread = per_thread_for(pixels.size)
    dp = cm.to_device(pixels.view(np.uint32))     # the same bytes, read as words
    zeros = np.zeros(BINS, np.int32)
    dh = cm.to_device(zeros)
    launch = histogram_kernel[pixels.size // per_thread]

    def run():
        refill(device, dh, zeros)
        return event_seconds([launch(dp, dh, per_thread)])
    return Run(run, dh.numpy)


def opencl_simt(inputs, device):
    pixels = inputs["pixels"]
    per_group = min(OPENCL_PER_GROUP, pixels.size)
    kernel = opencl_kernel(device, OPENCL_SOURCE, "histogram_local")
    dp = to_buffer(device, pixels)
    zeros = np.zeros(BINS, np.int32)
    dh = to_buffer(device, zeros)
    groups = pixels.size // per_group

    def run():
        refill(device, dh, zeros)
        return event_seconds([kernel(device.queue, (groups * OPENCL_GROUP,), (OPENCL_GROUP,),
                                     dp, np.int32(per_group), dh)])
    return Run(run, lambda: from_buffer(device, dh, ((BINS,), np.int32)))


benchmark = Benchmark(
    name="histogram", description="256-bin histogram of 8-bit pixels",
    sizes={"tiny": {"n": 1 << 15}, "quick": {"n": 1 << 21}, "full": {"n": 1 << 24}},
    make_inputs=make_inputs, reference=reference,
    implementations={"cmlang": cmlang_impl, "opencl-simt": opencl_simt,
                     "numpy": lambda inputs, device: host_run(lambda: np.bincount(inputs["pixels"], minlength=BINS))},
    bytes=lambda p: p["n"] + 4 * BINS, rtol=0, atol=0,
    size_label=lambda p: f"{p['n']} px")
