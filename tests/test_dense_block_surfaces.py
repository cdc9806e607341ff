"""The bf16 flash kernel's 2-D block loads on PVC with surfaces the launch proves
(cmlang/passes/block_surfaces.py): every K^T and V load is a block message alone, without
the per-element fallback a surface checked at run time keeps, so IGC's key loop is the
messages' path and nothing else (0 spill bytes, the 32 dpas and every message in it)."""
import numpy as np
import pytest

import cmlang as cm
from cmlang.codegen import intel_gpu
from cmlang.isa_report import hot_loop

from examples.attention import dense

ml_dtypes = pytest.importorskip("ml_dtypes")
needs_ocloc = pytest.mark.skipif(not intel_gpu.available(),
                                 reason="Intel's offline compiler (ocloc) is not installed")


def launch_arguments(n=100, hq=4, group=2, padded=128, d=128):
    """The flash kernel's run-time arguments as dense_attention passes them (GQA: hq / group
    key heads), bf16 buffers cmlang would allocate (64-byte aligned)."""
    bf16 = ml_dtypes.bfloat16
    hkv = hq // group
    return (np.zeros((hq, padded, d), bf16), np.zeros((hkv, d, padded), bf16),
            np.zeros((hkv, padded, d), bf16), np.zeros((n, hq, d), bf16), n, hq, group, padded)


def build(target):
    kernel, constexprs = dense.flash_specialization(128, cm.bf16, profile="pvc")
    order = ("D", "M", "KB", "KD", "VN", "CAUSAL", "BLOCK2D", "STAGE_P", "T", "O")   # the kernel's
    return kernel.compile(*launch_arguments(), *(constexprs[c] for c in order), target=target, device="pvc")


@needs_ocloc
@pytest.mark.parametrize("target", ["spirv", "spirv-vc"])
def test_the_launch_proves_every_block_surface_of_the_bf16_flash_kernel(target):
    ck = build(target)
    loads = ck.ir.count("block_load2d")
    assert loads == 12 and ck.ir.count("surface_fits=1") == loads, ck.ir     # 8 K^T + 2 x 2 V slices
    loop = hot_loop(ck.isa)
    assert ck.stats["spill_bytes"] == 0 and ck.stats["dpas"] == 32 and ck.stats["block2d"] > 0, ck.stats
    assert (loop.dpas, loop.block2d) == (32, ck.stats["block2d"])
    assert loop.instructions == loop.path_instructions          # one path: no fallback left
    assert loop.instructions_per_dpas < 30, loop                 # was 383 (SIMT) and 301 (vc)
