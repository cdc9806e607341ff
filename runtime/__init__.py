"""cmlang's runtime: OpenCL ICD registration, devices, device arrays and kernel launch.

Importing this package registers the Intel OpenCL CPU runtime with the ICD loader
(see ``icd.py``); that has to happen before anything imports pyopencl or dpctl and
enumerates platforms, so this module itself imports pyopencl only when first used.
"""
from .icd import register_intel_cpu_runtime

register_intel_cpu_runtime()

from .device import Device, devices, set_device, get_device, synchronize  # noqa: E402
from .arrays import DeviceArray, to_device, empty, zeros  # noqa: E402
from .launcher import launch  # noqa: E402
from .profiling import profile  # noqa: E402

__all__ = [
    "register_intel_cpu_runtime", "Device", "devices", "set_device", "get_device", "synchronize",
    "DeviceArray", "to_device", "empty", "zeros", "launch", "profile",
]
