"""cmlang IR -> LLVM IR for the vector-compute target ``spirv-vc`` (Intel's vISA path).

Here a CM thread is ONE work-item, as in real C-for-Metal: a register ``vector<T, N>`` /
``matrix<T, R, C>`` is one LLVM vector ``<N x T>`` (matrices flattened row-major; a
1-element register is a plain scalar, since SPIR-V has no 1-component vectors), and the
operations the vISA backend knows are ``llvm.genx.*`` intrinsics (names and signatures:
intel/vc-intrinsics, ``Intrinsic_definitions.py``). ``vc_translate`` turns the module into
SPIR-V with the Khronos translator. Launch ABI and the reasons behind the choices below:
docs/design.md, section "spirv-vc target".

This module holds the kernel skeleton, construction, element-wise ops (the semantics are
``elementwise.py``'s, shared with the SIMT lowering; ``GenxMath`` below is the genx part),
ids and control flow hooks; ``vc_regions.py`` (regions, iselect, format, reduce),
``vc_dpas.py`` (dpas) and ``vc_memory.py`` (SVM and SLM messages, atomics, barrier) add the
other ops (mixins);
``vc_intrinsics.py`` has the register types and the ``llvm.genx.*`` declarations.

====================================  ==========================================================
op                                    lowering
====================================  ==========================================================
element-wise add sub mul div rem ...  ``elementwise.py`` on whole registers: LLVM vector
and or xor shl shr neg not cmp        instructions (``fadd <N x float>``, ``icmp``, ``select``,
select convert                        ``sitofp``...), constants splatted; integer div/rem guard
                                      x/0 where the profile says (``guard_int_division``: the
                                      CPU profile, whose module the host emulator runs);
                                      float->int with sat: ``llvm.genx.fpto[su]i.sat`` always
min max abs                           ``llvm.genx.{f,s,u}{min,max}``, ``llvm.genx.abs{f,i}``
exp exp2 log log2 sin cos pow         ``llvm.genx.exp/log/sin/cos/pow`` (native precision; exp and
                                      log scale by log2(e) / ln 2, in f32 for f16); tanh from
                                      ``genx.exp`` (an odd polynomial for |x| < 1/8); f64:
                                      CompileError
rndd rndu rnde rndz (frc = x - rndd)  ``llvm.genx.rndd/rndu/rnde/rndz``
cbit fbl fbh lzd                      ``llvm.genx.cbit/fbl/sfbh/ufbh/lzd``
sqrt rsqrt inv floor ceil             OpenCL ``sqrt`` for f32, else ``llvm.genx.(ieee.)sqrt``
                                      (+ ``fdiv``), ``fdiv``,
                                      ``llvm.genx.rndd`` / ``llvm.genx.rndu``
fma (float)                           OpenCL ``fma`` (OpExtInst) on pieces of <= 16 elements
const splat build                     vector constants, insertelement + shufflevector splat
rdregion / wrregion                   ``llvm.genx.rdregion{i,f}`` / ``llvm.genx.wrregion{i,f}``, 1:1
                                      (byte offsets; dynamic offset = i16 operand)
extract / insert                      ``extractelement`` / ``insertelement``
iselect                               shufflevector (constant indices) or ``rdregion`` with a
                                      vector of i16 byte offsets (one row per element)
reduce                                tree of ``rdregion`` halves; bool any/all:
                                      ``llvm.genx.any`` / ``llvm.genx.all``
dpas (f16/bf16, i8/u8, tf32 when      ``llvm.genx.dpas2`` per (<=8) x E x 8-dword tile (B packed to
asked; the profile's unit)            VNNI with wrregion; ``vc_dpas.py``)
dpas (otherwise)                      broadcast-FMA in f32 (integers: i32 multiply-adds); from
                                      the profile's ``dpas_loop_fmas`` FMAs on, a loop over k
                                      reading b's row k (from memory where b is a 2-D load)
bitcast (format)                      ``bitcast`` through an integer vector of the element width
load / store (global)                 ``llvm.genx.svm.block.ld.unaligned`` / ``svm.block.st`` on
                                      16..128-byte pieces where aligned, ``svm.gather`` /
                                      ``svm.scatter`` (8/16 lanes, predicated) for the rest
load2d / store2d                      one contiguous access per row
block_load2d / block_store2d          predicated svm gathers / scatters; on PVC LSC 2-D block
                                      messages where shape and surface allow (``vc_block2d.py``)
gather / scatter (global)             ``llvm.genx.svm.gather`` / ``llvm.genx.svm.scatter``
atomic (global)                       ``llvm.genx.svm.atomic.*`` (<= 8 lanes); float add/sub: a
                                      ``svm.atomic.cmpxchg`` retry loop
slm + memory ops on it                SLM byte offsets (``VCSLMSize``); ``llvm.genx.gather.scaled``,
                                      ``scatter.scaled``, ``dword.atomic.*`` on surface 254
barrier / fence                       ``llvm.genx.fence`` (global + SLM) then ``llvm.genx.barrier``
thread_id group_id local_id           group*size+local, ``llvm.genx.group.id.{x,y,z}``,
local_size group_count                ``llvm.genx.local.id/local.size/group.count.v3i32``
for / if / while                      branches and phis (scalar control flow of one thread)
print                                 CompileError: not supported on spirv-vc yet
====================================  ==========================================================
"""
from __future__ import annotations

