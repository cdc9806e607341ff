"""Devices: discovery, the current device, and the backend interface the launcher uses.

A ``Device`` is one accelerator behind one backend.  The launcher and the arrays only
use the small interface below (build a kernel, allocate, copy, launch), so a backend
plugs in by subclassing ``Device`` and adding its enumerator to ``BACKENDS``.  Two exist:
``opencl`` (pyopencl, this module) and ``dpctl`` (SYCL queues: Level Zero, OpenCL;
``dpctl_backend.py``).

Spec strings follow SYCL filter strings: ``[backend:][kind:][index]``, e.g.
``opencl:cpu``, ``opencl:cpu:0``, ``opencl:0`` (index into all OpenCL devices), ``cpu``,
``gpu``.  ``opencl`` means pyopencl; a ``dpctl:`` prefix picks the dpctl backend
(``dpctl:opencl:cpu``, ``dpctl:gpu``, ``dpctl``), and ``level_zero`` (like the other SYCL
backends) always goes through dpctl.  Device lists are in preference order: Intel
platforms first, because a filter like ``opencl:cpu`` should not land on another
vendor's runtime (e.g. PoCL) that cannot run our SPIR-V.
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
                 il_version="", max_work_group_size=0, local_mem_size=0):
        self.spec = spec                  # "opencl:cpu:0"
        self.name = name
        self.platform = platform          # platform name
        self.kind = kind                  # "cpu" / "gpu" / "accelerator"
        self.extensions = tuple(extensions)
        self.sub_group_sizes = tuple(sub_group_sizes)
        self.is_intel = is_intel
        self.il_version = il_version      # e.g. "SPIR-V_1.0 ... SPIR-V_1.4"; "" if none
        self.max_work_group_size = max_work_group_size
        self.local_mem_size = local_mem_size  # bytes of SLM per group (0: unknown)
        self.last_event = None            # the backend event of the latest launch here

    @property
    def supports_spirv(self) -> bool:
        return "SPIR-V" in self.il_version

    def __repr__(self):
        return f"<cmlang.Device {self.spec} {self.name!r} on {self.platform!r}>"

    # -- the backend interface -------------------------------------------------
    def build_kernel(self, spirv: bytes, name: str, options: str = ""):
        """Build SPIR-V (with driver build ``options``) and return a launchable kernel
        handle (LaunchError on failure)."""
        raise NotImplementedError

    def alloc(self, nbytes: int):
        raise NotImplementedError

    def free_held_memory(self) -> None:
        """Release memory a backend keeps for reuse (a pool); nothing by default."""

    def upload(self, host_array):
        """A new buffer holding a copy of a C-contiguous numpy array."""
        raise NotImplementedError

    def copy_to_host(self, host_array, buffer) -> None:
        """Blocking copy of a buffer into a C-contiguous numpy array."""
        raise NotImplementedError

    def copy_from_host(self, buffer, host_array) -> None:
        """Blocking copy of a C-contiguous numpy array into a buffer."""
        raise NotImplementedError

    def launch(self, kernel, args, global_size, local_size, wait=True):
        """Enqueue ``kernel`` with backend-ready ``args``; return its event.

        ``wait`` False: return at once (every buffer in ``args`` is device memory that
        outlives the kernel); the queue is in order, so later copies wait for it."""
        raise NotImplementedError

    def event_seconds(self, event) -> float:
        """Device time of a launch's event (profiling), once it has completed."""
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for everything enqueued on this device."""
        raise NotImplementedError

    def can_use_buffers_of(self, other: "Device") -> bool:
        """Can kernels here take the device arrays of ``other`` (one memory space)?"""
        return other is self


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
            local_mem_size=_safe_info(lambda: cl_device.local_mem_size, 0),
        )
        self._cl = cl
        self._context = None
        self._queue = None
        self._pool = None

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

    def build_kernel(self, spirv, name, options=""):
        cl = self._cl
        program = None
        try:
            program = cl.Program(self.context, spirv)
            with warnings.catch_warnings():  # the driver's chatter on success is noise
                warnings.simplefilter("ignore", cl.CompilerWarning)
                program.build(options=options, devices=[self.cl_device])
        except cl.Error as exc:
            log = (program is not None and _safe_info(lambda: program.get_build_info(
                self.cl_device, cl.program_build_info.LOG), "")) or str(exc)
            raise LaunchError(f"building kernel '{name}' for {self.spec} failed:\n{log}") from None
        self.check_vectorized(program, spirv, name)
        try:
            return cl.Kernel(program, name)
        except cl.Error as exc:
            raise LaunchError(f"the SPIR-V module has no kernel named '{name}': {exc}") from None

    def check_vectorized(self, program, spirv: bytes, name: str) -> None:
        """The CPU runtime's check (a workaround, like ``CpuRuntimeWorkarounds`` in
        profiles.py): LaunchError if the driver built a kernel that requires a sub-group
        size without vectorizing it. Where the OpenCL CPU runtime's vectorizer gives up (a
        loop with no exit was one cause), it runs the kernel one work-item per sub-group
        instead of refusing it, so every sub-group operation (block loads and stores,
        shuffles, broadcasts) silently computes something else. Its build log is the only
        place that says so. A GPU runs sub-groups in hardware: nothing to check there."""
        if self.kind != "cpu" or required_sub_group_size(spirv) in (None, 1):
            return
        log = _safe_info(lambda: program.get_build_info(
            self.cl_device, self._cl.program_build_info.LOG), "") or ""
        if f'Kernel "{name}" was not vectorized' in log:
            raise LaunchError(
                f"the OpenCL runtime of {self.spec} could not vectorize kernel '{name}' to its "
                f"sub-group size {required_sub_group_size(spirv)} and would run it with "
                f"sub-groups of one work-item (wrong results); please report it with the kernel")

    @property
    def pool(self):
        """pyopencl's memory pool on the queue, or None when CMLANG_MEMORY_POOL=0.

        Freed device arrays go back to it and new ones reuse them: a fresh buffer costs
        a page fault per 4 KiB on first touch (on the CPU runtime 16 MiB took 4 ms
        against 0.9 ms for the kernel that fills it). Safe with our one in-order queue:
        a reused buffer's next user is enqueued after its last one."""
        if self._pool is None and os.environ.get("CMLANG_MEMORY_POOL", "1") != "0":
            import pyopencl.tools as cl_tools
            self._pool = cl_tools.MemoryPool(cl_tools.ImmediateAllocator(self.queue))
        return self._pool

    def free_held_memory(self) -> None:
        """Give the buffers the pool holds (freed, kept for reuse) back to the driver."""
        if self._pool is not None:
            self._pool.free_held()

    def alloc(self, nbytes):
        # OpenCL refuses zero-sized buffers; a 1-byte one stands in for empty arrays.
        pool = self.pool
        if pool is not None:
            return pool.allocate(max(nbytes, 1))
        return self._cl.Buffer(self.context, self._cl.mem_flags.READ_WRITE, max(nbytes, 1))

    def upload(self, host_array):
        buffer = self.alloc(host_array.nbytes)
        self.copy_from_host(buffer, host_array)
        return buffer

    def copy_to_host(self, host_array, buffer):
        if host_array.nbytes:
            self._cl.enqueue_copy(self.queue, host_array, buffer, is_blocking=True)

    def copy_from_host(self, buffer, host_array):
        if host_array.nbytes:
            self._cl.enqueue_copy(self.queue, buffer, host_array, is_blocking=True)

    def launch(self, kernel, args, global_size, local_size, wait=True):
        try:
            kernel.set_args(*args)  # OpenCL keeps the buffers alive until the kernel is done
            event = self._cl.enqueue_nd_range_kernel(self.queue, kernel, global_size, local_size)
        except self._cl.Error as exc:  # what cmlang's own checks did not foresee
            raise LaunchError(f"{self.spec} refused the launch of '{kernel.function_name}' "
                              f"(global size {global_size}, local size {local_size}): {exc}") from None
        self.last_event = event
        if wait:
            event.wait()
        return event

    def event_seconds(self, event):
        profile = event.profile
        return (profile.end - profile.start) * 1e-9

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


