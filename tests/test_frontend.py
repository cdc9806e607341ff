"""The front end: Python kernels -> IR (structure, types, folding, control flow, errors).

Kernels are module-level functions here so that inspect finds their source; each test
compiles one with ``compile_to_ir`` and checks the IR objects, the printed text, or the
CompileError (message, file, line and column).
"""
import inspect

import numpy as np
import pytest

import cmlang as cm
from cmlang import CompileError
from cmlang.frontend import compile_to_ir
from cmlang.ir.printer import print_function
from cmlang.ir.verify import verify_function
from cmlang.types import (i8, i16, i32, i64, u8, u16, u32, u64, f16, bf16, f32, f64, bool_,
                          vector, matrix, ptr, vec, mat, PtrType)

PF = ptr[f32]
PI = ptr[i32]


# --- helpers ---------------------------------------------------------------------------

def build(fn, constexprs=None, simd=16, **param_types):
    f = compile_to_ir(fn, param_types, constexprs or {}, simd)
    verify_function(f)
    assert all(op.loc is not None and op.loc.file == __file__ for op in f.walk())
    return f


def opcodes(f):
    return [op.opcode for op in f.walk()]


def ops_named(f, opcode):
    return [op for op in f.walk() if op.opcode == opcode]


def value(f, hint):
    """The last value bound to Python variable ``hint``."""
    found = [r for op in f.walk() for r in op.results if r.hint == hint]
    assert found, f"no value named {hint}"
    return found[-1]


def stored(f, k=-1):
    """The value stored by the k-th store op."""
    return ops_named(f, "store")[k].operands[2]


def where(fn, snippet, nth=0):
    """(line, col) of ``snippet`` in fn's source (absolute file line, 0-based column)."""
    lines, start = inspect.getsourcelines(fn)
    body = [(i, line) for i, line in enumerate(lines) if not line.lstrip().startswith(("def ", "@"))]
    hits = [(start + i, line.index(snippet)) for i, line in body if snippet in line]
    assert hits, f"{snippet!r} not in {fn.__name__}"
    return hits[nth]


def error(fn, constexprs=None, **param_types) -> CompileError:
    with pytest.raises(CompileError) as info:
        compile_to_ir(fn, param_types, constexprs or {}, 16)
    return info.value


def assert_error_at(err, fn, snippet, *messages, nth=0):
    line, col = where(fn, snippet, nth)
    assert err.loc is not None, str(err)
    assert (err.loc.file, err.loc.line, err.loc.col) == (__file__, line, col), str(err)
    for m in messages:
        assert m in err.message, err.message


# --- a whole kernel, printed ---------------------------------------------------------------

def saxpy(x, y, a, n):
    base = cm.thread_id(0) * 32
    vx = cm.load(x, base, 32)
    vy = cm.load(y, base, 32)
    cm.store(y, base, a * vx + vy)


def test_saxpy_ir_text_and_locations():
    f = build(saxpy, x=PF, y=PF, a=f32, n=i32)
    assert f.name == "saxpy" and f.param_names == ["x", "y", "a", "n"] and f.simd == 16
    assert [p.hint for p in f.params] == ["x", "y", "a", "n"]
    assert f.source_file == __file__
    assert print_function(f) == f"""\
kernel @saxpy(%x: ptr<f32>, %y: ptr<f32>, %a: f32, %n: i32) simd=16 file="{__file__}" {{
  %0: i32 = thread_id [dim=0]
  %1: i32 = const [value=32]
  %base.2: i32 = mul %0, %1
  %vx.3: vector<f32, 32> = load %x, %base.2
  %vy.4: vector<f32, 32> = load %y, %base.2
  %5: vector<f32, 32> = splat %a
  %6: vector<f32, 32> = mul %5, %vx.3
  %7: vector<f32, 32> = add %6, %vy.4
  store %y, %base.2, %7
  return
}}
"""
    mul = ops_named(f, "mul")[1]
    assert (mul.loc.line, mul.loc.col) == where(saxpy, "a * vx")
    store = ops_named(f, "store")[0]
    assert (store.loc.line, store.loc.col) == where(saxpy, "cm.store")


def k_constexpr_params(x, N, SCALE):
    v = cm.load(x, 0, N)
    cm.store(x, 0, v * SCALE)


def test_constexpr_parameters_are_folded_and_recorded():
    f = build(k_constexpr_params, dict(N=8, SCALE=2), x=PF)
    assert f.param_names == ["x"] and f.constexprs == {"N": 8, "SCALE": 2}
    assert ops_named(f, "load")[0].results[0].type == vec(f32, 8)
    scale = ops_named(f, "mul")[0].operands[1].defining_op
    assert scale.attrs["value"] == 2.0 and scale.results[0].type == vec(f32, 8)
    g = build(k_constexpr_params, dict(N=4, SCALE=0.5), x=PF)
    assert ops_named(g, "load")[0].results[0].type == vec(f32, 4)


# --- promotion -------------------------------------------------------------------------------

def k_add(a, b):
    c = a + b


@pytest.mark.parametrize("ta,tb,want", [
    (i8, i8, i32), (u8, i16, i32), (u16, u16, i32), (bool_, bool_, i32), (i32, u32, u32),
    (i64, u32, i64), (u64, i64, u64), (i32, i64, i64), (f16, bf16, f32), (f16, i32, f16),
    (f32, f64, f64), (bf16, u8, bf16), (f32, i64, f32), (f16, f16, f16),
])
def test_usual_arithmetic_conversions(ta, tb, want):
    f = build(k_add, a=ta, b=tb)
    assert value(f, "c").type == want
    add = ops_named(f, "add")[0]
    assert [v.type for v in add.operands] == [want, want]


def k_add_weak_int(a):
    c = a + 1


def k_add_weak_float(a):
    c = a * 1.5


@pytest.mark.parametrize("t,want_int,want_float", [
    (i8, i32, f32), (u16, i32, f32), (i32, i32, f32), (u32, u32, f32), (i64, i64, f32),
    (f16, f16, f16), (bf16, bf16, bf16), (f64, f64, f64), (bool_, i32, f32),
])
def test_weak_constants_take_the_typed_operand(t, want_int, want_float):
    assert value(build(k_add_weak_int, a=t), "c").type == want_int
    assert value(build(k_add_weak_float, a=t), "c").type == want_float


def k_weak_register(x):
    v = cm.load(x, 0, 8)
    w = v + 1
    u = v * 0.5


def test_weak_constant_with_register_is_a_register_constant():
    f = build(k_weak_register, x=ptr[u8])
    assert value(f, "w").type == vec(i32, 8)                # C promotion of u8
    assert value(f, "u").type == vec(f32, 8)
    consts = [op for op in ops_named(f, "const") if isinstance(op.results[0].type, type(vec(i32, 1)))]
    assert [(c.results[0].type, c.attrs["value"]) for c in consts] == [(vec(i32, 8), 1), (vec(f32, 8), 0.5)]


def k_big_constant(a):
    c = a + 4294967296


