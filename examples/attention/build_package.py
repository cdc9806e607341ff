"""Build recipe: the dense flash-attention kernels as a precompiled package.

    cmlang build examples/attention/build_package.py -o attention.cmpkg
    python -m examples.attention.build_package [attention.cmpkg]   # build, load, check

``PACKAGE_SPECS`` lists the specializations to ship: head dims 64 and 128, causal and
not, the CPU device's tile (8 query rows and 32 keys per CM thread, P V in 32-column tiles
from P staged in SLM: ``dense.CPU_TILE``), for float32, float16 and bfloat16 inputs (the
CPU device's form: 16-bit inputs are widened to f32 as they are packed, and the output has
the input's type).  ``dense_attention(pkg, q, k, v)`` below
runs attention from a loaded package with nothing but numpy and the cmlang runtime: no
kernel source, no compiler, no llvmlite (a machine that only runs models needs no more).
"""
from __future__ import annotations

import math
import sys

import numpy as np

import cmlang as cm
from cmlang.examples.attention import kernels  # works in a checkout and when installed

ROWS, KEYS, COLUMNS = 8, 32, 32   # query rows and keys per CM thread, V columns per P V product
HEAD_DIMS = (64, 128)
INPUT_TYPES = (cm.f32, cm.f16, cm.bf16)
LOG2E = 1.4426950408889634


def package_specs(head_dims=HEAD_DIMS, input_types=INPUT_TYPES):
    """(kernel, constexprs) of every specialization dense_attention below launches."""
    specs = []
    for t in input_types:
        for d in head_dims:
            specs += [(pack, {"D": d, "T": t, "P": cm.f32})
                      for pack in (kernels.pack_keys, kernels.pack_values, kernels.pack_queries)]
            specs += [(kernels.flash_attention, {"D": d, "M": ROWS, "KB": KEYS, "KD": d, "VN": COLUMNS,
                                                 "CAUSAL": causal, "BLOCK2D": False, "STAGE_P": True,
                                                 "T": cm.f32, "O": t})
                      for causal in (True, False)]
    return specs


PACKAGE_SPECS = package_specs()


def _input_type(q, k, v):
    """f16 or bf16 when all three are (bfloat16: ml_dtypes' dtype), else f32."""
    names = {a.dtype.name for a in (q, k, v)}
    return {"float16": cm.f16, "bfloat16": cm.bf16}.get(names.pop(), cm.f32) if len(names) == 1 else cm.f32


def dense_attention(pkg, q, k, v, causal=True):
    """softmax(q k^T / sqrt(d)) v per head (causal: keys j <= t), with the package's
    kernels.  q [N, Hq, d], k and v [N, Hkv, d], all float16 or all bfloat16 (ml_dtypes),
    else float32; returns [N, Hq, d] of that type (softmax and sums in f32)."""
    t = _input_type(q, k, v)
    host = q.dtype if t != cm.f32 else np.float32
    q, k, v = (np.ascontiguousarray(a, host) for a in (q, k, v))
    n, hq, d = q.shape
    hkv = k.shape[1]
    padded = -(-n // KEYS) * KEYS
    kt = cm.runtime.empty((hkv, d, padded), np.float32)   # K transposed, zero-padded
    vp = cm.runtime.empty((hkv, padded, d), np.float32)
    qs = cm.runtime.empty((hq, padded, d), np.float32)    # Q head-major, scaled, zero-padded
    pkg.pack_keys[(padded // kernels.TOKENS, hkv)](k, kt, n, hkv, padded, d, t, cm.f32)     # TOKENS tokens per CM thread
    pkg.pack_values[(padded // kernels.TOKENS, hkv)](v, vp, n, hkv, padded, d, t, cm.f32)
    pkg.pack_queries[(padded // kernels.TOKENS, hq)](q, qs, n, hq, padded, LOG2E / math.sqrt(d), d, t, cm.f32)
    o = np.zeros_like(q)
    pkg.flash_attention[(-(-n // ROWS), hq)](qs, kt, vp, o, n, hq, hq // hkv, padded, d, ROWS, KEYS, d, COLUMNS,
                                                   bool(causal), False, True, cm.f32, t)
    return o


def main(argv):
    path = argv[0] if argv else "attention.cmpkg"
    cm.build_package(path, PACKAGE_SPECS, progress=True)
    pkg = cm.load_package(path)
    print(f"{path}:\n  " + pkg.describe().replace("\n", "\n  "))
    from cmlang.examples.attention.reference import dense_attention_reference
    rng = np.random.default_rng(0)
    q = rng.standard_normal((200, 8, 64), np.float32)
    k, v = (rng.standard_normal((200, 2, 64), np.float32) for _ in range(2))
    error = np.abs(dense_attention(pkg, q, k, v) - dense_attention_reference(q, k, v)).max()
    print(f"dense causal attention from the package: max |error| vs numpy = {error:.2e}")
    return 0 if error < 1e-3 else 1   # 16-bit inputs: tests/test_attention_package.py


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
