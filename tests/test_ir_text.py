"""The IR's text form (printer + lark parser) and the verifier."""
import pytest
from hypothesis import given, settings, strategies as st

from cmlang.errors import CompileError
from cmlang.ir.core import Block, Builder, Function, Location
from cmlang.ir.ops import OPS, BINARY, UNARY, IDS
from cmlang.ir import parser as ir_parser
from cmlang.ir.parser import parse_function
from cmlang.ir.printer import print_function
from cmlang.ir.verify import verify_function
from cmlang.types import PtrType, bool_, f16, f32, i32, mat, vec


def new_kernel(*params, name="k", simd=16):
    """A kernel with ``(name, type)`` parameters: returns (fn, builder, param values)."""
    body = Block([t for _, t in params], [n for n, _ in params])
    fn = Function(name, body, [n for n, _ in params], simd=simd)
    return fn, Builder(body), body.args


def const(b, t, value, hint=""):
    v = b.op1("const", [], t, value=value)
    v.hint = hint
    return v


def for_loop(b, lo, hi, step, inits, hints=("i",)):
    """A for op; returns (op, body block) with the builder left outside the body."""
    body = Block([lo.type] + [v.type for v in inits], hints)
    op = b.create("for", [lo, hi, step, *inits], [v.type for v in inits], blocks=[body])
    return op, body


def if_op(b, cond, result_types=()):
    then, other = Block(), Block()
    return b.create("if", [cond], result_types, blocks=[then, other]), then, other


# ---------------------------------------------------------------------------
# Kernels used by several tests

def saxpy_kernel():
    fn, b, (x, y, a, n) = new_kernel(("x", PtrType(f32)), ("y", PtrType(f32)), ("a", f32), ("n", i32),
                                     name="saxpy")
    tid = b.op1("thread_id", [], i32, dim=0)
    base = b.op1("mul", [tid, const(b, i32, 32)], i32)
    vx = b.op1("load", [x, base], vec(f32, 32))
    vx.hint = "vx"
    acc = b.op1("splat", [a], vec(f32, 32))
    acc.hint = "acc"
    loop, body = for_loop(b, const(b, i32, 0), n, const(b, i32, 1), [acc], hints=("i", "acc"))
    with b.at(body):
        b.create("yield", [b.op1("add", [body.args[1], vx], vec(f32, 32))])
    inside = b.op1("cmp", [tid, n], bool_, pred="lt")
    choose, then, other = if_op(b, inside, [f32])
    with b.at(then):
        b.create("yield", [a])
    with b.at(other):
        b.create("yield", [const(b, f32, float("-inf"))])
    b.create("store", [y, base, loop.results[0]])
    b.create("return")
    return fn


SAXPY_TEXT = """\
kernel @saxpy(%x: ptr<f32>, %y: ptr<f32>, %a: f32, %n: i32) simd=16 {
  %0: i32 = thread_id [dim=0]
  %1: i32 = const [value=32]
  %2: i32 = mul %0, %1
  %vx.3: vector<f32, 32> = load %x, %2
  %acc.4: vector<f32, 32> = splat %a
  %5: i32 = const [value=0]
  %6: i32 = const [value=1]
  %7: vector<f32, 32> = for %5, %n, %6, %acc.4 {
  ^(%i.8: i32, %acc.9: vector<f32, 32>):
    %10: vector<f32, 32> = add %acc.9, %vx.3
    yield %10
  }
  %11: bool = cmp %0, %n [pred="lt"]
  %12: f32 = if %11 {
    yield %a
  } else {
    %13: f32 = const [value=-inf]
    yield %13
  }
  store %y, %2, %7
  return
}
"""


