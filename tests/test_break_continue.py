"""``break`` and ``continue``: lowered by the front end to loop-carried flags on the existing
for / while / if ops, so every kernel here runs on the device and in the interpreter against a
Python reference, and lowers for the spirv-vc target (checked on the host emulator)."""
import importlib.util
import inspect

import numpy as np
import pytest

import cmlang as cm
from cmlang import f32, i32, vector
from cmlang.frontend import compile_to_ir
from cmlang.ir.verify import verify_function

ROW = 16
THREADS = 4

needs_vc = pytest.mark.skipif(importlib.util.find_spec("dpcpp_llvm_spirv") is None,
                              reason="the spirv-vc target needs the dpcpp-llvm-spirv wheel")


# --- for over range: break, continue, loop-carried scalars and a register -------------------

def k_for_break_continue(x: cm.ptr[i32], out: cm.ptr[i32], n: i32, limit: i32):
    t = cm.thread_id(0)
    row = cm.load(x, t * ROW, ROW)
    total = 0
    hist = cm.zeros(vector[i32, 4])
    last = -1
    for i in range(n):
        e = row[i]
        if e < 0:
            continue
        if total + e > limit:
            break
        total += e
        hist[e % 4] += 1
        last = i
    res = cm.zeros(vector[i32, 8])
    res[0:4] = hist
    res[4] = total
    res[5] = last
    cm.store(out, t * 8, res)


def ref_for_break_continue(row, n, limit):
    total, hist, last = 0, [0] * 4, -1
    for i in range(n):
        e = row[i]
        if e < 0:
            continue
        if total + e > limit:
            break
        total += e
        hist[e % 4] += 1
        last = i
    return hist + [total, last, 0, 0]


@pytest.mark.parametrize("n,limit", [(16, 40), (16, 1000), (5, 1000), (0, 10)])
def test_for_range_with_break_and_continue(mode, rng, n, limit):
    x = rng.integers(-5, 20, THREADS * ROW).astype(np.int32)
    out = np.full(THREADS * 8, 99, np.int32)
    cm.kernel(k_for_break_continue)[THREADS](x, out, n, limit)
    want = [ref_for_break_continue(list(x[t * ROW:(t + 1) * ROW]), n, limit) for t in range(THREADS)]
    np.testing.assert_array_equal(out.reshape(THREADS, 8), want)


# --- nested loops: continue in a while, break under a nested if of an inner for -------------

def k_nested(x: cm.ptr[i32], out: cm.ptr[i32], n: i32):
    t = cm.thread_id(0)
    row = cm.load(x, t * ROW, ROW)
    counts = cm.zeros(vector[i32, ROW + 1])
    pairs = 0
    i = 0
    while i < n:
        i += 1
        if row[i - 1] % 3 == 0:
            continue
        c = 0
        for j in range(i, n):
            if row[j] > row[i - 1]:
                if row[j] % 2 == 0:
                    break
                pairs += 1
            c += 1
        counts[i - 1] = c
    counts[ROW] = pairs
    cm.store(out, t * (ROW + 1), counts)


def ref_nested(row, n):
    counts, pairs, i = [0] * (ROW + 1), 0, 0
    while i < n:
        i += 1
        if row[i - 1] % 3 == 0:
            continue
        c = 0
        for j in range(i, n):
            if row[j] > row[i - 1]:
                if row[j] % 2 == 0:
                    break
                pairs += 1
            c += 1
        counts[i - 1] = c
    counts[ROW] = pairs
    return counts


@pytest.mark.parametrize("n", [ROW, 7])
def test_nested_loops_break_only_the_inner_loop(mode, rng, n):
    x = rng.integers(0, 30, THREADS * ROW).astype(np.int32)
    out = np.zeros(THREADS * (ROW + 1), np.int32)
    cm.kernel(k_nested)[THREADS](x, out, n)
    want = [ref_nested(list(x[t * ROW:(t + 1) * ROW]), n) for t in range(THREADS)]
    np.testing.assert_array_equal(out.reshape(THREADS, ROW + 1), want)


# --- values after a break; a variable only the staying path defines -------------------------

def k_carried(x: cm.ptr[i32], out: cm.ptr[i32], n: i32):
    t = cm.thread_id(0)
    row = cm.load(x, t * 8, 8)
    v = cm.zeros(vector[i32, 8])
    acc = 0
    for i in range(n):
        acc += 1                # counted in the iteration that breaks
        if row[i] == 0:
            break
        elif row[i] > 0:
            z = row[i] * 2      # defined only where the iteration goes on
        else:
            continue
        acc += 10               # skipped by the break and the continue
        v[i % 8] += z
    v[7] = acc
    cm.store(out, t * 8, v)


