"""Sub-group block reads of several slots (codegen/memory.py ``_block_read_slots``): on a GPU
profile a contiguous run of 2, 4 or 8 full slots is one block_read2/4/8 (one message where a
read per slot was one each), the slots' layout unchanged (lane l gets elements l, l + simd,
...); the CPU runtime keeps one read per slot (``one_slot_block_reads``).  The pvc binaries
are portable SPIR-V: they run on the CPU runtime here and must load the same numbers."""
import numpy as np
import pytest

import cmlang as cm
from cmlang import f32, bf16
from cmlang.runtime import launch

RNG = np.random.default_rng(21)
READ_32 = "@_Z30__spirv_SubgroupBlockReadINTELPU3AS1Kj("


def read_of(slots, code="j"):
    return f"@_Z30__spirv_SubgroupBlockReadINTELIDv{slots}_{code}ET_PU3AS1K{code}("


@cm.kernel(simd=16)
def copy_run(x: cm.ptr[f32], y: cm.ptr[f32], N: cm.constexpr):
    """N elements from x[16 t] to y: 16 * 7 = one read of 4 slots, one of 2 and one of 1."""
    t = cm.thread_id(0)
    cm.store(y, t * N, cm.load(x, t * 16, N) + 1.0)


@cm.kernel(simd=16)
def copy_rows(x: cm.ptr[f32], y: cm.ptr[f32], pitch: cm.i32, R: cm.constexpr, C: cm.constexpr):
    """An R x C tile at rows pitch apart (unknown pitch: the rows are separate runs)."""
    t = cm.thread_id(0)
    cm.store(y, t * R * C, cm.load(x, t * 4, (R, C), pitch * 4) * 2.0, C)


@cm.kernel(simd=8)
def dpas_rows(a: cm.ptr[bf16], b: cm.ptr[bf16], c: cm.ptr[f32], pitch: cm.i32):
    """A systolic dpas (DG2's: simd 8) whose 16 x 16 b rows are read at an even pitch."""
    acc = cm.dpas(cm.zeros(cm.matrix[f32, 2, 16]), cm.load(a, 0, (2, 16), 16),
                  cm.load(b, 0, (16, 16), (pitch >> 1) << 1))
    cm.store(c, 0, acc, 16)


def ir_of(kernel, device, **constexprs):
    return kernel.compile(device=device, **constexprs).llvm_ir


def run(kernel, device, grid, args, **constexprs):
    launch(kernel.compile(device=device, **constexprs).binary, grid, None, args)
    return args


def test_a_run_of_slots_is_read_by_the_fewest_block_reads_on_gpu_profiles():
    pvc, cpu = ir_of(copy_run, "pvc", N=16 * 7), ir_of(copy_run, "cpu", N=16 * 7)
    assert [pvc.count(f"call spir_func <{n} x i32> " + read_of(n)) for n in (8, 4, 2)] == [0, 1, 1], pvc
    assert pvc.count("call spir_func i32 " + READ_32) == 1, pvc
    assert cpu.count("call spir_func i32 " + READ_32) == 7 and "IDv" not in cpu, cpu


def test_a_partial_last_slot_is_still_read_per_lane():
    pvc = ir_of(copy_run, "pvc", N=16 * 8 + 5)
    assert pvc.count("call spir_func <8 x i32> " + read_of(8)) == 1 and READ_32 not in pvc, pvc


@pytest.mark.parametrize("n", [16 * 7, 16 * 8 + 5, 16 * 15])
@pytest.mark.parametrize("device", ["cpu", "pvc"])
def test_runs_of_slots_load_the_elements_in_order(device, n):
    x = RNG.standard_normal(3 * 16 + n).astype(np.float32)
    _, y = run(copy_run, device, 3, (x, np.zeros(3 * n, np.float32)), N=n)
    want = np.concatenate([x[16 * t:16 * t + n] for t in range(3)]) + 1.0
    np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("device", ["cpu", "pvc"])
def test_each_row_of_a_2d_load_is_one_run(device):
    R, C, pitch = 3, 64, 80
    if device == "pvc":
        assert ir_of(copy_rows, "pvc", R=R, C=C).count(f"call spir_func <4 x i32> {read_of(4)}") == R
    x = RNG.standard_normal(2 * 4 + R * pitch * 4).astype(np.float32)
    _, y, *_ = run(copy_rows, device, 2, (x, np.zeros(2 * R * C, np.float32), pitch), R=R, C=C)
    for t in range(2):
        want = x[t * 4:t * 4 + R * pitch * 4].reshape(R, pitch * 4)[:, :C] * 2.0
        np.testing.assert_array_equal(y[t * R * C:(t + 1) * R * C].reshape(R, C), want)


def test_dg2_dpas_rows_of_16_bit_data_are_read_by_two_slots():
    """simd 8: a 16-element bf16 row of b is two slots, one block_read2 (was two reads)."""
    dg2 = ir_of(dpas_rows, "dg2")
    assert dg2.count(f"call spir_func <2 x i16> {read_of(2, 't')}") == 16 + 2, dg2   # b's rows and a's
    assert "@_Z30__spirv_SubgroupBlockReadINTELPU3AS1Kt(" not in dg2


@cm.kernel(simd=16)
def copy_bf16_rows(x: cm.ptr[bf16], y: cm.ptr[bf16], pitch: cm.i32):
    """4 rows of 64 bf16 (4 slots a row) at an even pitch (a 16-bit read needs whole dwords)."""
    t = cm.thread_id(0)
    cm.store(y, t * 4 * 64, cm.load(x, t * 2, (4, 64), (pitch >> 1) << 1), 64)


@pytest.mark.parametrize("device", ["cpu", "pvc"])
def test_16_bit_rows_load_the_elements_in_order(device):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    if device == "pvc":
        assert ir_of(copy_bf16_rows, "pvc").count(f"call spir_func <4 x i16> {read_of(4, 't')}") == 4
    x = RNG.standard_normal(8 * 80).astype(ml_dtypes.bfloat16)
    _, y, _ = run(copy_bf16_rows, device, 2, (x, np.zeros(2 * 4 * 64, ml_dtypes.bfloat16), 80))
    for t in range(2):
        np.testing.assert_array_equal(y[t * 256:(t + 1) * 256].reshape(4, 64),
                                      x[t * 2:t * 2 + 320].reshape(4, 80)[:, :64])
