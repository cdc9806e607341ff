"""IR "lit" tests: every ``tests/lit/*.cmir`` file is run through the pass, analysis or lowering
its RUN lines name and checked against its CHECK lines (the format: ``lit_check.py``).
A lowering is thus tested on the LLVM IR it writes, without a device.  The second half
tests the checker itself: a wrong check line must fail."""
from __future__ import annotations

import glob
import os
import re

import pytest

from cmlang.errors import CompileError
from cmlang.ir.ops import OPS
from cmlang.ir.parser import parse_function
from cmlang.ir.printer import print_function
from cmlang.ir.verify import verify_function
from cmlang.passes.pipeline import ANALYSES, pass_named, run_pipeline
from cmlang.runtime.profiles import get_profile
from cmlang.targets import get_target
from lit_check import CheckFailure, check_output, read_checks, read_runs

LIT_DIR = os.path.join(os.path.dirname(__file__), "lit")
LIT_FILES = sorted(glob.glob(os.path.join(LIT_DIR, "*.cmir")))


def run_command(words: list, ir_text: str) -> str:
    """The output of one RUN command on the IR in ``ir_text`` (verified first, as every stage
    after the front end expects)."""
    fn = parse_function(ir_text)
    verify_function(fn)
    action, args = words[0], words[1:]
    options = dict(a[2:].split("=", 1) for a in args if a.startswith("--"))
    names = [a for a in args if not a.startswith("--")]
    if set(options) - {"device"} or (options and action not in ("lower", "compile")):
        raise ValueError(f"RUN: {' '.join(words)}: the only option is --device=PROFILE, of lower and compile")
    if action in ("analyze", "lower", "compile") and len(names) != 1:
        raise ValueError(f"RUN: {' '.join(words)}: {action} takes one name")
    if action == "pass":
        run_pipeline(fn, passes=[pass_named(n) for n in names], print_after=())
        return print_function(fn)
    if action == "pipeline":
        return print_function(run_pipeline(fn, print_after=()))
    if action == "analyze":
        name = names[0]
        if name not in ANALYSES:
            raise CompileError(f"unknown analysis {name!r}; analyses are {', '.join(ANALYSES)}")
        return ANALYSES[name].describe(fn)
    if action in ("lower", "compile"):
        target, profile = get_target(names[0]), get_profile(options.get("device", "cpu"))
        if action == "lower":
            return target.lower(fn, profile)
        result = target.compile(fn, profile)
        assert result.spirv, "the binary step made no binary"
        return result.llvm_ir
    raise ValueError(f"unknown RUN action {action!r} (pass, pipeline, analyze, lower, compile)")


def run_lit(text: str, where: str = "<text>") -> None:
    runs = read_runs(text)
    if not runs:
        raise CheckFailure(f"{where}: no RUN line")
    for run in runs:
        try:
            output = run_command(run.command, text)
        except (CompileError, ValueError) as e:
            if not run.expect_failure:
                raise
            output = str(e)
        else:
            if run.expect_failure:
                raise CheckFailure(f"{where}: RUN: not {' '.join(run.command)}: the command succeeded")
        check_output(output, read_checks(text, run.prefix), where)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


@pytest.mark.parametrize("path", LIT_FILES, ids=os.path.basename)
def test_lit_file(path):
    run_lit(read(path), os.path.relpath(path))


def test_lit_files_exist_for_every_pass_and_analysis():
    text = "\n".join(read(p) for p in LIT_FILES)
    from cmlang.passes.pipeline import PASSES
    for p in PASSES:
        assert f"RUN: pass {p.name}" in text or f"RUN: not pass {p.name}" in text, p.name
    for name in ANALYSES:
        assert f"RUN: analyze {name}" in text, name


def test_catalogue_files_use_every_op():
    """The catalogue files stay catalogues when ops are added: catalogue.cmir has every op,
    catalogue_vc.cmir every op but ``print`` (which spirv-vc does not lower yet)."""
    every = {op.opcode for op in parse_function(read(os.path.join(LIT_DIR, "catalogue.cmir"))).walk()}
    assert every == set(OPS)
    vc = {op.opcode for op in parse_function(read(os.path.join(LIT_DIR, "catalogue_vc.cmir"))).walk()}
    assert vc == set(OPS) - {"print"}


# ---------------------------------------------------------------------------
# The checker itself

OUTPUT = """\
define void @k(i32 %a) {
entry:
  %1 = add i32 %a, 4
  %2 = mul i32 %1, %1
  store i32 %2, ptr %p
  ret void
}
"""


def checks(text):
    return read_checks(text, "CHECK")


