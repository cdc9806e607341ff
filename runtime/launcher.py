"""Launch a compiled ``KernelBinary`` on a device.

``launch`` checks the arguments against the kernel's signature, copies numpy arrays
to device buffers (and back for parameters the kernel writes), maps the CM-thread
grid to an OpenCL NDRange (see docs/design.md) and runs the kernel.  Array arguments
from other libraries (USM memory, DLPack, pyopencl) are recognised by ``interop.py``:
passed as they are where they live in the device's context, staged through the host
(and written back) otherwise.

A launch whose array arguments all live on the device (DeviceArrays, USM memory or
pyopencl buffers of its context) returns without waiting: ``.wait()`` on the result,
``synchronize()``, or reading an array back (the queue is in order) waits for it.
Launches with host arrays wait, and copy results back before returning.

Per binary a ``_Plan`` is made once: one converter function per parameter (the
argument checks and conversions), the kernels built per device.  The per-launch
path is then a loop over those converters plus the enqueue.
"""
from __future__ import annotations

import hashlib
import math
import weakref

import numpy as np

from cmlang import limits
from cmlang.errors import LaunchError
from cmlang.types import PtrType, VectorType, bf16, f32

from . import interop, launch_config, profiling
from .disk_store import build_device_kernel   # the driver's own binary from disk
from .arrays import DeviceArray
from .bounds import ERROR_WORDS, checked_fault
from .device import Device, get_device, resolve_device

SPIRV_MAGIC = (0x07230203).to_bytes(4, "little")

# Grids of these types key the per-plan NDRange cache (a list is no key; a bool or a
# float would compare equal to an int and skip the checks).
_CACHEABLE = (int, tuple, type(None), launch_config.group)
_plans: dict = {}    # id(KernelBinary) -> _Plan, dropped when the binary dies
_kernels: dict = {}  # (device, sha256(spirv), name) -> built kernel handle, oldest first
# Built programs shared between binaries with the same SPIR-V. Live binaries keep theirs in
# their plan; this table only saves rebuilds, so it forgets the oldest past a bound (a
# program is megabytes on the CPU device: thousands of specializations would pile up).
SHARED_KERNELS_KEPT = 256


class Launched:
    """A launch: ``.wait()`` for it, ``.seconds`` for its profiled device time.

    ``event`` is the backend's event (pyopencl.Event, dpctl.SyclEvent)."""
    __slots__ = ("event", "device", "done")

    def __init__(self, event, device, done):
        self.event = event
        self.device = device
        self.done = done

    def wait(self) -> "Launched":
        if not self.done:
            self.event.wait()
            self.done = True
        return self

    @property
    def seconds(self) -> float | None:
        """Device time of the kernel from profiling events (waits for it); None for a
        launch nothing timed (the interpreter)."""
        if self.event is None:
            return None
        self.wait()
        return self.device.event_seconds(self.event)

    @classmethod
    def finished(cls) -> "Launched":
        """A launch that is over and was not timed (the interpreter ran it)."""
        return cls(None, None, True)


def launch(binary, grid, group, args, device=None) -> "Launched":
    """Run ``binary`` over ``grid`` CM threads in groups of ``group``.

    ``grid`` and ``group`` are ints or tuples of 1..3 positive ints.  group None:
    each CM thread is its own group, or, when the kernel uses no group features
    (``binary.uses_groups`` false), a group size the runtime picks for speed.
    ``args`` follow ``binary.params``; numpy arrays are copied in, and back where
    the kernel writes them, and the launch waits; with only device-resident arrays
    it returns at once (see the module's doc).
    """
    if device is None:
        device = get_device()
    elif not isinstance(device, Device):
        device = resolve_device(device)
    plan = _plans.get(id(binary))
    if plan is None:
        plan = _make_plan(binary)
    if len(args) != plan.arity:
        raise LaunchError(f"{binary.name}() takes {plan.arity} argument"
                          f"{'' if plan.arity == 1 else 's'} ({plan.param_list}), got {len(args)}")
    kernel = plan.kernels.get(device)
    if kernel is None:
        kernel = plan.kernel_for(device)
    cacheable = type(grid) in _CACHEABLE and type(group) in _CACHEABLE
    sizes = plan.ndranges.get((grid, group, device)) if cacheable else None
    if sizes is None:
        sizes = _ndrange(binary, grid, group, device)
        if cacheable and len(plan.ndranges) < 64:
            plan.ndranges[grid, group, device] = sizes
    global_size, local_size = sizes

    staged = []  # (host array or None, its buffer, write-back or None) of host memory
    shared = None
    if len(plan.pointers) > 1:
        for i in plan.pointers:
            # Device arrays are never views: passed as they are, one twice is one memory.
            if type(args[i]) is not DeviceArray:
                shared = shared_memory(binary, args)
                break
    if shared is None:
        kernel_args = [convert(arg, device, staged) for convert, arg in zip(plan.converters, args)]
    else:
        kernel_args = _convert_shared(plan.converters, args, shared, device, staged)
    if plan.registers:
        kernel_args = flatten_registers(kernel_args)
    if plan.extents:
        _check_extents(binary, plan, grid, args)
    if plan.checks:
        return _launch_checked(binary, plan, kernel, kernel_args, args, sizes, group, device, staged)
    if not staged:
        launched = Launched(device.launch(kernel, kernel_args, global_size, local_size, wait=False),
                            device, False)
    else:
        event = device.launch(kernel, kernel_args, global_size, local_size)
        _copy_back(device, staged)
        launched = Launched(event, device, True)
    if profiling.recording():
        profiling.record(binary.name, launched)
    return launched