def test_constant_that_does_not_fit_is_an_error():
    err = error(k_big_constant, a=i32)
    assert_error_at(err, k_big_constant, "a + 4294967296", "constant 4294967296 does not fit in i32")


def k_fold(x, N):
    a = (3 + 4) * 2
    b = N // 2 + N % 3 + 2 ** 3
    c = 7 / 2
    d = a > 10 and not N == 5
    cm.store(x, 0, a + b + c + d)


def test_weak_values_fold_in_python():
    f = build(k_fold, dict(N=7), x=PF)
    assert opcodes(f) == ["const", "const", "store", "return"]
    # 14 + (3 + 1 + 8) + 3.5 + True
    assert stored(f).type == f32 and stored(f).defining_op.attrs["value"] == 30.5


GLOBAL_N = 8
GLOBAL_SHAPE = (2, 4)
GLOBAL_T = f16


def k_globals(x):
    v = cm.load(x, 0, GLOBAL_N)
    m = cm.zeros(matrix[GLOBAL_T, GLOBAL_SHAPE[0], GLOBAL_SHAPE[1]])


def test_module_globals_are_constexpr():
    f = build(k_globals, x=PF)
    assert value(f, "v").type == vec(f32, 8)
    assert value(f, "m").type == mat(f16, 2, 4)


# --- registers and operators ----------------------------------------------------------------

def k_scalar_splat(x, s):
    v = cm.load(x, 0, 16)
    w = v * s


def test_scalar_with_register_is_converted_then_splat():
    f = build(k_scalar_splat, x=PF, s=i32)
    assert opcodes(f)[:5] == ["const", "load", "convert", "splat", "mul"]
    assert value(f, "w").type == vec(f32, 16)


def k_shape_mismatch(x):
    a = cm.load(x, 0, 16)
    b = cm.load(x, 16, 8)
    c = a + b


def k_vector_vs_matrix(x):
    a = cm.load(x, 0, 16)
    m = cm.load(x, 0, (4, 4), 4)
    c = a * m


def test_two_registers_need_one_shape():
    err = error(k_shape_mismatch, x=PF)
    assert_error_at(err, k_shape_mismatch, "a + b", "vector<f32, 16>", "vector<f32, 8>")
    err = error(k_vector_vs_matrix, x=PF)
    assert_error_at(err, k_vector_vs_matrix, "a * m", "vector<f32, 16>", "matrix<f32, 4, 4>")


def k_division(a, b, x, y):
    q = a / b
    fq = a // b
    r = a % b
    xq = x / y
    xf = x // y
    xr = x % y
    p = x ** y
    p3 = a ** 3
    p0 = a ** 0


def test_division_remainder_power():
    f = build(k_division, a=i32, b=i32, x=f32, y=f32)
    assert value(f, "q").defining_op.opcode == "div" and value(f, "q").type == i32
    assert value(f, "fq").defining_op.opcode == "div"                  # C-like truncation on ints
    assert value(f, "r").defining_op.opcode == "rem"
    assert value(f, "xq").defining_op.opcode == "div"
    assert value(f, "xf").defining_op.opcode == "floor"                # floor(x / y) on floats
    assert value(f, "xf").defining_op.operands[0].defining_op.opcode == "div"
    assert value(f, "xr").defining_op.opcode == "rem"
    assert value(f, "p").defining_op.opcode == "pow"
    # a ** 3 = (a) * (a * a): square-and-multiply, unrolled
    p3 = value(f, "p3").defining_op
    assert p3.opcode == "mul" and opcodes(f).count("mul") == 2
    assert value(f, "p0").defining_op.attrs == {"value": 1}


def k_int_pow_runtime(a, b):
    c = a ** b


def test_integer_power_needs_constant_exponent():
    err = error(k_int_pow_runtime, a=i32, b=i32)
    assert_error_at(err, k_int_pow_runtime, "a ** b", "'**' on integers", "constant exponent")


def k_compare_logic(a, b, x):
    v = cm.load(x, 0, 8)
    m = v > a
    e = a == b
    both = (a < b) and (b < 10)
    either = a > 0 or b > 0
    neither = not (a > 0)
    chain = 0 < a < b
    inv = ~m


def test_comparisons_and_logic():
    f = build(k_compare_logic, a=f32, b=f32, x=PF)
    m = value(f, "m").defining_op
    assert m.opcode == "cmp" and m.attrs == {"pred": "gt"} and m.results[0].type == vec(bool_, 8)
    assert value(f, "e").type == bool_ and value(f, "e").defining_op.attrs["pred"] == "eq"
    assert value(f, "both").defining_op.opcode == "and"
    assert value(f, "either").defining_op.opcode == "or"
    assert value(f, "neither").defining_op.opcode == "not"
    assert value(f, "chain").defining_op.opcode == "and"
    assert value(f, "inv").defining_op.opcode == "not" and value(f, "inv").type == vec(bool_, 8)


def k_bitwise(a, b, c):
    bits = (a & b) | (a ^ b)
    sh = c << a
    neg = -c
    flags = (a > 0) & (b > 0)


def test_bitwise_shift_and_negation_types():
    f = build(k_bitwise, a=i32, b=u32, c=u8)
    assert value(f, "bits").type == u32
    assert value(f, "sh").type == i32                  # promoted type of the left operand
    assert value(f, "neg").type == i32 and value(f, "neg").defining_op.opcode == "neg"
    assert value(f, "flags").type == bool_


def k_float_bitwise(x):
    y = x & 1


def test_bitwise_on_floats_is_an_error():
    err = error(k_float_bitwise, x=f32)
    assert_error_at(err, k_float_bitwise, "x & 1", "bitwise '&' needs integer or bool operands")


def k_ternary(a, x):
    v = cm.load(x, 0, 8)
    s = 1.0 if a > 0 else 2.0
    w = v if a > 0 else -v
    e = v if v > 0 else 0.0


def test_conditional_expression_selects():
    f = build(k_ternary, a=i32, x=PF)
    assert value(f, "s").defining_op.opcode == "select" and value(f, "s").type == f32
    assert value(f, "w").defining_op.opcode == "select"
    sel = value(f, "e").defining_op
    assert sel.opcode == "select" and sel.operands[0].type == vec(bool_, 8)


# --- subscripts -----------------------------------------------------------------------------

def k_vector_reads(x, i):
    v = cm.load(x, 0, 16)
    a = v[3]
    b = v[-1]
    c = v[i]
    d = v[2:10:2]
    e = v[8:]
    r = v[::-1]


def test_vector_subscripts():
    f = build(k_vector_reads, x=PF, i=i32)
    assert value(f, "a").defining_op.attrs == {"index": 3}
    assert value(f, "b").defining_op.attrs == {"index": 15}
    c = value(f, "c").defining_op
    assert c.opcode == "extract" and c.attrs == {"index": 0} and c.operands[1].hint == "i"
    d = value(f, "d").defining_op
    assert d.opcode == "rdregion" and d.results[0].type == vec(f32, 4)
    assert d.attrs == dict(offset=2, vsize=1, vstride=0, hsize=4, hstride=2)
    assert value(f, "e").defining_op.attrs == dict(offset=8, vsize=1, vstride=0, hsize=8, hstride=1)
    assert value(f, "r").defining_op.attrs == dict(offset=15, vsize=1, vstride=0, hsize=16, hstride=-1)


