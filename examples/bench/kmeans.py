"""One k-means iteration: assign every point to its nearest centroid, then move each
centroid to the mean of its points (an empty cluster keeps its centroid).

Points are D = 4 dimensional, stored by dimension (``x[d, i]``); K = 16 clusters.

cmlang: ``assign_accumulate``: a CM thread takes P points at a time (64 by hand; P and
the points per CM thread are tuned with ``cm.autotune``) as one
D x P 2-D block load, computes the K distances with the centroids as scalar
broadcasts, keeps the best with ``merge``, and accumulates sums and counts in 16
per-lane accumulators in shared local memory (one gather and one scatter per
dimension per 16 points; lanes never collide, so no atomics).  The lanes'
accumulators are added with vertical register adds and written as this thread's
partial sums; ``update`` adds the partials and divides.

OpenCL C (SIMT): the same two kernels written per work-item: each work-item
assigns 16 points (coalesced), accumulates into private sums, and the work-group
combines them with ``work_group_reduce_add`` (OpenCL 2.0); ``update`` adds the
work-group partials.
"""
import numpy as np

import cmlang as cm
import cmlang.runtime
from cmlang import f32, i32
from cmlang.bench import Benchmark, Run, event_seconds, from_buffer, host_run, opencl_kernel, to_buffer

K, D = 16, 4
# Points per step of a CM thread (P) and per CM thread (per_thread): chosen by timing the
# two launches together (cm.autotune over the host function); the first is the hand-picked
# one.  Every config divides the benchmark sizes (2^12, 2^18, 2^20 points).
KMEANS_CONFIGS = [{"P": 64, "per_thread": 1024}, {"P": 32, "per_thread": 1024},
                  {"P": 128, "per_thread": 1024}, {"P": 64, "per_thread": 512},
                  {"P": 64, "per_thread": 2048}, {"P": 64, "per_thread": 4096},
                  {"P": 128, "per_thread": 4096}]
LANES = 16
W = D + 1             # accumulator row per cluster: D sums and a count


