"""cmlang: explicit-SIMD GPU kernels in Python, in the spirit of Intel's C-for-Metal.

The public surface (see docs/api.md): ``@cm.kernel``, ``@cm.func``, the types, the builtins
used inside kernels, devices and arrays.  Nothing here imports llvmlite: the compiler
is loaded on the first compile.
"""
import os as _os

# In a source checkout, codegen/, runtime/ and examples/ sit beside cmlang/ and are
# installed as cmlang.codegen / cmlang.runtime / cmlang.examples; let the checkout
# resolve the same names.
_here = _os.path.dirname(_os.path.abspath(__file__))
_root = _os.path.dirname(_here)
if not _os.path.isdir(_os.path.join(_here, "codegen")) and _os.path.isfile(
        _os.path.join(_root, "codegen", "__init__.py")):
    __path__.append(_root)  # noqa: F821  (the package's own search path)

# The runtime registers the Intel OpenCL CPU runtime with the ICD loader on import:
# it must come before anything loads pyopencl or dpctl.
from . import runtime  # noqa: E402,F401
from .types import (  # noqa: E402,F401
    i8, i16, i32, i64, u8, u16, u32, u64, f16, bf16, f32, f64, bool_,
    vector, matrix, ptr, constexpr,
)
from .errors import CompileError, LaunchError, KernelRuntimeError  # noqa: E402,F401
from .language import *  # noqa: E402,F401,F403  (the builtins: cm.load, cm.exp, ...)
from .language import func  # noqa: E402,F401
from .kernel import kernel, Kernel, CompiledKernel  # noqa: E402,F401
from . import limits  # noqa: E402,F401  (the budgets; see docs/api.md "Errors")
from .autotuning import autotune, AutotuneWarning  # noqa: E402,F401
from .runtime.launch_config import group  # noqa: E402,F401  (k[grid, cm.group(...)])
from .runtime import (  # noqa: E402,F401
    devices, set_device, get_device, synchronize, to_device, DeviceArray,
)
from .runtime.package import load_package, PackageError  # noqa: E402,F401  (.cmpkg packages)
from .package import build_package  # noqa: E402,F401

__version__ = "0.1.0"
