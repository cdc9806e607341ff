"""spirv-vc 2-D block messages beyond the plain load: the VNNI-transforming loads (with several
blocks per message) that feed a dpas's b, and transposed 8-, 16- and 64-bit blocks.

- A ``cm.load_2d`` used only as the b operand of a dpas on the systolic unit is read by
  ``llvm.genx.lsc.load2d.stateless`` with VNNI = 1 (``load_block2d.ugm.d16v`` / ``d8v``),
  two 16-column blocks of 16-bit data or four of 8-bit data a message, instead of a load and
  a repacking in registers.
- Transposed 8/16-bit blocks are read as transposed dwords (``d32t``), as CM does; 64-bit
  ones are ``d64t`` messages (1, 2 or 4 columns of 8 rows).

Each checked in IGC's ISA (messages, their opcode, no spill) and run in the vector-compute
emulator, whose 2-D intrinsics follow the documented meaning of the operands
(tests/vc_emulator.py), against numpy: inside the surface, partly and wholly outside, and on
surfaces the messages cannot take (the run-time check then picks the gathers)."""
import numpy as np
import pytest

import cmlang as cm
from cmlang import bf16, f16, f32, f64, i32, i64, i8, u8, u16
from cmlang.codegen import intel_gpu
from cmlang.runtime.profiles import get_profile
from test_block2d import SURFACE_ROWS, block_reference
from test_systolic import bf16_bits, bf16_value
from test_vc_block2d_messages import loads, run_emulated_each

needs_ocloc = pytest.mark.skipif(not intel_gpu.available(),
                                 reason="Intel's offline compiler (ocloc) is not installed")


def vnni_gemm(T, M, N, K, TC=f32):
    def vc_gemm_b_from_surface(a: cm.ptr[T], b: cm.ptr[T], c: cm.ptr[TC], x: i32, y: i32, w: i32, h: i32,
                               pitch: i32):
        acc = cm.load(c, 0, (M, N), N)
        acc = cm.dpas(acc, cm.load(a, 0, (M, K), K), cm.load_2d(b, (K, N), x, y, w, h, pitch))
        cm.store(c, 0, acc, N)
    return cm.kernel(simd=16)(vc_gemm_b_from_surface)


def load2d_calls(kernel, device="pvc"):
    """The operands (data size, order, blocks, width, height, VNNI) of each 2-D block load
    in the kernel's spirv-vc LLVM IR."""
    import re
    text = kernel.specialization((), "spirv-vc", get_profile(device)).llvm_ir
    found = []
    for line in text.splitlines():
        if "call" in line and "llvm.genx.lsc.load2d.stateless" in line:
            ints = re.findall(r"\b(?:i8|i16) (-?\d+)", line.split("(", 1)[1])
            size, order, blocks, width, height, vnni = (int(v) for v in ints[2:8])
            found.append((size, order, blocks, width, height, vnni))
    return found


# --- which messages -------------------------------------------------------------------------

D8, D16, D32, D64 = 1, 2, 3, 4          # LSC data size codes
PLAIN, TRANSPOSED = 1, 2


@pytest.mark.parametrize("make,want", [
    # f16 b (16, 16): one block of 16 rows; (32, 32): two blocks of 32 rows in one message
    (lambda: vnni_gemm(f16, 8, 16, 16), [(D16, PLAIN, 1, 16, 16, 1)]),
    (lambda: vnni_gemm(bf16, 8, 32, 32), [(D16, PLAIN, 2, 16, 32, 1)]),
    (lambda: vnni_gemm(f16, 8, 48, 48), [(D16, PLAIN, 2, 16, 32, 1), (D16, PLAIN, 1, 16, 32, 1),
                                         (D16, PLAIN, 2, 16, 16, 1), (D16, PLAIN, 1, 16, 16, 1)]),
    # 8-bit: four blocks of 16 columns (64 bytes a row) of 32 rows
    (lambda: vnni_gemm(i8, 8, 64, 32, i32), [(D8, PLAIN, 4, 16, 32, 1)]),
    (lambda: vnni_gemm(u8, 8, 32, 64, i32), [(D8, PLAIN, 2, 16, 32, 1)] * 2),
    # transposed 16-bit (16, 16) block: 8 dword columns of 16 rows; 8-bit (16, 32): 8 x 16
    (lambda: loads(f16, 16, 16, True), [(D32, TRANSPOSED, 1, 8, 16, 0)]),
    (lambda: loads(u8, 16, 32, True), [(D32, TRANSPOSED, 1, 8, 16, 0)]),
    # 32-bit transposed: at most 16 rows in IGC 1.0.12504
    (lambda: loads(f32, 24, 8, True), [(D32, TRANSPOSED, 1, 8, 16, 0), (D32, TRANSPOSED, 1, 8, 8, 0)]),
    # 64-bit transposed: 8 rows of 4 (+ 2 + 1) columns
    (lambda: loads(f64, 8, 7, True), [(D64, TRANSPOSED, 1, 4, 8, 0), (D64, TRANSPOSED, 1, 2, 8, 0),
                                      (D64, TRANSPOSED, 1, 1, 8, 0)]),
    (lambda: loads(i64, 16, 4, True), [(D64, TRANSPOSED, 1, 4, 8, 0)] * 2),
], ids=["f16 b 16x16", "bf16 b 32x32", "f16 b 48x48", "i8 b 32x64", "u8 b 64x32", "f16 T 16x16",
        "u8 T 16x32", "f32 T 24x8", "f64 T 8x7", "i64 T 16x4"])
