"""Dead-code elimination and the buffer-extent analysis."""
import pytest

from cmlang.ir.core import Block, Builder, Function
from cmlang.ir.printer import print_function
from cmlang.ir.verify import verify_function
from cmlang.passes import BufferUse, analyze_buffers, eliminate_dead_code
from cmlang.types import PtrType, bool_, f32, i32, mat, vec


def new_kernel(*params):
    body = Block([t for _, t in params], [n for n, _ in params])
    fn = Function("k", body, [n for n, _ in params])
    return fn, Builder(body), body.args


def const(b, t, value):
    return b.op1("const", [], t, value=value)


def for_loop(b, lo, hi, step, inits):
    body = Block([lo.type] + [v.type for v in inits])
    return b.create("for", [lo, hi, step, *inits], [v.type for v in inits], blocks=[body]), body


def opcodes(block):
    return [op.opcode for op in block.ops]


# ---------------------------------------------------------------------------
# Dead-code elimination

def test_dce_removes_unused_chains_and_keeps_what_stores_need():
    fn, b, (p, s) = new_kernel(("p", PtrType(f32)), ("s", f32))
    tid = b.op1("thread_id", [], i32, dim=0)
    dead = b.op1("exp", [b.op1("splat", [s], vec(f32, 8))], vec(f32, 8))  # splat + exp: dead chain
    b.op1("add", [dead, dead], vec(f32, 8))                               # and its only user
    b.op1("load", [p, tid], vec(f32, 8))                                  # loads have no side effects
    b.create("store", [p, tid, s])
    b.create("return")
    assert eliminate_dead_code(fn) == 4
    assert opcodes(fn.body) == ["thread_id", "store", "return"]
    verify_function(fn)
    assert eliminate_dead_code(fn) == 0


def test_dce_keeps_side_effects_even_with_unused_results():
    fn, b, (q,) = new_kernel(("q", PtrType(i32)))
    zero = const(b, i32, 0)
    b.op1("atomic", [q, zero, zero], i32, kind="add")
    b.create("print", [zero], attrs={"fmt": "%d"})
    b.create("barrier")
    b.create("fence")
    b.create("breakpoint")
    b.create("return")
    assert eliminate_dead_code(fn) == 0
    assert len(fn.body.ops) == 7


def test_dce_removes_a_pure_loop_with_unused_results_and_what_only_it_used():
    fn, b, (n,) = new_kernel(("n", i32))
    step = const(b, i32, 1)          # used only by the loop
    acc0 = const(b, f32, 0.0)        # used only by the loop
    lo = const(b, i32, 0)
    loop, body = for_loop(b, lo, n, step, [acc0])
    with b.at(body):
        one = const(b, f32, 1.0)
        b.create("yield", [b.op1("add", [body.args[1], one], f32)])
    b.create("return")
    # for + its 3 nested ops (const, add, yield) + step, acc0, lo
    assert eliminate_dead_code(fn) == 7
    assert opcodes(fn.body) == ["return"]


def test_dce_cleans_inside_a_loop_that_must_stay():
    fn, b, (p, n) = new_kernel(("p", PtrType(f32)), ("n", i32))
    zero, one = const(b, i32, 0), const(b, i32, 1)
    loop, body = for_loop(b, zero, n, one, [])
    with b.at(body):
        iv = body.args[0]
        b.op1("mul", [iv, iv], i32)                          # dead
        b.create("store", [p, iv, const(b, f32, 2.0)])
        b.create("yield")
    b.create("return")
    assert eliminate_dead_code(fn) == 1
    assert opcodes(loop.blocks[0]) == ["const", "store", "yield"]
    verify_function(fn)


def test_dce_keeps_an_if_whose_branch_stores_and_drops_a_pure_one():
    fn, b, (p, c, s) = new_kernel(("p", PtrType(f32)), ("c", bool_), ("s", f32))
    pure = b.create("if", [c], [f32], blocks=[Block(), Block()])
    with b.at(pure.blocks[0]):
        b.create("yield", [b.op1("neg", [s], f32)])
    with b.at(pure.blocks[1]):
        b.create("yield", [s])
    effect = b.create("if", [c], [], blocks=[Block(), Block()])
    with b.at(effect.blocks[0]):
        b.create("store", [p, const(b, i32, 0), s])
        b.create("yield")
    with b.at(effect.blocks[1]):
        b.create("yield")
    b.create("return")
    assert eliminate_dead_code(fn) == 4  # if, neg, yield, yield
    assert fn.body.ops[0] is effect
    verify_function(fn)


def test_dce_keeps_values_that_loops_carry_and_yield():
    fn, b, (p, n) = new_kernel(("p", PtrType(i32)), ("n", i32))
    zero = const(b, i32, 0)
    loop = b.create("while", [zero], [i32], blocks=[Block([i32]), Block([i32])])
    before, after = loop.blocks
    with b.at(before):
        b.create("condition", [b.op1("cmp", [before.args[0], n], bool_, pred="lt"), before.args[0]])
    with b.at(after):
        b.create("yield", [b.op1("add", [after.args[0], const(b, i32, 1)], i32)])
    b.create("store", [p, zero, loop.results[0]])
    b.create("return")
    text = print_function(fn)
    assert eliminate_dead_code(fn) == 0
    assert print_function(fn) == text


