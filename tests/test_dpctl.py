"""The dpctl backend and array interoperability: USM memory, DLPack, pyopencl objects.

The same hand-written SPIR-V kernels as tests/test_runtime.py run on both backends;
results must be identical.  Then the core example programs (cmlang kernels) run on
dpctl, and the argument kinds of other libraries go through zero-copy and copy paths.
"""
import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest

dpctl = pytest.importorskip("dpctl")
import dpctl.memory as dpm  # noqa: E402

import cmlang as cm  # noqa: E402
from cmlang.errors import LaunchError  # noqa: E402
from cmlang.runtime import device as device_module  # noqa: E402
from cmlang.runtime import interop, launch, set_device, to_device  # noqa: E402
from cmlang.runtime.binary import KernelBinary, Param  # noqa: E402
from cmlang.runtime.dpctl_backend import DpctlDevice  # noqa: E402
from cmlang.types import f32, f64, i32, i64  # noqa: E402
from test_runtime import (  # noqa: E402,F401  (the hand-written kernels and their fixtures)
    SCALAR_PARAMS, ptr, saxpy, spirv,
)

DPCTL = "dpctl:opencl:cpu"
OPENCL = "opencl:cpu"
BOTH = [OPENCL, DPCTL]
REPO_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(cm.__file__)))


@pytest.fixture
def on(monkeypatch):
    """``on(spec)`` makes spec the current device for this test only."""
    monkeypatch.setattr(device_module, "_current", None)
    monkeypatch.delenv("CMLANG_DEVICE", raising=False)
    monkeypatch.delenv("CMLANG_INTERPRET", raising=False)
    return set_device


@pytest.fixture
def dp(on):
    """The dpctl device over the Intel OpenCL CPU runtime, made current."""
    return on(DPCTL)


def usm_from(array, queue, kind=dpm.MemoryUSMShared):
    memory = kind(max(array.nbytes, 1), queue=queue)
    queue.memcpy(memory, array, array.nbytes)
    return memory


def usm_read(memory, dtype, queue=None):
    host = np.empty(memory.nbytes // np.dtype(dtype).itemsize, dtype)
    (queue or memory.sycl_queue).memcpy(host, memory, host.nbytes)
    return host


# ---------------------------------------------------------------------------
# Discovery, ICD registration and specs

def clean_env(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OCL_ICD_VENDORS", "CMLANG_DEVICE", "CMLANG_NO_ICD_REGISTER",
                        "ONEAPI_DEVICE_SELECTOR")}
    env["CMLANG_CACHE_DIR"] = str(tmp_path / "cache")
    env["PYTHONPATH"] = REPO_PARENT
    return env