def _launch_checked(binary, plan, kernel, kernel_args, args, sizes, group, device, staged):
    """A checked-mode launch: the hidden arguments (the pointer arguments' lengths and a
    zeroed error buffer) follow the user's; it waits, and the first out-of-bounds access
    the kernel recorded is a KernelRuntimeError with the interpreter's report."""
    lengths = {i: _element_count(args[i], binary.params[i]) for i in plan.pointers}
    errors = np.zeros(ERROR_WORDS, np.int32)
    error_buffer = device.upload(errors)
    hidden = [np.int64(lengths[i]) for i in plan.pointers] + [error_buffer]
    event = device.launch(kernel, kernel_args + hidden, *sizes)
    _copy_back(device, staged)
    device.copy_to_host(errors, error_buffer)
    if errors[0]:
        raise checked_fault(binary.checks, errors, lengths, None if group is None else _dims(binary.name, "group", group))
    launched = Launched(event, device, True)
    if profiling.recording():
        profiling.record(binary.name, launched)
    return launched


def _check_extents(binary, plan, grid, args):
    """Buffers too short for what every CM thread of this grid reads or writes at offsets
    affine in the thread ids and scalar arguments (``AffineExtent``): a LaunchError
    before anything runs."""
    given = _dims(binary.name, "grid", grid)
    dims = given + (1,) * (3 - len(given))
    for i, param in plan.extents:
        size = _element_count(args[i], param)
        for extent in param.extents:
            needed = extent.needed(dims, args)
            if needed is not None and needed > size:
                raise LaunchError(
                    f"{binary.name}(): buffer '{param.name}' has {size} elements but the kernel "
                    f"needs {needed} with grid {given} (the access at {extent.where}, whose "
                    f"offset grows with the thread ids and scalar arguments)")


def _copy_back(device, staged):
    """Host arrays (and foreign memory staged through the host) get what the kernel wrote."""
    for host, buffer, write_back in staged:
        if host is not None:
            device.copy_to_host(host, buffer)
            if write_back is not None:
                write_back(host)


def _element_count(arg, param) -> int:
    """Elements of ``param``'s type in an array argument (numpy, DeviceArray, foreign)."""
    if isinstance(arg, (np.ndarray, DeviceArray)):
        return int(arg.size)
    foreign = interop.recognise(arg)
    if isinstance(foreign, np.ndarray):
        return int(foreign.size)
    return int(foreign.count(np.dtype(param.type.elem.np_dtype)))


class _HostMemory:
    """Stands in for a device when the interpreter runs: arrays stay on the host."""

    backend = "host"

    @staticmethod
    def upload(host_array):
        return host_array


