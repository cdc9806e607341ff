"""The dpctl backend: cmlang kernels on SYCL queues (Level Zero, OpenCL) through dpctl.

A ``DpctlDevice`` builds SPIR-V with ``dpctl.program.create_program_from_spirv`` and
launches with ``SyclQueue.submit_async`` on an in-order, profiling queue; its device
arrays are USM device allocations, so USM memory from dpctl, dpnp or a DLPack
oneAPI tensor in the same context passes to kernels without a copy.

Things that are not obvious:

- dpctl's ``submit`` takes scalars only as ctypes objects of a fixed set of types,
  so the numpy scalars of the launcher's converters are translated here.
- SYCL ranges list the fastest-varying dimension last, OpenCL's first: a launch passes
  the launcher's NDRange reversed, so ``get_global_id(0)`` is still CM-thread
  dimension 0 (checked by the tests with a kernel that stores its sizes).
- dpctl frees USM memory as soon as its Python object dies, even while a kernel still
  uses it: a launch that does not wait keeps its arguments until its event completes.
- dpctl's OpenCL devices come through the same ICD loader mechanism as pyopencl's:
  the SYCL runtime's OpenCL adapter loads ``libOpenCL.so.1``, which reads
  ``OCL_ICD_VENDORS`` when SYCL first lists platforms (``dpctl.get_devices()``, the
  first queue...).  ``import cmlang`` sets that variable (runtime/icd.py), so dpctl
  sees the Intel OpenCL CPU runtime as long as cmlang is imported before dpctl
  first lists devices; ``import dpctl`` alone lists nothing.
"""
from __future__ import annotations

import atexit
import collections
import ctypes
import os
import weakref

import numpy as np

from cmlang.errors import LaunchError

from .backend import Device

PROFILED_IN_ORDER = ["in_order", "enable_profiling"]
# Async launches kept alive before the completed ones are dropped from the front.
PRUNE_EVERY = 64


def _int8(value):
    return ctypes.c_char(value.tobytes())  # dpctl's 8-bit signed type is c_char


def _half(value):
    return ctypes.c_ushort(int(value.view(np.uint16)))  # same bits, same size


# numpy scalar type (what the launcher's converters give) -> ctypes object dpctl takes.
_CTYPES = {
    np.int8: _int8, np.uint8: ctypes.c_uint8, np.int16: ctypes.c_short,
    np.uint16: ctypes.c_ushort, np.int32: ctypes.c_int, np.uint32: ctypes.c_uint,
    np.int64: ctypes.c_longlong, np.uint64: ctypes.c_ulonglong, np.float16: _half,
    np.float32: ctypes.c_float, np.float64: ctypes.c_double,
}

_with_work_in_flight = weakref.WeakSet()  # devices to drain before the interpreter exits


