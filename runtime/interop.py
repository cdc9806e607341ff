"""Array arguments from other libraries: USM memory, DLPack, pyopencl.

The launcher handles numpy arrays and DeviceArrays itself; anything else that a
``ptr[T]`` parameter receives goes through ``recognise``, which returns

- a numpy array, for host memory reached through DLPack (``np.from_dlpack``: a view,
  so results land in the caller's object when the launcher copies them back), or
- a ``Foreign``: memory owned by dpctl (USM), by a SYCL library (objects with
  ``__sycl_usm_array_interface__``, DLPack tensors on a oneAPI device) or by
  pyopencl (``Buffer``, ``Array``), or
- None: not an array we know.

A ``Foreign`` is passed as it is when it already lives in the launch device's
context (``native(device)``); otherwise the launcher stages it through the host
(``read()`` and, for buffers the kernel writes, ``write(host)``), so memory from
another context or backend is copied, never handed to a device that cannot use it.
Memory passed as it is but tied to another queue than the device's is ordered by
waiting (``sync_other_queue``): queues do not order each other's work.

Nothing here imports dpctl or pyopencl unless such an object shows up.
"""
from __future__ import annotations

import ctypes
import math

import numpy as np

from cmlang.errors import LaunchError


class Foreign:
    """Device memory from another library, as a launch argument.

    ``dtype`` is None for untyped memory (raw USM allocations, pyopencl Buffers):
    the kernel's element type then decides how many elements it holds.
    """

    kind = "?"
    dtype: np.dtype | None = None
    nbytes = 0
    contiguous = True
    readonly = False

    def count(self, dtype) -> int:
        """Elements of ``dtype`` this memory holds."""
        return self.nbytes // np.dtype(dtype).itemsize

    def native(self, device):
        """The backend buffer ``device`` can take without a copy, or None."""
        return None

    def extent(self):
        """(memory, first byte, end byte) of the data, for finding arguments that share
        memory (see ``launcher.shared_memory``); None when empty or unknown."""
        return None

    def sync_other_queue(self, device) -> bool:
        """Wait for the queue this memory is used through, if it is not ``device``'s;
        True when it was another queue (the launch must then wait as well)."""
        return False

    def read(self, dtype) -> np.ndarray:
        """A host copy of the contents as a 1-D array of ``dtype``."""
        raise NotImplementedError

    def write(self, host: np.ndarray) -> None:
        """Copy ``host`` (what ``read`` gave, updated) back into the memory."""
        raise NotImplementedError


def recognise(arg):
    """A numpy view, a Foreign, or None for an object that is no array we know."""
    module = type(arg).__module__
    if module.startswith("pyopencl"):
        return _pyopencl(arg)
    if hasattr(arg, "__sycl_usm_array_interface__"):
        return _usm(arg)
    if hasattr(arg, "__dlpack__"):
        return _dlpack(arg)
    return None


# ---------------------------------------------------------------------------
# USM memory (dpctl.memory objects, dpnp-like arrays)

class USMMemory(Foreign):
    """A USM allocation (or a contiguous part of one) in some SYCL context."""

    kind = "USM memory"

    def __init__(self, memory, dtype, readonly, owner):
        self.memory = memory          # a dpctl.memory.MemoryUSM* covering exactly the data
        self.dtype = dtype
        self.nbytes = memory.nbytes
        self.readonly = readonly
        self.owner = owner            # keeps the caller's object (and its memory) alive

    def native(self, device):
        if getattr(device, "backend", None) != "dpctl":
            return None
        memory = self.memory
        if memory.sycl_context != device.context:
            return None
        # Device allocations are only valid on their own device, even in one context.
        if memory.get_usm_type() == "device" and memory.sycl_device != device.sycl_device:
            return None
        return memory

    def extent(self):
        if not self.nbytes:
            return None
        start = self.memory._pointer  # USM pointers of one context share an address space
        return ("usm", self.memory.sycl_context), start, start + self.nbytes

    def sync_other_queue(self, device):
        queue = self.memory.sycl_queue
        if queue == device.queue:
            return False
        queue.wait()
        return True

    def read(self, dtype):
        host = np.empty(self.count(dtype), dtype)
        if host.nbytes:
            self.memory.sycl_queue.memcpy(host, self.memory, host.nbytes)
        return host

    def write(self, host):
        if host.nbytes:
            self.memory.sycl_queue.memcpy(self.memory, host, host.nbytes)


def _usm(arg):
    import dpctl.memory as dpm
    if isinstance(arg, (dpm.MemoryUSMDevice, dpm.MemoryUSMShared, dpm.MemoryUSMHost)):
        # Raw bytes: the kernel's element type applies.
        return USMMemory(arg, None, False, arg)
    return usm_from_interface(arg.__sycl_usm_array_interface__, arg)


