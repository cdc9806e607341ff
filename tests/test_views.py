"""Registers follow numpy's view rules: a region read is a view of its register (numpy slice, CM
``vector_ref``/``matrix_ref``), writes through it write the register, ``copy()`` makes an
independent one, and ``@cm.func`` register arguments are references. Each kernel runs on the
device and in the interpreter and is checked against the same steps written with numpy."""
import importlib.util

import numpy as np
import pytest

import cmlang as cm
from cmlang import f32, i32, u8, u32, vector
from cmlang.errors import CompileError

THREADS = 4

needs_vc = pytest.mark.skipif(importlib.util.find_spec("dpcpp_llvm_spirv") is None,
                              reason="the spirv-vc target needs the dpcpp-llvm-spirv wheel")


def run(fn, threads, *args, simd=16):
    cm.kernel(simd=simd)(fn)[threads](*args)


# --- vector views: slices, select, [...] ------------------------------------------------------

def k_vector_views(x: cm.ptr[f32], out: cm.ptr[f32]):
    t = cm.thread_id(0)
    v = cm.load(x, t * 32, 32)
    r = v[0:8]
    r += 1.0                   # in place: v[0:8] changes
    r[0] = 100.0
    s = v.select(4, 2, 8)      # v[8:16:2]
    s[...] = -7.0
    back = v[31:15:-2]         # a reversed view
    back[1:3] = r[4:6]
    late = v[0:4]
    v[1] = 55.0                # a write to v is seen by its views
    cm.store(out, t * 44, v)
    cm.store(out, t * 44 + 32, r)
    cm.store(out, t * 44 + 40, late)


def ref_vector_views(v):
    v = v.copy()
    r = v[0:8]
    r += 1.0
    r[0] = 100.0
    s = v[8:16:2]
    s[...] = -7.0
    back = v[31:15:-2]
    back[1:3] = r[4:6]
    late = v[0:4]
    v[1] = 55.0
    return np.concatenate([v, r, late])


@pytest.mark.parametrize("simd", [8, 16, 32])
def test_vector_views_write_their_register(mode, rng, simd):
    x = rng.uniform(-10, 10, THREADS * 32).astype(np.float32)
    out = np.zeros(THREADS * 44, np.float32)
    run(k_vector_views, THREADS, x, out, simd=simd)
    want = np.concatenate([ref_vector_views(x[t * 32:(t + 1) * 32]) for t in range(THREADS)])
    np.testing.assert_array_equal(out, want)


# --- matrix views: rows, columns, blocks, a run-time row --------------------------------------

def k_matrix_views(x: cm.ptr[i32], out: cm.ptr[i32], i: i32):
    t = cm.thread_id(0)
    m = cm.load(x, t * 48, (6, 8), 8)
    row = m.row(1)
    row *= 2
    col = m.column(3)
    col[0:6:2] = -1
    block = m[2:4, 4:8]
    block += 1000
    dyn = m[i]                 # a run-time row
    dyn[7] = 77
    r5 = m[5]
    r5[0] = r5[1] + r5[2]
    cm.store(out, t * 56, m.format(i32))
    cm.store(out, t * 56 + 48, row)


def ref_matrix_views(m, i):
    m = m.copy()
    row = m[1]
    row *= 2
    col = m[:, 3]
    col[0:6:2] = -1
    block = m[2:4, 4:8]
    block += 1000
    m[i][7] = 77
    r5 = m[5]
    r5[0] = r5[1] + r5[2]
    return np.concatenate([m.reshape(-1), row])


@pytest.mark.parametrize("simd", [8, 16, 32])
def test_matrix_views_write_their_register(mode, rng, simd):
    x = rng.integers(-50, 50, THREADS * 48).astype(np.int32)
    out = np.zeros(THREADS * 56, np.int32)
    run(k_matrix_views, THREADS, x, out, 4, simd=simd)
    want = np.concatenate([ref_matrix_views(x[t * 48:(t + 1) * 48].reshape(6, 8), 4) for t in range(THREADS)])
    np.testing.assert_array_equal(out, want)


# --- views of views, format views, copy() -------------------------------------------------------

def k_views_of_views(x: cm.ptr[u32], out: cm.ptr[u32]):
    t = cm.thread_id(0)
    v = cm.load(x, t * 16, 16)
    a = v[2:14]
    b = a[1:9:2]               # v[3:11:2]
    b[0] = 1
    bytes_ = v.format(u8)      # a format view: 64 bytes of v
    bytes_[4:8] = 0xAB         # v[1] = 0xABABABAB
    high = v[8:16].format(u8, 8, 4)
    high[:, 3] = 0             # the top byte of each v[8:16]
    c = v[0:4].copy()          # an independent register
    c += 1
    cm.store(out, t * 20, v)
    cm.store(out, t * 20 + 16, c)


