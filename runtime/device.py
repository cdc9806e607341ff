"""Devices: discovery, the current device, and the backend interface the launcher uses.

A ``Device`` is one accelerator behind one backend.  The launcher and the arrays only
use the small interface below (build a kernel, allocate, copy, launch), so a second
backend (e.g. Level Zero through dpctl) plugs in by subclassing ``Device`` and adding
its enumerator to ``BACKENDS``.  The OpenCL backend (pyopencl) is the one that exists.

Spec strings follow SYCL filter strings: ``[backend:][kind:][index]``, e.g.
``opencl:cpu``, ``opencl:cpu:0``, ``opencl:0`` (index into all OpenCL devices), ``cpu``,
``gpu``.  Device lists are in preference order: Intel platforms first, because a filter
like ``opencl:cpu`` should not land on another vendor's runtime (e.g. PoCL) that cannot
run our SPIR-V.
"""
from __future__ import annotations

import os
import warnings

from cmlang.errors import LaunchError

KINDS = ("cpu", "gpu", "accelerator")
# Backends that SYCL filter strings name; only those in BACKENDS are implemented.
KNOWN_BACKENDS = ("opencl", "level_zero", "cuda", "hip", "host")
_KIND_ALIASES = {"acc": "accelerator"}
DEVICE_ENV = "CMLANG_DEVICE"
INTEL_VENDOR_ID = 0x8086
CL_DEVICE_SUB_GROUP_SIZES_INTEL = 0x4108


class Device:
    """One device; subclasses implement the backend operations at the bottom."""

    backend = "?"

    def __init__(self, spec, name, platform, kind, extensions, sub_group_sizes, is_intel,
                 il_version="", max_work_group_size=0):
        self.spec = spec                  # "opencl:cpu:0"
        self.name = name
        self.platform = platform          # platform name
        self.kind = kind                  # "cpu" / "gpu" / "accelerator"
        self.extensions = tuple(extensions)
        self.sub_group_sizes = tuple(sub_group_sizes)
        self.is_intel = is_intel
        self.il_version = il_version      # e.g. "SPIR-V_1.0 ... SPIR-V_1.4"; "" if none
        self.max_work_group_size = max_work_group_size
        self.last_event = None            # the backend event of the latest launch here

    @property
    def supports_spirv(self) -> bool:
        return "SPIR-V" in self.il_version

    def __repr__(self):
        return f"<cmlang.Device {self.spec} {self.name!r} on {self.platform!r}>"

    # -- the backend interface -------------------------------------------------
    def build_kernel(self, spirv: bytes, name: str):
        """Build SPIR-V and return a launchable kernel handle (LaunchError on failure)."""
        raise NotImplementedError

    def alloc(self, nbytes: int):
        raise NotImplementedError

    def upload(self, host_array):
        """A new buffer holding a copy of a C-contiguous numpy array."""
        raise NotImplementedError

    def copy_to_host(self, host_array, buffer) -> None:
        """Blocking copy of a buffer into a C-contiguous numpy array."""
        raise NotImplementedError

    def copy_from_host(self, buffer, host_array) -> None:
        """Blocking copy of a C-contiguous numpy array into a buffer."""
        raise NotImplementedError

    def launch(self, kernel, args, global_size, local_size) -> None:
        """Enqueue ``kernel`` with backend-ready ``args`` and wait for it."""
        raise NotImplementedError

    def synchronize(self) -> None:
        raise NotImplementedError