def k_matrix_reads(x, i, j):
    m = cm.load(x, 0, (8, 16), 16)
    row = m[2]
    drow = m[i]
    s = m[1, 2]
    ds = m[i, j]
    sub = m[0:4, 0:16:2]
    col = m[:, 3]
    part = m[i, 4:8]
    r2 = m.row(5)
    c2 = m.column(j)


def test_matrix_subscripts():
    f = build(k_matrix_reads, x=PF, i=i32, j=i32)
    row = value(f, "row").defining_op
    assert row.attrs == dict(offset=32, vsize=1, vstride=0, hsize=16, hstride=1)
    assert row.results[0].type == vec(f32, 16)
    drow = value(f, "drow").defining_op
    assert drow.attrs["offset"] == 0 and len(drow.operands) == 2
    dyn = drow.operands[1].defining_op                     # i * 16
    assert dyn.opcode == "mul" and dyn.operands[0].hint == "i"
    assert value(f, "s").defining_op.attrs == {"index": 18}
    ds = value(f, "ds").defining_op
    assert ds.opcode == "extract" and ds.operands[1].defining_op.opcode == "add"
    sub = value(f, "sub").defining_op
    assert sub.attrs == dict(offset=0, vsize=4, vstride=16, hsize=8, hstride=2)
    assert sub.results[0].type == mat(f32, 4, 8)
    col = value(f, "col").defining_op
    assert col.attrs == dict(offset=3, vsize=8, vstride=16, hsize=1, hstride=1)
    assert col.results[0].type == vec(f32, 8)
    part = value(f, "part").defining_op
    assert part.attrs == dict(offset=4, vsize=1, vstride=0, hsize=4, hstride=1)
    assert value(f, "r2").defining_op.attrs["offset"] == 80
    assert value(f, "c2").type == vec(f32, 8)


def k_region_oob(x):
    v = cm.load(x, 0, 16)
    w = v[8:24]


def k_index_oob(x):
    m = cm.load(x, 0, (4, 4), 4)
    w = m[4]


def k_runtime_slice(x, n, m):
    v = cm.load(x, 0, 16)
    w = v[n:n + m]


def test_region_errors():
    err = error(k_region_oob, x=PF)
    assert_error_at(err, k_region_oob, "v[8:24]", "region [8:24:1] out of bounds for vector<f32, 16>")
    err = error(k_index_oob, x=PF)
    assert_error_at(err, k_index_oob, "m[4]", "index 4 out of bounds for matrix<f32, 4, 4>")
    err = error(k_runtime_slice, x=PF, n=i32, m=i32)
    assert_error_at(err, k_runtime_slice, "n:n + m", "a slice with a run-time start needs the stop written "
                    "as start + n with n a compile-time integer")


def k_region_writes(x, i, s):
    v = cm.load(x, 0, 16)
    w = cm.load(x, 16, 4)
    v[2:10:2] = w
    v[3] = s
    v[i] = 1.0
    v[0:4] += 1
    m = cm.load(x, 0, (4, 8), 8)
    m[i] = 0.0
    m[1:3, 0:2] = cm.zeros(matrix[f32, 2, 2])
    cm.store(x, 0, v)


def test_region_writes_rebind_the_variable():
    f = build(k_region_writes, x=PF, i=i32, s=i32)
    wr = ops_named(f, "wrregion")
    assert wr[0].attrs == dict(offset=2, vsize=1, vstride=0, hsize=4, hstride=2)
    ins = ops_named(f, "insert")
    assert ins[0].attrs == {"index": 3} and ins[0].operands[1].defining_op.opcode == "convert"
    assert ins[1].attrs == {"index": 0} and ins[1].operands[2].hint == "i"
    # v[0:4] += 1: read, add, write back
    assert wr[1].operands[1].defining_op.opcode == "add"
    assert wr[1].operands[1].defining_op.operands[0].defining_op.opcode == "rdregion"
    assert wr[2].operands[1].defining_op.opcode == "const" and len(wr[2].operands) == 3
    assert wr[3].attrs == dict(offset=8, vsize=2, vstride=8, hsize=2, hstride=1)
    assert stored(f) is wr[1].results[0] and stored(f).hint == "v"


def k_write_shape_mismatch(x):
    v = cm.load(x, 0, 16)
    v[0:4] = cm.load(x, 0, 8)


def test_region_write_shape_mismatch():
    err = error(k_write_shape_mismatch, x=PF)
    assert_error_at(err, k_write_shape_mismatch, "v[0:4]", "vector<f32, 8>", "vector<f32, 4>")


# --- register methods -------------------------------------------------------------------

def k_methods(x, off, i):
    v = cm.load(x, 0, 16)
    a = v.astype(cm.f16)
    b = v.format(cm.u8)
    c = v.format(cm.i32, 4, 4)
    d = v.select(4, 2, 1)
    e = v.select(4, 1, off)
    m = cm.load(x, 0, (8, 8), 8)
    g = m.select(2, 2, 4, 1, 1, 2)
    h = m.select(2, 1, 2, 1, i, 0)
    r = v.replicate(2, 0, 4)
    idx = cm.iota(cm.i32, 8, 15, -2)
    j = v.iselect(idx)
    n = v.size + len(v.shape)
    s = cm.sat(v.astype(cm.u8))
    mk = v > 0
    an = mk.any()
    al = mk.all()
    cm.store(x, 0, v * n)


def test_register_methods():
    f = build(k_methods, x=PF, off=i32, i=i32)
    assert value(f, "a").defining_op.attrs == {"sat": False} and value(f, "a").type == vec(f16, 16)
    assert value(f, "b").defining_op.opcode == "bitcast" and value(f, "b").type == vec(u8, 64)
    assert value(f, "c").type == mat(i32, 4, 4)
    assert value(f, "d").defining_op.attrs == dict(offset=1, vsize=1, vstride=0, hsize=4, hstride=2)
    e = value(f, "e").defining_op
    assert e.attrs["offset"] == 0 and e.operands[1].hint == "off"
    assert value(f, "g").defining_op.attrs == dict(offset=10, vsize=2, vstride=16, hsize=4, hstride=1)
    assert value(f, "g").type == mat(f32, 2, 4)
    assert len(value(f, "h").defining_op.operands) == 2
    assert value(f, "r").defining_op.attrs == dict(offset=0, vsize=2, vstride=0, hsize=4, hstride=1)
    assert value(f, "idx").defining_op.attrs == {"value": (15, 13, 11, 9, 7, 5, 3, 1)}
    assert value(f, "j").defining_op.opcode == "iselect" and value(f, "j").type == vec(f32, 8)
    s = value(f, "s").defining_op
    assert s.opcode == "convert" and s.attrs == {"sat": True} and s.results[0].type == vec(u8, 16)
    assert value(f, "an").defining_op.attrs == {"kind": "or", "axis": None}
    assert value(f, "al").defining_op.attrs == {"kind": "and", "axis": None}
    assert value(f, "al").type == bool_
    assert stored(f).defining_op.operands[1].defining_op.attrs == {"value": 17.0}   # v.size + 1


