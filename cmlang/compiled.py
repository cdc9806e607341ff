"""One compiled specialization of a kernel (``Kernel.compile``, the disk cache, ``k[grid]``):
its IR, LLVM IR, SPIR-V and launch contract, and IGC's build where one was asked for.
Apart from ``kernel.py`` so that the cache can make one without the front end."""
from __future__ import annotations

from dataclasses import dataclass

from .errors import CompileError, USER_ERRORS, trimmed
from .runtime import launch_config
from .runtime.launcher import launch as launch_binary
from .runtime.profiles import DEFAULT_PROFILE


@dataclass
class CompiledKernel:
    """One specialization of a kernel for one target: its IR, LLVM IR and SPIR-V."""
    kernel: object          # the cmlang.kernel.Kernel it specializes
    function: object        # cmlang.ir.Function
    binary: object          # cmlang.runtime.binary.KernelBinary
    llvm_ir: str
    target: str
    profile: str = DEFAULT_PROFILE   # the device profile it was compiled for

    @property
    def ir(self) -> str:
        from .ir.printer import print_function
        return print_function(self.function)

    @property
    def spirv(self) -> bytes:
        return self.binary.spirv

    @property
    def spirv_asm(self):
        from cmlang.codegen.spirv import disassemble
        return disassemble(self.spirv)

    def __getitem__(self, config):
        grid, group = launch_config.parse(config, self.binary.name)
        binder = launch_config.Binder(self.binary.name, [p.name for p in self.binary.user_params])

        def launch(*args, **kwargs):
            try:
                return launch_binary(self.binary, grid, group, binder.bind(args, kwargs))
            except USER_ERRORS as e:
                raise trimmed(e)  # noqa: B904
        return launch

    # What Intel's GPU compiler made of it: set by ``compile(..., device=...)``
    # (a cmlang.codegen.intel_gpu.NativeBuild; a class attribute, not a dataclass field).
    native_build = None

    @property
    def native(self) -> bytes:
        """The Intel GPU binary (what clCreateProgramWithBinary takes on that device)."""
        return self._native_build().binary

    @property
    def isa(self) -> str:
        """IGC's assembly listing of the kernel."""
        return self._native_build().isa

    @property
    def stats(self) -> dict:
        """instructions, spill_bytes, grf, dpas, block2d, messages (from IGC's listing)."""
        return dict(self._native_build().stats)

    def _native_build(self):
        if self.native_build is None:
            raise CompileError(f"{self.binary.name}: no Intel GPU build; compile it with "
                               f"device=... (an ocloc -device name such as 'pvc' or 'dg2')")
        return self.native_build