class OpenCLDevice(Device):
    """A pyopencl device with a lazily created context and in-order profiling queue."""

    backend = "opencl"

    def __init__(self, cl_device, spec):
        import pyopencl as cl
        self.cl_device = cl_device
        platform = cl_device.platform
        super().__init__(
            spec=spec,
            name=cl_device.name.strip(),
            platform=platform.name.strip(),
            kind=_cl_kind(cl_device.type),
            extensions=cl_device.extensions.split(),
            sub_group_sizes=_query_sub_group_sizes(cl_device),
            is_intel=(cl_device.vendor_id == INTEL_VENDOR_ID or "Intel" in platform.vendor),
            il_version=_safe_info(lambda: cl_device.il_version, ""),
            max_work_group_size=cl_device.max_work_group_size,
        )
        self._cl = cl
        self._context = None
        self._queue = None

    @property
    def context(self):
        if self._context is None:
            self._context = self._cl.Context([self.cl_device])
        return self._context

    @property
    def queue(self):
        if self._queue is None:
            self._queue = self._cl.CommandQueue(
                self.context, self.cl_device,
                properties=self._cl.command_queue_properties.PROFILING_ENABLE)
        return self._queue

    def build_kernel(self, spirv, name):
        cl = self._cl
        program = cl.Program(self.context, spirv)
        try:
            with warnings.catch_warnings():  # the driver's chatter on success is noise
                warnings.simplefilter("ignore", cl.CompilerWarning)
                program.build(devices=[self.cl_device])
        except cl.Error as exc:
            log = _safe_info(lambda: program.get_build_info(
                self.cl_device, cl.program_build_info.LOG), "") or str(exc)
            raise LaunchError(f"building kernel '{name}' for {self.spec} failed:\n{log}") from None
        try:
            return cl.Kernel(program, name)
        except cl.Error as exc:
            raise LaunchError(f"the SPIR-V module has no kernel named '{name}': {exc}") from None

    def alloc(self, nbytes):
        # OpenCL refuses zero-sized buffers; a 1-byte one stands in for empty arrays.
        return self._cl.Buffer(self.context, self._cl.mem_flags.READ_WRITE, max(nbytes, 1))

    def upload(self, host_array):
        if host_array.nbytes == 0:
            return self.alloc(0)
        mf = self._cl.mem_flags
        return self._cl.Buffer(self.context, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=host_array)

    def copy_to_host(self, host_array, buffer):
        if host_array.nbytes:
            self._cl.enqueue_copy(self.queue, host_array, buffer, is_blocking=True)

    def copy_from_host(self, buffer, host_array):
        if host_array.nbytes:
            self._cl.enqueue_copy(self.queue, buffer, host_array, is_blocking=True)

    def launch(self, kernel, args, global_size, local_size):
        kernel.set_args(*args)
        event = self._cl.enqueue_nd_range_kernel(self.queue, kernel, global_size, local_size)
        self.last_event = event
        event.wait()
        return event

    def synchronize(self):
        if self._queue is not None:
            self._queue.finish()


# ---------------------------------------------------------------------------
# Discovery

def _opencl_devices():
    """All OpenCL devices, Intel platforms first, each with its spec string."""
    from .icd import register_intel_cpu_runtime
    register_intel_cpu_runtime()  # no-op after import cmlang; here for direct importers
    import pyopencl as cl
    try:
        platforms = cl.get_platforms()
    except cl.Error:  # the loader found no platform at all
        return []
    platforms = sorted(platforms, key=lambda p: "Intel" not in p.vendor)
    found, per_kind = [], {}
    for platform in platforms:
        try:
            cl_devices = platform.get_devices()
        except cl.Error:
            continue
        for cl_device in cl_devices:
            kind = _cl_kind(cl_device.type)
            index = per_kind.get(kind, 0)
            per_kind[kind] = index + 1
            found.append(OpenCLDevice(cl_device, f"opencl:{kind}:{index}"))
    return found


# backend name -> function listing its devices; a new backend registers here.
BACKENDS = {"opencl": _opencl_devices}

_all_devices: list | None = None
_current: Device | None = None


def devices() -> list:
    """Every device of every implemented backend, in preference order (cached)."""
    global _all_devices
    if _all_devices is None:
        _all_devices = [d for enumerate_backend in BACKENDS.values() for d in enumerate_backend()]
    return list(_all_devices)


def set_device(spec) -> Device:
    """Make ``spec`` (a string, a Device or a pyopencl.Device) the current device."""
    global _current
    _current = resolve_device(spec)
    return _current


def get_device() -> Device:
    """The current device; chosen on first use from CMLANG_DEVICE or the default order."""
    global _current
    if _current is None:
        env = os.environ.get(DEVICE_ENV)
        if env:
            try:
                _current = resolve_device(env)
            except LaunchError as exc:
                raise LaunchError(f"{DEVICE_ENV}={env!r}: {exc}") from None
        else:
            _current = default_device()
    return _current


def default_device() -> Device:
    """An Intel GPU, else the Intel OpenCL CPU runtime, else any SPIR-V device."""
    found = devices()
    device = _preferred(found)
    if device is not None and device.supports_spirv:
        return device
    listing = ", ".join(f"{d.spec} ({d.name})" for d in found) or "none"
    raise LaunchError("no device that runs SPIR-V kernels was found (devices: "
                      f"{listing}); install the Intel OpenCL CPU runtime: "
                      "pip install intel-opencl-rt")