def ref_views_of_views(v):
    v = v.copy()
    a = v[2:14]
    b = a[1:9:2]
    b[0] = 1
    bytes_ = v.view(np.uint8)
    bytes_[4:8] = 0xAB
    high = v[8:16].view(np.uint8).reshape(8, 4)
    high[:, 3] = 0
    c = v[0:4].copy()
    c += 1
    return np.concatenate([v, c])


def test_views_of_views_format_and_copy(mode, rng):
    x = rng.integers(0, 2 ** 32, THREADS * 16, dtype=np.uint64).astype(np.uint32)
    out = np.zeros(THREADS * 20, np.uint32)
    run(k_views_of_views, THREADS, x, out)
    want = np.concatenate([ref_views_of_views(x[t * 16:(t + 1) * 16]) for t in range(THREADS)])
    np.testing.assert_array_equal(out, want)


# --- rebinding never writes; views keep the register they were taken from -----------------------

def k_rebinding(x: cm.ptr[f32], out: cm.ptr[f32]):
    t = cm.thread_id(0)
    v = cm.load(x, t * 8, 8)
    r = v[0:4]
    r = r * 2.0                # rebinds r: v unchanged
    w = v[4:8]
    v = v + 1.0                # a new register: w still views the old one
    w[0] = 9.0
    cm.store(out, t * 16, v)
    cm.store(out, t * 16 + 8, r)
    cm.store(out, t * 16 + 12, w)


def test_rebinding_a_name_writes_nothing(mode, rng):
    x = rng.uniform(-4, 4, THREADS * 8).astype(np.float32)
    out = np.zeros(THREADS * 16, np.float32)
    run(k_rebinding, THREADS, x, out)
    for t in range(THREADS):
        v = x[t * 8:(t + 1) * 8].copy()
        r = v[0:4]
        r = r * 2.0
        w = v[4:8]
        v = v + 1.0
        w[0] = 9.0
        np.testing.assert_array_equal(out[t * 16:(t + 1) * 16], np.concatenate([v, r, w]))


# --- views in tuples -----------------------------------------------------------------------------

def k_tuple_views(x: cm.ptr[i32], out: cm.ptr[i32]):
    t = cm.thread_id(0)
    v = cm.load(x, t * 8, 8)
    lo, hi = v[0:4], v[4:8]
    lo += hi
    pair = (v[0:2], v[6:8])
    first, last = pair
    last[...] = first
    cm.store(out, t * 8, v)


def test_views_in_tuples(mode, rng):
    x = rng.integers(-9, 9, THREADS * 8).astype(np.int32)
    out = np.zeros(THREADS * 8, np.int32)
    run(k_tuple_views, THREADS, x, out)
    for t in range(THREADS):
        v = x[t * 8:(t + 1) * 8].copy()
        lo, hi = v[0:4], v[4:8]
        lo += hi
        first, last = v[0:2], v[6:8]
        last[...] = first
        np.testing.assert_array_equal(out[t * 8:(t + 1) * 8], v)


# --- control flow: writes through views in if / for / while ------------------------------------

def k_control_flow(x: cm.ptr[i32], out: cm.ptr[i32], n: i32):
    t = cm.thread_id(0)
    v = cm.load(x, t * 16, 16)
    head = v[0:8]
    tail = v[8:16]
    if n > 2:
        head[0] = 1000
    else:
        tail[0] = 2000
    for k in range(n):
        head[1] += k
        part = v.select(2, 1, 2 + 2 * (k % 3))
        part -= 1
    j = 0
    while j < n:
        tail[j % 8] *= 3
        j += 1
    cm.store(out, t * 16, v)


def ref_control_flow(v, n):
    v = v.copy()
    head, tail = v[0:8], v[8:16]
    if n > 2:
        head[0] = 1000
    else:
        tail[0] = 2000
    for k in range(n):
        head[1] += k
        off = 2 + 2 * (k % 3)
        v[off:off + 2] -= 1
    j = 0
    while j < n:
        tail[j % 8] *= 3
        j += 1
    return v


@pytest.mark.parametrize("n", [0, 2, 5])
def test_writes_through_views_in_control_flow(mode, rng, n):
    x = rng.integers(-20, 20, THREADS * 16).astype(np.int32)
    out = np.zeros(THREADS * 16, np.int32)
    run(k_control_flow, THREADS, x, out, n)
    want = np.concatenate([ref_control_flow(x[t * 16:(t + 1) * 16], n) for t in range(THREADS)])
    np.testing.assert_array_equal(out, want)