def test_dpctl_sees_the_intel_cpu_after_import_cmlang(tmp_path):
    script = ("import cmlang, dpctl\n"
              "for d in dpctl.get_devices():\n"
              "    print(d.backend.name, d.device_type.name, '|', d.sycl_platform.name)\n"
              "print(cmlang.set_device('dpctl:opencl:cpu').spec)\n")
    out = subprocess.run([sys.executable, "-c", script], env=clean_env(tmp_path), cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert "opencl cpu | Intel(R) OpenCL" in out.splitlines()
    assert out.splitlines()[-1] == "dpctl:opencl:cpu:0"


def test_dpctl_listing_devices_before_cmlang_gets_a_hint(tmp_path):
    script = ("import dpctl\n"
              "print(len(dpctl.get_devices()))\n"   # SYCL lists platforms: too early
              "import cmlang\n"
              "try:\n"
              "    cmlang.set_device('dpctl:opencl:cpu')\n"
              "except cmlang.LaunchError as exc:\n"
              "    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", script], env=clean_env(tmp_path), cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    first, message = out.splitlines()[0], "\n".join(out.splitlines()[1:])
    assert first == "0"
    assert message.startswith("unsupported device 'dpctl:opencl:cpu': dpctl lists no opencl "
                              "device (dpctl devices: none); pyopencl sees Intel(R) OpenCL "
                              "but dpctl does not")
    assert "dpctl listed its devices before `import cmlang` registered" in message
    assert "import cmlang first" in message


def test_devices_lists_both_backends():
    specs = [d.spec for d in cm.devices()]
    assert specs.index("opencl:cpu:0") < specs.index("dpctl:opencl:cpu:0")
    device = cm.devices()[specs.index("dpctl:opencl:cpu:0")]
    assert isinstance(device, DpctlDevice)
    assert (device.backend, device.sycl_backend, device.kind) == ("dpctl", "opencl", "cpu")
    assert device.is_intel and device.supports_spirv and 16 in device.sub_group_sizes
    assert device.queue.is_in_order and device.queue.has_enable_profiling


@pytest.mark.parametrize("spec", [DPCTL, "dpctl:opencl:cpu:0", "dpctl:cpu", "dpctl", "dpctl:0",
                                  "DPCTL:OpenCL:CPU", " dpctl:opencl "])
def test_dpctl_specs(on, spec):
    assert on(spec).spec == "dpctl:opencl:cpu:0"
    assert cm.get_device() is on(DPCTL)


def test_plain_specs_stay_on_pyopencl(on):
    assert on("cpu").spec == "opencl:cpu:0"
    assert on("opencl:cpu").backend == "opencl"


def test_sycl_device_and_queue_as_specs(on, saxpy):
    device = on(DPCTL)
    assert on(device.sycl_device) is device
    assert on(device.queue) is device
    in_order = dpctl.SyclQueue(device.sycl_device, property="in_order")
    adopted = on(in_order)
    assert adopted.queue is in_order and adopted.given_queue is in_order
    assert on(in_order) is adopted                       # one device per queue: builds cached
    assert repr(adopted).endswith("on 'Intel(R) OpenCL', your queue>")
    launched = launch(saxpy, 4, None, (to_device(np.zeros(64, np.float32)),) * 2 + (1.0, 64))
    with pytest.raises(LaunchError, match=r"no device time on dpctl:opencl:cpu:0: the queue "
                                          r"was made without property='enable_profiling'"):
        launched.seconds
    out_of_order = dpctl.SyclQueue(device.sycl_device)
    companion = on(out_of_order)
    assert companion.queue is not out_of_order and companion.queue.is_in_order
    assert companion.context == out_of_order.sycl_context  # its memory passes as it is


def test_level_zero_always_means_dpctl(on):
    if any(d.backend.name == "level_zero" for d in dpctl.get_devices()):
        assert on("level_zero:gpu").sycl_backend == "level_zero"
        return
    with pytest.raises(LaunchError) as info:
        on("level_zero:gpu:0")
    assert str(info.value).startswith("unsupported device 'level_zero:gpu:0': the level_zero "
                                      "backend is not available in cmlang (available: opencl)")


@pytest.mark.parametrize("spec, message", [
    ("dpctl:cuda", "unsupported device 'dpctl:cuda': dpctl lists no cuda device (dpctl "
                   "devices: "),
    ("dpctl:opencl:cpu:5", "no device matches 'dpctl:opencl:cpu:5' (available: "),
    ("dpctl:", "bad device spec 'dpctl:': expected [backend:][cpu|gpu|accelerator][:index]"),
    ("dpctl:dpctl", "bad device spec 'dpctl:dpctl'"),
    ("opencl:dpctl", "bad device spec 'opencl:dpctl'"),
    (3.5, "a device spec must be a string, a cmlang Device or a pyopencl.Device, not float; "
          "with dpctl, also a dpctl.SyclQueue or dpctl.SyclDevice"),
])
def test_bad_specs(on, spec, message):
    with pytest.raises(LaunchError) as info:
        on(spec)
    assert str(info.value).startswith(message)


# ---------------------------------------------------------------------------
# The same kernels on both backends

@pytest.mark.parametrize("spec", BOTH)
def test_saxpy_with_numpy_and_device_arrays(on, saxpy, spec):
    device = on(spec)
    x = np.arange(100, dtype=np.float32)
    y = np.ones(100, np.float32)
    assert launch(saxpy, 7, None, (x, y, 2.0, 100)).done   # host arrays: synchronous
    np.testing.assert_array_equal(y, 2 * x + 1)
    dx, dy = to_device(x), to_device(np.ones(100, np.float32))
    assert dy.device is device
    launch(saxpy, 7, None, (dx, dy, 2.0, 100))
    launch(saxpy, 7, None, (dx, dy, 1.0, 100))
    np.testing.assert_array_equal(dy.numpy(), 3 * x + 1)  # waits: the queue is in order


@pytest.mark.parametrize("spec", BOTH)
def test_every_scalar_type_arrives(on, spirv, spec):
    on(spec)
    binary = KernelBinary("scalars", spirv, 1, (ptr("out", f64, True, len(SCALAR_PARAMS)),)
                          + tuple(Param(name, t) for name, t, _, _ in SCALAR_PARAMS))
    out = np.zeros(len(SCALAR_PARAMS), np.float64)
    values = [True, -100, -30000, -2_000_000_000, -2**62, 200, 60000, 4_000_000_000, 2**63,
              1.5, 2.5, 0.25, 1e300]
    launch(binary, 1, None, [out, *values])
    expected = values[:10] + [float(0x4020)] + values[11:]  # bf16 2.5 travels as its bits
    np.testing.assert_array_equal(out, np.array(expected, np.float64))


@pytest.mark.parametrize("spec", BOTH)
@pytest.mark.parametrize("grid, group", [((4, 3), (2, 3)), ((2, 2, 5), (1, 2, 5)), (6, 2)])
def test_ndrange_dimensions_keep_their_order(on, spirv, spec, grid, group):
    on(spec)  # SYCL lists dimensions the other way round: the backend must reverse them
    binary = KernelBinary("sizes", spirv, 16, (ptr("out", i64, True, 6),), uses_groups=True)
    out = np.zeros(6, np.int64)
    launch(binary, grid, group, (out,))
    grid, group = [(list(np.atleast_1d(v)) + [1, 1])[:3] for v in (grid, group)]
    assert list(out) == [grid[0] * 16, grid[1], grid[2], group[0] * 16, group[1], group[2]]


@pytest.mark.parametrize("spec", BOTH)
def test_sub_group_shuffle(on, spirv, spec):
    on(spec)
    binary = KernelBinary("rotate", spirv, 16, (ptr("x"), ptr("y", writes=True)))
    x = np.arange(64, dtype=np.float32)
    y = np.zeros(64, np.float32)
    launch(binary, 4, None, (x, y))
    np.testing.assert_array_equal(y, x.reshape(4, 16)[:, np.r_[1:16, 0]].ravel())


def test_build_failure_shows_the_drivers_log(dp, spirv):
    binary = KernelBinary("rotate", spirv[:20], 16, (ptr("x"), ptr("y", writes=True)))
    with pytest.raises(LaunchError) as info:
        launch(binary, 4, None, (np.zeros(64, np.float32),) * 2)
    message = str(info.value)
    assert message.startswith("building kernel 'rotate' for dpctl:opencl:cpu:0 failed:\n")
    assert "Compilation failed" in message
    assert message.endswith("(build log of the same module on opencl:cpu:0)")


def test_missing_kernel_name(dp, spirv):
    binary = KernelBinary("nope", spirv, 16, (ptr("x"),))
    with pytest.raises(LaunchError, match="the SPIR-V module has no kernel named 'nope'"):
        launch(binary, 4, None, (np.zeros(64, np.float32),))


# ---------------------------------------------------------------------------
# The core example programs (cmlang kernels) on dpctl

def example_programs():
    from examples.tour import programs
    return programs(np.random.default_rng(0))


@pytest.mark.parametrize("index", range(6), ids=[name.split(" (")[0] for name, _, _ in
                                                 example_programs()])
def test_core_examples_on_dpctl_match_pyopencl_and_numpy(on, index):
    name, run, reference = example_programs()[index]
    on(OPENCL)
    on_opencl = run()
    on(DPCTL)
    on_dpctl = run()
    np.testing.assert_array_equal(on_dpctl, on_opencl)
    np.testing.assert_allclose(on_dpctl, reference(), rtol=1e-4, atol=1e-4)


@cm.kernel(simd=16)
def saxpy32(x: cm.ptr[cm.f32], y: cm.ptr[cm.f32], a: cm.f32):
    base = cm.thread_id(0) * 32
    cm.store(y, base, a * cm.load(x, base, 32) + cm.load(y, base, 32))


@cm.kernel(simd=16)
def scale_head(y: cm.ptr[cm.f32], a: cm.f32):
    cm.store(y, 0, a * cm.load(y, 0, 32))  # constant offsets: y needs 32 elements


@pytest.mark.parametrize("interpret", [False, True])
def test_cmlang_kernel_on_usm_memory(dp, interpret, monkeypatch):
    if interpret:
        monkeypatch.setenv("CMLANG_INTERPRET", "1")
    x = np.arange(256, dtype=np.float32)
    mx = usm_from(x, dp.queue, dpm.MemoryUSMDevice)
    my = usm_from(np.ones(256, np.float32), dp.queue, dpm.MemoryUSMShared)
    saxpy32[8](mx, my, 2.0)
    cm.synchronize()
    np.testing.assert_array_equal(usm_read(my, np.float32), 2 * x + 1)
    scale_head[1](my, 0.5)
    np.testing.assert_array_equal(usm_read(my, np.float32)[:34], np.r_[x[:32] + 0.5, 65, 67])
    with pytest.raises(LaunchError, match=r"scale_head\(\): buffer 'y' has 31 elements but the "
                                          r"kernel accesses at least 32 \(constant offsets\)"):
        scale_head[1](dpm.MemoryUSMShared(31 * 4, queue=dp.queue), 2.0)


# ---------------------------------------------------------------------------
# USM memory and __sycl_usm_array_interface__

@pytest.mark.parametrize("kind", [dpm.MemoryUSMDevice, dpm.MemoryUSMShared, dpm.MemoryUSMHost])
def test_usm_memory_passes_without_copies(dp, saxpy, kind, no_staging):
    x = np.arange(64, dtype=np.float32)
    mx, my = usm_from(x, dp.queue, kind), usm_from(np.ones(64, np.float32), dp.queue, kind)
    launched = launch(saxpy, 4, None, (mx, my, 2.0, 64))
    assert not launched.done      # nothing staged through the host: it did not wait
    assert launched.wait() is launched and launched.seconds > 0
    np.testing.assert_array_equal(usm_read(my, np.float32), 2 * x + 1)


def test_usm_memory_is_untyped_bytes_sized_by_the_kernel(dp, spirv):
    binary = KernelBinary("saxpy", spirv, 16, (ptr("x", min_elems=48), ptr("y", writes=True),
                                               Param("a", f32), Param("n", i32)))
    small = dpm.MemoryUSMShared(47 * 4 + 3, queue=dp.queue)   # 47 whole float32s
    with pytest.raises(LaunchError) as info:
        launch(binary, 4, None, (small, dpm.MemoryUSMShared(256, queue=dp.queue), 1.0, 16))
    assert str(info.value) == ("saxpy(): buffer 'x' has 47 elements but the kernel accesses "
                               "at least 48 (constant offsets)")


class USMArray:
    """A dpnp-like array: typed USM memory described by __sycl_usm_array_interface__."""

    def __init__(self, memory, dtype, shape, offset=0, strides=None, readonly=False):
        self.memory = memory
        self.__sycl_usm_array_interface__ = {
            "data": (memory.__sycl_usm_array_interface__["data"][0], readonly),
            "shape": shape, "strides": strides, "typestr": np.dtype(dtype).str,
            "version": 1, "offset": offset, "syclobj": memory.sycl_queue}


def test_sycl_usm_array_interface_with_an_offset(dp, saxpy):
    base = np.arange(80, dtype=np.float32)
    memory = usm_from(base, dp.queue)
    y = USMArray(memory, np.float32, (4, 16), offset=16)      # elements 16..79
    x = USMArray(usm_from(np.full(64, 10, np.float32), dp.queue), np.float32, (64,))
    assert not launch(saxpy, 4, None, (x, y, 1.0, 64)).done
    expected = base.copy()
    expected[16:] += 10
    np.testing.assert_array_equal(usm_read(memory, np.float32), expected)


def test_sycl_usm_array_interface_checks(dp, saxpy):
    memory = usm_from(np.zeros(64, np.float32), dp.queue)
    ok = USMArray(memory, np.float32, (64,))

    def error(*args):
        with pytest.raises(LaunchError) as info:
            launch(saxpy, 4, None, args)
        return str(info.value)

    assert error(USMArray(memory, np.int32, (64,)), ok, 1.0, 64) == (
        "saxpy(): argument 'x' (ptr<f32>) needs a float32 array, got int32 (USM memory)")
    assert error(ok, USMArray(memory, np.float32, (64,), readonly=True), 1.0, 64) == (
        "saxpy(): argument 'y' (ptr<f32>): the kernel writes this buffer but the USM memory "
        "is read-only")
    assert error(USMArray(memory, np.float32, (8, 4), strides=(8, 2)), ok, 1.0, 64) == (
        "saxpy(): argument 'x' (ptr<f32>): the USM memory is not C-contiguous")


def test_device_arrays_offer_the_usm_interface(dp, saxpy):
    array = to_device(np.arange(64, dtype=np.float32))
    interface = array.__sycl_usm_array_interface__
    assert interface["shape"] == (64,) and interface["typestr"] == "<f4"
    assert interface["data"][1] is False and interface["syclobj"] is dp.queue
    view = dpm.as_usm_memory(array)                 # what dpnp would do with it
    np.testing.assert_array_equal(usm_read(view, np.float32), np.arange(64))
    assert not hasattr(to_device(np.zeros(4), cm.devices()[0]), "__sycl_usm_array_interface__")


def test_memory_of_another_queue_in_the_context_is_ordered_by_waiting(on, saxpy, no_staging):
    import pyopencl as cl
    import pyopencl.array as cla
    device = on(DPCTL)
    other = dpctl.SyclQueue(device.context, device.sycl_device)   # same context, own queue
    x = np.arange(64, dtype=np.float32)
    my = usm_from(np.ones(64, np.float32), other)
    assert launch(saxpy, 4, None, (usm_from(x, other), my, 2.0, 64)).done
    np.testing.assert_array_equal(usm_read(my, np.float32), 2 * x + 1)
    device = on(OPENCL)
    other = cl.CommandQueue(device.context)
    y = cla.to_device(other, np.ones(64, np.float32))
    assert launch(saxpy, 4, None, (cla.to_device(other, x), y, 2.0, 64)).done
    np.testing.assert_array_equal(y.get(), 2 * x + 1)


# ---------------------------------------------------------------------------
# Memory from another context or backend: copied in and back, never corrupted

def test_usm_memory_of_another_context_is_copied(dp, saxpy):
    sub_device = dp.sycl_device.create_sub_devices(partition=[1, 1])[0]
    other = dpctl.SyclQueue(sub_device)            # its own context: pointers mean nothing here
    assert other.sycl_context != dp.context
    x = np.arange(64, dtype=np.float32)
    mx = usm_from(x, other, dpm.MemoryUSMDevice)
    my = usm_from(np.ones(64, np.float32), other, dpm.MemoryUSMDevice)
    assert launch(saxpy, 4, None, (mx, my, 2.0, 64)).done   # staged: the launch waited
    np.testing.assert_array_equal(usm_read(mx, np.float32), x)            # input untouched
    np.testing.assert_array_equal(usm_read(my, np.float32), 2 * x + 1)    # result written back


def test_usm_memory_on_the_pyopencl_backend_is_copied(on, saxpy):
    queue = on(DPCTL).queue
    on(OPENCL)
    x = np.arange(64, dtype=np.float32)
    my = usm_from(np.ones(64, np.float32), queue)
    assert launch(saxpy, 4, None, (usm_from(x, queue), my, 3.0, 64)).done
    np.testing.assert_array_equal(usm_read(my, np.float32), 3 * x + 1)


def test_pyopencl_arrays_and_buffers(on, saxpy):
    import pyopencl as cl
    import pyopencl.array as cla
    device = on(OPENCL)
    x = np.arange(64, dtype=np.float32)
    ours = cla.to_device(device.queue, x)
    y = cla.to_device(device.queue, np.ones(64, np.float32))
    assert not launch(saxpy, 4, None, (ours, y, 2.0, 64)).done       # same context: as is
    np.testing.assert_array_equal(y.get(), 2 * x + 1)

    other_context = cl.Context([device.cl_device])
    other_queue = cl.CommandQueue(other_context)
    theirs = cla.to_device(other_queue, np.ones(64, np.float32))
    buffer = cl.Buffer(other_queue.context, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR,
                       hostbuf=np.ones(64, np.float32))
    assert launch(saxpy, 4, None, (ours, theirs, 1.0, 64)).done      # other context: copied
    assert launch(saxpy, 4, None, (ours, buffer, 1.0, 64)).done
    back = np.empty(64, np.float32)
    cl.enqueue_copy(other_queue, back, buffer)
    np.testing.assert_array_equal(theirs.get(), x + 1)
    np.testing.assert_array_equal(back, x + 1)

    whole = cla.to_device(device.queue, np.zeros(80, np.float32))
    assert launch(saxpy, 4, None, (ours, whole[16:], 1.0, 64)).done   # an offset: copied
    np.testing.assert_array_equal(whole.get(), np.r_[np.zeros(16, np.float32), x])
    on(DPCTL)                                                          # other backend: copied
    launch(saxpy, 4, None, (ours, theirs, 1.0, 64))
    np.testing.assert_array_equal(theirs.get(), 2 * x + 1)


# ---------------------------------------------------------------------------
# DLPack

class HostTensor:
    """Host memory behind DLPack only (not a numpy array), like a CPU tensor library's."""

    def __init__(self, array):
        self._array = array

    def __dlpack__(self, **kwargs):
        return self._array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._array.__dlpack_device__()


_DLTENSOR = b"dltensor"
_capsule_new = ctypes.pythonapi.PyCapsule_New
_capsule_new.restype = ctypes.py_object
_capsule_new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]


