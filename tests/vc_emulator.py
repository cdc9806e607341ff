"""Run spirv-vc kernels on the host: the LLVM IR of ``codegen.vc`` with every ``llvm.genx.*``
intrinsic replaced by an LLVM definition of what its documentation says it does.

No Intel GPU is at hand to run vector-compute modules, so this is how the tests check that the
lowering computes what the interpreter computes: byte offsets of regions, VNNI packing for
dpas, message chunking and predication, the float-atomic retry loop. It emulates only what
``codegen.vc`` emits, with the semantics of intel/vc-intrinsics' ``Intrinsic_definitions.py``
(exact math where the hardware's is native).

A kernel runs once per CM thread. When it has barriers, the threads of a group run as Python
threads (ctypes releases the GIL while JIT code runs) that meet at a ``threading.Barrier``.
"""
from __future__ import annotations

import contextlib
import ctypes
import re
import threading

import numpy as np
import llvmlite.binding as llvm
from llvmlite import ir

from cmlang.types import PtrType, VectorType

I1, I8, I16, I32, I64 = (ir.IntType(w) for w in (1, 8, 16, 32, 64))
F32 = ir.FloatType()

_SCALARS = {"i1": I1, "i8": I8, "i16": I16, "i32": I32, "i64": I64, "half": ir.HalfType(),
            "float": F32, "double": ir.DoubleType(), "void": ir.VoidType()}


def parse_type(text: str) -> ir.Type:
    text = text.strip()
    if text.startswith("<"):
        n, elem = text[1:-1].split(" x ")
        return ir.VectorType(parse_type(elem), int(n))
    return _SCALARS[text]


def _split_params(text):
    return [re.sub(r'\s*%"[^"]*"$', "", p.strip()) for p in text.split(",") if p.strip()]


def declarations(llvm_ir: str):
    """(name, return type, [param types]) of every function the module declares."""
    for m in re.finditer(r'^declare (?:spir_func )?(.+?) @"?([\w.]+)"?\((.*)\)', llvm_ir, re.M):
        yield m.group(2), parse_type(m.group(1)), [parse_type(p) for p in _split_params(m.group(3))]


def lanes(ty):
    return ty.count if isinstance(ty, ir.VectorType) else 1


def elem(ty):
    return ty.element if isinstance(ty, ir.VectorType) else ty


def nbytes(ty):
    e = elem(ty)
    return e.width // 8 if isinstance(e, ir.IntType) else {"half": 2, "float": 4, "double": 8}[str(e)]


def suffix(ty):
    if isinstance(ty, ir.VectorType):
        return f"v{ty.count}{suffix(ty.element)}"
    return f"i{ty.width}" if isinstance(ty, ir.IntType) else {"half": "f16", "float": "f32", "double": "f64"}[str(ty)]