# --- @cm.func register arguments are references -----------------------------------------------

@cm.func
def bump(r, amount):
    r += amount            # in place: the caller's register


@cm.func
def set_ends(r, a, b):
    r[0] = a
    r[r.size - 1] = b


@cm.func
def doubled(r):
    r = r * 2              # a rebinding: the caller's register is untouched
    return r


@cm.func
def clamp_first(r, limit):
    if r[0] > limit:
        r[0] = limit
        return 1
    r[1] = -1
    return 0


@cm.func
def nested(r):
    bump(r[0:2], 10)
    set_ends(r, 7, 8)


def k_func_refs(x: cm.ptr[i32], out: cm.ptr[i32], limit: i32):
    t = cm.thread_id(0)
    v = cm.load(x, t * 8, 8)
    w = cm.load(x, t * 8, 8)
    bump(v, 1)
    set_ends(v[2:6], 50, 60)       # a view argument: v[2] and v[5]
    d = doubled(v)
    clamped = clamp_first(w, limit)
    nested(w[2:8])
    res = cm.zeros(vector[i32, 8])
    res[0] = clamped
    for k in range(2):
        bump(res[4:8], k + 1)
    cm.store(out, t * 32, v)
    cm.store(out, t * 32 + 8, d)
    cm.store(out, t * 32 + 16, w)
    cm.store(out, t * 32 + 24, res)


def ref_func_refs(v, limit):
    v = v.copy()
    w = v.copy()
    v += 1
    s = v[2:6]
    s[0], s[-1] = 50, 60
    d = v * 2
    if w[0] > limit:
        w[0] = limit
        clamped = 1
    else:
        w[1] = -1
        clamped = 0
    r = w[2:8]
    r[0:2] += 10
    r[0], r[-1] = 7, 8
    res = np.zeros(8, np.int32)
    res[0] = clamped
    res[4:8] += 1 + 2
    return np.concatenate([v, d, w, res])


@pytest.mark.parametrize("limit", [-100, 100])
def test_func_register_arguments_are_references(mode, rng, limit):
    x = rng.integers(-50, 50, THREADS * 8).astype(np.int32)
    out = np.zeros(THREADS * 32, np.int32)
    run(k_func_refs, THREADS, x, out, limit)
    want = np.concatenate([ref_func_refs(x[t * 8:(t + 1) * 8], limit) for t in range(THREADS)])
    np.testing.assert_array_equal(out, want)


# --- errors ------------------------------------------------------------------------------------

def k_two_views(x: cm.ptr[f32], n: i32):
    v = cm.load(x, 0, 8)
    r = v[0:4]
    if n > 0:
        r = v[4:8]
    r[0] = 1.0
    cm.store(x, 0, v)


def k_temporary(x: cm.ptr[f32]):
    v = cm.load(x, 0, 8)
    (v + 1.0)[0:4][0] = 1.0


def test_view_errors():
    with pytest.raises(CompileError) as e:
        cm.kernel(k_two_views).compile(np.zeros(8, np.float32), 1)
    assert "cannot write through 'r': it is a view of different registers or regions on the two paths " \
           "of the if at line" in str(e.value)
    assert e.value.loc.line == k_two_views.__code__.co_firstlineno + 5
    with pytest.raises(CompileError) as e:
        cm.kernel(k_temporary).compile(np.zeros(8, np.float32))
    assert "cannot assign to a region of a value that is not a variable's register or a view of one" \
        in str(e.value)


# --- spirv-vc lowers the same IR (host emulation against the interpreter) -------------------------

@needs_vc
@pytest.mark.parametrize("case", ["vector", "matrix", "funcs"])
def test_spirv_vc_lowers_views(case, rng):
    import test_vc
    fn, args = {
        "vector": (k_vector_views, (rng.uniform(-9, 9, THREADS * 32).astype(np.float32),
                                    np.zeros(THREADS * 44, np.float32))),
        "matrix": (k_matrix_views, (rng.integers(-50, 50, THREADS * 48).astype(np.int32),
                                    np.zeros(THREADS * 56, np.int32), 3)),
        "funcs": (k_func_refs, (rng.integers(-50, 50, THREADS * 8).astype(np.int32),
                                np.zeros(THREADS * 32, np.int32), 0)),
    }[case]
    test_vc.run_both(cm.kernel(fn), THREADS, None, *args, rtol=0)


