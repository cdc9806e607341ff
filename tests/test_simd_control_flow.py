"""SIMD control flow (CM's SIMD_IF / SIMD_ELSE / SIMD_DO_WHILE): ``if cm.simd(mask)``, ``elif``,
``else`` and ``while cm.simd(mask)`` with per-lane ``break``/``continue``.

Every kernel runs on the device and in the interpreter (the ``mode`` fixture) against a numpy
reference written lane by lane, for masks of 8, 16 and 32 lanes, and on the spirv-vc target
through the host emulator (against the interpreter)."""
import importlib.util
import inspect
import shutil

import numpy as np
import pytest

import cmlang as cm
from cmlang import f32, i32, vector, matrix
from cmlang.frontend import compile_to_ir
from cmlang.ir.verify import verify_function

from examples.ports import mandelbrot

THREADS = 3
WIDTHS = [(16, 8), (16, 16), (16, 32), (8, 8)]     # (kernel simd, mask lanes)

needs_vc = pytest.mark.skipif(importlib.util.find_spec("dpcpp_llvm_spirv") is None,
                              reason="the spirv-vc target needs the dpcpp-llvm-spirv wheel")


def kernel(fn, simd=16):
    return cm.kernel(simd=simd)(fn)


# --- if / elif / else: which writes the mask governs ---------------------------------------------

