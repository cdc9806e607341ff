"""LLVM types of vector-compute registers and the ``llvm.genx.*`` declarations (spirv-vc).

A register ``vector<T, N>`` / ``matrix<T, R, C>`` is one LLVM vector ``<N x T>`` (matrices
flattened row-major; a 1-element register is a plain scalar). Intrinsic names and signatures:
intel/vc-intrinsics, ``Intrinsic_definitions.py``.
"""
from __future__ import annotations

from llvmlite import ir

from cmlang.types import ScalarType, VectorType
from .elementwise import scalar_of
from .llvm_builtins import value_type, mangle_code, mangled


# --- LLVM types -----------------------------------------------------------------------------

def reg_type(elem: ScalarType, n: int) -> ir.Type:
    """A register of n elements in registers: a vector, or the scalar when n == 1."""
    t = value_type(elem)
    return ir.VectorType(t, n) if n > 1 else t


def size_of(t) -> int:
    return t.size if isinstance(t, VectorType) else 1


def is_float_ty(ty: ir.Type) -> bool:
    return isinstance(scalar_of(ty), (ir.HalfType, ir.FloatType, ir.DoubleType))


def byte_size(ty: ir.Type) -> int:
    s = scalar_of(ty)
    if isinstance(s, ir.IntType):
        return max(1, s.width // 8)
    return {"half": 2, "float": 4, "double": 8}[str(s)]


def type_suffix(ty: ir.Type) -> str:
    """The overload suffix of an intrinsic name: v16f32, i16, v8i1 ..."""
    if isinstance(ty, ir.VectorType):
        return f"v{ty.count}{type_suffix(ty.element)}"
    if isinstance(ty, ir.IntType):
        return f"i{ty.width}"
    return {"half": "f16", "float": "f32", "double": "f64"}[str(ty)]


def undef(ty: ir.Type):
    return ir.Constant(ty, ir.Undefined)


# --- llvm.genx.* declarations -------------------------------------------------------------

class Genx:
    """Declares ``llvm.genx.*`` intrinsics on first use; the name carries the overloads."""

    def __init__(self, module: ir.Module):
        self.module = module
        self.functions = {}

    def __call__(self, b, name, ret, args, overloads=()):
        full = "llvm.genx." + name + "".join("." + type_suffix(t) for t in overloads)
        fn = self.functions.get(full)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, [a.type for a in args]), full)
            self.functions[full] = fn
        return b.call(fn, list(args))

    def opencl(self, b, name, ret, args):
        """An OpenCL builtin by its mangled name (the translator turns it into OpExtInst)."""
        codes = [self._code(a.type) for a in args]
        if len(set(codes)) == 1 and len(codes) > 1 and isinstance(args[0].type, ir.VectorType):
            codes = [codes[0]] + ["S_"] * (len(codes) - 1)
        full = mangled(name, *codes)
        fn = self.functions.get(full)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, [a.type for a in args]), full)
            fn.calling_convention = "spir_func"
            self.functions[full] = fn
        return b.call(fn, list(args), cconv="spir_func")

    @staticmethod
    def _code(ty):
        if isinstance(ty, ir.VectorType):
            return f"Dv{ty.count}_{mangle_code(ty.element)}"
        return mangle_code(ty)
