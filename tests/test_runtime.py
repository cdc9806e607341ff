"""The runtime: ICD registration, devices, device arrays, and launching hand-written SPIR-V."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import cmlang
from cmlang.errors import LaunchError
from cmlang.runtime import (
    DeviceArray, devices, empty, get_device, icd, launch, set_device, to_device, zeros,
)
from cmlang.runtime import device as device_module
from cmlang.runtime import launcher
from cmlang.runtime.binary import KernelBinary, Param
from kernel_utils import spirv_from_ir
from cmlang.types import (
    PtrType, bf16, bool_, f16, f32, f64, i8, i16, i32, i64, u8, u16, u32, u64,
)

# ---------------------------------------------------------------------------
# Hand-written kernels: LLVM IR -> SPIR-V with llvmlite, wrapped in KernelBinary.

IR_HEADER = """
target triple = "spirv64-unknown-unknown"
declare spir_func i64 @_Z13get_global_idj(i32)
declare spir_func i64 @_Z15get_global_sizej(i32)
declare spir_func i64 @_Z14get_local_sizej(i32)
declare spir_func i32 @_Z22get_sub_group_local_idv()
declare spir_func float @_Z23intel_sub_group_shufflefj(float, i32)
!16 = !{i32 16}
"""

# y[i] = a * x[i] + y[i] for i < n; one work-item per element.
SAXPY = """
define spir_kernel void @saxpy(ptr addrspace(1) %x, ptr addrspace(1) %y, float %a, i32 %n)
    !intel_reqd_sub_group_size !16 {
entry:
  %i = call spir_func i64 @_Z13get_global_idj(i32 0)
  %n64 = sext i32 %n to i64
  %inside = icmp slt i64 %i, %n64
  br i1 %inside, label %body, label %done
body:
  %px = getelementptr float, ptr addrspace(1) %x, i64 %i
  %py = getelementptr float, ptr addrspace(1) %y, i64 %i
  %vx = load float, ptr addrspace(1) %px
  %vy = load float, ptr addrspace(1) %py
  %ax = fmul float %a, %vx
  %r = fadd float %ax, %vy
  store float %r, ptr addrspace(1) %py
  br label %done
done:
  ret void
}
"""

# y[i] = x[i + 1 within the sub-group of 16]: checks that a CM thread is one sub-group.
ROTATE = """
define spir_kernel void @rotate(ptr addrspace(1) %x, ptr addrspace(1) %y)
    !intel_reqd_sub_group_size !16 {
  %i = call spir_func i64 @_Z13get_global_idj(i32 0)
  %lane = call spir_func i32 @_Z22get_sub_group_local_idv()
  %px = getelementptr float, ptr addrspace(1) %x, i64 %i
  %vx = load float, ptr addrspace(1) %px
  %next = add i32 %lane, 1
  %source = and i32 %next, 15
  %r = call spir_func float @_Z23intel_sub_group_shufflefj(float %vx, i32 %source)
  %py = getelementptr float, ptr addrspace(1) %y, i64 %i
  store float %r, ptr addrspace(1) %py
  ret void
}
"""

# Every scalar parameter type, widened to double and stored to out[k] (bool arrives as i8).
SCALAR_PARAMS = [  # (name, cmlang type, LLVM type, conversion to double)
    ("flag", bool_, "i8", "uitofp"), ("a", i8, "i8", "sitofp"), ("b", i16, "i16", "sitofp"),
    ("c", i32, "i32", "sitofp"), ("d", i64, "i64", "sitofp"), ("e", u8, "i8", "uitofp"),
    ("f", u16, "i16", "uitofp"), ("g", u32, "i32", "uitofp"), ("h", u64, "i64", "uitofp"),
    ("p", f16, "half", "fpext"), ("q", bf16, "i16", "uitofp"), ("r", f32, "float", "fpext"),
    ("s", f64, "double", None),
]


def scalars_ir():
    params = ", ".join(f"{llty} %{name}" for name, _, llty, _ in SCALAR_PARAMS)
    body = []
    for k, (name, _, llty, conversion) in enumerate(SCALAR_PARAMS):
        value = f"%{name}"
        if conversion:
            body.append(f"  %w{k} = {conversion} {llty} %{name} to double")
            value = f"%w{k}"
        body.append(f"  %p{k} = getelementptr double, ptr addrspace(1) %out, i64 {k}")
        body.append(f"  store double {value}, ptr addrspace(1) %p{k}")
    return (f"define spir_kernel void @scalars(ptr addrspace(1) %out, {params}) {{\n"
            + "\n".join(body) + "\n  ret void\n}\n")


# out[0..2] = get_global_size(0..2), out[3..5] = get_local_size(0..2).
def sizes_ir():
    body = []
    for d in range(3):
        for k, fn in ((d, "_Z15get_global_sizej"), (d + 3, "_Z14get_local_sizej")):
            body += [f"  %v{k} = call spir_func i64 @{fn}(i32 {d})",
                     f"  %p{k} = getelementptr i64, ptr addrspace(1) %out, i64 {k}",
                     f"  store i64 %v{k}, ptr addrspace(1) %p{k}"]
    return ("define spir_kernel void @sizes(ptr addrspace(1) %out) !intel_reqd_sub_group_size !16 {\n"
            + "\n".join(body) + "\n  ret void\n}\n")


@pytest.fixture(scope="module")
def spirv():
    return spirv_from_ir(IR_HEADER + SAXPY + ROTATE + scalars_ir() + sizes_ir(), "+SPV_INTEL_subgroups")


def ptr(name, elem=f32, writes=False, min_elems=0):
    return Param(name, PtrType(elem), writes, min_elems)


@pytest.fixture(scope="module")
def saxpy(spirv):
    params = (ptr("x"), ptr("y", writes=True), Param("a", f32), Param("n", i32))
    return KernelBinary("saxpy", spirv, 16, params)


@pytest.fixture(scope="module")
def rotate(spirv):
    return KernelBinary("rotate", spirv, 16, (ptr("x"), ptr("y", writes=True)))


@pytest.fixture(scope="module")
def scalars(spirv):
    params = (ptr("out", f64, writes=True, min_elems=len(SCALAR_PARAMS)),)
    params += tuple(Param(name, t) for name, t, _, _ in SCALAR_PARAMS)
    return KernelBinary("scalars", spirv, 1, params)


def sizes_kernel(spirv, uses_groups):
    return KernelBinary("sizes", spirv, 16, (ptr("out", i64, writes=True, min_elems=6),),
                        uses_groups=uses_groups)


# ---------------------------------------------------------------------------
# ICD registration

REPO_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(cmlang.__file__)))


def test_registration_makes_the_intel_cpu_visible_in_a_clean_process(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OCL_ICD_VENDORS", "OCL_ICD_FILENAMES", "CMLANG_DEVICE",
                        "CMLANG_NO_ICD_REGISTER")}
    env["CMLANG_CACHE_DIR"] = str(tmp_path / "cache")
    env["PYTHONPATH"] = REPO_PARENT
    script = ("import os, cmlang.runtime, pyopencl as cl\n"
              "print(os.environ['OCL_ICD_VENDORS'])\n"
              "for p in cl.get_platforms():\n"
              "    for d in p.get_devices():\n"
              "        print(p.name, '|', cl.device_type.to_string(d.type), '|', d.il_version)\n")
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    lines = out.splitlines()
    assert lines[0] == str(tmp_path / "cache" / "opencl-vendors")
    assert any("Intel" in line and "| CPU |" in line and "SPIR-V" in line for line in lines[1:])
    icd_text = (tmp_path / "cache" / "opencl-vendors" / icd.ICD_NAME).read_text()
    assert icd_text == icd.find_intel_cpu_runtime() + "\n"
    assert os.path.isabs(icd_text.strip()) and os.path.isfile(icd_text.strip())


@pytest.fixture
def fake_icd_env(tmp_path, monkeypatch):
    """A private cache dir, a fake /etc/OpenCL/vendors and a fresh registration state."""
    system = tmp_path / "etc-vendors"
    system.mkdir()
    (system / "pocl.icd").write_text("libpocl.so.2\n")
    monkeypatch.setattr(icd, "SYSTEM_VENDORS_DIR", str(system))
    monkeypatch.setattr(icd, "_done", None)
    monkeypatch.setenv("CMLANG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("OCL_ICD_VENDORS", raising=False)
    monkeypatch.delenv(icd.OPT_OUT_ENV, raising=False)
    return tmp_path


def test_registration_copies_system_icds(fake_icd_env):
    folder = icd.register_intel_cpu_runtime()
    assert folder == str(fake_icd_env / "cache" / "opencl-vendors")
    assert os.environ["OCL_ICD_VENDORS"] == folder
    assert sorted(os.listdir(folder)) == ["intel-cpu-cmlang.icd", "system-pocl.icd"]
    assert open(os.path.join(folder, "system-pocl.icd")).read() == "libpocl.so.2\n"


def test_registration_keeps_the_users_vendors_folder(fake_icd_env, monkeypatch):
    user = fake_icd_env / "my-vendors"
    user.mkdir()
    (user / "custom.icd").write_text("/opt/custom/libcustom.so\n")
    (user / "intel.icd").write_text(icd.find_intel_cpu_runtime() + "\n")  # ours again: skipped
    (user / "README").write_text("not an icd")
    monkeypatch.setenv("OCL_ICD_VENDORS", str(user))
    folder = icd.register_intel_cpu_runtime()
    assert os.path.basename(folder).startswith("opencl-vendors-")  # separate from the plain one
    assert sorted(os.listdir(folder)) == ["intel-cpu-cmlang.icd", "system-pocl.icd",
                                          "user-custom.icd"]
    # A child process inherits OCL_ICD_VENDORS pointing at our folder and keeps it.
    monkeypatch.setattr(icd, "_done", None)
    assert icd.register_intel_cpu_runtime() == folder
    assert len(os.listdir(fake_icd_env / "cache")) == 1


def test_registration_is_idempotent_and_drops_vanished_copies(fake_icd_env, monkeypatch):
    folder = icd.register_intel_cpu_runtime()
    writes = []
    real_write = icd._write_atomically
    monkeypatch.setattr(icd, "_write_atomically", lambda p, c: (writes.append(p), real_write(p, c)))
    assert icd.register_intel_cpu_runtime() == folder      # fast path

    def new_process():
        monkeypatch.setattr(icd, "_done", None)
        monkeypatch.delenv("OCL_ICD_VENDORS")
        return icd.register_intel_cpu_runtime()

    assert new_process() == folder                         # compares the files, no writes
    assert writes == []
    os.remove(fake_icd_env / "etc-vendors" / "pocl.icd")
    new_process()
    assert os.listdir(folder) == ["intel-cpu-cmlang.icd"]


def test_registration_opt_out_and_missing_library(fake_icd_env, monkeypatch):
    monkeypatch.setenv(icd.OPT_OUT_ENV, "1")
    assert icd.register_intel_cpu_runtime() is None
    assert "OCL_ICD_VENDORS" not in os.environ
    monkeypatch.delenv(icd.OPT_OUT_ENV)
    monkeypatch.setattr(icd, "find_intel_cpu_runtime", lambda: None)
    assert icd.register_intel_cpu_runtime() is None
    assert "OCL_ICD_VENDORS" not in os.environ


def test_concurrent_syncs_leave_whole_files(tmp_path):
    folder = str(tmp_path / "vendors")
    wanted = {f"system-{k}.icd": f"/lib/lib{k}.so\n" * 50 for k in range(20)}
    threads = [threading.Thread(target=icd.sync_vendors_folder, args=(folder, wanted))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(os.listdir(folder)) == sorted(wanted)  # no temporary files left over
    for name, content in wanted.items():
        assert open(os.path.join(folder, name)).read() == content


# ---------------------------------------------------------------------------
# Devices

@pytest.fixture
def fresh_device_choice(monkeypatch):
    monkeypatch.setattr(device_module, "_current", None)
    monkeypatch.delenv("CMLANG_DEVICE", raising=False)


def test_default_device_is_the_intel_cpu_runtime(fresh_device_choice):
    device = get_device()
    assert device in devices()
    assert (device.backend, device.kind, device.spec) == ("opencl", "cpu", "opencl:cpu:0")
    assert device.is_intel and device.supports_spirv
    assert 16 in device.sub_group_sizes and "cl_intel_subgroups" in device.extensions
    assert repr(device).startswith("<cmlang.Device opencl:cpu:0 ")


@pytest.mark.parametrize("spec", ["opencl:cpu", "opencl:cpu:0", "opencl:0", "cpu", "OpenCL:CPU"])
def test_device_specs(fresh_device_choice, spec):
    assert set_device(spec) is devices()[0]
    assert get_device() is devices()[0]


def test_device_objects_as_specs(fresh_device_choice):
    device = devices()[0]
    assert set_device(device) is device
    assert set_device(device.cl_device) is device


def test_cmlang_device_env(fresh_device_choice, monkeypatch):
    monkeypatch.setenv("CMLANG_DEVICE", "opencl:cpu:0")
    assert get_device().spec == "opencl:cpu:0"
    monkeypatch.setattr(device_module, "_current", None)
    monkeypatch.setenv("CMLANG_DEVICE", "quantum")
    with pytest.raises(LaunchError, match=r"CMLANG_DEVICE='quantum': bad device spec 'quantum'"):
        get_device()


@pytest.mark.parametrize("spec, message", [
    ("level_zero:gpu:0", "unsupported device 'level_zero:gpu:0': the level_zero backend is not "
                         "available in cmlang (available: opencl)"),
    ("cuda", "unsupported device 'cuda': the cuda backend is not available"),
    ("opencl:cpu:7", "no device matches 'opencl:cpu:7' (available: opencl:cpu:0"),
    ("tpu", "bad device spec 'tpu': expected [backend:][cpu|gpu|accelerator][:index]"),
    ("opencl:cpu:", "bad device spec 'opencl:cpu:'"),
    ("0", "bad device spec '0'"),
    (42, "a device spec must be a string, a cmlang Device or a pyopencl.Device, not int"),
])
def test_bad_device_specs(fresh_device_choice, spec, message):
    with pytest.raises(LaunchError) as info:
        set_device(spec)
    assert str(info.value).startswith(message)


# ---------------------------------------------------------------------------
# Arrays

def test_to_device_round_trip():
    host = np.arange(12, dtype=np.int16).reshape(3, 4)
    array = to_device(host)
    assert isinstance(array, DeviceArray)
    assert (array.shape, array.dtype, array.size, array.nbytes, len(array)) == (
        (3, 4), np.dtype(np.int16), 12, 24, 3)
    assert repr(array) == "DeviceArray(shape=(3, 4), dtype=int16, device=opencl:cpu:0)"
    np.testing.assert_array_equal(array.numpy(), host)
    np.testing.assert_array_equal(np.asarray(array), host)
    strided = to_device(np.arange(10.0)[::2])  # made contiguous on the way
    np.testing.assert_array_equal(strided.numpy(), [0.0, 2.0, 4.0, 6.0, 8.0])


def test_zeros_and_empty():
    np.testing.assert_array_equal(zeros((2, 3), np.float32).numpy(), np.zeros((2, 3), np.float32))
    array = empty(5, bf16)
    assert (array.shape, array.dtype) == ((5,), np.dtype(np.uint16))
    assert to_device(np.zeros(0, np.float32)).numpy().shape == (0,)


# ---------------------------------------------------------------------------
# Launching

def test_saxpy_with_numpy_arrays(saxpy):
    x = np.arange(100, dtype=np.float32)
    x.flags.writeable = False            # read-only input: fine, the kernel does not write it
    y = np.ones(100, np.float32)
    y_before = y
    launch(saxpy, 7, None, (x, y, 2.0, 100))  # 7 CM threads of 16 lanes cover 100 elements
    assert y is y_before
    np.testing.assert_array_equal(y, 2 * np.arange(100, dtype=np.float32) + 1)


def test_saxpy_with_device_arrays_and_numpy_scalars(saxpy):
    x = to_device(np.arange(64, dtype=np.float32))
    y = to_device(np.full(64, 3.0, np.float32))
    launch(saxpy, (4,), (2,), [x, y, np.float64(0.5), np.int64(64)])
    launch(saxpy, 4, 4, (x, y, 1, 64))
    np.testing.assert_array_equal(y.numpy(), 1.5 * np.arange(64, dtype=np.float32) + 3)


def test_saxpy_takes_a_two_dimensional_buffer(saxpy):
    x = np.arange(32, dtype=np.float32).reshape(4, 8)
    y = np.zeros((4, 8), np.float32)
    launch(saxpy, 2, None, (x, y, 3.0, 32))
    np.testing.assert_array_equal(y, 3 * x)


def test_a_cm_thread_is_one_sub_group(rotate):
    x = np.arange(64, dtype=np.float32)
    y = np.zeros(64, np.float32)
    launch(rotate, 4, None, (x, y))
    np.testing.assert_array_equal(y, x.reshape(4, 16)[:, np.r_[1:16, 0]].ravel())


def test_every_scalar_type_arrives(scalars):
    out = np.zeros(len(SCALAR_PARAMS), np.float64)
    values = [True, -100, -30000, -2_000_000_000, -2**62, 200, 60000, 4_000_000_000, 2**63,
              1.5, 2.5, 0.25, 1e300]
    launch(scalars, 1, None, [out, *values])
    expected = values[:10] + [float(0x4020)] + values[11:]  # bf16 2.5 travels as bits 0x4020
    np.testing.assert_array_equal(out, np.array(expected, np.float64))


def test_bf16_scalar_rounding():
    assert launcher.float_to_bf16_bits(1.0) == 0x3F80
    assert launcher.float_to_bf16_bits(1.00390625) == 0x3F80    # tie: to even
    assert launcher.float_to_bf16_bits(1.01171875) == 0x3F82    # tie: to even (up)
    assert launcher.float_to_bf16_bits(-2.0) == 0xC000
    assert launcher.float_to_bf16_bits(float("nan")) & 0x7FC0 == 0x7FC0


@pytest.mark.parametrize("grid, group, uses_groups, global_size, local_size", [
    (3, None, True, (48, 1, 1), (16, 1, 1)),          # each CM thread its own group
    ((4, 3), (2, 3), True, (64, 3, 1), (32, 3, 1)),
    ((2, 2, 5), (1, 2, 5), True, (32, 2, 5), (16, 2, 5)),
    (6, (2, 1, 1), True, (96, 1, 1), (32, 1, 1)),      # group with more dims pads the grid
    (64, None, False, (1024, 1, 1), (256, 1, 1)),     # no group features: runtime's choice
    (24, None, False, (384, 1, 1), (128, 1, 1)),
    ((3, 2), None, False, (48, 2, 1), (16, 1, 1)),
])
def test_grid_and_group_map_to_the_ndrange(spirv, grid, group, uses_groups, global_size,
                                           local_size):
    out = np.zeros(6, np.int64)
    launch(sizes_kernel(spirv, uses_groups), grid, group, (out,))
    assert tuple(out[:3]) == global_size and tuple(out[3:]) == local_size


# ---------------------------------------------------------------------------
# Launch errors

def launch_error(binary, args, grid=4, group=None):
    with pytest.raises(LaunchError) as info:
        launch(binary, grid, group, args)
    return str(info.value)


def test_wrong_argument_count(saxpy):
    x = np.zeros(64, np.float32)
    assert launch_error(saxpy, (x, x, 1.0)) == "saxpy() takes 4 arguments (x, y, a, n), got 3"


def test_wrong_dtype(saxpy):
    x = np.zeros(64, np.float32)
    assert launch_error(saxpy, (np.zeros(64), x, 1.0, 64)) == (
        "saxpy(): argument 'x' (ptr<f32>) needs a float32 array, got float64")
    assert launch_error(saxpy, (x, to_device(np.zeros(64, np.int32)), 1.0, 64)) == (
        "saxpy(): argument 'y' (ptr<f32>) needs a float32 array, got int32")


def test_bf16_buffers_take_uint16(spirv):
    binary = KernelBinary("rotate", spirv, 16, (Param("x", PtrType(bf16)), ptr("y", writes=True)))
    assert launch_error(binary, (np.zeros(64, np.float16), np.zeros(64, np.float32))) == (
        "rotate(): argument 'x' (ptr<bf16>) needs a uint16 (bf16 bits) or bfloat16 array, got float16")


def test_buffer_too_small(spirv):
    binary = KernelBinary("saxpy", spirv, 16, (ptr("x", min_elems=48), ptr("y", writes=True),
                                               Param("a", f32), Param("n", i32)))
    x = np.zeros(16, np.float32)
    assert launch_error(binary, (x, np.zeros(64, np.float32), 1.0, 16)) == (
        "saxpy(): buffer 'x' has 16 elements but the kernel accesses at least 48 "
        "(constant offsets)")
    assert "buffer 'x' has 16 elements" in launch_error(binary, (to_device(x), x, 1.0, 16))


def test_non_contiguous_and_non_array_buffers(saxpy):
    x = np.zeros(128, np.float32)
    assert launch_error(saxpy, (x[::2], x, 1.0, 64)) == (
        "saxpy(): argument 'x' (ptr<f32>): the array is not C-contiguous "
        "(pass np.ascontiguousarray(a))")
    assert launch_error(saxpy, ([0.0] * 64, x, 1.0, 64)) == (
        "saxpy(): argument 'x' (ptr<f32>) takes a numpy array or a DeviceArray, got list")


def test_written_buffer_must_be_writeable(saxpy):
    y = np.zeros(64, np.float32)
    y.flags.writeable = False
    assert launch_error(saxpy, (y, y, 1.0, 64)) == (
        "saxpy(): argument 'y' (ptr<f32>): the kernel writes this buffer but the array is "
        "read-only")


def test_device_array_on_another_device(saxpy):
    here = devices()[0]
    elsewhere = device_module.OpenCLDevice(here.cl_device, "opencl:cpu:9")
    x = np.zeros(64, np.float32)
    assert launch_error(saxpy, (x, to_device(x, elsewhere), 1.0, 64)) == (
        "saxpy(): argument 'y' (ptr<f32>): the DeviceArray lives on opencl:cpu:9, the kernel "
        "runs on opencl:cpu:0")


@pytest.mark.parametrize("a, n, message", [
    (1.0, 2.5, "argument 'n' (i32) takes an integer, got float 2.5"),
    (1.0, 2**31, "argument 'n' (i32): 2147483648 is out of range [-2147483648, 2147483647]"),
    (1.0, "64", "argument 'n' (i32) takes an integer, got str '64'"),
    ("2", 64, "argument 'a' (f32) takes a number, got str '2'"),
    (None, 64, "argument 'a' (f32) takes a number, got NoneType None"),
])
def test_bad_scalars(saxpy, a, n, message):
    x = np.zeros(64, np.float32)
    assert launch_error(saxpy, (x, x, a, n)) == "saxpy(): " + message


def test_bool_parameters_take_bools(scalars):
    args = [np.zeros(13), 1, -100, -30000, 0, 0, 200, 0, 0, 0, 1.5, 2.5, 0.25, 1.0]
    assert launch_error(scalars, args, grid=1) == (
        "scalars(): argument 'flag' (bool) takes a bool, got int 1")


@pytest.mark.parametrize("grid, group, message", [
    (0, None, "grid sizes must be positive, got 0"),
    (2.5, None, "grid must be an int or a tuple of ints, got 2.5"),
    ((1, 2, 3, 4), None, "grid must have 1 to 3 dimensions, got (1, 2, 3, 4)"),
    ((), None, "grid must have 1 to 3 dimensions, got ()"),
    (True, None, "grid must be an int or a tuple of ints, got True"),
    (4, (0,), "group sizes must be positive, got (0,)"),
    (10, 4, "grid (10,) is not divisible by group (4,) in dimension 0"),
    ((4, 6), (2, 4), "grid (4, 6) is not divisible by group (2, 4) in dimension 1"),
    (1024, 1024, "group (1024,) is 16384 work-items (simd 16), more than opencl:cpu:0 allows"),
])
def test_bad_grids(saxpy, grid, group, message):
    x = np.zeros(64, np.float32)
    assert launch_error(saxpy, (x, x, 1.0, 64), grid, group).startswith("saxpy(): " + message)


def test_build_failure_carries_the_build_log(spirv):
    header_only = KernelBinary("rotate", spirv[:20], 16, (ptr("x"), ptr("y", writes=True)))
    message = launch_error(header_only, (np.zeros(64, np.float32),) * 2)
    assert message.startswith("building kernel 'rotate' for opencl:cpu:0 failed:\n")
    assert "Compilation failed" in message


def test_malformed_spirv_never_reaches_the_driver(spirv):
    args = (np.zeros(64, np.float32),) * 2
    for data, message in [(b"\x00" * 40, "the binary is not a SPIR-V module"),
                          (spirv[:24], "the SPIR-V module is corrupt or truncated at word 5"),
                          (spirv[:22], "the SPIR-V module is truncated (22 bytes)")]:
        binary = KernelBinary("rotate", data, 16, (ptr("x"), ptr("y", writes=True)))
        assert launch_error(binary, args).startswith(f"kernel 'rotate': {message}")


def test_missing_kernel_name(spirv):
    binary = KernelBinary("nope", spirv, 16, (ptr("x"),))
    assert launch_error(binary, (np.zeros(64, np.float32),)).startswith(
        "the SPIR-V module has no kernel named 'nope'")


def test_lists_as_grid_and_group(saxpy):
    x = np.arange(64, dtype=np.float32)
    y = np.zeros(64, np.float32)
    launch(saxpy, [4], [2], (x, y, 1.0, 64))
    launch(saxpy, 4, [4], (x, y, 1.0, 64))
    np.testing.assert_array_equal(y, 2 * x)


def test_shared_program_table_is_bounded(monkeypatch, saxpy):
    from cmlang.runtime import launcher
    monkeypatch.setattr(launcher, "SHARED_KERNELS_KEPT", 2)
    monkeypatch.setattr(launcher, "_kernels", {("old", i): None for i in range(2)})
    x = np.arange(64, dtype=np.float32)
    y = np.zeros(64, np.float32)
    fresh = KernelBinary(saxpy.name, saxpy.spirv, saxpy.simd, saxpy.params)   # a new plan
    launch(fresh, 4, None, (x, y, 2.0, 64))
    np.testing.assert_array_equal(y, 2 * x)
    assert len(launcher._kernels) == 2 and ("old", 0) not in launcher._kernels


# ---------------------------------------------------------------------------
# Memory pool and profiling

def test_freed_device_arrays_are_reused_and_zeros_stay_zero():
    device = get_device()
    first = to_device(np.full(1 << 16, 7.0, np.float32))
    pool = device.pool
    assert pool is not None
    held = pool.held_blocks
    del first                                   # back to the pool, not to the driver
    assert pool.held_blocks == held + 1
    again = zeros(1 << 16, np.float32)          # reuses that block: must not see the 7s
    assert pool.held_blocks == held
    np.testing.assert_array_equal(again.numpy(), np.zeros(1 << 16, np.float32))
    del again
    device.free_held_memory()
    assert pool.held_blocks == 0


def test_memory_pool_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("CMLANG_MEMORY_POOL", "0")
    device = device_module.OpenCLDevice(get_device().cl_device, "opencl:cpu:0")
    assert device.pool is None
    buffer = device.upload(np.arange(4, dtype=np.float32))
    assert type(buffer).__name__ == "Buffer"
    host = np.empty(4, np.float32)
    device.copy_to_host(host, buffer)
    np.testing.assert_array_equal(host, [0, 1, 2, 3])


def test_profile_collects_the_launches_of_a_block(saxpy):
    import pyopencl as cl
    from cmlang.runtime import profile, profiling
    x, y = to_device(np.ones(64, np.float32)), to_device(np.zeros(64, np.float32))
    launch(saxpy, 4, None, (x, y, 1.0, 64))      # outside: not counted
    with profile() as outer:
        launch(saxpy, 4, None, (x, y, 1.0, 64))
        with profile() as inner:
            launch(saxpy, 4, None, (x, y, 1.0, 64))
            marker = cl.enqueue_marker(get_device().queue)   # a foreign event, reported by hand
            profiling.record("marker", marker)
    assert not profiling.recording()
    assert [name for name, _ in outer.launches] == ["saxpy", "saxpy", "marker"]
    assert list(inner.by_kernel()) == ["saxpy", "marker"]
    seconds, count = outer.by_kernel()["saxpy"]
    assert count == 2 and seconds > 0
    assert outer.seconds == pytest.approx(sum(s for s, _ in outer.by_kernel().values()))
    np.testing.assert_array_equal(y.numpy(), np.full(64, 3.0, np.float32))