def prepare_host_args(binary, args):
    """Check ``args`` exactly as ``launch`` does, for the interpreter.

    Returns (args the interpreter takes: numpy arrays and numpy scalars, a function
    that writes results back into DeviceArray arguments).
    """
    if len(args) != len(binary.params):
        names = ", ".join(p.name for p in binary.params)
        raise LaunchError(f"{binary.name}() takes {len(binary.params)} argument"
                          f"{'' if len(binary.params) == 1 else 's'} ({names}), got {len(args)}")
    shared = shared_memory(binary, args) or {}
    host_args, device_arrays, staged = [None] * len(args), [], []
    for i in _representatives_first(len(args), shared):
        param, arg = binary.params[i], args[i]
        convert = _converter(binary.name, param)
        rep, writes, nbytes = shared.get(i, (i, None, 0))
        if rep != i:  # the same memory as an argument converted already: a view of that
            host_args[i] = convert(arg, _HostMemory, staged,
                                   shared=_reinterpret(host_args[rep], param, nbytes))
            continue
        if isinstance(arg, DeviceArray):
            host = arg.numpy()
            device_arrays.append((arg, host))
            arg = host
        if writes is None:
            converted = convert(arg, _HostMemory, staged)
        else:  # another argument with this memory is written: copy it back
            converted = convert(arg, _HostMemory, staged, copy_back=writes)
        if isinstance(converted, RegisterArgument):
            converted = converted.array
        elif not isinstance(param.type, PtrType) and param.type.kind == "b":
            converted = np.bool_(converted)
        host_args[i] = converted

    def write_back():
        for array, host in device_arrays:
            array.device.copy_from_host(array.buffer, host)
        for host, _, write in staged:  # foreign memory: the interpreter wrote its copy
            if write is not None:
                write(host)

    return host_args, write_back


def clear_caches() -> None:
    """Forget built programs (tests; a driver update)."""
    _kernels.clear()
    for plan in _plans.values():
        plan.kernels.clear()


# ---------------------------------------------------------------------------
# Per-binary plan

class _Plan:
    __slots__ = ("name", "spirv", "sha", "arity", "param_list", "converters", "pointers", "kernels",
                 "build_options", "ndranges", "registers", "checks", "extents")

    def __init__(self, binary):
        problem = spirv_problem(binary.spirv)
        if problem:
            raise LaunchError(f"kernel '{binary.name}': {problem}")
        self.name = binary.name
        self.spirv = bytes(binary.spirv)
        self.sha = hashlib.sha256(self.spirv).hexdigest()
        params = binary.user_params      # checked mode's hidden ones are the launcher's
        self.arity = len(params)
        self.param_list = ", ".join(p.name for p in params)
        self.converters = tuple(_converter(binary.name, p) for p in params)
        self.pointers = tuple(i for i, p in enumerate(params) if isinstance(p.type, PtrType))
        self.checks = binary.checks
        self.extents = tuple((i, p) for i, p in enumerate(params) if p.extents)
        self.registers = any(isinstance(p.type, VectorType) for p in params)
        self.build_options = binary.build_options    # as its target said (e.g. -vc-codegen)
        self.kernels = {}   # device -> kernel handle
        self.ndranges = {}  # (grid, group, device) -> (global size, local size), checked

    def kernel_for(self, device):
        key = (device, self.sha, self.name)
        kernel = _kernels.get(key)
        if kernel is None:
            while len(_kernels) >= SHARED_KERNELS_KEPT:
                del _kernels[next(iter(_kernels))]
            kernel = _kernels[key] = build_device_kernel(device, self.spirv, self.name,
                                                         self.build_options)
        self.kernels[device] = kernel
        return kernel


def lanes_per_cm_thread(binary) -> int:
    """Work-items per CM thread, as the binary's target recorded it: a sub-group of simd
    lanes (SIMT), or one (vector compute)."""
    return binary.lanes


def spirv_problem(spirv) -> str | None:
    """Why ``spirv`` is not a well-formed SPIR-V word stream, or None.

    Checked before any driver sees it: the Intel CPU runtime kills the process on a
    truncated module instead of failing the build.
    """
    if not isinstance(spirv, (bytes, bytearray)) or spirv[:4] != SPIRV_MAGIC:
        return "the binary is not a SPIR-V module"
    if len(spirv) % 4 or len(spirv) < 20:
        return f"the SPIR-V module is truncated ({len(spirv)} bytes)"
    words = memoryview(bytes(spirv)).cast("I")
    position = 5  # after the header
    while position < len(words):
        word_count = words[position] >> 16
        if word_count == 0 or position + word_count > len(words):
            return f"the SPIR-V module is corrupt or truncated at word {position}"
        position += word_count
    return None


def use_kernel(binary, device, kernel) -> None:
    """Launch ``binary`` on ``device`` with ``kernel``, a handle built elsewhere (a
    package's native Intel GPU binary) instead of building its SPIR-V."""
    plan = _plans.get(id(binary)) or _make_plan(binary)
    plan.kernels[device] = kernel