class DpctlDevice(Device):
    """A SYCL device through dpctl, with an in-order profiling queue."""

    backend = "dpctl"

    def __init__(self, sycl_device, spec, queue=None, given_queue=None):
        platform = sycl_device.sycl_platform
        sycl_backend = sycl_device.backend.name          # "opencl", "level_zero", ...
        is_intel = "Intel" in platform.vendor or "Intel" in sycl_device.vendor
        super().__init__(
            spec=spec,
            name=sycl_device.name.strip(),
            platform=platform.name.strip(),
            kind=sycl_device.device_type.name,
            extensions=(),
            sub_group_sizes=tuple(sycl_device.sub_group_sizes),
            is_intel=is_intel,
            # Level Zero takes SPIR-V by definition; of the OpenCL runtimes here only
            # Intel's do (PoCL does not).
            il_version="SPIR-V" if sycl_backend == "level_zero" or is_intel else "",
            max_work_group_size=sycl_device.max_work_group_size,
            local_mem_size=getattr(sycl_device, "local_mem_size", 0),
        )
        self.sycl_device = sycl_device
        self.sycl_backend = sycl_backend
        self.given_queue = given_queue    # the user's queue this device was made for
        self._queue = queue
        self._context = None
        self._in_flight = collections.deque()  # (event, args) of launches not waited for
        self._next_prune = PRUNE_EVERY

    def __repr__(self):
        mine = ", your queue" if self.given_queue is not None else ""
        return f"<cmlang.Device {self.spec} {self.name!r} on {self.platform!r}{mine}>"

    @property
    def queue(self):
        if self._queue is None:
            import dpctl
            self._queue = dpctl.SyclQueue(self.sycl_device, property=PROFILED_IN_ORDER)
        return self._queue

    @property
    def context(self):
        if self._context is None:
            self._context = self.queue.sycl_context
        return self._context

    def can_use_buffers_of(self, other) -> bool:
        return (isinstance(other, DpctlDevice) and other.context == self.context
                and other.sycl_device == self.sycl_device)

    # -- the backend interface -------------------------------------------------
    def build_kernel(self, spirv, name, options=""):
        import dpctl.program as dpp
        try:
            program = dpp.create_program_from_spirv(self.queue, spirv, options)
        except dpp.SyclProgramCompilationError:
            raise LaunchError(f"building kernel '{name}' for {self.spec} failed:\n"
                              f"{self._build_log(spirv, name, options)}") from None
        if not program.has_sycl_kernel(name):
            raise LaunchError(f"the SPIR-V module has no kernel named '{name}'")
        return program.get_sycl_kernel(name)

    def _build_log(self, spirv, name, options=""):
        """dpctl gives no build log; the same OpenCL runtime through pyopencl does."""
        twin = self._opencl_twin()
        if twin is not None:
            try:
                twin.build_kernel(spirv, name, options)
            except LaunchError as exc:
                log = str(exc).split("\n", 1)[-1]
                return f"{log}\n(build log of the same module on {twin.spec})"
        return "(dpctl reports no build log)"

    def _opencl_twin(self):
        if self.sycl_backend != "opencl":
            return None
        from .opencl_backend import opencl_devices
        for device in opencl_devices():
            if device.name == self.name and device.platform == self.platform:
                return device
        return None

    def alloc(self, nbytes):
        import dpctl.memory as dpm
        return dpm.MemoryUSMDevice(max(nbytes, 1), queue=self.queue)

    def upload(self, host_array):
        buffer = self.alloc(host_array.nbytes)
        if host_array.nbytes:
            self.queue.memcpy(buffer, host_array, host_array.nbytes)
        return buffer

    def copy_to_host(self, host_array, buffer):
        if host_array.nbytes:  # the in-order queue runs it after the kernels before it
            self.queue.memcpy(host_array, buffer, host_array.nbytes)

    def copy_from_host(self, buffer, host_array):
        if host_array.nbytes:
            self.queue.memcpy(buffer, host_array, host_array.nbytes)

    def launch(self, kernel, args, global_size, local_size, wait=True):
        args = [_as_ctypes(arg) for arg in args]
        event = self.queue.submit_async(kernel, args, list(global_size[::-1]),
                                        list(local_size[::-1]))
        self.last_event = event
        if wait:
            event.wait()
        else:
            self._keep_until_done(event, args)
        return event

    def event_seconds(self, event):
        if not self.queue.has_enable_profiling:
            raise LaunchError(f"no device time on {self.spec}: the queue was made without "
                              "property='enable_profiling'")
        return (event.profiling_info_end - event.profiling_info_start) * 1e-9

    def synchronize(self):
        if self._queue is not None:
            self._queue.wait()
        self._in_flight.clear()
        self._next_prune = PRUNE_EVERY

    def _keep_until_done(self, event, args):
        in_flight = self._in_flight
        if not in_flight:
            _with_work_in_flight.add(self)
        in_flight.append((event, args))
        if len(in_flight) < self._next_prune:
            return
        import dpctl
        complete = dpctl.event_status_type.complete
        while in_flight and in_flight[0][0].execution_status == complete:
            in_flight.popleft()
        self._next_prune = len(in_flight) + PRUNE_EVERY


