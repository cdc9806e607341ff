"""The CM / ESIMD programs of examples/ports against numpy, on the default device and in the
interpreter (the ``mode`` fixture), and the spirv-vc lowering of each in the emulator."""
import importlib.util

import numpy as np
import pytest

from examples.ports import bit_ops, bitonic, dpas_gemm, histogram, linear, sepia

needs_vc = pytest.mark.skipif(importlib.util.find_spec("dpcpp_llvm_spirv") is None,
                              reason="the spirv-vc target needs the dpcpp-llvm-spirv wheel")


def test_linear_filter_averages_the_neighbourhood(mode, rng):
    image = rng.integers(0, 256, (12, 48)).astype(np.uint8)
    np.testing.assert_array_equal(linear.average(image), linear.reference_average(image))


def test_linear_filter_with_register_weights(mode, rng):
    image = rng.integers(0, 256, (12, 72)).astype(np.uint8)
    coeff = np.array([0.1, -0.2, 0.3, 0.5, 1.0, 0.5, 0.3, -0.2, 0.1], np.float32)
    got = linear.weighted(image, coeff)
    np.testing.assert_array_equal(got, linear.reference_weighted(image, coeff))
    assert got.max() == 255 and got.min() == 0            # both saturation limits are reached
    # a plain sequence works as the register argument too
    np.testing.assert_array_equal(linear.weighted(image, [1 / 9] * 9), linear.reference_weighted(image, [1 / 9] * 9))


def test_sepia_tone_with_dp4_and_bit_mask_merges(mode, rng):
    image = rng.integers(0, 256, (16, 48)).astype(np.uint8)
    np.testing.assert_array_equal(sepia.tone(image), sepia.reference(image))


def test_sepia_in_unit_floats_saturates_to_the_unit_interval(mode, rng):
    pixels = rng.uniform(0, 1, 72).astype(np.float32)
    coeff = np.array([[0.272, 0.534, 0.131, 0.0], [0.349, 0.686, 0.168, 0.05],
                      [0.393, 0.769, 0.189, -0.1]], np.float32)
    got = sepia.tone_unit(pixels, coeff)
    np.testing.assert_allclose(got, sepia.reference_unit(pixels, coeff), rtol=1e-6, atol=1e-7)
    assert got.max() == 1.0 and got.min() >= 0.0


def test_histogram_64_bins_with_a_register_histogram(mode, rng):
    image = rng.integers(0, 256, (128, 64)).astype(np.uint8)
    np.testing.assert_array_equal(histogram.histogram(image), histogram.reference(image))


def test_bitonic_exchange_stages_sort_16_key_runs(mode, rng):
    keys = rng.integers(0, 2**32, 512, dtype=np.uint64).astype(np.uint32)
    keys[:16] = keys[0]                                   # equal keys keep the run sorted
    np.testing.assert_array_equal(bitonic.sort_runs(keys), bitonic.reference(keys))


@pytest.mark.parametrize("a_type", [np.int8, np.uint8])
def test_integer_dpas_gemm(mode, rng, a_type):
    lo, hi = np.iinfo(a_type).min, np.iinfo(a_type).max + 1
    a = rng.integers(lo, hi, (16, 64)).astype(a_type)
    b = rng.integers(-128, 128, (64, 32)).astype(np.int8)
    a[0, :], b[:, 0] = hi - 1, -128                      # the extreme products
    np.testing.assert_array_equal(dpas_gemm.gemm(a, b), dpas_gemm.reference(a, b))


def test_bit_statistics(mode, rng):
    a = rng.integers(0, 2**32, 64, dtype=np.uint64).astype(np.uint32)
    a[::5], a[3], a[7], a[9] = 0, 1, 0x80000000, 0xFFFFFFFF
    b = rng.integers(0, 2**32, 64, dtype=np.uint64).astype(np.uint32)
    per_word, per_row = bit_ops.stats(a, b)
    want_word, want_row = bit_ops.reference(a, b)
    np.testing.assert_array_equal(per_word, want_word)
    np.testing.assert_array_equal(per_row, want_row)
    v = rng.integers(-2**31, 2**31, 32).astype(np.int32)
    v[:4] = [0, -1, -2**31, 2**31 - 1]
    np.testing.assert_array_equal(bit_ops.sign_runs_of(v), bit_ops.reference_sign_runs(v))


# --- the spirv-vc lowering of each port, in the emulator ---------------------------------

def _vc(kernel, grid, args):
    from vc_emulator import run_isolated
    key, runtime = kernel._split_args(tuple(args))
    return run_isolated(kernel.specialization(key, "spirv-vc"), grid, None, list(runtime))


@needs_vc
def test_ports_on_spirv_vc(rng):
    image = rng.integers(0, 256, (12, 48)).astype(np.uint8)
    out = _vc(linear.linear, (2, 2), [image, np.zeros_like(image), 48, 12])[1]
    np.testing.assert_array_equal(out, linear.reference_average(image))
    coeff = np.array([0.1, -0.2, 0.3, 0.5, 1.0, 0.5, 0.3, -0.2, 0.1], np.float32)
    out = _vc(linear.linear_weighted, (2, 2), [image, np.zeros_like(image), coeff, 48, 12])[1]
    np.testing.assert_array_equal(out, linear.reference_weighted(image, coeff))
    image = rng.integers(0, 256, (8, 24)).astype(np.uint8)
    out = _vc(sepia.sepia, (1, 1), [image, np.zeros_like(image), 24, 8])[1]
    np.testing.assert_array_equal(out, sepia.reference(image))
    keys = rng.integers(0, 2**32, 256, dtype=np.uint64).astype(np.uint32)
    out = _vc(bitonic.cmk_bitonic_sort_16, 1, [keys, np.zeros_like(keys)])[1]
    np.testing.assert_array_equal(out, bitonic.reference(keys))
    a = rng.integers(0, 2**32, 32, dtype=np.uint64).astype(np.uint32)
    a[::5] = 0
    b = rng.integers(0, 2**32, 32, dtype=np.uint64).astype(np.uint32)
    got = _vc(bit_ops.bit_stats, 1, [a, b, np.zeros(128, np.uint32), np.zeros(2, np.uint32)])
    want_word, want_row = bit_ops.reference(a, b)
    np.testing.assert_array_equal(got[2].reshape(1, 4, 32), want_word)
    np.testing.assert_array_equal(got[3].reshape(1, 2), want_row)
