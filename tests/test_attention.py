"""MiniCPM-SALA attention examples: cmlang kernels and SIMT OpenCL C versions against
the float64 references, on the edge cases of docs/attention.md at small shapes.

InfLLM-V2 runs with the model's parameters scaled down by 4 (same ratios):
block 16, compression 8/4 and 32/16.  Tolerances: float32 results against float64
references agree to 2e-5 relative to the largest reference value."""
import numpy as np
import pytest

import cmlang.examples.attention as att
from cmlang.examples.attention import reference as ref, simt

SMALL = dict(block=16, l1=8, s1=4, l2=32, s2=16, init_blocks=1, local_blocks=1, topk=4)
EDGE_LENGTHS = [1, 15, 16, 17, 31, 32, 33]          # 1, B-1, B, B+1, l2-1, l2, l2+1 with B=16, l2=32
GQA = [(2, 2), (4, 2), (4, 1), (16, 1)]             # (Hq, Hkv): G = 1, 2, 4, 16


def qkv(rng, n, hq, hkv, d=16):
    return (rng.standard_normal((n, hq, d)).astype(np.float32),
            rng.standard_normal((n, hkv, d)).astype(np.float32),
            rng.standard_normal((n, hkv, d)).astype(np.float32))


def assert_close(got, want, tol=2e-5):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    err = float(np.abs(got - want).max(initial=0.0)) / scale
    assert err < tol, f"max error {err:.3g} relative to {scale:.3g}"


# --------------------------------------------------------------------------- dense

@pytest.mark.parametrize("n", EDGE_LENGTHS)
def test_dense_edge_lengths(rng, n):
    q, k, v = qkv(rng, n, 4, 2)
    assert_close(att.dense_attention(q, k, v), ref.dense_attention_reference(q, k, v))


@pytest.mark.parametrize("hq,hkv", GQA)
def test_dense_gqa_and_non_causal(rng, hq, hkv):
    q, k, v = qkv(rng, 70, hq, hkv)
    assert_close(att.dense_attention(q, k, v), ref.dense_attention_reference(q, k, v))
    assert_close(att.dense_attention(q, k, v, causal=False), ref.dense_attention_reference(q, k, v, causal=False))


def test_dense_head_dim_128(rng):
    q, k, v = qkv(rng, 90, 2, 1, d=128)
    assert_close(att.dense_attention(q, k, v), ref.dense_attention_reference(q, k, v))


def test_dense_causal_mask_inside_the_diagonal_tile(rng):
    """Rows before position 20 must not see keys from 20 on (same 64-key tile)."""
    q, k, v = qkv(rng, 40, 2, 1)
    k2, v2 = k.copy(), v.copy()
    k2[20:] += 5.0
    v2[20:] -= 3.0
    a, b = att.dense_attention(q, k, v), att.dense_attention(q, k2, v2)
    np.testing.assert_array_equal(a[:20], b[:20])
    assert not np.allclose(a[20:], b[20:])


# --------------------------------------------------------------------------- Lightning

@pytest.mark.parametrize("n", [1, 15, 17, 33, 100])
def test_lightning_matches_the_recurrence(rng, n):
    q, k, v = qkv(rng, n, 4, 2)
    o, state = att.lightning_attention(q, k, v, chunk=16)
    o_ref, state_ref = ref.lightning_attention_reference(q, k, v)
    assert_close(o, o_ref)
    assert_close(state, state_ref)


def test_lightning_chunk_sizes_agree(rng):
    q, k, v = qkv(rng, 150, 4, 1)
    o_ref, s_ref = ref.lightning_attention_reference(q, k, v)
    for chunk in (16, 32, 64, 128):
        o, s = att.lightning_attention(q, k, v, chunk=chunk)
        assert_close(o, o_ref)
        assert_close(s, s_ref)


@pytest.mark.parametrize("hq,hkv", GQA)
def test_lightning_gqa(rng, hq, hkv):
    q, k, v = qkv(rng, 40, hq, hkv)
    assert_close(att.lightning_attention(q, k, v, chunk=16)[0], ref.lightning_attention_reference(q, k, v)[0])


