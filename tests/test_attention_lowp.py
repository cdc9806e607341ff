"""bf16 and f16 inputs of the attention examples (examples/attention), and what they rest on:
``cm.ptr[T]`` with T a constexpr parameter (one kernel source for f32/f16/bf16), bf16 host
arrays as ml_dtypes' bfloat16.

Accuracy: each result is compared with the float64 reference computed from the same
(rounded) bf16/f16 inputs, so the bound measures what the kernels add: the rounding of the
scaled queries and of P (the dpas inputs where a systolic unit multiplies bf16/f16) and of
the output.  Bound, relative to max |reference|: 2 * 2^-8 for bf16 and 2 * 2^-10 for f16
(two units of the format's epsilon at 1; measured up to 4.3e-3 and 4.2e-4).

The PVC and DG2 paths (bf16 packed Q/K/V, systolic tiles, simd 8 on DG2) run here on the
CPU runtime by planning for those profiles (``planning_for``: their tiles and packing), so
the same specializations are checked numerically; IGC then checks that they reach the
systolic unit (dpas) with 0 spill bytes.
"""
from __future__ import annotations

import numpy as np
import pytest

import cmlang as cm
import cmlang.runtime as rt
from cmlang.codegen import intel_gpu
from cmlang.errors import CompileError, LaunchError
from cmlang.runtime.profiles import get_profile

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)

import examples.attention as att                         # noqa: E402
from examples.attention import dense, kernels, layout     # noqa: E402

BOUND = {"bfloat16": 2 * 2.0 ** -8, "float16": 2 * 2.0 ** -10}
LOW = [pytest.param(BF16, id="bf16"), pytest.param(np.dtype(np.float16), id="f16")]
needs_ocloc = pytest.mark.skipif(not intel_gpu.available(),
                                 reason="Intel's offline compiler (ocloc) is not installed")


def relative_error(got, expected):
    return np.abs(np.asarray(got, np.float64) - expected).max() / max(np.abs(expected).max(), 1e-30)


