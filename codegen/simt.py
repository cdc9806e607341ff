"""cmlang IR -> LLVM IR for the SIMT target: one CM thread is one sub-group of ``simd`` lanes.

Execution model and launch ABI: docs/design.md. Values are lowered as:

- scalar  -> one LLVM value, the same in every lane (uniform);
- pointer -> ``ptr addrspace(1)`` (kernel argument) or ``ptr addrspace(3)`` (SLM);
- register of N elements -> ``Reg``: K = ceil(N / simd) LLVM values ("slots"); element e
  is lane e % simd of slot e // simd (``codegen.layout``).

This module holds the kernel skeleton, construction, element-wise ops, ids and print;
``regions.py``, ``memory.py`` and ``control_flow.py`` (block walking, for/while/if) add
the other ops (mixins). How each op maps onto sub-group operations:

==========================================  ================================================
op / case                                   lowering
==========================================  ================================================
element-wise, const, splat, convert         per slot (``elementwise.py``), no lane
                                            communication (constants: lane formulas or an
                                            addrspace(2) table)
rdregion / wrregion / iselect (static)      ``layout.permute``: moves, broadcasts, shuffles
rdregion / wrregion / iselect (dynamic)     shuffle by idx % simd per source slot + select
bitcast between element sizes               static permutation + per-lane shifts
extract                                     ``sub_group_broadcast`` (dynamic: slot select first)
insert, build                               per-lane selects
reduce (all)                                lane-local tree over slots, then
                                            ``sub_group_reduce_add/min/max``, ``sub_group_any/all``
                                            or a ``shuffle_xor`` butterfly (mul/and/or)
reduce axis=0, C % simd == 0                lane-local only
reduce axis=0/1, C divides simd             lane-local + ``shuffle_xor`` butterfly (segments)
dpas, f16/bf16, profile with a systolic      Intel sub-group matrix builtins (``systolic.py``)
unit
dpas, N % simd == 0                         a[m,k] broadcast + one fma per slot of b's row
dpas, >= 256 slot FMAs, b a 2-D load        the profile's ``dpas_loop_fmas``: a loop over
                                            k that loads b's row k where it is used (no
                                            K-fold unrolled body); a a 2-D load too: a[m,k]
                                            is one uniform scalar load
load / store, full slots                    sub-group block read/write (32-bit; 16-bit too
                                            except on the cpu profile: ``no_16bit_block_io``;
                                            aligned), else per-lane contiguous access
load / store, partial slot                  clamped index / store under ``lane < rem``
store of a scalar                           every lane stores the same value (no branch)
block_load2d/store2d (cm.load_2d ...)       per-lane bounds-checked accesses; PVC: 2-D block
                                            read messages (``block2d.py``)
load2d / store2d, gather / scatter          per-lane addresses (masked lanes branch around)
atomic                                      per-lane ``atomicrmw`` / ``cmpxchg``; scalar
                                            offset: lane 0 only, result broadcast
barrier / fence                             ``barrier(CLK_LOCAL|GLOBAL)`` / OpMemoryBarrier
for with a computed bound or step,          cpu profile (``cpu.broadcast_loop_bounds``):
while with a scalar min/max/abs condition   bound/step (condition) ``sub_group_broadcast``
                                            from lane 0 (visibly uniform to the CPU vectorizer)
while whose condition the loop cannot       cpu profile (``cpu.broadcast_loop_bounds``):
change                                      condition ``sub_group_broadcast`` from lane 0 in
                                            the header: the loop keeps its exit (the CPU
                                            runtime's vectorizer gives up on a kernel with an
                                            exit-less loop and runs it one work-item per
                                            sub-group)
thread_id(0), local_id(0)                   get_*_id(0) / simd (cpu profile,
                                            ``cpu.uniform_ids_from_lane0``: of lane 0)
==========================================  ================================================
"""
from __future__ import annotations

from llvmlite import ir

from cmlang.errors import CompileError
from cmlang.ir.core import Function, Value
from cmlang.passes import induction_loops
from cmlang.types import PtrType, ScalarType, VectorType
from . import elementwise as ew
from .layout import Lanes, Reg, select_lanes, slot_count, element_lanes, fit_affine
from .memory import MemoryLowering
from .control_flow import StructuredControlFlow
from .regions import RegionLowering
from .systolic import SystolicLowering
from .block2d import Block2DLowering
from .operand_plan import rows_left_in_memory, vnni_block_loads
from .llvm_builtins import (I8, I32, I64, VOID, GLOBAL, CONSTANT, Builtins, ptr_type, value_type,
                            memory_type)

