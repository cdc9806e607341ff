"""cm.load_2d / cm.store_2d / cm.prefetch_2d: 2-D block IO with surface bounds.

A block of a surface ``width`` x ``height`` elements (rows ``pitch`` apart) at column x,
row y: elements outside the surface read 0 and are not written; ``transpose=True`` gives
the block transposed.  Numbers against a numpy reference on the default device, in the
interpreter and (tests/test_vc.py's way) in the vector-compute emulator; the PVC 2-D block
messages in IGC's ISA (skipped only without ocloc)."""
import re

import numpy as np
import pytest

import cmlang as cm
from cmlang import f16, f32, i32
from cmlang.codegen import intel_gpu, spirv as cg_spirv
from cmlang.errors import CompileError
from cmlang.ir.parser import parse_function
from cmlang.ir.printer import print_function
from cmlang.runtime.profiles import get_profile

needs_ocloc = pytest.mark.skipif(not intel_gpu.available(),
                                 reason="Intel's offline compiler (ocloc) is not installed")

SURFACE_ROWS = 64           # rows of the buffer holding the surface (more than any height)


def block_reference(src, shape, x, y, width, height, pitch, transpose=False):
    """numpy: the block at (x, y), zero outside the surface."""
    rows, cols = shape
    out = np.zeros(shape, src.dtype)
    for i in range(rows):
        for j in range(cols):
            r, c = y + i, x + j
            if 0 <= r < height and 0 <= c < width:
                out[i, j] = src[r * pitch + c]
    return out.T.copy() if transpose else out


def store_reference(dst, m, x, y, width, height, pitch):
    dst = dst.copy()
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            r, c = y + i, x + j
            if 0 <= r < height and 0 <= c < width:
                dst[r * pitch + c] = m[i, j]
    return dst


def block_copy(T, rows, cols, transpose, simd, interpret=False):
    """out[dense] = load_2d(src block); the block (times 2) stored back into dst at the
    same place; a prefetch of the block, which changes nothing."""
    out_cols = rows if transpose else cols

    def copy_block(src: cm.ptr[T], out: cm.ptr[T], dst: cm.ptr[T], x: i32, y: i32, w: i32, h: i32,
                   pitch: i32):
        cm.prefetch_2d(src, (rows, cols), x, y, w, h, pitch)
        m = cm.load_2d(src, (rows, cols), x, y, w, h, pitch, transpose=transpose)
        cm.store(out, 0, m, out_cols)
        back = cm.load_2d(src, (rows, cols), x, y, w, h, pitch)
        cm.store_2d(dst, back + back, x, y, w, h, pitch)
    return cm.kernel(simd=simd, interpret=interpret)(copy_block)


# (x, y, width, height): inside, at the right/bottom edges, negative x and y, all outside
PLACES = [(0, 0, 40, 30), (3, 2, 40, 30), (30, 25, 37, 29), (-5, -3, 40, 30), (-2, 4, 9, 6),
          (50, 0, 40, 30), (0, 40, 40, 30)]


def run_case(T, rows, cols, transpose, simd, interpret, place, pitch=48):
    x, y, w, h = place
    dtype = np.float16 if T == f16 else np.float32
    rng = np.random.default_rng(abs(hash((rows, cols, place))) % 2**32)
    src = rng.uniform(-8, 8, SURFACE_ROWS * pitch).astype(dtype)
    out = np.zeros(rows * cols, dtype)
    dst = rng.uniform(-8, 8, SURFACE_ROWS * pitch).astype(dtype)
    want_dst = store_reference(dst, 2 * block_reference(src, (rows, cols), x, y, w, h, pitch), x, y, w, h, pitch)
    block_copy(T, rows, cols, transpose, simd, interpret)[1](src, out, dst, x, y, w, h, pitch)
    want = block_reference(src, (rows, cols), x, y, w, h, pitch, transpose)
    np.testing.assert_array_equal(out.reshape(want.shape), want)
    np.testing.assert_array_equal(dst, want_dst)


