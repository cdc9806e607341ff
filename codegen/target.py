"""The target interface and the one registry of targets.

A *target* says how a CM thread maps onto one kind of output: how IR lowers to LLVM IR,
how LLVM IR becomes a binary, how many work-items a CM thread is, which build options the
driver needs.  What differs between *devices* of one target is not here but in the device
profile (``cmlang.runtime.profiles``), which every stage receives.

Adding a target is one module with a ``Target`` subclass plus one line in the registry,
``cmlang.targets`` (which stays importable without the compiler).
"""
from __future__ import annotations

from dataclasses import dataclass

from cmlang.errors import CompileError


@dataclass(frozen=True)
class CodegenResult:
    llvm_ir: str            # the (optimized) LLVM IR text the binary was made from
    spirv: bytes
    kernel_name: str
    extensions: tuple       # SPIR-V extensions the module declares
    target: str = "spirv"
    lanes_per_thread: int = 0     # work-items per CM thread (what the launcher multiplies by)
    build_options: str = ""       # what the driver's build of this binary needs


class Target:
    """One code generator.  Subclasses set ``name`` and implement ``lower`` and ``emit``."""
    name: str = ""
    description: str = ""

    def lanes_per_thread(self, simd: int) -> int:
        """Work-items that make one CM thread."""
        raise NotImplementedError

    def build_options(self, profile) -> str:
        """Options for the driver's (or Intel's offline compiler's) build of the binary."""
        return ""

    def lower(self, fn, profile) -> str:
        """IR function -> LLVM IR text."""
        raise NotImplementedError

    def emit(self, llvm_ir: str, profile, opt_level: int = 2, kernel: str = "?") -> tuple:
        """LLVM IR text -> (final LLVM IR text, binary bytes); ``kernel`` names it in errors."""
        raise NotImplementedError

    def validate(self, binary: bytes) -> None:
        """Raise CompileError if ``binary`` is not a valid module of this target."""
        raise NotImplementedError

    def extensions(self, binary: bytes) -> tuple:
        from .spirv import extensions
        return extensions(binary)

    def compile(self, fn, profile, opt_level: int = 2) -> CodegenResult:
        text = self.lower(fn, profile)
        final, binary = self.emit(text, profile, opt_level, kernel=fn.name)
        # Every module is checked where it is made: an invalid one is a compile error naming
        # the kernel, not a driver's link failure (or worse) at launch.
        try:
            self.validate(binary)
        except CompileError as e:
            raise CompileError(f"kernel '{fn.name}' compiled to an invalid {self.name} module "
                               f"(a code generator bug): {e.message}") from None
        return CodegenResult(final, binary, fn.name, self.extensions(binary), self.name,
                             self.lanes_per_thread(fn.simd), self.build_options(profile))

    def __repr__(self):
        return f"<cmlang target {self.name}>"
