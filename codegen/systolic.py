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

A larger dpas is tiled: M in repeat counts of up to 8 (a last partial tile is padded with
zero rows), N in steps of E, K in steps of 16.  A shape that does not tile (N not a
multiple of E, K not of 16) or a kernel whose simd is not E is a CompileError on such a
profile; f32 inputs, and every dpas on a profile without the unit, keep the FMA lowering
of ``regions.py``.
"""
from __future__ import annotations

from llvmlite import ir

from cmlang.errors import CompileError
from . import scalar_ops as so
from .layout import Reg, permute
from .llvm_builtins import I32, FLOAT

I16 = ir.IntType(16)
K_STEP = 16                      # K per instruction for 16-bit inputs (8 dwords of 2)
REPEAT_COUNTS = (1, 2, 4, 8)     # rows of a per instruction
_BUILTIN_STEM = {"f16": "intel_sub_group_f16_f16_matrix_mad_k16",
                 "bf16": "intel_sub_group_bf16_bf16_matrix_mad_k16"}


def _vector_code(n: int, scalar: str) -> str:
    return scalar if n == 1 else f"Dv{n}_{scalar}"


def builtin_name(elem: str, exec_size: int, repeat: int) -> str:
    """The Itanium-mangled name of the matrix builtin for one tile."""
    stem = _BUILTIN_STEM[elem]
    a = _vector_code(repeat, "s" if exec_size == 16 else "i")
    b = "Dv8_i"
    # Itanium substitution: a repeated vector type is spelled S_ the second time.
    b_code = "S_" if a == b else b
    return f"_Z{len(stem)}{stem}{a}{b_code}{_vector_code(repeat, 'f')}"


def allowed_imports(profile) -> frozenset:
    """The imported functions a SIMT module may keep on ``profile``: the matrix builtins of
    its systolic unit (IGC resolves them); none on a profile without one (the CPU runtime
    cannot run them)."""
    unit = getattr(profile, "systolic", None)
    if unit is None:
        return frozenset()
    return frozenset(builtin_name(elem, unit.exec_size, r)
                     for elem in _BUILTIN_STEM if elem in unit.types for r in REPEAT_COUNTS)


def systolic_candidate(profile, op) -> bool:
    """Whether ``op`` (a dpas) belongs on the systolic unit of ``profile`` (its input type
    is one the unit multiplies), whatever its shape."""
    unit = getattr(profile, "systolic", None)
    elem = op.operands[1].type.elem.name
    return unit is not None and elem in _BUILTIN_STEM and elem in unit.types


def uses_systolic(profile, op, simd: int) -> bool:
    """Whether ``op`` (a dpas) goes to the systolic unit on ``profile``; raises CompileError
    where it should but its shape or the kernel's simd cannot map."""
    if not systolic_candidate(profile, op):
        return False
    unit = profile.systolic
    elem = op.operands[1].type.elem.name
    M, N = op.results[0].type.shape
    K = op.operands[1].type.shape[1]
    E = unit.exec_size
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
        b, simd = self.b, self.simd
        M, N = acc.type.shape
        K = a.type.shape[1]
        elem = a.elem
        a_tiles = {}                 # (first row, repeat, k0) -> a operand
        b_tiles = {(k0, n0): self._vnni_b(bm, elem, k0, n0, N)
                   for k0 in range(0, K, K_STEP) for n0 in range(0, N, simd)}
        out = list(acc.slots)        # N % simd == 0: slot m * N/simd + j is row m, columns j*simd..
        per_row = N // simd
        m0 = 0
        while m0 < M:
            rows = min(8, M - m0)
            repeat = next(r for r in REPEAT_COUNTS if r >= rows)
            fn = self._matrix_builtin(elem, repeat)
            for n0 in range(0, N, simd):
                j = n0 // simd
                tile = self._pack(FLOAT, [out[(m0 + r) * per_row + j] if r < rows
                                          else ir.Constant(FLOAT, 0.0) for r in range(repeat)])
                for k0 in range(0, K, K_STEP):
                    key = (m0, repeat, k0)
                    if key not in a_tiles:
                        a_tiles[key] = self._a_rows(a, elem, m0, rows, repeat, k0, K)
                    tile = b.call(fn, [a_tiles[key], b_tiles[(k0, n0)], tile])
                for r in range(rows):
                    out[(m0 + r) * per_row + j] = (tile if repeat == 1 else
                                                   b.extract_element(tile, ir.Constant(I32, r)))
            m0 += rows
        return Reg(acc.type, out)

    def _matrix_builtin(self, elem, repeat):
        name = builtin_name(elem.name, self.simd, repeat)
        fn = self.module.globals.get(name)
        if fn is None:
            def vec(t, n):
                return t if n == 1 else ir.VectorType(t, n)
            a_type = vec(I16 if self.simd == 16 else I32, repeat)
            fn = ir.Function(self.module, ir.FunctionType(vec(FLOAT, repeat),
                                                          [a_type, ir.VectorType(I32, 8), vec(FLOAT, repeat)]), name)
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

    def _bits16(self, elem, slot):
        return so.to_bits(self.b, elem, slot)

    def _pair(self, lo, hi):
        """Two 16-bit values as one dword, lo in the low half (the VNNI pair)."""
        b = self.b
        return b.or_(b.zext(lo, I32), b.shl(b.zext(hi, I32), ir.Constant(I32, 16)))

    def _vnni_b(self, bm, elem, k0, n0, N):
        """b[k0:k0+16, n0:n0+simd] VNNI-packed: per lane l, dword p = b[k0+2p, n0+l] and
        b[k0+2p+1, n0+l]."""
        simd = self.simd

        def row(k):
            (slot,) = permute(self.lanes, self.b, bm.slots, [k * N + n0 + l for l in range(simd)])
            return self._bits16(elem, slot)
        return self._pack(I32, [self._pair(row(k0 + 2 * p), row(k0 + 2 * p + 1)) for p in range(8)])

    def _a_rows(self, a, elem, m0, rows, repeat, k0, K):
        """Rows m0.. of a[:, k0:k0+16] as the builtin's a operand (zero rows as padding)."""
        simd = self.simd
        values = []
        for r in range(repeat):
            if r >= rows:
                values.append(ir.Constant(I16 if simd == 16 else I32, 0))
                continue
            first = (m0 + r) * K + k0
            if simd == 16:
                (slot,) = permute(self.lanes, self.b, a.slots, [first + l for l in range(16)])
                values.append(self._bits16(elem, slot))
            else:
                (lo,) = permute(self.lanes, self.b, a.slots, [first + 2 * l for l in range(8)])
                (hi,) = permute(self.lanes, self.b, a.slots, [first + 2 * l + 1 for l in range(8)])
                values.append(self._pair(self._bits16(elem, lo), self._bits16(elem, hi)))
        return self._pack(I16 if simd == 16 else I32, values)
