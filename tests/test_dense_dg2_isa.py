"""The bf16 flash kernel on DG2 (no 2-D block messages: Q, K^T and V rows by sub-group block
reads, simd 8) as IGC builds it: every row of its key loop is one message (a 16-element bf16
row is two slots, one block_read2), K^T's rows included (kt's pitch, padded, spelled as a
multiple of 16 so that the compiler knows them aligned: they were per-lane gathers)."""
import re

import pytest

import cmlang as cm
from cmlang.codegen import intel_gpu
from cmlang.isa_report import _basic_blocks, hot_loop

from examples.attention import dense

needs_ocloc = pytest.mark.skipif(not intel_gpu.available(),
                                 reason="Intel's offline compiler (ocloc) is not installed")


def key_loop_lines(isa):
    """The lines of the loop around the dpas: IGC lays it out from its header down to the
    block that branches back to it."""
    blocks = _basic_blocks(isa)
    position = {name: i for i, (name, _, _) in enumerate(blocks)}
    for i, (_, successors, _) in enumerate(blocks):
        for header in successors:
            if header in position and position[header] <= i:
                lines = [line for _, _, text in blocks[position[header]:i + 1] for line in text]
                if any("dpas" in line for line in lines):
                    return lines
    return []


@needs_ocloc
def test_each_row_of_the_dg2_key_loop_is_one_block_read():
    kernel, constexprs = dense.flash_specialization(128, cm.bf16, profile="dg2")
    assert (constexprs["M"], constexprs["KB"], constexprs["KD"], constexprs["VN"]) == (2, 16, 16, 16)
    ck = kernel.compile(target="spirv", device="dg2", **constexprs)
    loop = hot_loop(ck.isa)
    assert ck.stats["spill_bytes"] == 0 and loop.dpas == 32 and loop.instructions == loop.path_instructions
    sends = [line for line in key_loop_lines(ck.isa) if re.search(r"\bsend", line)]
    loop_reads = [s for s in sends if "block read x2" in s]
    rows = 8 * (2 + 16) + 8 * 16            # per d-slice 2 Q rows and 16 K^T rows; 8 V tiles of 16 rows
    assert len(loop_reads) == rows, len(loop_reads)
    assert not [s for s in sends if "gathering" in s]
    assert loop.instructions < 2400, loop     # was 3,090 (96.6 per dpas)
