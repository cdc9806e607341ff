"""cmlang.codegen: IR -> LLVM IR -> SPIR-V.

``compile_function(fn, target="spirv")`` lowers a kernel for the SIMT target (a CM thread
is one sub-group; ``simt.py``), optimizes it and emits SPIR-V with LLVM's spirv64 backend
(``spirv.py``). The vector-compute target ``spirv-vc`` (a CM thread is one work-item) is
lowered by ``vc.py`` and translated by ``vc_translate.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

from cmlang.errors import CompileError


@dataclass(frozen=True)
class CodegenResult:
    llvm_ir: str          # the optimized LLVM IR text that was turned into SPIR-V
    spirv: bytes
    kernel_name: str
    extensions: tuple     # SPIR-V extensions the module declares


TARGETS = ("spirv", "spirv-vc")


def compile_function(fn, target: str = "spirv", opt_level: int = 2) -> CodegenResult:
    """Compile one IR kernel function to SPIR-V for ``target``."""
    from . import simt, spirv

    if target == "spirv-vc":
        from . import vc, vc_translate
        text = vc.lower_function(fn)
        binary = vc_translate.llvm_to_spirv_vc(text)
        validate = vc_translate.validate
    elif target == "spirv":
        text, binary = spirv.llvm_to_spirv(simt.lower_function(fn, spirv.data_layout()), opt_level)
        validate = spirv.validate
    else:
        raise CompileError(f"unknown target {target!r} (known: {', '.join(TARGETS)})")
    # Every module is checked here, where it is made: an invalid one is a compile error
    # naming the kernel, not a driver's link failure (or worse) at launch.
    try:
        validate(binary)
    except CompileError as e:
        raise CompileError(f"kernel '{fn.name}' compiled to an invalid {target} module "
                           f"(a code generator bug): {e.message}") from None
    return CodegenResult(text, binary, fn.name, spirv.extensions(binary))
