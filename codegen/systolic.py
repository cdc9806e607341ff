"""dpas on the systolic (XMX) unit in SIMT code: calls to the Intel sub-group matrix builtins.

On a device profile with a systolic unit (``profile.systolic``), a ``cm.dpas`` with f16 or
bf16 inputs becomes calls to the OpenCL builtins ``intel_sub_group_{f16_f16,bf16_bf16}_
matrix_mad_k16`` (``cl_intel_subgroup_matrix_multiply_accumulate``).  The backend leaves
them as imported functions, which IGC's builtin library resolves into ``dpas.8x8``; they
are the only imports a SIMT module may keep, and only for such a profile
(``allowed_imports``).  A misspelt name is not an error in IGC (it becomes an external
call, ``calla``), so every name here is checked in IGC's ISA by tests/test_systolic.py.

One call computes a tile acc[R, E] += a[R, 16] @ b[16, E] where E is the unit's execution
size (= the sub-group: 16 on PVC, 8 on DG2) and R (the repeat count) is 1, 2, 4 or 8.
Per lane (lane l):

- ``acc`` and the result: R floats, row r of column l (``float``/``floatR``);
- ``b``: 8 dwords, dword p = b[2p, l] | b[2p + 1, l] << 16 (the VNNI packing, done here);
- ``a``: row r of a spread over the lanes: sub-group 16, one 16-bit element per lane
  (``short``/``shortR``: a[r, l]); sub-group 8, two per lane (``int``/``intR``:
  a[r, 2l] | a[r, 2l + 1] << 16).

Integer inputs (i8/u8, i32 accumulate; ``intel_sub_group_{i8,u8}_{i8,u8}_matrix_mad_k32``)
take K = 32 per instruction: ``a`` holds 2 (sub-group 16, a short) or 4 (sub-group 8, an int)
elements of each row per lane, a dword of ``b`` 4 rows (VNNI of 4).  Without the unit
(the CPU profile) they are multiply-adds in i32 (``dpas_integer_software``).

tf32 (``precision="tf32"`` with f32 inputs, PVC only: ``intel_sub_group_tf32_tf32_matrix_
mad_k8_f32``) takes K = 8 per instruction: ``a`` holds one short per row per lane, lane l
the half l % 2 (low half first) of a[r, l // 2]'s 32 bits; ``b`` 8 dwords, dword p the bits
of b[p, l] (no packing).  Both are rounded to tf32 first (to nearest even, ``elementwise.round_tf32``),
so the unit gets the values the operation defines whether it truncates or not.  A profile
whose unit has no tf32 (DG2) refuses such a dpas; one without a unit (the CPU) computes it
with the same rounding and FMAs (``regions.py``).

A larger dpas is tiled: M in repeat counts of up to 8 (a last partial tile is padded with
zero rows), N in steps of E, K in steps of 16.  A shape that does not tile (N not a
multiple of E, K not of 16) or a kernel whose simd is not E is a CompileError on such a
profile; f32 inputs, and every dpas on a profile without the unit, keep the FMA lowering
of ``regions.py``.
"""
from __future__ import annotations

from llvmlite import ir

from cmlang.errors import CompileError
from . import elementwise as so
from .layout import Reg, permute, slot_count
from .block2d import BlockSource
from .memory import RowsInMemory
from .llvm_builtins import I32, I64, FLOAT

I16 = ir.IntType(16)
REPEAT_COUNTS = (1, 2, 4, 8)     # rows of a per instruction
# input element type -> (its name in the builtins, K per instruction); 8 dwords of K per lane
_INPUTS = {"f16": ("f16", 16), "bf16": ("bf16", 16), "i8": ("i8", 32), "u8": ("u8", 32),
           "tf32": ("tf32", 8)}
_BITS = {"f16": 16, "bf16": 16, "i8": 8, "u8": 8, "tf32": 32}


def _vector_code(n: int, scalar: str) -> str:
    return scalar if n == 1 else f"Dv{n}_{scalar}"


def _mangle_arguments(codes) -> str:
    """Itanium mangling of argument types: a vector type seen before is a substitution
    (S_, S0_, S1_...); builtin scalar types are never substituted."""
    seen, out = [], []
    for code in codes:
        if code.startswith("Dv") and code in seen:
            i = seen.index(code)
            out.append("S_" if i == 0 else f"S{i - 1}_")
        else:
            if code.startswith("Dv"):
                seen.append(code)
            out.append(code)
    return "".join(out)