from llvmlite import ir

from cmlang.errors import CompileError
from cmlang.ir.core import Function
from cmlang.passes import induction_loops
from cmlang.types import PtrType, ScalarType, VectorType, f32
from . import elementwise as ew
from .elementwise import constant, lanes_of, scalar_of
from .llvm_builtins import FLOAT, I32, I64, VOID, GLOBAL, memory_type
from .control_flow import StructuredControlFlow
from .vc_builder import VCBuilder
from .vc_intrinsics import Genx, reg_type, size_of, undef
from .vc_memory import Pointer, VCMemoryLowering
from .vc_regions import VCRegionLowering
from .vc_dpas import VCDpasLowering, plan_rows_left_in_memory
from .vc_block2d import VCBlock2DLowering
from .operand_plan import vnni_block_loads

TRIPLE = "spir64-unknown-unknown"
DATA_LAYOUT = "e-i64:64-v16:16-v24:32-v32:32-v48:64-v96:128-v192:256-v256:256-v512:512-v1024:1024-n8:16:32:64"
OPENCL_WIDTHS = (16, 8, 4, 2, 1)  # vector widths the VC builtin library implements
LOG2E, LN2 = 1.4426950408889634, 0.6931471805599453


def lower_function(fn: Function, profile=None) -> str:
    """The LLVM IR text of ``fn`` as a vector-compute kernel (unoptimized) for a device
    profile (``cmlang.runtime.profiles``; default: the CPU runtime's)."""
    return VCLowering(fn, profile).run()


# --- element-wise math: the target's part of elementwise.py ---------------------------------

