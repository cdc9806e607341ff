"""spirv-vc registers past 16 KiB in conversions: a strided 16-bit ``cm.load`` of more than
4096 bf16 elements (InfLLM-V2's attention kernel in the CPU's shape reads 128 x 64 keys so),
or an ``astype`` of such a register.

Every bf16 register is widened to f32 when loaded, and the Khronos translator reads a vector
conversion back as a call of an OpenCL ``convert_*`` builtin, which LLVM's verifier refuses
when an operand is aligned above 16 KiB ("Incorrect alignment of return type to called
function"): such modules did not validate.  The lowering converts large registers in pieces
(``vc_builder.py``).  Checked: the module validates, IGC builds it for PVC, and the emulator
(tests/vc_emulator.py) and the interpreter compute what numpy does."""
import re

import numpy as np
import pytest

import cmlang as cm
from cmlang import bf16, f16, f32, i32
from cmlang.codegen import intel_gpu, vc_translate
from cmlang.codegen import vc_builder
from cmlang.codegen.vc_builder import CONVERSION_BYTES
from cmlang.runtime.profiles import get_profile
from test_systolic import bf16_bits, bf16_value
from test_vc_block2d_messages import run_emulated

needs_ocloc = pytest.mark.skipif(not intel_gpu.available(),
                                 reason="Intel's offline compiler (ocloc) is not installed")

PVC = get_profile("pvc")
PITCH = 72                  # elements between rows in memory: a strided load, not a contiguous one


def strided_load(T, rows, cols):
    def vc_big_strided_load(src: cm.ptr[T], dst: cm.ptr[T], pitch: i32):
        cm.store(dst, 0, cm.load(src, 0, (rows, cols), pitch), cols)
    return cm.kernel(simd=16)(vc_big_strided_load)


def strided_load_dpas(rows):
    """acc (8 x 16) += a (8 x rows) @ the first 16 columns of a (rows x 64) strided bf16 load."""
    def vc_big_load_dpas(a: cm.ptr[bf16], b: cm.ptr[bf16], c: cm.ptr[f32], pitch: i32):
        tile = cm.load(b, 0, (rows, 64), pitch)
        acc = cm.dpas(cm.zeros(cm.matrix[f32, 8, 16]), cm.load(a, 0, (8, rows), rows), tile[:, 0:16])
        cm.store(c, 0, acc + cm.reduce_sum(tile[rows - 1].astype(f32)), 16)
    return cm.kernel(simd=16)(vc_big_load_dpas)


def narrowing(n):
    """A 32 KiB f32 register converted to f16: an fptrunc past the limit, not from a load."""
    def vc_big_narrowing(src: cm.ptr[f32], dst: cm.ptr[f16]):
        cm.store(dst, 0, cm.load(src, 0, n).astype(f16))
    return cm.kernel(simd=16)(vc_big_narrowing)


CASES = {       # name -> the kernel
    "bf16 128x64": (lambda: strided_load(bf16, 128, 64)),
    "bf16 96x64": (lambda: strided_load(bf16, 96, 64)),      # 6144 elements: not a power of two
    "f16 128x64": (lambda: strided_load(f16, 128, 64)),
    "bf16 dpas 128": (lambda: strided_load_dpas(128)),
    "f32->f16 8192": (lambda: narrowing(8192)),
}

_CONVERSION = re.compile(r"= (?:zext|sext|trunc|fpext|fptrunc|fptosi|fptoui|sitofp|uitofp) "
                         r"<(\d+) x (\w+)> .* to <(\d+) x (\w+)>")
_BYTES = {"i1": 1, "i8": 1, "i16": 2, "half": 2, "i32": 4, "float": 4, "i64": 8, "double": 8}


def conversion_bytes(llvm_ir):
    """The largest operand or result, in bytes, of the vector conversions in a module."""
    sizes = [int(m.group(1)) * _BYTES[m.group(2)] for m in _CONVERSION.finditer(llvm_ir)]
    sizes += [int(m.group(3)) * _BYTES[m.group(4)] for m in _CONVERSION.finditer(llvm_ir)]
    return max(sizes)


@pytest.mark.parametrize("case", CASES)
def test_large_registers_convert_in_pieces_and_validate(case):
    k = CASES[case]()
    ck = k.specialization((), "spirv-vc", PVC)      # CompileError before: read-back refused it
    assert conversion_bytes(ck.llvm_ir) <= CONVERSION_BYTES
    assert vc_translate.validate(ck.spirv) in ("spirv-val", "read-back")


@needs_ocloc
@pytest.mark.parametrize("case", ["bf16 128x64", "bf16 dpas 128"])
def test_large_bf16_loads_build_with_igc(case):
    ck = CASES[case]().compile(target="spirv-vc", device="pvc")
    s = ck.stats
    print(case, s)
    assert s["instructions"] > 0 and s["messages"] > 0
    assert s["dpas"] >= (1 if "dpas" in case else 0)


@pytest.mark.parametrize("T,rows,cols", [(bf16, 5, 24), (f16, 5, 24)], ids=["bf16 5x24", "f16 5x24"])
def test_conversions_in_pieces_compute_like_numpy(monkeypatch, T, rows, cols):
    """The pieces' arithmetic in the emulator, with a limit small enough for registers it
    runs in reasonable time (the limit's registers of 4096+ elements take the emulator's JIT
    minutes): a strided load, a widening and a narrowing in pieces of 16 and 8 elements."""
    monkeypatch.setenv("CMLANG_CACHE", "0")
    monkeypatch.setattr(vc_builder, "CONVERSION_BYTES", 64)

    def vc_pieces(src: cm.ptr[T], dst: cm.ptr[T], wide: cm.ptr[f32], pitch: i32):
        m = cm.load(src, 0, (rows, cols), pitch)
        cm.store(dst, 0, m, cols)
        cm.store(wide, 0, m.astype(f32) * 2.0, cols)
    k = cm.kernel(simd=16)(vc_pieces)
    assert conversion_bytes(k.specialization((), "spirv-vc", PVC).llvm_ir) <= 64
    src32 = np.random.default_rng(rows).uniform(-4, 4, rows * PITCH).astype(np.float32)
    src = bf16_bits(src32) if T == bf16 else src32.astype(np.float16)
    want = src.reshape(rows, PITCH)[:, :cols]
    got = run_emulated(k, [src, np.zeros(rows * cols, src.dtype), np.zeros(rows * cols, np.float32), PITCH])
    np.testing.assert_array_equal(got[1].reshape(rows, cols), want)
    value = bf16_value(want) if T == bf16 else want.astype(np.float32)
    np.testing.assert_array_equal(got[2].reshape(rows, cols), value * 2)