def k_step(elem: str) -> int:
    return _INPUTS[elem][1]


def builtin_name(a_elem: str, exec_size: int, repeat: int, b_elem: str | None = None) -> str:
    """The Itanium-mangled name of the matrix builtin for one tile.  Per lane: ``a`` holds
    K/exec_size elements of each row (short at 16 bits, int at 32; unsigned for u8), ``b``
    8 dwords (uint for u8), ``acc`` one float (int for integer inputs) per row."""
    b_elem = b_elem or a_elem
    stem = f"intel_sub_group_{_INPUTS[a_elem][0]}_{_INPUTS[b_elem][0]}_matrix_mad_k{k_step(a_elem)}"
    if a_elem == "tf32":
        stem += "_f32"
    a_bits = _BITS[a_elem] * k_step(a_elem) // exec_size
    unsigned_a = a_elem == "u8"
    a_scalar = {16: "t" if unsigned_a else "s", 32: "j" if unsigned_a else "i"}[a_bits]
    b_code = "Dv8_j" if b_elem == "u8" else "Dv8_i"
    acc_scalar = "i" if a_elem in ("i8", "u8") else "f"
    return f"_Z{len(stem)}{stem}" + _mangle_arguments(
        [_vector_code(repeat, a_scalar), b_code, _vector_code(repeat, acc_scalar)])


def allowed_imports(profile) -> frozenset:
    """The imported functions a SIMT module may keep on ``profile``: the matrix builtins of
    its systolic unit (IGC resolves them); none on a profile without one (the CPU runtime
    cannot run them)."""
    unit = getattr(profile, "systolic", None)
    if unit is None:
        return frozenset()
    ints = [t for t in ("i8", "u8") if t in unit.types]
    pairs = [(t, t) for t in ("f16", "bf16") if t in unit.types] + [(a, b) for a in ints for b in ints]
    if unit.tf32:
        pairs.append(("tf32", "tf32"))
    return frozenset(builtin_name(a, unit.exec_size, r, b) for a, b in pairs for r in REPEAT_COUNTS)


def is_tf32(op) -> bool:
    return op.attrs.get("precision") == "tf32"


def input_kind(op) -> str:
    """The unit's name of a dpas's input type: its element type, or "tf32"."""
    return "tf32" if is_tf32(op) else op.operands[1].type.elem.name


def systolic_candidate(profile, op) -> bool:
    """Whether ``op`` (a dpas) belongs on the systolic unit of ``profile`` (its input type
    is one the unit multiplies), whatever its shape.  A tf32 dpas on a unit without tf32
    is a CompileError: it was asked for, and the FMA code would be a silent slow path."""
    unit = getattr(profile, "systolic", None)
    if unit is None:
        return False
    if is_tf32(op):
        if not unit.tf32:
            raise CompileError(f'cm.dpas with precision="tf32" needs a systolic unit with tf32 '
                               f"(pvc); the {profile.name} unit has none")
        return True
    a, b = (op.operands[i].type.elem.name for i in (1, 2))
    return a in _INPUTS and b in _INPUTS and a in unit.types and b in unit.types


def uses_systolic(profile, op, simd: int) -> bool:
    """Whether ``op`` (a dpas) goes to the systolic unit on ``profile``; raises CompileError
    where it should but its shape or the kernel's simd cannot map."""
    if not systolic_candidate(profile, op):
        return False
    unit = profile.systolic
    elem = input_kind(op)
    M, N = op.results[0].type.shape
    K = op.operands[1].type.shape[1]
    E, K_STEP = unit.exec_size, k_step(elem)
    fits = (f"on {profile.name} a {elem} dpas runs as tiles of (1-8) x {E} x {K_STEP} at "
            f"simd={E}: N a multiple of {E}, K a multiple of {K_STEP}")
    if simd != E:
        raise CompileError(f"cm.dpas on the systolic unit needs simd={E}, the kernel has simd={simd} "
                           f"({fits})")
    if N % E or K % K_STEP:
        raise CompileError(f"cm.dpas of shape M={M}, N={N}, K={K} ({elem}) does not map onto the "
                           f"systolic unit: {fits}")
    return True


