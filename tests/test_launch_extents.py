"""Launch-time extents: top-level accesses whose offsets are affine in the thread ids,
constants and integer scalar arguments are checked against the grid and the arrays before
anything runs (cmlang/passes/buffer_extents.py ``affine_extents``, runtime AffineExtent)."""
import numpy as np
import pytest

import cmlang as cm
from cmlang import f32, i32
from cmlang.passes import affine_extents
from cmlang.runtime.binary import AffineExtent

THIS = __file__


@cm.kernel
def copy_shifted(x: cm.ptr[f32], y: cm.ptr[f32], n: i32):
    t = cm.thread_id(0)
    v = cm.load(x, t * 16, 16)
    cm.store(y, t * 16 + n, v)


@cm.kernel
def rows(x: cm.ptr[f32], y: cm.ptr[f32], skip: i32):
    r = cm.thread_id(1)
    c = cm.thread_id(0)
    v = cm.load(x, r * 32 + c * 8, 8)
    cm.store(y, skip * 2 + r * 32 + c * 8, v)


@cm.kernel
def product(x: cm.ptr[f32], y: cm.ptr[f32], w: i32):
    cm.store(y, 0, cm.load(x, cm.thread_id(0) * w, 8))


@cm.kernel
def guarded(x: cm.ptr[f32], y: cm.ptr[f32], n: i32):
    t = cm.thread_id(0)
    if t * 16 < n:
        cm.store(y, t * 16, cm.load(x, t * 16, 16))


@cm.kernel
def masked(x: cm.ptr[f32], y: cm.ptr[f32], n: i32):
    offs = cm.iota(i32, 16) + cm.thread_id(0) * 16
    cm.store(y, 0, cm.gather(x, offs, offs < n))


@cm.kernel
def descending(x: cm.ptr[f32], y: cm.ptr[f32]):
    t = cm.thread_id(0)
    cm.store(y, t * 8, cm.load(x, (7 - t) * 8, 8))


@cm.kernel
def scattered(x: cm.ptr[f32], y: cm.ptr[f32]):
    t = cm.thread_id(0)
    cm.scatter(y, cm.iota(i32, 8) * 3 + t, cm.load(x, 0, 8))


def _where(kernel, text):
    lines = open(THIS).read().splitlines()
    for i in range(kernel.fn.__code__.co_firstlineno - 1, len(lines)):
        if text in lines[i]:
            return f"{THIS}:{i + 1}:{lines[i].index(text) + 1}"
    raise AssertionError(text)


def _arrays(nx, ny):
    return np.arange(nx, dtype=np.float32), np.zeros(ny, np.float32)


def test_a_buffer_too_short_for_the_grid_is_a_launch_error():
    x, y = _arrays(64, 64)
    copy_shifted[4](x, y, 0)
    np.testing.assert_array_equal(y, x)
    with pytest.raises(cm.LaunchError) as e:
        copy_shifted[5](x, y, 0)
    assert str(e.value) == (f"copy_shifted(): buffer 'x' has 64 elements but the kernel needs 80 with grid "
                            f"(5,) (the access at {_where(copy_shifted, 'cm.load(x, t * 16, 16)')}, whose "
                            "offset grows with the thread ids and scalar arguments)")


def test_scalar_arguments_count():
    x, y = _arrays(64, 64)
    y[:] = -1
    with pytest.raises(cm.LaunchError, match=r"buffer 'y' has 64 elements but the kernel needs 67 with grid \(4,\)"):
        copy_shifted[4](x, y, 3)
    assert np.all(y == -1)          # nothing ran
    x2, y2 = _arrays(64, 67)
    copy_shifted[4](x2, y2, 3)
    np.testing.assert_array_equal(y2[3:], x2)


def test_two_dimensional_grids_and_multiples_of_arguments():
    x, y = _arrays(128, 256)
    rows[(4, 4)](x, y, 0)
    np.testing.assert_array_equal(y[:128], x)
    with pytest.raises(cm.LaunchError, match=r"buffer 'x' has 128 elements but the kernel needs 160 with grid \(4, 5\)"):
        rows[(4, 5)](x, y, 0)
    with pytest.raises(cm.LaunchError, match=r"buffer 'y' has 256 elements but the kernel needs 328 with grid \(4, 4\)"):
        rows[(4, 4)](x, y, 100)