def _make_plan(binary):
    plan = _Plan(binary)
    key = id(binary)
    try:
        weakref.finalize(binary, _plans.pop, key, None)
    except TypeError:
        return plan  # a binary without weakref support: no plan caching, still correct
    _plans[key] = plan
    return plan


# ---------------------------------------------------------------------------
# Arguments that share memory: ``k[1](a, a)`` means one memory, as in C

def memory_extent(arg):
    """Where an array argument's bytes lie: (memory, first byte, end byte), or None
    for anything else (and for arrays the converters refuse, and empty ones).

    ``memory`` names an address space: "host" (numpy arrays, DLPack host views), one
    device buffer (a DeviceArray), USM memory, a pyopencl buffer."""
    if isinstance(arg, np.ndarray):
        if not arg.flags.c_contiguous or not arg.nbytes:
            return None
        start = arg.__array_interface__["data"][0]
        return "host", start, start + arg.nbytes
    if isinstance(arg, DeviceArray):
        if not arg.nbytes:
            return None
        pointer = getattr(arg.buffer, "_pointer", None)
        if pointer is not None:  # USM memory (dpctl): views of it from dpnp are found too
            return ("usm", arg.buffer.sycl_context), pointer, pointer + arg.nbytes
        return ("buffer", id(arg.buffer)), 0, arg.nbytes
    if isinstance(arg, (int, float, bool, np.generic)):
        return None
    foreign = interop.recognise(arg)
    if isinstance(foreign, np.ndarray):
        return memory_extent(foreign)
    return None if foreign is None else foreign.extent()


def shared_memory(binary, args):
    """Pointer arguments that share memory: {index: (index of the argument whose buffer
    the group uses, whether the kernel writes any of them, the argument's bytes)}, or
    None when none do.

    Arguments that start at the same address are one memory to the kernel: one buffer
    (the largest of them) is copied in and back once, whichever parameter writes it.
    Arguments that overlap at different addresses cannot be one buffer (a kernel
    parameter is a whole buffer, not an offset into one); read-only they are copies,
    but where the kernel writes one of them the launch is refused: copies would lose
    or hide writes, and each path would lose different ones.
    """
    spaces = {}
    for i, (param, arg) in enumerate(zip(binary.params, args)):
        if isinstance(param.type, PtrType):
            extent = memory_extent(arg)
            if extent is not None:
                spaces.setdefault(extent[0], []).append((extent[1], extent[2], i))
    shared = {}
    for extents in spaces.values():
        if len(extents) < 2:
            continue
        extents.sort()
        cluster, end = [extents[0]], extents[0][1]
        for extent in extents[1:] + [None]:
            if extent is not None and extent[0] < end:
                cluster.append(extent)
                end = max(end, extent[1])
                continue
            if len(cluster) > 1:
                _share(binary, cluster, shared)
            if extent is not None:
                cluster, end = [extent], extent[1]
    return shared or None


def _share(binary, cluster, shared):
    """Record one group of overlapping arguments (start, end, index) in ``shared``."""
    params = binary.params
    writes = any(params[i].writes for _, _, i in cluster)
    start = cluster[0][0]
    if writes and any(s != start for s, _, _ in cluster):
        # Name a written argument and one starting elsewhere, the one it overlaps if any.
        ws, we, w = next(e for e in cluster if params[e[2]].writes)
        others = [e for e in cluster if e[0] != ws]
        os_, _, o = next((e for e in others if e[0] < we and ws < e[1]), others[0])
        a, b = sorted((w, o))
        raise LaunchError(
            f"{binary.name}(): arguments '{params[a].name}' and '{params[b].name}' overlap in "
            f"memory but start {abs(os_ - ws)} bytes apart, and the kernel writes "
            f"'{params[w].name}'; a kernel parameter is a whole buffer, so overlapping views "
            f"of one array cannot be passed: pass the array once (and offset the indices in "
            f"the kernel), or copies")
    if any(s != start for s, _, _ in cluster):
        return  # overlapping, read only: each its own copy, nothing is lost
    rep = max(cluster, key=lambda e: (e[1], -e[2]))[2]  # the largest, the first of equals
    for _, end, i in cluster:
        shared[i] = (rep, writes, end - start)


