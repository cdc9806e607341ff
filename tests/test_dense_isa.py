"""Dense flash attention (examples/attention/dense.py) in IGC's ISA on PVC at the model's
head dimension d = 128: the launched kernels (bf16 on the systolic unit, f32 tuned) build
with 0 spill bytes and dpas for bf16; the K^T and V slices by 2-D block loads
(``block_loads``, BLOCK2D) are load_block2d messages feeding the same dpas, and compute
dense attention like the reference (run here on the CPU runtime with PVC's tiles).  That
path is not yet the default: in spirv-vc each load's run-time fallback still spills (below)."""
import numpy as np
import pytest

import cmlang as cm
from cmlang.codegen import intel_gpu
from cmlang.isa_report import hot_loop, recording
from cmlang.runtime.profiles import get_profile

import examples.attention as att
from examples.attention import dense, layout

needs_ocloc = pytest.mark.skipif(not intel_gpu.available(),
                                 reason="Intel's offline compiler (ocloc) is not installed")
TARGETS = ["spirv", "spirv-vc"]


def build(t, target, block_loads=None):
    kernel, constexprs = dense.flash_specialization(128, t, profile="pvc", block_loads=block_loads)
    if t == cm.f32:       # the tile cm.autotune picks on PVC (no spill in both flavours)
        kernel = cm.kernel(kernel.fn, simd=kernel.simd, grf=256)
        constexprs.update(M=8, KB=16)
    ck = kernel.compile(target=target, device="pvc", **constexprs)
    return constexprs, ck.stats, hot_loop(ck.isa)


@needs_ocloc
@pytest.mark.parametrize("target", TARGETS)
def test_bf16_flash_on_pvc_uses_the_systolic_unit_without_spills(target):
    constexprs, stats, loop = build(cm.bf16, target)
    assert constexprs["BLOCK2D"] is False
    assert stats["spill_bytes"] == 0 and stats["dpas"] == 32, stats
    assert loop.dpas == 32          # every product in the key loop


@needs_ocloc
@pytest.mark.parametrize("target", TARGETS)
def test_bf16_flash_block_loads_are_block_messages_on_pvc(target):
    """K^T slices 16 x 32, V slices 16 x 64 (bf16): SIMT reads each 16 x 16 dpas tile of b
    with one VNNI-packing message (8 K^T + 8 V loads, 2 and 4 tiles: 16 + 16); spirv-vc
    one message per 64-byte row block (8 x 1 + 4 x 2), all in the key loop."""
    constexprs, stats, loop = build(cm.bf16, target, block_loads=True)
    assert constexprs["BLOCK2D"] is True and (constexprs["KD"], constexprs["VN"]) == (16, 64)
    expected = 32 if target == "spirv" else 16
    assert stats["block2d"] == expected and stats["dpas"] == 32, stats
    assert (loop.block2d, loop.dpas) == (expected, 32)


@needs_ocloc
@pytest.mark.parametrize("target", TARGETS)
def test_f32_flash_block_loads_are_block_messages_on_pvc(target):
    """f32 products are FMAs (no dpas instruction); 32-bit 16 x 16 and 16 x 64 slices."""
    constexprs, stats, _ = build(cm.f32, target, block_loads=True)
    assert (constexprs["KD"], constexprs["VN"], constexprs["BLOCK2D"]) == (16, 64, True)
    assert stats["block2d"] > 0 and stats["dpas"] == 0, stats


@needs_ocloc
def test_bf16_flash_block_loads_build_without_spills_in_simt():
    """Each load_2d keeps a per-lane fallback for surfaces the messages cannot take; its
    row offsets, from surface operands IGC did not know to be uniform, were vectors hoisted
    out of the key loop: 28,288 bytes of spill.  The fast pass through the loop is the
    messages and the dpas."""
    _, stats, loop = build(cm.bf16, "spirv", block_loads=True)
    assert stats["spill_bytes"] == 0, stats
    assert (loop.path_dpas, loop.path_block2d) == (32, 32) and loop.path_instructions < loop.instructions / 4


@needs_ocloc
@pytest.mark.xfail(strict=True, reason="spirv-vc: the gathers of each load_2d's fallback still spill "
                                       "in the key loop (10,944 bytes; 51,136 before their addresses "
                                       "were made per message and per row)")
def test_bf16_flash_block_loads_build_without_spills_in_vector_compute():
    _, stats, _ = build(cm.bf16, "spirv-vc", block_loads=True)
    assert stats["spill_bytes"] == 0, stats


@pytest.mark.parametrize("dtype, causal", [("bfloat16", True), ("float32", False)])
def test_block_loads_compute_dense_attention_with_pvc_tiles(monkeypatch, dtype, causal):
    """PVC's tiles and packing with BLOCK2D, on the CPU runtime (the load_2d semantics: the
    surface's zero fill past the keys is masked like the future): against float64."""
    if dtype == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        dtype = ml_dtypes.bfloat16
    for module in (layout, dense):      # dense.py's tiles and layout's packing
        monkeypatch.setattr(module, "current_profile", lambda: get_profile("pvc"))
    monkeypatch.setattr(dense, "BLOCK_LOADS", True)
    monkeypatch.setenv("CMLANG_AUTOTUNE", "0")
    rng = np.random.default_rng(7)
    n, hq, hkv, d = 77, 4, 2, 32         # d = 32: two 16-row slices, a small kernel to build here
    q, k, v = (rng.standard_normal((n, h, d)).astype(dtype) for h in (hq, hkv, hkv))
    with recording() as launched:
        got = att.dense_attention(q, k, v, causal)
    flash = [kernel._constexpr_dict(key) for kernel, key in launched if kernel.__name__ == "flash_attention"]
    assert [c["BLOCK2D"] for c in flash] == [True]
    want = att.dense_attention_reference(*(a.astype(np.float64) for a in (q, k, v)), causal)
    error = np.abs(got.astype(np.float64) - want).max() / np.abs(want).max()
    assert error <= (2 * 2.0 ** -8 if got.dtype != np.float32 else 2e-5), error