def test_messages(make, want):
    k = make()
    assert load2d_calls(k) == want
    assert load2d_calls(k, "dg2") == []


def test_shapes_these_messages_cannot_take_keep_the_gathers():
    # an odd number of 16-bit block columns (no whole dwords), 64-bit blocks of 4 rows
    # (the hardware transposes 8 rows), a dpas in f32 (no VNNI: b stays a plain load)
    assert load2d_calls(loads(f16, 16, 15, True)) == []
    assert load2d_calls(loads(f64, 4, 4, True)) == []
    plain_b = vnni_gemm(f32, 8, 16, 16)
    assert [c[5] for c in load2d_calls(plain_b)] == [0]


# --- IGC's ISA ---------------------------------------------------------------------------------

ISA_CASES = [  # kernel, messages, their opcode
    ("f16 dpas b 16x16 vnni", lambda: vnni_gemm(f16, 8, 16, 16), 1, "load_block2d.ugm.d16v.a64"),
    ("f16 dpas b 32x32 vnni 2 blocks", lambda: vnni_gemm(f16, 8, 32, 32), 1, "load_block2d.ugm.d16v.a64"),
    ("bf16 dpas b 32x32 vnni 2 blocks", lambda: vnni_gemm(bf16, 8, 32, 32), 1, "load_block2d.ugm.d16v.a64"),
    ("u8 dpas b 64x32 vnni 2 blocks", lambda: vnni_gemm(u8, 8, 32, 64, i32), 2, "load_block2d.ugm.d8v.a64"),
    ("i8 dpas b 32x16 vnni", lambda: vnni_gemm(i8, 8, 16, 32, i32), 1, "load_block2d.ugm.d8v.a64"),
    ("f16 16x16 transposed", lambda: loads(f16, 16, 16, True), 1, "load_block2d.ugm.d32t.a64"),
    ("f16 32x32 transposed", lambda: loads(f16, 32, 32, True), 4, "load_block2d.ugm.d32t.a64"),
    ("u8 32x16 transposed", lambda: loads(u8, 32, 16, True), 2, "load_block2d.ugm.d32t.a64"),
    ("f32 24x8 transposed", lambda: loads(f32, 24, 8, True), 2, "load_block2d.ugm.d32t.a64"),
    ("f64 8x8 transposed", lambda: loads(f64, 8, 8, True), 2, "load_block2d.ugm.d64t.a64"),
]


@needs_ocloc
@pytest.mark.parametrize("name,make,messages,opcode", ISA_CASES, ids=[c[0] for c in ISA_CASES])
def test_messages_in_igc_isa_on_pvc(name, make, messages, opcode):
    ck = make().compile(target="spirv-vc", device="pvc")
    found = [line.split()[0] for line in ck.isa.splitlines() if "load_block2d" in line]
    assert found == [opcode] * messages, ck.isa
    assert ck.stats["block2d"] == messages
    assert ck.stats["spill_bytes"] == 0 and ck.stats["external_calls"] == 0
    if "dpas" in name:
        assert ck.stats["dpas"] > 0


@needs_ocloc
def test_transposed_32_bit_blocks_of_more_than_16_rows_build():
    # IGC 1.0.12504 failed ("VISA builder API call failed") on a 32-row transposed message
    ck = loads(f32, 32, 8, True).compile(target="spirv-vc", device="pvc")
    assert ck.stats["block2d"] == 2


# --- the emulator against numpy ----------------------------------------------------------------