def _representatives_first(count, shared):
    """Argument positions with each shared group's own buffer before its other members."""
    later = [i for i in range(count) if shared.get(i, (i,))[0] != i]
    return [i for i in range(count) if shared.get(i, (i,))[0] == i] + later


def _convert_shared(converters, args, shared, device, staged):
    kernel_args = [None] * len(args)
    for i in _representatives_first(len(args), shared):
        rep, writes, _ = shared.get(i, (i, None, 0))
        if rep != i:
            kernel_args[i] = converters[i](args[i], device, staged, shared=kernel_args[rep])
        elif writes is None:
            kernel_args[i] = converters[i](args[i], device, staged)
        else:
            kernel_args[i] = converters[i](args[i], device, staged, copy_back=writes)
    return kernel_args


def _reinterpret(host, param, nbytes):
    """The interpreter's view of the first ``nbytes`` of a shared buffer (a host array)
    as ``param``'s elements."""
    dtype = np.dtype(param.type.elem.np_dtype)
    return host.reshape(-1).view(np.uint8)[:nbytes - nbytes % dtype.itemsize].view(dtype)


# ---------------------------------------------------------------------------
# Argument converters: (arg, device, copy_back) -> what the backend's set_args takes

def _converter(kernel_name, param):
    where = f"{kernel_name}(): argument '{param.name}' ({param.type})"
    if isinstance(param.type, PtrType):
        return _pointer_converter(kernel_name, where, param)
    if isinstance(param.type, VectorType):
        return _register_converter(where, param.type)
    return _scalar_converter(where, param.type)


def _scalar_converter(where, scalar_type):
    kind = scalar_type.kind
    if kind == "b":
        return _bool_converter(where)
    if kind in "iu":
        return _int_converter(where, scalar_type)
    if scalar_type.name == "bf16":
        return _bf16_converter(where)
    return _float_converter(where, scalar_type)


def _pointer_converter(kernel_name, where, param):
    dtype = np.dtype(param.type.elem.np_dtype)
    is_bf16 = param.type.elem.name == "bf16"
    dtype_text = f"{dtype} (bf16 bits) or bfloat16" if is_bf16 else str(dtype)
    min_elems, writes = param.min_elems, param.writes

    dtype_ok = param.type.elem.holds

    def check_size(size):
        if size < min_elems:
            raise LaunchError(f"{kernel_name}(): buffer '{param.name}' has {size} elements but "
                              f"the kernel accesses at least {min_elems} (constant offsets)")

    def convert(arg, device, staged, copy_back=None, shared=None):
        """The buffer for ``arg``; ``copy_back``: whether host memory is copied back (by
        default when this parameter is written; True for memory another parameter writes);
        ``shared``: the buffer of another argument with the same memory
        (``shared_memory``), to check ``arg`` against and pass instead of a copy."""
        back = writes if copy_back is None else copy_back
        if isinstance(arg, np.ndarray):
            if not dtype_ok(arg.dtype):
                raise LaunchError(f"{where} needs a {dtype_text} array, got {arg.dtype}")
            if not arg.flags.c_contiguous:
                raise LaunchError(f"{where}: the array is not C-contiguous "
                                  "(pass np.ascontiguousarray(a))")
            check_size(arg.size)
            if writes and not arg.flags.writeable:
                raise LaunchError(f"{where}: the kernel writes this buffer but the array "
                                  "is read-only")
            if shared is not None:
                return shared
            buffer = device.upload(arg)
            staged.append((arg if back else None, buffer, None))  # a host array: the launch waits
            return buffer
        if isinstance(arg, DeviceArray):
            if arg.device is not device and shared is None:
                borrow(arg, device, staged)
            if not dtype_ok(arg.dtype):
                raise LaunchError(f"{where} needs a {dtype_text} array, got {arg.dtype}")
            check_size(arg.size)
            return arg.buffer if shared is None else shared
        foreign = interop.recognise(arg)
        if foreign is None:
            raise LaunchError(f"{where} takes a numpy array or a DeviceArray, "
                              f"got {type(arg).__name__}")
        if isinstance(foreign, np.ndarray):  # host memory through DLPack: a view
            return convert(foreign, device, staged, copy_back, shared)
        return from_foreign(foreign, device, staged, back, shared)

    def borrow(arg, device, staged):
        """A DeviceArray of another queue in the same memory space (dpctl queues of one
        context): usable, but the two queues do not order each other's work, so wait
        for its queue now and for this launch before returning."""
        if not device.can_use_buffers_of(arg.device):
            raise LaunchError(f"{where}: the DeviceArray lives on {arg.device.spec}, "
                              f"the kernel runs on {device.spec}")
        arg.device.synchronize()
        staged.append((None, arg.buffer, None))

    def from_foreign(foreign, device, staged, back, shared):
        if foreign.dtype is not None and not dtype_ok(np.dtype(foreign.dtype)):
            raise LaunchError(f"{where} needs a {dtype_text} array, got {foreign.dtype} "
                              f"({foreign.kind})")
        if not foreign.contiguous:
            raise LaunchError(f"{where}: the {foreign.kind} is not C-contiguous")
        check_size(foreign.count(dtype))
        if writes and foreign.readonly:
            raise LaunchError(f"{where}: the kernel writes this buffer but the "
                              f"{foreign.kind} is read-only")
        if shared is not None:
            return shared
        buffer = foreign.native(device)
        if buffer is not None:
            if foreign.sync_other_queue(device):
                staged.append((None, buffer, None))  # the launch waits too, for their reads
            return buffer
        # Memory of another context or backend: copied in, and back if written.
        host = foreign.read(dtype)
        buffer = device.upload(host)
        staged.append((host, buffer, foreign.write) if back else (None, buffer, None))
        return buffer

    return convert