@pytest.mark.parametrize("slope", [0.0, 30.0, np.inf], ids=["no-decay", "strong", "instant"])
def test_lightning_decay_extremes_with_initial_state(rng, slope):
    q, k, v = qkv(rng, 70, 2, 2)
    slopes = np.full(2, slope)
    state = rng.standard_normal((2, 16, 16)).astype(np.float32)
    o, s = att.lightning_attention(q, k, v, slopes, state, chunk=32)
    o_ref, s_ref = ref.lightning_attention_reference(q, k, v, slopes, state)
    assert np.isfinite(o).all() and np.isfinite(s).all()
    assert_close(o, o_ref)
    assert_close(s, s_ref)


def test_lightning_split_prefill_then_decode_equals_one_prefill(rng):
    q, k, v = qkv(rng, 70, 4, 2)
    o_full, s_full = att.lightning_attention(q, k, v, chunk=16)
    o1, s1 = att.lightning_attention(q[:37], k[:37], v[:37], chunk=16)
    o2, s2 = att.lightning_attention(q[37:67], k[37:67], v[37:67], state=s1, chunk=16)
    outs = [o1, o2]
    for t in range(67, 70):
        o_t, s2 = att.lightning_decode(q[t], k[t], v[t], state=s2)
        outs.append(o_t[None])
    assert_close(np.concatenate(outs), o_full)
    assert_close(s2, s_full)
    o_ref, s_ref = ref.lightning_decode_reference(q[5:6], k[5:6], v[5:6], None, s_full)
    o_t, s_t = att.lightning_decode(q[5:6], k[5:6], v[5:6], None, s_full)
    assert o_t.shape == (1, 4, 16)
    assert_close(o_t, o_ref)
    assert_close(s_t, s_ref)


def test_alibi_slopes():
    np.testing.assert_allclose(att.alibi_slopes(8), 2.0 ** -np.arange(1, 9))
    np.testing.assert_allclose(att.alibi_slopes(6), 2.0 ** -np.array([2, 4, 6, 8, 1, 3]))


def test_lightning_chunked_formula_in_float64(rng):
    q, k, v = qkv(rng, 45, 2, 1)
    o, s = ref.lightning_chunked_numpy(q, k, v, chunk=16, dtype=np.float64)
    o_ref, s_ref = ref.lightning_attention_reference(q, k, v)
    np.testing.assert_allclose(o, o_ref, atol=1e-12)
    np.testing.assert_allclose(s, s_ref, atol=1e-12)


# --------------------------------------------------------------------------- InfLLM-V2

@pytest.mark.parametrize("n", EDGE_LENGTHS)
def test_infllm_edge_lengths(rng, n):
    params = dict(SMALL, local_blocks=0, topk=2)
    q, k, v = qkv(rng, n, 4, 2)
    np.testing.assert_array_equal(att.infllmv2_select(q, k, **params), ref.infllmv2_select_reference(q, k, **params))
    assert_close(att.infllmv2_attention(q, k, v, **params), ref.infllmv2_attention_reference(q, k, v, **params))


def test_infllm_selection_and_attention(rng):
    q, k, v = qkv(rng, 150, 4, 2)
    selected = att.infllmv2_select(q, k, **SMALL)
    np.testing.assert_array_equal(selected, ref.infllmv2_select_reference(q, k, **SMALL))
    assert (selected[-1] >= 0).sum(axis=-1).tolist() == [4, 4]          # sparse: 4 of 10 blocks
    assert_close(att.infllmv2_attention(q, k, v, **SMALL), ref.infllmv2_attention_reference(q, k, v, **SMALL))


@pytest.mark.parametrize("hq,hkv", GQA)
def test_infllm_topk_covering_all_blocks_equals_dense(rng, hq, hkv):
    q, k, v = qkv(rng, 100, hq, hkv)
    assert_close(att.infllmv2_attention(q, k, v, **dict(SMALL, topk=7)), ref.dense_attention_reference(q, k, v))


@pytest.mark.parametrize("length", [1, 17, 150])
def test_infllm_decode_equals_last_prefill_row(rng, length):
    q, k, v = qkv(rng, length, 4, 2)
    prefill = att.infllmv2_attention(q, k, v, **SMALL)
    decoded = att.infllmv2_decode(q[-1], k, v, **SMALL)
    assert_close(decoded, prefill[-1], tol=1e-6)
    assert_close(decoded, ref.infllmv2_decode_reference(q[-1], k, v, **SMALL))
    assert att.infllmv2_decode(q[-1:], k, v, **SMALL).shape == (1, 4, 16)


