"""spirv-vc lowering of ``cm.dpas`` (a mixin of ``vc.VCLowering``; the op table is in
``vc.py``'s docstring).

**On the systolic unit** (``llvm.genx.dpas2``): where the profile has the unit for the
input types (f16, bf16, i8/u8; f32 only with ``precision="tf32"`` on a unit that has tf32,
PVC), one instruction per tile of (<= 8) x E x Kt: E is the profile's exec size (pvc 16,
dg2 8; cpu and generic, which describe no particular GPU, keep 16: the tests' emulator runs
it), Kt is 8 dwords of K (16 at 16 bits, 32 at 8 bits, 8 for tf32).  Rows of ``a`` are
packed as they lie (a dword holds 2 or 4 neighbours along K); ``b`` is packed to VNNI here:
dword (kk, j) holds b[p*kk + t, j] for t < p (p elements per dword, t = 0 in the low bits).
tf32 inputs are rounded to tf32 (nearest even, ``elementwise.round_tf32``) before the
unit reads them, so the result does not depend on what it does with the low 13 bits.
On an Intel GPU profile with the unit, a shape that does not tile (N not a multiple of E,
K not of Kt) is a CompileError, as is tf32 on a unit without it (DG2).

**Otherwise in f32 on the whole accumulator** (f32 inputs; every dpas on a GPU without the
unit, tgllp; shapes that do not tile on cpu/generic): per k one multiply and one add of
M x N elements, a's column k and b's row k spread by regions; integer ones with
multiply-adds in i32.  A float dpas of at least the profile's ``dpas_loop_fmas`` FMAs
(counted as the SIMT lowering's 16-lane slots: M * K * ceil(N/16)) is a loop over k in the
LLVM IR carrying the accumulator: b's row k and a's column k are read where they are used,
from memory when the dpas's operand is a 2-D load left there
(``operand_plan.rows_left_in_memory``, the SIMT planning), else as regions of the register at
offset k.  Unrolled, and in 16-lane FMA calls each with its own region reads and writes,
lightning_scan's f32 dpas were 9 MiB of SPIR-V.

Operand precision codes of ``dpas2`` (intel/vc-intrinsics; ESIMD's ``dpas_argument_type``):
u8 7, s8 8, bf16 9, f16 10, tf32 12.
"""
from __future__ import annotations

from llvmlite import ir

from cmlang.errors import CompileError
from cmlang.types import f32
from . import elementwise as ew
from .llvm_builtins import I16, I32
from .operand_plan import rows_left_in_memory
from .vc_memory import MatrixInMemory
from .vc_block2d import VNNIBlock, register_positions

DPAS_EXEC_SIZE = 16               # dpas N where the profile has no systolic unit (see _dpas_exec_size)
DPAS_DEPTH = 8                    # systolic depth: 8 dwords of K per row
MAX_REPEAT = 8                    # rows of a per instruction
PRECISION = {"u8": 7, "i8": 8, "bf16": 9, "f16": 10, "tf32": 12}     # vISA operand precisions
ELEMENTS_PER_DWORD = {"u8": 4, "i8": 4, "bf16": 2, "f16": 2, "tf32": 1}
FMA_PIECE = 16                    # lanes of one FMA call (GenxMath.fma: the VC library's widest)


def plan_rows_left_in_memory(fn, profile) -> set:
    """The 2-D loads a dpas loop of this lowering reads row by row (none where the profile's
    ``dpas_loop_fmas`` is 0): the SIMT planning with 16-lane FMA pieces as its slots."""
    return rows_left_in_memory(fn, FMA_PIECE, profile.dpas_loop_fmas)


def _precision_of(op, elem) -> str:
    return "tf32" if op.attrs.get("precision") == "tf32" else elem.name