class SystolicLowering:
    """Mixin of ``simt.KernelLowering``: ``dpas_systolic(op)`` for a dpas where
    ``uses_systolic`` holds."""

    def dpas_systolic(self, op, acc, a, bm):
        # Operands a profile's CPU workaround left in memory (dpas_loop_fmas) are read here.
        a, bm = (self._in_registers(x) for x in (a, bm))
        tf32 = is_tf32(op)
        if tf32:
            a, bm = (Reg(x.type, [so.round_tf32(self.b, s) for s in x.slots]) for x in (a, bm))
        b, simd = self.b, self.simd
        M, N = acc.type.shape
        K = a.type.shape[1]
        elem = a.elem
        kind = input_kind(op)
        K_STEP = k_step(kind)
        acc_type = I32 if acc.elem.is_int else FLOAT
        a_tiles = {}                 # (first row, repeat, k0) -> a operand
        if isinstance(bm, BlockSource):        # b read by VNNI-transforming messages (block2d.py)
            b_tiles = self.vnni_tiles(bm, K_STEP, N)
        else:
            b_tiles = {(k0, n0): self._vnni_b(bm, bm.elem, k0, n0, N)
                       for k0 in range(0, K, K_STEP) for n0 in range(0, N, simd)}
        out = list(acc.slots)        # N % simd == 0: slot m * N/simd + j is row m, columns j*simd..
        per_row = N // simd
        m0 = 0
        while m0 < M:
            rows = min(8, M - m0)
            repeat = next(r for r in REPEAT_COUNTS if r >= rows)
            fn = self._matrix_builtin(kind, "tf32" if tf32 else bm.elem.name, repeat, acc_type)
            for n0 in range(0, N, simd):
                j = n0 // simd
                tile = self._pack(acc_type, [out[(m0 + r) * per_row + j] if r < rows
                                          else ir.Constant(acc_type, 0) for r in range(repeat)])
                for k0 in range(0, K, K_STEP):
                    key = (m0, repeat, k0)
                    if key not in a_tiles:
                        a_tiles[key] = (self._a_rows_tf32 if tf32 else self._a_rows)(
                            a, elem, m0, rows, repeat, k0, K)
                    tile = b.call(fn, [a_tiles[key], b_tiles[(k0, n0)], tile])
                for r in range(rows):
                    out[(m0 + r) * per_row + j] = (tile if repeat == 1 else
                                                   b.extract_element(tile, ir.Constant(I32, r)))
            m0 += rows
        return Reg(acc.type, out)

    def _in_registers(self, x):
        if not isinstance(x, RowsInMemory):
            return x
        rows, cols = x.type.shape
        if cols % self.simd == 0:
            return Reg(x.type, [s for r in range(rows) for s in self.load_row(x, ir.Constant(I32, r))])
        # rows that do not fill whole slots: each lane loads its element of the dense layout
        b, simd, n = self.b, self.simd, rows * cols
        slots = []
        for k in range(slot_count(n, simd)):
            e = [min(k * simd + l, n - 1) for l in range(simd)]
            row = b.sext(self.lanes.int_vector([i // cols for i in e]), I64)
            col = b.sext(self.lanes.int_vector([i % cols for i in e]), I64)
            slots.append(self._load_elem(x.p, x.elem, b.add(b.add(x.off, b.mul(row, x.pitch)), col)))
        return Reg(x.type, slots)

    def _matrix_builtin(self, a_kind, b_kind, repeat, acc_type):
        name = builtin_name(a_kind, self.simd, repeat, b_kind)
        fn = self.module.globals.get(name)
        if fn is None:
            def vec(t, n):
                return t if n == 1 else ir.VectorType(t, n)
            a_type = vec(ir.IntType(_BITS[a_kind] * k_step(a_kind) // self.simd), repeat)
            fn = ir.Function(self.module, ir.FunctionType(vec(acc_type, repeat),
                                                          [a_type, ir.VectorType(I32, 8), vec(acc_type, repeat)]), name)
            fn.calling_convention = "spir_func"
            fn.attributes.add("nounwind")
            fn.attributes.add("convergent")
        return fn

    def _pack(self, elem_type, values):
        if len(values) == 1:
            return values[0]
        v = ir.Constant(ir.VectorType(elem_type, len(values)), ir.Undefined)
        for i, x in enumerate(values):
            v = self.b.insert_element(v, x, ir.Constant(I32, i))
        return v

    def _a_rows_tf32(self, a, elem, m0, rows, repeat, k0, K):
        """Rows m0.. of a[:, k0:k0+8] as the tf32 builtin's a operand: lane l holds half
        l % 2 (16 bits, low first) of a[r, k0 + l // 2]; zero rows as padding."""
        b, simd = self.b, self.simd
        shift = self.lanes.int_vector([16 * (l % 2) for l in range(simd)])
        values = []
        for r in range(repeat):
            if r >= rows:
                values.append(ir.Constant(I16, 0))
                continue
            first = (m0 + r) * K + k0
            (word,) = permute(self.lanes, b, a.slots, [first + l // 2 for l in range(simd)])
            values.append(b.trunc(b.lshr(so.to_bits(b, elem, word), shift), I16))
        return self._pack(I16, values)

    def _a_lane_type(self, elem):
        """The integer one lane holds of one row of a: K/simd elements."""
        return ir.IntType(elem.bits * k_step(elem.name) // self.simd)

    def _packed(self, elem, slots, width):
        """Slots of ``elem`` packed into one integer of ``width`` bits per lane, the first
        in the low bits (the VNNI order)."""
        b = self.b
        ty = ir.IntType(width)
        out = None
        for q, slot in enumerate(slots):
            bits = b.zext(so.to_bits(b, elem, slot), ty) if width > elem.bits else so.to_bits(b, elem, slot)
            part = b.shl(bits, ir.Constant(ty, q * elem.bits)) if q else bits
            out = part if out is None else b.or_(out, part)
        return out

    def _vnni_b(self, bm, elem, k0, n0, N):
        """b[k0:k0+K_STEP, n0:n0+simd] VNNI-packed: per lane l, dword p holds b[k0+per*p+q,
        n0+l] for q < per = 32 / bits, q = 0 lowest."""
        simd, per = self.simd, 32 // elem.bits

        def row(k):
            (slot,) = permute(self.lanes, self.b, bm.slots, [k * N + n0 + l for l in range(simd)])
            return slot
        return self._pack(I32, [self._packed(elem, [row(k0 + per * p + q) for q in range(per)], 32)
                                for p in range(8)])

    def _a_rows(self, a, elem, m0, rows, repeat, k0, K):
        """Rows m0.. of a[:, k0:k0+K_STEP] as the builtin's a operand: lane l holds elements
        per*l .. per*l+per-1 of each row (per = K_STEP / simd); zero rows as padding."""
        simd = self.simd
        per = k_step(elem.name) // simd
        lane_type = self._a_lane_type(elem)
        values = []
        for r in range(repeat):
            if r >= rows:
                values.append(ir.Constant(lane_type, 0))
                continue
            first = (m0 + r) * K + k0
            parts = [permute(self.lanes, self.b, a.slots, [first + per * l + q for l in range(simd)])[0]
                     for q in range(per)]
            values.append(self._packed(elem, parts, lane_type.width))
        return self._pack(lane_type, values)

    def dpas_integer_software(self, acc, a, bm):
        """acc + a @ b for i8/u8 inputs without the unit: rows of b and acc moved into row
        registers, then per a[m, k] (broadcast) one multiply-add per slot, in wrapping i32."""
        b, simd = self.b, self.simd
        M, N = acc.type.shape
        K = a.type.shape[1]

        def widen(slots, elem):
            return [b.sext(s, I32) if elem.is_signed else b.zext(s, I32) for s in slots]
        aw, bw = widen(a.slots, a.elem), widen(bm.slots, bm.elem)
        b_rows = [permute(self.lanes, b, bw, [k * N + c for c in range(N)]) for k in range(K)]
        rows = []
        for m in range(M):
            row = permute(self.lanes, b, acc.slots, [m * N + c for c in range(N)])
            for k in range(K):
                e = m * K + k
                amk = self.bi.broadcast(b, aw[e // simd], e % simd)
                row = [b.add(r, b.mul(amk, bk)) for bk, r in zip(b_rows[k], row)]
            rows.extend(row)
        per_row = slot_count(N, simd)
        index = [(e // N) * per_row * simd + e % N for e in range(M * N)]
        return Reg(acc.type, permute(self.lanes, b, rows, index))

