"""Every SPIR-V module is validated where it is made (``codegen.compile_function``), so an
invalid one is a ``CompileError`` naming the kernel instead of a driver failure at launch.

The case that needed it: a port of Intel's ``histogram_256_slm`` compiled to SPIR-V that
spirv-val rejects (``OpIMul %uint %width %ulong``) and the driver failed to link ("Invalid
binary operator record"). LLVM's loop strength reduction, run inside the SPIR-V backend,
rewrote the widened induction value into ``zext(trunc i64 to i8) to i32``; the backend's
legalizer turns that into a trunc it then types like its source, dropping it. The backend
no longer runs LSR; the issue kernel's shape with i32/u32/i64/u16 row indices, several
strides and trip counts checks the class.
"""
import shutil

import numpy as np
import pytest

import cmlang as cm
from cmlang import i32, i64, u8, u16, u32, vector
from cmlang.codegen import spirv as cg_spirv
from cmlang.errors import CompileError

HAVE_SPIRV_VAL = shutil.which("spirv-val") is not None
DATA = np.random.default_rng(7).integers(0, 256, 8192, dtype=np.uint8)


@cm.kernel(simd=16)
def histogram_rows(inbuf: cm.ptr[cm.u8], out: cm.ptr[cm.u8], width: cm.i32):
    v_pos = cm.group_id(1) * 512
    for y in range(64):
        cm.store(out, y * 16, cm.load(inbuf, v_pos * width, 16))
        v_pos += 8


@cm.kernel(simd=16)
def histogram_rows_per_group(inbuf: cm.ptr[cm.u8], out: cm.ptr[cm.u8], width: cm.i32):
    v_pos = cm.group_id(1) * 512
    for y in range(64):
        cm.store(out, (cm.group_id(1) * 64 + y) * 16, cm.load(inbuf, v_pos * width, 16))
        v_pos += 8


def test_the_issue_kernel_is_valid_spirv():
    ck = histogram_rows.compile()
    assert cg_spirv.validate(ck.spirv) == ("spirv-val" if HAVE_SPIRV_VAL else "structure")
    cg_spirv.check_structure(ck.spirv)


def test_the_issue_kernel_runs(mode):
    # Both groups of the 2-D grid store the same 64 rows of out: the input repeats every
    # 512 * width bytes, so whichever stores last, each row is the same.
    width = 3
    period = DATA[:512 * width]
    inbuf = np.concatenate([period, period, period])
    out = np.zeros(64 * 16, np.uint8)
    histogram_rows[1, 2](inbuf, out, width)
    expected = np.concatenate([inbuf[8 * y * width:8 * y * width + 16] for y in range(64)])
    np.testing.assert_array_equal(out, expected)


def test_each_group_reads_its_own_rows(mode):
    width = 5
    inbuf = np.resize(DATA, (512 + 8 * 64) * width + 16)
    out = np.zeros(2 * 64 * 16, np.uint8)
    histogram_rows_per_group[1, 2](inbuf, out, width)
    expected = np.concatenate([inbuf[(512 * g + 8 * y) * width:(512 * g + 8 * y) * width + 16]
                               for g in range(2) for y in range(64)])
    np.testing.assert_array_equal(out, expected)


# --- the class: index arithmetic mixing widths in loops --------------------------------------

@cm.kernel(simd=16)
def strided_rows(inbuf: cm.ptr[u8], out: cm.ptr[u8], width: i32,
                 T: cm.constexpr, S: cm.constexpr, STEP: cm.constexpr, N: cm.constexpr):
    """The issue kernel's shape with the row index of type T, the group's first row S and
    the row step STEP: LLVM widens, narrows and strength-reduces the index differently."""
    p = (cm.group_id(1) * S).astype(T)
    for y in range(N):
        cm.store(out, (cm.group_id(1) * N + y) * 16, cm.load(inbuf, p * width.astype(T), 16))
        p = (p + STEP).astype(T)


def strided_rows_reference(inbuf, width, S, STEP, N, groups):
    return np.concatenate([inbuf[(S * g + STEP * y) * width:(S * g + STEP * y) * width + 16]
                           for g in range(groups) for y in range(N)])