def while_kernel():
    fn, b, (n,) = new_kernel(("n", i32), name="count", simd=8)
    fn.constexprs = {"BLOCK": 64, "T": f32, "scale": 0.5}
    fn.source_file = "kern.py"
    b.loc = Location("kern.py", 7, 4)
    loop = b.create("while", [const(b, i32, 0)], [i32], blocks=[Block([i32], ["i"]), Block([i32], ["j"])])
    before, after = loop.blocks
    with b.at(before):
        b.loc = Location("kern.py", 8, 10)
        b.create("condition", [b.op1("cmp", [before.args[0], n], bool_, pred="lt"), before.args[0]])
    with b.at(after):
        b.create("yield", [b.op1("add", [after.args[0], const(b, i32, 1)], i32)])
    b.loc = None
    b.create("print", [loop.results[0]], attrs={"fmt": 'i = "%d"\n'})
    b.create("return")
    return fn


WHILE_TEXT = """\
kernel @count(%n: i32) simd=8 constexprs={BLOCK=64, T=f32, scale=0.5} file="kern.py" {
  %0: i32 = const [value=0] loc("kern.py":7:4)
  %1: i32 = while %0 loc("kern.py":7:4) {
  ^(%i.2: i32):
    %3: bool = cmp %i.2, %n [pred="lt"] loc("kern.py":8:10)
    condition %3, %i.2 loc("kern.py":8:10)
  } do {
  ^(%j.4: i32):
    %5: i32 = const [value=1] loc("kern.py":8:10)
    %6: i32 = add %j.4, %5 loc("kern.py":8:10)
    yield %6 loc("kern.py":8:10)
  }
  print %1 [fmt="i = \\"%d\\"\\n"]
  return
}
"""


def catalogue_kernel():
    """One kernel that uses every opcode of the catalogue, with valid types."""
    fn, b, (p, q, s, n) = new_kernel(("p", PtrType(f32)), ("q", PtrType(i32)), ("s", f32), ("n", i32))
    v8, iv8, bv8, m24 = vec(f32, 8), vec(i32, 8), vec(bool_, 8), mat(f32, 2, 4)
    tid = b.op1("thread_id", [], i32, dim=0)
    for d, name in enumerate(IDS):
        b.op1(name, [], i32, dim=d % 3)
    zero, four = const(b, i32, 0, "zero"), const(b, i32, 4)
    iota = const(b, iv8, tuple(range(8)), "iota")
    x = b.op1("load", [p, tid], v8)
    sp = b.op1("splat", [s], v8)
    quad = b.op1("build", [s, s, s, s], vec(f32, 4))
    for name in BINARY:
        a = iota if name in ("and", "or", "xor", "shl", "shr", "avg", "mulhi") else x
        b.op1(name, [a, a], a.type)
    for name in UNARY:
        a = iota if name in ("not", "cbit", "fbl", "fbh", "lzd") else x
        b.op1(name, [a], a.type)
    b.op1("fma", [x, sp, x], v8)
    mask = b.op1("cmp", [x, sp], bv8, pred="le")
    b.op1("select", [mask, x, sp], v8)
    b.op1("convert", [x], iv8, sat=True)
    m = b.op1("bitcast", [x], m24)
    b.op1("rdregion", [x], vec(f32, 4), offset=1, vsize=1, vstride=0, hsize=4, hstride=2)
    b.op1("wrregion", [x, quad, tid], v8, offset=0, vsize=2, vstride=4, hsize=2, hstride=1)
    b.op1("extract", [x], f32, index=7)
    b.op1("insert", [x, s, tid], v8, index=0)
    b.op1("iselect", [x, iota], v8)
    b.op1("reduce", [x], f32, kind="add", axis=None)
    b.op1("reduce", [m], vec(f32, 4), kind="max", axis=0)
    a16 = const(b, mat(f16, 2, 2), 1.0)
    b16 = const(b, mat(f16, 2, 4), (0.5, -0.0, 1e-3, 2.0, float("inf"), 3.0, 4.0, 5.0))
    b.op1("dpas", [m, a16, b16], m24)
    tile = b.op1("load2d", [p, zero, four], m24)
    b.create("store2d", [p, zero, four, tile])
    block = b.op1("block_load2d", [p, zero, four, four, four, four], m24, transpose=0)
    b.create("block_store2d", [p, zero, four, four, four, four, block])
    b.create("block_prefetch2d", [p, zero, four, four, four, four], attrs={"rows": 2, "cols": 4})
    b.op1("gather", [p, iota, mask], v8)
    b.create("scatter", [p, iota, x])
    b.op1("atomic", [q, iota, iota], iv8, kind="add")
    b.op1("atomic", [q, zero, tid, n], i32, kind="cmpxchg")
    local = b.op1("slm", [], PtrType(f32, "local"), n=64)
    b.create("store", [local, zero, x])
    b.create("barrier")
    b.create("fence")
    b.create("print", [s, tid], attrs={"fmt": "s=%f tid=%d"})
    b.create("breakpoint")
    loop, body = for_loop(b, zero, n, const(b, i32, 1), [x, tid], hints=("i", "acc", "k"))
    with b.at(body):
        b.create("yield", [b.op1("add", [body.args[1], sp], v8), body.args[0]])
    choose, then, other = if_op(b, b.op1("cmp", [tid, n], bool_, pred="eq"))
    with b.at(then):
        b.create("store", [p, tid, s])
        b.create("yield")
    with b.at(other):
        b.create("yield")
    loop = b.create("while", [tid], [i32], blocks=[Block([i32]), Block([i32])])
    with b.at(loop.blocks[0]):
        b.create("condition", [b.op1("cmp", [loop.blocks[0].args[0], n], bool_, pred="ne"),
                               loop.blocks[0].args[0]])
    with b.at(loop.blocks[1]):
        b.create("yield", [loop.blocks[1].args[0]])
    b.create("return")
    return fn


