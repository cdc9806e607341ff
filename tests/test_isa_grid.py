"""``cmlang isa --grid``: the table of builds, one line per specialization."""
from __future__ import annotations

import cmlang as cm
from cmlang.isa_report import Row, format_grid


def row(target, device, **stats):
    return Row("scan", {"D": 128, "P": cm.bf16}, ["ptr<bf16>"], target, device, "attn-lightning-bf16",
               **stats)


def test_grid_lines_with_element_type_constexprs():
    """A constexpr holding an element type (P=bf16) keys the line like any other value
    (json.dumps of it raised TypeError and the whole report failed)."""
    text = format_grid([row("spirv", "pvc", instructions=100, spill_bytes=0, grf=256, dpas=4, block2d=2),
                        row("spirv", "dg2", instructions=90, spill_bytes=64, grf=128, dpas=0, block2d=0)])
    lines = text.splitlines()
    assert lines[0] == "| workload | kernel | constexprs | spirv pvc | spirv dg2 |"
    assert lines[2] == ("| attn-lightning-bf16 | scan | D=128, P=bf16 | 100 / 0; GRF 256; dpas 4; 2-D 2 "
                        "| 90 / 64 |")
    assert len(lines) == 3