def _dpctl_devices():
    from .dpctl_backend import dpctl_devices
    return dpctl_devices()


# backend name -> function listing its devices; a new backend registers here.
BACKENDS = {"opencl": _opencl_devices, "dpctl": _dpctl_devices}

_backend_lists: dict = {}  # backend name -> its devices (listed once per process)
_current: Device | None = None


def devices() -> list:
    """Every device of every implemented backend, in preference order (cached)."""
    return [d for name in BACKENDS for d in backend_devices(name)]


def backend_devices(name: str) -> list:
    """The devices of one backend (cached): each backend is only asked when needed."""
    found = _backend_lists.get(name)
    if found is None:
        found = _backend_lists[name] = BACKENDS[name]()
    return list(found)


def set_device(spec) -> Device:
    """Make ``spec`` the current device: a spec string, a Device, a pyopencl.Device,
    a dpctl.SyclQueue or a dpctl.SyclDevice."""
    global _current
    _current = resolve_device(spec)
    return _current


def synchronize(device=None) -> None:
    """Wait for every launch on ``device`` (default: the current device) to finish."""
    (get_device() if device is None else resolve_device(device)).synchronize()


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
    """An Intel GPU, else the Intel OpenCL CPU runtime, else any SPIR-V device.

    pyopencl's devices come first; dpctl is asked too (tens of milliseconds) only where
    that found no Intel GPU but the machine has GPU device nodes (a Level Zero-only
    driver), or found nothing that runs SPIR-V."""
    found = backend_devices("opencl")
    device = _preferred(found)
    usable = device is not None and device.supports_spirv
    intel_gpu = usable and device.is_intel and device.kind == "gpu"
    if not intel_gpu and (not usable or _has_gpu_nodes()):
        found = devices()
        device = _preferred(found)
    if device is not None and device.supports_spirv:
        return device
    listing = ", ".join(f"{d.spec} ({d.name})" for d in found) or "none"
    from . import icd
    if icd.problem is not None:  # the runtime is installed but could not be registered
        raise LaunchError(f"no device that runs SPIR-V kernels was found (devices: {listing}): "
                          f"{icd.problem}")
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
    module, name = type(spec).__module__, type(spec).__name__
    if module.startswith("pyopencl") and name == "Device":
        for device in backend_devices("opencl"):
            if device.cl_device == spec:
                return device
        raise LaunchError(f"pyopencl device {spec.name!r} is not among cmlang.devices()")
    if module.startswith("dpctl") and name in ("SyclQueue", "SyclDevice"):
        from . import dpctl_backend
        return dpctl_backend.resolve(spec, backend_devices("dpctl"))
    raise LaunchError(f"a device spec must be a string, a cmlang Device or a pyopencl.Device, "
                      f"not {name}; with dpctl, also a dpctl.SyclQueue or dpctl.SyclDevice")


