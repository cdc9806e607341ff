"""Devices: discovery, the current device, and the backend interface the launcher uses.

A ``Device`` is one accelerator behind one backend.  The launcher and the arrays only
use the small interface below (build a kernel, allocate, copy, launch), so a backend
plugs in by subclassing ``Device`` (``backend.py``) in a module of its own and adding its
enumerator to ``BACKENDS``.  Two exist: ``opencl`` (pyopencl, ``opencl_backend.py``) and
``dpctl`` (SYCL queues: Level Zero, OpenCL; ``dpctl_backend.py``).  This module selects.

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

from cmlang.errors import LaunchError

from .backend import Device  # noqa: F401  (the interface every backend implements)
from .opencl_backend import OpenCLDevice, opencl_devices, required_sub_group_size  # noqa: F401

KINDS = ("cpu", "gpu", "accelerator")
# Backends that SYCL filter strings name; only those in BACKENDS are implemented.
KNOWN_BACKENDS = ("opencl", "level_zero", "cuda", "hip", "host")
_KIND_ALIASES = {"acc": "accelerator"}
DEVICE_ENV = "CMLANG_DEVICE"


# ---------------------------------------------------------------------------
# Discovery

def _dpctl_devices():
    from .dpctl_backend import dpctl_devices
    return dpctl_devices()


# backend name -> function listing its devices; a new backend registers here.
BACKENDS = {"opencl": opencl_devices, "dpctl": _dpctl_devices}

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