# ---------------------------------------------------------------------------
# Printer

def test_print_saxpy_exact():
    assert print_function(saxpy_kernel()) == SAXPY_TEXT


def test_print_while_with_locs_and_function_attrs_exact():
    assert print_function(while_kernel(), locs=True) == WHILE_TEXT


def test_print_without_locs_drops_them():
    text = print_function(while_kernel())
    assert "loc(" not in text
    assert "  %1: i32 = while %0 {\n" in text


def test_catalogue_kernel_covers_every_opcode_and_verifies():
    fn = catalogue_kernel()
    assert {op.opcode for op in fn.walk()} == set(OPS)
    verify_function(fn)


def test_attribute_spellings():
    fn, b, _ = new_kernel()
    const(b, vec(f32, 4), (float("nan"), -0.0, 1e300, 5e-324))
    const(b, vec(bool_, 2), (True, False))
    b.op1("reduce", [const(b, vec(i32, 4), 3)], i32, kind="min", axis=None)
    b.create("return")
    text = print_function(fn)
    assert "[value=(nan, -0.0, 1e+300, 5e-324)]" in text
    assert "[value=(true, false)]" in text
    assert '[kind="min", axis=none]' in text


def test_attributes_print_in_catalogue_order():
    fn, b, _ = new_kernel()
    src = const(b, vec(f32, 8), 1.0)
    b.create("rdregion", [src], [vec(f32, 2)],
             attrs=dict(hstride=1, hsize=2, vstride=0, vsize=1, offset=3))
    b.create("return")
    assert "[offset=3, vsize=1, vstride=0, hsize=2, hstride=1]" in print_function(fn)


def test_hints_are_sanitized_into_names():
    fn, b, _ = new_kernel()
    for hint in ("a.b", "1x", "ok_name"):
        const(b, i32, 0, hint)
    b.create("return")
    text = print_function(fn)
    assert "%a_b.0: i32" in text and "%_1x.1: i32" in text and "%ok_name.2: i32" in text
    assert [op.results[0].hint for op in parse_function(text).body.ops[:3]] == ["a_b", "_1x", "ok_name"]


# ---------------------------------------------------------------------------
# Parser: print -> parse -> print is the identity

KERNELS = [saxpy_kernel, while_kernel, catalogue_kernel]


