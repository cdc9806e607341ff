"""Inclusive prefix sum of int32 (reduce, then scan): three passes, 3n memory traffic.

1. every tile of TILE elements is summed;  2. the tile sums are scanned (one
thread);  3. every tile is scanned and offset by the sum of the tiles before it.

cmlang: a tile is scanned in registers, ROW = 64 elements at a time: log2(64)
shifted region adds (``v[d:] += v[:-d]``), then the carry from the rows before.
Tile sums are vertical register adds and one reduction.

OpenCL C (SIMT): work-groups of 256 work-items, each owning 8 consecutive
elements (one ``int8`` load): a sequential scan in registers, then the OpenCL 2.0
work-group collectives (``work_group_scan_exclusive_add``, ``work_group_reduce_add``)
across the work-group; they beat a hand-written local-memory scan on this
device by about 3x.
"""
import numpy as np

import cmlang as cm
import cmlang.runtime
from cmlang import i32
from cmlang.bench import Benchmark, Run, event_seconds, from_buffer, host_run, opencl_kernel, to_buffer

TILE = 4096          # elements per CM thread (and per OpenCL work-group: 256 x 8 ... x 2)
ROW = 64             # elements scanned at once in registers


@cm.func
def scan_row(v, N: cm.constexpr, LOG_N: cm.constexpr):
    for s in cm.static_range(LOG_N):
        d = 1 << s
        v[d:N] += v[0:N - d]
    return v


@cm.kernel(simd=16)
def tile_sums(x: cm.ptr[i32], sums: cm.ptr[i32], TILE: cm.constexpr, ROW: cm.constexpr):
    base = cm.thread_id(0) * TILE
    acc = cm.load(x, base, ROW)
    for r in range(ROW, TILE, ROW):
        acc += cm.load(x, base + r, ROW)
    cm.store(sums, cm.thread_id(0), cm.reduce_sum(acc))


@cm.kernel(simd=16)
def scan_sums(sums: cm.ptr[i32], count: i32, ROW: cm.constexpr, LOG_ROW: cm.constexpr):
    """Exclusive scan of the tile sums in place (one CM thread; count is a multiple of ROW)."""
    carry = 0
    for c in range(0, count, ROW):
        v = cm.load(sums, c, ROW)
        inclusive = scan_row(v.copy(), ROW, LOG_ROW) + carry     # scan_row scans in place
        cm.store(sums, c, inclusive - v)
        carry = inclusive[ROW - 1]


@cm.kernel(simd=16)
def scan_tiles(x: cm.ptr[i32], y: cm.ptr[i32], offsets: cm.ptr[i32], TILE: cm.constexpr,
               ROW: cm.constexpr, LOG_ROW: cm.constexpr):
    t = cm.thread_id(0)
    base = t * TILE
    carry = cm.load(offsets, t, 1)[0]
    for r in range(0, TILE, ROW):
        v = scan_row(cm.load(x, base + r, ROW), ROW, LOG_ROW) + carry
        cm.store(y, base + r, v)
        carry = v[ROW - 1]


