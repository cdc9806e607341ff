"""2-D block surfaces proven at launch (cmlang/passes/block_surfaces.py): where the launch's
arguments show that a block op's surface meets the messages' limits, the specialization
has the messages alone, without the run-time check and its per-element path.

Checked here: which ops a launch can decide, the rule, the IR attribute and cache key,
the code (no gathers left in vector-compute code, fewer instructions in IGC's ISA), the
results of the messages-only code in the vector-compute emulator against numpy, and that
devices without the messages (the CPU, DG2) are not specialized."""
import numpy as np
import pytest

import cmlang as cm
from cmlang import cache, f16, f32, i32
from cmlang.codegen import intel_gpu
from cmlang.passes import block_surfaces as bs
from cmlang.runtime.binary import constexpr_key
from cmlang.runtime.profiles import get_profile
from test_block2d import block_reference
from test_vc_block2d_messages import aligned, surface

needs_ocloc = pytest.mark.skipif(not intel_gpu.available(),
                                 reason="Intel's offline compiler (ocloc) is not installed")


@cm.kernel(simd=16)
def load_f32(src: cm.ptr[f32], out: cm.ptr[f32], x: i32, y: i32, w: i32, h: i32, pitch: i32):
    cm.store(out, 0, cm.load_2d(src, (8, 16), x, y, w, h, pitch), 16)


@cm.kernel(simd=16)
def load_f16_at_x(src: cm.ptr[f16], out: cm.ptr[f16], x: i32, w: i32, h: i32, pitch: i32):
    cm.store(out, 0, cm.load_2d(src, (8, 16), x, 0, w, h, pitch), 16)


@cm.kernel(simd=16)
def load_f16_tiles(src: cm.ptr[f16], out: cm.ptr[f32], cols: i32, rows: i32, K: cm.constexpr):
    acc = cm.zeros(cm.matrix[f32, 8, 16])
    for k in range(0, cols, K):                       # x: multiples of K in every iteration
        acc += cm.load_2d(src, (8, 16), k, cm.thread_id(0) * 8, cols, rows + 0, cols).astype(f32)
    cm.store(out, cm.thread_id(0) * 128, acc, 16)


@cm.kernel(simd=16)
def load_f16_thread_height(src: cm.ptr[f16], out: cm.ptr[f16], w: i32):
    row0 = cm.thread_id(0) * 8
    cm.store(out, 0, cm.load_2d(src, (8, 16), 0, row0, w, row0 + 8, w), 16)


def sites(kernel, *constexprs):
    return bs.surface_sites(kernel.ir_function(tuple(constexpr_key(c) for c in constexprs)))


# --- which ops a launch can decide --------------------------------------------------------------

def test_a_surface_of_scalar_arguments_is_a_site():
    (site,) = sites(load_f32)
    assert (site.pointer, site.elem_bytes) == (0, 4)
    assert (site.width, site.height, site.pitch) == (("arg", 4), ("arg", 5), ("arg", 6))


@cm.kernel(simd=16)
def load_product_height(src: cm.ptr[f32], out: cm.ptr[f32], heads: i32, n: i32, w: i32):
    cm.store(out, 0, cm.load_2d(src, (8, 16), 0, 0, w, heads * n, w << 1), 16)


def test_products_and_shifts_of_arguments_are_evaluated_at_launch():
    (site,) = sites(load_product_height)
    assert site.height == ("mul", ("arg", 2), ("arg", 3))
    assert bs.proven_sites((site,), [None, None, 2, 300, 40], lambda i: True) == (0,)
    # 2^16 x 2^16 rows: past i32 in the kernel, so nothing is claimed
    assert bs.proven_sites((site,), [None, None, 1 << 16, 1 << 16, 40], lambda i: True) == ()


def test_16_bit_x_must_be_whole_dwords_in_every_thread():
    assert sites(load_f16_at_x) == ()                     # x is any argument: maybe odd
    assert len(sites(load_f16_tiles, 16)) == 1          # 0, 16, 32, ...
    assert sites(load_f16_tiles, 3) == ()               # 0, 3, 6, ...: odd columns


def test_a_height_that_depends_on_the_thread_is_left_to_run_time():
    assert sites(load_f16_thread_height) == ()


