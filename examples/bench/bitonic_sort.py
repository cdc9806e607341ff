"""Bitonic sort of 2^k f32 keys (ascending).

The network: for size = 2, 4, ..., n and stride = size/2, ..., 1, keys i and
i + stride (i with bit ``stride`` clear) are compare-exchanged, ascending when bit
``size`` of i is clear.

cmlang: a CM thread holds CHUNK = 256 keys in registers.
- ``sort_chunks`` runs every stage with size <= CHUNK in registers: strides of 16
  and more exchange whole register rows (regions), smaller strides exchange lanes
  (``shuffle_xor``).
- For larger sizes, ``merge_strides`` does three strides at once: a CM thread
  loads 8 rows of 16 keys that are ``stride/4`` apart (one 2-D block load),
  compare-exchanges the rows at distances 4, 2, 1 in registers, and writes them
  back (one pass over memory instead of three), and ``merge_chunks`` finishes the
  strides below CHUNK in registers.

OpenCL C (SIMT): the classic local-memory bitonic sort: one kernel sorts blocks of
512 keys in local memory; for each larger size, one global kernel per stride >= 512,
then a local-memory kernel does the strides below 512.
"""
import numpy as np

import cmlang as cm
import cmlang.runtime
from cmlang import f32, i32
from cmlang.bench import Benchmark, Run, copy_buffer, event_seconds, from_buffer, host_run, opencl_kernel, to_buffer

CHUNK = 256           # keys per CM thread held in registers
ROWS = 8              # rows of the multi-stride merge (log2 = strides per pass)
WIDTH = 16            # keys per row