def test_infllm_ties_go_to_the_lower_block(rng):
    """All keys equal: every compressed key and block score ties, so the free slot goes to
    block 1 (init block 0 and the token's own block are forced)."""
    n = 150
    q = rng.standard_normal((n, 2, 16)).astype(np.float32)
    k = np.tile(rng.standard_normal((1, 1, 16)).astype(np.float32), (n, 1, 1))
    params = dict(SMALL, local_blocks=0, topk=3)
    selected = att.infllmv2_select(q, k, **params)
    np.testing.assert_array_equal(selected, ref.infllmv2_select_reference(q, k, **params))
    assert selected[-1, 0].tolist() == [0, 1, 9]


@pytest.mark.parametrize("geometry", [dict(block=64, l1=32, s1=16, l2=128, s2=64),    # the model's
                                      dict(block=8, l1=4, s1=4, l2=16, s2=8)],        # R=2, no overlap
                         ids=["model", "no-overlap"])
def test_infllm_other_geometries(rng, geometry):
    params = dict(geometry, init_blocks=1, local_blocks=1, topk=3)
    q, k, v = qkv(rng, 300 if geometry["block"] == 64 else 90, 4, 1)
    np.testing.assert_array_equal(att.infllmv2_select(q, k, **params), ref.infllmv2_select_reference(q, k, **params))
    assert_close(att.infllmv2_attention(q, k, v, **params), ref.infllmv2_attention_reference(q, k, v, **params))


def test_infllm_more_forced_blocks_than_topk(rng):
    """init 3 and 2 local blocks compete for topk=2 slots: lowest indices win, future init blocks
    take slots and are dropped."""
    params = dict(SMALL, init_blocks=3, local_blocks=2, topk=2)
    q, k, v = qkv(rng, 90, 2, 1)
    np.testing.assert_array_equal(att.infllmv2_select(q, k, **params), ref.infllmv2_select_reference(q, k, **params))
    assert_close(att.infllmv2_attention(q, k, v, **params), ref.infllmv2_attention_reference(q, k, v, **params))


# --------------------------------------------------------------------------- RoPE / RMSNorm

def test_rope(rng):
    x = rng.standard_normal((20, 3, 16)).astype(np.float32)
    assert_close(att.rope(x), ref.rope_reference(x))
    assert_close(att.rope(x[:, 0], theta=500.0, offset=1000), ref.rope_reference(x[:, 0], theta=500.0, offset=1000))
    wide = rng.standard_normal((5, 12, 64)).astype(np.float32)     # heads in blocks of 4 (gcd(12, 8))
    assert_close(att.rope(wide), ref.rope_reference(wide))
    from cmlang.examples.attention.norms import _device_tables
    hits = _device_tables.cache_info().hits
    assert_close(att.rope(wide * 2), ref.rope_reference(wide * 2))  # same positions: tables reused
    assert _device_tables.cache_info().hits == hits + 1


def test_rmsnorm(rng):
    x = rng.standard_normal((5, 3, 24)).astype(np.float32)
    w = rng.standard_normal(24).astype(np.float32)
    assert_close(att.rmsnorm(x, w), ref.rmsnorm_reference(x, w))
    assert_close(att.rmsnorm(x[0, 0]), ref.rmsnorm_reference(x[0, 0]))


# --------------------------------------------------------------------------- SIMT OpenCL C versions

def test_simt_versions_match_the_references(rng):
    q, k, v = qkv(rng, 150, 4, 2)
    assert_close(simt.dense_attention(q, k, v), ref.dense_attention_reference(q, k, v))
    state = rng.standard_normal((4, 16, 16)).astype(np.float32)
    o, s = simt.lightning_attention(q, k, v, None, state, chunk=32)
    o_ref, s_ref = ref.lightning_attention_reference(q, k, v, None, state)
    assert_close(o, o_ref)
    assert_close(s, s_ref)
    o, s = simt.lightning_decode(q[0], k[0], v[0], None, state)
    o_ref, s_ref = ref.lightning_decode_reference(q[0], k[0], v[0], None, state)
    assert_close(o, o_ref)
    assert_close(s, s_ref)
    np.testing.assert_array_equal(simt.infllmv2_select(q, k, **SMALL), ref.infllmv2_select_reference(q, k, **SMALL))
    assert_close(simt.infllmv2_attention(q, k, v, **SMALL), ref.infllmv2_attention_reference(q, k, v, **SMALL))
    assert_close(simt.infllmv2_decode(q[-1], k, v, **SMALL), ref.infllmv2_decode_reference(q[-1], k, v, **SMALL))
    assert_close(simt.rope(q, offset=7), ref.rope_reference(q, offset=7))
    assert_close(simt.rmsnorm(q), ref.rmsnorm_reference(q))