TRIPLE = "spirv64-unknown-unknown"


def lower_function(fn: Function, data_layout: str = "", profile=None) -> str:
    """The LLVM IR text of ``fn`` as a SPIR-V kernel (unoptimized) for a device profile
    (``cmlang.runtime.profiles``; default: the CPU runtime's)."""
    return KernelLowering(fn, data_layout, profile).run()


class KernelLowering(RegionLowering, SystolicLowering, Block2DLowering, MemoryLowering,
                     StructuredControlFlow):
    def __init__(self, fn: Function, data_layout: str = "", profile=None):
        from cmlang.runtime.profiles import get_profile, DEFAULT_PROFILE
        self.profile = get_profile(profile or DEFAULT_PROFILE)
        if fn.simd not in (8, 16, 32):
            raise CompileError(f"simd must be 8, 16 or 32 on the SIMT target, not {fn.simd}")
        self.fn = fn
        self.simd = fn.simd
        self.module = ir.Module(name=fn.name)
        self.module.triple = TRIPLE
        self.module.data_layout = data_layout
        self.bi = Builtins(self.module)
        self.math = ew.OpenCLMath(self.bi, self.profile)   # element-wise math (elementwise.py)
        self.values = {}          # cmlang Value -> lowered value
        self._slm_count = 0
        self._string_count = 0
        self._const_tables = {}   # (elem, values) -> addrspace(2) global
        self._ids = {}            # (id op, dim) -> i32 computed in the entry block
        # for-loop induction variables -> their loop (for the alignment of offsets)
        self.iv_loops = induction_loops(fn)
        # 2-D loads that a dpas reads row by row inside its k loop (regions.py; the
        # profile's dpas_loop_fmas)
        self.rows_left_in_memory = rows_left_in_memory(fn, self.simd, self.profile.dpas_loop_fmas)
        # 2-D block loads that a dpas on the systolic unit reads with VNNI messages (block2d.py)
        self.vnni_loads = vnni_block_loads(fn, self.profile, self.simd)

    # ------------------------------------------------------------------ kernel skeleton
    def run(self) -> str:
        fn = self.fn
        arg_types = [a for p in fn.params for a in self._param_types(p.type)]
        kernel = ir.Function(self.module, ir.FunctionType(VOID, arg_types), fn.name)
        kernel.calling_convention = "spir_kernel"
        kernel.attributes.add("nounwind")
        kernel.set_metadata("intel_reqd_sub_group_size",
                            self.module.add_metadata([ir.Constant(I32, self.simd)]))
        self.kernel = kernel
        entry = kernel.append_basic_block("entry")
        body = kernel.append_basic_block("body")
        prologue = ir.IRBuilder(entry)
        jump = prologue.branch(body)
        prologue.position_before(jump)
        self.prologue = prologue
        self.lanes = Lanes(self.simd, self.bi, prologue)
        self.b = prologue           # register parameters are assembled in the entry block
        args = iter(kernel.args)
        for name, param in zip(fn.param_names, fn.params):
            t = param.type
            if isinstance(t, VectorType):
                # one scalar argument per element (the launch ABI), placed in the register layout
                scalars = []
                for i in range(t.size):
                    arg = next(args)
                    arg.name = f"{name}.{i}"
                    scalars.append(ew.from_memory(prologue, t.elem, arg))
                self.values[param] = Reg(t, [self._build_slot(scalars, k)
                                             for k in range(slot_count(t.size, self.simd))])
                continue
            arg = next(args)
            arg.name = name
            self.values[param] = arg if isinstance(t, PtrType) else ew.from_memory(prologue, t, arg)
        self.b = ir.IRBuilder(body)
        self.lower_kernel_body()
        return str(self.module)

    def _param_types(self, t):
        """The LLVM kernel arguments of one parameter: a register is passed by value as one
        scalar argument per element (row-major)."""
        if isinstance(t, PtrType):
            if t.space != "global":
                raise CompileError(f"kernel parameter of type {t} is not supported")
            return [ptr_type(GLOBAL)]
        if isinstance(t, ScalarType):
            return [memory_type(t)]
        if isinstance(t, VectorType):
            return [memory_type(t.elem)] * t.size
        raise CompileError(f"kernel parameter of type {t} is not supported")

    # ------------------------------------------------------------------ blocks and ops
    # lower_kernel_body / lower_block / lower_op / operands: control_flow.StructuredControlFlow.
    def _unsupported_op_message(self, op) -> str:
        return f"op '{op.opcode}' is not supported by the SIMT code generator"

    # ------------------------------------------------------------------ value helpers
    def slots_of(self, x, k: int):
        """The slots of a register, or a uniform scalar repeated k times."""
        return x.slots if isinstance(x, Reg) else [x] * k

    def as_reg(self, x, t):
        """A scalar seen as a 1-element register (its value sits in every lane)."""
        if isinstance(x, Reg):
            return x
        return Reg(VectorType(t, (1,)), [x])

    def map_slots(self, result_type, fn, *operands):
        """Apply ``fn`` per slot (registers) or once (scalars)."""
        if isinstance(result_type, VectorType):
            k = slot_count(result_type.size, self.simd)
            columns = [self.slots_of(x, k) for x in operands]
            return Reg(result_type, [fn(*vals) for vals in zip(*columns)])
        return fn(*operands)

    def uniform_from_lane0(self, x):
        return self.bi.broadcast(self.b, x, 0)

    def _resize_int(self, v, ty):
        if v.type.width < ty.width:
            return self.b.zext(v, ty)
        return self.b.trunc(v, ty) if v.type.width > ty.width else v

    def _i32(self, value: Value):
        return self._to_i32(self.get(value), value.type)

    def _to_i32(self, v, t):
        if v.type.width > 32:
            return self.b.trunc(v, I32)
        if v.type.width < 32:
            return self.b.sext(v, I32) if t.is_signed else self.b.zext(v, I32)
        return v

    def _to_i64(self, v, t):
        if v.type.width == 64:
            return v
        return self.b.sext(v, I64) if t.is_signed else self.b.zext(v, I64)

    # ------------------------------------------------------------------ construction
    def op_const(self, op):
        t = op.result.type
        value = op.attrs["value"]
        if isinstance(t, ScalarType):
            return ew.const(t, value)
        values = list(value) if isinstance(value, (tuple, list)) else [value] * t.size
        if len(values) != t.size:
            raise CompileError(f"constant has {len(values)} values for {t}")
        return Reg(t, [self._const_slot(t.elem, values, k) for k in range(slot_count(t.size, self.simd))])

    def _const_slot(self, elem, values, k):
        lane_values = element_lanes(self.lanes, k, len(values), lambda e: values[e])
        known = [v for v in lane_values if v is not None]
        if all(v == known[0] for v in known):
            return ew.const(elem, known[0])
        if elem.is_bool:
            return self.lanes.mask([None if v is None else bool(v) for v in lane_values])
        if all(float(v).is_integer() and abs(v) < 2 ** 24 for v in known):
            ints = [None if v is None else int(v) for v in lane_values]
            if fit_affine(ints, self.simd) is not None:
                v = self.lanes.int_vector(ints)
                return self._i32_to(elem, v)
        return self._const_table(elem, values, k)

    def _i32_to(self, elem, v):
        ty = value_type(elem)
        if elem.is_float:
            return ew.finish(self.b, elem, self.b.sitofp(v, ty))
        if ty.width < 32:
            return self.b.trunc(v, ty)
        if ty.width > 32:
            return self.b.sext(v, ty)
        return v

    def _const_table(self, elem, values, k):
        """Lane l of slot k reads element k*simd+l of a constant array in addrspace(2)."""
        mty = memory_type(elem)
        key = (elem, tuple(values))
        table = self._const_tables.get(key)
        if table is None:
            arr = ir.ArrayType(mty, slot_count(len(values), self.simd) * self.simd)
            name = f"cm.const.{len(self._const_tables) + 1}"
            table = ir.GlobalVariable(self.module, arr, name, addrspace=CONSTANT)
            table.linkage = "internal"
            table.global_constant = True
            padded = list(values) + [values[-1]] * (arr.count - len(values))
            table.initializer = ir.Constant(arr, [self._memory_const(elem, v) for v in padded])
            self._const_tables[key] = table
        b = self.b
        idx = b.add(self.lanes.id64, ir.Constant(I64, k * self.simd))
        p = b.gep(table, [ir.Constant(I64, 0), idx], inbounds=True, source_etype=table.value_type)
        return ew.from_memory(b, elem, b.load(p, typ=mty))

    def _memory_const(self, elem, v):
        if elem.name == "bf16":
            return ir.Constant(memory_type(elem), ew.bf16_bits_host(float(v)))
        if elem.is_bool:
            return ir.Constant(I8, int(bool(v)))
        return ew.const(elem, v)

    def op_splat(self, op):
        t = op.result.type
        (s,) = self.operands(op)
        return Reg(t, [s] * slot_count(t.size, self.simd))

    def op_build(self, op):
        t = op.result.type
        scalars = self.operands(op)
        return Reg(t, [self._build_slot(scalars, k) for k in range(slot_count(t.size, self.simd))])

    def _build_slot(self, scalars, k):
        """A slot whose lane l holds scalars[k*simd + l] (uniform values, one select each)."""
        simd = self.simd
        present = [(l, scalars[k * simd + l]) for l in range(simd) if k * simd + l < len(scalars)]
        result = present[0][1]
        for l, s in present[1:]:
            if s is result:
                continue
            flags = [True if i == l else (False if i < l else None) for i in range(simd)]
            result = select_lanes(self.lanes, self.b, flags, s, result)
        return result

    # ------------------------------------------------------------------ element-wise
    def op_binary(self, op):
        t = op.result.type
        elem = t.elem
        a, c = self.operands(op)
        return self.map_slots(t, lambda x, y: ew.binary(self.b, self.math, op.opcode, elem, x, y), a, c)

    def op_unary(self, op):
        t = op.result.type
        (a,) = self.operands(op)
        return self.map_slots(t, lambda x: ew.unary(self.b, self.math, op.opcode, t.elem, x), a)

    def op_fma(self, op):
        t = op.result.type
        return self.map_slots(t, lambda x, y, z: ew.fma(self.b, self.math, t.elem, x, y, z), *self.operands(op))

    def op_cmp(self, op):
        t = op.result.type
        elem = op.operands[0].type.elem
        pred = op.attrs["pred"]
        return self.map_slots(t, lambda x, y: ew.compare(self.b, pred, elem, x, y), *self.operands(op))

    def op_select(self, op):
        t = op.result.type
        m, a, c = self.operands(op)
        return self.map_slots(t, lambda mm, x, y: self.b.select(mm, x, y), m, a, c)

    def op_convert(self, op):
        t = op.result.type
        src = op.operands[0].type.elem
        sat = bool(op.attrs.get("sat", False))
        (a,) = self.operands(op)
        return self.map_slots(t, lambda x: ew.convert(self.b, self.math, src, t.elem, x, sat), a)

    # ------------------------------------------------------------------ ids
    def op_id(self, op):
        return self.id_value(op.opcode, op.attrs["dim"])

    def id_value(self, kind, d):
        """thread_id / local_id / group_id / group_count / local_size in dimension d (an i32)."""
        bi = self.bi
        query = {"thread_id": "get_global_id", "local_id": "get_local_id", "group_id": "get_group_id",
                 "group_count": "get_num_groups", "local_size": "get_local_size"}[kind]
        # Ids are computed once, in the entry block: they are uniform and loop-invariant.
        # Dimension 0 of the global/local id differs between lanes, but not once divided
        # by simd (a sub-group is simd consecutive work-items of dimension 0).
        # CPU runtime workaround (profile.cpu.uniform_ids_from_lane0): taking the id from
        # lane 0 makes the CM-thread id visibly uniform, so the OpenCL CPU vectorizer keeps
        # the addresses derived from it scalar (contiguous vector accesses, not scatters).
        key = (kind, d)
        if key not in self._ids:
            pb = self.prologue
            v = pb.trunc(bi.work_item_query(pb, query, d), I32)
            if d == 0 and kind in ("thread_id", "local_id") and self.profile.cpu.uniform_ids_from_lane0:
                v = bi.broadcast(pb, v, 0)
            if d == 0 and kind in ("thread_id", "local_id", "local_size"):
                v = pb.lshr(v, ir.Constant(I32, self.lanes.log2))
            self._ids[key] = v
        return self._ids[key]

    # ------------------------------------------------------------------ control flow
    # op_for / op_while / op_if: control_flow.StructuredControlFlow, through these hooks.
    def _phi_like(self, template):
        """A phi per slot of a ``Reg``; one phi for a scalar or pointer."""
        if isinstance(template, Reg):
            return Reg(template.type, [self.b.phi(x.type) for x in template.slots])
        return self.b.phi(template.type)

    def _visibly_uniform(self, x):
        """A loop bound or step (or a while condition made with a scalar min/max/abs, or
        one the loop cannot change) taken from lane 0: the CPU runtime's
        ``profile.cpu.broadcast_loop_bounds`` (control_flow.py calls this only then). A
        scalar computed through an OpenCL builtin looks per-lane to the CPU runtime's
        vectorizer (LLVM's smin/umin/abs/minnum become OpenCL ``min``/``abs``/``fmin``,
        also where the optimizer forms them from a user's ``if`` clamp), which then runs
        the whole loop under a lane mask, about 2x slower; a broadcast's result is uniform
        to it. Constants and kernel arguments already are. (Other while conditions are
        left alone: a convergent call in the loop header stops LLVM from rotating the loop
        and computing its trip count.)"""
        if isinstance(x, (ir.Constant, ir.Argument)):
            return x
        return self.uniform_from_lane0(x)

    def _add_incoming_value(self, phi_value, value, block):
        if isinstance(phi_value, Reg):
            for phi, x in zip(phi_value.slots, value.slots):
                phi.add_incoming(x, block)
        else:
            phi_value.add_incoming(value, block)

    # ------------------------------------------------------------------ debug
    def op_breakpoint(self, op):
        return None

    def op_print(self, op):
        """printf from lane 0, prefixed like the interpreter's output: ``[thread (x, y, z)] ...``."""
        pieces, specs = parse_format(op.attrs.get("fmt", ""), len(op.operands))
        text = "[thread (%d, %d, %d)] " + printf_literal(pieces[0])
        args = [self.id_value("thread_id", d) for d in range(3)]
        for value, spec, piece in zip(op.operands, specs, pieces[1:]):
            conv, vals = self._printf_args(value, spec)
            text += conv + printf_literal(piece)
            args += vals
        g = self._string(text + "\n")
        with self.b.if_then(self._lane0()):
            self.bi.printf(self.b, g, args)
        return None

    def _printf_args(self, value, spec):
        v, t = self.get(value), value.type
        if isinstance(t, PtrType):
            raise CompileError("printing a pointer is not supported")
        if isinstance(t, VectorType):
            convs, vals = [], []
            for e in range(t.size):
                x = self.bi.broadcast(self.b, v.slots[e // self.simd], e % self.simd)
                conv, a = self._printf_scalar(x, t.elem, spec)
                convs.append(conv)
                vals += a
            return "[" + ", ".join(convs) + "]", vals
        return self._printf_scalar(v, t, spec)

    def _printf_scalar(self, x, t, spec):
        """(printf conversion, arguments) of one scalar; ``spec`` is a Python format spec."""
        b = self.b
        flags, letter = printf_spec(spec)
        if t.is_bool:
            return "%" + flags + "d", [b.zext(x, I32)]
        if t.is_float:
            if not letter or letter not in "eEfFgG":
                letter = "f"
            return "%" + flags + letter, [b.fpext(x, ir.DoubleType()) if x.type != ir.DoubleType() else x]
        if not letter or letter not in "dxXo":
            letter = "d" if t.is_signed else "u"
        if t.bits == 64:
            return "%" + flags + "l" + letter, [x]
        return "%" + flags + letter, [b.sext(x, I32) if t.is_signed else b.zext(x, I32)]

    def _string(self, text):
        data = bytearray(text.encode("utf-8")) + b"\0"
        arr = ir.ArrayType(I8, len(data))
        self._string_count += 1
        g = ir.GlobalVariable(self.module, arr, f"cm.str.{self._string_count}", addrspace=CONSTANT)
        g.linkage = "internal"
        g.global_constant = True
        g.initializer = ir.Constant(arr, data)
        return g


def parse_format(fmt: str, count: int):
    """Split a str.format template into count+1 literal pieces and count format specs."""
    import string
    pieces, specs, cur = [], [], ""
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError as e:
        raise CompileError(f"bad print format {fmt!r}: {e}") from None
    for literal, field, spec, conversion in parsed:
        cur += literal
        if field is None:
            continue
        if field not in ("", ) or conversion:
            raise CompileError(f"print format {fmt!r}: only '{{}}' or '{{:spec}}' placeholders are supported")
        pieces.append(cur)
        specs.append(spec or "")
        cur = ""
    pieces.append(cur)
    if len(specs) != count:
        raise CompileError(f"print format {fmt!r} has {len(specs)} placeholders for {count} values")
    return pieces, specs


def printf_literal(text: str) -> str:
    return text.replace("%", "%%")


def printf_spec(spec: str):
    """(printf flags+width+precision, conversion letter or '') of a Python format spec."""
    import re
    m = re.fullmatch(r"([<>]?)([+ ]?)(0?)(\d*)(\.\d+)?([a-zA-Z]?)", spec)
    if m is None:
        raise CompileError(f"print format spec {spec!r} has no printf equivalent")
    align, sign, zero, width, precision, letter = m.groups()
    flags = ("-" if align == "<" else "") + sign + zero + width + (precision or "")
    return flags, letter