# Before the fix the i32 and u32 cases with N = 64 (S = 512 or 256) were invalid SPIR-V.
STRIDED_CASES = [(T, S, STEP, N) for T in (i32, u32, i64, u16) for S in (512, 256, 3)
                 for STEP in (1, 8) for N in (64, 7)]


@pytest.mark.parametrize("T, S, STEP, N", STRIDED_CASES, ids=lambda v: str(v))
def test_strided_rows_are_valid_spirv(T, S, STEP, N):
    ck = strided_rows.compile(T=T, S=S, STEP=STEP, N=N)    # validated where it is made
    cg_spirv.check_structure(ck.spirv)


@pytest.mark.parametrize("T, S, STEP, N", [c for c in STRIDED_CASES if c[1] != 256], ids=lambda v: str(v))
def test_strided_rows_run_right(mode, T, S, STEP, N):
    width = 3
    inbuf = np.resize(DATA, (S + STEP * N) * width + 16)
    out = np.zeros(2 * N * 16, np.uint8)
    strided_rows[1, 2](inbuf, out, width, T, S, STEP, N)
    np.testing.assert_array_equal(out, strided_rows_reference(inbuf, width, S, STEP, N, 2))


# --- an invalid module never reaches a driver --------------------------------------------

# zext(trunc i64 to i8) to i32: the shape LSR made, which the backend mis-lowers.
DROPPED_TRUNC_IR = """
define spir_kernel void @k(ptr addrspace(1) %out, i32 %w, i64 %s) {
entry:
  %t = trunc i64 %s to i8
  %z = zext i8 %t to i32
  %m = mul i32 %w, %z
  store i32 %m, ptr addrspace(1) %out
  ret void
}
"""


def dropped_trunc_module():
    """SPIR-V as the backend makes it from DROPPED_TRUNC_IR without optimization."""
    ir = (f'target datalayout = "{cg_spirv.data_layout()}"\n'
          f'target triple = "spirv64-unknown-unknown"\n' + DROPPED_TRUNC_IR)
    return cg_spirv.llvm_to_spirv(ir, opt_level=0)[1]


def test_the_structural_check_sees_a_dropped_trunc():
    with pytest.raises(CompileError, match=r"OpBitwiseAnd %\d+ has a 32-bit result but operand %\d+ is 64-bit"):
        cg_spirv.check_structure(dropped_trunc_module())


def test_spirv_val_sees_a_dropped_trunc():
    if not HAVE_SPIRV_VAL:
        pytest.skip("spirv-val is not installed")
    with pytest.raises(CompileError, match="spirv-val rejected the module"):
        cg_spirv.validate(dropped_trunc_module())


def test_the_structural_check_sees_a_cut_module():
    good = histogram_rows.compile().spirv
    cg_spirv.check_structure(good)
    overlong = good[:-4] + (good[-4:][:2] + (3).to_bytes(2, "little"))  # OpFunctionEnd, 3 words
    for cut in (good[:-8], good[:-6], overlong):
        with pytest.raises(CompileError, match="malformed SPIR-V"):
            cg_spirv.check_structure(cut)


@pytest.mark.parametrize("validator", ["spirv-val", "structure"])
def test_an_invalid_module_is_a_compile_error_naming_the_kernel(monkeypatch, validator):
    if validator == "spirv-val" and not HAVE_SPIRV_VAL:
        pytest.skip("spirv-val is not installed")
    if validator == "structure":
        monkeypatch.setattr(cg_spirv, "_run_tool", lambda *args: None)   # as without spirv-val
    bad = dropped_trunc_module()
    monkeypatch.setattr(cg_spirv, "llvm_to_spirv", lambda text, opt_level=2, allowed=frozenset(), kernel="?": (text, bad))

    @cm.kernel(simd=16)
    def corrupted_kernel(out: cm.ptr[i32], w: i32):
        cm.store(out, 0, cm.full(vector[i32, 16], w))

    with pytest.raises(CompileError, match=r"kernel 'corrupted_kernel' compiled to an invalid "
                                           r"spirv module") as info:
        corrupted_kernel.compile()
    assert ("spirv-val rejected" if validator == "spirv-val" else "32-bit result") in str(info.value)