@pytest.mark.parametrize("lines", [
    "// CHECK: %1 = add i32\n// CHECK-NEXT: mul\n// CHECK-SAME: %1, %1\n// CHECK: ret void",
    "// CHECK: define void @k\n// CHECK-NOT: sub\n// CHECK: store",
    "// CHECK: [[X:%[0-9]+]] = add\n// CHECK: mul i32 [[X]], [[X]]",
    "// CHECK: {{^}}entry:\n// CHECK-NEXT: add   i32 {{%a|%b}}, 4",
    "// CHECK: ret void\n// CHECK-NOT: add",
])
def test_checks_that_hold_pass(lines):
    check_output(OUTPUT, checks(lines), "t")


@pytest.mark.parametrize("lines, message", [
    ("// CHECK: sub i32", "t:1: CHECK not matched: 'sub i32'"),
    ("// CHECK: ret void\n// CHECK: add", "t:2: CHECK not matched"),               # order matters
    ("// CHECK: %1 = add\n// CHECK-NEXT: store", "t:2: CHECK-NEXT not matched"),
    ("// CHECK: add i32\n// CHECK-SAME: mul", "t:2: CHECK-SAME not matched"),
    ("// CHECK: entry:\n// CHECK-NOT: mul\n// CHECK: store", "t:2: CHECK-NOT pattern found at output line 4"),
    ("// CHECK: store\n// CHECK-NOT: ret", "t:2: CHECK-NOT pattern found at output line 6"),
    ("// CHECK: [[X:%[0-9]+]] = mul\n// CHECK: add i32 [[X]]", "t:2: CHECK not matched"),
    ("// CHECK: mul i32 [[Y]]", "variable [[Y]] is used before it is defined"),
    ("// CHECK: {{add|sub}} i64", "t:1: CHECK not matched"),
    ("// nothing to check", "no check lines"),
])
def test_checks_that_do_not_hold_fail(lines, message):
    with pytest.raises(CheckFailure, match=None) as info:
        check_output(OUTPUT, checks(lines), "t")
    assert message in str(info.value)


IR = """\
// RUN: pass dce
kernel @k(%p: ptr<f32>) simd=16 {
  %0: i32 = const [value=3]
  %1: f32 = const [value=1.0]
  store %p, %0, %1
  return
}
"""


@pytest.mark.parametrize("run, message", [
    ("lower spirv --devcie=pvc", "the only option is --device=PROFILE"),
    ("analyze", "analyze takes one name"),
    ("optimize", "unknown RUN action 'optimize'"),
    ("analyze liveness", "unknown analysis 'liveness'; analyses are block-surfaces"),
    ("pass licm", "unknown IR pass 'licm'; passes are verify, dce"),
    ("lower nvptx", "unknown target 'nvptx'"),
])
def test_bad_run_lines_are_errors(run, message):
    with pytest.raises((ValueError, CompileError), match=re.escape(message)):
        run_lit(IR.replace("pass dce", run) + "// CHECK: k\n")


def test_a_misspelt_directive_is_an_error():
    with pytest.raises(CheckFailure, match="line 2: unknown directive CHECK-NXT: use CHECK-NEXT, CHECK-SAME"):
        checks("// CHECK: define\n// CHECK-NXT: entry:")


def test_a_wrong_check_line_in_a_lit_file_fails():
    run_lit(IR + "// CHECK: store %p, %0, %1\n")
    with pytest.raises(CheckFailure, match=r"<text>:8: CHECK not matched: 'store %p, %1, %0'"):
        run_lit(IR + "// CHECK: store %p, %1, %0\n")


def test_check_prefixes_select_their_lines():
    text = IR.replace("pass dce", "pass dce --check-prefix=DCE") + "// DCE: return\n// CHECK: no such text\n"
    run_lit(text)
    with pytest.raises(CheckFailure, match="'no such text'"):
        run_lit(text.replace("--check-prefix=DCE", ""))


def test_not_expects_the_command_to_fail_and_checks_its_message():
    bad = IR.replace("// RUN: pass dce", "// RUN: not pass verify").replace("store %p, %0, %1", "store %p, %1, %0")
    run_lit(bad + "// CHECK: store\n")
    with pytest.raises(CheckFailure, match="the command succeeded"):
        run_lit(IR.replace("// RUN: pass dce", "// RUN: not pass dce") + "// CHECK: store\n")


def test_every_lit_file_fails_when_its_first_check_is_changed():
    """No lit file passes vacuously: spoiling its first positive check line makes it fail."""
    for path in LIT_FILES:
        text = read(path)
        runs = read_runs(text)
        first = next(c for c in read_checks(text, runs[0].prefix) if c.kind != "NOT")
        lines = text.splitlines(keepends=True)
        lines[first.line - 1] = lines[first.line - 1].rstrip("\n") + " @@never@@\n"
        with pytest.raises(CheckFailure, match=f":{first.line}: CHECK"):
            run_lit("".join(lines), os.path.relpath(path))