class Emulation:
    """Builds the definitions, one per declared intrinsic signature, into one module."""

    def __init__(self):
        self.module = ir.Module("genx_emulation")
        self.query = ir.Function(self.module, ir.FunctionType(I32, [I32]), "emu_query")
        self.slm_base = ir.Function(self.module, ir.FunctionType(I64, []), "emu_slm_base")
        self.barrier_fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), []), "emu_barrier")
        self.intrinsics = {}

    def intrinsic(self, name, ret, args, overloads):
        """An LLVM intrinsic (llvm.<name>.<overloads>) for the host."""
        key = f"llvm.{name}" + "".join("." + suffix(t) for t in overloads)
        if key not in self.intrinsics:
            self.intrinsics[key] = ir.Function(self.module, ir.FunctionType(ret, args), key)
        return self.intrinsics[key]

    def define(self, name, ret, params):
        fn = ir.Function(self.module, ir.FunctionType(ret, params), name.replace("llvm.genx.", "genx_emu."))
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        kind = name[len("llvm.genx."):] if name.startswith("llvm.genx.") else name
        value = self.body(b, kind, ret, list(fn.args))
        if isinstance(ret, ir.VoidType):
            b.ret_void()
        else:
            b.ret(value)

    # --- one definition per intrinsic family ------------------------------------------------
    def body(self, b, kind, ret, args):
        base = ("fma" if kind.startswith("_Z3fma") else "sqrt" if kind.startswith("_Z4sqrt")
                else _base_name(kind))
        handler = getattr(self, "emit_" + base.replace(".", "_"), None)
        if handler is None:
            raise NotImplementedError(f"no emulation for llvm.genx.{kind}")
        return handler(b, ret, args)

    def _index(self, b, r, width, vstride, stride, start):
        row, col = b.udiv(ir.Constant(I32, r), width), b.urem(ir.Constant(I32, r), width)
        return b.add(start, b.add(b.mul(row, vstride), b.mul(col, stride))), row, col

    def emit_rdregioni(self, b, ret, args):
        src, vstride, width, stride, offset, _ = args
        es = nbytes(src.type)
        out = ir.Constant(ret, ir.Undefined)
        for r in range(lanes(ret)):
            if isinstance(offset.type, ir.VectorType):        # one row per offset element
                row, col = b.udiv(ir.Constant(I32, r), width), b.urem(ir.Constant(I32, r), width)
                start = b.udiv(b.zext(b.extract_element(offset, row), I32), ir.Constant(I32, es))
                idx = b.add(start, b.mul(col, stride))
            else:
                start = b.udiv(b.zext(offset, I32), ir.Constant(I32, es))
                idx, _, _ = self._index(b, r, width, vstride, stride, start)
            v = b.extract_element(src, idx)
            out = b.insert_element(out, v, ir.Constant(I32, r)) if lanes(ret) > 1 else v
        return out

    emit_rdregionf = emit_rdregioni

    def emit_wrregioni(self, b, ret, args):
        dst, src, vstride, width, stride, offset, _, _ = args
        start = b.udiv(b.zext(offset, I32), ir.Constant(I32, nbytes(dst.type)))
        out = dst
        for r in range(lanes(src.type)):
            idx, _, _ = self._index(b, r, width, vstride, stride, start)
            v = b.extract_element(src, ir.Constant(I32, r)) if lanes(src.type) > 1 else src
            out = b.insert_element(out, v, idx)
        return out

    emit_wrregionf = emit_wrregioni

    # --- memory ----------------------------------------------------------------------------
    def _ptr(self, b, address):
        return b.inttoptr(address, ir.PointerType())

    def emit_svm_block_ld_unaligned(self, b, ret, args):
        return b.load(self._ptr(b, args[0]), typ=ret, align=1)

    emit_svm_block_ld = emit_svm_block_ld_unaligned

    def emit_svm_block_st(self, b, ret, args):
        b.store(args[1], self._ptr(b, args[0]), align=1)

    def _per_lane(self, b, pred, initial, step):
        """result = initial; for each lane i with pred[i]: result = step(result, i)."""
        slot = b.alloca(initial.type)
        b.store(initial, slot)
        for i in range(lanes(pred.type)):
            with b.if_then(b.extract_element(pred, ir.Constant(I32, i))):
                b.store(step(b.load(slot), i), slot)
        return b.load(slot)

    def _lane(self, b, v, i):
        return b.extract_element(v, ir.Constant(I32, i))

    def emit_svm_gather(self, b, ret, args):
        pred, log2_blocks, addrs, old = args
        x = lanes(addrs.type)
        if lanes(ret) == 4 * x and elem(ret) == I8:          # 1 or 2 bytes per lane, in dword slots
            slot = b.alloca(ret)
            b.store(old, slot)
            two = b.icmp_unsigned("==", log2_blocks, ir.Constant(I32, 1))
            for i in range(x):
                with b.if_then(self._lane(b, pred, i)):
                    for j in range(2):
                        with b.if_then(two) if j else contextlib.nullcontext():
                            p = self._ptr(b, b.add(self._lane(b, addrs, i), ir.Constant(I64, j)))
                            b.store(b.insert_element(b.load(slot), b.load(p, typ=I8), ir.Constant(I32, 4 * i + j)),
                                    slot)
            return b.load(slot)
        return self._per_lane(b, pred, old, lambda cur, i: b.insert_element(
            cur, b.load(self._ptr(b, self._lane(b, addrs, i)), typ=elem(ret), align=1), ir.Constant(I32, i)))

    def emit_svm_scatter(self, b, ret, args):
        pred, log2_blocks, addrs, data = args
        x = lanes(addrs.type)
        if lanes(data.type) == 4 * x and elem(data.type) == I8:
            dwords = b.bitcast(data, ir.VectorType(I32, x))
            for i in range(x):
                with b.if_then(self._lane(b, pred, i)):
                    v = self._lane(b, dwords, i)
                    p = self._ptr(b, self._lane(b, addrs, i))
                    with b.if_else(b.icmp_unsigned("==", log2_blocks, ir.Constant(I32, 0))) as (one, two):
                        with one:
                            b.store(b.trunc(v, I8), p, align=1)
                        with two:
                            b.store(b.trunc(v, I16), p, align=1)
            return None
        for i in range(x):
            with b.if_then(self._lane(b, pred, i)):
                b.store(self._lane(b, data, i), self._ptr(b, self._lane(b, addrs, i)), align=1)
        return None

    def _slm_address(self, b, offset, global_offset):
        return self._ptr(b, b.add(b.call(self.slm_base, []), b.zext(b.add(offset, global_offset), I64)))

    def emit_gather_scaled(self, b, ret, args):
        """1, 2 or 4 bytes per lane, zero-extended into a dword (the SLM buffer has slack, so
        reading a whole dword and masking stays in bounds)."""
        pred, log2_blocks, _scale, _surface, goff, offsets, old = args
        bits = b.shl(ir.Constant(I32, 8), log2_blocks)
        four = b.icmp_unsigned("==", log2_blocks, ir.Constant(I32, 2))
        mask = b.select(four, ir.Constant(I32, -1),
                        b.sub(b.shl(ir.Constant(I32, 1), b.select(four, ir.Constant(I32, 0), bits)),
                              ir.Constant(I32, 1)))

        def step(cur, i):
            v = b.load(self._slm_address(b, self._lane(b, offsets, i), goff), typ=I32, align=1)
            return b.insert_element(cur, b.and_(v, mask), ir.Constant(I32, i))
        return self._per_lane(b, pred, old, step)

    def emit_scatter_scaled(self, b, ret, args):
        pred, log2_blocks, _scale, _surface, goff, offsets, data = args
        for i in range(lanes(offsets.type)):
            with b.if_then(self._lane(b, pred, i)):
                v = self._lane(b, data, i)
                p = self._slm_address(b, self._lane(b, offsets, i), goff)
                for log2, ty in ((0, I8), (1, I16), (2, I32)):
                    with b.if_then(b.icmp_unsigned("==", log2_blocks, ir.Constant(I32, log2))):
                        b.store(b.trunc(v, ty) if ty != I32 else v, p, align=1)

    # 2-D block messages (LSC, stateless): operands pred, L1 and L3 cache controls, data size,
    # data order (1 as in memory, 2 transposed), blocks, block width and height (elements),
    # VNNI, surface base, width - 1 (bytes), height - 1, pitch - 1 (bytes), x (elements), y.
    # In registers each block is its rows (transposed: its columns) one after another, each
    # padded to a power of two elements, the block padded to 64 bytes; block k starts at
    # column x + k * width.  VNNI (8/16-bit loads): p = 4 / element bytes consecutive rows of
    # a column share a dword, so a register row is p block rows, dword c holding column c
    # (the row of lowest index in the low bits).  Elements outside the surface read 0 and are
    # not written; the padding reads 0.  The element size is the data's (the data-size
    # operand says the same).
    def _block2d_loop(self, b, n, es, args, body):
        """A loop over the register elements e < n of a 2-D block message, calling
        ``body(e, address)`` (at a builder inside the loop) for those in a block and inside
        the surface."""
        pred, _l1, _l3, _size, order, blocks, bw, bh, vnni, base, wm1, hm1, pm1, x, y = args[:15]
        c = lambda v: ir.Constant(I32, v)      # noqa: E731
        w, h, nb = b.zext(bw, I32), b.zext(bh, I32), b.zext(blocks, I32)
        transposed = b.icmp_unsigned("==", order, ir.Constant(I8, 2))
        packed = b.select(b.icmp_unsigned("!=", vnni, ir.Constant(I8, 0)), c(max(1, 4 // es)), c(1))
        row_len, row_count = b.select(transposed, h, w), b.select(transposed, w, h)
        ctlz = self.intrinsic("ctlz", I32, [I32, I1], [I32])
        pitch = b.mul(b.shl(c(1), b.sub(c(32), b.call(ctlz, [b.sub(row_len, c(1)), ir.Constant(I1, 0)]))), packed)
        reg_rows = b.udiv(b.add(row_count, b.sub(packed, c(1))), packed)
        per_grf = c(64 // es)
        block = b.mul(b.udiv(b.add(b.mul(pitch, reg_rows), c(64 // es - 1)), per_grf), per_grf)
        on = b.extract_element(pred, c(0))
        counter = b.alloca(I32)
        b.store(c(0), counter)
        head = b.append_basic_block("element")
        step = b.append_basic_block("element.body")
        done = b.append_basic_block("elements.done")
        b.branch(head)
        b.position_at_end(head)
        e = b.load(counter)
        b.cbranch(b.icmp_unsigned("<", e, c(n)), step, done)
        b.position_at_end(step)
        k, rem = b.udiv(e, block), b.urem(e, block)
        gr, gc = b.udiv(rem, pitch), b.urem(rem, pitch)
        # (block row, block column) of register row gr, element gc: VNNI rows gr p + gc % p
        packed_row = b.add(b.mul(gr, packed), b.urem(gc, packed))
        r = b.select(transposed, gc, packed_row)
        col_in_block = b.select(transposed, gr, b.udiv(gc, packed))
        in_block = b.and_(b.and_(b.icmp_unsigned("<", r, h), b.icmp_unsigned("<", col_in_block, w)),
                          b.and_(b.icmp_unsigned("<", k, nb), on))
        col = b.add(x, b.add(b.mul(k, w), col_in_block))
        row = b.add(y, r)
        inside = b.and_(b.and_(b.icmp_signed(">=", col, c(0)),
                               b.icmp_signed("<=", b.mul(b.add(col, c(1)), c(es)), b.add(wm1, c(1)))),
                        b.and_(b.icmp_signed(">=", row, c(0)), b.icmp_signed("<=", row, hm1)))
        with b.if_then(b.and_(in_block, inside)):
            address = b.add(base, b.add(b.mul(b.sext(row, I64), b.sext(b.add(pm1, c(1)), I64)),
                                        b.mul(b.sext(col, I64), ir.Constant(I64, es))))
            body(e, address)
        b.store(b.add(e, c(1)), counter)
        b.branch(head)
        b.position_at_end(done)

    def emit_lsc_load2d_stateless(self, b, ret, args):
        slot = b.alloca(ret)
        b.store(ir.Constant(ret, None), slot)           # zeros: padding and outside the surface

        def load(e, address):
            v = b.load(self._ptr(b, address), typ=elem(ret), align=1)
            b.store(b.insert_element(b.load(slot), v, e), slot)
        self._block2d_loop(b, lanes(ret), nbytes(ret), args, load)
        return b.load(slot)

    def emit_lsc_store2d_stateless(self, b, ret, args):
        data = args[15]
        self._block2d_loop(b, lanes(data.type), nbytes(data.type), args,
                           lambda e, address: b.store(b.extract_element(data, e), self._ptr(b, address), align=1))

    def emit_lsc_prefetch2d_stateless(self, b, ret, args):
        return None                                      # a cache hint: nothing to see

    _RMW = {"add": "add", "sub": "sub", "min": "umin", "max": "umax", "imin": "min", "imax": "max",
            "xchg": "xchg", "and": "and", "or": "or", "xor": "xor", "fmin": "fmin", "fmax": "fmax",
            "fadd": "fadd", "fsub": "fsub"}

    def _atomic(self, b, op, pred, where, data, old, address):
        def step(cur, i):
            p = address(self._lane(b, where, i))
            if op == "cmpxchg":      # src0 = new value, src1 = compare value
                pair = b.cmpxchg(p, self._lane(b, data[1], i), self._lane(b, data[0], i), "seq_cst", "seq_cst")
                v = b.extract_value(pair, 0)
            else:
                v = b.atomic_rmw(self._RMW[op], p, self._lane(b, data[0], i), "seq_cst")
            return b.insert_element(cur, v, ir.Constant(I32, i))
        return self._per_lane(b, pred, ir.Constant(old.type, ir.Undefined), step)

    def atomic_svm(self, op):
        def emit(b, ret, args):
            pred, addrs, *data = args
            return self._atomic(b, op, pred, addrs, data[:-1], data[-1], lambda a: self._ptr(b, a))
        return emit

    def atomic_dword(self, op):
        def emit(b, ret, args):
            pred, _surface, offsets, *data = args
            return self._atomic(b, op, pred, offsets, data[:-1], data[-1],
                                lambda o: self._slm_address(b, o, ir.Constant(I32, 0)))
        return emit

    def __getattr__(self, name):
        for prefix, make in (("emit_svm_atomic_", self.atomic_svm), ("emit_dword_atomic_", self.atomic_dword)):
            if name.startswith(prefix):
                return make(name[len(prefix):])
        raise AttributeError(name)

    # --- synchronisation and ids --------------------------------------------------------------
    def emit_fence(self, b, ret, args):
        return None

    def emit_barrier(self, b, ret, args):
        b.call(self.barrier_fn, [])

    def _query3(self, b, first):
        v = ir.Constant(ir.VectorType(I32, 3), ir.Undefined)
        for d in range(3):
            v = b.insert_element(v, b.call(self.query, [ir.Constant(I32, first + d)]), ir.Constant(I32, d))
        return v

    def emit_group_id_x(self, b, ret, args):
        return b.call(self.query, [ir.Constant(I32, 0)])

    def emit_group_id_y(self, b, ret, args):
        return b.call(self.query, [ir.Constant(I32, 1)])

    def emit_group_id_z(self, b, ret, args):
        return b.call(self.query, [ir.Constant(I32, 2)])

    def emit_local_id(self, b, ret, args):
        return self._query3(b, 3)

    def emit_local_size(self, b, ret, args):
        return self._query3(b, 6)

    def emit_group_count(self, b, ret, args):
        return self._query3(b, 9)

    # --- element-wise ---------------------------------------------------------------------
    def _unary(llvm_name):
        def emit(self, b, ret, args):
            t = args[0].type
            return b.call(self.intrinsic(llvm_name, t, [t], [t]), [args[0]])
        return emit

    emit_exp = _unary("exp2")             # genx.exp is 2^x
    emit_log = _unary("log2")             # genx.log is log2
    emit_sin = _unary("sin")
    emit_cos = _unary("cos")
    emit_sqrt = _unary("sqrt")
    emit_ieee_sqrt = _unary("sqrt")
    emit_rndd = _unary("floor")
    emit_rndu = _unary("ceil")
    emit_rnde = _unary("rint")            # the host's rounding mode: to nearest even
    emit_rndz = _unary("trunc")
    emit_absf = _unary("fabs")

    def emit_absi(self, b, ret, args):
        t = args[0].type
        return b.call(self.intrinsic("abs", t, [t, I1], [t]), [args[0], ir.Constant(I1, 0)])

    # bit scans (vc-intrinsics: cbit counts set bits, fbl/ufbh/sfbh give 0xFFFFFFFF where no
    # bit is found, sfbh counts the bits equal to the sign bit, lzd(0) = 32)
    def _count(self, b, name, x):
        t = x.type
        if name == "ctpop":
            return b.call(self.intrinsic(name, t, [t], [t]), [x])
        return b.call(self.intrinsic(name, t, [t, I1], [t]), [x, ir.Constant(I1, 0)])

    def _none_if_zero(self, b, v, x):
        zero = ir.Constant(x.type, [0] * lanes(x.type) if isinstance(x.type, ir.VectorType) else 0)
        none = ir.Constant(x.type, [-1] * lanes(x.type) if isinstance(x.type, ir.VectorType) else -1)
        return b.select(b.icmp_unsigned("==", x, zero), none, v)

    def emit_cbit(self, b, ret, args):
        return self._count(b, "ctpop", args[0])

    def emit_lzd(self, b, ret, args):
        return self._count(b, "ctlz", args[0])

    def emit_fbl(self, b, ret, args):
        return self._none_if_zero(b, self._count(b, "cttz", args[0]), args[0])

    def emit_ufbh(self, b, ret, args):
        return self._none_if_zero(b, self._count(b, "ctlz", args[0]), args[0])

    def emit_sfbh(self, b, ret, args):
        x = args[0]
        n = lanes(x.type)
        sign = ir.Constant(x.type, [31] * n if isinstance(x.type, ir.VectorType) else 31)
        flipped = b.xor(x, b.ashr(x, sign))
        return self._none_if_zero(b, self._count(b, "ctlz", flipped), flipped)

    def _binary(llvm_name):
        def emit(self, b, ret, args):
            t = args[0].type
            return b.call(self.intrinsic(llvm_name, t, [t, t], [t]), list(args))
        return emit

    emit_pow = _binary("pow")
    emit_fmin = _binary("minnum")
    emit_fmax = _binary("maxnum")
    emit_smin = _binary("smin")
    emit_smax = _binary("smax")
    emit_umin = _binary("umin")
    emit_umax = _binary("umax")

    def _sat(kind):
        def emit(self, b, ret, args):
            t = args[0].type
            return b.call(self.intrinsic(f"{kind}.sat", ret, [t], [ret, t]), [args[0]])
        return emit

    emit_fptosi_sat = _sat("fptosi")
    emit_fptoui_sat = _sat("fptoui")

    def emit_any(self, b, ret, args):
        return b.icmp_unsigned("!=", b.bitcast(args[0], ir.IntType(lanes(args[0].type))),
                               ir.Constant(ir.IntType(lanes(args[0].type)), 0))

    def emit_all(self, b, ret, args):
        n = lanes(args[0].type)
        return b.icmp_unsigned("==", b.bitcast(args[0], ir.IntType(n)), ir.Constant(ir.IntType(n), -1))

    def emit_fma(self, b, ret, args):        # the OpenCL builtin (_Z3fma...)
        if str(elem(ret)) == "half":
            # the host has no half fma (llvm.fma.*f16, like double -> half, becomes a call the
            # JIT cannot resolve): in float the product is exact; the sum rounds once more
            # before half (within the 1 ulp the tests allow fma)
            wide = ir.VectorType(F32, lanes(ret)) if isinstance(ret, ir.VectorType) else F32
            wide_args = [b.fpext(a, wide) for a in args]
            return b.fptrunc(b.call(self.intrinsic("fma", wide, [wide] * 3, [wide]), wide_args), ret)
        return b.call(self.intrinsic("fma", ret, [ret, ret, ret], [ret]), list(args))

    # --- dpas ----------------------------------------------------------------------------------
    def emit_dpas2(self, b, ret, args):
        """acc[r, c] += sum_k A[r, k] * B[k, c]: A (src2) rows packed along K, B (src1) packed
        VNNI (a dword of B holds 4 / 2 / 1 rows for 8-bit / 16-bit / tf32 elements, the first
        in the low bits). Operand precisions (args 3 and 4, B's then A's): u8 7, s8 8, bf16 9,
        f16 10, tf32 12. Integer ones sum exact products in i32; float ones in f32, product by
        product in order. A tf32 element is read as its top 19 bits (the lowering rounds the
        f32 values first; what the hardware does with the low 13 bits does not matter then)."""
        acc, src1, src2, b_prec, a_prec = args[:5]
        rc = lanes(src2.type) // 8
        n = lanes(ret) // rc
        if str(elem(ret)) == "i32":
            return self._dpas2_integer(b, acc, src1, src2, a_prec, b_prec, rc, n)
        sixteen = self._dpas2_16bit(b, acc, src1, src2, a_prec, rc, n)
        tf32 = self._dpas2_tf32(b, acc, src1, src2, rc, n)
        return b.select(b.icmp_unsigned("==", a_prec, ir.Constant(I32, 12)), tf32, sixteen)

    @staticmethod
    def _dpas2_sum(b, acc, rc, n, k_count, a_values, a_index, b_values, b_index, mul, add):
        """acc + sum over k of a[r, k] * b[k, c], k in order, on whole <rc*n> vectors: the
        decoded operands are picked by shuffles (a_index(r, k), b_index(k, c))."""
        def pick(values, index):
            mask = ir.Constant(ir.VectorType(I32, rc * n), [ir.Constant(I32, index(r, c)) for r in range(rc)
                                                           for c in range(n)])
            return b.shuffle_vector(values, ir.Constant(values.type, ir.Undefined), mask)

        out = acc
        for k in range(k_count):
            out = add(out, mul(pick(a_values, lambda r, c: a_index(r, k)), pick(b_values, lambda r, c: b_index(k, c))))
        return out

    def _dpas2_16bit(self, b, acc, src1, src2, prec, rc, n):
        is_half = b.icmp_unsigned("==", prec, ir.Constant(I32, 10))

        def to_float(v):
            bits = b.bitcast(v, ir.VectorType(I16, 2 * lanes(v.type)))
            wide = ir.VectorType(F32, lanes(bits.type))
            half = b.fpext(b.bitcast(bits, ir.VectorType(ir.HalfType(), lanes(bits.type))), wide)
            brain = b.bitcast(b.shl(b.zext(bits, ir.VectorType(I32, lanes(bits.type))),
                                    ir.Constant(ir.VectorType(I32, lanes(bits.type)), [16] * lanes(bits.type))), wide)
            return b.select(is_half, half, brain)

        return self._dpas2_sum(b, acc, rc, n, 16, to_float(src2), lambda r, k: r * 16 + k,
                               to_float(src1), lambda k, c: ((k // 2) * n + c) * 2 + k % 2, b.fmul, b.fadd)

    def _dpas2_tf32(self, b, acc, src1, src2, rc, n):
        def to_float(v):
            mask = ir.Constant(v.type, [0xFFFFE000 - (1 << 32)] * lanes(v.type))
            return b.bitcast(b.and_(v, mask), ir.VectorType(F32, lanes(v.type)))

        return self._dpas2_sum(b, acc, rc, n, 8, to_float(src2), lambda r, k: r * 8 + k,
                               to_float(src1), lambda k, c: k * n + c, b.fmul, b.fadd)

    def _dpas2_integer(self, b, acc, src1, src2, a_prec, b_prec, rc, n):
        def widen(v, prec):
            count = 4 * lanes(v.type)
            bytes_ = b.bitcast(v, ir.VectorType(I8, count))
            signed = b.icmp_unsigned("==", prec, ir.Constant(I32, 8))
            wide = ir.VectorType(I32, count)
            return b.select(signed, b.sext(bytes_, wide), b.zext(bytes_, wide))

        return self._dpas2_sum(b, acc, rc, n, 32, widen(src2, a_prec), lambda r, k: r * 32 + k,
                               widen(src1, b_prec), lambda k, c: ((k // 4) * n + c) * 4 + k % 4, b.mul, b.add)


def _base_name(kind):
    """The intrinsic's own name without its overload suffixes: svm.gather.v8f32.v8i1.v8i64 -> svm.gather."""
    words = []
    for w in kind.split("."):
        if re.fullmatch(r"v\d+[if]\d+|i\d+|f\d+", w):
            break
        words.append(w)
    return ".".join(words)


# --- building and running ----------------------------------------------------------------

_QUERY = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int32)
_SLM = ctypes.CFUNCTYPE(ctypes.c_int64)
_BARRIER = ctypes.CFUNCTYPE(None)
_state = threading.local()
_keep = []      # callbacks and engines must outlive every call


def _register_callbacks():
    if _keep:
        return
    callbacks = (_QUERY(lambda code: _state.ids[code]), _SLM(lambda: _state.slm.ctypes.data),
                 _BARRIER(lambda: _state.barrier.wait(timeout=30)))
    for name, cb in zip(("emu_query", "emu_slm_base", "emu_barrier"), callbacks):
        llvm.add_symbol(name, ctypes.cast(cb, ctypes.c_void_p).value)
    _keep.extend(callbacks)


def host_module(vc_ir: str):
    """The kernel's LLVM IR made host code: genx calls renamed to their emulations, the kernel a
    plain C function, global pointers plain pointers."""
    emu = Emulation()
    for name, ret, params in declarations(vc_ir):
        emu.define(name, ret, params)
    text = vc_ir.replace('@"llvm.genx.', '@"genx_emu.').replace("spir_kernel ", "").replace("spir_func ", "")
    text = text.replace("ptr addrspace(1)", "ptr")
    text = re.sub(r"^declare .*$", "", text, flags=re.M)
    text = re.sub(r'^target (triple|datalayout) = .*$', "", text, flags=re.M)
    emulation = str(emu.module)
    return (text + "\n" + "\n".join(l for l in emulation.splitlines() if not l.startswith(("target", "; Module")))
            + _entry(text))


ENTRY = "emu_entry"


def _entry(text):
    """A C-callable entry: the kernel's arguments with every ``half`` taken as its 16 bits
    (ctypes has no half type, and the host ABI passes half in a float register), bitcast and
    passed on."""
    m = re.search(r'^define void @"?([\w.]+)"?\((.*?)\)', text, re.M)
    types = [re.sub(r'\s*%"?[\w.]+"?$', "", p.strip()) for p in m.group(2).split(",") if p.strip()]
    params, body, args = [], [], []
    for i, t in enumerate(types):
        if t == "half":
            params.append(f"i16 %a{i}")
            body.append(f"  %h{i} = bitcast i16 %a{i} to half")
            args.append(f"half %h{i}")
        else:
            params.append(f"{t} %a{i}")
            args.append(f"{t} %a{i}")
    return (f"\ndefine void @{ENTRY}({', '.join(params)}) {{\n" + "".join(b + "\n" for b in body)
            + f'  call void @"{m.group(1)}"({", ".join(args)})\n  ret void\n}}\n')


class HostKernel:
    """A JIT-compiled spirv-vc kernel: ``run(grid, group, arrays_and_scalars)``."""

    def __init__(self, compiled, opt=1):
        """``opt``: the JIT's optimization level (0 compiles large kernels about twice as fast)."""
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        _register_callbacks()
        self.compiled = compiled
        self.function = compiled.function
        text = host_module(compiled.llvm_ir)
        module = llvm.parse_assembly(text)
        module.triple = llvm.get_process_triple()
        module.verify()
        # The host CPU's features: half <-> float conversions become F16C instructions rather
        # than compiler-rt calls the JIT cannot resolve.
        tm = llvm.Target.from_default_triple().create_target_machine(
            cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=opt)
        self.engine = llvm.create_mcjit_compiler(module, tm)
        self.engine.finalize_object()
        _keep.append(self.engine)
        address = self.engine.get_function_address(ENTRY)
        params = self.function.params
        self.uses_barrier = any(op.opcode == "barrier" for op in self.function.walk())
        self.cfunc = ctypes.CFUNCTYPE(None, *[c for p in params for c in _ctypes(p.type)])(address)

    def run(self, grid, group, args):
        grid3 = _dims(grid)
        group3 = _dims(group) if group is not None else (1, 1, 1)
        counts = tuple(g // l for g, l in zip(grid3, group3))
        cargs = [c for p, a in zip(self.function.params, args) for c in _cargs(p.type, a)]
        slm_bytes = int(re.search(r'"VCSLMSize"="(\d+)"', self.compiled.llvm_ir).group(1))
        for gz in range(counts[2]):
            for gy in range(counts[1]):
                for gx in range(counts[0]):
                    self._run_group((gx, gy, gz), group3, counts, cargs, slm_bytes)

    def _run_group(self, gid, group3, counts, cargs, slm_bytes):
        slm = np.zeros(slm_bytes + 16, np.uint8)       # slack: dword reads at the end
        locals_ = [(x, y, z) for z in range(group3[2]) for y in range(group3[1]) for x in range(group3[0])]
        barrier = threading.Barrier(len(locals_)) if self.uses_barrier else None

        def thread(lid):
            _state.ids = list(gid) + list(lid) + list(group3) + list(counts)
            _state.slm, _state.barrier = slm, barrier
            self.cfunc(*cargs)

        if barrier is None:
            for lid in locals_:
                thread(lid)
            return
        workers = [threading.Thread(target=thread, args=(lid,)) for lid in locals_]
        for w in workers:
            w.start()
        for w in workers:
            w.join()


def _dims(v):
    v = (v,) if isinstance(v, int) else tuple(v)
    return v + (1,) * (3 - len(v))


_CTYPES = {"i8": ctypes.c_int8, "i16": ctypes.c_int16, "i32": ctypes.c_int32, "i64": ctypes.c_int64,
           "u8": ctypes.c_uint8, "u16": ctypes.c_uint16, "u32": ctypes.c_uint32, "u64": ctypes.c_uint64,
           "f16": ctypes.c_uint16, "bf16": ctypes.c_uint16, "f32": ctypes.c_float, "f64": ctypes.c_double,
           "bool": ctypes.c_uint8}


def _ctype(t):
    return ctypes.c_void_p if isinstance(t, PtrType) else _CTYPES[t.name]


def _ctypes(t):
    """A register parameter is one scalar argument per element (the launch ABI)."""
    return [_ctype(t.elem)] * t.size if isinstance(t, VectorType) else [_ctype(t)]


def _cargs(t, a):
    if isinstance(t, VectorType):
        return [_carg(t.elem, x) for x in np.asarray(a).reshape(-1)]
    return [_carg(t, a)]


def _carg(t, a):
    if isinstance(t, PtrType):
        assert isinstance(a, np.ndarray) and a.flags.c_contiguous
        return ctypes.c_void_p(a.ctypes.data)
    if t.name == "f16":
        return ctypes.c_uint16(int(np.float16(a).view(np.uint16)))
    if t.name == "bf16" and isinstance(a, (float, np.floating)):     # a value, not its bits
        from cmlang.codegen.elementwise import bf16_bits_host
        return ctypes.c_uint16(bf16_bits_host(float(a)))
    if t.name == "bool":
        return ctypes.c_uint8(int(bool(a)))
    return _CTYPES[t.name](a)


def run_isolated(compiled, grid, group, args):
    """Run the kernel in a forked child (a bad lowering may crash the JIT code, which must not
    take the test session with it); returns the arguments as the kernel left them."""
    return run_isolated_each(compiled, grid, group, [args])[0]


def run_isolated_each(compiled, grid, group, launches):
    """``run_isolated`` for several argument lists: one JIT compile in one child, a launch per
    list (the JIT of a large unrolled kernel costs far more than its runs); returns each
    list as the kernel left it."""
    from cmlang.runtime.forked import ChildCrashed, call_in_child

    def run():
        # opt=0: the JIT's codegen level changes no result of well-formed IR, and compiles the
        # large unrolled kernels these tests emulate 2-4x faster (as the differential test does)
        kernel = HostKernel(compiled, opt=0)
        for args in launches:
            kernel.run(grid, group, args)
        return launches
    try:
        return call_in_child(run)
    except ChildCrashed as e:
        raise AssertionError(f"the emulated kernel crashed (wait status {e.status})") from None
    except Exception as e:   # noqa: BLE001  (the emulator's own failure, reported as a test failure)
        raise AssertionError(f"emulation failed: {type(e).__name__}: {e}") from None