def test_correct_launches_are_never_refused():
    x, y = _arrays(64, 64)
    guarded[100](x, y, 64)          # only threads with t * 16 < n store: no claim
    np.testing.assert_array_equal(y, x)
    out = np.zeros(16, np.float32)
    masked[1](x[:10].copy(), out, 10)                # the mask keeps the gather inside x
    np.testing.assert_array_equal(out[:10], x[:10])
    descending[8](x, y)             # a negative coefficient: the first thread reads the end
    np.testing.assert_array_equal(y, x.reshape(8, 8)[::-1].reshape(-1))
    with pytest.raises(cm.LaunchError, match=r"buffer 'y' has 64 elements but the kernel needs 72"):
        descending[9](x, y)
    y2 = np.zeros(8 * 3 + 2, np.float32)
    scattered[5](x, y2)             # offsets 3i + t: the largest is 3*7 + 4
    with pytest.raises(cm.LaunchError, match=r"buffer 'y' has 26 elements but the kernel needs 27"):
        scattered[6](x, y2)


def test_the_analysis_follows_affine_offsets_only():
    found = affine_extents(rows.ir_function(()))
    (load,), (store,) = found[0], found[1]
    assert (load.low, load.high, load.elems) == (0, 0, 8)
    assert load.terms == (("thread", 0, 8), ("thread", 1, 32))
    assert store.terms == (("arg", 2, 2), ("thread", 0, 8), ("thread", 1, 32))
    assert load.where == _where(rows, "cm.load(x, r * 32 + c * 8, 8)")
    assert (load.type_min, load.type_max) == (-2**31, 2**31 - 1)
    # a thread id times an argument is not affine; guarded and masked accesses may not run
    assert affine_extents(product.ir_function(())) == {}
    assert affine_extents(guarded.ir_function(())) == {}
    assert affine_extents(masked.ir_function(())) == {}
    (scatter,) = affine_extents(scattered.ir_function(()))[1]
    assert (scatter.low, scatter.high, scatter.terms) == (0, 21, (("thread", 0, 1),))


def test_wrapping_offsets_claim_nothing():
    e = AffineExtent(0, 15, (("thread", 0, 2**28),), 1, -2**31, 2**31 - 1)
    assert e.needed((8, 1, 1), ()) == 7 * 2**28 + 16
    assert e.needed((9, 1, 1), ()) is None       # 8 * 2**28 = 2**31 wraps in i32


def test_the_interpreter_reports_the_same_access_when_it_runs(monkeypatch):
    monkeypatch.setenv("CMLANG_INTERPRET", "1")
    x, y = _arrays(64, 64)
    with pytest.raises(cm.KernelRuntimeError, match="out-of-bounds load from 'x': index 64"):
        copy_shifted[5](x, y, 0)


@cm.kernel(simd=8)
def offset_by_register_parameter(x: cm.ptr[cm.f32], coeff: cm.vector[cm.f32, 4], n: cm.i32):
    base = cm.thread_id(0) * 8 + n
    cm.store(x, base, cm.load(x, base, 8) * coeff[0])


@pytest.mark.parametrize("interpret", [False, True])
def test_register_parameters_do_not_confuse_the_extents(interpret, monkeypatch):
    """A register parameter beside the scalars the extents follow (it is neither a pointer
    nor an integer scalar): a correct launch runs, a short buffer is still refused."""
    if interpret:
        monkeypatch.setenv("CMLANG_INTERPRET", "1")
    x = np.ones(32, np.float32)
    offset_by_register_parameter[4](x, [2.0, 0, 0, 0], 0)
    assert np.all(x == 2.0)
    if not interpret:
        with pytest.raises(cm.LaunchError, match="buffer 'x' has 32 elements but the kernel needs 40"):
            offset_by_register_parameter[4](x, [2.0, 0, 0, 0], 8)
