"""PVC's 2-D block messages in SIMT code beyond the plain 16-bit load: transposed loads
(``load_block2d.d32t``), the VNNI-transforming loads that feed a dpas's b (``d16v``/``d8v``)
and loads split into several messages; checked in IGC's ISA (block2d messages, no spill, no
external call) and, with each builtin defined in LLVM IR by its per-lane meaning, run on the
CPU runtime against numpy.  DG2 has no such messages and keeps per-lane loads.  What IGC
1.0.12504 lacks (block stores and prefetches in SIMT code) is pinned down here too."""
import dataclasses

import numpy as np
import pytest

import cmlang as cm
from cmlang import bf16, f16, f32, i32, i8
from cmlang.codegen import block2d, intel_gpu, spirv as cg_spirv, systolic
from cmlang.runtime.profiles import get_profile
from test_block2d import SURFACE_ROWS, _lane_id, block_reference, define_block_read
from test_systolic import bf16_bits, bf16_value, define_matrix_builtin

needs_ocloc = pytest.mark.skipif(not intel_gpu.available(),
                                 reason="Intel's offline compiler (ocloc) is not installed")


def loads(T, rows, cols, transpose):
    def block_load(src: cm.ptr[T], out: cm.ptr[T], x: i32, y: i32, w: i32, h: i32, pitch: i32):
        m = cm.load_2d(src, (rows, cols), x, y, w, h, pitch, transpose=transpose)
        cm.store(out, 0, m, rows if transpose else cols)
    return cm.kernel(simd=16)(block_load)


def vnni_gemm(T, M, N, K, TC=f32):
    def gemm_b_from_surface(a: cm.ptr[T], b: cm.ptr[T], c: cm.ptr[TC], x: i32, y: i32, w: i32, h: i32,
                            pitch: i32):
        acc = cm.load(c, 0, (M, N), N)
        acc = cm.dpas(acc, cm.load(a, 0, (M, K), K), cm.load_2d(b, (K, N), x, y, w, h, pitch))
        cm.store(c, 0, acc, N)
    return cm.kernel(simd=16)(gemm_b_from_surface)


def transposed_b_gemm(M, N, K):
    """b kept as b^T ([N, K] rows) in memory, as CM kernels often do: the transposing
    message reads 16-bit pairs of a row as dwords, already the VNNI packing of b."""
    def gemm_b_transposed(a: cm.ptr[f16], bt: cm.ptr[f16], c: cm.ptr[f32], x: i32, y: i32, w: i32, h: i32,
                          pitch: i32):
        acc = cm.load(c, 0, (M, N), N)
        acc = cm.dpas(acc, cm.load(a, 0, (M, K), K), cm.load_2d(bt, (N, K), x, y, w, h, pitch, transpose=True))
        cm.store(c, 0, acc, N)
    return cm.kernel(simd=16)(gemm_b_transposed)


def stores(T):
    def block_store(src: cm.ptr[T], dst: cm.ptr[T], w: i32, h: i32, pitch: i32):
        cm.prefetch_2d(src, (8, 16), 0, 0, w, h, pitch)
        cm.store_2d(dst, cm.load(src, 0, (8, 16), 16), 0, 0, w, h, pitch)
    return cm.kernel(simd=16)(block_store)


# --- IGC's ISA -----------------------------------------------------------------------------------

MESSAGE_CASES = [  # kernel, messages, the opcode of each
    ("f16 8x16", lambda: loads(f16, 8, 16, False), 1, "load_block2d.ugm.d16.a64"),
    ("f16 16x32 split", lambda: loads(f16, 16, 32, False), 2, "load_block2d.ugm.d16.a64"),   # 2 blocks each
    ("f16 2x48 2+1 blocks", lambda: loads(f16, 2, 48, False), 2, "load_block2d.ugm.d16.a64"),
    ("f32 8x16 as halves", lambda: loads(f32, 8, 16, False), 1, "load_block2d.ugm.d16.a64"),
    ("f32 1x16 as halves", lambda: loads(f32, 1, 16, False), 1, "load_block2d.ugm.d16.a64"),
    ("i32 16x32 as halves split", lambda: loads(i32, 16, 32, False), 4, "load_block2d.ugm.d16.a64"),
    ("f32 16x8 transposed", lambda: loads(f32, 16, 8, True), 1, "load_block2d.ugm.d32t.a64"),
    ("f32 32x16 transposed split", lambda: loads(f32, 32, 16, True), 4, "load_block2d.ugm.d32t.a64"),
    ("f16 16x16 transposed", lambda: loads(f16, 16, 16, True), 1, "load_block2d.ugm.d32t.a64"),
    ("f16 32x32 transposed split", lambda: loads(f16, 32, 32, True), 4, "load_block2d.ugm.d32t.a64"),
    ("f16 dpas b 16x16 vnni", lambda: vnni_gemm(f16, 8, 16, 16), 1, "load_block2d.ugm.d16v.a64"),
    ("bf16 dpas b 32x32 vnni", lambda: vnni_gemm(bf16, 8, 32, 32), 4, "load_block2d.ugm.d16v.a64"),
    ("i8 dpas b 32x16 vnni", lambda: vnni_gemm(i8, 8, 16, 32, i32), 1, "load_block2d.ugm.d8v.a64"),
    ("f16 dpas b^T 16x16 transposed", lambda: transposed_b_gemm(8, 16, 16), 1, "load_block2d.ugm.d32t.a64"),
    ("f16 dpas b^T 32x32 transposed", lambda: transposed_b_gemm(8, 32, 32), 4, "load_block2d.ugm.d32t.a64"),
]