class OneAPITensor:
    """A float32 tensor in USM memory exported through DLPack as a oneAPI device tensor,
    the way PyTorch XPU tensors are."""

    def __init__(self, memory, count):
        self.memory = memory
        self._shape = (ctypes.c_int64 * 1)(count)
        self._managed = []

    def __dlpack_device__(self):
        return interop.DL_ONEAPI, self.memory.sycl_device.get_device_id()

    def __dlpack__(self, **kwargs):
        managed = interop.DLManagedTensor()
        tensor = managed.dl_tensor
        tensor.data = self.memory.__sycl_usm_array_interface__["data"][0]
        tensor.device.device_type, tensor.device.device_id = self.__dlpack_device__()
        tensor.ndim, tensor.shape = 1, self._shape
        tensor.dtype.code, tensor.dtype.bits, tensor.dtype.lanes = 2, 32, 1
        self._managed.append(managed)                    # no deleter: we own it
        return _capsule_new(ctypes.addressof(managed), _DLTENSOR, None)


@pytest.mark.parametrize("spec", BOTH)
def test_dlpack_host_memory_is_written_in_place(on, saxpy, spec):
    on(spec)
    x = np.arange(64, dtype=np.float32)
    y = np.ones(64, np.float32)
    launch(saxpy, 4, None, (HostTensor(x), HostTensor(y), 2.0, 64))
    np.testing.assert_array_equal(y, 2 * x + 1)
    frozen = np.ones(64, np.float32)
    frozen.flags.writeable = False
    with pytest.raises(LaunchError, match="the kernel writes this buffer but the array is "
                                          "read-only"):
        launch(saxpy, 4, None, (x, HostTensor(frozen), 2.0, 64))


