"""`cmlang isa`'s hot loop (isa_report.hot_loop): the loop of an IGC listing that holds the
most dpas, its instructions, dpas and 2-D block messages; on a synthetic listing whose
blocks and edges are known, and on IGC's listing of a dpas GEMM with one k-loop.  Also the
report's rows with element-type constexprs (T=bf16) in the grid and JSON."""
import json

import pytest

import cmlang as cm
from cmlang import bf16, f32, i32
from cmlang.codegen import intel_gpu
from cmlang.isa_report import Row, _jsonable, format_grid, format_table, hot_loop, write_json

needs_ocloc = pytest.mark.skipif(not intel_gpu.available(),
                                 reason="Intel's offline compiler (ocloc) is not installed")

# B000 prologue; B001..B006 the outer loop (back edge B006 -> B001), inside it B002..B005
# the inner loop (back edge B005 -> B002) with two dpas, where B002 branches to a short side
# (B003: one block message) or a long one (B004: three loads), joined in B005; B007 a later
# loop without dpas (a self loop); B008 the end.
SYNTHETIC = """\
//.kernel synthetic
//.instCount 24
// B000: Preds:{},  Succs:{B001}
        mov (16|M0)              r2.0<1>:f     0x0:f
// B001: Preds:{B000, B006},  Succs:{B002}
_outer:
        add (1|M0)               r3.0<1>:d     r3.0<0;1,0>:d     1:w
// B002: Preds:{B001, B005},  Succs:{B003, B004}
_inner:
        cmp (1|M0)    (lt)f0.0   null<1>:d     r1.5<0;1,0>:d     r6.4<0;1,0>:d
(W&f0.0) jmpi                                _slow
// B003: Preds:{B002},  Succs:{B005}
        load_block2d.ugm.d16v.a64 (16|M0)  r66:8 [r2:1]
(W)     jmpi                                 _join
// B004: Preds:{B002},  Succs:{B005}
_slow:
        load.ugm.d16u32.a64 (16|M0)  r66:1       [r10:2]
        load.ugm.d16u32.a64 (16|M0)  r67:1       [r12:2]
        load.ugm.d16u32.a64 (16|M0)  r68:1       [r14:2]
// B005: [inDivergent],  Preds:{B003, B004},  Succs:{B006, B002}
_join:
        dpas.8x8 (16|M0)         r14:f         r2:f              r66:bf            r10.0:bf
        dpas.8x8 (16|M0)         r22:f         r2:f              r66:bf            r10.0:bf
(W)     cmp (16|M0)   (lt)f3.1   null<1>:d     r22.9<0;1,0>:d    r1.14<0;1,0>:d
(W&f3.1) jmpi                                _inner
// B006: Preds:{B005},  Succs:{B007, B001}
        store.ugm.d32x16t.a64 (1|M0)  [r4:1]  r5:1
(W&f3.0) jmpi                                _outer
// B007: Preds:{B006, B007},  Succs:{B008, B007}
_scalar:
        add (16|M0)              r7.0<1>:d     r7.0<1;1,0>:d     1:w
        mul (16|M0)              r8.0<1>:d     r7.0<1;1,0>:d     3:w
        add (16|M0)              r9.0<1>:d     r8.0<1;1,0>:d     1:w
(W&f2.0) jmpi                                _scalar
// B008: Preds:{B007},  Succs:{}
        send.gtwy (1|M0)         null     r127    null:0  0x0   0x02000010  {EOT}
"""


def test_hot_loop_of_a_synthetic_listing_is_the_inner_loop_with_the_dpas():
    loop = hot_loop(SYNTHETIC)
    # B002..B005: 2 + 2 + 3 + 4 instruction lines (labels and comments are none)
    assert (loop.instructions, loop.dpas, loop.block2d, loop.blocks) == (11, 2, 1, 4)
    assert loop.instructions_per_dpas == 5.5
    # its shortest pass: B002, the short side B003, B005
    assert (loop.path_instructions, loop.path_dpas, loop.path_block2d) == (8, 2, 1)
    assert loop.path_instructions_per_dpas == 4.0


def test_hot_loop_without_dpas_is_the_smallest_loop_and_none_without_a_loop():
    loop = hot_loop(SYNTHETIC.replace("dpas.8x8", "mad"))
    assert (loop.instructions, loop.dpas, loop.blocks, loop.path_instructions) == (4, 0, 1, 4)   # B007
    assert loop.instructions_per_dpas is None and loop.path_instructions_per_dpas is None
    straight = "//.instCount 1\n// B000: Preds:{},  Succs:{}\n        mov (1|M0)  r1.0<1>:d  0:w\n"
    assert hot_loop(straight) is None