@needs_ocloc
@pytest.mark.parametrize("name,make,messages,opcode", MESSAGE_CASES, ids=[c[0] for c in MESSAGE_CASES])
def test_block_messages_on_pvc(name, make, messages, opcode):
    ck = make().compile(target="spirv", device="pvc")
    assert ck.stats["block2d"] == messages, ck.isa
    found = {line.split()[0] for line in ck.isa.splitlines() if "load_block2d" in line}
    assert found == {opcode}
    assert ck.stats["spill_bytes"] == 0 and ck.stats["external_calls"] == 0
    if "dpas" in name:
        assert ck.stats["dpas"] == messages


@needs_ocloc
@pytest.mark.parametrize("name,make,messages,opcode", MESSAGE_CASES, ids=[c[0] for c in MESSAGE_CASES])
def test_dg2_keeps_per_lane_loads(name, make, messages, opcode):
    kernel = make()
    if "dpas" in name:
        return          # DG2's unit runs at simd 8: covered by test_systolic.py
    ck = kernel.compile(target="spirv", device="dg2")
    assert ck.stats["block2d"] == 0 and ck.stats["external_calls"] == 0 and ck.stats["messages"] > 0


def test_every_block_builtin_used_is_one_igc_12504_resolves():
    # IGC 1.0.12504 parses m1/m2/m4/m8 only: an (16, 16) f16 load used to call the _m16
    # builtin, left unresolved (the ISA then stored uninitialised registers)
    known = block2d.allowed_imports(get_profile("pvc"))
    assert not any("m16k16" in n or "write" in n or "block_read_prefetch" in n for n in known)
    spirv = loads(f16, 16, 16, False).specialization((), "spirv", get_profile("pvc")).binary.spirv
    assert cg_spirv.imported_functions(spirv) == ["__builtin_IB_subgroup_block_read_flat_u16_m8k16v1"]


@needs_ocloc
def test_stores_and_prefetches_are_not_block_messages_in_igc_12504():
    # No 2-D block write or prefetch is reachable from SIMT code in this IGC (block2d.py);
    # the store is per-lane stores, the prefetch nothing
    ck = stores(f16).compile(target="spirv", device="pvc")
    assert ck.stats["block2d"] == 0 and "store_block2d" not in ck.isa and "prefetch_block2d" not in ck.isa
    assert sum(1 for line in ck.isa.splitlines() if line.strip().startswith("store.ugm")) > 0


# --- the PVC lowering run on the CPU runtime with the builtins defined ------------------------------

def define_surface_read(fn, element_bytes, parts, coords):
    """Define a block-read builtin returning <n x iW>: element q of lane l is ``parts``
    surface elements of ``element_bytes`` each (part h in bits h * W / parts ..), the one
    of part h at coords(lane, x, y, q, h) -> (row, column); 0 outside the surface."""
    from llvmlite import ir
    from cmlang.codegen.llvm_builtins import I32, I64
    base, width_m1, height_m1, pitch_m1, coord = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    lane = b.call(_lane_id(fn.module), [])
    x, y = (b.extract_element(coord, ir.Constant(I32, i)) for i in (0, 1))
    bits = 8 * element_bytes
    t = ir.IntType(bits)
    ret = fn.function_type.return_type
    word = ret.element
    out = ir.Constant(ret, ir.Undefined)
    c = lambda v: ir.Constant(I32, v)     # noqa: E731
    for q in range(ret.count):
        value = ir.Constant(word, 0)
        for h in range(parts):
            row, col = coords(b, lane, x, y, q, h)
            inside = b.and_(b.and_(b.icmp_signed(">=", col, c(0)),
                                   b.icmp_signed("<=", b.mul(b.add(col, c(1)), c(element_bytes)),
                                                 b.add(width_m1, c(1)))),
                            b.and_(b.icmp_signed(">=", row, c(0)), b.icmp_signed("<=", row, height_m1)))
            offset = b.add(b.mul(b.sext(row, I64), b.sext(b.add(pitch_m1, c(1)), I64)),
                           b.mul(b.sext(col, I64), ir.Constant(I64, element_bytes)))
            address = b.select(inside, b.add(base, offset), base)
            loaded = b.select(inside, b.load(b.inttoptr(address, ir.PointerType(t, 1)), typ=t), ir.Constant(t, 0))
            part = b.zext(loaded, word) if bits < word.width else loaded
            value = b.or_(value, b.shl(part, ir.Constant(word, h * bits)) if h else part)
        out = b.insert_element(out, value, c(q))
    b.ret(out)