def k_bad_format(x):
    v = cm.load(x, 0, 3)
    w = v.format(cm.f64)


def k_bad_select(x):
    v = cm.load(x, 0, 16)
    w = v.select(8, 2, 2)


def k_bad_sat(x):
    v = cm.load(x, 0, 16)
    w = cm.sat(v + 1)


def test_method_errors():
    assert_error_at(error(k_bad_format, x=PF), k_bad_format, "v.format", "cannot format vector<f32, 3>")
    assert_error_at(error(k_bad_select, x=PF), k_bad_select, "v.select",
                    "region select(8, 2, 2) out of bounds for vector<f32, 16>")
    # cm.sat of a float value clamps to [0, 1]; of an integer value it needs the conversion
    assert_error_at(error(k_bad_sat, x=PI), k_bad_sat, "cm.sat", "cm.sat() takes a conversion")


# --- builtins -------------------------------------------------------------------------------

def k_cross_lane(x, k):
    v = cm.load(x, 0, 8)
    a = cm.shuffle_xor(v, 1)
    b = cm.shuffle_xor(v, k)
    c = cm.rotate(v, 3)
    d = cm.broadcast(v, 2)
    e = cm.broadcast(v, k)
    g = cm.shuffle(v, (7, 6, 5, 4, 3, 2, 1, 0))
    h = cm.merge(v, 0.0, v > 1)


def test_cross_lane_builtins():
    f = build(k_cross_lane, x=PF, k=i32)
    a = value(f, "a").defining_op
    assert a.opcode == "iselect" and a.operands[1].defining_op.attrs == {"value": (1, 0, 3, 2, 5, 4, 7, 6)}
    b = value(f, "b").defining_op
    assert b.opcode == "iselect" and b.operands[1].defining_op.opcode == "xor"
    c = value(f, "c").defining_op
    assert c.operands[1].defining_op.attrs == {"value": (3, 4, 5, 6, 7, 0, 1, 2)}
    assert value(f, "d").defining_op.attrs == dict(offset=2, vsize=1, vstride=0, hsize=8, hstride=0)
    e = value(f, "e").defining_op
    assert e.opcode == "splat" and e.operands[0].defining_op.opcode == "extract"
    assert value(f, "g").defining_op.operands[1].defining_op.attrs["value"] == (7, 6, 5, 4, 3, 2, 1, 0)
    h = value(f, "h").defining_op
    assert h.opcode == "select" and h.operands[0].type == vec(bool_, 8)
    assert h.operands[2].defining_op.attrs == {"value": 0.0}


def k_reductions(x, y):
    v = cm.load(x, 0, 16)
    m = cm.load(x, 0, (4, 4), 4)
    s = cm.reduce_sum(v)
    cols = cm.reduce_max(m, axis=0)
    rows = cm.reduce_min(m, 1)
    p = cm.reduce_prod(v)
    b = cm.load(y, 0, 8)
    bs = cm.reduce_sum(b)


def test_reductions():
    f = build(k_reductions, x=PF, y=ptr[u8])
    assert value(f, "s").defining_op.attrs == {"kind": "add", "axis": None} and value(f, "s").type == f32
    assert value(f, "cols").defining_op.attrs == {"kind": "max", "axis": 0}
    assert value(f, "cols").type == vec(f32, 4)
    assert value(f, "rows").defining_op.attrs == {"kind": "min", "axis": 1}
    assert value(f, "p").defining_op.attrs["kind"] == "mul"
    assert value(f, "bs").type == i32                     # u8 sums as i32


def k_reduce_axis_on_vector(x):
    v = cm.load(x, 0, 16)
    s = cm.reduce_sum(v, axis=0)


def test_reduce_axis_needs_a_matrix():
    err = error(k_reduce_axis_on_vector, x=PF)
    assert_error_at(err, k_reduce_axis_on_vector, "cm.reduce_sum", "axis is only valid for matrices")


def k_math(x, n, a):
    v = cm.load(x, 0, 8)
    e = cm.exp(v)
    si = cm.sqrt(n)
    mx = cm.max(v, 0.0)
    mn = min(a, n)
    ab = abs(n)
    fm = cm.fma(v, v, 1)
    pw = cm.pow(v, 2)
    iv = int(a)
    fl = float(n)
    c = cm.exp(0.0) + cm.floor(2.5)


def test_math_builtins():
    f = build(k_math, x=PF, n=i32, a=f32)
    assert value(f, "e").defining_op.opcode == "exp" and value(f, "e").type == vec(f32, 8)
    si = value(f, "si").defining_op
    assert si.opcode == "sqrt" and si.operands[0].defining_op.opcode == "convert"    # i32 -> f32
    assert value(f, "mx").defining_op.opcode == "max"
    assert value(f, "mn").defining_op.opcode == "min" and value(f, "mn").type == f32
    assert value(f, "ab").defining_op.opcode == "abs" and value(f, "ab").type == i32
    assert value(f, "fm").defining_op.opcode == "fma"
    assert value(f, "pw").defining_op.opcode == "pow"
    assert value(f, "iv").defining_op.opcode == "convert" and value(f, "iv").type == i32
    assert value(f, "fl").type == f32
    assert "c" not in [r.hint for op in f.walk() for r in op.results]     # 1.0 + 2.0 folded


def k_dpas(x, y):
    a = cm.load(x, 0, (8, 16), 16)
    b = cm.load(x, 0, (16, 8), 8)
    acc = cm.zeros(matrix[f32, 8, 8])
    acc = cm.dpas(acc, a, b)
    bad = cm.dpas(acc, b, b)


def test_dpas_shapes():
    err = error(k_dpas, x=ptr[f16], y=PF)
    assert_error_at(err, k_dpas, "cm.dpas(acc, b, b)", "cm.dpas: shapes do not match", "matrix<f16, 16, 8>")


def k_construct(x, s):
    a = vector[f32, 4](1, 2, 3, 4)
    b = vector[i32, 4](s, 1, s, 2)
    c = vector[f32, 16](s)
    d = cm.full(vector[f32, 8], s)
    e = cm.full(matrix[f32, 2, 2], 1.5)
    g = cm.f16(2.5)
    g64 = np.float64(s)
    h = cm.u8(s)
    i = matrix[i32, 2, 2](b)
    z = cm.zeros(vector[bool_, 4])