def inclusive_scan(x: np.ndarray) -> np.ndarray:
    """Inclusive prefix sum of int32 x whose size is a multiple of TILE * ROW."""
    dx = cm.to_device(np.ascontiguousarray(x, np.int32))
    dy = cm.to_device(np.empty_like(x, np.int32))
    sums = cm.to_device(np.empty(x.size // TILE, np.int32))
    for _ in launches(dx, dy, sums, x.size):
        pass
    return dy.numpy()


def launches(dx, dy, sums, n):
    assert n % (TILE * ROW) == 0, f"size must be a multiple of {TILE * ROW}"
    tiles, log_row = n // TILE, ROW.bit_length() - 1
    yield tile_sums[tiles](dx, sums, TILE, ROW)
    yield scan_sums[1](sums, tiles, ROW, log_row)
    yield scan_tiles[tiles](dx, dy, sums, TILE, ROW, log_row)


OPENCL_SOURCE = r"""
#define GROUP 256
#define PER_ITEM 8

__kernel __attribute__((reqd_work_group_size(GROUP, 1, 1)))
void tile_sums(__global const int8* x, __global int* sums)
{
    const int8 v = x[get_global_id(0)];
    const int total = work_group_reduce_add(v.s0 + v.s1 + v.s2 + v.s3 + v.s4 + v.s5 + v.s6 + v.s7);
    if (get_local_id(0) == 0)
        sums[get_group_id(0)] = total;
}

/* One work-group: exclusive scan of count tile sums in place. */
__kernel __attribute__((reqd_work_group_size(GROUP, 1, 1)))
void scan_sums(__global int* sums, const int count)
{
    int carry = 0;
    for (int base = 0; base < count; base += GROUP) {
        const int i = base + get_local_id(0);
        const int v = i < count ? sums[i] : 0;
        const int before = work_group_scan_exclusive_add(v);
        if (i < count)
            sums[i] = before + carry;
        carry += work_group_reduce_add(v);
    }
}

__kernel __attribute__((reqd_work_group_size(GROUP, 1, 1)))
void scan_tiles(__global const int8* x, __global int8* y, __global const int* offsets)
{
    int8 v = x[get_global_id(0)];
    v.s1 += v.s0; v.s2 += v.s1; v.s3 += v.s2; v.s4 += v.s3;
    v.s5 += v.s4; v.s6 += v.s5; v.s7 += v.s6;
    y[get_global_id(0)] = v + (work_group_scan_exclusive_add(v.s7) + offsets[get_group_id(0)]);
}
"""
OPENCL_GROUP, OPENCL_PER_ITEM = 256, 8


def opencl_launches(device, kernels, dx, dy, sums, n):
    tile_sums_k, scan_sums_k, scan_tiles_k = kernels
    q, groups = device.queue, n // (OPENCL_GROUP * OPENCL_PER_ITEM)
    items = (groups * OPENCL_GROUP,)
    yield tile_sums_k(q, items, (OPENCL_GROUP,), dx, sums)
    yield scan_sums_k(q, (OPENCL_GROUP,), (OPENCL_GROUP,), sums, np.int32(groups))
    yield scan_tiles_k(q, items, (OPENCL_GROUP,), dx, dy, sums)


def reference(inputs):
    return np.cumsum(inputs["x"], dtype=np.int32)


# ---------------------------------------------------------------------------
# Benchmark

def make_inputs(params, rng):
    return {"x": rng.integers(-1000, 1000, params["n"]).astype(np.int32)}


def cmlang_impl(inputs, device):
    x = inputs["x"]
    dx, dy = cm.to_device(x), cm.to_device(np.zeros_like(x))
    sums = cm.to_device(np.zeros(x.size // TILE, np.int32))
    return Run(lambda: event_seconds(list(launches(dx, dy, sums, x.size))), dy.numpy)


def opencl_simt(inputs, device):
    x = inputs["x"]
    kernels = tuple(opencl_kernel(device, OPENCL_SOURCE, name, "-cl-std=CL2.0")
                    for name in ("tile_sums", "scan_sums", "scan_tiles"))
    dx, dy = to_buffer(device, x), to_buffer(device, x, copy=False)
    sums = to_buffer(device, np.zeros(x.size // (OPENCL_GROUP * OPENCL_PER_ITEM), np.int32))
    return Run(lambda: event_seconds(list(opencl_launches(device, kernels, dx, dy, sums, x.size))),
               lambda: from_buffer(device, dy, (x.shape, x.dtype)))


benchmark = Benchmark(
    name="prefix_sum", description="inclusive prefix sum of int32",
    sizes={"tiny": {"n": 1 << 18}, "quick": {"n": 1 << 20}, "full": {"n": 1 << 22}},
    make_inputs=make_inputs, reference=reference,
    implementations={"cmlang": cmlang_impl, "opencl-simt": opencl_simt,
                     "numpy": lambda inputs, device: host_run(lambda: np.cumsum(inputs["x"], dtype=np.int32))},
    bytes=lambda p: 8 * p["n"], rtol=0, atol=0,
    size_label=lambda p: f"{p['n']} ints")