class VCDpasLowering:
    """Needs from the lowering: ``b``, ``genx``, ``math``, ``profile``, ``operands``, the
    region helpers (``vc_regions``), ``counted_loop`` (``control_flow``) and the matrix
    reads of ``vc_memory`` (``load_matrix``, ``load_matrix_row``, ``load_matrix_column``)."""

    def op_dpas(self, op):
        acc_t, a_t, b_t = (v.type for v in op.operands)
        (m, k), n = a_t.shape, b_t.shape[1]
        acc, a, bm = self.operands(op)
        exec_size = self._dpas_unit(op)
        if exec_size:
            return self._dpas_systolic(op, acc, self.registers(a), self.registers(bm, systolic=True), m, k, n,
                                       exec_size)
        if acc_t.elem.is_int:
            return self._dpas_integer(acc, self.registers(a), self.registers(bm), a_t.elem, b_t.elem, m, k, n)
        if k > 1 and self.profile.dpas_loop_fmas and m * k * -(-n // FMA_PIECE) >= self.profile.dpas_loop_fmas:
            return self._dpas_fma_k_loop(op, acc, a, bm, m, k, n)
        return self._dpas_fma(op, acc, self.registers(a), self.registers(bm), m, k, n)

    def registers(self, x, systolic=False):
        """A dpas operand in registers (a 2-D load left in memory is read now); a b that
        VNNI-transforming messages read stays as it is for ``_dpas_systolic``."""
        if isinstance(x, VNNIBlock) and not systolic:
            return ew.from_memory(self.b, x.ptr.elem, self._gathered_load(
                x.op, x.ptr, register_positions(x.op.result.type.shape, False)))
        return self.load_matrix(x) if isinstance(x, MatrixInMemory) else x

    # ------------------------------------------------------------------ choosing the unit
    def _dpas_exec_size(self):
        """N of one dpas2 tile: the profile's systolic exec size (pvc 16, dg2 8); None for an
        Intel GPU without the unit (tgllp: FMAs; IGC rejects dpas there).  The profiles of
        no particular GPU (cpu, generic) keep the Xe-HPC width 16 this lowering always used
        (the host emulator of the tests runs it for the cpu profile)."""
        systolic = self.profile.systolic
        if systolic is not None:
            return systolic.exec_size
        return None if self.profile.native_device else DPAS_EXEC_SIZE

    def _dpas_unit(self, op):
        """The exec size of the dpas2 tiles for ``op``, or None where it is computed with
        FMAs / multiply-adds; a CompileError where an Intel GPU profile has the unit for
        the op's inputs but the shape (or tf32) cannot map."""
        a_t, b_t = op.operands[1].type, op.operands[2].type
        kinds = {_precision_of(op, a_t.elem), _precision_of(op, b_t.elem)}
        exec_size = self._dpas_exec_size()
        if exec_size is None or "f32" in kinds:
            return None
        systolic, native = self.profile.systolic, self.profile.native_device
        if systolic is not None:
            have = set(systolic.types) | ({"tf32"} if systolic.tf32 else set())
            if not kinds <= have:
                if native:
                    raise CompileError(f"cm.dpas with {'/'.join(sorted(kinds))} inputs: the systolic unit of "
                                       f"{self.profile.name} does not take them")
                return None
        kt = DPAS_DEPTH * ELEMENTS_PER_DWORD[kinds.pop()]
        (m, k), n = a_t.shape, b_t.shape[1]
        if n % exec_size or k % kt:
            if native:
                raise CompileError(
                    f"cm.dpas on the systolic unit of {self.profile.name} runs tiles of (1-8) x {exec_size} x {kt} "
                    f"for these inputs: N must be a multiple of {exec_size} and K of {kt}, got "
                    f"a[{m}, {k}] @ b[{k}, {n}]")
            return None
        return exec_size

    # ------------------------------------------------------------------ systolic
    def _dpas_bits(self, kind, elem, v):
        """Register values as the integers the unit reads: 16-bit patterns of f16/bf16, i8
        as they are, tf32 as the 32 bits of the f32 rounded to tf32."""
        b = self.b
        if kind == "tf32":
            return b.bitcast(ew.round_tf32(b, v), ew.like(v.type, I32))
        if kind == "bf16":
            return ew.to_memory(b, elem, v)
        if kind == "f16":
            return b.bitcast(v, ew.like(v.type, I16))
        return v            # i8 / u8

    def _dpas_systolic(self, op, acc, a, bm, m, k, n, exec_size):
        """acc[m,n] += a[m,k] @ b[k,n] as llvm.genx.dpas2 tiles of (<=8) x exec_size x kt."""
        b = self.b
        a_t, b_t = op.operands[1].type, op.operands[2].type
        a_kind, b_kind = _precision_of(op, a_t.elem), _precision_of(op, b_t.elem)
        per_dword = ELEMENTS_PER_DWORD[a_kind]
        kt, nt = DPAS_DEPTH * per_dword, exec_size
        a_bits = self._dpas_bits(a_kind, a_t.elem, a)
        if isinstance(bm, VNNIBlock):           # b read by VNNI-transforming messages (vc_block2d.py)
            b_tile_at = self.vnni_tiles(bm, nt).__getitem__
        else:
            b_bits = self._dpas_bits(b_kind, b_t.elem, bm)
            b_tile_at = lambda key: self._vnni(b_bits, key[0], key[1], n, nt, per_dword)   # noqa: E731
        for m0 in range(0, m, MAX_REPEAT):
            rc = min(MAX_REPEAT, m - m0)
            for n0 in range(0, n, nt):
                tile = self.rdregion(acc, rc * nt, n, nt, 1, m0 * n + n0)
                for k0 in range(0, k, kt):
                    a_tile = b.bitcast(self.rdregion(a_bits, rc * kt, k, kt, 1, m0 * k + k0),
                                       ir.VectorType(I32, rc * DPAS_DEPTH))
                    b_tile = b_tile_at((k0, n0))
                    args = [tile, b_tile, a_tile] + [ir.Constant(I32, v) for v in (
                        PRECISION[b_kind], PRECISION[a_kind], DPAS_DEPTH, rc, 1, 1)]
                    tile = self.genx(b, "dpas2", tile.type, args, [tile.type, tile.type, b_tile.type, a_tile.type])
                acc = self.wrregion(acc, tile, n, nt, 1, m0 * n + n0)
        return acc

    def _vnni(self, bits, k0, n0, n, nt, per_dword):
        """Rows k0 .. k0 + 8*per_dword - 1, columns n0 .. n0 + nt - 1 of b packed to VNNI:
        <8 * nt x i32>, dword (kk, j) holding b[k0 + per_dword*kk + t, n0 + j], t = 0 lowest."""
        if per_dword == 1:
            return self.rdregion(bits, DPAS_DEPTH * nt, n, nt, 1, k0 * n + n0)
        part = bits.type.element
        packed = ir.Constant(ir.VectorType(part, per_dword * DPAS_DEPTH * nt), ir.Undefined)
        rows = [self.rdregion(bits, DPAS_DEPTH * nt, per_dword * n, nt, 1, (k0 + t) * n + n0)
                for t in range(per_dword)]
        for t, part_rows in enumerate(rows):
            packed = self.wrregion(packed, part_rows, per_dword * nt, nt, per_dword, t)
        return self.b.bitcast(packed, ir.VectorType(I32, DPAS_DEPTH * nt))

    # ------------------------------------------------------------------ without the unit
    def _dpas_integer(self, acc, a, bm, a_elem, b_elem, m, k, n):
        """Multiply-adds in i32 (wrapping): row i of acc += a[i, kk] * row kk of b."""
        b = self.b
        a32, b32 = self.int_to(a, a_elem, I32), self.int_to(bm, b_elem, I32)
        rows = []
        for i in range(m):
            row = self.piece(acc, i * n, n)
            for kk in range(k):
                scale = self.rdregion(a32, n, 0, n, 0, i * k + kk)
                row = b.add(row, b.mul(scale, self.piece(b32, kk * n, n)))
            rows.append((row, n))
        return self.concat(rows, I32)

    def _dpas_inputs_f32(self, op, elem, v):
        """Inputs as the f32 values the products take (tf32: rounded first)."""
        if elem.name != "f32":
            return ew.convert(self.b, self.math, elem, f32, v)
        return ew.round_tf32(self.b, v) if op.attrs.get("precision") == "tf32" else v

    def _outer_product_step(self, acc, column, row, m, n):
        """acc[m, n] + column[i] * row[j] for every (i, j): one multiply and one add on the
        whole accumulator (products and sums in f32, as the op defines them); IGC splits
        them into instructions of its own width, the regions become operand regions."""
        b = self.b
        column_wide = self.rdregion(column, m * n, 1, n, 0, 0)     # column[i] along row i
        row_wide = self.rdregion(row, m * n, 0, n, 1, 0)           # the row in every row
        return b.fadd(acc, b.fmul(column_wide, row_wide))

    def _dpas_fma(self, op, acc, a, bm, m, k, n):
        """Unrolled over k: acc += a[:, kk] (x) b[kk, :] for every kk."""
        a = self._dpas_inputs_f32(op, op.operands[1].type.elem, a)
        bm = self._dpas_inputs_f32(op, op.operands[2].type.elem, bm)
        for kk in range(k):
            acc = self._outer_product_step(acc, self.rdregion(a, m, k, 1, 0, kk), self.piece(bm, kk * n, n), m, n)
        return acc

    def _dpas_fma_k_loop(self, op, acc, a, bm, m, k, n):
        """The same as a loop over k carrying acc: per iteration row k of b and column k of
        a, from memory where the operand was left there, else regions at offset k."""
        a_elem, b_elem = op.operands[1].type.elem, op.operands[2].type.elem

        def column_of_a(kk):
            if isinstance(a, MatrixInMemory):
                return self.load_matrix_column(a, kk)
            return self.rdregion(a, m, k, 1, 0, 0, kk)          # a[:, kk]: m rows of width 1

        def row_of_b(kk):
            if isinstance(bm, MatrixInMemory):
                return self.load_matrix_row(bm, kk)
            return self.rdregion(bm, n, n, n, 1, 0, self.b.mul(kk, ir.Constant(I32, n)))

        def step(kk, carried):
            brow = self._dpas_inputs_f32(op, b_elem, row_of_b(kk))
            acol = self._dpas_inputs_f32(op, a_elem, column_of_a(kk))
            return [self._outer_product_step(carried[0], acol, brow, m, n)]

        return self.counted_loop(k, [acc], step)[0]