def test_a_subroutine_return_is_no_loop():
    """The return from a subroutine laid out after its caller is a backward edge whose
    target (the block after the call) does not dominate the subroutine."""
    listing = """\
// B000: Preds:{},  Succs:{B001}
        mov (16|M0)              r2.0<1>:f     0x0:f
// B001: [CALL],  Preds:{B000},  Succs:{B003}
(W)     call (16|M0)             r125.0        _sub
// B002: [RETURN],  Preds:{B003},  Succs:{}
        send.gtwy (1|M0)         null     r127    null:0  0x0   0x02000010  {EOT}
// B003: Preds:{B001},  Succs:{B002}
_sub:
        dpas.8x8 (16|M0)         r14:f         r2:f              r66:bf            r10.0:bf
(W)     ret (16|M0)              r125.0
"""
    assert hot_loop(listing) is None


def gemm_k_loop():
    @cm.kernel(simd=16)
    def gemm_k_loop(a: cm.ptr[bf16], b: cm.ptr[bf16], c: cm.ptr[f32], K: i32, Ncols: i32):
        acc = cm.zeros(cm.matrix[f32, 8, 16])
        for k in range(0, K, 16):
            acc = cm.dpas(acc, cm.load(a, k, (8, 16), K), cm.load(b, k * Ncols, (16, 16), Ncols))
        cm.store(c, 0, acc, Ncols)
    return gemm_k_loop


@needs_ocloc
@pytest.mark.parametrize("target", ["spirv", "spirv-vc"])
def test_hot_loop_of_a_dpas_gemm_is_its_k_loop(target):
    """One 8 x 16 x 16 bf16 dpas per iteration of the k-loop, nothing else in a loop."""
    ck = gemm_k_loop().compile(target=target, device="pvc")
    loop = hot_loop(ck.isa)
    assert ck.stats["dpas"] == 1 and loop.dpas == 1 and loop.block2d == 0
    # the loop: the operand loads and the dpas, a branch back; not the prologue or the store
    assert 3 < loop.instructions < ck.stats["instructions"]
    assert loop.instructions_per_dpas == loop.instructions
    assert loop.path_instructions == loop.instructions and loop.path_dpas == 1   # no branch inside
    # the same count from the listing's own lines between the loop's first label and its branch back
    lines = [line.strip() for line in ck.isa.splitlines()]
    dpas_at = next(i for i, line in enumerate(lines) if line.startswith("dpas"))
    back = next(i for i in range(dpas_at, len(lines)) if "jmpi" in lines[i] or "while" in lines[i])
    label = lines[back].split("//")[0].split()[-1]
    start = lines.index(label + ":")
    assert start < dpas_at < back
    assert loop.instructions == len(list(intel_gpu.opcodes("\n".join(lines[start:back + 1]))))


def test_report_rows_with_element_type_constexprs_format_and_write(tmp_path):
    """T=bf16 in a row's constexprs: the grid (one line per specialization) and the JSON
    took json.dumps of the cm.bf16 object and failed."""
    constexprs = _jsonable({"D": 128, "T": cm.bf16, "SHAPE": (8, 16), "CAUSAL": True})
    assert constexprs == {"D": 128, "T": "bf16", "SHAPE": [8, 16], "CAUSAL": True}
    row = Row("flash_attention", constexprs, ["ptr<bf16>"], "spirv", "pvc", "attn-dense-bf16",
              instructions=1290, spill_bytes=0, grf=128, dpas=32, block2d=32, messages=40,
              loop_instructions=640, loop_dpas=32, loop_block2d=32, loop_path_instructions=320, loop_path_dpas=32)
    grid = format_grid([row])
    assert "T=bf16" in grid and "1290 / 0; dpas 32; 2-D 32; loop 640 (20.0 per dpas), pass 320 (10.0 per dpas)" in grid
    assert "| 640 / 32 / 32 (20.0 per dpas); pass 320 / 32 (10.0 per dpas) |" in format_table([row])
    write_json([row], tmp_path / "rows.json")
    assert json.loads((tmp_path / "rows.json").read_text())[0]["loop_dpas"] == 32