@cm.func
def merge_in_registers(v, base, size, LOG_FROM: cm.constexpr, N: cm.constexpr):
    """Strides 2^(LOG_FROM-1), ..., 1 of the merge for blocks of ``size`` (a run-time
    scalar) on the N keys starting at global index ``base``."""
    index = cm.iota(i32, N) + base
    for s in cm.static_range(LOG_FROM):
        j = 1 << (LOG_FROM - 1 - s)
        if j >= 16:   # whole register rows trade places: regions, no cross-lane moves
            m = v.format(f32, N // (2 * j), 2 * j)
            up = (index.format(i32, N // (2 * j), 2 * j)[:, 0:j] & size) == 0
            small = cm.min(m[:, 0:j], m[:, j:2 * j])
            large = cm.max(m[:, 0:j], m[:, j:2 * j])
            m[:, 0:j] = cm.merge(small, large, up)
            m[:, j:2 * j] = cm.merge(large, small, up)
            v = m.format(f32, N)
        else:         # partners in other lanes: one shuffle
            partner = cm.shuffle_xor(v, j)
            take_min = ((index & size) == 0) == ((index & j) == 0)
            v = cm.merge(cm.min(v, partner), cm.max(v, partner), take_min)
    return v


@cm.kernel(simd=16)
def sort_chunks(keys: cm.ptr[f32], CHUNK: cm.constexpr, LOG_CHUNK: cm.constexpr):
    base = cm.thread_id(0) * CHUNK
    v = cm.load(keys, base, CHUNK)
    for s in cm.static_range(1, LOG_CHUNK + 1):
        v = merge_in_registers(v, base, 1 << s, s, CHUNK)
    cm.store(keys, base, v)


@cm.kernel(simd=16)
def merge_chunks(keys: cm.ptr[f32], size: i32, CHUNK: cm.constexpr, LOG_CHUNK: cm.constexpr):
    base = cm.thread_id(0) * CHUNK
    v = merge_in_registers(cm.load(keys, base, CHUNK), base, size, LOG_CHUNK, CHUNK)
    cm.store(keys, base, v)


@cm.kernel(simd=16)
def merge_strides(keys: cm.ptr[f32], size: i32, stride: i32, ROWS: cm.constexpr, LOG_ROWS: cm.constexpr,
                  WIDTH: cm.constexpr):
    """Strides ``stride``, stride/2, ..., stride/(ROWS/2) in one pass (stride >= ROWS/2*WIDTH)."""
    t = cm.thread_id(0)
    low = stride // (ROWS // 2)                   # smallest stride of this pass
    col = (t * WIDTH) % low                       # where this thread's rows start
    group = (t * WIDTH) // low                    # which ROWS*low block
    base = group * ROWS * low + col
    m = cm.load(keys, base, (ROWS, WIDTH), low)
    ascending = (base & size) == 0                # uniform: size > stride covers the block
    for s in cm.static_range(LOG_ROWS):
        d = ROWS >> (s + 1)                       # row distance: stride / low
        for r in cm.static_range(ROWS):
            if (r & d) == 0:
                small = cm.min(m[r], m[r + d])
                large = cm.max(m[r], m[r + d])
                m[r] = cm.merge(small, large, ascending)
                m[r + d] = cm.merge(large, small, ascending)
    cm.store(keys, base, m, low)


def sort(keys: np.ndarray) -> np.ndarray:
    """Sort f32 keys (count a power of two, at least CHUNK) ascending; returns a new array."""
    dk = cm.to_device(np.ascontiguousarray(keys, np.float32))
    for _ in launches(dk, keys.size):
        pass
    return dk.numpy()


def launches(dk, n):
    """Run the cmlang network on device keys, yielding each launch's result."""
    assert n & (n - 1) == 0 and n >= CHUNK
    log_chunk = CHUNK.bit_length() - 1
    yield sort_chunks[n // CHUNK](dk, CHUNK, log_chunk)
    size = 2 * CHUNK
    while size <= n:
        stride = size // 2
        while stride >= CHUNK:
            rows = _rows_for(stride)
            yield merge_strides[n // (rows * WIDTH)](dk, size, stride, rows, rows.bit_length() - 1, WIDTH)
            stride //= rows
        yield merge_chunks[n // CHUNK](dk, size, CHUNK, log_chunk)
        size *= 2


def _rows_for(stride):
    """Rows for a pass starting at ``stride``: up to ROWS, never past stride CHUNK."""
    rows = ROWS
    while stride // (rows // 2) < CHUNK:
        rows //= 2
    return rows


OPENCL_SOURCE = r"""
#define LOCAL 512                       /* keys per work-group in local memory */

inline void compare_exchange(__local float* s, int i, int j, bool up)
{
    const float a = s[i], b = s[j];
    if ((a > b) == up) { s[i] = b; s[j] = a; }
}

/* All sizes 2..LOCAL (sort_blocks) or the strides < LOCAL of one size (merge_local). */
__kernel __attribute__((reqd_work_group_size(LOCAL / 2, 1, 1)))
void sort_local(__global float* keys, const int size_from, const int size_to)
{
    __local float s[LOCAL];
    const int lid = get_local_id(0);
    const int base = get_group_id(0) * LOCAL;
    s[lid] = keys[base + lid];
    s[lid + LOCAL / 2] = keys[base + lid + LOCAL / 2];
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int size = size_from; size <= size_to; size <<= 1) {
        for (int stride = min(size, LOCAL) / 2; stride > 0; stride >>= 1) {
            const int i = 2 * stride * (lid / stride) + lid % stride;
            compare_exchange(s, i, i + stride, ((base + i) & size) == 0);
            barrier(CLK_LOCAL_MEM_FENCE);
        }
    }
    keys[base + lid] = s[lid];
    keys[base + lid + LOCAL / 2] = s[lid + LOCAL / 2];
}

__kernel void merge_global(__global float* keys, const int size, const int stride)
{
    const int t = get_global_id(0);
    const int i = 2 * stride * (t / stride) + t % stride;
    const float a = keys[i], b = keys[i + stride];
    if ((a > b) == ((i & size) == 0)) { keys[i] = b; keys[i + stride] = a; }
}
"""
OPENCL_LOCAL = 512


def opencl_launches(device, kernels, keys_buffer, n):
    sort_local, merge_global = kernels
    q, group = device.queue, (OPENCL_LOCAL // 2,)
    blocks = (n // 2,)
    yield sort_local(q, blocks, group, keys_buffer, np.int32(2), np.int32(min(n, OPENCL_LOCAL)))
    size = 2 * OPENCL_LOCAL
    while size <= n:
        stride = size // 2
        while stride >= OPENCL_LOCAL:
            yield merge_global(q, blocks, None, keys_buffer, np.int32(size), np.int32(stride))
            stride //= 2
        yield sort_local(q, blocks, group, keys_buffer, np.int32(size), np.int32(size))
        size *= 2


def reference(inputs):
    return np.sort(inputs["keys"])


# ---------------------------------------------------------------------------
# Benchmark

def make_inputs(params, rng):
    return {"keys": rng.standard_normal(params["n"]).astype(np.float32)}


def cmlang_impl(inputs, device):
    keys = inputs["keys"]
    pristine, dk = cm.to_device(keys), cm.to_device(keys)

    def run():
        copy_buffer(device, dk.buffer, pristine.buffer)
        return event_seconds(list(launches(dk, keys.size)))
    return Run(run, dk.numpy)


def opencl_simt(inputs, device):
    keys = inputs["keys"]
    kernels = (opencl_kernel(device, OPENCL_SOURCE, "sort_local"),
               opencl_kernel(device, OPENCL_SOURCE, "merge_global"))
    pristine, dk = to_buffer(device, keys), to_buffer(device, keys)

    def run():
        copy_buffer(device, dk, pristine)
        return event_seconds(list(opencl_launches(device, kernels, dk, keys.size)))
    return Run(run, lambda: from_buffer(device, dk, (keys.shape, keys.dtype)))


benchmark = Benchmark(
    name="bitonic_sort", description="bitonic sort of f32 keys",
    sizes={"tiny": {"n": 1 << 12}, "quick": {"n": 1 << 16}, "full": {"n": 1 << 20}},
    make_inputs=make_inputs, reference=reference,
    implementations={"cmlang": cmlang_impl, "opencl-simt": opencl_simt,
                     "numpy": lambda inputs, device: host_run(lambda: np.sort(inputs["keys"]))},
    bytes=lambda p: 8 * p["n"], rtol=0, atol=0,
    size_label=lambda p: f"{p['n']} keys")