def parse_spec(spec: str):
    """A spec string -> (backend, kind, index); missing parts are None.

    ``"opencl:cpu:0"`` -> ("opencl", "cpu", 0); ``"dpctl:opencl:cpu"`` ->
    ("dpctl:opencl", "cpu", None); ``"level_zero:gpu"`` -> ("dpctl:level_zero", "gpu",
    None); ``"dpctl:1"`` -> ("dpctl", None, 1).  Backend "opencl" is pyopencl's.
    """
    text = spec.strip().lower()
    via_dpctl = text == "dpctl" or text.startswith("dpctl:")
    if via_dpctl:
        text = text[len("dpctl:"):] if text != "dpctl" else None
    parts = [] if text is None else text.split(":")
    backend = kind = index = None
    for i, part in enumerate(parts):
        if part in KNOWN_BACKENDS and backend is None and kind is None and i == 0:
            backend = part
        elif _KIND_ALIASES.get(part, part) in KINDS and kind is None:
            kind = _KIND_ALIASES.get(part, part)
        elif part.isdigit() and i == len(parts) - 1 and (i > 0 or via_dpctl):
            index = int(part)
        else:
            raise LaunchError(
                f"bad device spec {spec!r}: expected [backend:][cpu|gpu|accelerator][:index], "
                f"e.g. 'opencl:cpu', 'opencl:gpu:0', 'opencl:0', 'cpu', 'dpctl:opencl:cpu', "
                f"'level_zero:gpu:0'")
    if via_dpctl or (backend is not None and backend != "opencl"):
        backend = "dpctl" if backend is None else "dpctl:" + backend
    return backend, kind, index


