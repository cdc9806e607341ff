"""The pass pipeline (cmlang/passes/pipeline.py): what runs, in which order, from where, and
its debug hook CMLANG_PRINT_IR_AFTER; the analyses' home (cmlang.passes) stays free of the
code generators."""
import os
import subprocess
import sys

import numpy as np
import pytest

import cmlang as cm
from cmlang import f32, i32
from cmlang.errors import CompileError
from cmlang.ir.parser import parse_function
from cmlang.passes import pipeline
from cmlang.passes.pipeline import PASSES, Pass, run_pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEAD_MUL = """\
kernel @k(%p: ptr<f32>, %s: f32) simd=16 {
  %t: i32 = thread_id [dim=0]
  %sq: f32 = mul %s, %s
  store %p, %t, %s
  return
}
"""


def test_the_pipeline_is_verify_then_dce():
    assert [p.name for p in PASSES] == ["verify", "dce"]


def test_run_pipeline_runs_the_passes_in_order():
    seen = []
    passes = [Pass("first", lambda fn: seen.append(("first", len(fn.body.ops))), ""),
              *PASSES,
              Pass("last", lambda fn: seen.append(("last", len(fn.body.ops))), "")]
    run_pipeline(parse_function(DEAD_MUL), passes=passes, print_after=())
    assert seen == [("first", 4), ("last", 3)]      # dce ran in between: the mul is gone


def test_print_ir_after_dce_prints_the_ir_once(capsys):
    run_pipeline(parse_function(DEAD_MUL), print_after="dce")
    err = capsys.readouterr().err
    assert err.count("// ----- IR after") == 1
    assert err.startswith("// ----- IR after dce (@k) -----\nkernel @k(")
    assert "mul" not in err and "store %p, %t.0, %s" in err


def test_print_ir_after_all_prints_after_every_pass(capsys):
    run_pipeline(parse_function(DEAD_MUL), print_after="all")
    err = capsys.readouterr().err
    headers = [line for line in err.splitlines() if line.startswith("// ----- IR after")]
    assert headers == ["// ----- IR after verify (@k) -----", "// ----- IR after dce (@k) -----"]
    after_verify = err.split("// ----- IR after dce")[0]
    assert "%sq.1: f32 = mul %s, %s" in after_verify     # verify changes nothing; dce removes it


def test_print_ir_after_comes_from_the_environment_when_a_kernel_compiles(monkeypatch, capsys):
    monkeypatch.setenv("CMLANG_PRINT_IR_AFTER", "dce")
    monkeypatch.setenv("CMLANG_CACHE", "0")      # a disk-cache hit runs no passes

    @cm.kernel(simd=8)
    def scale(x: cm.ptr[f32], a: f32):
        unused = a * a
        v = cm.load(x, cm.thread_id(0) * 8, 8)
        cm.store(x, cm.thread_id(0) * 8, v * a)

    scale.compile(target="spirv", device="cpu")
    err = capsys.readouterr().err
    assert "// ----- IR after dce (@scale) -----\nkernel @scale(%x: ptr<f32>, %a: f32) simd=8" in err
    assert "verify" not in err


def test_print_ir_after_an_unknown_pass_is_an_error_naming_the_passes(monkeypatch):
    monkeypatch.setenv("CMLANG_PRINT_IR_AFTER", "dce,licm")
    with pytest.raises(CompileError, match=r"CMLANG_PRINT_IR_AFTER names unknown pass\(es\) licm; "
                                           r"passes are verify, dce \(or all\)"):
        run_pipeline(parse_function(DEAD_MUL))


def test_kernels_go_through_the_pipeline(monkeypatch):
    """Kernel.ir_function runs pipeline.PASSES (whatever it lists at the time)."""
    ran = []
    monkeypatch.setattr(pipeline, "PASSES", PASSES + (Pass("probe", lambda fn: ran.append(fn.name), ""),))

    @cm.kernel(simd=8)
    def probe_me(x: cm.ptr[i32]):
        cm.store(x, 0, cm.thread_id(0))

    probe_me.ir_function(())
    assert ran == ["probe_me"]


def test_the_launch_contract_reads_the_analyses(mode):
    """uses_groups (cmlang.passes.group_use) decides the group: with a barrier each CM thread
    must be its own group unless one is given; the result is checked on the device and in
    the interpreter."""
    @cm.kernel(simd=8)
    def groups(out: cm.ptr[i32]):
        cm.barrier()
        cm.store(out, cm.thread_id(0), cm.local_size(0))

    from cmlang.kernel import make_binary
    assert make_binary(groups.ir_function(()), None).uses_groups
    out = np.zeros(4, np.int32)
    groups[4](out)
    assert out.tolist() == [1, 1, 1, 1]


def test_passes_import_no_code_generator_and_no_llvmlite():
    code = ("import sys, cmlang.passes, cmlang.passes.pipeline\n"
            "bad = sorted(m for m in sys.modules if m.startswith(('cmlang.codegen', 'llvmlite')))\n"
            "assert not bad, bad\n"
            "print('clean')")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.stdout.strip() == "clean", result.stderr


LOOP = """\
kernel @k(%p: ptr<f32>, %s: f32, %n: i32) simd=16 {
  %four: i32 = const [value=4]
  for %four, %n, %four {
  ^(%i: i32):
    barrier
    store %p, %i, %s
    yield
  }
  return
}
"""


def test_analysis_output_is_ir_text_with_comments():
    """describe() output parses back (comments at line ends and on lines of their own are
    ignored) to the same function."""
    from cmlang.ir.printer import print_function
    from cmlang.passes.pipeline import ANALYSES
    fn = parse_function(LOOP)
    for analysis in ANALYSES.values():
        text = analysis.describe(fn)
        assert "//" in text, analysis.name
        assert print_function(parse_function(text)) == print_function(fn), analysis.name
    commented = LOOP.replace("    store", "    // a comment line between ops\n\n    store")
    assert print_function(parse_function(commented)) == print_function(fn)
