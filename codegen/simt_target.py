"""Target ``spirv``: portable SIMT SPIR-V, one CM thread = one sub-group of ``simd`` lanes
(lowering: ``simt.py``; LLVM -> SPIR-V with LLVM's own backend: ``spirv.py``)."""
from __future__ import annotations

from .target import Target


class SimtTarget(Target):
    name = "spirv"
    description = "SIMT SPIR-V: a CM thread is one sub-group (Intel sub-group extensions)"

    def lanes_per_thread(self, simd: int) -> int:
        return simd

    def lower(self, fn, profile) -> str:
        from . import simt, spirv
        return simt.lower_function(fn, spirv.data_layout(), profile)

    def emit(self, llvm_ir, profile, opt_level=2, kernel="?"):
        from . import block2d, spirv, systolic
        allowed = systolic.allowed_imports(profile) | block2d.allowed_imports(profile)
        return spirv.llvm_to_spirv(llvm_ir, opt_level, allowed, kernel=kernel)

    def validate(self, binary):
        from . import spirv
        spirv.validate(binary)