def test_dlpack_torch_cpu_tensors(on, saxpy):
    torch = pytest.importorskip("torch")
    for spec in BOTH:
        on(spec)
        x = torch.arange(64, dtype=torch.float32)
        y = torch.ones(64, dtype=torch.float32)
        launch(saxpy, 4, None, (x, y, 2.0, 64))
        assert torch.equal(y, 2 * x + 1)


class BFloat16HostTensor:
    """bfloat16 host memory behind DLPack (type code 4), as a CPU torch.bfloat16 tensor
    exports it: numpy cannot import that type, so cmlang reads the capsule itself."""

    def __init__(self, bits):
        self.bits = bits                                 # uint16 patterns, owned here
        self._shape = (ctypes.c_int64 * 1)(bits.size)
        self._managed = []

    def __dlpack_device__(self):
        return interop.DL_CPU, 0

    def __dlpack__(self, **kwargs):
        managed = interop.DLManagedTensor()
        tensor = managed.dl_tensor
        tensor.data = self.bits.ctypes.data
        tensor.device.device_type, tensor.device.device_id = self.__dlpack_device__()
        tensor.ndim, tensor.shape = 1, self._shape
        tensor.dtype.code, tensor.dtype.bits, tensor.dtype.lanes = interop.DL_BFLOAT, 16, 1
        self._managed.append(managed)
        return _capsule_new(ctypes.addressof(managed), _DLTENSOR, None)


