"""PVC's 2-D block messages in vector-compute code (spirv-vc): ``cm.load_2d`` /
``cm.store_2d`` / ``cm.prefetch_2d`` on a profile with the unit are LSC 2-D block messages
(``llvm.genx.lsc.load2d/store2d/prefetch2d.stateless``), split to the hardware's limits, with
a run-time check of the surface that falls back to predicated gathers and scatters.

Checked in IGC's ISA (block2d messages, no spill) and run in the vector-compute emulator,
whose definitions of the 2-D intrinsics follow their documented meaning (tests/vc_emulator.py),
against numpy: blocks inside the surface, partly and wholly outside, and surfaces the
messages cannot take.  DG2 has no such messages and keeps the gathers."""
import numpy as np
import pytest

import cmlang as cm
from cmlang import f16, f32, i32, u8
from cmlang.codegen import intel_gpu
from cmlang.runtime.profiles import get_profile
from test_block2d import SURFACE_ROWS, block_reference, store_reference

needs_ocloc = pytest.mark.skipif(not intel_gpu.available(),
                                 reason="Intel's offline compiler (ocloc) is not installed")


def loads(T, rows, cols, transpose=False):
    def vc_block_load(src: cm.ptr[T], out: cm.ptr[T], x: i32, y: i32, w: i32, h: i32, pitch: i32):
        m = cm.load_2d(src, (rows, cols), x, y, w, h, pitch, transpose=transpose)
        cm.store(out, 0, m, rows if transpose else cols)
    return cm.kernel(simd=16)(vc_block_load)


def stores(T, rows, cols):
    def vc_block_store(src: cm.ptr[T], dst: cm.ptr[T], x: i32, y: i32, w: i32, h: i32, pitch: i32):
        cm.prefetch_2d(dst, (rows, cols), x, y, w, h, pitch)
        cm.store_2d(dst, cm.load(src, 0, (rows, cols), cols), x, y, w, h, pitch)
    return cm.kernel(simd=16)(vc_block_store)


def lsc_calls(kernel, device, name):
    ir_text = kernel.specialization((), "spirv-vc", get_profile(device)).llvm_ir
    return sum(1 for line in ir_text.splitlines() if "call" in line and f"llvm.genx.lsc.{name}" in line)


# --- which messages -------------------------------------------------------------------------

@pytest.mark.parametrize("make,name,count", [
    (lambda: loads(f16, 8, 16), "load2d", 1),
    (lambda: loads(f16, 40, 48), "load2d", 4),         # rows 32 + 8, columns 32 + 16 (64 bytes a row)
    (lambda: loads(f32, 8, 20), "load2d", 2),          # columns 16 + 4
    (lambda: loads(f32, 16, 12, True), "load2d", 2),   # transposed: 8 + 4 block columns
    (lambda: stores(f32, 16, 32), "store2d", 4),       # rows 8 + 8, columns 16 + 16
    (lambda: stores(f32, 16, 32), "prefetch2d", 2),
], ids=["f16 8x16", "f16 40x48", "f32 8x20", "f32 16x12 T", "f32 store 16x32", "f32 prefetch 16x32"])
def test_blocks_split_into_messages_within_the_limits(make, name, count):
    k = make()
    assert lsc_calls(k, "pvc", name) == count
    assert lsc_calls(k, "dg2", name) == 0


def test_shapes_the_messages_cannot_take_keep_the_gathers():
    # a transposed 16-bit block of an odd number of columns (read as dwords otherwise:
    # test_vc_block2d_vnni.py) and a row of 2 bytes (a message row is at least a dword)
    assert lsc_calls(loads(f16, 16, 15, True), "pvc", "load2d") == 0
    assert lsc_calls(loads(f16, 4, 1), "pvc", "load2d") == 0


# --- IGC's ISA ---------------------------------------------------------------------------------

ISA_CASES = [
    ("f16 load 8x16", lambda: loads(f16, 8, 16), 1),
    ("f32 load 8x16", lambda: loads(f32, 8, 16), 1),
    ("f32 transposed load 16x8", lambda: loads(f32, 16, 8, True), 1),
    ("f16 store 8x16 with prefetch", lambda: stores(f16, 8, 16), 2),
    ("f32 store 16x32 with prefetch", lambda: stores(f32, 16, 32), 6),
]