def _select(spec, backend, kind, index):
    def of_kind(found):
        return [d for d in found if kind is None or d.kind == kind]

    if backend is None and index is None:  # pyopencl's devices usually decide: dpctl
        matching = of_kind(backend_devices("opencl"))  # is not even asked then
        if matching:
            return _preferred(matching)
    matching = of_kind(_candidates(spec, backend))
    if index is None and matching:
        return _preferred(matching)
    if index is not None and index < len(matching):
        return matching[index]
    listing = ", ".join(d.spec for d in devices()) or "none"
    hint = _dpctl_hint() if backend and backend.startswith("dpctl") else ""
    raise LaunchError(f"no device matches {spec!r} (available: {listing}){hint}")


def _candidates(spec, backend) -> list:
    """The devices of ``backend`` (a parse_spec result); LaunchError when it has none."""
    if backend is None:
        return devices()
    if backend == "opencl":
        found = backend_devices("opencl")
    else:
        sycl_backend = backend.partition(":")[2]
        found = [d for d in backend_devices("dpctl")
                 if not sycl_backend or d.sycl_backend == sycl_backend]
    if found:
        return found
    if spec.strip().lower().startswith("dpctl"):
        listing = ", ".join(d.spec for d in backend_devices("dpctl")) or "none"
        raise LaunchError(f"unsupported device {spec!r}: dpctl lists no "
                          f"{backend.partition(':')[2] or 'usable'} device (dpctl devices: "
                          f"{listing}){_dpctl_hint()}")
    # Not available: name the backends (driver APIs) this machine does have devices of.
    available = []
    for device in devices():
        name = getattr(device, "sycl_backend", device.backend)
        if name not in available:
            available.append(name)
    wanted = backend.partition(":")[2] or backend
    raise LaunchError(f"unsupported device {spec!r}: the {wanted} backend is not available "
                      f"in cmlang (available: {', '.join(available) or 'none'})"
                      f"{_dpctl_hint() if backend != 'opencl' else ''}")


def _dpctl_hint() -> str:
    from .dpctl_backend import missing_device_hint
    return missing_device_hint(backend_devices("dpctl"), backend_devices("opencl"))


def _has_gpu_nodes() -> bool:
    """Does this (Linux) machine have GPU render nodes, where Level Zero may find a GPU?"""
    import glob
    return bool(glob.glob("/dev/dri/renderD*"))


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


_OP_EXECUTION_MODE, _SUBGROUP_SIZE_MODE = 16, 35


def required_sub_group_size(spirv: bytes):
    """The sub-group size a SPIR-V module requires (OpExecutionMode SubgroupSize), or None."""
    import struct
    words = struct.unpack(f"<{len(spirv) // 4}I", spirv[:len(spirv) // 4 * 4])
    i = 5
    while i < len(words):
        count, opcode = words[i] >> 16, words[i] & 0xFFFF
        if count == 0:
            return None
        if opcode == _OP_EXECUTION_MODE and count >= 4 and words[i + 2] == _SUBGROUP_SIZE_MODE:
            return words[i + 3]
        if opcode == 54:            # OpFunction: execution modes come before the functions
            return None
        i += count
    return None