def _preferred(candidates):
    """The default choice among ``candidates``: Intel GPU, Intel CPU, SPIR-V, first."""
    for wanted in (lambda d: d.is_intel and d.kind == "gpu" and d.supports_spirv,
                   lambda d: d.is_intel and d.kind == "cpu" and d.supports_spirv,
                   lambda d: d.supports_spirv,
                   lambda d: True):
        for device in candidates:
            if wanted(device):
                return device
    return None


def resolve_device(spec) -> Device:
    """The device a spec names; LaunchError for unknown or unsupported specs."""
    if isinstance(spec, Device):
        return spec
    if isinstance(spec, str):
        return _select(spec, *parse_spec(spec))
    if type(spec).__module__.startswith("pyopencl") and type(spec).__name__ == "Device":
        for device in devices():
            if isinstance(device, OpenCLDevice) and device.cl_device == spec:
                return device
        raise LaunchError(f"pyopencl device {spec.name!r} is not among cmlang.devices()")
    raise LaunchError(f"a device spec must be a string, a cmlang Device or a pyopencl.Device, "
                      f"not {type(spec).__name__}")


def parse_spec(spec: str):
    """``"opencl:cpu:0"`` -> ("opencl", "cpu", 0); missing parts are None."""
    backend = kind = index = None
    parts = [p for p in spec.strip().lower().split(":")]
    for i, part in enumerate(parts):
        if part in KNOWN_BACKENDS and backend is None and kind is None and i == 0:
            backend = part
        elif _KIND_ALIASES.get(part, part) in KINDS and kind is None:
            kind = _KIND_ALIASES.get(part, part)
        elif part.isdigit() and i == len(parts) - 1 and i > 0:
            index = int(part)
        else:
            raise LaunchError(
                f"bad device spec {spec!r}: expected [backend:][cpu|gpu|accelerator][:index], "
                f"e.g. 'opencl:cpu', 'opencl:gpu:0', 'opencl:0', 'cpu'")
    if backend is not None and backend not in BACKENDS:
        raise LaunchError(f"unsupported device {spec!r}: the {backend} backend is not "
                          f"available in cmlang (available: {', '.join(BACKENDS)})")
    return backend, kind, index


def _select(spec, backend, kind, index):
    matching = [d for d in devices()
                if (backend is None or d.backend == backend) and (kind is None or d.kind == kind)]
    if index is None and matching:
        return _preferred(matching)
    if index is not None and index < len(matching):
        return matching[index]
    listing = ", ".join(d.spec for d in devices()) or "none"
    raise LaunchError(f"no device matches {spec!r} (available: {listing})")


# ---------------------------------------------------------------------------

def _cl_kind(device_type) -> str:
    import pyopencl as cl
    if device_type & cl.device_type.GPU:
        return "gpu"
    if device_type & cl.device_type.CPU:
        return "cpu"
    if device_type & cl.device_type.ACCELERATOR:
        return "accelerator"
    return "custom"


def _safe_info(get, default):
    try:
        return get()
    except Exception:  # noqa: BLE001 - optional queries vary between drivers
        return default


def _query_sub_group_sizes(cl_device) -> tuple:
    """CL_DEVICE_SUB_GROUP_SIZES_INTEL, which pyopencl does not know: asked via ctypes."""
    if "cl_intel_required_subgroup_size" not in cl_device.extensions:
        return ()
    import ctypes
    lib = _opencl_library()
    if lib is None:
        return ()
    handle = ctypes.c_void_p(cl_device.int_ptr)
    size = ctypes.c_size_t(0)
    if lib.clGetDeviceInfo(handle, CL_DEVICE_SUB_GROUP_SIZES_INTEL, 0, None, ctypes.byref(size)):
        return ()
    values = (ctypes.c_size_t * (size.value // ctypes.sizeof(ctypes.c_size_t)))()
    if lib.clGetDeviceInfo(handle, CL_DEVICE_SUB_GROUP_SIZES_INTEL, size, values, None):
        return ()
    return tuple(int(v) for v in values)


def _opencl_library():
    """The ICD loader pyopencl itself links (a wheel bundles one), else the system one."""
    import ctypes
    import ctypes.util
    import glob
    import pyopencl
    libs_dir = os.path.join(os.path.dirname(pyopencl.__file__), ".libs")
    candidates = sorted(glob.glob(os.path.join(libs_dir, "libOpenCL*.so*")))
    candidates.append(ctypes.util.find_library("OpenCL"))
    for path in candidates:
        if not path:
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        lib.clGetDeviceInfo.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_size_t,
                                        ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
        lib.clGetDeviceInfo.restype = ctypes.c_int
        return lib
    return None