@cm.kernel(simd=16)
def twice_plus_one_bf16(x: cm.ptr[cm.bf16], y: cm.ptr[cm.bf16]):
    i = cm.thread_id(0) * 16
    cm.store(y, i, (cm.load(x, i, 16).astype(f32) * 2.0 + 1.0).astype(cm.bf16))


@pytest.mark.parametrize("spec", BOTH)
def test_dlpack_bfloat16_host_tensor_is_written_in_place(on, spec):
    from cmlang.runtime.interpreter import bf16_bits_to_f32
    on(spec)
    x = np.linspace(-3, 3, 64).astype(np.float32)
    x_bits = (x.view(np.uint32) >> 16).astype(np.uint16)       # truncated to bf16 patterns
    x = bf16_bits_to_f32(x_bits)
    y = BFloat16HostTensor(np.zeros(64, np.uint16))
    twice_plus_one_bf16[4](BFloat16HostTensor(x_bits), y)
    np.testing.assert_array_equal(bf16_bits_to_f32(y.bits), _round_bf16(2 * x + 1))


def _round_bf16(values):
    from cmlang.runtime.interpreter import bf16_bits_to_f32, f32_to_bf16_bits
    return bf16_bits_to_f32(f32_to_bf16_bits(values.astype(np.float32)))