def usm_from_interface(interface: dict, owner) -> USMMemory:
    """A USMMemory from a ``__sycl_usm_array_interface__`` dictionary."""
    import dpctl.memory as dpm
    try:
        pointer, readonly = interface["data"]
        shape = tuple(interface["shape"])
        dtype = np.dtype(interface["typestr"])
        strides = interface.get("strides")
        offset = interface.get("offset") or 0
        syclobj = interface["syclobj"]
    except (KeyError, TypeError, ValueError) as exc:
        raise LaunchError(f"malformed __sycl_usm_array_interface__ on "
                          f"{type(owner).__name__}: {exc}") from None
    size = math.prod(shape)
    region = _ExactRegion(pointer + offset * dtype.itemsize, size * dtype.itemsize, syclobj,
                          owner)
    memory = dpm.as_usm_memory(region) if region.nbytes else None
    result = USMMemory(memory or _EmptyUSM(), dtype, bool(readonly), owner)
    result.contiguous = strides is None or tuple(strides) == _c_strides(shape)
    return result


class _ExactRegion:
    """The bytes an array occupies, as a SUAI object ``dpctl.memory`` can wrap."""

    def __init__(self, pointer, nbytes, syclobj, owner):
        self.nbytes = nbytes
        self.owner = owner  # the wrapping Memory object keeps us, and so the owner, alive
        self.__sycl_usm_array_interface__ = {
            "data": (pointer, False), "shape": (nbytes,), "strides": None,
            "typestr": "|u1", "version": 1, "syclobj": syclobj}


class _EmptyUSM:
    """Stands in for the memory of an array with no elements (nothing to copy)."""
    nbytes = 0
    sycl_context = sycl_device = None

    def get_usm_type(self):
        return "unknown"


def _c_strides(shape) -> tuple:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


# ---------------------------------------------------------------------------
# pyopencl Buffer and Array

class OpenCLMemory(Foreign):
    """A pyopencl Buffer (untyped) or Array in some OpenCL context."""

    kind = "pyopencl memory"

    def __init__(self, buffer, offset, nbytes, dtype, contiguous, queue):
        self.buffer = buffer        # the cl.Buffer holding the data
        self.offset = offset        # bytes into it
        self.nbytes = nbytes
        self.dtype = dtype
        self.contiguous = contiguous
        self._queue = queue         # the Array's queue, if it has one

    def native(self, device):
        if getattr(device, "backend", None) != "opencl" or self.offset:
            return None
        return self.buffer if self.buffer.context == device.context else None

    def extent(self):
        if not self.nbytes:
            return None
        return ("pyopencl", self.buffer.int_ptr), self.offset, self.offset + self.nbytes

    def sync_other_queue(self, device):
        if self._queue is None or self._queue == device.queue:  # a Buffer has no queue
            return False
        self._queue.finish()
        return True

    def read(self, dtype):
        import pyopencl as cl
        host = np.empty(self.count(dtype), dtype)
        if host.nbytes:
            cl.enqueue_copy(self.queue, host, self.buffer, src_offset=self.offset,
                            is_blocking=True)
        return host

    def write(self, host):
        import pyopencl as cl
        if host.nbytes:
            cl.enqueue_copy(self.queue, self.buffer, host, dst_offset=self.offset,
                            is_blocking=True)

    @property
    def queue(self):
        if self._queue is None:
            self._queue = _queue_for(self.buffer.context)
        return self._queue


_cl_queues: dict = {}  # pyopencl Context -> a queue for staging copies (a few kept)


def _queue_for(context):
    import pyopencl as cl
    queue = _cl_queues.get(context)
    if queue is None:
        if len(_cl_queues) >= 8:
            _cl_queues.clear()
        queue = _cl_queues[context] = cl.CommandQueue(context)
    return queue


def _pyopencl(arg):
    import pyopencl as cl
    import pyopencl.array as cla
    if isinstance(arg, cla.Array):
        return OpenCLMemory(arg.base_data, arg.offset, arg.nbytes, arg.dtype,
                            arg.flags.c_contiguous, arg.queue)
    if isinstance(arg, cl.Buffer):
        return OpenCLMemory(arg, 0, arg.size, None, True, None)
    return None


# ---------------------------------------------------------------------------
# DLPack

# DLDeviceType values (dlpack.h)
DL_CPU, DL_CUDA_HOST, DL_ROCM_HOST, DL_ONEAPI = 1, 3, 11, 14
_HOST_DEVICES = (DL_CPU, DL_CUDA_HOST, DL_ROCM_HOST)
# DLDataTypeCode -> numpy kind; bfloat16 (code 4) is read as its 16-bit patterns
DL_BFLOAT = 4
_DL_KINDS = {0: "i", 1: "u", 2: "f", DL_BFLOAT: "u", 5: "c", 6: "b"}