def ref_carried(row, n):
    v, acc = [0] * 8, 0
    for i in range(n):
        acc += 1
        if row[i] == 0:
            break
        elif row[i] > 0:
            z = row[i] * 2
        else:
            continue
        acc += 10
        v[i % 8] += z
    v[7] = acc
    return v


def test_values_after_break_are_those_of_the_breaking_iteration(mode):
    x = np.array([[3, -1, 2, 5, 0, 7, 1, 1],       # breaks at i = 4
                  [1, 2, 3, 4, 5, 6, 7, 8],        # never breaks
                  [0, 9, 9, 9, 9, 9, 9, 9],        # breaks at once
                  [-1, -2, 4, -3, 0, 1, 1, 1]], np.int32)
    out = np.zeros(32, np.int32)
    cm.kernel(k_carried)[THREADS](x.ravel(), out, 8)
    np.testing.assert_array_equal(out.reshape(THREADS, 8), [ref_carried(list(r), 8) for r in x])
    assert list(out.reshape(THREADS, 8)[:, 7]) == [35, 88, 1, 15]


# --- while True + break on a register condition; continue in a while ------------------------

def k_while(x: cm.ptr[f32], out: cm.ptr[f32], limit: f32, n: i32):
    t = cm.thread_id(0)
    v = cm.load(x, t * 8, 8)
    steps = 0
    while True:
        if cm.reduce_sum(v) > limit:
            break
        v = v * 2.0 + 1.0
        steps += 1
    w = cm.zeros(vector[f32, 8])
    k = 0
    while k < n:
        k += 1
        if k % 3 == 0:
            continue
        w += v * k
    res = cm.zeros(vector[f32, 17])
    res[0:8] = v
    res[8:16] = w
    res[16] = steps
    cm.store(out, t * 17, res)


def ref_while(v, limit, n):
    steps = 0
    while v.sum() <= limit:
        v = v * 2 + 1
        steps += 1
    w = sum((v * k for k in range(1, n + 1) if k % 3), np.zeros(8, np.float32))
    return np.r_[v, w, steps]


def test_while_true_with_break_and_continue_in_while(mode, rng):
    x = rng.uniform(0, 4, THREADS * 8).astype(np.float32)
    out = np.zeros(THREADS * 17, np.float32)
    cm.kernel(k_while)[THREADS](x, out, 300.0, 7)
    want = [ref_while(x[t * 8:(t + 1) * 8], 300.0, 7) for t in range(THREADS)]
    np.testing.assert_allclose(out.reshape(THREADS, 17), want, rtol=1e-6)
    assert (out.reshape(THREADS, 17)[:, 16] > 0).all()


# --- cm.static_range: compile-time and run-time break / continue ---------------------------

def k_static(x: cm.ptr[i32], out: cm.ptr[i32], STOP: cm.constexpr):
    t = cm.thread_id(0)
    row = cm.load(x, t * 8, 8)
    first_neg = -1
    for j in cm.static_range(8):        # run-time break: later copies run under "not broke"
        if row[j] < 0:
            first_neg = j
            break
    stopped_at = j                      # the loop variable keeps the breaking item, as in Python
    prefix = 0
    for j in cm.static_range(8):        # compile-time break: unrolling stops
        if j == STOP:
            break
        prefix += row[j]
    odd = 0
    for j in cm.static_range(8):        # run-time continue
        if row[j] % 2 == 0:
            continue
        odd += row[j]
    cm.store(out, t * 4, vector[i32, 4](first_neg, stopped_at, prefix, odd))


def ref_static(row, stop):
    negatives = [j for j, e in enumerate(row) if e < 0]
    first_neg = negatives[0] if negatives else -1
    stopped_at = negatives[0] if negatives else 7
    return [first_neg, stopped_at, sum(row[:stop]), sum(e for e in row if e % 2)]


def test_static_range_break_and_continue(mode):
    x = np.array([[1, 2, -3, 4, -5, 6, 7, 8],
                  [1, 2, 3, 4, 5, 6, 7, 8],
                  [-1, 3, 3, 3, 3, 3, 3, 3],
                  [2, 4, 6, 8, 10, 12, 14, -9]], np.int32)
    out = np.zeros(16, np.int32)
    cm.kernel(k_static)[THREADS](x.ravel(), out, 3)
    np.testing.assert_array_equal(out.reshape(THREADS, 4), [ref_static(list(r), 3) for r in x])