def rounded(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def f64(*arrays):
    return tuple(a.astype(np.float64) for a in arrays)


# --------------------------------------------------------------------------- cm.ptr[T]

@cm.kernel(simd=16)
def twice(a: cm.ptr[T], out: cm.ptr[O], T: cm.constexpr, O: cm.constexpr):
    x = cm.load(a, 0, 16).astype(cm.f32)
    cm.store(out, 0, (x * 2.0).astype(O))


@pytest.mark.parametrize("t, dtype", [(cm.f32, np.float32), (cm.f16, np.float16), (cm.bf16, BF16)])
def test_pointer_element_type_from_a_constexpr(t, dtype):
    a = np.linspace(-2, 2, 16).astype(dtype)
    out = rt.empty(16, np.float32)
    twice[1](a, out, t, cm.f32)
    np.testing.assert_array_equal(out.numpy(), 2 * a.astype(np.float32))
    key, _ = twice._split_args((a, out, t, cm.f32))
    assert [str(p) for _, p in twice.param_types(key)] == [f"ptr<{t}>", "ptr<f32>"]
    assert [str(p) for _, p in twice.runtime_params] == ["ptr<T>", "ptr<O>"]


def test_bf16_buffers_as_bits_or_bfloat16_arrays():
    a = np.linspace(-2, 2, 16).astype(BF16)
    for given in (a, a.view(np.uint16), rt.to_device(a)):
        out = rt.empty(16, BF16)
        twice[1](given, out, cm.bf16, cm.bf16)
        np.testing.assert_array_equal(out.numpy().astype(np.float32), 2 * a.astype(np.float32))
    with pytest.raises(LaunchError, match=r"argument 'a' \(ptr<bf16>\) needs a uint16 \(bf16 bits\) or "
                                          r"bfloat16 array, got float32"):
        twice[1](a.astype(np.float32), rt.empty(16, BF16), cm.bf16, cm.bf16)


def test_pointer_element_constexpr_must_be_a_type():
    with pytest.raises(CompileError, match=r"parameter 'a' is cm.ptr\[T\], so the constexpr 'T' must be a "
                                           r"cmlang scalar type .* got 3"):
        twice[1](np.zeros(16, np.float32), rt.empty(16, np.float32), 3, cm.f32)


# --------------------------------------------------------------------------- dense attention

@pytest.fixture(params=["cpu", "pvc", "dg2"])
def profile(request):
    """Tiles, packing and simd that host code plans for that device profile (``planning_for``,
    as ``cmlang isa`` does; the kernels run on the CPU runtime).  The GPU plans rank tiles
    by Intel's compiler, which CI installs."""
    from cmlang.runtime.profiles import planning_for
    if request.param != "cpu" and not intel_gpu.available():
        pytest.skip("planning for a GPU ranks tiles by Intel's offline compiler (ocloc)")
    with planning_for(get_profile(request.param)):
        yield request.param


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("n, hq, hkv, causal", [
    (1, 2, 1, True), (63, 4, 2, True), (65, 4, 1, True), (129, 4, 4, False), (100, 16, 1, True)])
def test_dense_low_precision(profile, dtype, n, hq, hkv, causal):
    """N around the 64-key block, GQA G in {1, 2, 4, 16}, causal and not."""
    rng = np.random.default_rng(n)
    q, k, v = rounded(rng, (n, hq, 64), dtype), rounded(rng, (n, hkv, 64), dtype), rounded(rng, (n, hkv, 64), dtype)
    expected = att.dense_attention_reference(*f64(q, k, v), causal=causal)
    from cmlang.isa_report import recording
    with recording() as found:
        o = att.dense_attention(q, k, v, causal=causal)
    (flash,) = [kernel._constexpr_dict(key) for kernel, key, _ in found if kernel.__name__ == "flash_attention"]
    if profile != "cpu":         # the planned device's systolic tile, not the CPU's
        assert {k: flash[k] for k in ("M", "KB", "KD")} == {k: dense.SYSTOLIC_TILES[profile][k]
                                                            for k in ("M", "KB", "KD")}
    assert o.dtype == dtype and o.shape == q.shape
    assert relative_error(o, expected) <= BOUND[dtype.name]
    o32 = att.dense_attention(q, k, v, causal=causal, out_dtype=np.float32)
    assert o32.dtype == np.float32
    assert relative_error(o32, expected) <= BOUND[dtype.name]


def test_dense_low_precision_causal_mask_inside_the_tile(profile):
    """A later key with a huge value must not leak into earlier rows of the same key tile."""
    rng = np.random.default_rng(3)
    q, k, v = (rounded(rng, (40, 2, 32), BF16) for _ in range(3))
    v[20:] = 1000
    expected = att.dense_attention_reference(*f64(q, k, v))
    o = att.dense_attention(q, k, v)
    assert np.abs(o[:20].astype(np.float64)).max() < 10
    assert relative_error(o, expected) <= BOUND["bfloat16"]


def test_dense_f32_inputs_stay_f32_and_exact():
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((70, 4, 32), np.float32) for _ in range(3))
    o = att.dense_attention(q, k, v)
    assert o.dtype == np.float32
    assert relative_error(o, att.dense_attention_reference(q, k, v)) < 2e-5
    o16 = att.dense_attention(q, k, v, out_dtype="bfloat16")
    assert o16.dtype == BF16 and relative_error(o16, att.dense_attention_reference(q, k, v)) <= 2.0 ** -8


def test_dense_bad_out_dtype():
    q = np.zeros((4, 2, 16), np.float32)
    with pytest.raises(ValueError, match="out_dtype must be float32, float16 or bfloat16, got 'int8'"):
        att.dense_attention(q, q, q, out_dtype="int8")


def test_systolic_profiles_pack_the_input_type_and_cpu_packs_f32():
    assert layout.packed_type(cm.bf16, get_profile("pvc")) == cm.bf16
    assert layout.packed_type(cm.f16, get_profile("dg2")) == cm.f16
    assert layout.packed_type(cm.bf16, get_profile("cpu")) == cm.f32
    kernel, constexprs = dense.flash_specialization(128, cm.bf16, profile="dg2")
    assert kernel.simd == 8 and constexprs["T"] == cm.bf16 and constexprs["M"] == 2
    kernel, constexprs = dense.flash_specialization(128, cm.bf16, profile="cpu")
    assert kernel is kernels.flash_attention and constexprs["T"] == cm.f32 and constexprs["KD"] == 128


# --------------------------------------------------------------------------- RoPE / RMSNorm

