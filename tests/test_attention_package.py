"""The precompiled attention package (examples/attention/build_package.py): built from its
recipe, loaded, and run for float32, float16 and bfloat16 inputs against the float64
reference of the same (rounded) inputs.  Bounds relative to max |reference|: 1e-5 for f32,
2 * 2^-10 for f16, 2 * 2^-8 for bf16 (the output's rounding plus f32 sums), as in
test_attention_lowp."""
from __future__ import annotations

import numpy as np
import pytest

import cmlang as cm

ml_dtypes = pytest.importorskip("ml_dtypes")

from examples.attention import build_package as recipe          # noqa: E402
from examples.attention.reference import dense_attention_reference  # noqa: E402

TYPES = {"float32": (np.dtype(np.float32), 1e-5), "float16": (np.dtype(np.float16), 2 * 2.0 ** -10),
         "bfloat16": (np.dtype(ml_dtypes.bfloat16), 2 * 2.0 ** -8)}


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("pkg") / "attention.cmpkg")
    cm.build_package(path, recipe.package_specs(head_dims=(64,)), progress=False)
    return cm.load_package(path)


def test_every_input_type_is_shipped():
    shipped = {(kernel.__name__, constexprs["D"], str(constexprs["T"]), str(constexprs.get("O")))
               for kernel, constexprs in recipe.PACKAGE_SPECS}
    for t in ("f32", "f16", "bf16"):
        for d in recipe.HEAD_DIMS:
            assert ("pack_keys", d, t, "None") in shipped
            assert ("flash_attention", d, "f32", t) in shipped


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("name", list(TYPES))
def test_package_matches_the_reference(package, name, causal):
    dtype, bound = TYPES[name]
    rng = np.random.default_rng(3)
    q = rng.standard_normal((75, 4, 64)).astype(dtype)
    k, v = (rng.standard_normal((75, 2, 64)).astype(dtype) for _ in range(2))
    out = recipe.dense_attention(package, q, k, v, causal=causal)
    assert out.dtype == dtype and out.shape == q.shape
    expected = dense_attention_reference(*(a.astype(np.float64) for a in (q, k, v)), causal=causal)
    error = np.abs(out.astype(np.float64) - expected).max() / np.abs(expected).max()
    assert error <= bound, (name, error)