@pytest.mark.parametrize("make", KERNELS)
@pytest.mark.parametrize("locs", [False, True])
def test_round_trip_is_identity(make, locs):
    text = print_function(make(), locs=locs)
    assert print_function(parse_function(text), locs=locs) == text


@pytest.mark.parametrize("make", KERNELS)
def test_parse_rebuilds_the_same_structure(make):
    original = make()
    parsed = parse_function(print_function(original, locs=True))
    assert (parsed.name, parsed.simd, parsed.param_names, parsed.source_file) == \
           (original.name, original.simd, original.param_names, original.source_file)
    assert parsed.constexprs == original.constexprs
    for a, b in zip(original.walk(), parsed.walk(), strict=True):
        assert (a.opcode, a.loc, len(a.blocks)) == (b.opcode, b.loc, len(b.blocks))
        assert [r.type for r in a.results] == [r.type for r in b.results]
        assert [v.type for v in a.operands] == [v.type for v in b.operands]
        assert repr(a.attrs) == repr({k: (tuple(v) if isinstance(v, list) else v) for k, v in b.attrs.items()})
    verify_function(parsed)


def test_parse_resolves_names_to_values_and_hints():
    fn = parse_function(SAXPY_TEXT)
    x, y, a, n = fn.params
    assert [p.hint for p in fn.params] == ["x", "y", "a", "n"]
    load = fn.body.ops[3]
    assert load.operands[0] is x and load.operands[1] is fn.body.ops[2].result
    assert load.result.hint == "vx" and fn.body.ops[0].result.hint == ""
    loop = fn.body.ops[7]
    body = loop.blocks[0]
    assert [v.hint for v in body.args] == ["i", "acc"]
    assert body.ops[0].operands == [body.args[1], load.result]
    assert fn.body.ops[-2].operands[2] is loop.results[0]


def test_parse_location_round_trip():
    fn = parse_function(WHILE_TEXT)
    loop = fn.body.ops[1]
    assert loop.loc == Location("kern.py", 7, 4)
    assert loop.blocks[0].ops[1].loc == Location("kern.py", 8, 10)
    assert fn.body.ops[2].loc is None
    assert fn.body.ops[2].attrs["fmt"] == 'i = "%d"\n'


def test_parser_builds_its_lark_instance_once():
    assert ir_parser._lark() is ir_parser._lark()


def test_large_constant_round_trips():
    fn, b, _ = new_kernel()
    const(b, vec(f32, 4096), tuple(i / 7 for i in range(4096)))
    b.create("return")
    text = print_function(fn)
    assert print_function(parse_function(text)) == text
    assert parse_function(text).body.ops[0].attrs["value"][4095] == 4095 / 7


def _same(a, b):
    """Equal values, telling -0.0 from 0.0 and nan equal to nan (like their text)."""
    if isinstance(a, float) and isinstance(b, float):
        return repr(a) == repr(b)
    if isinstance(a, (tuple, list)) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


attr_leaves = st.one_of(st.integers(), st.floats(), st.booleans(), st.none(), st.text(max_size=12))
attr_values = st.recursive(attr_leaves, lambda inner: st.lists(inner, max_size=4).map(tuple), max_leaves=8)


@settings(max_examples=150, deadline=None)
@given(value=attr_values, fmt=st.text(max_size=20), scale=st.floats())
def test_attribute_values_round_trip(value, fmt, scale):
    fn, b, _ = new_kernel(("s", f32))
    fn.constexprs = {"V": value, "scale": scale}
    const(b, f32, value)
    b.create("print", [fn.params[0]], attrs={"fmt": fmt})
    b.create("return")
    text = print_function(fn)
    parsed = parse_function(text)
    assert print_function(parsed) == text
    assert _same(value, parsed.body.ops[0].attrs["value"])
    assert parsed.body.ops[1].attrs["fmt"] == fmt
    assert _same(scale, parsed.constexprs["scale"]) and _same(value, parsed.constexprs["V"])


# ---------------------------------------------------------------------------
# Parser errors name the place and the problem

def _kernel_text(*lines, params=""):
    return f"kernel @k({params}) simd=16 {{\n" + "".join(f"  {line}\n" for line in lines) + "}\n"