# --------------------------------------------------------------------------- bad input

def _bad_inputs(rng):
    q, k, v = qkv(rng, 8, 4, 2)
    return [
        ("q must have rank 3", lambda f: f(q[0], k, v)),
        ("k and v must have the same shape", lambda f: f(q, k, v[:, :1])),
        ("must be a multiple of the number of key/value heads", lambda f: f(q[:, :3], k, v)),
        ("same head dimension", lambda f: f(q[..., :8], k, v)),
        ("same sequence length", lambda f: f(q[:4], k, v)),
        ("floating-point dtype", lambda f: f(q.astype(np.int32), k, v)),
    ]


@pytest.mark.parametrize("name", ["dense_attention", "lightning_attention", "infllmv2_attention"])
def test_bad_attention_inputs_raise_value_error(rng, name):
    for fn in (getattr(att, name), getattr(att, name + "_reference")):
        for message, call in _bad_inputs(rng):
            with pytest.raises(ValueError, match=message):
                call(fn)


def test_bad_lightning_state_and_slopes(rng):
    q, k, v = qkv(rng, 8, 4, 2)
    with pytest.raises(ValueError, match=r"state must have shape \(Hq, d, d\) = \(4, 16, 16\)"):
        att.lightning_attention(q, k, v, state=np.zeros((2, 16, 16), np.float32))
    with pytest.raises(ValueError, match="one value per query head"):
        att.lightning_attention(q, k, v, slopes=[1.0, 2.0])
    with pytest.raises(ValueError, match="slopes must be >= 0"):
        att.lightning_attention(q, k, v, slopes=[-1.0, 1, 1, 1])
    with pytest.raises(ValueError, match="chunk must be an integer >= 1"):
        att.lightning_attention(q, k, v, chunk=0)
    with pytest.raises(ValueError, match="state must have shape"):
        att.lightning_decode(q[0], k[0], v[0], state=np.zeros((4, 16, 8), np.float32))
    with pytest.raises(ValueError, match="one token"):
        att.lightning_decode(q[:2], k[:2], v[:2])


def test_bad_infllm_parameters(rng):
    q, k, v = qkv(rng, 8, 4, 2)
    with pytest.raises(ValueError, match="topk must be an integer >= 1"):
        att.infllmv2_attention(q, k, v, **dict(SMALL, topk=0))
    with pytest.raises(ValueError, match="block = R\\*s1"):
        att.infllmv2_attention(q, k, v, **dict(SMALL, block=10))
    with pytest.raises(ValueError, match="k_cache and v_cache must have the same shape"):
        att.infllmv2_decode(q[0], k, v[:4], **SMALL)


def test_bad_rope_and_rmsnorm_inputs(rng):
    with pytest.raises(ValueError, match="even head dimension"):
        att.rope(np.zeros((4, 2, 7), np.float32))
    with pytest.raises(ValueError, match="rank 2 or 3"):
        att.rope(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"weight must have shape \(8,\)"):
        att.rmsnorm(np.zeros((4, 8), np.float32), np.ones(4, np.float32))


# --------------------------------------------------------------------------- SALA stack

def test_sala_stack_matches_its_float64_reference(rng):
    from cmlang.examples.attention import sala
    config = sala.SalaConfig.tiny()
    layers = sala.make_layers(config, np.random.default_rng(0))
    x = rng.standard_normal((70, config.hidden)).astype(np.float32)
    for stack in ("sala", "dense"):
        got = sala.run_stack(x, layers[stack], config)
        want = sala.run_stack(x, layers[stack], config, reference=True)
        assert_close(got, want, tol=1e-4)
