"""The pyopencl backend: OpenCL devices (the Intel CPU runtime the package registers,
Intel GPUs, others)."""
from __future__ import annotations

import os
import warnings

from cmlang.errors import LaunchError

from .backend import Device, INTEL_VENDOR_ID

CL_DEVICE_SUB_GROUP_SIZES_INTEL = 0x4108


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


def opencl_devices():
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
