"""Target ``spirv-vc``: vector-compute SPIR-V for Intel's vISA path (as CM and ESIMD use),
one CM thread = one work-item (lowering: ``vc.py``; SPIR-V by the Khronos translator:
``vc_translate.py``)."""
from __future__ import annotations

from .target import Target


class VectorComputeTarget(Target):
    name = "spirv-vc"
    description = "vector-compute SPIR-V (SPV_INTEL_vector_compute): a CM thread is one work-item"

    def lanes_per_thread(self, simd: int) -> int:
        return 1

    def build_options(self, profile) -> str:
        return "-vc-codegen"      # Intel's drivers build such modules with their VC compiler

    def lower(self, fn, profile) -> str:
        from . import vc
        return vc.lower_function(fn, profile)

    def emit(self, llvm_ir, profile, opt_level=2, kernel="?"):
        from . import vc_translate
        return llvm_ir, vc_translate.llvm_to_spirv_vc(llvm_ir, kernel)

    def validate(self, binary):
        from . import vc_translate
        vc_translate.validate(binary)
