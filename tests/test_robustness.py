"""Bad kernel source ends in a CompileError with file:line:col, never in Python's own
exceptions (RecursionError, OverflowError, TypeError, AttributeError)."""
import importlib.util
import itertools
import os
import re
import sys

import numpy as np
import pytest

import cmlang as cm

_counter = itertools.count()


def load_kernel(tmp_path, source, name="k"):
    """Writes ``source`` (after ``import cmlang as cm``) to a module file and imports it, so
    errors have a real file and line; returns (the module's ``name``, the file path)."""
    path = tmp_path / f"kmod_{next(_counter)}.py"
    path.write_text("import cmlang as cm\n" + source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name), str(path)


def compile_error(tmp_path, source, *args):
    kernel, path = load_kernel(tmp_path, source)
    with pytest.raises(cm.CompileError) as info:
        kernel.compile(*args)
    return str(info.value), path


X = np.zeros(64, np.float32)


def test_600_term_expression_compiles(tmp_path):
    terms = " + ".join(["a"] * 600)
    kernel, _ = load_kernel(tmp_path, f"""
@cm.kernel
def k(x: cm.ptr[cm.f32]):
    a = cm.load(x, 0, 16)
    cm.store(x, 0, {terms})
""")
    x = np.arange(16, dtype=np.float32)
    kernel[1](x)
    np.testing.assert_array_equal(x, np.arange(16, dtype=np.float32) * 600)


def test_300_branch_elif_and_200_deep_func_chain_compile(tmp_path):
    elifs = "".join(f"    elif n == {i}:\n        r = {i * 3}\n" for i in range(1, 300))
    chain = "".join(f"@cm.func\ndef f{i}(a):\n    return f{i - 1}(a) + 1\n" for i in range(1, 200))
    kernel, _ = load_kernel(tmp_path, f"""
@cm.func
def f0(a):
    return a + 1
{chain}
@cm.kernel
def k(x: cm.ptr[cm.i32], n: cm.i32):
    r = 0
    if n == 0:
        r = 1
{elifs}    cm.store(x, 0, f199(cm.full(cm.vector[cm.i32, 16], r)))
""")
    x = np.zeros(16, np.int32)
    kernel[1](x, 157)
    np.testing.assert_array_equal(x, np.full(16, 157 * 3 + 200))


def test_nesting_past_the_budget_names_the_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("CMLANG_MAX_NESTING", "100")
    terms = " + ".join(["a"] * 150)
    message, path = compile_error(tmp_path, f"""
@cm.kernel
def k(x: cm.ptr[cm.f32]):
    a = cm.load(x, 0, 16)
    cm.store(x, 0, {terms})
""", X)
    assert message.startswith(f"{path}:6:")
    assert "levels of nesting" in message and "over the limit of 100" in message
    assert "CMLANG_MAX_NESTING" in message


def test_recursion_past_python_limit_is_a_compile_error(tmp_path, monkeypatch):
    # The nesting budget lifted beyond what the recursion bound covers: Python's own
    # RecursionError must still come out as a CompileError at the def line.
    monkeypatch.setattr(cm.limits, "_FRAMES_PER_LEVEL", 1)
    monkeypatch.setattr(cm.limits, "_BASE_FRAMES", 0)
    monkeypatch.setenv("CMLANG_MAX_NESTING", "600")
    terms = " + ".join(["a"] * 500)
    old = sys.getrecursionlimit()
    message, path = compile_error(tmp_path, f"""
@cm.kernel
def k(x: cm.ptr[cm.f32]):
    a = cm.load(x, 0, 16)
    cm.store(x, 0, {terms})
""", X)
    assert sys.getrecursionlimit() == old
    assert message.startswith(f"{path}:4:1: kernel 'k' is nested too deeply for the compiler")
    assert "CMLANG_MAX_NESTING" in message


@pytest.mark.parametrize("body, col, expected", [
    ("    for i in cm.static_range(2**63):\n        pass\n", 14,
     "the loop has 9223372036854775808 iterations, too many to unroll"),
    ("    cm.store(x, 0, cm.load(x, 0, 16) * float(10**400))\n", 40,
     "OverflowError: int too large to convert to float"),
    ("    cm.store(x, 0, cm.load(x, 0, 16) * 10**400)\n", 20, "constant 1000000"),
    ("    cm.store(x, 0, cm.load(x, 0, 16) * min(cm.i32, 256))\n", 40,
     "TypeError: '<' not supported between instances of 'int' and 'ScalarType'"),
])
def test_python_errors_become_compile_errors_at_the_node(tmp_path, body, col, expected):
    message, path = compile_error(tmp_path, "@cm.kernel\ndef k(x: cm.ptr[cm.f32]):\n" + body, X)
    assert message.startswith(f"{path}:4:{col}: {expected}"), message