def test_dlpack_torch_bfloat16_tensors(on):
    torch = pytest.importorskip("torch")
    for spec in BOTH:
        on(spec)
        x = torch.linspace(-3, 3, 64, dtype=torch.bfloat16)
        y = torch.zeros(64, dtype=torch.bfloat16)
        twice_plus_one_bf16[4](x, y)
        assert torch.equal(y, (2 * x.float() + 1).bfloat16())


@pytest.fixture
def no_staging(monkeypatch):
    """Fail any attempt to copy foreign memory through the host."""
    def refuse(self, dtype):
        raise AssertionError(f"{self.kind} was staged through the host")
    monkeypatch.setattr(interop.USMMemory, "read", refuse)
    monkeypatch.setattr(interop.OpenCLMemory, "read", refuse)


def test_dlpack_oneapi_tensor_passes_without_copies(dp, saxpy, no_staging):
    x = np.arange(64, dtype=np.float32)
    tx = OneAPITensor(usm_from(x, dp.queue, dpm.MemoryUSMDevice), 64)
    ty = OneAPITensor(usm_from(np.ones(64, np.float32), dp.queue, dpm.MemoryUSMDevice), 64)
    assert launch(saxpy, 4, None, (tx, ty, 2.0, 64)).done  # the producer's queue is unknown
    np.testing.assert_array_equal(usm_read(ty.memory, np.float32), 2 * x + 1)