def _dlpack(arg):
    device_type, device_id = _dlpack_device(arg)
    if device_type in _HOST_DEVICES:
        try:
            return np.from_dlpack(arg)
        except (BufferError, TypeError, RuntimeError) as exc:
            bfloat16 = _host_bfloat16(arg)     # numpy has no bfloat16 to import it as
            if bfloat16 is not None:
                return bfloat16
            raise LaunchError(f"cannot read the {type(arg).__name__} through DLPack: "
                              f"{exc}") from None
    if device_type == DL_ONEAPI:
        return _dlpack_oneapi(arg, device_id)
    raise LaunchError(f"the {type(arg).__name__} lives on DLPack device type {device_type}, "
                      "which cmlang cannot reach (host and oneAPI devices only)")


def _dlpack_device(arg):
    if hasattr(arg, "__dlpack_device__"):
        device_type, device_id = arg.__dlpack_device__()
        return int(device_type), int(device_id)
    return DL_CPU, 0


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", _DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p),
                ("deleter", ctypes.c_void_p)]


_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def _capsule_tensor(arg, capsule) -> DLTensor:
    try:
        address = _capsule_pointer(capsule, b"dltensor")
    except ValueError:
        raise LaunchError(f"the {type(arg).__name__}'s __dlpack__() gave no DLPack "
                          "tensor capsule") from None
    return DLManagedTensor.from_address(address).dl_tensor


class _CapsuleView:
    """Host memory of a DLPack capsule as numpy's array interface; the numpy view
    references this object, which keeps the capsule (so the producer's memory) alive."""

    def __init__(self, capsule, tensor, typestr):
        itemsize = tensor.dtype.bits // 8
        shape = tuple(tensor.shape[i] for i in range(tensor.ndim))
        strides = (tuple(tensor.strides[i] * itemsize for i in range(tensor.ndim))
                   if tensor.strides else None)
        self.capsule = capsule
        self.__array_interface__ = {"data": ((tensor.data or 0) + tensor.byte_offset, False),
                                    "shape": shape, "strides": strides, "typestr": typestr,
                                    "version": 3}


def _host_bfloat16(arg):
    """A host bfloat16 tensor (torch.bfloat16 on the CPU) as a numpy view: ml_dtypes'
    bfloat16 where installed, else its uint16 bit patterns (what ``ptr[bf16]`` takes
    either way); None for any other element type."""
    capsule = arg.__dlpack__()
    tensor = _capsule_tensor(arg, capsule)
    if (tensor.dtype.code, tensor.dtype.bits, tensor.dtype.lanes) != (DL_BFLOAT, 16, 1):
        return None
    bits = np.asarray(_CapsuleView(capsule, tensor, "<u2"))
    try:
        import ml_dtypes
    except ImportError:
        return bits
    return bits.view(ml_dtypes.bfloat16)


def _dlpack_oneapi(arg, device_id):
    """A tensor in USM memory of a SYCL device (PyTorch XPU, dpnp): its SUAI view.

    DLPack's oneAPI convention: ``device_id`` indexes the root devices SYCL lists
    (``dpctl.get_devices()``), and the pointer belongs to that device's default
    platform context.  The capsule stays referenced while the memory is used; its
    own destructor then releases the tensor.  The producer's queue is unknown, so
    launches on such tensors wait (see ``sync_other_queue``): finish the producer's
    work on them first (e.g. ``torch.xpu.synchronize()``).
    """
    import dpctl
    capsule = arg.__dlpack__()
    tensor = _capsule_tensor(arg, capsule)
    kind = _DL_KINDS.get(tensor.dtype.code)
    if kind is None or tensor.dtype.lanes != 1:
        raise LaunchError(f"the {type(arg).__name__} has a DLPack element type cmlang does "
                          f"not know (code {tensor.dtype.code}, {tensor.dtype.bits} bits)")
    shape = tuple(tensor.shape[i] for i in range(tensor.ndim))
    strides = (tuple(tensor.strides[i] for i in range(tensor.ndim))
               if tensor.strides else None)
    roots = dpctl.get_devices()
    if not 0 <= device_id < len(roots):
        raise LaunchError(f"the {type(arg).__name__} is on oneAPI device {device_id}, which "
                          f"dpctl does not list")
    interface = {"data": ((tensor.data or 0) + tensor.byte_offset, False), "shape": shape,
                 "strides": strides, "typestr": f"|{kind}{tensor.dtype.bits // 8}",
                 "version": 1, "syclobj": dpctl.SyclQueue(roots[device_id])}
    return usm_from_interface(interface, (arg, capsule))
