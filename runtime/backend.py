"""The interface between the launcher/arrays and a device backend: ``Device``.

A backend (``opencl_backend.py``, ``dpctl_backend.py``) subclasses it and implements the
operations at the bottom; ``device.py`` lists and selects devices.
"""
from __future__ import annotations


INTEL_VENDOR_ID = 0x8086


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