def test_register_construction():
    f = build(k_construct, x=PF, s=i32)
    assert value(f, "a").defining_op.attrs == {"value": (1.0, 2.0, 3.0, 4.0)}
    assert value(f, "b").defining_op.opcode == "build" and value(f, "b").type == vec(i32, 4)
    c = value(f, "c").defining_op
    assert c.opcode == "splat" and c.operands[0].defining_op.opcode == "convert"
    assert value(f, "d").defining_op.opcode == "splat"
    assert value(f, "e").defining_op.attrs == {"value": 1.5} and value(f, "e").type == mat(f32, 2, 2)
    assert value(f, "g").defining_op.attrs == {"value": 2.5} and value(f, "g").type == f16
    assert value(f, "g64").type == f64
    assert value(f, "h").defining_op.opcode == "convert" and value(f, "h").type == u8
    assert value(f, "i").defining_op.opcode == "bitcast" and value(f, "i").type == mat(i32, 2, 2)
    assert value(f, "z").defining_op.attrs == {"value": False}


# --- memory ---------------------------------------------------------------------------------

def k_memory(x, y, off, cnt):
    v = cm.load(x, off, 16)
    m = cm.load(x, 0, (4, 8), 32)
    cm.store(x, 64, m, 32)
    idx = cm.iota(cm.i32, 16) * 2
    g = cm.gather(x, idx, v > 0)
    cm.scatter(x, idx, 1.0)
    old = cm.atomic_add(cnt, idx, 1)
    one = cm.atomic_max(cnt, 0, 5)
    sw = cm.atomic_cmpxchg(cnt, idx, 0, 1)
    h = cm.load(y, 0, 16)
    cm.store(x, 0, h)
    cm.store(x, off, 2)


def test_memory_builtins():
    f = build(k_memory, x=PF, y=ptr[f16], off=u16, cnt=PI)
    load = value(f, "v").defining_op
    assert load.operands[1].defining_op.opcode == "convert" and load.operands[1].type == i32
    assert value(f, "m").defining_op.opcode == "load2d" and value(f, "m").type == mat(f32, 4, 8)
    st2 = ops_named(f, "store2d")[0]
    assert [o.type for o in st2.operands] == [PF, i32, i32, mat(f32, 4, 8)]
    g = value(f, "g").defining_op
    assert g.opcode == "gather" and len(g.operands) == 3 and g.operands[2].type == vec(bool_, 16)
    sc = ops_named(f, "scatter")[0]
    assert sc.operands[2].defining_op.attrs == {"value": 1.0}
    assert sc.operands[2].type == vec(f32, 16)
    assert value(f, "old").defining_op.attrs == {"kind": "add"} and value(f, "old").type == vec(i32, 16)
    assert value(f, "one").type == i32
    sw = value(f, "sw").defining_op
    assert sw.attrs == {"kind": "cmpxchg"} and len(sw.operands) == 4
    assert stored(f, -2).defining_op.opcode == "convert"        # f16 -> f32 is lossless
    assert stored(f, -1).defining_op.attrs == {"value": 2.0}


def k_lossy_store(x, y):
    v = cm.load(x, 0, 16)
    cm.store(y, 0, v)


def test_lossy_store_needs_astype():
    err = error(k_lossy_store, x=PF, y=ptr[f16])
    assert_error_at(err, k_lossy_store, "cm.store", "cannot store vector<f32, 16> into memory of f16",
                    ".astype(cm.f16)")


def k_slm(x):
    s = cm.slm(cm.f32, 64)
    v = cm.load(x, 0, 16)
    cm.store(s, cm.local_id(0) * 16, v)
    cm.barrier()
    cm.fence()
    w = cm.load(s, 0, 16)
    cm.store(x, cm.group_id(1) + cm.group_count(2) + cm.local_size(0), w)


def k_slm_in_branch(x, n):
    if n > 0:
        s = cm.slm(cm.f32, 64)


def k_bad_dim(x):
    t = cm.thread_id(3)


def test_slm_barrier_ids():
    f = build(k_slm, x=PF)
    s = value(f, "s")
    assert s.type == PtrType(f32, "local") and s.defining_op.attrs == {"n": 64}
    assert "barrier" in opcodes(f) and "fence" in opcodes(f)
    assert_error_at(error(k_slm_in_branch, x=PF, n=i32), k_slm_in_branch, "cm.slm",
                    "cm.slm can only be called at the top level of the kernel body")
    assert_error_at(error(k_bad_dim, x=PF), k_bad_dim, "cm.thread_id",
                    "the dimension of cm.thread_id must be in 0..2, got 3")


# --- control flow ---------------------------------------------------------------------------

def k_constexpr_if(x, MODE):
    v = cm.load(x, 0, 16)
    if MODE == 1:
        v = cm.exp(v)
    elif MODE == 2:
        v = cm.log(v)
    else:
        v = v * 2
    cm.store(x, 0, v)


def test_constexpr_if_compiles_only_the_taken_branch():
    def non_const(f):
        return [o for o in opcodes(f) if o != "const"]
    assert non_const(build(k_constexpr_if, dict(MODE=1), x=PF)) == ["load", "exp", "store", "return"]
    assert non_const(build(k_constexpr_if, dict(MODE=2), x=PF)) == ["load", "log", "store", "return"]
    assert "if" not in opcodes(build(k_constexpr_if, dict(MODE=3), x=PF))


def k_runtime_if(x, n):
    v = cm.load(x, 0, 8)
    s = 0
    if n > 0:
        v = v + 1
        s = 1.5
        t = 2
    else:
        t = 3
    cm.store(x, 0, v * s + t)


def test_runtime_if_yields_changed_variables():
    f = build(k_runtime_if, x=PF, n=i32)
    (op,) = ops_named(f, "if")
    assert [r.hint for r in op.results] == ["v", "s", "t"]
    assert [r.type for r in op.results] == [vec(f32, 8), f32, i32]
    then_yield, else_yield = (b.ops[-1] for b in op.blocks)
    assert then_yield.opcode == else_yield.opcode == "yield"
    assert else_yield.operands[0].hint == "v"                     # unchanged in else: the old v
    assert else_yield.operands[1].defining_op.attrs == {"value": 0.0}   # weak 0 as f32
    assert op.operands[0].defining_op.attrs == {"pred": "gt"}


def k_int_condition(x, n):
    if n:
        cm.store(x, 0, 1.0)


def test_int_condition_compares_with_zero():
    f = build(k_int_condition, x=PF, n=i32)
    cond = ops_named(f, "if")[0].operands[0].defining_op
    assert cond.opcode == "cmp" and cond.attrs == {"pred": "ne"}
    assert ops_named(f, "if")[0].results == []


def k_one_branch_var(x, n):
    if n > 0:
        y = 1.0
    cm.store(x, 0, y)


def k_branch_type_mismatch(x, n):
    v = cm.load(x, 0, 8)
    if n > 0:
        v = v.astype(cm.f16)
    cm.store(x, 0, v)


def k_mask_condition(x):
    v = cm.load(x, 0, 8)
    if v > 0:
        v = v * 2


def test_if_errors():
    assert_error_at(error(k_one_branch_var, x=PF, n=i32), k_one_branch_var, "y)",
                    "variable 'y' is defined in only one branch of the if at line")
    # a name with different types on the two paths is an error only where it is read after the if
    assert_error_at(error(k_branch_type_mismatch, x=PF, n=i32), k_branch_type_mismatch, "v)",
                    "variable 'v' has type vector<f16, 8> on one path and vector<f32, 8> on the other "
                    "(the if at line")
    assert_error_at(error(k_mask_condition, x=PF), k_mask_condition, "v > 0",
                    "the condition is a vector<bool, 8> mask; use mask.any() or mask.all()")