@needs_ocloc
@pytest.mark.parametrize("name,make,messages", ISA_CASES, ids=[c[0] for c in ISA_CASES])
def test_block_messages_in_igc_isa_on_pvc(name, make, messages):
    ck = make().compile(target="spirv-vc", device="pvc")
    assert ck.stats["block2d"] == messages, ck.stats
    assert ck.stats["spill_bytes"] == 0 and ck.stats["external_calls"] == 0


@needs_ocloc
def test_dg2_keeps_the_gathers():
    ck = stores(f16, 8, 16).compile(target="spirv-vc", device="dg2")
    assert ck.stats["block2d"] == 0 and ck.stats["messages"] > 0 and ck.stats["spill_bytes"] == 0


# --- the emulator against numpy ----------------------------------------------------------------

PITCH = 48          # elements: 96 bytes of f16, 192 of f32 -- whole 16 bytes
PLACES = [          # x, y, width, height
    (8, 4, 40, 30),         # inside
    (30, 25, 37, 29),       # partly outside (right, bottom)
    (-6, -3, 40, 30),       # partly outside (left, top)
    (44, 0, 40, 30),        # wholly outside (right)
    (0, 40, 40, 30),        # wholly outside (below)
]
FALLBACKS = [       # surfaces the messages cannot take: x, y, width, height, pitch
    (0, 0, 20, 30, 48),     # f16: rows of 40 bytes (< 64)
    (0, 0, 40, 30, 44),     # f16: a pitch of 88 bytes (not whole 16 bytes)
    (3, 0, 40, 30, 48),     # f16: x not at a whole dword
    (2, 1, 40, 0, 48),      # no rows
]


def aligned(a, to=64):
    """A copy of ``a`` starting at a multiple of ``to`` bytes (a block message's base must)."""
    buf = np.empty(a.nbytes + to, np.uint8)
    start = -buf.ctypes.data % to
    out = buf[start:start + a.nbytes].view(a.dtype)
    out[:] = a
    return out


def run_emulated(kernel, args, align=True):
    """The kernel on PVC's profile in the emulator (arrays copied to 64-byte aligned memory
    unless ``align`` is False); the arguments as it left them."""
    return run_emulated_each(kernel, [args], align)[0]


def run_emulated_each(kernel, launches, align=True):
    """``run_emulated`` for several argument lists, the kernel JIT-compiled once."""
    from vc_emulator import run_isolated_each
    return run_isolated_each(kernel.specialization((), "spirv-vc", get_profile("pvc")), (1,), None,
                             [[aligned(a) if isinstance(a, np.ndarray) and align else a for a in args]
                              for args in launches])


def surface(dtype, pitch, seed):
    return np.random.default_rng(seed).uniform(-8, 8, SURFACE_ROWS * pitch).astype(dtype)


@pytest.mark.parametrize("place", PLACES, ids=lambda p: "x%d,y%d,w%d,h%d" % p)
@pytest.mark.parametrize("T,rows,cols,transpose", [
    (f16, 8, 16, False), (f16, 4, 48, False), (f32, 4, 20, False), (f32, 12, 10, True)],
    ids=["f16 8x16", "f16 4x48 split", "f32 4x20 split", "f32 12x10 transposed"])
def test_block_loads_match_numpy(place, T, rows, cols, transpose):
    x, y, w, h = place
    dtype = np.float16 if T == f16 else np.float32
    src = surface(dtype, PITCH, 1)
    k = loads(T, rows, cols, transpose)
    assert lsc_calls(k, "pvc", "load2d") > 0
    got = run_emulated(k, [src, np.zeros(rows * cols, dtype), x, y, w, h, PITCH])
    want = block_reference(src, (rows, cols), x, y, w, h, PITCH, transpose)
    np.testing.assert_array_equal(got[1].reshape(want.shape), want)


