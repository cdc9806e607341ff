"""MiniCPM-SALA's attention kernels in cmlang: InfLLM-V2 sparse attention, Lightning
(linear) attention, dense causal flash attention, RoPE and RMSNorm.

Numpy in, float32 numpy out (cmlang DeviceArrays are accepted as inputs).  Each
function has a float64 numpy ``*_reference`` beside it; ``examples.attention.simt``
holds the SIMT OpenCL C versions of the same algorithms, and ``sala`` a SALA-style
layer stack.  The math is in README.md.
"""
from .checks import alibi_slopes
from .dense import dense_attention
from .lightning import lightning_attention, lightning_decode
from .infllmv2 import infllmv2_attention, infllmv2_select, infllmv2_decode
from .norms import rope, rmsnorm
from .reference import (
    dense_attention_reference, lightning_attention_reference, lightning_decode_reference,
    infllmv2_attention_reference, infllmv2_select_reference, infllmv2_decode_reference,
    rope_reference, rmsnorm_reference,
)

__all__ = [
    "dense_attention", "lightning_attention", "lightning_decode", "infllmv2_attention",
    "infllmv2_select", "infllmv2_decode", "rope", "rmsnorm", "alibi_slopes",
    "dense_attention_reference", "lightning_attention_reference", "lightning_decode_reference",
    "infllmv2_attention_reference", "infllmv2_select_reference", "infllmv2_decode_reference",
    "rope_reference", "rmsnorm_reference",
]
