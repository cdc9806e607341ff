"""Lightning attention on Intel GPUs with bf16 inputs (the model's d = 128): what Intel's
compiler builds of every kernel the attn-lightning-bf16 workload launches on PVC and DG2
(both flavours: 0 spill bytes, the products on the systolic unit, K/V tiles by 2-D block
loads on PVC), and that the GPU form (bf16 dpas operands, K slices of 16, simd 8 on DG2)
computes Lightning attention within the bf16 bound, run on the CPU runtime with those
profiles' tiles.  The CPU profile keeps its f32 form (FMAs streamed from memory)."""
from __future__ import annotations

import numpy as np
import pytest

import cmlang as cm
from cmlang.codegen import intel_gpu

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)

import examples.attention as att                 # noqa: E402
from examples.attention import lightning         # noqa: E402

needs_ocloc = pytest.mark.skipif(not intel_gpu.available(),
                                 reason="Intel's offline compiler (ocloc) is not installed")
DEVICES = ("pvc", "dg2")
TARGETS = ("spirv", "spirv-vc")
PRODUCTS = ("lightning_intra", "lightning_scan")     # the kernels with matrix products
BOUND = 2 * 2.0 ** -8          # bf16, relative to max |reference| (as tests/test_attention_lowp.py)


def launched(device=None) -> list:
    """(kernel, constexpr key) of every specialization lightning_attention launches with the
    attn-lightning-bf16 workload's shapes (bf16, 8 heads, d = 128, chunk 64; few tokens: the
    tiles do not depend on N), planning for ``device`` (None: the CPU runtime's own)."""
    import contextlib
    from cmlang.isa_report import recording
    from cmlang.runtime.profiles import device_choice, planning_for
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((80, 8, 128)).astype(BF16) for _ in range(3))
    with planning_for(device_choice(device)[0]) if device else contextlib.nullcontext(), recording() as found:
        att.lightning_attention(q, k, v)
    return list(found)


@pytest.fixture(scope="module")
def rows():
    from cmlang.isa_report import Specialization, build_rows
    specs = [Specialization(kernel, key, "attn-lightning-bf16", device, surfaces)
             for device in DEVICES for kernel, key, surfaces in launched(device)]
    built = build_rows(specs, list(DEVICES), list(TARGETS), progress=False)
    assert [f"{r.kernel} {r.target} {r.device}: {r.error}" for r in built if r.error] == []
    return built


@needs_ocloc
def test_every_bf16_lightning_build_is_free_of_spills(rows):
    assert {(r.kernel, r.target, r.device) for r in rows} >= {
        (k, t, d) for k in PRODUCTS + ("pack_keys", "pack_values") for t in TARGETS for d in DEVICES}
    assert [(r.kernel, r.target, r.device, r.spill_bytes) for r in rows if r.spill_bytes] == []


@needs_ocloc
def test_the_products_go_to_the_systolic_unit(rows):
    products = [r for r in rows if r.kernel in PRODUCTS]
    assert len(products) == len(PRODUCTS) * len(TARGETS) * len(DEVICES)
    assert [(r.kernel, r.target, r.device) for r in products if not r.dpas] == []
    for r in products:          # bf16 operands, K slices of the unit's depth, its width on DG2
        assert r.constexprs["P"] == "bf16" and r.constexprs["KC"] == 16      # rows name element types
        assert r.simd == (16 if r.device == "pvc" else 8)


@needs_ocloc
def test_key_and_value_tiles_by_2d_block_loads_on_pvc(rows):
    for r in rows:
        if r.kernel in PRODUCTS:
            assert r.constexprs["B2D"] == (r.device == "pvc")
            if r.device == "pvc":
                assert r.block2d > 0, r


def test_the_cpu_keeps_f32_products_streamed_from_memory():
    kernels = {kernel.__name__: kernel._constexpr_dict(key) for kernel, key, _ in launched()}
    assert kernels["lightning_scan"]["P"] == cm.f32 and kernels["lightning_scan"]["KS"] == 0
    assert kernels["lightning_intra"]["P"] == cm.f32 and kernels["lightning_intra"]["KC"] == 0


@pytest.mark.parametrize("device, chunk", [("pvc", 64), ("dg2", 16)])
@needs_ocloc
def test_the_gpu_form_computes_bf16_lightning_attention(monkeypatch, device, chunk):
    """bf16 dpas inputs add roundings of P = (Q K^T) (.) decay, of K^T diag(lambda^(L-1-j)) (the
    state update's left factor) and of the state as the right operand of Q H: the output
    and the state (f32) stay within the bf16 bound of the float64 reference."""
    monkeypatch.setenv("CMLANG_AUTOTUNE_DEVICE", device)
    assert lightning.scan_on_gpu_tiles(64, chunk)
    rng = np.random.default_rng(chunk)
    n, hq, hkv, d = 150, 4, 2, 64          # a partial last chunk, GQA
    q, k, v = (rng.standard_normal((n, h, d)).astype(BF16) for h in (hq, hkv, hkv))
    state0 = rng.standard_normal((hq, d, d)).astype(np.float32) * 0.1
    o, state = att.lightning_attention(q, k, v, state=state0, chunk=chunk, out_dtype=np.float32)
    want_o, want_state = att.lightning_attention_reference(*(x.astype(np.float64) for x in (q, k, v)),
                                                           state=state0.astype(np.float64))
    for got, want in ((o, want_o), (state, want_state)):
        error = float(np.abs(got - want).max()) / float(np.abs(want).max())
        assert 1e-5 < error <= BOUND         # bf16 roundings, not f32 products