@pytest.mark.parametrize("interpret", [False, True], ids=["device", "interpreter"])
@pytest.mark.parametrize("place", PLACES, ids=lambda p: "x%d,y%d,w%d,h%d" % p)
@pytest.mark.parametrize("T,rows,cols,transpose,simd", [
    (f32, 4, 16, False, 16), (f32, 5, 7, False, 16), (f32, 8, 8, True, 8), (f16, 8, 16, False, 16),
    (f16, 6, 16, True, 16), (f32, 3, 20, True, 16)], ids=lambda v: str(v))
def test_block_io_matches_numpy(interpret, place, T, rows, cols, transpose, simd):
    run_case(T, rows, cols, transpose, simd, interpret, place)


def test_transposed_load_has_the_transposed_shape():
    def k(src: cm.ptr[f32], out: cm.ptr[f32]):
        m = cm.load_2d(src, (2, 3), 0, 0, 3, 2, 3, transpose=True)    # matrix[f32, 3, 2]
        cm.store(out, 0, m, 2)
    src = np.arange(6, dtype=np.float32)
    out = np.zeros(6, np.float32)
    cm.kernel(simd=8)(k)[1](src, out)
    np.testing.assert_array_equal(out.reshape(3, 2), src.reshape(2, 3).T)


# --- errors --------------------------------------------------------------------------------

def test_bad_arguments_are_errors_at_their_place():
    def bad_shape(src: cm.ptr[f32]):
        cm.load_2d(src, 8, 0, 0, 8, 8, 8)

    def bad_transpose(src: cm.ptr[f32]):
        cm.load_2d(src, (8, 8), 0, 0, 8, 8, 8, transpose=1)

    def bad_store(src: cm.ptr[f32]):
        cm.store_2d(src, 1.0, 0, 0, 8, 8, 8)

    def bad_x(src: cm.ptr[f32]):
        cm.load_2d(src, (8, 8), 0.5, 0, 8, 8, 8)
    for fn, message in ((bad_shape, "cm.load_2d: the block shape must be (rows, cols)"),
                        (bad_transpose, "cm.load_2d: transpose must be True or False"),
                        (bad_store, "cm.store_2d stores a matrix"),
                        (bad_x, "cm.load_2d: x must be an integer scalar")):
        with pytest.raises(CompileError, match=re.escape(message)) as e:
            cm.kernel(simd=16)(fn).compile()
        assert "test_block2d.py:" in str(e.value)


def test_the_ops_print_and_parse():
    fn = block_copy(f32, 4, 16, True, 16).ir_function()
    text = print_function(fn)
    for opcode in ("block_load2d", "block_store2d", "block_prefetch2d"):
        assert opcode in text
    assert "transpose=1" in text and "rows=4, cols=16" in text
    assert print_function(parse_function(text)) == text


# --- Intel GPU ISA ---------------------------------------------------------------------------

def f16_block(transpose=False):
    def load_f16_block(src: cm.ptr[f16], out: cm.ptr[f16], x: i32, y: i32, w: i32, h: i32, pitch: i32):
        m = cm.load_2d(src, (8, 16), x, y, w, h, pitch, transpose=transpose)
        cm.store(out, 0, m, 16 if not transpose else 8)
    return cm.kernel(simd=16)(load_f16_block)


def test_the_block_read_builtin_is_an_import_only_on_pvc():
    pvc = f16_block().specialization((), "spirv", get_profile("pvc")).binary.spirv
    assert cg_spirv.imported_functions(pvc) == ["__builtin_IB_subgroup_block_read_flat_u16_m8k16v1"]
    for profile in ("cpu", "dg2"):
        assert cg_spirv.imported_functions(
            f16_block().specialization((), "spirv", get_profile(profile)).binary.spirv) == []


@needs_ocloc
def test_a_16_bit_block_load_is_a_2d_block_message_on_pvc():
    ck = f16_block().compile(target="spirv", device="pvc")
    assert ck.stats["block2d"] == 1 and "load_block2d.ugm.d16" in ck.isa
    assert ck.stats["external_calls"] == 0 and ck.stats["spill_bytes"] == 0


