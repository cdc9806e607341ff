"""OpenCL / SPIR-V builtins as LLVM declarations, by the names LLVM 22's SPIR-V backend knows.

Every builtin the SIMT lowering calls is declared here, under its Itanium-mangled
OpenCL C name (``_Z23intel_sub_group_shufflefj``) or its SPIR-V-friendly name
(``_Z30__spirv_SubgroupBlockReadINTELPU3AS1Kj``). Each one was checked to lower to a
SPIR-V instruction, not to an imported function; ``codegen.spirv`` rejects any module
that still imports one (an unknown name compiles silently and only fails in the driver).

Legality rules kept here so the lowering need not think about them:
- Shuffles and broadcasts move 32- or 64-bit values only (what every Intel GPU and the
  CPU runtime accept without the char/short/half sub-group extensions); narrower values
  are widened to i32 around the call.
- Sub-group reductions use the core OpGroup* instructions for add/min/max on 32/64-bit
  types; the lowering builds mul/and/or from shuffle_xor butterflies.
"""
from __future__ import annotations

from llvmlite import ir

from cmlang.types import ScalarType

I1 = ir.IntType(1)
I8 = ir.IntType(8)
I16 = ir.IntType(16)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
HALF = ir.HalfType()
FLOAT = ir.FloatType()
DOUBLE = ir.DoubleType()
VOID = ir.VoidType()

GLOBAL, CONSTANT, LOCAL = 1, 2, 3   # OpenCL address spaces as the SPIR-V target numbers them


def ptr_type(space: int = GLOBAL) -> ir.PointerType:
    return ir.PointerType(addrspace=space)


# --- cmlang scalar types -> LLVM types ---------------------------------------------

_INT_TYPES = {8: I8, 16: I16, 32: I32, 64: I64}


def value_type(t: ScalarType) -> ir.Type:
    """The LLVM type a value of ``t`` has in registers: bool is i1, bf16 computes as float."""
    if t.is_bool:
        return I1
    if t.is_float:
        return {"f16": HALF, "bf16": FLOAT, "f32": FLOAT, "f64": DOUBLE}[t.name]
    return _INT_TYPES[t.bits]


def memory_type(t: ScalarType) -> ir.Type:
    """The LLVM type of ``t`` in memory and as a kernel argument: bool is i8, bf16 is i16."""
    if t.is_bool:
        return I8
    if t.name == "bf16":
        return I16
    return value_type(t)


def is_float_type(ty: ir.Type) -> bool:
    return isinstance(ty, (ir.HalfType, ir.FloatType, ir.DoubleType))


# Itanium codes of OpenCL C scalar types (signedness only matters for min/max reductions).
_MANGLE = {("f", 16): "Dh", ("f", 32): "f", ("f", 64): "d",
           ("i", 8): "c", ("i", 16): "s", ("i", 32): "i", ("i", 64): "l",
           ("u", 8): "h", ("u", 16): "t", ("u", 32): "j", ("u", 64): "m"}


def mangle_code(ty: ir.Type, signed: bool = False) -> str:
    if isinstance(ty, ir.HalfType):
        return "Dh"
    if isinstance(ty, ir.FloatType):
        return "f"
    if isinstance(ty, ir.DoubleType):
        return "d"
    return _MANGLE[("i" if signed else "u", ty.width)]


def mangled(name: str, *codes: str) -> str:
    return f"_Z{len(name)}{name}{''.join(codes)}"


# OpenCL math builtins by IR opcode (unary ones take one argument, the rest two).
MATH_BUILTINS = {
    "exp": "exp", "exp2": "exp2", "log": "log", "log2": "log2", "sqrt": "sqrt",
    "rsqrt": "rsqrt", "sin": "sin", "cos": "cos", "tanh": "tanh", "floor": "floor",
    "ceil": "ceil", "pow": "pow", "trunc": "trunc", "rint": "rint",
    "popcount": "popcount", "clz": "clz", "ctz": "ctz",
}

PURE = ("nounwind", "readnone")
CONVERGENT_PURE = ("convergent", "nounwind", "readnone")