class GenxMath(ew.TargetMath):
    """spirv-vc: ``llvm.genx.*`` intrinsics (native precision), OpenCL ``fma`` in pieces the
    VC builtin library has. Its code is compiled by the vector-compute backend and never
    reaches the CPU runtime's vectorizer, so saturation is always the hardware's
    (``via_cpu_runtime`` is False); the division guard follows the profile (on the CPU
    profile it stays: that module is what the host emulator of the tests runs, where x / 0
    traps)."""

    def __init__(self, lowering, profile):
        super().__init__(profile)
        self.lowering = lowering
        self.genx = lowering.genx

    def _same_type(self, b, name, *args):
        ty = args[0].type
        return self.genx(b, name, ty, list(args), [ty] * len(args))

    def float_min_max(self, b, opcode, x, y):       # hardware min/max return the non-NaN operand
        return self._same_type(b, "f" + opcode, x, y)

    def int_min_max(self, b, opcode, signed, x, y):
        return self._same_type(b, ("s" if signed else "u") + opcode, x, y)

    def float_abs(self, b, x):
        return self.genx(b, "absf", x.type, [x], [x.type])

    def int_abs(self, b, x):
        return self.genx(b, "absi", x.type, [x], [x.type])

    def fma(self, b, x, y, z):
        return self.opencl_pieces(b, "fma", [x, y, z])

    def float_to_int_sat(self, b, x, dty, signed):
        return self.genx(b, "fptosi.sat" if signed else "fptoui.sat", dty, [x], [dty, x.type])

    def round(self, b, mode, x):
        return self.genx(b, mode, x.type, [x], [x.type])        # llvm.genx.rndd/rndu/rnde/rndz

    def bit_scan(self, b, opcode, signed, x):
        """llvm.genx.cbit / fbl / sfbh / ufbh / lzd: the vISA instructions CM's own
        cm_cbit/cm_fbl/cm_fbh/cm_lzd become, with CM's answers for 0 built in."""
        name = ("sfbh" if signed else "ufbh") if opcode == "fbh" else opcode
        return self.genx(b, name, x.type, [x], [x.type, x.type])

    def sqrt(self, b, elem, x):
        ty = x.type
        if elem.name == "f32":
            # OpenCL sqrt from IGC's VC library: IEEE where the device has the macro (PVC),
            # native elsewhere. llvm.genx.ieee.sqrt on f32 makes IGC 1.0.12504 fail for DG2/TGL
            # ("VISA builder API call failed").
            return self.opencl_pieces(b, "sqrt", [x])
        return self.genx(b, "sqrt" if elem.name == "f16" else "ieee.sqrt", ty, [x], [ty])

    def math(self, b, opcode, elem, *args):
        g, x = self.genx, args[0]
        ty = x.type
        if opcode in ("sqrt", "rsqrt"):
            root = self.sqrt(b, elem, x)
            return root if opcode == "sqrt" else b.fdiv(constant(ty, 1.0), root)
        if opcode in ("floor", "ceil"):
            return g(b, "rndd" if opcode == "floor" else "rndu", ty, [x], [ty])
        if elem.name == "f64":
            self.lowering.unsupported(f"op {opcode} on f64")
        if opcode == "pow":
            return g(b, "pow", ty, list(args), [ty])
        if elem.name == "f16" and opcode in ("exp", "log", "tanh"):
            # these scale by log2(e) / ln 2 around the native exp2/log2: in half precision the
            # rounded x * log2(e) carries |x| half-ulps into the result (exp(-9): 6 ulp off)
            wide = ir.VectorType(FLOAT, ty.count) if isinstance(ty, ir.VectorType) else FLOAT
            return b.fptrunc(self.math(b, opcode, f32, b.fpext(x, wide)), ty)
        if opcode == "exp":
            return g(b, "exp", ty, [b.fmul(x, constant(ty, LOG2E))], [ty])
        if opcode == "exp2":
            return g(b, "exp", ty, [x], [ty])
        if opcode == "log":
            return b.fmul(g(b, "log", ty, [x], [ty]), constant(ty, LN2))
        if opcode == "log2":
            return g(b, "log", ty, [x], [ty])
        if opcode in ("sin", "cos"):
            return g(b, opcode, ty, [x], [ty])
        if opcode == "tanh":
            return self._tanh(b, x)
        raise CompileError(f"'{opcode}' is not defined on floating-point values")

    def _tanh(self, b, x):
        """tanh(x) = sign(x) (1 - e) / (1 + e) with e = exp(-2|x|); an odd polynomial near 0,
        where 1 - e would cancel."""
        ty = x.type
        ax = self.float_abs(b, x)
        e = self.genx(b, "exp", ty, [b.fmul(ax, constant(ty, -2 * LOG2E))], [ty])
        t = b.fdiv(b.fsub(constant(ty, 1.0), e), b.fadd(constant(ty, 1.0), e))
        signed = b.select(b.fcmp_ordered("<", x, constant(ty, 0.0)), b.fneg(t), t)
        x2 = b.fmul(x, x)
        poly = constant(ty, -17 / 315)
        for c in (2 / 15, -1 / 3, 1.0):        # x (1 - x^2/3 + 2x^4/15 - 17x^6/315)
            poly = b.fadd(b.fmul(poly, x2), constant(ty, c))
        return b.select(b.fcmp_ordered("<", ax, constant(ty, 0.125)), b.fmul(x, poly), signed)

    def opencl_pieces(self, b, name, args):
        """An OpenCL builtin applied to vectors of any width, in pieces the VC library has."""
        n = lanes_of(args[0].type)
        if n in OPENCL_WIDTHS:
            return self.genx.opencl(b, name, args[0].type, args)
        low = self.lowering
        pieces, pos = [], 0
        while pos < n:
            w = next(w for w in OPENCL_WIDTHS if w <= n - pos)
            part = [low.piece(a, pos, w) for a in args]
            pieces.append((self.genx.opencl(b, name, part[0].type, part), w))
            pos += w
        return low.concat(pieces, scalar_of(args[0].type))


# --- the lowering -------------------------------------------------------------------------

