"""The small CM-style programs of examples/core, on the device and in the interpreter."""
import numpy as np
import pytest

from examples.core import bitonic, prefix_sum, histogram, transpose, slm_reverse, dpas_gemm


def test_bitonic_sort_in_registers(mode, rng):
    keys = rng.standard_normal(32 * 6).astype(np.float32)
    np.testing.assert_array_equal(bitonic.sort_rows(keys.copy()), bitonic.reference(keys))


@pytest.mark.parametrize("n", [16, 64])
def test_bitonic_sort_sizes(rng, n):
    keys = rng.standard_normal(n * 4).astype(np.float32)
    np.testing.assert_array_equal(bitonic.sort_rows(keys.copy(), n), bitonic.reference(keys, n))


def test_prefix_sum_by_regions(mode, rng):
    x = rng.integers(-100, 100, 16 * 16 * 2).astype(np.int32)
    np.testing.assert_array_equal(prefix_sum.inclusive_scan(x, 16), prefix_sum.reference(x))


def test_histogram_with_slm_atomics(mode, rng):
    pixels = rng.integers(0, 256, 256 * 4 * 2).astype(np.uint8)
    np.testing.assert_array_equal(histogram.histogram(pixels), histogram.reference(pixels))


def test_transpose_through_2d_block_io(mode, rng):
    a = rng.standard_normal((32, 48)).astype(np.float32)
    np.testing.assert_array_equal(transpose.transpose(a), transpose.reference(a))


def test_group_reverse_through_slm(mode, rng):
    x = rng.standard_normal(32 * 4 * 2).astype(np.float32)
    np.testing.assert_array_equal(slm_reverse.reverse_in_groups(x), slm_reverse.reference(x))


def test_dpas_gemm_tiles(mode, rng):
    a = rng.standard_normal((16, 24)).astype(np.float32)
    b = rng.standard_normal((24, 32)).astype(np.float32)
    np.testing.assert_allclose(dpas_gemm.matmul(a, b), dpas_gemm.reference(a, b), rtol=1e-4, atol=1e-4)