@cm.kernel(simd=16)
def assign_accumulate(x: cm.ptr[f32], n: i32, centroids: cm.ptr[f32], labels: cm.ptr[i32],
                      partial: cm.ptr[f32], per_thread: i32,
                      K: cm.constexpr, D: cm.constexpr, P: cm.constexpr):
    acc = cm.slm(f32, LANES * K * (D + 1))            # acc[lane, k, d]; d == D: the count
    cm.store(acc, 0, cm.zeros(cm.vector[f32, LANES * K * (D + 1)]))
    c = cm.load(centroids, 0, K * D)
    lane_base = cm.iota(i32, LANES) * (K * (D + 1))
    first = cm.thread_id(0) * per_thread
    for i in range(first, first + per_thread, P):
        pts = cm.load(x, i, (D, P), n)                  # row d: coordinate d of P points
        best = cm.full(cm.vector[f32, P], 3.0e38)
        label = cm.zeros(cm.vector[i32, P])
        for k in cm.static_range(K):
            dist = cm.zeros(cm.vector[f32, P])
            for d in cm.static_range(D):
                diff = pts[d] - c[k * D + d]
                dist += diff * diff
            closer = dist < best
            best = cm.merge(dist, best, closer)
            label = cm.merge(cm.full(cm.vector[i32, P], k), label, closer)
        cm.store(labels, i, label)
        for part in cm.static_range(P // LANES):
            where = lane_base + label[part * LANES:(part + 1) * LANES] * (D + 1)
            for d in cm.static_range(D):
                cm.scatter(acc, where + d, cm.gather(acc, where + d) + pts[d, part * LANES:(part + 1) * LANES])
            cm.scatter(acc, where + D, cm.gather(acc, where + D) + 1.0)
    total = cm.load(acc, 0, K * (D + 1))
    for lane in cm.static_range(1, LANES):
        total += cm.load(acc, lane * K * (D + 1), K * (D + 1))
    cm.store(partial, cm.thread_id(0) * K * (D + 1), total)


@cm.kernel(simd=16)
def update(partial: cm.ptr[f32], threads: i32, old: cm.ptr[f32], new: cm.ptr[f32],
           K: cm.constexpr, D: cm.constexpr):
    total = cm.zeros(cm.vector[f32, K * (D + 1)])
    for t in range(threads):
        total += cm.load(partial, t * K * (D + 1), K * (D + 1))
    sums = total.format(f32, K, D + 1)
    prev = cm.load(old, 0, K * D).format(f32, K, D)
    out = cm.zeros(cm.matrix[f32, K, D])
    for k in cm.static_range(K):
        count = sums[k, D]
        if count > 0.0:
            out[k] = sums[k, 0:D] / count
        else:
            out[k] = prev[k]
    cm.store(new, 0, out)


# Nothing to restore while tuning: each run overwrites labels and new centroids whole.
@cm.autotune(configs=KMEANS_CONFIGS, key=["x"], restore=[])
def kmeans_launch(x, centroids, labels, new, P, per_thread):
    """Launch one iteration on device arrays; returns the two launches."""
    n = x.shape[1]
    threads = n // per_thread
    partial = cmlang.runtime.empty(threads * K * W, np.float32)
    return [assign_accumulate[threads](x, n, centroids, labels, partial, per_thread, K, D, P),
            update[1](partial, threads, centroids, new, K, D)]


def kmeans_step(x: np.ndarray, centroids: np.ndarray):
    """(labels, new centroids) of one iteration; x is (D, N) f32 with N a multiple of 4096."""
    run = cmlang_impl({"x": x, "centroids": centroids}, None)
    run.run()
    return run.output()


OPENCL_SOURCE = r"""
#define K 16
#define D 4
#define GROUP 256
#define PER_ITEM 16

__kernel __attribute__((reqd_work_group_size(GROUP, 1, 1)))
void assign_accumulate(__global const float* x, const int n, __constant float* centroids,
                       __global int* labels, __global float* partial)
{
    float sums[K][D + 1];
    for (int k = 0; k < K; k++)
        for (int d = 0; d <= D; d++)
            sums[k][d] = 0.0f;
    const int first = get_group_id(0) * GROUP * PER_ITEM + get_local_id(0);
    for (int j = 0; j < PER_ITEM; j++) {
        const int i = first + j * GROUP;                       /* coalesced */
        float p[D];
        for (int d = 0; d < D; d++)
            p[d] = x[d * n + i];
        float best = INFINITY;
        int label = 0;
        for (int k = 0; k < K; k++) {
            float dist = 0.0f;
            for (int d = 0; d < D; d++) {
                const float diff = p[d] - centroids[k * D + d];
                dist = fma(diff, diff, dist);
            }
            if (dist < best) { best = dist; label = k; }
        }
        labels[i] = label;
        for (int d = 0; d < D; d++)
            sums[label][d] += p[d];
        sums[label][D] += 1.0f;
    }
    for (int k = 0; k < K; k++)
        for (int d = 0; d <= D; d++) {
            const float total = work_group_reduce_add(sums[k][d]);
            if (get_local_id(0) == 0)
                partial[(get_group_id(0) * K + k) * (D + 1) + d] = total;
        }
}

__kernel void update(__global const float* partial, const int groups, __global const float* old,
                     __global float* new_centroids)
{
    const int k = get_global_id(0);
    float s[D + 1] = {0};
    for (int g = 0; g < groups; g++)
        for (int d = 0; d <= D; d++)
            s[d] += partial[(g * K + k) * (D + 1) + d];
    for (int d = 0; d < D; d++)
        new_centroids[k * D + d] = s[D] > 0.0f ? s[d] / s[D] : old[k * D + d];
}
"""
OPENCL_GROUP, OPENCL_PER_ITEM = 256, 16


def reference(inputs):
    x, c = inputs["x"].astype(np.float64), inputs["centroids"].astype(np.float64)
    dist = ((x.T[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)
    labels = dist.argmin(axis=1).astype(np.int32)
    return labels, centroids_of(x, labels, c)


def centroids_of(x, labels, old):
    counts = np.bincount(labels, minlength=K)
    sums = np.stack([np.bincount(labels, weights=x[d], minlength=K) for d in range(D)], axis=1)
    new = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], old)
    return new.astype(np.float32)


def numpy_kmeans(x, c):
    dist = np.zeros((K, x.shape[1]), np.float32)
    for d in range(D):
        dist += (x[d][None, :] - c[:, d][:, None]) ** 2
    labels = dist.argmin(axis=0).astype(np.int32)
    return labels, centroids_of(x, labels, c)


def check(got, expected):
    labels, centroids = got
    want_labels, want_centroids = expected
    wrong = np.count_nonzero(labels != want_labels)
    if wrong > max(2, labels.size // 100000):    # near-ties may round either way
        return f"{wrong} of {labels.size} labels differ"
    if not np.allclose(centroids, want_centroids, rtol=1e-3, atol=1e-3):
        return f"centroids differ by up to {np.abs(centroids - want_centroids).max():.3g}"
    return None


# ---------------------------------------------------------------------------
# Benchmark

def make_inputs(params, rng):
    n = params["n"]
    centers = rng.uniform(-10, 10, (K, D))
    points = centers[rng.integers(0, K, n)] + rng.standard_normal((n, D)) * 2.0
    start = points[rng.choice(n, K, replace=False)]          # k-means' usual start
    return {"x": np.ascontiguousarray(points.T, np.float32), "centroids": start.astype(np.float32)}


def cmlang_impl(inputs, device):
    x, c = inputs["x"], inputs["centroids"]
    n = x.shape[1]
    assert all(n % config["per_thread"] == 0 for config in KMEANS_CONFIGS)
    dx, dc = cm.to_device(x), cm.to_device(c)
    labels = cm.to_device(np.zeros(n, np.int32))
    new = cm.to_device(np.zeros((K, D), np.float32))
    return Run(lambda: event_seconds(kmeans_launch(dx, dc, labels, new)), lambda: (labels.numpy(), new.numpy()))


def opencl_simt(inputs, device):
    x, c = inputs["x"], inputs["centroids"]
    n = x.shape[1]
    groups = n // (OPENCL_GROUP * OPENCL_PER_ITEM)
    assign_k = opencl_kernel(device, OPENCL_SOURCE, "assign_accumulate", "-cl-std=CL2.0")
    update_k = opencl_kernel(device, OPENCL_SOURCE, "update", "-cl-std=CL2.0")
    dx, dc = to_buffer(device, x), to_buffer(device, c)
    labels = to_buffer(device, np.zeros(n, np.int32), copy=False)
    partial = to_buffer(device, np.zeros(groups * K * W, np.float32), copy=False)
    new = to_buffer(device, c, copy=False)
    q = device.queue

    def run():
        return event_seconds([
            assign_k(q, (groups * OPENCL_GROUP,), (OPENCL_GROUP,), dx, np.int32(n), dc, labels, partial),
            update_k(q, (K,), None, partial, np.int32(groups), dc, new)])
    return Run(run, lambda: (from_buffer(device, labels, ((n,), np.int32)),
                             from_buffer(device, new, ((K, D), np.float32))))


benchmark = Benchmark(
    name="kmeans", description=f"one k-means iteration, K={K}, D={D}",
    sizes={"tiny": {"n": 1 << 12}, "quick": {"n": 1 << 18}, "full": {"n": 1 << 20}},
    make_inputs=make_inputs, reference=reference,
    implementations={"cmlang": cmlang_impl, "opencl-simt": opencl_simt,
                     "numpy": lambda inputs, device: host_run(lambda: numpy_kmeans(inputs["x"], inputs["centroids"]))},
    flops=lambda p: p["n"] * (3.0 * K * D + D + 1), bytes=lambda p: p["n"] * (4.0 * D + 4), check=check,
    size_label=lambda p: f"{p['n']} pts")