class RegisterArgument(tuple):
    """A register parameter's value: its elements in row-major order, each as the kernel ABI
    passes a scalar (one kernel argument per element on every target); ``array`` is the
    register as the interpreter takes it."""

    array: np.ndarray


def flatten_registers(kernel_args):
    out = []
    for a in kernel_args:
        if isinstance(a, RegisterArgument):
            out.extend(a)
        else:
            out.append(a)
    return out


def _register_converter(where, t):
    """A sequence or numpy array of exactly the register's shape (a vector: any sequence of
    its length), passed by value; each element checked as a scalar argument of t's element
    type is."""
    elements = [_scalar_converter(f"{where}: element {i}", t.elem) for i in range(t.size)]

    def convert(arg, device, copy_back=None):
        if isinstance(arg, (str, bytes)) or not hasattr(arg, "__len__"):
            raise LaunchError(f"{where} takes a sequence or numpy array of shape {t.shape}, "
                              f"got {type(arg).__name__}")
        try:
            values = np.asarray(arg, dtype=object)
        except ValueError:      # ragged nesting
            raise LaunchError(f"{where} takes an array of shape {t.shape}, got a ragged sequence") from None
        if values.shape != t.shape:
            raise LaunchError(f"{where} takes an array of shape {t.shape}, got shape {values.shape}")
        items = tuple(element(v.item() if isinstance(v, np.generic) else v, device, None)
                      for element, v in zip(elements, values.reshape(-1)))
        out = RegisterArgument(items)
        host = np.array(items)
        if t.elem == bf16:
            host = (host.astype(np.uint32) << 16).view(np.float32)
        elif t.elem.kind == "b":
            host = host != 0
        out.array = host.reshape(t.shape)
        return out

    return convert


def _int_converter(where, scalar_type):
    np_type = np.dtype(scalar_type.np_dtype).type
    info = np.iinfo(np_type)
    low, high = int(info.min), int(info.max)

    def convert(arg, device, copy_back):
        if not isinstance(arg, (int, np.integer)) or isinstance(arg, bool):
            raise LaunchError(f"{where} takes an integer, got {type(arg).__name__} {arg!r}")
        value = int(arg)
        if not low <= value <= high:
            raise LaunchError(f"{where}: {value} is out of range [{low}, {high}]")
        return np_type(value)

    return convert


def _float_converter(where, scalar_type):
    np_type = np.dtype(scalar_type.np_dtype).type

    def convert(arg, device, copy_back):
        if not isinstance(arg, (int, float, np.integer, np.floating)) or isinstance(arg, bool):
            raise LaunchError(f"{where} takes a number, got {type(arg).__name__} {arg!r}")
        try:
            with np.errstate(over="ignore"):
                value = np_type(arg)
        except OverflowError:      # an int beyond float64
            value = np_type(np.inf)
        _check_finite(where, arg, np.isinf(value), scalar_type)
        return value

    return convert