@pytest.mark.parametrize("place", PLACES, ids=lambda p: "x%d,y%d,w%d,h%d" % p)
@pytest.mark.parametrize("T,rows,cols", [(f16, 8, 16), (f32, 12, 20)], ids=["f16 8x16", "f32 12x20 split"])
def test_block_stores_match_numpy(place, T, rows, cols):
    x, y, w, h = place
    dtype = np.float16 if T == f16 else np.float32
    src = surface(dtype, cols * rows, 2)[:rows * cols].copy()
    dst = surface(dtype, PITCH, 3)
    got = run_emulated(stores(T, rows, cols), [src, dst, x, y, w, h, PITCH])
    np.testing.assert_array_equal(got[1], store_reference(dst, src.reshape(rows, cols), x, y, w, h, PITCH))


@pytest.mark.parametrize("x,y,w,h,pitch", FALLBACKS, ids=["narrow", "odd-pitch", "odd-x", "no-rows"])
def test_surfaces_the_messages_cannot_take_fall_back_to_the_gathers(x, y, w, h, pitch):
    src = surface(np.float16, pitch, 4)
    got = run_emulated(loads(f16, 8, 16), [src, np.zeros(8 * 16, np.float16), x, y, w, h, pitch])
    np.testing.assert_array_equal(got[1].reshape(8, 16), block_reference(src, (8, 16), x, y, w, h, pitch))
    block = surface(np.float16, 16, 5)[:8 * 16].copy()
    dst = surface(np.float16, pitch, 6)
    got = run_emulated(stores(f16, 8, 16), [block, dst, x, y, w, h, pitch])
    np.testing.assert_array_equal(got[1], store_reference(dst, block.reshape(8, 16), x, y, w, h, pitch))


@pytest.mark.parametrize("x,y,w,h,pitch,message", [
    (8, 4, 40, 30, 48, True), (-6, -3, 40, 30, 48, True), (0, 0, 20, 30, 48, False), (0, 0, 40, 30, 44, False),
    (3, 0, 40, 30, 48, False), (8, 4, 40, 30, 48, "unaligned")],
    ids=["inside", "partly-outside", "narrow", "odd-pitch", "odd-x", "unaligned-base"])
def test_the_run_time_check_picks_the_path(monkeypatch, x, y, w, h, pitch, message):
    # a load message that answers 1.0 everywhere shows through only where the surface met the
    # messages' limits; elsewhere the gathers read the surface
    import vc_emulator

    def ones(self, b, ret, args):
        from llvmlite import ir
        return ir.Constant(ret, [0x3C00] * ret.count)
    monkeypatch.setattr(vc_emulator.Emulation, "emit_lsc_load2d_stateless", ones)
    src = surface(np.float16, pitch, 7)
    unaligned = message == "unaligned"
    if unaligned:                       # the surface 2 bytes past a 64-byte boundary
        src, message = aligned(np.concatenate([src[:1], src]))[1:], False
        assert src.ctypes.data % 64 == 2
    got = run_emulated(loads(f16, 8, 16), [src, np.zeros(8 * 16, np.float16), x, y, w, h, pitch],
                       align=not unaligned)
    want = np.ones((8, 16), np.float16) if message else block_reference(src, (8, 16), x, y, w, h, pitch)
    np.testing.assert_array_equal(got[1].reshape(8, 16), want)


@pytest.mark.parametrize("place", [(8, 4, 100, 30), (84, 25, 100, 29), (-4, -3, 100, 30), (0, 40, 100, 30)],
                         ids=["inside", "partly-outside", "left-top", "below"])
def test_8_bit_blocks_match_numpy(place):
    # 8-bit image rows as the ports read and write them: (8, 32) blocks, d8 messages
    x, y, w, h = place
    pitch = 128
    src = np.random.default_rng(8).integers(0, 256, SURFACE_ROWS * pitch).astype(np.uint8)
    k = loads(u8, 8, 32)
    assert lsc_calls(k, "pvc", "load2d") == 1
    got = run_emulated(k, [src, np.zeros(8 * 32, np.uint8), x, y, w, h, pitch])
    np.testing.assert_array_equal(got[1].reshape(8, 32), block_reference(src, (8, 32), x, y, w, h, pitch))
    block = src[:8 * 32].copy()
    dst = np.random.default_rng(9).integers(0, 256, SURFACE_ROWS * pitch).astype(np.uint8)
    got = run_emulated(stores(u8, 8, 32), [block, dst, x, y, w, h, pitch])
    np.testing.assert_array_equal(got[1], store_reference(dst, block.reshape(8, 32), x, y, w, h, pitch))