@pytest.mark.parametrize("simd, shown", [("16.0", "16.0"), ("0", "0"), ("True", "True"),
                                         ("'16'", "'16'")])
def test_bad_simd_is_refused_at_the_def_line(tmp_path, simd, shown):
    with pytest.raises(cm.CompileError) as info:
        load_kernel(tmp_path, f"@cm.kernel(simd={simd})\n\ndef k(x: cm.ptr[cm.f32]):\n    pass\n")
    assert re.match(rf".*kmod_\d+\.py:4:1: k: simd must be the int 8, 16 or 32, got {re.escape(shown)}$",
                    str(info.value).splitlines()[0]), str(info.value)


@pytest.mark.parametrize("params, expected", [
    ("x", "k: parameter 'x' needs a type annotation"),
    ("x: 'cm.nope'", "k: cannot evaluate annotation 'cm.nope' of parameter 'x'"),
    ("x: list", "k: parameter 'x' has unsupported annotation"),
    ("*x: cm.i32", "k: parameter 'x': only plain positional parameters are supported"),
])
def test_decoration_time_errors_have_the_def_location(tmp_path, params, expected):
    with pytest.raises(cm.CompileError) as info:
        load_kernel(tmp_path, f"@cm.kernel\n@(lambda f: f)\ndef k({params}):\n    pass\n")
    message = str(info.value)
    assert re.match(r".*kmod_\d+\.py:4:1: ", message) and expected in message, message
    assert "def k(" in message  # the source line is shown


def test_register_budget(tmp_path, monkeypatch):
    message, path = compile_error(tmp_path, "@cm.kernel\ndef k(x: cm.ptr[cm.f32]):\n"
                                  "    v = cm.load(x, 0, 2**31)\n", X)
    assert message.startswith(f"{path}:4:9: register vector<f32, 2147483648>: 2147483648 "
                              "elements in one register, over the limit of 65536 "
                              "(set CMLANG_MAX_REGISTER_ELEMENTS to raise it)"), message
    monkeypatch.setenv("CMLANG_MAX_REGISTER_ELEMENTS", "8")
    message, _ = compile_error(tmp_path, "@cm.kernel\ndef k(x: cm.ptr[cm.f32]):\n"
                               "    cm.store(x, 0, cm.load(x, 0, 16))\n", X)
    assert "16 elements in one register, over the limit of 8" in message


def test_unrolled_operations_budget_fails_after_the_first_copy(tmp_path, monkeypatch):
    import time
    source = """
@cm.kernel
def k(x: cm.ptr[cm.f32]):
    v = cm.load(x, 0, 16)
    for i in cm.static_range(60000):
        for j in cm.static_range(60000):
            v += 1.0
    cm.store(x, 0, v)
"""
    start = time.perf_counter()
    message, path = compile_error(tmp_path, source, X)
    assert time.perf_counter() - start < 30   # was minutes
    assert re.match(rf"{re.escape(path)}:6:14: unrolling this loop \(60000 iterations of about "
                    r"120000 operations\) would give the kernel: 72000\d+ IR operations \(after "
                    r"unrolling static_range loops and inlining\), over the limit of 524288 "
                    r"\(set CMLANG_MAX_IR_OPS to raise it\)", message), message
    monkeypatch.setenv("CMLANG_MAX_IR_OPS", "5000")
    message, path = compile_error(tmp_path, source, X)
    assert re.match(rf"{re.escape(path)}:7:18: unrolling this loop \(60000 iterations of about 2 "
                    r"operations\)", message), message


def test_straight_line_operations_budget(tmp_path, monkeypatch):
    monkeypatch.setenv("CMLANG_MAX_IR_OPS", "100")
    terms = " + ".join(["a"] * 150)
    message, path = compile_error(tmp_path, f"""
@cm.kernel
def k(x: cm.ptr[cm.f32]):
    a = cm.load(x, 0, 16)
    cm.store(x, 0, {terms})
""", X)
    assert re.match(rf"{re.escape(path)}:6:\d+: the kernel: 101 IR operations \(after unrolling "
                    r"static_range loops and inlining\), over the limit of 100 "
                    r"\(set CMLANG_MAX_IR_OPS to raise it\)", message), message


def test_bad_budget_setting_warns_and_uses_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("CMLANG_MAX_REGISTER_ELEMENTS", "lots")
    monkeypatch.setenv("CMLANG_CACHE", "0")  # compiled here, not served from the disk cache
    kernel, _ = load_kernel(tmp_path, "@cm.kernel\ndef k(x: cm.ptr[cm.f32]):\n"
                                      "    cm.store(x, 0, cm.load(x, 0, 16) + 1.0)\n")
    with pytest.warns(UserWarning, match="CMLANG_MAX_REGISTER_ELEMENTS='lots' is not a positive "
                                         "integer; using 65536"):
        kernel.compile(X)