def k_if_chain(x: cm.ptr[i32], out: cm.ptr[i32], W: cm.constexpr):
    t = cm.thread_id(0)
    v = cm.load(x, t * W, W)
    r = cm.full(vector[i32, W], -1)               # W elements: written in the active lanes only
    acc = cm.zeros(vector[i32, W])
    m = cm.zeros(matrix[i32, 2, W // 2])          # W elements as a matrix: element i is lane i
    rows = cm.zeros(matrix[i32, 3, W])            # other width; a row write of W elements is per lane
    half = cm.zeros(vector[i32, W // 2])          # other width: written as usual
    row0 = rows[0]                                # a view: writes through it reach rows
    s = 0                                         # scalar: written as usual
    if cm.simd(v > 10):
        r = v * 2
        acc += 1
        m += 5
        rows[1] = v
        row0 += v
        half += 1
        s += 1
    elif cm.simd(v < -10):
        r = v + 100
        acc[3] = 7                                # element write: element 3 only if lane 3 runs
        r[0:4] = 9                                # region write of a W-element register
        s += 10
    else:
        r += 1000
        acc -= 1
        rows[2, 0:W] = v + 1
    cm.store(out, t * 9 * W, r)
    cm.store(out, t * 9 * W + W, acc)
    cm.store(out, t * 9 * W + 2 * W, m.format(i32))
    cm.store(out, t * 9 * W + 3 * W, rows.format(i32))
    cm.store(out, t * 9 * W + 6 * W, half)
    cm.store(out, t * 9 * W + 6 * W + W // 2, cm.full(vector[i32, W // 2], s))
    cm.store(out, t * 9 * W + 7 * W, cm.zeros(vector[i32, 2 * W]))


def ref_if_chain(v, W):
    big, small = v > 10, v < -10
    other = ~big & ~small
    lane = np.arange(W)
    r = np.where(big, 2 * v, np.where(small, np.where(lane < 4, 9, v + 100), -1 + 1000))
    acc = np.where(big, 1, np.where(other, -1, np.where(lane == 3, 7, 0)))
    m = np.where(big, 5, 0)
    rows = np.stack([np.where(big, v, 0), np.where(big, v, 0), np.where(other, v + 1, 0)])
    half = np.ones(W // 2)             # another width: written whatever the mask
    s = 1 + 10                         # a scalar: both branches' statements ran
    return np.concatenate([r, acc, m, rows.ravel(), half, np.full(W // 2, s), np.zeros(2 * W)]).astype(np.int32)


@pytest.mark.parametrize("simd,W", WIDTHS)
def test_if_elif_else_writes_registers_of_the_mask_width_in_active_lanes(mode, rng, simd, W):
    x = rng.integers(-30, 30, THREADS * W).astype(np.int32)
    out = np.full(THREADS * 9 * W, 12345, np.int32)
    kernel(k_if_chain, simd)[THREADS](x, out, W)
    for t in range(THREADS):
        np.testing.assert_array_equal(out[t * 9 * W:(t + 1) * 9 * W], ref_if_chain(x[t * W:(t + 1) * W], W),
                                      err_msg=f"CM thread {t}")


@cm.func
def bump(a):
    a += 100                                      # a reference: the caller's register changes


def k_assign_numbers(x: cm.ptr[i32], out: cm.ptr[i32], W: cm.constexpr):
    t = cm.thread_id(0)
    v = cm.load(x, t * W, W)
    r = v.copy()
    q = cm.zeros(vector[i32, W])
    if cm.simd(v > 0):
        r = 0                                     # a number: broadcast into the active lanes
        bump(q)
    else:
        r = v[0] * 3                              # a scalar: the same
    cm.store(out, t * 2 * W, r)
    cm.store(out, t * 2 * W + W, q)


@pytest.mark.parametrize("W", [8, 16, 32])
def test_numbers_scalars_and_func_references_are_written_in_active_lanes(mode, rng, W):
    x = rng.integers(-9, 9, THREADS * W).astype(np.int32)
    out = np.zeros(THREADS * 2 * W, np.int32)
    kernel(k_assign_numbers)[THREADS](x, out, W)
    for t in range(THREADS):
        v = x[t * W:(t + 1) * W]
        want = np.concatenate([np.where(v > 0, 0, v[0] * 3), np.where(v > 0, 100, 0)])
        np.testing.assert_array_equal(out[t * 2 * W:(t + 1) * 2 * W], want, err_msg=f"CM thread {t}")


def k_mask_kinds(x: cm.ptr[i32], out: cm.ptr[i32], W: cm.constexpr):
    t = cm.thread_id(0)
    m = cm.load(x, t * W, (2, W // 2), W // 2)
    v = cm.load(x, t * W, W)
    if cm.simd(m > 0):                            # a matrix mask: element i (row-major) is lane i
        v = -v
    if cm.simd(v & 1):                            # an integer mask: nonzero lanes are active
        v += 1000
    cm.store(out, t * W, v)


@pytest.mark.parametrize("W", [8, 16, 32])
def test_matrix_and_integer_masks(mode, rng, W):
    x = rng.integers(-9, 9, THREADS * W).astype(np.int32)
    out = np.zeros(THREADS * W, np.int32)
    kernel(k_mask_kinds)[THREADS](x, out, W)
    v = np.where(x > 0, -x, x)
    np.testing.assert_array_equal(out, np.where(v & 1, v + 1000, v))


# --- nested ifs, masked memory ----------------------------------------------------------------------

def k_nested_memory(x: cm.ptr[f32], idx: cm.ptr[i32], out: cm.ptr[f32], W: cm.constexpr, N: i32):
    t = cm.thread_id(0)
    v = cm.load(x, t * W, W)
    i = cm.load(idx, t * W, W)
    g = cm.zeros(vector[f32, W])
    if cm.simd(i >= 0):
        # the gather's inactive lanes hold indices outside x: they must not be read
        g = cm.gather(x, i)
        if cm.simd(v > 0.0):
            cm.store(out, t * W, v * 2.0)              # a store of W elements: active lanes only
        else:
            cm.scatter(out, cm.iota(i32, W) + t * W, -v, v < -5.0)     # its mask and the SIMD mask
        if cm.simd(i < N // 2):
            g = cm.load(x, t * W, W) + 0.5             # a load of W elements, merged into g
    cm.store(out, THREADS * W + t * W, g)


def ref_nested_memory(x, idx, out, W, n):
    out = out.copy()
    for t in range(THREADS):
        for lane in range(W):
            e, i = t * W + lane, idx[t * W + lane]
            g = np.float32(0)
            if i >= 0:
                g = x[i]
                if x[e] > 0:
                    out[e] = x[e] * 2
                elif x[e] < -5:
                    out[e] = -x[e]
                if i < n // 2:
                    g = x[e] + np.float32(0.5)
            out[THREADS * W + e] = g
    return out


@pytest.mark.parametrize("simd,W", WIDTHS)
def test_nested_ifs_predicate_loads_stores_gathers_and_scatters(mode, rng, simd, W):
    n = THREADS * W
    x = rng.integers(-20, 20, n).astype(np.float32)
    idx = rng.integers(0, n, n).astype(np.int32)
    idx[::3] = -1_000_000                     # inactive lanes: an access there would fault
    out = np.full(2 * n, 777.0, np.float32)
    want = ref_nested_memory(x, idx, out, W, n)
    kernel(k_nested_memory, simd)[THREADS](x, idx, out, W, n)
    np.testing.assert_array_equal(out, want)


def k_store_edge(x: cm.ptr[i32], out: cm.ptr[i32], n: i32, W: cm.constexpr):
    t = cm.thread_id(0)
    lane = cm.iota(i32, W) + t * W
    if cm.simd(lane < n):
        cm.store(out, t * W, cm.load(x, t * W, W) + 1)


@pytest.mark.parametrize("W", [8, 16, 32])
def test_a_predicated_load_and_store_touch_no_element_past_the_end(mode, W):
    """The last CM thread's inactive lanes lie past both buffers (the interpreter checks every
    access against its buffer; the device would write past the end)."""
    n = 2 * W + 3
    x = np.arange(n, dtype=np.int32)
    out = np.zeros(n, np.int32)
    kernel(k_store_edge)[3](x, out, n, W)
    np.testing.assert_array_equal(out, x + 1)


def k_atomics(x: cm.ptr[i32], counts: cm.ptr[i32], sums: cm.ptr[f32], olds: cm.ptr[i32], W: cm.constexpr):
    t = cm.thread_id(0)
    v = cm.load(x, t * W, W)
    lane = cm.iota(i32, W) + t * W
    outside = cm.full(vector[i32, W], -1_000_000)       # an access there would fault
    old = cm.full(vector[i32, W], -7)
    if cm.simd(v > 0):
        old = cm.atomic_add(counts, cm.merge(lane, outside, v > 0), v)
        cm.atomic_add(sums, cm.merge(lane, outside, v > 0), v.astype(f32) * 0.5)
    else:
        old = cm.atomic_cmpxchg(counts, cm.merge(lane, outside, v <= 0), 100, v) + 1000
    cm.store(olds, t * W, old)


@pytest.mark.parametrize("W", [8, 16, 32])
def test_atomics_are_predicated(mode, rng, W):
    x = rng.integers(-9, 9, THREADS * W).astype(np.int32)
    counts = np.full(THREADS * W, 100, np.int32)
    sums = np.full(THREADS * W, 1.0, np.float32)
    olds = np.zeros(THREADS * W, np.int32)
    kernel(k_atomics)[THREADS](x, counts, sums, olds, W)
    np.testing.assert_array_equal(counts, np.where(x > 0, 100 + x, x))
    np.testing.assert_array_equal(sums, np.where(x > 0, 1.0 + x * 0.5, 1.0).astype(np.float32))
    np.testing.assert_array_equal(olds, np.where(x > 0, 100, 1100))


# --- while cm.simd: per-lane break and continue, nested ifs, scalars ----------------------------------

def k_while(x: cm.ptr[i32], out: cm.ptr[i32], n: i32, W: cm.constexpr):
    t = cm.thread_id(0)
    v = cm.load(x, t * W, W)
    it = cm.zeros(vector[i32, W])
    s = cm.zeros(vector[i32, W])
    skipped = cm.zeros(vector[i32, W])
    rounds = 0                              # a scalar: counts the iterations any lane ran
    while cm.simd(it < n):
        it += 1
        rounds += 1
        if cm.simd(v + s > 50):
            break
        s += 3
        if cm.simd((it & 1) == 1):
            if cm.simd(v < 0):
                skipped += 1
                continue
            s += 2
        s += 1
    cm.store(out, t * 4 * W, it)
    cm.store(out, t * 4 * W + W, s)
    cm.store(out, t * 4 * W + 2 * W, skipped)
    cm.store(out, t * 4 * W + 3 * W, cm.full(vector[i32, W], rounds))


def ref_while(v, n):
    its, ss, sk = [], [], []
    for e in v:
        it = s = skipped = 0
        while it < n:
            it += 1
            if e + s > 50:
                break
            s += 3
            if it & 1:
                if e < 0:
                    skipped += 1
                    continue
                s += 2
            s += 1
        its.append(it), ss.append(s), sk.append(skipped)
    # the scalar counts the iterations of the loop, which runs while any lane does
    return np.array(its + ss + sk + [max(its)] * len(v), np.int32)


@pytest.mark.parametrize("simd,W", WIDTHS)
@pytest.mark.parametrize("n", [0, 5, 40])
def test_while_with_per_lane_break_and_continue(mode, rng, simd, W, n):
    x = rng.integers(-20, 60, THREADS * W).astype(np.int32)
    out = np.zeros(THREADS * 4 * W, np.int32)
    kernel(k_while, simd)[THREADS](x, out, n, W)
    for t in range(THREADS):
        np.testing.assert_array_equal(out[t * 4 * W:(t + 1) * 4 * W], ref_while(x[t * W:(t + 1) * W], n),
                                      err_msg=f"CM thread {t}")


def k_nested_loops(x: cm.ptr[i32], out: cm.ptr[i32], W: cm.constexpr):
    """A SIMD while in a SIMD while, a uniform loop inside, and a break in a uniform if."""
    t = cm.thread_id(0)
    v = cm.load(x, t * W, W)
    outer = cm.zeros(vector[i32, W])
    total = cm.zeros(vector[i32, W])
    k = 0
    while cm.simd(outer < v):
        outer += 1
        k += 1
        inner = cm.zeros(vector[i32, W])
        while cm.simd(inner < outer):
            inner += 1
            if cm.simd(inner == 3):
                continue
            if cm.simd(inner > 5):
                break
            total += inner
        for j in range(2):
            total += j
        if k == 6:
            break                             # uniform: every lane still in the loop leaves
    cm.store(out, t * 2 * W, outer)
    cm.store(out, t * 2 * W + W, total)


def ref_nested_loops(v):
    outs, tots = [], []
    for e in v:
        outer = total = k = 0
        while outer < e:
            outer += 1
            k += 1
            inner = 0
            while inner < outer:
                inner += 1
                if inner == 3:
                    continue
                if inner > 5:
                    break
                total += inner
            total += 1
            if k == 6:
                break
        outs.append(outer), tots.append(total)
    return np.array(outs + tots, np.int32)


@pytest.mark.parametrize("W", [8, 16, 32])
def test_nested_simd_loops_and_a_uniform_break(mode, rng, W):
    x = rng.integers(-2, 10, THREADS * W).astype(np.int32)
    out = np.zeros(THREADS * 2 * W, np.int32)
    kernel(k_nested_loops)[THREADS](x, out, W)
    for t in range(THREADS):
        np.testing.assert_array_equal(out[t * 2 * W:(t + 1) * 2 * W], ref_nested_loops(x[t * W:(t + 1) * W]),
                                      err_msg=f"CM thread {t}")


# --- mandelbrot (examples/ports) ------------------------------------------------------------------------

@pytest.mark.parametrize("lanes", [8, 16, 32])
def test_mandelbrot_port_matches_numpy(mode, lanes):
    got = mandelbrot.mandelbrot(width=64, height=24, max_iter=48, lanes=lanes)
    want = mandelbrot.reference(width=64, height=24, max_iter=48)
    assert 1 < len(np.unique(want)) and want.max() == 48      # escapes at many counts, and points inside
    np.testing.assert_array_equal(got, want)


# --- the IR: no new op, merges and predicated memory ops -------------------------------------------------

def build(fn, **param_types):
    f = compile_to_ir(fn, param_types, {"W": 16}, 16)
    verify_function(f)
    return f


def opcodes(f):
    return [op.opcode for op in f.walk()]


def test_simd_if_is_straight_line_selects_and_a_predicated_scatter():
    ops = opcodes(build(k_store_edge, x=cm.ptr[i32], out=cm.ptr[i32], n=i32))
    assert "if" not in ops and "store" not in ops and "load" not in ops
    assert ops.count("gather") == 1 and ops.count("scatter") == 1
    f = build(k_if_chain, x=cm.ptr[i32], out=cm.ptr[i32])
    assert "if" not in opcodes(f) and opcodes(f).count("select") >= 8


def test_simd_while_is_one_while_op_carrying_the_active_lanes():
    f = build(k_while, x=cm.ptr[i32], out=cm.ptr[i32], n=i32)
    (loop,) = [op for op in f.walk() if op.opcode == "while"]
    assert "vector<bool, 16>" in [str(a.type) for a in loop.blocks[0].args]
    cond = loop.blocks[0].ops
    assert [op.opcode for op in cond[-2:]] == ["reduce", "condition"] and cond[-2].attrs["kind"] == "or"


# --- Intel's GPU compiler builds it (both flavours, no spills) ----------------------------------------------

@pytest.mark.skipif(shutil.which("ocloc") is None, reason="Intel's offline compiler (ocloc) is not installed")
@pytest.mark.parametrize("target", ["spirv", "spirv-vc"])
def test_mandelbrot_builds_for_pvc_without_spills(target):
    ck = mandelbrot.mandelbrot_kernel.compile(target=target, device="pvc", W=16)
    assert ck.stats["instructions"] > 0 and ck.stats["spill_bytes"] == 0


# --- spirv-vc (host emulator against the interpreter) ------------------------------------------------------

def vc_cases():
    r = np.random.default_rng(5)
    n = THREADS * 16
    idx = r.integers(0, n, n).astype(np.int32)
    idx[::3] = -1_000_000
    return {
        "if_chain": (k_if_chain, THREADS, r.integers(-30, 30, n).astype(np.int32),
                     np.zeros(9 * n, np.int32), 16),
        "nested_memory": (k_nested_memory, THREADS, r.integers(-20, 20, n).astype(np.float32), idx,
                          np.zeros(2 * n, np.float32), 16, n),
        "assign_numbers": (k_assign_numbers, THREADS, r.integers(-9, 9, n).astype(np.int32),
                           np.zeros(2 * n, np.int32), 16),
        "atomics": (k_atomics, THREADS, r.integers(-9, 9, n).astype(np.int32), np.full(n, 100, np.int32),
                    np.ones(n, np.float32), np.zeros(n, np.int32), 16),
        "store_edge": (k_store_edge, 3, np.arange(35, dtype=np.int32), np.zeros(35, np.int32), 35, 16),
        "while": (k_while, THREADS, r.integers(-20, 60, n).astype(np.int32), np.zeros(4 * n, np.int32), 40, 16),
        "nested_loops": (k_nested_loops, THREADS, r.integers(-2, 10, n).astype(np.int32),
                         np.zeros(2 * n, np.int32), 16),
        "mandelbrot": (mandelbrot.mandelbrot_kernel, (4, 12), np.zeros(12 * 64, np.int32), 64, -2.0, -1.2,
                       3.0 / 64, 2.4 / 12, 48, 16),
    }


@needs_vc
@pytest.mark.parametrize("case", sorted(vc_cases()))
def test_spirv_vc_runs_simd_control_flow_like_the_interpreter(case):
    import test_vc
    fn, grid, *args = vc_cases()[case]
    k = fn if isinstance(fn, cm.Kernel) else cm.kernel(fn)
    test_vc.run_both(k, grid, None, *args)


# --- errors -------------------------------------------------------------------------------------------------

def where(fn, snippet):
    lines, start = inspect.getsourcelines(fn)
    for i, line in enumerate(lines):
        if snippet in line:
            return start + i, line.index(snippet)
    raise AssertionError(f"{snippet!r} not in {fn.__name__}")


def e_width(x):
    v = cm.load(x, 0, 16)
    if cm.simd(v > 0):
        w = cm.load(x, 0, 8)
        if cm.simd(w > 0):
            v += 1
    cm.store(x, 0, v)


def e_scalar(x):
    s = cm.load(x, 0, 16)[0]
    if cm.simd(s > 0):
        s += 1


def e_outside(x):
    m = cm.simd(cm.load(x, 0, 16) > 0)


def e_type(x):
    v = cm.load(x, 0, 16)
    y = 0
    if cm.simd(v > 0):
        y = v + 1
    cm.store(x, 0, y)


def e_lane_exit_of_uniform_loop(x, n):
    v = cm.load(x, 0, 16)
    for i in range(n):
        if cm.simd(v > i):
            break
        v += 1
    cm.store(x, 0, v)


def e_kernel_exit(x):
    v = cm.load(x, 0, 16)
    if cm.simd(v > 0):
        return
    cm.store(x, 0, v)


def e_block_load(x):
    v = cm.load(x, 0, 16)
    if cm.simd(v > 0):
        v = cm.load_2d(x, (2, 8), 0, 0, 8, 2, 8).format(i32)


def e_two_masks(x):
    v = cm.load(x, 0, 16)
    while cm.simd(v > 0, v < 9):
        v -= 1


@pytest.mark.parametrize("fn,snippet,message", [
    (e_width, "w > 0", "cm.simd() mask of 8 lanes inside SIMD control flow of 16 lanes"),
    (e_scalar, "s > 0", "cm.simd() needs a register mask with one element per lane, got bool"),
    (e_outside, "cm.simd(", "cm.simd(mask) can only be the whole condition of an if, elif or while"),
    (e_type, "y = v + 1", "'y' is assigned vector<i32, 16> under cm.simd, which writes only the active "
                          "lanes of the 16-lane mask, but it holds int constant before"),
    (e_lane_exit_of_uniform_loop, "break", "'break' under 'if cm.simd' would leave the loop in some lanes only"),
    (e_kernel_exit, "return", "return under SIMD control flow (cm.simd) is not supported"),
    (e_block_load, "cm.load_2d", "cm.load_2d of 16 elements under SIMD control flow of 16 lanes is "
                                 "not supported yet"),
    (e_two_masks, "cm.simd(", "cm.simd() takes one argument, the mask"),
])
def test_errors_name_the_problem_and_the_place(fn, snippet, message):
    with pytest.raises(cm.CompileError) as info:
        compile_to_ir(fn, {"x": cm.ptr[i32], **({"n": i32} if "n" in inspect.signature(fn).parameters else {})},
                      {}, 16)
    err = info.value
    line, col = where(fn, snippet)
    assert (err.loc.file, err.loc.line) == (__file__, line), str(err)
    assert err.loc.col == col, str(err)
    assert message in err.message, str(err)