class VCLowering(VCRegionLowering, VCDpasLowering, VCMemoryLowering, VCBlock2DLowering,
                 StructuredControlFlow):
    def __init__(self, fn: Function, profile=None):
        from cmlang.runtime.profiles import get_profile, DEFAULT_PROFILE
        self.fn = fn
        self.profile = get_profile(profile or DEFAULT_PROFILE)
        self.module = ir.Module(name=fn.name)
        self.module.triple = TRIPLE
        self.module.data_layout = DATA_LAYOUT
        self.genx = Genx(self.module)
        self.math = GenxMath(self, self.profile)      # element-wise math (elementwise.py)
        self.values = {}
        self.slm_bytes = 0
        self._ids = {}
        self.iv_loops = induction_loops(fn)
        # 2-D loads that a dpas loop reads row by row (vc_dpas.py; the profile's dpas_loop_fmas)
        self.rows_left_in_memory = plan_rows_left_in_memory(fn, self.profile)
        # 2-D loads a dpas on the unit reads as its b with VNNI-transforming messages (vc_block2d.py)
        systolic = self.profile.systolic
        self.vnni_loads = vnni_block_loads(fn, self.profile, systolic.exec_size if systolic else 0)

    # ------------------------------------------------------------------ kernel skeleton
    def run(self) -> str:
        fn = self.fn
        kernel = ir.Function(self.module, ir.FunctionType(VOID, [a for p in fn.params for a in self._param_types(p.type)]),
                             fn.name)
        kernel.calling_convention = "spir_kernel"
        # SIMD1: one work-item per hardware thread (IGC's reader turns this into "oclrt"="1").
        kernel.set_metadata("intel_reqd_sub_group_size", self.module.add_metadata([ir.Constant(I32, 1)]))
        self.kernel = kernel
        entry = kernel.append_basic_block("entry")
        body = kernel.append_basic_block("body")
        self.prologue = ir.IRBuilder(entry)
        jump = self.prologue.branch(body)
        self.prologue.position_before(jump)
        args = iter(kernel.args)
        for name, param in zip(fn.param_names, fn.params):
            t = param.type
            if isinstance(t, VectorType):
                # one scalar argument per element (the launch ABI), gathered into the register
                elements = []
                for i in range(t.size):
                    arg = next(args)
                    arg.name = f"{name}.{i}"
                    elements.append(ew.from_memory(self.prologue, t.elem, arg))
                v = elements[0] if t.size == 1 else undef(reg_type(t.elem, t.size))
                for i, e in enumerate(elements if t.size > 1 else ()):
                    v = self.prologue.insert_element(v, e, ir.Constant(I32, i))
                self.values[param] = v
                continue
            arg = next(args)
            arg.name = name
            self.values[param] = self._param_value(t, arg)
        self.b = VCBuilder(body, self)
        self.lower_kernel_body()
        # The OpenCL version tells the translator to read OpenCL builtins (fma) as OpExtInst.
        self.module.add_named_metadata("opencl.ocl.version", [ir.Constant(I32, 2), ir.Constant(I32, 0)])
        return self._with_kernel_attributes(str(self.module))

    def _with_kernel_attributes(self, text: str) -> str:
        """llvmlite cannot spell string attributes: add the VC kernel attribute group by hand."""
        attrs = f'"CMGenxMain" "VCFunction" "VCSLMSize"="{self.slm_bytes}" "oclrt"="1"'
        head = f'define spir_kernel void @"{self.fn.name}"('
        start = text.index(head)
        marker = text.index(") !intel_reqd_sub_group_size", start)
        text = text[:marker] + ") #0" + text[marker + 1:]
        return text + f"\nattributes #0 = {{ {attrs} }}\n"

    def _param_types(self, t):
        """The LLVM kernel arguments of one parameter: a register is one scalar argument per
        element (row-major), as on the SIMT target."""
        if isinstance(t, PtrType):
            if t.space != "global":
                raise CompileError(f"kernel parameter of type {t} is not supported")
            return [ir.PointerType(addrspace=GLOBAL)]
        if isinstance(t, ScalarType):
            return [memory_type(t)]
        if isinstance(t, VectorType):
            return [memory_type(t.elem)] * t.size
        raise CompileError(f"kernel parameter of type {t} is not supported")

    def _param_value(self, t, arg):
        pb = self.prologue
        if isinstance(t, PtrType):
            return Pointer("global", pb.ptrtoint(arg, I64), t.elem)
        return ew.from_memory(pb, t, arg)

    # ------------------------------------------------------------------ blocks and ops
    # lower_kernel_body / lower_block / lower_op / operands: control_flow.StructuredControlFlow.
    def _unsupported_op_message(self, op) -> str:
        return f"op {op.opcode} is not supported on spirv-vc yet"

    def unsupported(self, what):
        raise CompileError(f"{what} is not supported on spirv-vc yet")

    # ------------------------------------------------------------------ construction
    def op_const(self, op):
        t = op.result.type
        value = op.attrs["value"]
        values = list(value) if isinstance(value, (tuple, list)) else [value] * size_of(t)
        if len(values) != size_of(t):
            raise CompileError(f"constant has {len(values)} values for {t}")
        elem = t.elem
        items = [ew.const(elem, v) for v in values]
        return items[0] if len(items) == 1 else ir.Constant(ir.VectorType(items[0].type, len(items)), items)

    def op_splat(self, op):
        return self.splat(self.get(op.operands[0]), size_of(op.result.type))

    def op_build(self, op):
        scalars = self.operands(op)
        if len(scalars) == 1:
            return scalars[0]
        v = undef(ir.VectorType(scalars[0].type, len(scalars)))
        for i, s in enumerate(scalars):
            v = self.b.insert_element(v, s, ir.Constant(I32, i))
        return v

    # ------------------------------------------------------------------ element-wise (elementwise.py)
    def op_binary(self, op):
        x, y = self.operands(op)
        return ew.binary(self.b, self.math, op.opcode, op.result.type.elem, x, y)

    def op_unary(self, op):
        (x,) = self.operands(op)
        return ew.unary(self.b, self.math, op.opcode, op.result.type.elem, x)

    def op_fma(self, op):
        return ew.fma(self.b, self.math, op.result.type.elem, *self.operands(op))

    def op_cmp(self, op):
        x, y = self.operands(op)
        return ew.compare(self.b, op.attrs["pred"], op.operands[0].type.elem, x, y)

    def op_select(self, op):
        m, x, y = self.operands(op)
        # SPIR-V 1.0 wants a condition vector as wide as the values: splat a scalar mask.
        return self.b.select(self.broadcast_like(m, x.type), x, y)

    def op_convert(self, op):
        src, dst = op.operands[0].type.elem, op.result.type.elem
        (x,) = self.operands(op)
        return ew.convert(self.b, self.math, src, dst, x, bool(op.attrs.get("sat", False)))

    # ------------------------------------------------------------------ ids
    def op_id(self, op):
        return self._id(op.opcode, op.attrs["dim"])

    def _id(self, kind, d):
        """Ids are read once, in the entry block (uniform and loop-invariant)."""
        if (kind, d) not in self._ids:
            self._ids[(kind, d)] = self._query(kind, d)
        return self._ids[(kind, d)]

    def _query(self, kind, d):
        pb, g = self.prologue, self.genx
        if kind == "group_id":
            return g(pb, "group.id." + "xyz"[d], I32, [])
        if kind == "thread_id":     # CM: group id * group size + local id
            return pb.add(pb.mul(self._id("group_id", d), self._id("local_size", d)), self._id("local_id", d))
        name = {"local_id": "local.id", "local_size": "local.size", "group_count": "group.count"}[kind]
        v3 = ir.VectorType(I32, 3)
        return pb.extract_element(g(pb, name, v3, [], [v3]), ir.Constant(I32, d))

    # ------------------------------------------------------------------ control flow
    # op_for / op_while / op_if: control_flow.StructuredControlFlow, through these hooks.
    def _phi_like(self, template):
        """One phi for a vector or scalar; a global ``Pointer`` merges its i64 base, an SLM
        one (a constant byte offset) passes through unchanged."""
        if isinstance(template, Pointer):
            return Pointer(template.space, self.b.phi(I64), template.elem) if template.space == "global" \
                else template
        return self.b.phi(template.type)

    def _add_incoming_value(self, phi_value, value, block):
        if isinstance(phi_value, Pointer):
            if phi_value.space == "global":
                phi_value.base.add_incoming(value.base, block)
        else:
            phi_value.add_incoming(value, block)

    # ------------------------------------------------------------------ debug
    def op_breakpoint(self, op):
        return None

    def op_print(self, op):
        self.unsupported("op print")