@pytest.mark.parametrize("text, message", [
    (_kernel_text("%0: i32 = frobnicate", "return"), "2:13: unknown opcode 'frobnicate'"),
    (_kernel_text("%0: i32 = add %1, %1", "return"), "2:17: undefined value %1"),
    (_kernel_text("%0: vector<f33, 4> = const [value=1]", "return"), "2:14: unknown scalar type 'f33'"),
    (_kernel_text("%0: matrix<f32, 0, 4> = const [value=1]", "return"), "2:19: register dimensions must be positive"),
    (_kernel_text("%0: i32 = const [value=1,]", "return"), "2:28: unexpected ']'"),
    (_kernel_text("%0: i32 = const [value=1] $", "return"), "2:29: unexpected character '$'"),
    (_kernel_text("%0: i32 = const [value=1]", "%0: i32 = const [value=2]", "return"),
     "3:3: value %0 is defined twice"),
    (_kernel_text("%0: i32 = const [value=1, value=2]", "return"), "2:29: attribute value given twice"),
    (_kernel_text("%0: i32 = if %c {", "} elze {", "}", "return", params="%c: bool"),
     "3:5: expected 'else' between the blocks of if, got 'elze'"),
    (_kernel_text("%r.0: i32 = if %c {", "%a.1: i32 = const [value=1]", "yield %a.1", "} else {",
                  "yield %a.1", "}", "return", params="%c: bool"), "6:9: undefined value %a.1"),
    ("kernel @k() simd=16 wat=3 {\n  return\n}\n", "1:21: bad kernel attribute wat=3"),
    ("kernel @k() simd=16 {\n  return\n", "unexpected end of text"),
])
def test_parse_errors(text, message):
    with pytest.raises(ValueError) as info:
        parse_function(text)
    assert message in str(info.value)


def test_parse_error_for_inner_value_used_after_its_block():
    text = SAXPY_TEXT.replace("store %y, %2, %7", "store %y, %2, %10")
    with pytest.raises(ValueError, match=r"^21:17: undefined value %10"):
        parse_function(text)


# ---------------------------------------------------------------------------
# Verifier

def _verify_error(build):
    """Builds a kernel with ``build(b, args)`` (ending in return) and returns the verifier's message."""
    fn, b, args = new_kernel(("p", PtrType(f32)), ("s", f32), ("n", i32))
    build(b, args)
    if not b.block.ops or b.block.ops[-1].opcode != "return":
        b.create("return")
    with pytest.raises(CompileError) as info:
        verify_function(fn)
    return str(info.value)


def _v8(b, value=1.0):
    return const(b, vec(f32, 8), value)


def _iota(b, n=8):
    return const(b, vec(i32, n), tuple(range(n)))


def _uses_later_value(b, args):
    later = b.create("const", [], [i32], {"value": 1})
    b.op1("add", [later.result, later.result], i32)
    b.block.ops.reverse()  # the add now comes before its operand's definition


def _uses_inner_value(b, args):
    loop, body = for_loop(b, args[2], args[2], args[2], [])
    with b.at(body):
        inner = const(b, i32, 0)
        b.create("yield")
    b.op1("add", [inner, inner], i32)


def _for_yields_wrong_type(b, args):
    loop, body = for_loop(b, args[2], args[2], args[2], [args[2]])
    with b.at(body):
        b.create("yield", [args[1]])


def _if_without_yield(b, args):
    choose, then, other = if_op(b, b.op1("cmp", [args[2], args[2]], bool_, pred="eq"))
    with b.at(then):
        b.create("yield")


def _while_with_int_condition(b, args):
    loop = b.create("while", [args[2]], [i32], blocks=[Block([i32]), Block([i32])])
    with b.at(loop.blocks[0]):
        b.create("condition", [args[2], loop.blocks[0].args[0]])
    with b.at(loop.blocks[1]):
        b.create("yield", [loop.blocks[1].args[0]])


