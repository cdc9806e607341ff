"""Regions with negative strides on spirv-vc (reversed slices, rows in reverse order).

The hardware's region strides are unsigned, so ``codegen.vc_regions`` reads or writes the
mirrored region and permutes it; these kernels run on the host emulator of the vector-compute
lowering and are checked against numpy. A reversed f16 slice once lost its last element."""
import numpy as np
import pytest

import cmlang as cm
from vc_emulator import HostKernel


@cm.kernel(simd=8)
def reversed_reads(x: cm.ptr[cm.f16], m: cm.ptr[cm.i32], out: cm.ptr[cm.f16], out_m: cm.ptr[cm.i32]):
    v = cm.load(x, 1, 4)
    cm.store(out, 1, v[2::-1])
    cm.store(out, 4, v[::-2])
    a = cm.load(m, 0, (4, 6), 6)
    cm.store(out_m, 0, a[::-1, :])
    cm.store(out_m, 24, a[3:0:-2, 5::-2])


@cm.kernel(simd=8)
def reversed_f16_slice(x: cm.ptr[cm.f16], out: cm.ptr[cm.f16]):
    v = cm.load(x, 1, 4)
    cm.store(out, 1, v[2::-1])


@cm.kernel(simd=8)
def reversed_writes(x: cm.ptr[cm.i32], out: cm.ptr[cm.i32]):
    v = cm.load(x, 0, 8)
    w = cm.zeros(cm.vector[cm.i32, 8])
    w[6::-3] = v[0:3]
    cm.store(out, 0, w)
    a = cm.zeros(cm.matrix[cm.i32, 4, 4])
    a[::-1, ::-1] = cm.load(x, 8, (4, 4), 4)
    cm.store(out, 8, a)


def run_vc(kernel, *arrays):
    key, _ = kernel._split_args(tuple(arrays))
    args = list(arrays)
    HostKernel(kernel.specialization(key, "spirv-vc"), opt=0).run((1,), None, args)
    return args


def test_reversed_f16_slice_keeps_every_element():
    x = (np.arange(8) + 1).astype(np.float16)
    out = np.zeros(4, np.float16)
    run_vc(reversed_f16_slice, x, out)
    assert out.tolist() == [0.0] + x[1:5][2::-1].tolist()


def test_reversed_region_reads_match_numpy():
    x = (np.arange(8) + 1).astype(np.float16)
    m = np.arange(24, dtype=np.int32)
    out, out_m = np.zeros(6, np.float16), np.zeros(30, np.int32)
    run_vc(reversed_reads, x, m, out, out_m)
    v, a = x[1:5], m.reshape(4, 6)
    assert out[1:].tolist() == v[2::-1].tolist() + v[::-2].tolist()
    assert out_m.tolist() == a[::-1, :].ravel().tolist() + a[3:0:-2, 5::-2].ravel().tolist()


def test_reversed_region_writes_match_numpy():
    x = np.arange(24, dtype=np.int32) + 100
    out = np.zeros(24, np.int32)
    run_vc(reversed_writes, x, out)
    w = np.zeros(8, np.int32)
    w[6::-3] = x[0:3]
    a = np.zeros((4, 4), np.int32)
    a[::-1, ::-1] = x[8:24].reshape(4, 4)
    assert out[:8].tolist() == w.tolist()
    assert out[8:].tolist() == a.ravel().tolist()


@pytest.mark.parametrize("kernel", [reversed_reads, reversed_writes])
def test_device_agrees(kernel):
    """The same kernels on the default device (the SIMT lowering), as a cross-check."""
    rng = np.random.default_rng(0)
    if kernel is reversed_reads:
        arrays = [rng.integers(0, 9, 8).astype(np.float16), np.arange(24, dtype=np.int32),
                  np.zeros(6, np.float16), np.zeros(30, np.int32)]
    else:
        arrays = [np.arange(24, dtype=np.int32) + 100, np.zeros(24, np.int32)]
    on_device = [a.copy() for a in arrays]
    kernel[1](*on_device)
    on_vc = run_vc(kernel, *[a.copy() for a in arrays])
    for d, e in zip(on_device, on_vc):
        assert np.array_equal(d, e)
