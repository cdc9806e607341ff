"""SGEMM's packed path (large f32 GEMMs on the CPU device): the tile copies, the grouped
walk over C (a short last group included) and the choice of path."""
import numpy as np
import pytest

import cmlang as cm
from cmlang.examples.bench import sgemm


@pytest.mark.parametrize("config", sgemm.PACKED_CONFIGS, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_every_packed_config_computes_a_times_b(config, rng):
    # 96 rows: 3 to 24 row panels, none a multiple of every GM (short last groups)
    m, k, n = 96, 64, 128
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    da, db = cm.to_device(a), cm.to_device(b)
    dc = cm.to_device(np.full((m, n), np.nan, np.float32))
    pa, pb = cm.to_device(np.zeros_like(a)), cm.to_device(np.zeros_like(b))
    sgemm.packed_sgemm.fn(da, db, dc, pa, pb, **config)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(dc.numpy(), expected, rtol=1e-4, atol=1e-4)
    # the copies: A as TM x KU tiles, each row panel contiguous; B as K x TN column panels
    tm, tn, ku = config["TM"], config["TN"], config["KU"]
    a_tiles = a.reshape(m // tm, tm, k // ku, ku).transpose(0, 2, 1, 3).ravel()
    b_panels = b.reshape(k, n // tn, tn).transpose(1, 0, 2).ravel()
    assert np.array_equal(pa.numpy().ravel(), a_tiles)
    assert np.array_equal(pb.numpy().ravel(), b_panels)


def test_large_f32_on_the_cpu_packs_and_the_rest_does_not():
    big, small = np.zeros((64, 1024), np.float32), np.zeros((64, 512), np.float32)
    assert sgemm.packs(big, np.zeros((1024, 64), np.float32))
    assert sgemm.packs(small, np.zeros((512, 1024), np.float32))
    assert not sgemm.packs(small, np.zeros((512, 512), np.float32))
    assert not sgemm.packs(big.astype(np.float16), np.zeros((1024, 64), np.float16))
    assert not sgemm.packs(np.zeros((50, 1024), np.float32), np.zeros((1024, 64), np.float32))


def test_matmul_takes_the_packed_path(rng):
    a = rng.standard_normal((32, 1024)).astype(np.float32)
    b = rng.standard_normal((1024, 64)).astype(np.float32)
    np.testing.assert_allclose(sgemm.matmul(a, b), a.astype(np.float64) @ b, rtol=1e-3, atol=1e-3)
    assert sgemm.packed_sgemm.best in sgemm.PACKED_CONFIGS
