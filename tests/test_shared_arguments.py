"""The same memory passed to two parameters is one memory to the kernel, as in C.

Earlier ``k[1](a, a)`` copied a numpy ``a`` to two buffers and back in turn (the device
lost the first parameter's writes), and the interpreter read a DeviceArray twice (it
lost them there instead). Now arguments that start at the same address get one buffer,
copied in and back once, on every path (default device, interpreter, dpctl, package
kernels); overlapping views that start at different addresses cannot be one buffer and
are refused alike everywhere when the kernel writes one of them.
"""
import numpy as np
import pytest

import cmlang as cm
from cmlang import f32
from cmlang.errors import LaunchError
from test_launch_forms import use  # noqa: F401  (the path switch)


@pytest.fixture(params=["device", "interpret", "dpctl"])
def path(request, monkeypatch):
    return use(request.param, monkeypatch)


@cm.kernel(simd=8)
def write_both(a: cm.ptr[f32], b: cm.ptr[f32]):
    """a[0:8] += 1 and b[8:16] += 2."""
    cm.store(a, 0, cm.load(a, 0, 8) + 1.0)
    cm.store(b, 8, cm.load(b, 8, 8) + 2.0)


@cm.kernel(simd=8)
def write_then_read_other(a: cm.ptr[f32], b: cm.ptr[f32]):
    """a[0:8] = 5, then b[8:16] = b[0:8] * 2: through one memory b[0:8] is the 5s just
    written (a CM thread sees its own stores), through copies the old values."""
    cm.store(a, 0, cm.full(cm.vector[f32, 8], 5.0))
    cm.store(b, 8, cm.load(b, 0, 8) * 2.0)


@cm.kernel(simd=8)
def add_into(x: cm.ptr[f32], y: cm.ptr[f32], out: cm.ptr[f32]):
    cm.store(out, 0, cm.load(x, 0, 8) + cm.load(y, 0, 8))


def reference_write_both(a):
    a = a.astype(np.float64)
    a[0:8] += 1
    a[8:16] += 2
    return a.astype(np.float32)


def test_same_numpy_array_twice_keeps_both_writes(path, rng):
    a = rng.standard_normal(16).astype(np.float32)
    want = reference_write_both(a)
    write_both[1](a, a)
    np.testing.assert_array_equal(a, want)


def test_same_device_array_twice_keeps_both_writes(path, rng):
    host = rng.standard_normal(16).astype(np.float32)
    a = cm.to_device(host)
    write_both[1](a, a)
    np.testing.assert_array_equal(a.numpy(), reference_write_both(host))


def test_a_write_through_one_parameter_is_read_through_the_other(path):
    a = np.arange(16, dtype=np.float32)
    write_then_read_other[1](a, a)
    np.testing.assert_array_equal(a, [5.0] * 8 + [10.0] * 8)
    d = cm.to_device(np.arange(16, dtype=np.float32))
    write_then_read_other[1](a=d, b=d)
    np.testing.assert_array_equal(d.numpy(), [5.0] * 8 + [10.0] * 8)


def test_views_with_the_same_start_are_one_buffer(path):
    """a[:16] and a: the same first byte, so one buffer (the larger) for both."""
    a = np.arange(24, dtype=np.float32)
    write_then_read_other[1](a[:16], a)
    np.testing.assert_array_equal(a, [5.0] * 8 + [10.0] * 8 + list(range(16, 24)))


def test_disjoint_views_of_one_array_are_separate_buffers(path):
    a = np.zeros(32, np.float32)
    write_both[1](a[:16], a[16:])
    np.testing.assert_array_equal(a, [1.0] * 8 + [0.0] * 16 + [2.0] * 8)


def test_overlapping_views_at_different_offsets_are_refused_when_written(path):
    a = np.zeros(24, np.float32)
    with pytest.raises(LaunchError) as info:
        write_both[1](a[:16], a[8:])
    assert str(info.value) == (
        "write_both(): arguments 'a' and 'b' overlap in memory but start 32 bytes apart, and "
        "the kernel writes 'a'; a kernel parameter is a whole buffer, so overlapping views of "
        "one array cannot be passed: pass the array once (and offset the indices in the "
        "kernel), or copies")
    np.testing.assert_array_equal(a, 0.0)  # nothing ran


def test_overlapping_views_read_only_are_fine(path):
    a = np.arange(16, dtype=np.float32)
    out = np.zeros(8, np.float32)
    add_into[1](a[:8], a[4:12], out)
    np.testing.assert_array_equal(out, a[:8] + a[4:12])
    out[:] = 0
    add_into[1](a, a, out)
    np.testing.assert_array_equal(out, 2 * a[:8])


def test_output_overlapping_an_input_at_another_offset_is_refused(path):
    a = np.arange(16, dtype=np.float32)
    with pytest.raises(LaunchError, match=r"add_into\(\): arguments 'x' and 'out' overlap in "
                                          r"memory but start 32 bytes apart, and the kernel "
                                          r"writes 'out'"):
        add_into[1](a, a[4:], a[8:])
    with pytest.raises(LaunchError, match=r"add_into\(\): arguments 'y' and 'out' overlap in "
                                          r"memory but start 16 bytes apart"):
        add_into[1](a[12:], a[:8], a[4:12])


def test_package_kernels_share_memory_too(tmp_path, monkeypatch):
    pkg = cm.load_package(cm.build_package(str(tmp_path / "w.cmpkg"),
                                           [write_both, write_then_read_other], progress=False))
    for device_path in ["device", "dpctl"]:
        use(device_path, monkeypatch)
        a = np.arange(16, dtype=np.float32)
        pkg.write_both[1](a, a)
        np.testing.assert_array_equal(a, reference_write_both(np.arange(16, dtype=np.float32)))
        d = cm.to_device(np.arange(16, dtype=np.float32))
        pkg.write_then_read_other[1](d, d)
        np.testing.assert_array_equal(d.numpy(), [5.0] * 8 + [10.0] * 8)
        with pytest.raises(LaunchError, match="overlap in memory but start 32 bytes apart"):
            pkg.write_both[1](a[:16], a[8:])


def test_usm_memory_twice_on_dpctl_and_in_the_interpreter(monkeypatch):
    """dpctl USM memory passed twice: as it is on the device, one host copy in the
    interpreter (written back once)."""
    dpctl = pytest.importorskip("dpctl")
    import dpctl.memory as dpm
    queue = dpctl.SyclQueue("opencl:cpu")
    for where in ["dpctl", "interpret"]:
        use(where, monkeypatch)
        memory = dpm.MemoryUSMShared(16 * 4, queue=queue)
        start = np.arange(16, dtype=np.float32)
        queue.memcpy(memory, start, start.nbytes)
        write_both[1](memory, memory)
        got = np.empty(16, np.float32)
        queue.memcpy(got, memory, got.nbytes)
        np.testing.assert_array_equal(got, reference_write_both(start), err_msg=where)