def define_block_builtins(lowering, fn):
    name = fn.name
    if name == block2d.TRANSPOSE_READ:            # lane l: row y + l, dword q: column x + q
        define_surface_read(fn, 4, 1, lambda b, lane, x, y, q, h: (b.add(y, lane), b.add(x, _c(q))))
    elif name == block2d.VNNI_READ[16]:           # dword q of lane l: rows y + 2q + h, column x + l
        define_surface_read(fn, 2, 2, lambda b, lane, x, y, q, h: (b.add(y, _c(2 * q + h)), b.add(x, lane)))
    elif name == block2d.VNNI_READ[8]:
        define_surface_read(fn, 1, 4, lambda b, lane, x, y, q, h: (b.add(y, _c(4 * q + h)), b.add(x, lane)))
    elif name.startswith("__builtin_IB_subgroup_block_read_flat_u16_m") and name.endswith("v2"):
        rows = fn.function_type.return_type.count // 2    # two blocks of 16 columns, one after the other
        define_surface_read(fn, 2, 1, lambda b, lane, x, y, q, h: (
            b.add(y, _c(q % rows)), b.add(b.add(x, _c(16 * (q // rows))), lane)))
    elif name.startswith("__builtin_IB_subgroup_block_read_flat_u16_m"):
        define_block_read(fn)
    elif "matrix_mad" in name:
        define_matrix_builtin(lowering, fn, 16)
    else:
        raise AssertionError(f"no definition for {name}")


def _c(v):
    from llvmlite import ir
    return ir.Constant(ir.IntType(32), v)


def run_pvc_lowering_here(kernel, args, expect):
    from cmlang.codegen import simt
    from cmlang.codegen.target import CodegenResult
    from cmlang.kernel import _launch_binary, make_binary
    pvc = get_profile("pvc")
    profile = dataclasses.replace(get_profile("cpu"), name="cpu-with-pvc-messages", block2d=pvc.block2d,
                                  systolic=pvc.systolic)
    fn = kernel.ir_function(())
    lowering = simt.KernelLowering(fn, cg_spirv.data_layout(), profile)
    lowering.run()
    imported = [f for f in lowering.module.functions if f.is_declaration and
                (f.name.startswith("__builtin_IB") or "matrix_mad" in f.name)]
    assert expect in {f.name for f in imported}
    assert {f.name for f in imported} <= block2d.allowed_imports(pvc) | systolic.allowed_imports(pvc)
    for f in imported:
        define_block_builtins(lowering, f)
    final, spirv = cg_spirv.llvm_to_spirv(str(lowering.module))
    result = CodegenResult(final, spirv, fn.name, cg_spirv.extensions(spirv), "spirv", fn.simd, "")
    _launch_binary(make_binary(fn, result, "cpu"), (1,), None, args).wait()


# (x, y, width, height, pitch): inside, at the edges, negative, outside; then surfaces the
# message cannot take (odd x for 16-bit transposes, narrow, odd pitch): per-lane loads
PLACES = [(0, 0, 64, 60, 64), (4, 2, 64, 60, 72), (40, 40, 50, 45, 64), (-6, -4, 64, 60, 64),
          (70, 0, 64, 60, 64), (3, 1, 64, 60, 64), (0, 0, 20, 60, 64), (0, 0, 64, 60, 66)]
PLACE_IDS = ["x%d,y%d,w%d,h%d,p%d" % p for p in PLACES]


@pytest.mark.parametrize("place", PLACES, ids=PLACE_IDS)
@pytest.mark.parametrize("T,rows,cols,transpose,expect", [
    (f16, 16, 32, False, "__builtin_IB_subgroup_block_read_flat_u16_m8k16v2"),     # two blocks a message
    (f16, 2, 48, False, "__builtin_IB_subgroup_block_read_flat_u16_m2k16v1"),      # 2 + 1 blocks
    (f16, 8, 16, False, "__builtin_IB_subgroup_block_read_flat_u16_m8k16v1"),
    (f32, 8, 16, False, "__builtin_IB_subgroup_block_read_flat_u16_m8k16v2"),
    (f32, 1, 16, False, "__builtin_IB_subgroup_block_read_flat_u16_m2k16v2"),
    (f32, 4, 32, False, "__builtin_IB_subgroup_block_read_flat_u16_m4k16v2"),
    (f32, 16, 16, False, "__builtin_IB_subgroup_block_read_flat_u16_m8k16v2"),
    (f32, 32, 16, True, block2d.TRANSPOSE_READ),
    (f16, 32, 32, True, block2d.TRANSPOSE_READ),
    (f16, 16, 16, True, block2d.TRANSPOSE_READ)], ids=str)
def test_block_loads_match_numpy_with_emulated_messages(place, T, rows, cols, transpose, expect):
    x, y, w, h, pitch = place
    dtype = np.float16 if T == f16 else np.float32
    src = np.random.default_rng(rows + cols).uniform(-8, 8, SURFACE_ROWS * 80).astype(dtype)
    out = np.zeros(rows * cols, dtype)
    run_pvc_lowering_here(loads(T, rows, cols, transpose), [src, out, x, y, w, h, pitch], expect)
    want = block_reference(src, (rows, cols), x, y, w, h, pitch, transpose)
    np.testing.assert_array_equal(out.reshape(want.shape), want)


@pytest.mark.parametrize("place", PLACES, ids=PLACE_IDS)
@pytest.mark.parametrize("T,M,N,K", [(f16, 8, 16, 16), (bf16, 5, 32, 32), (i8, 8, 16, 32), (i8, 3, 32, 64)], ids=str)
def test_vnni_loads_feed_dpas_like_numpy_with_emulated_messages(place, T, M, N, K):
    x, y, w, h, pitch = place
    rng = np.random.default_rng(M * N + K)
    if T == i8:
        a = rng.integers(-128, 128, (M, K)).astype(np.int8)
        src = rng.integers(-128, 128, SURFACE_ROWS * 80).astype(np.int8)
        c = rng.integers(-1000, 1000, (M, N)).astype(np.int32)
        b = block_reference(src, (K, N), x, y, w, h, pitch)
        want = c + a.astype(np.int64) @ b.astype(np.int64)
        expect, TC = block2d.VNNI_READ[8], i32
    else:
        a = rng.uniform(-2, 2, (M, K)).astype(np.float32)
        src = rng.uniform(-2, 2, SURFACE_ROWS * 80).astype(np.float32)
        c = rng.uniform(-2, 2, (M, N)).astype(np.float32)
        if T == f16:
            a, src = a.astype(np.float16), src.astype(np.float16)
            a64, src64 = a.astype(np.float64), src.astype(np.float64)
        else:
            a, src = bf16_bits(a), bf16_bits(src)
            a64, src64 = bf16_value(a).astype(np.float64), bf16_value(src).astype(np.float64)
        want = c.astype(np.float64) + a64 @ block_reference(src64, (K, N), x, y, w, h, pitch)
        expect, TC = block2d.VNNI_READ[16], f32
    run_pvc_lowering_here(vnni_gemm(T, M, N, K, TC), [a, src, c, x, y, w, h, pitch], expect)
    if T == i8:
        np.testing.assert_array_equal(c, want)
    else:
        np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("T,rows,cols,transpose", [(f16, 16, 32, False), (f32, 32, 16, True), (f16, 32, 32, True),
                                                    (f32, 16, 32, False)],
                         ids=str)
def test_the_same_kernels_on_the_default_device_match_numpy(T, rows, cols, transpose):
    x, y, w, h, pitch = PLACES[2]
    dtype = np.float16 if T == f16 else np.float32
    src = np.random.default_rng(1).uniform(-8, 8, SURFACE_ROWS * 80).astype(dtype)
    out = np.zeros(rows * cols, dtype)
    loads(T, rows, cols, transpose)[1](src, out, x, y, w, h, pitch)
    want = block_reference(src, (rows, cols), x, y, w, h, pitch, transpose)
    np.testing.assert_array_equal(out.reshape(want.shape), want)


# --- cm.prefetch_2d: LSC's 1-D prefetch of the block's cache lines ---------------------------------

def prefetches(T, rows, cols):
    def block_prefetch(src: cm.ptr[T], x: i32, y: i32, w: i32, h: i32, pitch: i32, last: i32):
        cm.prefetch_2d(src, (rows, cols), x, y, w, h, pitch)
        cm.store(src, last, cm.load(src, last, 1))     # the buffer is written: it comes back
    return cm.kernel(simd=16)(block_prefetch)


@needs_ocloc
@pytest.mark.parametrize("T,rows,cols,messages", [(f16, 8, 16, 1), (f32, 16, 32, 3), (f16, 4, 100, 2)], ids=str)
def test_prefetch_is_lsc_prefetch_messages_on_pvc(T, rows, cols, messages):
    ck = prefetches(T, rows, cols).compile(target="spirv", device="pvc")
    found = [line for line in ck.isa.splitlines() if line.strip().startswith("load.ugm") and " null:0 " in line]
    assert len(found) == messages, ck.isa
    assert len(found) == messages and ck.stats["external_calls"] == 0 and ck.stats["spill_bytes"] == 0
    dg2 = prefetches(T, rows, cols).compile(target="spirv", device="dg2")
    assert not any(" null:0 " in line for line in dg2.isa.splitlines() if line.strip().startswith("load"))


def define_counting_prefetch(fn):
    """The prefetch builtin emulated as an atomic add of 1 to the dword it names: the test
    then sees every address prefetched."""
    from llvmlite import ir
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    b.atomic_rmw("add", fn.args[0], ir.Constant(ir.IntType(32), 1), "monotonic")
    b.ret_void()


@pytest.mark.parametrize("place", PLACES, ids=PLACE_IDS)
@pytest.mark.parametrize("T,rows,cols", [(f16, 8, 16), (f32, 16, 32), (f16, 3, 70)], ids=str)
def test_prefetch_touches_every_line_of_the_block_inside_the_surface_and_nothing_else(place, T, rows, cols):
    from cmlang.codegen import simt
    from cmlang.codegen.target import CodegenResult
    from cmlang.kernel import _launch_binary, make_binary
    x, y, w, h, pitch = place
    size = 2 if T == f16 else 4
    fn = prefetches(T, rows, cols).ir_function(())
    profile = dataclasses.replace(get_profile("cpu"), name="cpu-with-pvc-messages", block2d=get_profile("pvc").block2d)
    lowering = simt.KernelLowering(fn, cg_spirv.data_layout(), profile)
    lowering.run()
    (builtin,) = [f for f in lowering.module.functions if f.name == block2d.PREFETCH]
    define_counting_prefetch(builtin)
    final, spirv = cg_spirv.llvm_to_spirv(str(lowering.module))
    result = CodegenResult(final, spirv, fn.name, cg_spirv.extensions(spirv), "spirv", fn.simd, "")
    src = np.zeros(SURFACE_ROWS * 80 * size // 4, np.uint32)
    _launch_binary(make_binary(fn, result, "cpu"), (1,), None, [src.view(np.float16 if T == f16 else np.float32),
                                                                 x, y, w, h, pitch,
                                                                 len(src) * 4 // size - 1]).wait()
    hits = src
    inside_bytes = set()
    for r in range(max(y, 0), min(y + rows, h)):
        for c in range(max(x, 0), min(x + cols, w)):
            inside_bytes.add((r * pitch + c) * size)
    touched = {4 * i for i in np.nonzero(hits)[0]}
    assert all(any(a <= byte < a + 4 for byte in inside_bytes) for a in touched)   # only inside
    assert {byte // 64 for byte in inside_bytes} <= {a // 64 for a in touched}       # every line


@pytest.mark.parametrize("place", PLACES, ids=PLACE_IDS)
def test_a_transposed_b_feeds_dpas_like_numpy_with_emulated_messages(place):
    x, y, w, h, pitch = place
    M, N, K = 5, 32, 32
    rng = np.random.default_rng(4)
    a = rng.uniform(-2, 2, (M, K)).astype(np.float16)
    src = rng.uniform(-2, 2, SURFACE_ROWS * 80).astype(np.float16)
    c = rng.uniform(-2, 2, (M, N)).astype(np.float32)
    b = block_reference(src.astype(np.float64), (N, K), x, y, w, h, pitch, transpose=True)
    want = c.astype(np.float64) + a.astype(np.float64) @ b
    run_pvc_lowering_here(transposed_b_gemm(M, N, K), [a, src, c, x, y, w, h, pitch], block2d.TRANSPOSE_READ)
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5)