@needs_ocloc
def test_dg2_has_no_2d_block_messages_and_uses_per_lane_loads():
    ck = f16_block().compile(target="spirv", device="dg2")
    assert ck.stats["block2d"] == 0 and ck.stats["external_calls"] == 0 and ck.stats["messages"] > 0


# --- vector compute (spirv-vc) in the emulator ------------------------------------------------

@pytest.mark.parametrize("place", PLACES, ids=lambda p: "x%d,y%d,w%d,h%d" % p)
@pytest.mark.parametrize("T,rows,cols,transpose", [
    (f32, 4, 16, False), (f32, 5, 7, True), (f16, 8, 16, False), (f16, 3, 20, True)], ids=lambda v: str(v))
def test_vector_compute_block_io_matches_numpy_in_the_emulator(place, T, rows, cols, transpose):
    from vc_emulator import run_isolated
    x, y, w, h = place
    pitch = 48
    dtype = np.float16 if T == f16 else np.float32
    rng = np.random.default_rng(abs(hash((rows, cols, place))) % 2**32)
    src = rng.uniform(-8, 8, SURFACE_ROWS * pitch).astype(dtype)
    out = np.zeros(rows * cols, dtype)
    dst = rng.uniform(-8, 8, SURFACE_ROWS * pitch).astype(dtype)
    kernel = block_copy(T, rows, cols, transpose, 16)
    args = [src, out, dst, x, y, w, h, pitch]
    got = run_isolated(kernel.specialization((), "spirv-vc"), (1,), None, [a.copy() if isinstance(a, np.ndarray) else a for a in args])
    want = block_reference(src, (rows, cols), x, y, w, h, pitch, transpose)
    np.testing.assert_array_equal(got[1].reshape(want.shape), want)
    np.testing.assert_array_equal(
        got[2], store_reference(dst, 2 * block_reference(src, (rows, cols), x, y, w, h, pitch), x, y, w, h, pitch))


@needs_ocloc
@pytest.mark.parametrize("device", ["pvc", "dg2"])
def test_vector_compute_block_io_builds_with_igc(device):
    ck = block_copy(f16, 8, 16, True, 16).compile(target="spirv-vc", device=device)
    assert ck.stats["messages"] > 0 and ck.stats["spill_bytes"] == 0 and ck.stats["external_calls"] == 0


@pytest.mark.parametrize("place,pitch", [((0, 0, 20, 30), 48), ((0, 0, 40, 30), 44), ((3, 0, 40, 0), 48)],
                         ids=["narrow", "odd-pitch", "no-rows"])
@pytest.mark.parametrize("interpret", [False, True], ids=["device", "interpreter"])
def test_surfaces_the_block_message_cannot_take_still_read_right(place, pitch, interpret):
    # Surfaces PVC's block message cannot take (base, width, pitch, height limits): same numbers.
    run_case(f16, 8, 16, False, 16, interpret, place, pitch)


# --- the PVC lowering run on the CPU runtime ---------------------------------------------------
#
# The block-read builtin defined in LLVM IR by its per-lane meaning (lane l, element r: the
# 16-bit element at column x + l, row y + r of the surface given in bytes, 0 outside), so
# that the PVC lowering -- its operands, the register layout and the run-time choice between
# the message and per-lane loads -- runs here.  With ``constant`` set, the builtin returns
# that value instead: then only blocks that took the message path show it.