def test_compile_time_break_stops_unrolling():
    counts = []
    for stop in (2, 5):
        f = compile_to_ir(k_static, {"x": cm.ptr[i32], "out": cm.ptr[i32]}, {"STOP": stop}, 16)
        verify_function(f)
        counts.append(sum(op.opcode == "add" for op in f.walk()))
    assert counts[1] - counts[0] == 3       # one add per unrolled copy of the second loop


# --- range steps of both signs; static_range inside a breaking run-time loop -----------------

def k_steps(x: cm.ptr[i32], out: cm.ptr[i32], lo: i32, hi: i32, step: i32, n: i32):
    t = cm.thread_id(0)
    row = cm.load(x, t * 8, 8)
    res = cm.zeros(vector[i32, 4])
    for i in range(hi, lo, -3):         # constant negative step
        if i < 10:
            break
        res[0] += i
    for i in range(lo, hi, step):       # run-time step of either sign
        if i % 7 == 5:
            break
        res[1] += i
    total = 0
    for i in range(n):
        for j in cm.static_range(4):
            if row[(i + j) % 8] < 0:
                break                   # leaves only the unrolled loop
            total += row[(i + j) % 8]
        if total > 50:
            break
        res[3] += 1
    res[2] = total
    cm.store(out, t * 4, res)


def ref_steps(row, lo, hi, step, n):
    res = [0] * 4
    for i in range(hi, lo, -3):
        if i < 10:
            break
        res[0] += i
    for i in range(lo, hi, step):
        if i % 7 == 5:
            break
        res[1] += i
    total = 0
    for i in range(n):
        for j in range(4):
            if row[(i + j) % 8] < 0:
                break
            total += row[(i + j) % 8]
        if total > 50:
            break
        res[3] += 1
    res[2] = total
    return res


@pytest.mark.parametrize("lo,hi,step", [(0, 20, 2), (0, 20, 3), (0, 5, 1), (20, 0, -2), (20, 0, -4)])
def test_range_steps_and_static_range_in_a_breaking_loop(mode, rng, lo, hi, step):
    x = rng.integers(-3, 12, THREADS * 8).astype(np.int32)
    out = np.zeros(THREADS * 4, np.int32)
    cm.kernel(k_steps)[THREADS](x, out, lo, hi, step, 8)
    want = [ref_steps(list(x[t * 8:(t + 1) * 8]), lo, hi, step, 8) for t in range(THREADS)]
    np.testing.assert_array_equal(out.reshape(THREADS, 4), want)


# --- a @cm.func with a breaking loop, inlined into a kernel loop ---------------------------

@cm.func
def first_at_least(row, n, bound):
    found = n
    for i in range(n):
        if row[i] >= bound:
            found = i
            break
    return found


def k_func(x: cm.ptr[i32], out: cm.ptr[i32], n: i32):
    t = cm.thread_id(0)
    row = cm.load(x, t * ROW, ROW)
    res = cm.zeros(vector[i32, 4])
    for k in range(4):
        res[k] = first_at_least(row, n, k * 8)
    cm.store(out, t * 4, res)


def test_func_with_break_inlined_in_a_loop(mode, rng):
    x = rng.integers(0, 30, THREADS * ROW).astype(np.int32)
    out = np.zeros(THREADS * 4, np.int32)
    cm.kernel(k_func)[THREADS](x, out, ROW)
    want = [[next((i for i, e in enumerate(x[t * ROW:(t + 1) * ROW]) if e >= 8 * k), ROW) for k in range(4)]
            for t in range(THREADS)]
    np.testing.assert_array_equal(out.reshape(THREADS, 4), want)


# --- the IR: which ops the loops become ------------------------------------------------------

def build(fn, **param_types):
    f = compile_to_ir(fn, param_types, {}, 16)
    verify_function(f)
    return f


def opcodes(f):
    return [op.opcode for op in f.walk()]


def k_only_continue(x, n):
    s = 0
    for i in range(n):
        if i % 2 == 0:
            continue
        s += i
    cm.store(x, 0, vector[i32, 1](s))


def k_guarded_test(x, n):
    i = 0
    while cm.load(x, i, 1)[0] != 0:     # not read again once the loop has broken
        if i == n:
            break
        i += 1
    cm.store(x, 0, vector[i32, 1](i))


