"""3x3 linear filter of an f32 image: out[i, j] = sum w[di, dj] * img[i + di, j + dj].

The input carries a one-pixel border (shape (H + 2, W + 2)); the output is H x W.

cmlang: a CM thread computes a BR x BC block (8 x 32 by hand; tuned per device and
size by ``cm.autotune``).  Three 2-D block loads of (BR + 2) x BC pixels, shifted by 0, 1
and 2 columns, hold every neighbour it needs; each of
the nine taps is then a 2-row-offset region of one of them times a weight: 9 FMAs
per output row-register, no shuffles, no shared memory.

OpenCL C (SIMT): one work-item per output pixel, the nine taps read straight from
global memory (weights in constant memory).  On a CPU device the caches do the
tiling: the GPU-style version that stages an 18 x 18 tile in local memory ran
1.6x slower here, so the direct one is the baseline.
"""
import numpy as np

import cmlang as cm
import cmlang.runtime
from cmlang import f32, i32
from cmlang.bench import Benchmark, Run, event_seconds, from_buffer, host_run, opencl_kernel, to_buffer

# The output block per CM thread, chosen by timing; the first is the hand-picked one.
# Every config divides the benchmark sizes (64, 1024, 4096).
FILTER_CONFIGS = [{"BR": 8, "BC": 32}, {"BR": 16, "BC": 32}, {"BR": 4, "BC": 64}, {"BR": 8, "BC": 64},
                  {"BR": 16, "BC": 16}, {"BR": 4, "BC": 32}, {"BR": 32, "BC": 16}]


@cm.kernel(simd=16)
def filter_kernel(img: cm.ptr[f32], out: cm.ptr[f32], w: cm.ptr[f32], width: i32,
                  BR: cm.constexpr, BC: cm.constexpr):
    pitch = width + 2
    r0 = cm.thread_id(1) * BR
    c0 = cm.thread_id(0) * BC
    weights = cm.load(w, 0, 9)
    acc = cm.zeros(cm.matrix[f32, BR, BC])
    for dj in cm.static_range(3):
        block = cm.load(img, r0 * pitch + c0 + dj, (BR + 2, BC), pitch)
        for di in cm.static_range(3):
            acc += weights[3 * di + dj] * block[di:di + BR, :]
    cm.store(out, r0 * width + c0, acc, width)


filter_tuned = cm.autotune(configs=FILTER_CONFIGS, key=["img"])(filter_kernel)


def _launcher(h, w):
    assert all(h % c["BR"] == 0 and w % c["BC"] == 0 for c in FILTER_CONFIGS)
    return filter_tuned[lambda c: (w // c["BC"], h // c["BR"])]


def filter3x3(img: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Filter a bordered f32 image (H + 2, W + 2) with 3x3 weights -> (H, W)."""
    h, w = img.shape[0] - 2, img.shape[1] - 2
    assert img.dtype == np.float32
    out = np.empty((h, w), np.float32)
    _launcher(h, w)(img, out, np.ascontiguousarray(weights, np.float32).reshape(9), w)
    return out


OPENCL_SOURCE = r"""
__kernel void filter_direct(__global const float* img, __global float* out, __constant float* w,
                            const int width)
{
    const int x = get_global_id(0), y = get_global_id(1), pitch = width + 2;
    __global const float* p = img + y * pitch + x;
    float sum = 0.0f;
    for (int di = 0; di < 3; di++)
        for (int dj = 0; dj < 3; dj++)
            sum = fma(w[3 * di + dj], p[di * pitch + dj], sum);
    out[y * width + x] = sum;
}
"""
OPENCL_GROUP = (64, 4)



def reference(inputs):
    img, w = inputs["img"].astype(np.float64), inputs["weights"].astype(np.float64)
    h, width = img.shape[0] - 2, img.shape[1] - 2
    out = np.zeros((h, width))
    for di in range(3):
        for dj in range(3):
            out += w[di, dj] * img[di:di + h, dj:dj + width]
    return out.astype(np.float32)


def numpy_filter(img, w):
    h, width = img.shape[0] - 2, img.shape[1] - 2
    out = w[0, 0] * img[0:h, 0:width]
    for di in range(3):
        for dj in range(3):
            if di or dj:
                out += w[di, dj] * img[di:di + h, dj:dj + width]
    return out


# ---------------------------------------------------------------------------
# Benchmark

def make_inputs(params, rng):
    h, w = params["h"], params["w"]
    weights = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float32) / 16   # a blur
    return {"img": rng.uniform(0, 1, (h + 2, w + 2)).astype(np.float32), "weights": weights}


def cmlang_impl(inputs, device):
    img = inputs["img"]
    h, w = img.shape[0] - 2, img.shape[1] - 2
    dimg, dout = cm.to_device(img), cm.to_device(np.zeros((h, w), np.float32))
    dw = cm.to_device(inputs["weights"].reshape(9))
    launch = _launcher(h, w)
    return Run(lambda: event_seconds([launch(dimg, dout, dw, w)]), dout.numpy)


def opencl_simt(inputs, device):
    img = inputs["img"]
    h, w = img.shape[0] - 2, img.shape[1] - 2
    kernel = opencl_kernel(device, OPENCL_SOURCE, "filter_direct")
    dimg, dw = to_buffer(device, img), to_buffer(device, inputs["weights"].reshape(9))
    dout = to_buffer(device, np.empty((h, w), np.float32), copy=False)

    def run():
        return event_seconds([kernel(device.queue, (w, h), OPENCL_GROUP, dimg, dout, dw, np.int32(w))])
    return Run(run, lambda: from_buffer(device, dout, ((h, w), np.float32)))


benchmark = Benchmark(
    name="filter3x3", description="3x3 linear filter of an f32 image",
    sizes={"tiny": {"h": 64, "w": 64}, "quick": {"h": 1024, "w": 1024}, "full": {"h": 4096, "w": 4096}},
    make_inputs=make_inputs, reference=reference,
    implementations={"cmlang": cmlang_impl, "opencl-simt": opencl_simt,
                     "numpy": lambda inputs, device: host_run(lambda: numpy_filter(inputs["img"], inputs["weights"]))},
    flops=lambda p: 18.0 * p["h"] * p["w"], bytes=lambda p: 8.0 * p["h"] * p["w"], rtol=1e-5, atol=1e-5,
    size_label=lambda p: f"{p['h']}x{p['w']}")