def k_early_return(x, n):
    if cm.thread_id(0) >= n:
        return
    v = cm.load(x, 0, 16)
    cm.store(x, 0, v + 1)


def test_early_return_puts_the_rest_in_the_else_branch():
    f = build(k_early_return, x=PF, n=i32)
    assert [op.opcode for op in f.body.ops] == ["thread_id", "cmp", "if", "return"]
    op = f.body.ops[2]
    assert [o.opcode for o in op.blocks[0].ops] == ["yield"]
    assert [o.opcode for o in op.blocks[1].ops] == ["const", "load", "const", "add", "const", "store", "yield"]


def k_nested_return(x, a, b):
    if a > 0:
        if b > 0:
            return
        cm.store(x, 0, 1.0)
    cm.store(x, 1, 2.0)


def test_nested_early_return_copies_the_rest():
    f = build(k_nested_return, x=PF, a=i32, b=i32)
    outer = f.body.ops[-2]
    inner = [o for o in outer.blocks[0].ops if o.opcode == "if"][0]
    assert [o.opcode for o in inner.blocks[1].ops] == ["const", "const", "store", "const", "const", "store",
                                                       "yield"]
    assert [o.opcode for o in outer.blocks[1].ops] == ["const", "const", "store", "yield"]


def k_for_loop(x, n):
    acc = cm.zeros(vector[f32, 16])
    s = 0
    for i in range(n):
        v = cm.load(x, i * 16, 16)
        acc += v
        s += cm.reduce_sum(v)
    cm.store(x, 0, acc * s)


def test_for_loop_carries_values_and_infers_weak_types():
    f = build(k_for_loop, x=PF, n=i32)
    (op,) = ops_named(f, "for")
    lo, hi, step, *init = op.operands
    assert lo.defining_op.attrs == {"value": 0} and hi.hint == "n" and step.defining_op.attrs == {"value": 1}
    assert [v.type for v in init] == [vec(f32, 16), f32]                # s = 0 became f32 (trial build)
    assert [a.hint for a in op.blocks[0].args] == ["i", "acc", "s"]
    assert [r.hint for r in op.results] == ["acc", "s"]
    assert op.blocks[0].ops[-1].opcode == "yield"
    text = print_function(f)
    assert "%acc.4: vector<f32, 16>, %s.5: f32 = for %1, %n, %2, %acc.0, %3 {\n" in text
    assert "  ^(%i.6: i32, %acc.7: vector<f32, 16>, %s.8: f32):\n" in text
    assert "    yield %acc.12, %s.14\n" in text


def k_negative_step(x, n):
    t = 0
    for i in range(n, 0, -2):
        t += i
    cm.store(x, 0, t.astype(cm.f32))


def test_for_loop_negative_constant_step():
    f = build(k_negative_step, x=PF, n=i32)
    op = ops_named(f, "for")[0]
    assert op.operands[2].defining_op.attrs == {"value": -2}
    assert op.results[0].type == i32


def k_loop_type_change(x, n):
    acc = cm.zeros(vector[f32, 8])
    for i in range(n):
        acc = acc.astype(cm.f16)


def k_loop_var_after(x, n):
    for i in range(n):
        y = i * 2
    cm.store(x, 0, y)


def k_return_in_loop(x, n):
    for i in range(n):
        if i > 3:
            return


def test_loop_errors():
    assert_error_at(error(k_loop_type_change, x=PF, n=i32), k_loop_type_change, "for i",
                    "variable 'acc' has type vector<f32, 8> before the loop and vector<f16, 8> after")
    assert_error_at(error(k_loop_var_after, x=PI, n=i32), k_loop_var_after, "y)",
                    "variable 'y' is assigned inside the loop")
    assert_error_at(error(k_return_in_loop, x=PF, n=i32), k_return_in_loop, "return",
                    "return inside a loop is not supported")


def k_static_range(x, K):
    v = cm.load(x, 0, 16)
    acc = 0.0
    for k in cm.static_range(K):
        acc += v[k * 2]
    for j in cm.static_range(1, 7, 3):
        v[j] = acc
    for w in (1, 2.5):
        acc *= w
    cm.store(x, 0, v * acc)


def test_static_range_unrolls():
    f = build(k_static_range, dict(K=4), x=PF)
    assert "for" not in opcodes(f)
    assert [op.attrs["index"] for op in ops_named(f, "extract")] == [0, 2, 4, 6]
    assert [op.attrs["index"] for op in ops_named(f, "insert")] == [1, 4]
    assert len(ops_named(f, "mul")) == 3


def k_while(x, n):
    i = 0
    total = 0.0
    while i < n:
        total += 0.5
        i += 1
    cm.store(x, 0, total)


def test_while_loop():
    f = build(k_while, x=PF, n=i32)
    (op,) = ops_named(f, "while")
    assert [v.type for v in op.operands] == [i32, f32]
    before, after = op.blocks
    assert [a.hint for a in before.args] == ["i", "total"] == [a.hint for a in after.args]
    assert before.ops[-1].opcode == "condition" and before.ops[-1].operands[0].defining_op.attrs == {"pred": "lt"}
    assert after.ops[-1].opcode == "yield"
    assert stored(f) is op.results[1]


def k_nested_loops(x, n, m):
    total = 0
    for i in range(n):
        row = 0
        for j in range(m):
            row += x[0] if False else j
        total += row
    cm.store(x, 0, total)


def test_nested_loops_carry_their_own_variables():
    f = build(k_nested_loops, x=PI, n=i32, m=i32)
    outer, inner = ops_named(f, "for")
    assert [r.hint for r in outer.results] == ["total"]
    assert [r.hint for r in inner.results] == ["row"]


# --- @cm.func ----------------------------------------------------------------------------

@cm.func
def axpy(a, x, y=1.0):
    return a * x + y


@cm.func
def min_max(v):
    return cm.reduce_min(v), cm.reduce_max(v)


@cm.func
def scaled(v, K: cm.constexpr):
    for k in cm.static_range(K):
        v = v * 2
    return v


@cm.func
def clamp_sign(s):
    if s < 0:
        return 0.0
    return s


@cm.func
def typed_param(n: cm.f32):
    return n


def k_funcs(x, a, n):
    v = cm.load(x, 0, 8)
    w = axpy(a, v)
    u = axpy(a, v, y=v)
    lo, hi = min_max(v)
    z = scaled(v, 2)
    c = clamp_sign(a)
    t = typed_param(n)
    cm.store(x, 0, w + u + lo + hi + z + c + t)