@pytest.mark.parametrize("w, h, pitch, base_aligned, fits", [
    (40, 30, 48, True, True),
    (10, 30, 48, True, False),           # rows of 40 bytes (< 64)
    (40, 30, 42, True, False),           # a pitch of 168 bytes (not whole 16 bytes)
    (40, 30, 36, True, False),           # pitch below the width
    (40, 0, 48, True, False),            # no rows
    (40, 30, 48, False, False),          # base not on 64 bytes
    (1 << 23, 30, 1 << 23, True, False),  # 32 MiB rows: past the messages' extent
])
def test_the_rule(w, h, pitch, base_aligned, fits):
    assert bs.surface_fits(4, w, h, pitch, base_aligned) is fits
    (site,) = sites(load_f32)
    args = [None, None, 0, 0, w, h, pitch]
    assert bs.proven_sites((site,), args, lambda i: base_aligned) == ((0,) if fits else ())



# --- the specialization ----------------------------------------------------------------------------

def src_out(dtype=np.float32):
    return np.zeros(30 * 48, dtype), np.zeros(8 * 16, dtype)


def test_the_launch_proves_the_surface_for_pvc_only():
    src, out = src_out()
    assert load_f32.proven_surfaces((), [src, out, 0, 0, 40, 30, 48], "pvc") == (0,)
    assert load_f32.proven_surfaces((), [src, out, 0, 0, 10, 30, 48], "pvc") == ()
    for profile in ("cpu", "dg2"):
        assert load_f32.proven_surfaces((), [src, out, 0, 0, 40, 30, 48], profile) == ()


def test_compile_with_arguments_marks_the_op_and_keys_the_cache():
    src, out = src_out()
    proven = load_f32.compile(src, out, 0, 0, 40, 30, 48, target="spirv-vc", device="pvc")
    unproven = load_f32.compile(src, out, 0, 0, 10, 30, 48, target="spirv-vc", device="pvc")
    by_types = load_f32.compile(target="spirv-vc", device="pvc")
    assert "surface_fits=1" in proven.ir
    assert "surface_fits" not in unproven.ir and "surface_fits" not in by_types.ir
    assert proven.llvm_ir != unproven.llvm_ir and unproven.llvm_ir == by_types.llvm_ir
    keys = {cache.kernel_key(load_f32, (), "spirv-vc", "pvc", False, s) for s in ((), (0,))}
    assert len(keys) == 2


def test_memory_not_on_64_bytes_is_not_proven():
    from cmlang.kernel import _starts_aligned
    from cmlang.runtime.interop import Foreign

    class Offset(Foreign):
        def __init__(self, start):
            self.start = start

        def extent(self):
            return "memory", self.start, self.start + 1024

    assert _starts_aligned(np.zeros(4)) and _starts_aligned(Offset(128))
    assert not _starts_aligned(Offset(130)) and not _starts_aligned(object())


def gathers(llvm_ir):
    return sum(1 for line in llvm_ir.splitlines() if "call" in line and "llvm.genx.svm.gather" in line)


def test_vector_compute_code_keeps_no_gathers_where_proven():
    profile = get_profile("pvc")
    proven = load_f32.specialization((), "spirv-vc", profile, surfaces=(0,))
    checked = load_f32.specialization((), "spirv-vc", profile)
    assert gathers(proven.llvm_ir) == 0 and "lsc.load2d" in proven.llvm_ir
    assert gathers(checked.llvm_ir) > 0


@pytest.mark.parametrize("place", [(8, 4), (30, 25), (-6, -3), (44, 0)],
                         ids=["inside", "partly-outside", "left-top", "outside"])
def test_messages_alone_match_numpy_in_the_emulator(place):
    from vc_emulator import run_isolated
    x, y = place
    w, h, pitch = 40, 30, 48
    src = surface(np.float32, pitch, 11)
    spec = load_f32.specialization((), "spirv-vc", get_profile("pvc"), surfaces=(0,))
    got = run_isolated(spec, (1,), None, [aligned(src), aligned(np.zeros(128, np.float32)), x, y, w, h, pitch])
    np.testing.assert_array_equal(got[1].reshape(8, 16), block_reference(src, (8, 16), x, y, w, h, pitch))


@needs_ocloc
@pytest.mark.parametrize("target", ["spirv", "spirv-vc"])
def test_igc_builds_less_code_for_a_proven_surface(target):
    src = np.zeros(64 * 256, np.float16)
    out = np.zeros(8 * 128, np.float32)
    proven = load_f16_tiles.compile(src, out, 256, 64, 16, target=target, device="pvc")
    checked = load_f16_tiles.compile(src, out, 16, 64, 16, target=target, device="pvc")   # 32-byte rows
    assert "surface_fits=1" in proven.ir and "surface_fits" not in checked.ir
    assert proven.stats["block2d"] > 0 and proven.stats["spill_bytes"] == 0
    assert proven.stats["instructions"] < checked.stats["instructions"], (proven.stats, checked.stats)