class Builtins:
    """Declares builtins in one LLVM module on first use and emits calls to them."""

    def __init__(self, module: ir.Module):
        self.module = module
        self._functions = {}

    def function(self, name: str, ret: ir.Type, args, attrs=PURE, var_arg=False) -> ir.Function:
        fn = self._functions.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, list(args), var_arg=var_arg), name)
            if not name.startswith("llvm."):
                fn.calling_convention = "spir_func"
            for a in attrs:
                fn.attributes.add(a)
            self._functions[name] = fn
        return fn

    def call(self, b: ir.IRBuilder, name: str, ret: ir.Type, args, attrs=PURE):
        fn = self.function(name, ret, [a.type for a in args], attrs)
        return b.call(fn, args, cconv=fn.calling_convention or None)

    # --- work-item ids ---------------------------------------------------------------
    def work_item_query(self, b, query: str, dim: int):
        """get_global_id / get_local_id / get_group_id / get_num_groups / get_local_size (i64)."""
        return self.call(b, mangled(query, "j"), I64, [ir.Constant(I32, dim)])

    def sub_group_local_id(self, b):
        return self.call(b, mangled("get_sub_group_local_id", "v"), I32, [])

    # --- cross-lane ------------------------------------------------------------------
    def _widened(self, b, x, fn):
        """Apply ``fn`` to ``x`` moved through a 32-bit integer when it is narrower."""
        ty = x.type
        if isinstance(ty, ir.IntType) and ty.width < 32:
            return b.trunc(fn(b.zext(x, I32)), ty)
        if isinstance(ty, ir.HalfType):
            return b.bitcast(b.trunc(fn(b.zext(b.bitcast(x, I16), I32)), I16), HALF)
        return fn(x)

    def shuffle(self, b, x, lane):
        """This lane gets ``x`` of lane ``lane`` (an i32, any value per lane)."""
        return self._widened(b, x, lambda v: self.call(
            b, mangled("intel_sub_group_shuffle", mangle_code(v.type), "j"), v.type,
            [v, lane], CONVERGENT_PURE))

    def shuffle_xor(self, b, x, mask: int):
        return self._widened(b, x, lambda v: self.call(
            b, mangled("intel_sub_group_shuffle_xor", mangle_code(v.type), "j"), v.type,
            [v, ir.Constant(I32, mask)], CONVERGENT_PURE))

    def broadcast(self, b, x, lane):
        """Every lane gets ``x`` of lane ``lane`` (an int or a uniform i32 value)."""
        if isinstance(lane, int):
            lane = ir.Constant(I32, lane)
        return self._widened(b, x, lambda v: self.call(
            b, mangled("sub_group_broadcast", mangle_code(v.type), "j"), v.type,
            [v, lane], CONVERGENT_PURE))

    def group_reduce(self, b, kind: str, x, signed: bool):
        """sub_group_reduce_{add,min,max} of a 32/64-bit int or a float/double."""
        return self.call(b, mangled(f"sub_group_reduce_{kind}", mangle_code(x.type, signed)),
                         x.type, [x], CONVERGENT_PURE)

    def any_all(self, b, which: str, flag):
        """sub_group_any / sub_group_all of an i1, as an i1."""
        r = self.call(b, mangled(f"sub_group_{which}", "i"), I32, [b.zext(flag, I32)],
                      CONVERGENT_PURE)
        return b.icmp_unsigned("!=", r, ir.Constant(I32, 0))

    # --- sub-group block memory access (only 32-bit and 16-bit elements) -------------
    def block_read(self, b, ptr, ty):
        """A sub-group block read of ``ty``: i32/i16 (a slot), or a vector of 2, 4 or 8 of them
        (as many slots, the spelling of OpenCL's block_read2/4/8).  The vector forms carry
        their result type as a template argument, so one module can declare both."""
        elem = ty.element if isinstance(ty, ir.VectorType) else ty
        code = {32: "j", 16: "t"}[elem.width]
        space = ptr.type.addrspace
        result = f"IDv{ty.count}_{code}ET_" if isinstance(ty, ir.VectorType) else ""
        name = f"_Z30__spirv_SubgroupBlockReadINTEL{result}PU3AS{space}K{code}"
        return self.call(b, name, ty, [ptr], ("convergent", "nounwind", "readonly"))

    def block_write(self, b, ptr, value):
        code = {32: "jj", 16: "tt"}[value.type.width]
        space = ptr.type.addrspace
        name = f"_Z31__spirv_SubgroupBlockWriteINTELPU3AS{space}{code}"
        return self.call(b, name, VOID, [ptr, value], ("convergent", "nounwind"))

    # --- atomics ----------------------------------------------------------------------
    def atomic_cmpxchg(self, b, ptr, expected, desired, scope: int):
        """Old value of an atomic compare-exchange (relaxed, at ``scope``) on a 32/64-bit int.

        LLVM's ``cmpxchg`` returns an aggregate {T, i1}; after optimization it can end up
        in a phi, which the SPIR-V backend rejects. This builtin returns the old value only."""
        code = {32: "i", 64: "l"}[expected.type.width]
        name = (f"_Z29__spirv_AtomicCompareExchangePU3AS{ptr.type.addrspace}{code}"
                f"iii{code}{code}")
        relaxed = ir.Constant(I32, 0)
        return self.call(b, name, expected.type, [ptr, ir.Constant(I32, scope), relaxed, relaxed,
                                                  desired, expected], ("nounwind",))

    # --- synchronisation -----------------------------------------------------------
    def barrier(self, b):
        """Work-group barrier fencing local and global memory (CLK_LOCAL|CLK_GLOBAL_MEM_FENCE)."""
        self.call(b, mangled("barrier", "j"), VOID, [ir.Constant(I32, 3)], ("convergent", "nounwind"))

    def memory_fence(self, b):
        """OpMemoryBarrier, device scope, acquire-release on workgroup and cross-workgroup memory."""
        device_scope, semantics = 1, 0x8 | 0x100 | 0x200
        self.call(b, mangled("__spirv_MemoryBarrier", "j", "j"), VOID,
                  [ir.Constant(I32, device_scope), ir.Constant(I32, semantics)], ("nounwind",))

    # --- math ---------------------------------------------------------------------
    def math(self, b, op: str, *args):
        ty = args[0].type
        name = mangled(MATH_BUILTINS[op], *[mangle_code(ty)] * len(args))
        return self.call(b, name, ty, list(args))

    def intrinsic(self, b, name: str, ret: ir.Type, *args):
        """An LLVM intrinsic such as ``llvm.fma.f32`` (name given in full)."""
        return self.call(b, name, ret, list(args))

    def printf(self, b, fmt_global, args):
        # The mangled name tells the backend the format is a char pointer (plain "printf"
        # passes the string's array type, which spirv-val rejects).
        fn = self.function("_Z6printfPU3AS2Kcz", I32, [ptr_type(CONSTANT)], ("nounwind",), var_arg=True)
        return b.call(fn, [fmt_global] + list(args), cconv="spir_func")