def define_block_read(fn, constant=None):
    from llvmlite import ir
    from cmlang.codegen.llvm_builtins import I32, I64
    i16 = ir.IntType(16)
    base, width_m1, height_m1, pitch_m1, coord = fn.args
    rows = fn.function_type.return_type.count if isinstance(fn.function_type.return_type, ir.VectorType) else 1
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    lane = b.call(_lane_id(fn.module), [])
    x, y = (b.extract_element(coord, ir.Constant(I32, i)) for i in (0, 1))
    col = b.add(x, lane)
    out = ir.Constant(fn.function_type.return_type, ir.Undefined)
    for r in range(rows):
        row = b.add(y, ir.Constant(I32, r))
        inside = b.and_(b.and_(b.icmp_signed(">=", col, ir.Constant(I32, 0)),
                               b.icmp_signed("<", b.mul(col, ir.Constant(I32, 2)), b.add(width_m1, ir.Constant(I32, 1)))),
                        b.and_(b.icmp_signed(">=", row, ir.Constant(I32, 0)), b.icmp_signed("<=", row, height_m1)))
        offset = b.add(b.mul(b.sext(row, I64), b.sext(b.add(pitch_m1, ir.Constant(I32, 1)), I64)),
                       b.mul(b.sext(col, I64), ir.Constant(I64, 2)))
        address = b.select(inside, b.add(base, offset), base)
        value = b.load(b.inttoptr(address, ir.PointerType(i16, 1)), typ=i16) if constant is None \
            else ir.Constant(i16, constant)
        value = b.select(inside, value, ir.Constant(i16, 0)) if constant is None else value
        out = value if rows == 1 else b.insert_element(out, value, ir.Constant(I32, r))
    b.ret(out)


def _lane_id(module):
    from llvmlite import ir
    from cmlang.codegen.llvm_builtins import I32
    name = "_Z22get_sub_group_local_idv"
    fn = module.globals.get(name) or ir.Function(module, ir.FunctionType(I32, []), name)
    fn.calling_convention = "spir_func"
    return fn


def run_pvc_lowering_here(kernel, args, constant=None):
    import dataclasses
    from cmlang.codegen import simt
    from cmlang.codegen.target import CodegenResult
    from cmlang.kernel import _launch_binary, make_binary
    profile = dataclasses.replace(get_profile("cpu"), name="cpu-with-block2d", block2d=get_profile("pvc").block2d)
    fn = kernel.ir_function(())
    lowering = simt.KernelLowering(fn, cg_spirv.data_layout(), profile)
    lowering.run()
    reads = [f for f in lowering.module.functions if f.name.startswith("__builtin_IB_subgroup_block_read")]
    assert [f.name for f in reads] == ["__builtin_IB_subgroup_block_read_flat_u16_m8k16v1"]
    for f in reads:
        define_block_read(f, constant)
    final, spirv = cg_spirv.llvm_to_spirv(str(lowering.module))
    result = CodegenResult(final, spirv, fn.name, cg_spirv.extensions(spirv), "spirv", fn.simd, "")
    _launch_binary(make_binary(fn, result, "cpu"), (1,), None, args).wait()


@pytest.mark.parametrize("place,pitch,message", [
    ((0, 0, 40, 30), 48, True), ((30, 25, 37, 29), 48, True), ((-5, -3, 40, 30), 64, True),
    ((50, 0, 40, 30), 48, True), ((0, 0, 20, 30), 48, False), ((0, 0, 40, 30), 44, False),
    ((2, 1, 40, 0), 48, False)], ids=lambda v: str(v))
def test_the_pvc_block_message_path_runs_here_with_an_emulated_builtin(place, pitch, message):
    x, y, w, h = place
    rng = np.random.default_rng(5)
    src = rng.uniform(-8, 8, SURFACE_ROWS * pitch).astype(np.float16)
    want = block_reference(src, (8, 16), x, y, w, h, pitch)
    out = np.zeros(8 * 16, np.float16)
    run_pvc_lowering_here(f16_block(), [src, out, x, y, w, h, pitch])
    np.testing.assert_array_equal(out.reshape(8, 16), want)
    # which path ran: a builtin that answers 0x3C00 (1.0) everywhere shows through only
    # where the surface met the message's limits
    out = np.zeros(8 * 16, np.float16)
    run_pvc_lowering_here(f16_block(), [src, out, x, y, w, h, pitch], constant=0x3C00)
    np.testing.assert_array_equal(out.reshape(8, 16), np.ones((8, 16), np.float16) if message else want)
