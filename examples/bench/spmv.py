"""Sparse matrix times vector, y = A @ x, with A in CSR form (f32 values, i32 columns).

The matrix has 8 to 24 nonzeros per row at random columns (16 on average).

cmlang: a CM thread owns ROWS = 16 consecutive rows.  It walks each row 16
nonzeros at a time with block loads of values and column indices, gathers x,
accumulates in a register, and reduces once per row; the 16 row results are
assembled in one register and written with a single block store.  Reads past a
row's end are masked to zero (the arrays carry 16 elements of padding).

OpenCL C (SIMT): the "CSR-scalar" kernel, one work-item per row (the compiler
vectorizes 16 rows per sub-group).  The GPU favourite "CSR-vector" (one sub-group
per row, ``sub_group_reduce_add``), also here, was about 1.3x slower on this
device, so CSR-scalar is the baseline.
"""
import numpy as np

import cmlang as cm
import cmlang.runtime
from cmlang import f32, i32
from cmlang.bench import Benchmark, Run, event_seconds, from_buffer, host_run, opencl_kernel, to_buffer

ROWS = 16            # rows per CM thread
WIDTH = 16           # nonzeros per step
PAD = WIDTH          # padding after the last nonzero (reads past a row are masked)


@cm.kernel(simd=16)
def spmv_kernel(row_ptr: cm.ptr[i32], cols: cm.ptr[i32], vals: cm.ptr[f32], x: cm.ptr[f32],
                y: cm.ptr[f32], ROWS: cm.constexpr, WIDTH: cm.constexpr):
    r0 = cm.thread_id(0) * ROWS
    bounds = cm.load(row_ptr, r0, ROWS + 1)
    result = cm.zeros(cm.vector[f32, ROWS])
    lane = cm.iota(i32, WIDTH)
    for r in cm.static_range(ROWS):
        end = bounds[r + 1]
        acc = cm.zeros(cm.vector[f32, WIDTH])
        for j in range(bounds[r], end, WIDTH):
            inside = lane < end - j
            col = cm.merge(cm.load(cols, j, WIDTH), 0, inside)
            acc += cm.merge(cm.load(vals, j, WIDTH) * cm.gather(x, col), 0.0, inside)
        result[r] = cm.reduce_sum(acc)
    cm.store(y, r0, result)


def spmv(row_ptr, cols, vals, x) -> np.ndarray:
    """y = A @ x for a CSR matrix whose row count is a multiple of ROWS."""
    rows = row_ptr.size - 1
    assert rows % ROWS == 0
    y = np.empty(rows, np.float32)
    spmv_kernel[rows // ROWS](row_ptr, _padded(cols), _padded(vals), x, y, ROWS, WIDTH)
    return y


def _padded(a):
    return np.concatenate([a, np.zeros(PAD, a.dtype)])


OPENCL_SOURCE = r"""
#define SG 16

__kernel __attribute__((intel_reqd_sub_group_size(SG)))
void spmv_csr_vector(__global const int* row_ptr, __global const int* cols,
                     __global const float* vals, __global const float* x, __global float* y)
{
    const int row = get_global_id(0) / SG;
    const int lane = get_sub_group_local_id();
    const int end = row_ptr[row + 1];
    float sum = 0.0f;
    for (int j = row_ptr[row] + lane; j < end; j += SG)
        sum = fma(vals[j], x[cols[j]], sum);
    sum = sub_group_reduce_add(sum);
    if (lane == 0)
        y[row] = sum;
}

__kernel void spmv_csr_scalar(__global const int* row_ptr, __global const int* cols,
                              __global const float* vals, __global const float* x, __global float* y)
{
    const int row = get_global_id(0);
    float sum = 0.0f;
    for (int j = row_ptr[row]; j < row_ptr[row + 1]; j++)
        sum = fma(vals[j], x[cols[j]], sum);
    y[row] = sum;
}
"""
OPENCL_SG, OPENCL_GROUP = 16, 256


def reference(inputs):
    rp, cols, vals, x = inputs["row_ptr"], inputs["cols"], inputs["vals"], inputs["x"]
    rows = rp.size - 1
    products = vals[:rp[-1]].astype(np.float64) * x[cols[:rp[-1]]].astype(np.float64)
    return np.add.reduceat(products, rp[:-1]).astype(np.float32) if rows else np.zeros(0, np.float32)


# ---------------------------------------------------------------------------
# Benchmark

def make_inputs(params, rng):
    rows = params["rows"]
    lengths = rng.integers(8, 25, rows)
    row_ptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    nnz = int(row_ptr[-1])
    cols = rng.integers(0, rows, nnz).astype(np.int32)
    row_of = np.repeat(np.arange(rows), lengths)
    cols = cols[np.lexsort((cols, row_of))]            # ascending columns within each row
    vals = rng.uniform(-1, 1, nnz).astype(np.float32)
    x = rng.uniform(-1, 1, rows).astype(np.float32)
    return {"row_ptr": row_ptr, "cols": _padded(cols), "vals": _padded(vals), "x": x}


def cmlang_impl(inputs, device):
    rows = inputs["row_ptr"].size - 1
    args = [cm.to_device(inputs[k]) for k in ("row_ptr", "cols", "vals", "x")]
    y = cm.to_device(np.zeros(rows, np.float32))
    launch = spmv_kernel[rows // ROWS]
    return Run(lambda: event_seconds([launch(*args, y, ROWS, WIDTH)]), y.numpy)


def opencl_simt(inputs, device):
    rows = inputs["row_ptr"].size - 1
    kernel = opencl_kernel(device, OPENCL_SOURCE, "spmv_csr_scalar")
    args = [to_buffer(device, inputs[k]) for k in ("row_ptr", "cols", "vals", "x")]
    y = to_buffer(device, np.zeros(rows, np.float32), copy=False)

    def run():
        return event_seconds([kernel(device.queue, (rows,), (OPENCL_GROUP,), *args, y)])
    return Run(run, lambda: from_buffer(device, y, ((rows,), np.float32)))


def numpy_spmv(inputs):
    rp = inputs["row_ptr"]
    nnz = int(rp[-1])
    return np.add.reduceat(inputs["vals"][:nnz] * inputs["x"][inputs["cols"][:nnz]], rp[:-1])


def _nnz(p):
    return 16.0 * p["rows"]


benchmark = Benchmark(
    name="spmv", description="CSR sparse matrix times vector, f32",
    sizes={"tiny": {"rows": 1024}, "quick": {"rows": 1 << 16}, "full": {"rows": 1 << 19}},
    make_inputs=make_inputs, reference=reference,
    implementations={"cmlang": cmlang_impl, "opencl-simt": opencl_simt,
                     "numpy": lambda inputs, device: host_run(lambda: numpy_spmv(inputs))},
    flops=lambda p: 2 * _nnz(p), bytes=lambda p: 12 * _nnz(p) + 12 * p["rows"], rtol=1e-4, atol=1e-4,
    size_label=lambda p: f"{p['rows']} rows")
