"""A SALA-style layer stack: one InfLLM-V2 sparse layer and three Lightning layers
(MiniCPM-SALA's 1:3 mix) against four dense layers of the same shape.

Each layer is a pre-norm attention block, x + Attn(RMSNorm(x)) W_o, with HyPE position
handling: the Lightning layers apply per-head RMSNorm and RoPE to q and k, the sparse
layer uses no positional encoding, the dense baseline layers use RoPE.  The attention,
RoPE and RMSNorm are the cmlang kernels of this package; the q/k/v/o projections are
plain numpy matmuls (the same in both stacks, not the subject here).

    python -m examples.attention.sala [--n 4096] [--hidden 1024]
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

import numpy as np

from . import dense, infllmv2, lightning, norms, reference as ref

SALA_LAYOUT = ("sparse", "lightning", "lightning", "lightning")
DENSE_LAYOUT = ("dense",) * 4


@dataclass
class SalaConfig:
    hidden: int = 1024
    hq: int = 8
    hkv: int = 2
    d: int = 128
    chunk: int = 64
    infllm: dict = field(default_factory=lambda: dict(block=64, l1=32, s1=16, l2=128, s2=64, init_blocks=1,
                                                      local_blocks=2, topk=16))

    @classmethod
    def tiny(cls):
        """A test-sized configuration (InfLLM-V2 parameters scaled down by 4)."""
        return cls(hidden=64, hq=4, hkv=2, d=16, chunk=16,
                   infllm=dict(block=16, l1=8, s1=4, l2=32, s2=16, init_blocks=1, local_blocks=1, topk=3))


def make_layers(config: SalaConfig, rng) -> dict:
    """{"sala": [(kind, weights)] * 4, "dense": [...]}: the two stacks share their weights."""
    c = config

    def weight(rows, cols):
        return (rng.standard_normal((rows, cols)) / np.sqrt(rows)).astype(np.float32)

    def layer():
        return dict(norm=(1 + 0.1 * rng.standard_normal(c.hidden)).astype(np.float32),
                    wq=weight(c.hidden, c.hq * c.d), wk=weight(c.hidden, c.hkv * c.d),
                    wv=weight(c.hidden, c.hkv * c.d), wo=weight(c.hq * c.d, c.hidden),
                    q_norm=(1 + 0.1 * rng.standard_normal(c.d)).astype(np.float32),
                    k_norm=(1 + 0.1 * rng.standard_normal(c.d)).astype(np.float32))

    weights = [layer() for _ in range(4)]
    return {"sala": list(zip(SALA_LAYOUT, weights)), "dense": list(zip(DENSE_LAYOUT, weights))}


def _ops(reference: bool) -> dict:
    if reference:
        return dict(rmsnorm=ref.rmsnorm_reference, rope=ref.rope_reference,
                    dense=ref.dense_attention_reference, sparse=ref.infllmv2_attention_reference,
                    lightning=ref.lightning_attention_reference, dtype=np.float64)
    return dict(rmsnorm=norms.rmsnorm, rope=norms.rope, dense=dense.dense_attention,
                sparse=infllmv2.infllmv2_attention, lightning=lightning.lightning_attention, dtype=np.float32)


def attention_block(x, kind: str, w: dict, config: SalaConfig, reference=False, timings=None):
    """Attn(RMSNorm(x)) W_o for one layer of ``kind`` (sparse, lightning, dense)."""
    op = _ops(reference)
    c, n = config, x.shape[0]
    h = op["rmsnorm"](x, w["norm"])
    q = (h @ w["wq"].astype(op["dtype"])).reshape(n, c.hq, c.d)
    k = (h @ w["wk"].astype(op["dtype"])).reshape(n, c.hkv, c.d)
    v = (h @ w["wv"].astype(op["dtype"])).reshape(n, c.hkv, c.d)
    start = time.perf_counter()
    if kind == "lightning":
        q = op["rope"](op["rmsnorm"](q, w["q_norm"]))
        k = op["rope"](op["rmsnorm"](k, w["k_norm"]))
        o = op["lightning"](q, k, v)[0] if reference else op["lightning"](q, k, v, chunk=c.chunk)[0]
    elif kind == "sparse":       # HyPE: no positional encoding in the sparse layers
        o = op["sparse"](q, k, v, **c.infllm)
    elif kind == "dense":
        o = op["dense"](op["rope"](q), op["rope"](k), v)
    else:
        raise ValueError(f"unknown layer kind {kind!r}")
    if timings is not None:
        timings.append((kind, time.perf_counter() - start))
    return o.reshape(n, c.hq * c.d) @ w["wo"].astype(op["dtype"])


def run_stack(x, layers, config: SalaConfig, reference=False, timings=None):
    """x [N, hidden] through the layers: x <- x + attention_block(x) per layer."""
    x = np.asarray(x, np.float64 if reference else np.float32)
    for kind, w in layers:
        x = x + attention_block(x, kind, w, config, reference, timings)
    return x


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=4096, help="sequence length")
    parser.add_argument("--hidden", type=int, default=1024)
    args = parser.parse_args(argv)
    config = SalaConfig(hidden=args.hidden)
    layers = make_layers(config, np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((args.n, config.hidden)).astype(np.float32)
    print(f"N={args.n} hidden={config.hidden} Hq={config.hq} Hkv={config.hkv} d={config.d} "
          f"InfLLM-V2 topk={config.infllm['topk']} of {config.infllm['block']}-token blocks")
    for name in ("sala", "dense"):
        run_stack(x[:256], layers[name], config)               # compile and build once
        timings = []
        start = time.perf_counter()
        run_stack(x, layers[name], config, timings=timings)
        total = time.perf_counter() - start
        attn = " + ".join(f"{kind} {t:.3f}s" for kind, t in timings)
        print(f"{name:5s} stack: {total:.3f} s total; attention {sum(t for _, t in timings):.3f} s ({attn})")


if __name__ == "__main__":
    main()