PITCH = 96          # elements: whole 16 bytes for 8-, 16- and 64-bit data
PLACES = [          # x, y, width, height, pitch; the last two: surfaces the messages cannot take
    (8, 4, 80, 60, PITCH),      # inside
    (60, 40, 80, 60, PITCH),    # partly outside (right, bottom)
    (-4, -8, 80, 60, PITCH),    # partly outside (left, top)
    (84, 0, 80, 60, PITCH),     # wholly outside (right)
    (0, 0, 80, 60, PITCH - 2),  # pitch not whole 16 bytes (16-bit): gathers
    (3, 1, 80, 60, PITCH),      # x not a whole dword (8/16-bit): gathers
]
PLACE_IDS = ["inside", "partly-right-bottom", "partly-left-top", "outside", "odd-pitch", "odd-x"]
SOME_PLACES = [PLACES[i] for i in (0, 1, 2, 5)]     # the emulator is slow: the others once
SOME_IDS = [PLACE_IDS[i] for i in (0, 1, 2, 5)]


def surface(dtype, seed):
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -100), min(info.max, 100), SURFACE_ROWS * PITCH).astype(dtype)
    return rng.uniform(-4, 4, SURFACE_ROWS * PITCH).astype(dtype)


def mismatched_places(ids, got, want, compare):
    """The ids of the places whose result ``compare`` (a numpy.testing assertion) rejects,
    with its message: every place is checked, not only up to the first that fails."""
    failed = []
    for place_id, g, w in zip(ids, got, want):
        try:
            compare(g, w)
        except AssertionError as e:
            failed.append(f"{place_id}: {e}")
    return failed


# One test per kernel runs it at every place: one JIT compile of the (large, unrolled)
# kernel serves all of them, each place still compared with numpy on its own.
@pytest.mark.parametrize("T,M,N,K", [(f16, 8, 16, 16), (bf16, 5, 32, 32), (f16, 3, 48, 48), (i8, 8, 64, 32),
                                     (u8, 4, 32, 64)], ids=str)
def test_vnni_loads_feed_dpas_like_numpy(T, M, N, K):
    rng = np.random.default_rng(M * N + K)
    if T in (i8, u8):
        dtype = np.int8 if T == i8 else np.uint8
        a = surface(dtype, 1)[:M * K].reshape(M, K).copy()
        src = surface(dtype, 2)
        c = rng.integers(-1000, 1000, (M, N)).astype(np.int32)
        wants = [c + a.astype(np.int64) @ block_reference(src, (K, N), *place).astype(np.int64)
                 for place in PLACES]
        TC = i32
    else:
        a32 = rng.uniform(-2, 2, (M, K)).astype(np.float32)
        src32 = rng.uniform(-2, 2, SURFACE_ROWS * PITCH).astype(np.float32)
        c = rng.uniform(-2, 2, (M, N)).astype(np.float32)
        if T == f16:
            a, src = a32.astype(np.float16), src32.astype(np.float16)
            a64, src64 = a.astype(np.float64), src.astype(np.float64)
        else:
            a, src = bf16_bits(a32), bf16_bits(src32)
            a64, src64 = bf16_value(a).astype(np.float64), bf16_value(src).astype(np.float64)
        wants = [c.astype(np.float64) + a64 @ block_reference(src64, (K, N), *place) for place in PLACES]
        TC = f32
    k = vnni_gemm(T, M, N, K, TC)
    assert all(call[5] == 1 for call in load2d_calls(k))
    runs = run_emulated_each(k, [[a.ravel(), src, c.ravel(), *place] for place in PLACES])
    got = [run[2].reshape(M, N) for run in runs]
    if TC == i32:
        compare = np.testing.assert_array_equal
    else:
        def compare(g, w):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    assert mismatched_places(PLACE_IDS, got, wants, compare) == []


@pytest.mark.parametrize("T,rows,cols", [(f16, 16, 16), (u16, 24, 30), (u8, 16, 32), (i8, 5, 12), (f64, 8, 7),
                                         (i64, 16, 4), (f32, 24, 8)], ids=str)
def test_transposed_blocks_match_numpy(T, rows, cols):
    dtype = {f16: np.float16, u16: np.uint16, u8: np.uint8, i8: np.int8, f64: np.float64, i64: np.int64,
             f32: np.float32}[T]
    src = surface(dtype, rows * cols)
    k = loads(T, rows, cols, True)
    assert load2d_calls(k)
    runs = run_emulated_each(k, [[src, np.zeros(rows * cols, dtype), *place] for place in SOME_PLACES])
    wants = [block_reference(src, (rows, cols), *place, transpose=True) for place in SOME_PLACES]
    got = [run[1].reshape(want.shape) for run, want in zip(runs, wants)]
    assert mismatched_places(SOME_IDS, got, wants, np.testing.assert_array_equal) == []