@pytest.mark.parametrize("dtype", LOW)
def test_rope_low_precision(dtype):
    rng = np.random.default_rng(1)
    x = rounded(rng, (37, 4, 64), dtype)
    expected = att.rope_reference(x.astype(np.float64), offset=5)
    got = att.rope(x, offset=5)
    assert got.dtype == dtype and relative_error(got, expected) <= BOUND[dtype.name] / 2
    got32 = att.rope(x, offset=5, out_dtype=np.float32)
    assert got32.dtype == np.float32 and relative_error(got32, expected) < 1e-6


@pytest.mark.parametrize("dtype", LOW)
def test_rmsnorm_low_precision(dtype):
    rng = np.random.default_rng(2)
    x = rounded(rng, (33, 3, 64), dtype) * 5
    w = rng.standard_normal(64).astype(np.float32)
    expected = att.rmsnorm_reference(x.astype(np.float64), weight=w.astype(np.float64))
    got = att.rmsnorm(x, weight=w)
    assert got.dtype == dtype and relative_error(got, expected) <= BOUND[dtype.name] / 2
    got32 = att.rmsnorm(x, weight=w, out_dtype=np.float32)
    assert got32.dtype == np.float32 and relative_error(got32, expected) < 1e-6


# --------------------------------------------------------------------------- Intel's GPU compiler

@needs_ocloc
@pytest.mark.parametrize("device", ["pvc", "dg2"])
@pytest.mark.parametrize("t", [cm.bf16, cm.f16])
def test_low_precision_flash_reaches_the_systolic_unit_without_spills(device, t):
    kernel, constexprs = dense.flash_specialization(128, t, profile=device)
    stats = kernel.compile(target="spirv", device=device, **constexprs).native_build.stats
    assert stats["dpas"] > 0, stats
    assert stats["spill_bytes"] == 0, stats


@needs_ocloc
@pytest.mark.parametrize("device", ["pvc", "dg2"])
@pytest.mark.parametrize("pack", ["pack_keys", "pack_values", "pack_queries"])
def test_bf16_pack_kernels_fit_the_register_file(device, pack):
    stats = getattr(kernels, pack).compile(target="spirv", device=device, D=128, T=cm.bf16,
                                           P=cm.bf16).native_build.stats
    assert stats["spill_bytes"] == 0, stats


def test_isa_report_records_the_specializations_each_device_is_given():
    """`cmlang isa` plans the launches for each device: bf16 flash for PVC (simd 16, bf16
    operands) and for DG2 (simd 8, its own tile); the CPU's f32-packed flash for neither."""
    from cmlang.isa_report import launched_specializations
    specs = launched_specializations(["attn-dense-bf16"], size="tiny", report=lambda _: None,
                                     devices=["pvc", "dg2"])
    flash = {(s.device, s.kernel.simd): s.constexprs() for s in specs if s.name == "flash_attention"}
    assert set(flash) == {("pvc", 16), ("dg2", 8)}
    assert flash["pvc", 16]["T"] == cm.bf16 and flash["pvc", 16]["KB"] == 32
    assert flash["dg2", 8]["T"] == cm.bf16 and flash["dg2", 8]["M"] == 2
    assert [str(t) for t in next(s for s in specs if s.device == "dg2" and s.name == "flash_attention")
            .argument_types()[:4]] == ["ptr<bf16>"] * 4


# --------------------------------------------------------------------------- Lightning

@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("n, hq, hkv, chunk, slopes", [
    (1, 2, 1, 16, None), (70, 4, 2, 32, None), (129, 4, 4, 64, 0.0), (50, 2, 1, 16, 3.0)])
def test_lightning_low_precision(dtype, n, hq, hkv, chunk, slopes):
    """ALiBi, no decay (slope 0) and strong decay; an initial f32 state; chunk sizes."""
    rng = np.random.default_rng(n)
    q, k, v = rounded(rng, (n, hq, 32), dtype), rounded(rng, (n, hkv, 32), dtype), rounded(rng, (n, hkv, 32), dtype)
    state = rng.standard_normal((hq, 32, 32)).astype(np.float32) * 0.1
    o_ref, s_ref = att.lightning_attention_reference(*f64(q, k, v), slopes=slopes, state=state.astype(np.float64))
    o, s = att.lightning_attention(q, k, v, slopes=slopes, state=state, chunk=chunk)
    assert o.dtype == dtype and s.dtype == np.float32
    assert relative_error(o, o_ref) <= BOUND[dtype.name]
    assert relative_error(s, s_ref) < 1e-5          # the state stays f32 throughout
    o32, _ = att.lightning_attention(q, k, v, slopes=slopes, state=state, chunk=chunk, out_dtype=np.float32)
    assert o32.dtype == np.float32 and relative_error(o32, o_ref) < 1e-5