def test_funcs_are_inlined():
    f = build(k_funcs, x=PF, a=f32, n=i32)
    assert "call" not in opcodes(f)
    w = value(f, "w").defining_op
    assert w.opcode == "add" and w.operands[1].defining_op.attrs == {"value": 1.0}    # default y
    mul = w.operands[0].defining_op
    assert (mul.loc.line, mul.loc.col) == where(axpy.fn, "a * x")              # callee's location
    assert value(f, "u").defining_op.operands[1].hint == "v"
    assert value(f, "lo").defining_op.attrs["kind"] == "min"
    assert value(f, "hi").defining_op.attrs["kind"] == "max"
    assert opcodes(f).count("mul") == 4                                       # 2 axpy + 2 unrolled
    (op,) = ops_named(f, "if")                                                 # clamp_sign's return
    assert op.results[0].type == f32
    t = stored(f).defining_op.operands[1].defining_op.operands[0]            # ... + splat(t)
    assert t.defining_op.opcode == "convert" and t.type == f32 and t.defining_op.operands[0].hint == "n"


@cm.func
def recursive(n):
    return recursive(n)


def k_recursive(x):
    y = recursive(1)


def k_func_arity(x):
    y = axpy(1.0)


def k_func_constexpr(x, n):
    y = scaled(x, n)


def test_func_errors():
    assert_error_at(error(k_recursive, x=PF), recursive.fn, "recursive(n)",
                    "recursive call to cm.func 'recursive' is not supported")
    assert_error_at(error(k_func_arity, x=PF), k_func_arity, "axpy(1.0)",
                    "cm.func 'axpy': missing a required argument: 'x'")
    assert_error_at(error(k_func_constexpr, x=PF, n=i32), k_func_constexpr, "scaled(x, n)",
                    "argument 'K' of cm.func 'scaled' must be a compile-time constant")


# --- debugging ops -----------------------------------------------------------------------------

def k_print(x, n):
    v = cm.load(x, 0, 4)
    print("n =", n, "v", v, 3)
    print(f"sum {cm.reduce_sum(v)} of {{v}}")
    print((n, 2), sep=";")
    breakpoint()


def test_print_and_breakpoint():
    f = build(k_print, x=PF, n=i32)
    p1, p2, p3 = ops_named(f, "print")
    assert p1.attrs == {"fmt": "n = {} v {} 3"} and [o.hint for o in p1.operands] == ["n", "v"]
    assert p2.attrs == {"fmt": "sum {} of {{v}}"}
    assert p3.attrs == {"fmt": "({}, 2)"}
    assert "breakpoint" in opcodes(f)


# --- error messages for unsupported Python -------------------------------------------------

def k_with(x):
    with open("f"):
        pass


def k_try(x):
    try:
        pass
    except Exception:
        pass


def k_lambda(x):
    f = lambda a: a


def k_listcomp(x):
    squares = [e * e for e in (1, 2)]


def k_class(x):
    class A:
        pass


def k_global(x):
    global GLOBAL_N


def plain_python(a):
    return a


def k_python_call(x):
    y = plain_python(1)


def k_unknown_attribute(x):
    y = plain_python.__name__


def k_string(x):
    s = "hello"


def k_undefined(x):
    y = foo + 1


def k_return_value(x):
    return 1


def k_builtin_arity(x):
    v = cm.load(x, 0)


def k_builtin_keyword(x):
    v = cm.load(x, 0, 16, stride=2)


def k_not_a_pointer(x):
    v = cm.load(x, 0, 16)


def k_store_matrix_pitch_vector(x):
    cm.store(x, 0, cm.zeros(vector[f32, 8]), 4)


@pytest.mark.parametrize("kernel,snippet,message", [
    (k_with, "with", "unsupported Python construct: with statement"),
    (k_try, "try", "unsupported Python construct: try statement"),
    (k_lambda, "lambda", "unsupported Python construct: lambda"),
    (k_listcomp, "[e * e", "unsupported Python construct: list comprehension"),
    (k_class, "class A", "unsupported Python construct: class definition"),
    (k_global, "global", "unsupported Python construct: global statement"),
    (k_python_call, "plain_python(1)",
     "unsupported Python construct: call to non-kernel Python function 'plain_python'"),
    (k_unknown_attribute, "plain_python.__name__",
     "unsupported Python construct: attribute '__name__' of plain_python"),
    (k_string, '"hello"', "unsupported Python construct: string outside print()"),
    (k_undefined, "foo", "name 'foo' is not defined"),
    (k_return_value, "1", "a kernel cannot return a value"),
    (k_builtin_arity, "cm.load", "cm.load expects 3 to 4 arguments (p, offset, shape, pitch), got 2"),
    (k_builtin_keyword, "cm.load", "cm.load: got an unexpected keyword argument 'stride'"),
    (k_not_a_pointer, "cm.load", "cm.load: the first argument must be a pointer"),
])
def test_error_messages_and_locations(kernel, snippet, message):
    x_type = i32 if kernel is k_not_a_pointer else PF
    params = {"x": x_type}
    if "n" in inspect.signature(kernel).parameters:
        params["n"] = i32
    err = error(kernel, **params)
    assert_error_at(err, kernel, snippet, message)
    assert f"{__file__}:{err.loc.line}:{err.loc.col + 1}: {message}" in str(err)


def test_errors_show_the_source_line():
    err = error(k_undefined, x=PF)
    assert "    y = foo + 1\n" in str(err) and str(err).rstrip().endswith("^")


def test_pitch_needs_a_matrix():
    err = error(k_store_matrix_pitch_vector, x=PF)
    assert_error_at(err, k_store_matrix_pitch_vector, "cm.store", "cm.store with a pitch stores a matrix")


def test_builtins_raise_on_the_host():
    with pytest.raises(RuntimeError, match=r"cm.load can only be used inside a @cm.kernel or @cm.func"):
        cm.load(None, 0, 16)
    with pytest.raises(RuntimeError, match="cm.func 'axpy' can only be called inside"):
        axpy(1, 2)


def test_language_exports_every_builtin():
    from cmlang import language
    for name in ("func", "static_range", "zeros", "full", "iota", "merge", "sat", "shuffle", "shuffle_xor",
                 "rotate", "broadcast", "reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "exp", "exp2",
                 "log", "log2", "sqrt", "rsqrt", "inv", "abs", "min", "max", "fma", "pow", "sin", "cos", "tanh",
                 "floor", "ceil", "dpas", "load", "store", "gather", "scatter", "atomic_add", "atomic_sub",
                 "atomic_min", "atomic_max", "atomic_xchg", "atomic_cmpxchg", "atomic_and", "atomic_or",
                 "atomic_xor", "slm", "barrier", "fence", "thread_id", "group_id", "local_id", "group_count",
                 "local_size"):
        assert name in language.__all__ and getattr(cm, name) is getattr(language, name)


def k_conditional_accumulate(x, n):
    acc = 0.0
    count = 0
    for i in range(n):
        v = cm.load(x, i * 8, 8)
        if i % 2 == 0:
            acc += v
            count += 1
    cm.store(x, 0, acc / count)