# --- what is not a view ---------------------------------------------------------------------------

@cm.func
def zero_first(r):
    r[0] = 0


def k_not_views(x: cm.ptr[u32], out: cm.ptr[u32], n: i32):
    t = cm.thread_id(0)
    v = cm.load(x, t * 8, 8)
    zero_first(cm.abs(v))          # a builtin's result is a new register, even when unchanged
    zero_first(v + 0)
    acc = v[0:4]                   # a view the loop rebinds: it becomes a register of its own
    for k in range(n):
        acc = acc + v[4:8]
    acc[1] = 5
    cm.store(out, t * 12, v)
    cm.store(out, t * 12 + 8, acc)


def test_results_of_builtins_and_rebound_views_are_not_views(mode, rng):
    x = rng.integers(1, 100, THREADS * 8).astype(np.uint32)
    out = np.zeros(THREADS * 12, np.uint32)
    run(k_not_views, THREADS, x, out, 3)
    for t in range(THREADS):
        v = x[t * 8:(t + 1) * 8]
        acc = v[0:4] + 3 * v[4:8]
        acc[1] = 5
        np.testing.assert_array_equal(out[t * 12:(t + 1) * 12], np.concatenate([v, acc]))


@cm.func
def inc_typed(r: vector[i32, 4], by: i32):
    r += by                    # the annotation keeps the type: still the caller's register


@cm.func
def inc_converted(r: vector[f32, 4]):
    r += 1.0                   # converted from i32: a register of the func's own


def k_annotated_refs(x: cm.ptr[i32], out: cm.ptr[i32]):
    t = cm.thread_id(0)
    v = cm.load(x, t * 8, 8)
    inc_typed(v[4:8], 10)
    inc_converted(v[0:4])
    cm.store(out, t * 8, v)


def test_annotated_register_parameters(mode, rng):
    x = rng.integers(-9, 9, THREADS * 8).astype(np.int32)
    out = np.zeros(THREADS * 8, np.int32)
    run(k_annotated_refs, THREADS, x, out)
    want = x.reshape(THREADS, 8).copy()
    want[:, 4:8] += 10
    np.testing.assert_array_equal(out.reshape(THREADS, 8), want)


def k_break_views(x: cm.ptr[i32], out: cm.ptr[i32], limit: i32):
    t = cm.thread_id(0)
    v = cm.load(x, t * 16, 16)
    counts = cm.zeros(vector[i32, 8])
    low = counts[0:4]
    for k in range(16):
        if v[k] > limit:
            break
        if v[k] < 0:
            continue
        low[k % 4] += v[k]
    k2 = 0
    high = counts[4:8]
    while True:
        high[k2 % 4] += 1
        k2 += 1
        if k2 >= limit:
            break
    cm.store(out, t * 8, counts)


@pytest.mark.parametrize("limit", [3, 30])
def test_writes_through_views_in_loops_with_break(mode, rng, limit):
    x = rng.integers(-10, 40, THREADS * 16).astype(np.int32)
    out = np.zeros(THREADS * 8, np.int32)
    run(k_break_views, THREADS, x, out, limit)
    for t in range(THREADS):
        v = x[t * 16:(t + 1) * 16]
        counts = np.zeros(8, np.int32)
        for k in range(16):
            if v[k] > limit:
                break
            if v[k] < 0:
                continue
            counts[k % 4] += v[k]
        for k2 in range(max(limit, 1)):
            counts[4 + k2 % 4] += 1
        np.testing.assert_array_equal(out[t * 8:(t + 1) * 8], counts)


def k_root_rebound_in_loop(x: cm.ptr[f32], out: cm.ptr[f32], n: i32):
    t = cm.thread_id(0)
    v = cm.load(x, t * 8, 8)
    first = v[0:4]
    for k in range(n):
        v = v + 1.0            # a new register each time: first keeps the loaded one
    cm.store(out, t * 12, v)
    cm.store(out, t * 12 + 8, first)


def test_views_keep_their_register_when_a_loop_rebinds_the_variable(mode, rng):
    x = rng.uniform(-3, 3, THREADS * 8).astype(np.float32)
    out = np.zeros(THREADS * 12, np.float32)
    run(k_root_rebound_in_loop, THREADS, x, out, 3)
    for t in range(THREADS):
        v = x[t * 8:(t + 1) * 8]
        first = v[0:4]
        for _ in range(3):
            v = v + np.float32(1.0)
        np.testing.assert_array_equal(out[t * 12:(t + 1) * 12], np.concatenate([v, first]))
