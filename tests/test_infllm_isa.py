"""The InfLLM-V2 kernels with 16-bit operands as Intel's GPU compiler builds them: the
specializations ``infllmv2_attention`` launches for bf16 at the model's shape (d = 128, G = 8
query heads per KV head, 64-key blocks: what the attn-infllmv2-bf16 workload launches), with
the tiles cm.autotune chooses for PVC and DG2, built in both flavours (SIMT and vector
compute): no register spills, the products on the systolic unit (dpas), on PVC the K and V
tiles by 2-D block messages.  And the same tiles
computing InfLLM-V2 on the CPU device (``CMLANG_AUTOTUNE_DEVICE`` naming the GPU profile).

The specializations come from one small run (130 tokens) per device while the host plans for
it (``planning_for``, as ``cmlang isa`` does): the tiles depend on d, G and the block
geometry, not on the number of tokens, so the quick workload's 4096 are not needed."""
from __future__ import annotations

import numpy as np
import pytest

import cmlang as cm
from cmlang.codegen import intel_gpu
from cmlang.isa_report import Specialization, build_rows, recording
from cmlang.runtime.profiles import planning_for

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)

import examples.attention as att                    # noqa: E402
from examples.attention.bench import SPARSE         # noqa: E402

needs_ocloc = pytest.mark.skipif(not intel_gpu.available(),
                                 reason="Intel's offline compiler (ocloc) is not installed")

DEVICES = ("pvc", "dg2")
TARGETS = ("spirv", "spirv-vc")
PRODUCTS = ("infllm_lse", "infllm_block_scores", "infllm_attend")   # the kernels with a dpas
HQ, HKV, D = 8, 1, 128                                               # the workload's heads and d


def model_inputs(n, dtype, seed=16):
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal((n, h, D)).astype(dtype) for h in (HQ, HKV, HKV))


@pytest.fixture(scope="module")
def rows():
    q, k, v = model_inputs(130, BF16)
    specs = []
    for device in DEVICES:
        with planning_for(device), recording() as found:
            att.infllmv2_attention(q, k, v, **SPARSE)
        specs += [Specialization(kernel, key, "attn-infllmv2-bf16", device, surfaces)
                  for kernel, key, surfaces in found if kernel.__name__ in PRODUCTS]
    built = build_rows(specs, list(DEVICES), list(TARGETS), progress=False)
    failed = [f"{r.kernel} {r.target} {r.device}: {r.error}" for r in built if r.error]
    assert not failed, "\n".join(failed)
    return built


@needs_ocloc
def test_every_product_kernel_is_built_for_both_devices_and_flavours(rows):
    assert {(r.kernel, r.target, r.device) for r in rows} == {
        (k, t, d) for k in PRODUCTS for t in TARGETS for d in DEVICES}
    assert all(str(r.constexprs["T"]) == str(r.constexprs["P"]) == "bf16" for r in rows)
    assert all(r.constexprs["D"] == D for r in rows)


@needs_ocloc
@pytest.mark.parametrize("kernel", PRODUCTS)
def test_no_spills_and_the_products_on_the_systolic_unit(rows, kernel):
    built = [r for r in rows if r.kernel == kernel]
    assert [(r.target, r.device, r.spill_bytes) for r in built] == [
        (r.target, r.device, 0) for r in built]
    assert all(r.dpas > 0 for r in built), [(r.target, r.device, r.dpas) for r in built]


@needs_ocloc
@pytest.mark.parametrize("target", TARGETS)
def test_k_and_v_tiles_come_by_2d_block_messages_on_pvc(rows, target):
    """Every product kernel reads its key (and value) tiles with cm.load_2d on PVC, and the
    launch proves the surfaces, so the build has the block messages alone; DG2 has none."""
    pvc = {r.kernel: r for r in rows if r.device == "pvc" and r.target == target}
    assert {k: (r.constexprs["B2D"], r.block2d > 0) for k, r in pvc.items()} == {
        k: (True, True) for k in PRODUCTS}
    assert all(r.block2d == 0 and not r.constexprs["B2D"] for r in rows if r.device == "dg2")


@needs_ocloc
def test_dg2_runs_the_products_at_its_systolic_width(rows):
    """DG2's unit is 8 lanes wide: its specializations are simd 8, PVC's simd 16."""
    assert {(r.device, r.simd) for r in rows} == {("pvc", 16), ("dg2", 8)}


@pytest.mark.parametrize("device", DEVICES)
@needs_ocloc
def test_the_gpu_tiles_compute_infllmv2(monkeypatch, device):
    """The GPU tiles (KD-deep slices, P V in column tiles, K/V by cm.load_2d on PVC, fewer
    rows and heads per CM thread on DG2) run on the CPU device: the float64 reference's
    selection on the same rounded inputs, the output within 2 units of bf16's epsilon of
    the largest value."""
    monkeypatch.setenv("CMLANG_AUTOTUNE_DEVICE", device)
    q, k, v = model_inputs(200, BF16, seed=3)                 # rows not a multiple of a tile
    params = dict(SPARSE, topk=3, local_blocks=1)
    q64, k64, v64 = (x.astype(np.float64) for x in (q, k, v))
    np.testing.assert_array_equal(att.infllmv2_select(q, k, **params),
                                  att.infllmv2_select_reference(q64, k64, **params))
    got = np.asarray(att.infllmv2_attention(q, k, v, **params), np.float64)
    want = att.infllmv2_attention_reference(q64, k64, v64, **params)
    assert np.abs(got - want).max() / np.abs(want).max() <= 2 * 2.0 ** -8