VERIFIER_CASES = [
    (lambda b, a: b.create("frob"), "frob: unknown opcode"),
    (lambda b, a: b.op1("thread_id", [], i32), "thread_id: missing attribute dim"),
    (lambda b, a: b.op1("thread_id", [], i32, dim=0, color=1), "thread_id: unknown attribute color"),
    (lambda b, a: b.op1("thread_id", [], i32, dim=3), "dim must be 0, 1 or 2, got 3"),
    (lambda b, a: b.op1("add", [a[1]], f32), "add: expected 2 operands, got 1"),
    (_uses_later_value, "add: operand 0 (unnamed: i32) is not defined before its use"),
    (_uses_inner_value, "add: operand 0 (unnamed: i32) is not defined before its use"),
    (lambda b, a: b.create("yield"), "a terminator must be the last op of its block"),
    (_for_yields_wrong_type, "yield: the for body hands (f32) to for, which expects (i32)"),
    (_if_without_yield, "if: the else block must end in yield, not nothing"),
    (lambda b, a: b.create("if", [a[2]], [], blocks=[Block()]), "if: expected 2 blocks, got 1"),
    (_while_with_int_condition, "the condition must be bool, got i32"),
    (lambda b, a: b.op1("add", [a[1], a[2]], f32), "add: operands must have one type, got (f32, i32)"),
    (lambda b, a: b.op1("pow", [a[2], a[2]], i32), "pow: needs floating-point operands, got i32"),
    (lambda b, a: b.op1("shl", [a[1], a[1]], f32), "shl: needs integer operands, got f32"),
    (lambda b, a: b.op1("cmp", [_v8(b), _v8(b)], bool_, pred="lt"),
     "cmp: result type must be vector<bool, 8>, got bool"),
    (lambda b, a: b.op1("cmp", [a[1], a[1]], bool_, pred="lesser"), "unknown predicate 'lesser'"),
    (lambda b, a: b.op1("select", [const(b, vec(bool_, 4), True), _v8(b), _v8(b)], vec(f32, 8)),
     "mask must be bool or a bool register of shape (8,), got vector<bool, 4>"),
    (lambda b, a: b.op1("const", [], vec(f32, 4), value=(1, 2)), "value has 2 elements, vector<f32, 4> has 4"),
    (lambda b, a: b.op1("const", [], i32, value=1.5), "value 1.5 does not fit element type i32"),
    (lambda b, a: b.op1("splat", [a[1]], vec(i32, 4)), "result must be a register of f32"),
    (lambda b, a: b.op1("convert", [_v8(b)], vec(i32, 4), sat=False), "must keep the shape"),
    (lambda b, a: b.op1("bitcast", [_v8(b)], vec(f16, 8)), "total bits differ: vector<f32, 8> has 256"),
    (lambda b, a: b.op1("rdregion", [_v8(b)], vec(f32, 3), offset=0, vsize=1, vstride=0, hsize=4, hstride=1),
     "result has 3 elements, the region has vsize*hsize = 4"),
    (lambda b, a: b.op1("rdregion", [_v8(b)], vec(f32, 4), offset=3, vsize=2, vstride=4, hsize=2, hstride=1),
     "rdregion: region touches elements 3..8 of a 8-element register"),
    (lambda b, a: b.op1("wrregion", [_v8(b), const(b, vec(f32, 2), 0.0)], vec(f32, 8),
                        offset=0, vsize=1, vstride=0, hsize=4, hstride=1),
     "source has 2 elements, the region has vsize*hsize = 4"),
    (lambda b, a: b.op1("extract", [_v8(b)], f32, index=8), "index 8 is out of range for vector<f32, 8>"),
    (lambda b, a: b.op1("iselect", [_v8(b), _v8(b)], vec(f32, 8)),
     "indices must be an integer register, got vector<f32, 8>"),
    (lambda b, a: b.op1("reduce", [_v8(b)], vec(f32, 8), kind="add", axis=0), "axis=0 needs a matrix"),
    (lambda b, a: b.op1("reduce", [const(b, mat(f32, 2, 4), 1.0)], vec(f32, 4), kind="add", axis=1),
     "reduce: result type must be vector<f32, 2>, got vector<f32, 4>"),
    (lambda b, a: b.op1("reduce", [_v8(b)], f32, kind="avg", axis=None), "unknown kind 'avg'"),
    (lambda b, a: b.op1("dpas", [const(b, mat(f32, 2, 4), 0.0), const(b, mat(f16, 2, 3), 0.0),
                                 const(b, mat(f16, 2, 4), 0.0)], mat(f32, 2, 4)),
     "dpas: needs acc: matrix<f32, M, N>, a: matrix<T, M, K>, b: matrix<T, K, N>"),
    (lambda b, a: b.op1("load", [a[0], a[2]], vec(i32, 8)),
     "load: result element type must match ptr<f32> (f32), got vector<i32, 8>"),
    (lambda b, a: b.op1("load", [a[0], a[1]], vec(f32, 8)), "the offset must be an integer scalar, got f32"),
    (lambda b, a: b.create("store", [a[1], a[2], a[1]]), "store: first operand must be a pointer, got f32"),
    (lambda b, a: b.create("store", [a[0], a[2], a[2]]), "stored value element type must match ptr<f32>"),
    (lambda b, a: b.op1("gather", [a[0], _iota(b)], vec(i32, 8)),
     "gather: result type must be vector<f32, 8>, got vector<i32, 8>"),
    (lambda b, a: b.create("scatter", [a[0], _iota(b), _v8(b), _iota(b)]), "mask must be vector<bool, 8>"),
    (lambda b, a: b.op1("atomic", [a[0], a[2], a[1]], f32, kind="cmpxchg"), "cmpxchg takes (p, offs, expected, new)"),
    (lambda b, a: b.op1("slm", [], PtrType(f32), n=16), "result must be a local pointer, got ptr<f32>"),
    (lambda b, a: b.create("print", [a[1]], attrs={"fmt": 3}), "attribute fmt must be a string"),
]