@pytest.mark.parametrize("dtype", LOW)
def test_lightning_split_prefill_and_decode_low_precision(dtype):
    rng = np.random.default_rng(7)
    q, k, v = rounded(rng, (41, 4, 32), dtype), rounded(rng, (41, 2, 32), dtype), rounded(rng, (41, 2, 32), dtype)
    whole, _ = att.lightning_attention_reference(*f64(q, k, v))
    o1, s1 = att.lightning_attention(q[:30], k[:30], v[:30], chunk=16)
    o2, s2 = att.lightning_attention(q[30:40], k[30:40], v[30:40], state=s1, chunk=16)
    o3, _ = att.lightning_decode(q[40], k[40], v[40], state=s2)
    assert o3.dtype == dtype and o3.shape == (4, 32)
    got = np.concatenate([o1, o2, o3[None]])
    assert relative_error(got, whole) <= BOUND[dtype.name]


# --------------------------------------------------------------------------- InfLLM-V2

SMALL = dict(block=16, l1=8, s1=4, l2=32, s2=16, init_blocks=1, local_blocks=1, topk=4)


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("n", [1, 15, 16, 17, 31, 32, 33, 70])
def test_infllm_low_precision(dtype, n):
    """N in {1, B-1, B, B+1, l2-1, l2, l2+1} and one not a multiple of B; the selection is
    the float64 reference's on the same rounded inputs."""
    rng = np.random.default_rng(n)
    q, k, v = rounded(rng, (n, 4, 32), dtype), rounded(rng, (n, 2, 32), dtype), rounded(rng, (n, 2, 32), dtype)
    q64, k64, v64 = f64(q, k, v)
    np.testing.assert_array_equal(att.infllmv2_select(q, k, **SMALL),
                                  att.infllmv2_select_reference(q64, k64, **SMALL))
    o = att.infllmv2_attention(q, k, v, **SMALL)
    assert o.dtype == dtype
    assert relative_error(o, att.infllmv2_attention_reference(q64, k64, v64, **SMALL)) <= BOUND[dtype.name]


@pytest.mark.parametrize("hq, hkv", [(2, 2), (4, 1), (16, 1)])
def test_infllm_bf16_topk_covering_all_blocks_equals_dense(hq, hkv):
    rng = np.random.default_rng(hq)
    q, k, v = rounded(rng, (100, hq, 32), BF16), rounded(rng, (100, hkv, 32), BF16), rounded(rng, (100, hkv, 32), BF16)
    o = att.infllmv2_attention(q, k, v, **dict(SMALL, topk=7), out_dtype=np.float32)
    assert o.dtype == np.float32
    assert relative_error(o, att.dense_attention_reference(*f64(q, k, v))) <= BOUND["bfloat16"]


def test_infllm_bf16_decode_equals_last_prefill_row():
    rng = np.random.default_rng(5)
    q, k, v = rounded(rng, (45, 4, 32), BF16), rounded(rng, (45, 2, 32), BF16), rounded(rng, (45, 2, 32), BF16)
    decoded = att.infllmv2_decode(q[-1], k, v, **SMALL)
    assert decoded.dtype == BF16 and decoded.shape == (4, 32)
    np.testing.assert_array_equal(decoded.astype(np.float32), att.infllmv2_attention(q, k, v, **SMALL)[-1]
                                  .astype(np.float32))


@pytest.mark.parametrize("n", [33, 70])
def test_infllm_bf16_with_systolic_operands(profile, n):
    """PVC's and DG2's packing (bf16 compressed keys, K and V; queries rounded to bf16 as
    the left operand of every score product; simd 8 on DG2), run here on the CPU runtime."""
    rng = np.random.default_rng(n)
    q, k, v = rounded(rng, (n, 4, 32), BF16), rounded(rng, (n, 2, 32), BF16), rounded(rng, (n, 2, 32), BF16)
    q64, k64, v64 = f64(q, k, v)
    np.testing.assert_array_equal(att.infllmv2_select(q, k, **SMALL),
                                  att.infllmv2_select_reference(q64, k64, **SMALL))
    o = att.infllmv2_attention(q, k, v, **SMALL)
    assert relative_error(o, att.infllmv2_attention_reference(q64, k64, v64, **SMALL)) <= BOUND["bfloat16"]