# --- the IR text parser -------------------------------------------------------------

IR_SAMPLE = """kernel @k(%x: ptr<f32>, %n: i32) simd=16 file="k.py" {
  %0: i32 = const [value=0]
  %v.1: vector<f32, 16> = load %x, %0
  store %x, %0, %v.1
  return
}
"""


def _nested_ir(depth):
    opens = "".join(f'  %c{i}: bool = cmp %n, %n [pred="gt"]\n  if %c{i} {{\n' for i in range(depth))
    closes = "  } else {\n  }\n" * depth
    return "kernel @k(%n: i32) simd=16 {\n" + opens + closes + "  return\n}\n"


@pytest.mark.parametrize("text, expected", [
    (IR_SAMPLE.replace("[value=0]", "[value=" + "9" * 5000 + "]"),
     "2:13: ValueError: Exceeds the limit (4300 digits) for integer string conversion"),
    (IR_SAMPLE.replace('file="k.py"', 'file="\\x"'), "1:42: JSONDecodeError: Invalid \\escape"),
    (IR_SAMPLE.replace("vector<f32, 16> = load", "vector<f32, 99999999999> = load"),
     "3:36: register vector<f32, 99999999999>: 99999999999 elements in one register, over the "
     "limit of 65536 (set CMLANG_MAX_REGISTER_ELEMENTS to raise it)"),
    (_nested_ir(1200), "2004:3: the IR text: 1001 levels of nesting"),
    (IR_SAMPLE.replace("load %x", "load %y"), "3:32: undefined value %y"),
])
def test_ir_parser_errors_have_line_and_col(text, expected):
    from cmlang.ir.parser import parse_function
    with pytest.raises(cm.CompileError) as info:
        parse_function(text)
    assert isinstance(info.value, ValueError)  # the parser's documented error type still
    assert str(info.value).startswith(expected), str(info.value)


def test_ir_text_size_budget(monkeypatch):
    from cmlang.ir.parser import parse_function
    monkeypatch.setenv("CMLANG_MAX_IR_TEXT_BYTES", "100")
    with pytest.raises(cm.CompileError, match=r"the IR text: \d+ bytes of IR text, over the limit "
                                              r"of 100 \(set CMLANG_MAX_IR_TEXT_BYTES"):
        parse_function(IR_SAMPLE)


def test_deep_ir_within_budget_parses():
    from cmlang.ir.parser import parse_function
    fn = parse_function(_nested_ir(600))
    depth, ops = 0, fn.body.ops
    while any(op.opcode == "if" for op in ops):
        ops = next(op for op in ops if op.opcode == "if").blocks[0].ops
        depth += 1
    assert depth == 600


@pytest.mark.parametrize("spelling, expected", [
    ("cm.vector[cm.f32, 0]", "cm.vector[T, N]: sizes must be positive, got 0"),
    ("cm.vector[cm.f32, 4.0]", "cm.vector[T, N]: sizes must be ints, got 4.0"),
    ("cm.matrix[cm.f32, 2]", "cm.matrix[T, ROWS, COLS] takes an element type and 2 sizes, got 2 item(s)"),
    ("cm.ptr[5]", "cm.ptr[T]: 5 is not a cmlang scalar type"),
])
def test_type_spelling_errors_point_at_the_annotation(tmp_path, spelling, expected):
    with pytest.raises(cm.CompileError) as info:
        load_kernel(tmp_path, f"@cm.kernel\ndef k(x: {spelling}):\n    pass\n")
    assert isinstance(info.value, TypeError)
    assert re.match(rf".*kmod_\d+\.py:3:1: {re.escape(expected)}", str(info.value)), str(info.value)


def test_type_spelling_error_inside_a_kernel_body_has_the_node(tmp_path):
    message, path = compile_error(tmp_path, "@cm.kernel\ndef k(x: cm.ptr[cm.f32]):\n"
                                  "    v = cm.full(cm.vector[cm.f32, 4.0], 1.0)\n", X)
    assert message.startswith(f"{path}:4:17: cm.vector[T, N]: sizes must be ints, got 4.0"), message


def test_same_kernel_text_in_two_files_reports_each_file(tmp_path):
    # Code objects compare equal across files; the parsed-source cache must not mix them up.
    source = "@cm.kernel\ndef k(x: cm.ptr[cm.f32]):\n    cm.store(x, 0, undefined_name)\n"
    first, first_path = compile_error(tmp_path, source, X)
    second, second_path = compile_error(tmp_path, source, X)
    assert first.startswith(f"{first_path}:4:20: name 'undefined_name' is not defined")
    assert second.startswith(f"{second_path}:4:20: name 'undefined_name' is not defined")