def test_trial_build_infers_types_through_branches():
    f = build(k_conditional_accumulate, x=PF, n=i32)
    (op,) = ops_named(f, "for")
    assert [r.hint for r in op.results] == ["acc", "count"]
    assert [r.type for r in op.results] == [vec(f32, 8), i32]        # acc = 0.0 became a register
    assert op.operands[3].defining_op.attrs == {"value": 0.0}
    assert op.operands[3].type == vec(f32, 8)


# --- more language rules ----------------------------------------------------------------------

def k_if_while_text(x, n):
    i = 0
    while i < n:
        i += 2
    if i > 4:
        i = i - 4
    cm.store(x, 0, i)


def test_if_and_while_ir_text():
    f = build(k_if_while_text, x=PI, n=i32)
    assert print_function(f) == f"""\
kernel @k_if_while_text(%x: ptr<i32>, %n: i32) simd=16 file="{__file__}" {{
  %0: i32 = const [value=0]
  %i.1: i32 = while %0 {{
  ^(%i.2: i32):
    %3: bool = cmp %i.2, %n [pred="lt"]
    condition %3, %i.2
  }} do {{
  ^(%i.4: i32):
    %5: i32 = const [value=2]
    %i.6: i32 = add %i.4, %5
    yield %i.6
  }}
  %7: i32 = const [value=4]
  %8: bool = cmp %i.1, %7 [pred="gt"]
  %i.9: i32 = if %8 {{
    %10: i32 = const [value=4]
    %i.11: i32 = sub %i.1, %10
    yield %i.11
  }} else {{
    yield %i.1
  }}
  %12: i32 = const [value=0]
  store %x, %12, %i.9
  return
}}
"""


def test_frontend_output_reads_back_through_the_ir_parser():
    from cmlang.ir.parser import parse_function
    for f in (build(k_for_loop, x=PF, n=i32), build(k_methods, x=PF, off=i32, i=i32),
              build(k_funcs, x=PF, a=f32, n=i32), build(k_memory, x=PF, y=ptr[f16], off=u16, cnt=PI)):
        text = print_function(f)
        assert print_function(parse_function(text)) == text


def k_constant_while(x, N):
    i = 0
    while N > 3:
        i += 1
    cm.store(x, 0, i)
    while N < 3:
        i += 1


def test_while_with_a_constant_condition():
    err = error(k_constant_while, dict(N=1), x=PI)
    assert_error_at(err, k_constant_while, "N < 3", "the while condition is always true")
    f = build(k_constant_while, dict(N=3), x=PI)      # neither loop runs; i stays 0
    assert "while" not in opcodes(f) and stored(f).defining_op.attrs == {"value": 0}


def k_short_circuit(x, N):
    v = cm.load(x, 0, 4)
    if N > 0 and v[N - 1] > 0:
        v = v + 1
    ok = N < 0 or v[N] > 0


def test_constexpr_left_side_short_circuits():
    f = build(k_short_circuit, dict(N=0), x=PF)     # v[N - 1] is never compiled
    assert "if" not in opcodes(f)
    ok = value(f, "ok")
    assert ok.defining_op.opcode == "cmp" and ok.defining_op.operands[0].defining_op.attrs == {"index": 0}


def k_annotated(x, n):
    a: cm.f16 = 1
    b: cm.u8 = n
    assert (1, 2) + (3,) == (1, 2, 3), "tuples concatenate"


def k_static_assert(x):
    assert x is None, "x must be None"


def test_annotated_assignment_and_static_assert():
    f = build(k_annotated, x=PF, n=i32)
    assert value(f, "a").type == f16 and value(f, "a").defining_op.attrs == {"value": 1.0}
    assert value(f, "b").defining_op.opcode == "convert" and value(f, "b").type == u8
    assert_error_at(error(k_static_assert, x=PF), k_static_assert, "x is None", "'is' needs compile-time")


def k_range_outside_for(x):
    r = range(4)


def k_call_kernel(x):
    k_kernel_object(x)


@cm.kernel
def k_kernel_object(x: cm.ptr[cm.f32]):
    pass


def k_call_autotuned(x):
    k_autotuned_object(x)


k_autotuned_object = cm.autotune(configs=[dict(simd=16)])(k_kernel_object)


def test_range_and_kernel_calls_are_errors():
    assert_error_at(error(k_range_outside_for, x=PF), k_range_outside_for, "range(4)",
                    "range() can only be used as the iterable of a for loop")
    assert_error_at(error(k_call_kernel, x=PF), k_call_kernel, "k_kernel_object(x)",
                    "cannot call the kernel 'k_kernel_object' from a kernel")
    # an autotuned kernel is a kernel too (it was 'call to non-kernel Python function')
    assert_error_at(error(k_call_autotuned, x=PF), k_call_autotuned, "k_autotuned_object(x)",
                    "cannot call the kernel 'k_kernel_object' from a kernel")


@cm.func
def uses_unknown(v):
    return v + unknown_name  # noqa: F821


def k_func_error(x):
    y = uses_unknown(x)


def test_errors_inside_funcs_point_into_the_func_and_name_the_call():
    err = error(k_func_error, x=PF)
    assert_error_at(err, uses_unknown.fn, "unknown_name", "name 'unknown_name' is not defined")
    line, col = where(k_func_error, "uses_unknown(x)")
    assert f"(in cm.func 'uses_unknown' called at {__file__}:{line}:{col})" in err.message


def make_nested_kernel():
    def nested(x):
        v = cm.load(x, 0, 16)
        w = v[20]
    return nested


def test_nested_kernel_locations_account_for_indentation():
    fn = make_nested_kernel()
    assert_error_at(error(fn, x=PF), fn, "v[20]", "index 20 out of bounds for vector<f32, 16>")


def test_compile_to_ir_checks_its_arguments():
    with pytest.raises(CompileError, match="has no parameter 'y'"):
        compile_to_ir(k_slm, {"x": PF, "y": PF}, {}, 16)
    with pytest.raises(CompileError, match="kernel parameter 'x' needs a scalar, register or pointer type"):
        compile_to_ir(k_slm, {}, {}, 16)


def test_typing_rules():
    from cmlang.frontend import typing_rules as tr
    assert tr.cast_constant(-56, u8) == 200 and tr.cast_constant(-1, u32) == 2**32 - 1
    with pytest.raises(tr.ConstantRangeError, match="constant 300 does not fit in u8"):
        tr.cast_constant(300, u8)                                   # never wraps silently
    assert tr.cast_constant(-2.7, i32) == -2 and tr.cast_constant(2.7, i32) == 2
    assert tr.cast_constant(0.1, f16) == 0.0999755859375
    assert tr.cast_constant(1.00390625, bf16) == 1.0                  # ties to even
    assert tr.cast_constant(1.01171875, bf16) == 1.015625
    assert tr.is_lossless(u8, i16) and tr.is_lossless(i16, f32) and tr.is_lossless(f16, f32)
    assert not tr.is_lossless(i32, f32) and not tr.is_lossless(i8, u32) and not tr.is_lossless(f32, f16)
    assert tr.default_type(2**40) == i64 and tr.default_type(1.0) == f32 and tr.default_type(True) == bool_