def _as_ctypes(arg):
    convert = _CTYPES.get(type(arg))
    return arg if convert is None else convert(arg)


@atexit.register
def _drain():
    """Wait for launches still running: their USM memory is freed at exit."""
    for device in list(_with_work_in_flight):
        device.synchronize()


# ---------------------------------------------------------------------------
# Discovery

def dpctl_devices() -> list:
    """Every device dpctl lists, Intel platforms first, each with its spec string."""
    try:
        import dpctl
    except ImportError:
        return []
    try:
        sycl_devices = dpctl.get_devices()
    except Exception:  # noqa: BLE001 - a broken SYCL installation lists nothing
        return []
    sycl_devices = sorted(sycl_devices, key=lambda d: not _is_intel(d))
    found, per_key = [], {}
    for sycl_device in sycl_devices:
        key = (sycl_device.backend.name, sycl_device.device_type.name)
        index = per_key.get(key, 0)
        per_key[key] = index + 1
        found.append(DpctlDevice(sycl_device, f"dpctl:{key[0]}:{key[1]}:{index}"))
    return found


def _is_intel(sycl_device) -> bool:
    return "Intel" in sycl_device.sycl_platform.vendor


_adopted: dict = {}  # dpctl.SyclQueue or sub-device -> the DpctlDevice made for it


def resolve(spec, known) -> DpctlDevice:
    """The device for a ``dpctl.SyclQueue`` or ``dpctl.SyclDevice`` (``known``: the
    enumerated dpctl devices).

    A queue's context is kept, so that the caller's USM memory passes without copies.
    An in-order queue is used as it is (the caller's own work orders with ours); for
    an out-of-order one we make an in-order profiling queue in the same context,
    because device arrays rely on the queue's order.
    """
    import dpctl
    if isinstance(spec, dpctl.SyclDevice):
        for device in known:
            if device.sycl_device == spec:
                return device
        return _adopt(spec, spec, None, known)
    if not isinstance(spec, dpctl.SyclQueue):
        raise LaunchError(f"a dpctl device spec must be a dpctl.SyclQueue or "
                          f"dpctl.SyclDevice, not {type(spec).__name__}")
    for device in known:
        if device._queue is spec:
            return device
    queue = spec if spec.is_in_order else dpctl.SyclQueue(
        spec.sycl_context, spec.sycl_device, property=PROFILED_IN_ORDER)
    return _adopt(spec, spec.sycl_device, queue, known, given_queue=spec)


def _adopt(key, sycl_device, queue, known, given_queue=None):
    device = _adopted.get(key)
    if device is None:
        spec = next((d.spec for d in known if d.sycl_device == sycl_device), None)
        if spec is None:  # a sub-device: not among the root devices dpctl lists
            spec = (f"dpctl:{sycl_device.backend.name}:{sycl_device.device_type.name}"
                    f":sub{len(_adopted)}")
        device = _adopted[key] = DpctlDevice(sycl_device, spec, queue, given_queue)
    return device


def missing_device_hint(known, opencl_known) -> str:
    """Why dpctl may not list a device the user expects (for error messages)."""
    import importlib.util
    if importlib.util.find_spec("dpctl") is None:
        return "; dpctl backends need the dpctl package (pip install dpctl)"
    hints = []
    selector = os.environ.get("ONEAPI_DEVICE_SELECTOR")
    if selector:
        hints.append(f"ONEAPI_DEVICE_SELECTOR={selector!r} hides devices from dpctl")
    platforms = {d.platform for d in known if d.sycl_backend == "opencl"}
    unseen = sorted({d.platform for d in opencl_known if d.is_intel} - platforms)
    if unseen:
        hints.append(f"pyopencl sees {', '.join(unseen)} but dpctl does not: dpctl listed "
                     "its devices before `import cmlang` registered the Intel OpenCL CPU "
                     "runtime (the loader reads OCL_ICD_VENDORS once); import cmlang first")
    return "".join("; " + h for h in hints)