def test_dce_removes_an_unused_while():
    fn, b, (n,) = new_kernel(("n", i32))
    loop = b.create("while", [n], [i32], blocks=[Block([i32]), Block([i32])])
    with b.at(loop.blocks[0]):
        b.create("condition", [b.op1("cmp", [loop.blocks[0].args[0], n], bool_, pred="gt"),
                               loop.blocks[0].args[0]])
    with b.at(loop.blocks[1]):
        b.create("yield", [loop.blocks[1].args[0]])
    b.create("return")
    assert eliminate_dead_code(fn) == 4  # while, cmp, condition, yield
    assert opcodes(fn.body) == ["return"]


# ---------------------------------------------------------------------------
# Buffer extents

def buffers_kernel():
    fn, b, (src, dst, s, n) = new_kernel(("src", PtrType(f32)), ("dst", PtrType(f32)), ("s", f32),
                                        ("n", i32))
    c = lambda v: const(b, i32, v)  # noqa: E731
    b.op1("load", [src, c(10)], vec(f32, 16))                        # needs 26
    b.op1("load", [src, n], vec(f32, 64))                            # run-time offset: no bound
    b.create("store", [dst, c(100), s])                              # scalar: needs 101
    b.create("store", [dst, c(90), const(b, vec(f32, 8), 1.0)])      # needs 98
    b.create("return")
    return fn


def test_buffer_extents_of_loads_and_stores():
    uses = analyze_buffers(buffers_kernel())
    assert uses == {0: BufferUse(writes=False, min_elems=26), 1: BufferUse(writes=True, min_elems=101)}


def test_buffer_extents_of_2d_accesses():
    fn, b, (p, q, pitch) = new_kernel(("p", PtrType(f32)), ("q", PtrType(f32)), ("pitch", i32))
    tile = b.op1("load2d", [p, const(b, i32, 4), const(b, i32, 32)], mat(f32, 8, 16))
    b.create("store2d", [q, const(b, i32, 0), const(b, i32, 20), tile])
    b.create("store2d", [q, const(b, i32, 0), pitch, tile])          # run-time pitch: no bound
    b.create("return")
    assert analyze_buffers(fn) == {0: BufferUse(False, 4 + 7 * 32 + 16), 1: BufferUse(True, 7 * 20 + 16)}


def test_buffer_extents_of_gather_scatter_atomic():
    fn, b, (p, q, r, v) = new_kernel(("p", PtrType(f32)), ("q", PtrType(f32)), ("r", PtrType(i32)),
                                     ("v", f32))
    offs = const(b, vec(i32, 4), (3, 40, 7, 1))
    mask = const(b, vec(bool_, 4), (True, False, True, True))
    b.op1("gather", [p, offs], vec(f32, 4))                          # max 40: needs 41
    b.create("scatter", [q, offs, b.op1("splat", [v], vec(f32, 4)), mask])  # 40 masked off: needs 8
    b.op1("atomic", [r, const(b, i32, 12), const(b, i32, 1)], i32, kind="add")  # scalar offset: 13
    b.create("return")
    assert analyze_buffers(fn) == {0: BufferUse(False, 41), 1: BufferUse(True, 8), 2: BufferUse(True, 13)}


def test_buffer_extents_ignore_nested_accesses_for_size_but_not_for_writes():
    fn, b, (p, c, s) = new_kernel(("p", PtrType(f32)), ("c", bool_), ("s", f32))
    guarded = b.create("if", [c], [], blocks=[Block(), Block()])
    with b.at(guarded.blocks[0]):
        b.create("store", [p, const(b, i32, 1000), s])  # may never run: no size requirement
        b.create("yield")
    with b.at(guarded.blocks[1]):
        b.create("yield")
    b.create("return")
    assert analyze_buffers(fn) == {0: BufferUse(writes=True, min_elems=0)}


def test_buffer_extents_only_count_parameters_themselves():
    fn, b, (p, s) = new_kernel(("p", PtrType(f32)), ("s", f32))
    local = b.op1("slm", [], PtrType(f32, "local"), n=256)
    b.create("store", [local, const(b, i32, 200), s])
    b.op1("load", [p, b.op1("add", [const(b, i32, 1), const(b, i32, 2)], i32)], vec(f32, 4))  # not a const op
    b.create("return")
    assert analyze_buffers(fn) == {0: BufferUse(False, 0)}


@pytest.mark.parametrize("offset", [0, 5, 123])
def test_buffer_extent_tracks_the_offset(offset):
    fn, b, (p,) = new_kernel(("p", PtrType(f32)))
    b.op1("load", [p, const(b, i32, offset)], vec(f32, 32))
    b.create("return")
    assert analyze_buffers(fn)[0].min_elems == offset + 32
