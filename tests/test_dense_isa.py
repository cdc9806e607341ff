"""Dense flash attention (examples/attention/dense.py) in IGC's ISA on PVC at the model's
head dimension d = 128: the launched kernels (bf16 on the systolic unit, f32 tuned) build
with 0 spill bytes and dpas for bf16; the K^T and V slices by 2-D block loads
(``block_loads``, BLOCK2D) are load_block2d messages feeding the same dpas, and compute
dense attention like the reference (run here on the CPU runtime with PVC's tiles)."""
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
def test_bf16_flash_reads_k_and_v_by_block_messages_without_spills(target):
    """K^T slices 16 x 32, V slices 16 x 64 (bf16): SIMT reads each 16 x 16 dpas tile of b
    with one VNNI-packing message (8 K^T + 8 V loads, 2 and 4 tiles: 16 + 16); spirv-vc
    one message per 64-byte row block (8 x 1 + 4 x 2).  All in the key loop, and its
    shortest pass (the messages' side of each load's run-time check) holds them and every
    dpas.  Each load also keeps a per-element fallback; in SIMT its row offsets, from
    surface operands IGC did not know to be uniform, were vectors hoisted out of the key
    loop (28,288 bytes of spill), in spirv-vc the gathers of whole blocks (51,136)."""
    constexprs, stats, loop = build(cm.bf16, target)
    assert constexprs["BLOCK2D"] is True and (constexprs["KD"], constexprs["VN"]) == (16, 64)
    messages = 32 if target == "spirv" else 16
    assert stats["spill_bytes"] == 0 and stats["dpas"] == 32 and stats["block2d"] == messages, stats
    assert (loop.dpas, loop.block2d) == (32, messages)
    assert (loop.path_dpas, loop.path_block2d) == (32, messages) and loop.path_instructions < loop.instructions


@needs_ocloc
@pytest.mark.parametrize("target", TARGETS)
def test_f32_flash_reads_k_and_v_by_block_messages_without_spills(target):
    """f32 products are FMAs (no dpas instruction); 32-bit 16 x 16 and 16 x 64 slices."""
    constexprs, stats, _ = build(cm.f32, target)
    assert (constexprs["KD"], constexprs["VN"], constexprs["BLOCK2D"]) == (16, 64, True)
    assert stats["spill_bytes"] == 0 and stats["block2d"] > 0 and stats["dpas"] == 0, stats


@needs_ocloc
def test_bf16_flash_by_rows_stays_on_the_systolic_unit():
    """Without block loads (DG2's way, here on PVC): rows by cm.load, the same 32 dpas."""
    constexprs, stats, _ = build(cm.bf16, "spirv", block_loads=False)
    assert constexprs["BLOCK2D"] is False
    assert stats["spill_bytes"] == 0 and stats["dpas"] == 32 and stats["block2d"] == 0, stats


@pytest.mark.parametrize("dtype, causal", [("bfloat16", True), ("float32", False)])
def test_block_loads_compute_dense_attention_with_pvc_tiles(monkeypatch, dtype, causal):
    """PVC's tiles and packing with BLOCK2D, on the CPU runtime (the load_2d semantics: the
    surface's zero fill past the keys is masked like the future): against float64."""
    if dtype == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        dtype = ml_dtypes.bfloat16
    for module in (layout, dense):      # dense.py's tiles and layout's packing
        monkeypatch.setattr(module, "current_profile", lambda: get_profile("pvc"))
    monkeypatch.setenv("CMLANG_AUTOTUNE", "0")
    rng = np.random.default_rng(7)
    n, hq, hkv, d = 77, 4, 2, 32         # d = 32: two 16-row slices, a small kernel to build here
    q, k, v = (rng.standard_normal((n, h, d)).astype(dtype) for h in (hq, hkv, hkv))
    with recording() as launched:
        got = att.dense_attention(q, k, v, causal)
    flash = [kernel._constexpr_dict(key) for kernel, key, _ in launched if kernel.__name__ == "flash_attention"]
    assert [c["BLOCK2D"] for c in flash] == [True]
    want = att.dense_attention_reference(*(a.astype(np.float64) for a in (q, k, v)), causal)
    error = np.abs(got.astype(np.float64) - want).max() / np.abs(want).max()
    assert error <= (2 * 2.0 ** -8 if got.dtype != np.float32 else 2e-5), error