@pytest.mark.parametrize("build, message", VERIFIER_CASES)
def test_verifier_names_the_problem(build, message):
    assert message in _verify_error(build)


def test_verifier_wants_the_kernel_to_end_in_return():
    fn, b, _ = new_kernel()
    b.create("barrier")
    with pytest.raises(CompileError, match="invalid IR: kernel k must end in return"):
        verify_function(fn)
    b.create("yield")
    with pytest.raises(CompileError, match="invalid IR: kernel k must end in return"):
        verify_function(fn)


def test_verifier_accepts_region_at_the_edge():
    fn, b, _ = new_kernel()
    b.op1("rdregion", [_v8(b)], vec(f32, 4), offset=1, vsize=2, vstride=4, hsize=2, hstride=2)  # 1..7
    b.create("return")
    verify_function(fn)


def test_verifier_error_carries_the_location():
    fn, b, (s,) = new_kernel(("s", f32))
    b.loc = Location("user.py", 12, 8)
    b.op1("exp", [b.op1("convert", [s], i32, sat=False)], i32)
    b.create("return")
    with pytest.raises(CompileError) as info:
        verify_function(fn)
    assert info.value.loc == Location("user.py", 12, 8)
    assert str(info.value).startswith("user.py:12:9: invalid IR: exp: needs floating-point operands, got i32")


def test_verifier_takes_register_parameters_and_rejects_slm_pointers():
    fn, b, _ = new_kernel(("v", vec(f32, 8)))
    b.create("return")
    verify_function(fn)                       # registers are passed by value
    fn, b, _ = new_kernel(("p", PtrType(f32, "local")))
    b.create("return")
    with pytest.raises(CompileError, match="kernel parameter p has type .*; parameters are scalars, "
                                           "registers \\(by value\\) or global pointers"):
        verify_function(fn)


def test_verifier_accepts_parsed_kernels():
    for make in KERNELS:
        verify_function(parse_function(print_function(make())))