def test_for_with_break_becomes_while_and_continue_keeps_for():
    with_break = opcodes(build(k_for_break_continue, x=cm.ptr[i32], out=cm.ptr[i32], n=i32, limit=i32))
    assert "for" not in with_break and with_break.count("while") == 1
    only_continue = opcodes(build(k_only_continue, x=cm.ptr[i32], n=i32))
    assert only_continue.count("for") == 1 and "while" not in only_continue


def test_while_test_is_skipped_after_a_break():
    f = build(k_guarded_test, x=cm.ptr[i32], n=i32)
    (loop,) = [op for op in f.walk() if op.opcode == "while"]
    cond_ops = loop.blocks[0].ops
    assert [op.opcode for op in cond_ops] == ["if", "condition"]
    skip, test = cond_ops[0].blocks
    assert [op.opcode for op in skip.ops] == ["const", "yield"]
    assert "load" in [op.opcode for op in test.ops]


# --- errors -----------------------------------------------------------------------------------

def where(fn, snippet):
    """(line, 0-based col) of the first line of fn holding ``snippet``."""
    lines, start = inspect.getsourcelines(fn)
    for i, line in enumerate(lines):
        if snippet in line:
            return start + i, line.index(snippet)
    raise AssertionError(f"{snippet!r} not in {fn.__name__}")


def compile_error(fn, **param_types):
    with pytest.raises(cm.CompileError) as info:
        compile_to_ir(fn, param_types, {}, 16)
    return info.value


def k_mask_break(x, n):
    v = cm.load(x, 0, 16)
    for i in range(n):
        if v > 0:
            break
        v = v - 1
    cm.store(x, 0, v)


def k_endless(x, n):
    i = 0
    while True:
        if False:
            break
        i += 1


def k_for_else_break(x, n):
    for i in range(n):
        for j in range(n):
            pass
        else:
            break


@pytest.mark.parametrize("kernel,snippet,message", [
    (k_mask_break, "v > 0", "the condition is a vector<bool, 16> mask; use mask.any() or mask.all()"),
    (k_endless, "True", "the while condition is always true and the loop has no break"),
    (k_for_else_break, "for j", "unsupported Python construct: for ... else"),
])
def test_errors_name_the_construct_and_the_place(kernel, snippet, message):
    err = compile_error(kernel, x=cm.ptr[f32], n=i32)
    line, col = where(kernel, snippet)
    assert (err.loc.file, err.loc.line, err.loc.col) == (__file__, line, col), str(err)
    assert message in err.message
    assert f"{__file__}:{line}:{col + 1}: {message}" in str(err)


# --- the spirv-vc target lowers the same IR (host emulation against the interpreter) ----------

def vc_cases():
    r = np.random.default_rng(3)
    return {
        "for_break_continue": (k_for_break_continue, r.integers(-5, 20, THREADS * ROW).astype(np.int32),
                               np.zeros(THREADS * 8, np.int32), ROW, 40),
        "nested": (k_nested, r.integers(0, 30, THREADS * ROW).astype(np.int32),
                   np.zeros(THREADS * (ROW + 1), np.int32), ROW),
        "carried": (k_carried, r.integers(-3, 4, THREADS * 8).astype(np.int32), np.zeros(32, np.int32), 8),
        "while": (k_while, r.uniform(0, 4, THREADS * 8).astype(np.float32), np.zeros(THREADS * 17, np.float32),
                  300.0, 7),
        "steps": (k_steps, r.integers(-3, 12, THREADS * 8).astype(np.int32), np.zeros(THREADS * 4, np.int32),
                  20, 0, -2, 8),
        "static": (k_static, r.integers(-9, 9, THREADS * 8).astype(np.int32), np.zeros(16, np.int32), 3),
        "func": (k_func, r.integers(0, 30, THREADS * ROW).astype(np.int32), np.zeros(THREADS * 4, np.int32), ROW),
    }


@needs_vc
@pytest.mark.parametrize("case", sorted(vc_cases()))
def test_spirv_vc_lowers_and_matches_the_interpreter(case):
    from cmlang.codegen import vc_translate
    import test_vc
    fn, *args = vc_cases()[case]
    kernel = cm.kernel(fn)
    ck = kernel.compile(*args, target="spirv-vc")
    assert vc_translate.validate(ck.spirv) in ("spirv-val", "read-back")
    test_vc.run_both(kernel, THREADS, None, *args, rtol=1e-6)
