"""Rules that were stricter than CM and cost ports time (issue 17, item 8), now as in CM/C:
a 1 x N matrix region fits an N-vector, a compound assignment converts back to the variable's
type (``i += 1`` on a u16 loop counter), and a name with different types on the two paths
of an ``if`` is an error only where it is read after the if."""
import numpy as np
import pytest

import cmlang as cm
from cmlang import f16, f32, i32, u16, vector
from cmlang.errors import CompileError

THREADS = 2


def k_row_into_vector(x: cm.ptr[f32], out: cm.ptr[f32], i: i32):
    t = cm.thread_id(0)
    m = cm.load(x, t * 32, (4, 8), 8)
    v = cm.zeros(vector[f32, 8])
    v[...] = m[1:2, :]                       # a 1 x 8 region into an 8-vector
    w = cm.zeros(vector[f32, 16])
    w[8:16] = m.select(1, 1, 8, 1, i, 0)     # CM select<1,1,8,1>(i, 0)
    c: vector[f32, 4] = m[0:4, 2:3]          # a 4 x 1 column as a 4-vector
    cm.store(out, t * 28, v)
    cm.store(out, t * 28 + 8, w)
    cm.store(out, t * 28 + 24, c)


def test_one_row_matrix_region_fits_a_vector(mode, rng):
    x = rng.uniform(-5, 5, THREADS * 32).astype(np.float32)
    out = np.zeros(THREADS * 28, np.float32)
    cm.kernel(k_row_into_vector)[THREADS](x, out, 3)
    for t in range(THREADS):
        m = x[t * 32:(t + 1) * 32].reshape(4, 8)
        want = np.concatenate([m[1], np.zeros(8, np.float32), m[3], m[:, 2]])
        np.testing.assert_array_equal(out[t * 28:(t + 1) * 28], want)


def k_row_mismatch(x: cm.ptr[f32]):
    m = cm.load(x, 0, (4, 8), 8)
    v = cm.zeros(vector[f32, 8])
    v[...] = m[0:2, 0:4]


def test_other_shapes_still_differ():
    with pytest.raises(CompileError) as e:
        cm.kernel(k_row_mismatch).compile(np.zeros(32, np.float32))
    assert "cannot assign a matrix<f32, 2, 4> to a region of vector<f32, 8> of type vector<f32, 8>" in str(e.value)


def k_u16_counter(out: cm.ptr[i32], n: u16):
    t = cm.thread_id(0)
    i = u16(0)
    total = 0
    while i < n:
        total += i
        i += 1                  # u16 + int is i32 in C, converted back to u16 as C and CM do
    acc = cm.zeros(vector[f16, 8])
    acc += 1.5                  # stays f16
    h = cm.u16(65535)
    h += 1                      # wraps like C's unsigned short
    res = cm.zeros(vector[i32, 4])
    res[0] = total
    res[1] = i
    res[2] = acc[3]
    res[3] = h
    cm.store(out, t * 4, res)


def test_compound_assignment_keeps_the_variable_type(mode):
    out = np.zeros(THREADS * 4, np.int32)
    cm.kernel(k_u16_counter)[THREADS](out, 10)
    np.testing.assert_array_equal(out.reshape(THREADS, 4), [[45, 10, 1, 0]] * THREADS)


def k_branch_types(x: cm.ptr[f32], out: cm.ptr[f32], n: i32):
    v = cm.load(x, 0, 8)
    if n > 0:
        tmp = v.astype(f16)
        v = v * 2.0
    else:
        tmp = v
        v = v + 1.0
    cm.store(out, 0, v)


def k_branch_types_read(x: cm.ptr[f32], out: cm.ptr[f32], n: i32):
    v = cm.load(x, 0, 8)
    if n > 0:
        tmp = v.astype(f16)
    else:
        tmp = v
    cm.store(out, 0, tmp)


@pytest.mark.parametrize("n", [0, 1])
def test_branch_type_difference_matters_only_when_read(mode, n):
    x = np.arange(8, dtype=np.float32)
    out = np.zeros(8, np.float32)
    cm.kernel(k_branch_types)[1](x, out, n)
    np.testing.assert_array_equal(out, x * 2 if n > 0 else x + 1)
    with pytest.raises(CompileError) as e:
        cm.kernel(k_branch_types_read).compile(x, out, n)
    assert ("variable 'tmp' has type vector<f16, 8> on one path and vector<f32, 8> on the other (the if "
            f"at line {k_branch_types_read.__code__.co_firstlineno + 2}); convert it so that both agree") in str(e.value)
    assert e.value.loc.line == k_branch_types_read.__code__.co_firstlineno + 6