def test_dlpack_from_an_unreachable_device():
    class CudaTensor:
        def __dlpack__(self, **kwargs):
            raise AssertionError("not asked")

        def __dlpack_device__(self):
            return 2, 0

    with pytest.raises(LaunchError, match="the CudaTensor lives on DLPack device type 2, "
                                          "which cmlang cannot reach"):
        interop.recognise(CudaTensor())


# ---------------------------------------------------------------------------
# Asynchronous launches

@pytest.mark.parametrize("spec", BOTH)
def test_async_launches_events_and_synchronize(on, saxpy, spec):
    device = on(spec)
    x = to_device(np.arange(4096, dtype=np.float32))
    y = to_device(np.zeros(4096, np.float32))
    launches = [launch(saxpy, 256, None, (x, y, 1.0, 4096)) for _ in range(20)]
    assert not any(launched.done for launched in launches)
    cm.synchronize()
    assert all(launched.seconds > 0 for launched in launches)
    assert all(launched.done for launched in launches)
    assert 0 < sum(launched.seconds for launched in launches) < 5
    np.testing.assert_array_equal(y.numpy(), 20 * np.arange(4096, dtype=np.float32))
    if isinstance(device, DpctlDevice):
        assert not device._in_flight      # arguments were kept alive until synchronize


@pytest.mark.parametrize("spec", BOTH)
def test_async_temporaries_stay_alive_until_done(on, saxpy, spec):
    on(spec)
    y = to_device(np.zeros(4096, np.float32))
    for k in range(200):  # each x dies right after its launch was enqueued
        launch(saxpy, 256, None, (to_device(np.full(4096, k, np.float32)), y, 1.0, 4096))
    np.testing.assert_array_equal(y.numpy(), np.full(4096, sum(range(200)), np.float32))


def test_device_arrays_of_a_queue_in_the_same_context(on, saxpy):
    device = on(DPCTL)
    x = to_device(np.arange(64, dtype=np.float32))
    y = to_device(np.ones(64, np.float32))
    on(dpctl.SyclQueue(device.context, device.sycl_device, property="in_order"))
    launch(saxpy, 4, None, (x, y, 2.0, 64))
    np.testing.assert_array_equal(y.numpy(), 2 * np.arange(64, dtype=np.float32) + 1)
    on(OPENCL)
    with pytest.raises(LaunchError, match="the DeviceArray lives on dpctl:opencl:cpu:0, the "
                                          "kernel runs on opencl:cpu:0"):
        launch(saxpy, 4, None, (x, y, 2.0, 64))