def _check_finite(where, arg, became_inf, scalar_type):
    """A finite number that rounds to infinity in the parameter's type is refused (as the
    compiler refuses such a constant); inf and nan themselves pass."""
    finite = isinstance(arg, (int, np.integer)) or bool(np.isfinite(arg))
    if became_inf and finite:
        raise LaunchError(f"{where}: {arg!r} is out of the range of {scalar_type} "
                          f"(it would become infinity)")


def _bf16_converter(where):
    to_f32 = _float_converter(where, f32)

    def convert(arg, device, copy_back):
        bits = float_to_bf16_bits(to_f32(arg, device, copy_back))
        _check_finite(where, arg, (bits & 0x7FFF) == 0x7F80, bf16)
        return np.uint16(bits)

    return convert


def _bool_converter(where):
    true, false = np.int8(1), np.int8(0)  # bool travels as i8 (launch ABI)

    def convert(arg, device, copy_back):
        if not isinstance(arg, (bool, np.bool_)):
            raise LaunchError(f"{where} takes a bool, got {type(arg).__name__} {arg!r}")
        return true if arg else false

    return convert


def float_to_bf16_bits(value) -> int:
    """bf16 bit pattern of a float: round to nearest even, NaN stays NaN."""
    bits = int(np.float32(value).view(np.uint32))
    if (bits & 0x7F800000) == 0x7F800000 and bits & 0x007FFFFF:
        return (bits >> 16) | 0x0040  # quiet NaN, sign kept
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) & 0xFFFF


# ---------------------------------------------------------------------------
# Grid -> NDRange

def _ndrange(binary, grid, group, device):
    grid = _dims(binary.name, "grid", grid)
    _check_budgets(binary, grid, device)
    if group is None:
        group = (1,) * len(grid)
        if not binary.uses_groups:
            group = (_auto_group(grid[0], lanes_per_cm_thread(binary), device),) + group[1:]
    else:
        group = _dims(binary.name, "group", group)
    ndim = max(len(grid), len(group))
    grid = grid + (1,) * (ndim - len(grid))
    group = group + (1,) * (ndim - len(group))
    for d in range(ndim):
        if grid[d] % group[d]:
            raise LaunchError(f"{binary.name}(): grid {grid} is not divisible by group {group} "
                              f"in dimension {d}")
    simd = lanes_per_cm_thread(binary)
    local_size = (group[0] * simd,) + group[1:]
    work_items = local_size[0] * (group[1] if ndim > 1 else 1) * (group[2] if ndim > 2 else 1)
    if device.max_work_group_size and work_items > device.max_work_group_size:
        raise LaunchError(f"{binary.name}(): group {group} is {work_items} work-items (simd "
                          f"{simd}), more than {device.spec} allows ({device.max_work_group_size})")
    return (grid[0] * simd,) + grid[1:], local_size


def _check_budgets(binary, grid, device):
    """A grid past the thread budget or the size a launch can express, and SLM past the
    device's local memory, are LaunchErrors before the driver sees them."""
    threads = math.prod(grid)
    if threads > limits.GRID_THREADS.value:
        raise LaunchError(f"{binary.name}(): grid {grid}: " + limits.GRID_THREADS.exceeded(threads, "the grid has"))
    work_items = grid[0] * lanes_per_cm_thread(binary)
    if work_items >= 2**63:  # OpenCL's size_t (and the kernel's 64-bit ids)
        raise LaunchError(f"{binary.name}(): grid {grid} is {work_items} work-items in dimension 0, "
                          "more than a launch can express (2**63)")
    slm, limit = binary.slm_bytes, getattr(device, "local_mem_size", 0)
    if limit and slm > limit:
        raise LaunchError(f"{binary.name}(): the kernel's shared local memory (cm.slm) is {slm} bytes "
                          f"per group, more than {device.spec} has ({limit} bytes)")


def _auto_group(grid0, simd, device):
    """CM threads per group when the caller gave no group and the kernel cannot tell:
    the device profile's choice (``DeviceProfile.auto_group_work_items``)."""
    from .profiles import profile_for_device
    limit = profile_for_device(device).auto_group_work_items
    if device.max_work_group_size:
        limit = min(limit, device.max_work_group_size)
    group = 1
    while group * 2 * simd <= limit and grid0 % (group * 2) == 0:
        group *= 2
    return group


def _dims(kernel_name, what, value):
    if isinstance(value, launch_config.group):
        return value.dims
    return launch_config.sizes(value, what, f"{kernel_name}()")
