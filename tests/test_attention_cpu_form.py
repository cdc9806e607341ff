"""The CPU profile's form of the attention kernels: P staged in SLM (STAGE_P).

On the CPU runtime a dpas with both operands in memory is a loop of FMAs that keeps only
its accumulator in registers; P of the online softmax is computed in registers, so without
staging P V picks P's elements from registers inside that loop (spills there).  These
tests check that the CPU launches take the staged form, that every product of it reads
both operands from memory, and that it computes what the float64 reference does.
"""
from __future__ import annotations

import numpy as np
import pytest

import cmlang as cm
from cmlang.codegen.operand_plan import rows_left_in_memory
from cmlang.runtime.profiles import PROFILES

from examples.attention import infllmv2, kernels
from examples.attention.dense import CPU_TILE, dense_attention, flash_specialization
from examples.attention.layout import empty, pack_kv, round_up, softmax_scale, to_device
from examples.attention.reference import dense_attention_reference


def _operands_in_memory(fn):
    """(a in memory, b in memory) of each dpas of fn, as the code generator plans them."""
    cpu = PROFILES["cpu"]
    left = rows_left_in_memory(fn, fn.simd, cpu.dpas_loop_fmas)
    return [tuple(v.defining_op is not None and v.defining_op in left for v in op.operands[1:3])
            for op in fn.walk() if op.opcode == "dpas"]


def test_cpu_flash_tile_stages_p_and_gpu_profiles_do_not():
    kernel, constexprs = flash_specialization(128, cm.f32, profile="cpu")
    assert kernel is kernels.flash_attention
    assert {k: constexprs[k] for k in ("M", "KB", "KD", "VN", "STAGE_P")} == dict(
        M=CPU_TILE["M"], KB=CPU_TILE["KB"], KD=128, VN=CPU_TILE["VN"], STAGE_P=True)
    for device in ("pvc", "dg2"):
        for t in (cm.f32, cm.bf16):
            assert flash_specialization(128, t, profile=device)[1]["STAGE_P"] is False, (device, t)


@pytest.mark.parametrize("d", [64, 128])
def test_staged_products_read_both_operands_from_memory(d):
    """Staged: Q K^T and each of the d/32 column tiles of P V take a and b from memory.
    P in registers (same tile): P V's a stays in registers, per column tile in 16-key slices."""
    kernel, constexprs = flash_specialization(d, cm.f32, profile="cpu")
    staged = _operands_in_memory(kernel.compile(**constexprs, device="cpu").function)
    assert staged == [(True, True)] * (1 + d // CPU_TILE["VN"])
    in_registers = _operands_in_memory(kernel.compile(**dict(constexprs, STAGE_P=False), device="cpu").function)
    assert in_registers[0] == (True, True)
    assert len(in_registers) == 1 + d // CPU_TILE["VN"] * CPU_TILE["KB"] // 16
    assert all(pair == (False, True) for pair in in_registers[1:])


@pytest.mark.parametrize("stage", [True, False])
@pytest.mark.parametrize("n,causal", [(1, True), (45, True), (100, False), (128, True)])
def test_flash_kernel_staged_or_not_matches_float64(stage, n, causal):
    """The same tile with P staged and with P in registers against the float64 reference
    (N not a multiple of the tile, one token, non-causal with padding keys masked)."""
    rng = np.random.default_rng(n)
    hq, hkv, d = 4, 2, 64
    q = rng.standard_normal((n, hq, d), np.float32)
    k, v = (rng.standard_normal((n, hkv, d), np.float32) for _ in range(2))
    rows, keys = CPU_TILE["M"], CPU_TILE["KB"]
    padded = round_up(round_up(round_up(n, rows), keys), 16)
    kt, vp = pack_kv(k, v, padded)
    qs, o = empty((hq, padded, d)), empty(q.shape)
    kernels.pack_queries[(padded // kernels.TOKENS, hq)](to_device(q), qs, n, hq, padded, softmax_scale(d), d,
                                                         cm.f32, cm.f32)
    kernels.flash_attention[(-(-n // rows), hq)](qs, kt, vp, o, n, hq, hq // hkv, padded, d, rows, keys, d,
                                                 CPU_TILE["VN"], causal, False, stage, cm.f32, cm.f32)
    expected = dense_attention_reference(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64),
                                         causal=causal)
    np.testing.assert_allclose(o.numpy(), expected, rtol=0, atol=2e-5 * np.abs(expected).max())


@pytest.mark.parametrize("d", [128, 24])
def test_dense_attention_on_the_cpu_matches_float64(d):
    """d = 128: the model's head dim; d = 24: P V's columns are not whole 16-lane slots, so
    the staged product is not the k-loop (P read from SLM into registers)."""
    rng = np.random.default_rng(7)
    q = rng.standard_normal((77, 8, d), np.float32)
    k, v = (rng.standard_normal((77, 2, d), np.float32) for _ in range(2))
    expected = dense_attention_reference(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64))
    np.testing.assert_allclose(dense_attention(q, k, v), expected, rtol=0, atol=2e-5 * np.abs(expected).max())


def test_infllm_attend_on_the_cpu_is_staged(monkeypatch):
    """The CPU launch of infllm_attend: 32-key tiles (or the block's), P staged, every
    product in memory."""
    real, launched = kernels.infllm_attend, []

    class Recorder:           # records the launch arguments, then launches
        def __getitem__(self, grid):
            return lambda *args: launched.append(args) or real[grid](*args)
    monkeypatch.setattr(kernels, "infllm_attend", Recorder())
    rng = np.random.default_rng(3)
    q = rng.standard_normal((96, 8, 64), np.float32)
    k, v = (rng.standard_normal((96, 1, 64), np.float32) for _ in range(2))
    infllmv2.infllmv2_attention(q, k, v, block=16, l1=8, s1=4, l2=32, s2=16, init_blocks=1, local_blocks=2, topk=3)
    (args,) = launched
    d, g, kb, gr, kd, vn, b2d, stage = args[12:20]
    assert (d, g, kb, gr, kd, vn, b2d, stage) == (64, 8, 16, 8, 64, 32, False, True)
    constexprs = dict(D=d, G=g, KB=kb, GR=gr, KD=kd, VN=vn, B2D=b2d, STAGE_P=stage, T=cm.f32, P=cm.f32, OT=cm.f32)
    assert _operands_in_memory(real.compile(**constexprs, device="cpu").function) == [(True, True)] * 3
