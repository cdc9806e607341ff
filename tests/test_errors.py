"""Bad input gives a clear error naming the problem and the place."""
import inspect

import numpy as np
import pytest

import cmlang as cm
from cmlang import f32, i32, vector


def line_of(fn, text):
    """Absolute line number of the first source line of ``fn`` containing ``text``."""
    lines, start = inspect.getsourcelines(fn)
    for i, line in enumerate(lines):
        if text in line:
            return start + i
    raise AssertionError(f"{text!r} not in {fn.__name__}")


def compile_error(fn, *args):
    with pytest.raises(cm.CompileError) as info:
        cm.kernel(fn).compile(*args)
    return str(info.value)


def k_unsupported(x: cm.ptr[f32]):
    v = cm.load(x, 0, 16)
    squares = [e * e for e in range(4)]
    cm.store(x, 0, v)


def test_unsupported_python_construct_names_file_line_col():
    msg = compile_error(k_unsupported, np.zeros(16, np.float32))
    line = line_of(k_unsupported, "squares =")
    assert f"test_errors.py:{line}:15:" in msg
    assert "unsupported Python construct" in msg and "comprehension" in msg
    assert "squares = [e * e for e in range(4)]" in msg       # the offending line is shown


def k_type_mismatch(x: cm.ptr[f32]):
    a = cm.load(x, 0, 16)
    b = cm.load(x, 16, 8)
    cm.store(x, 0, a + b)


def test_type_mismatch_names_both_types():
    msg = compile_error(k_type_mismatch, np.zeros(32, np.float32))
    assert f"test_errors.py:{line_of(k_type_mismatch, 'a + b')}:" in msg
    assert "vector<f32, 16>" in msg and "vector<f32, 8>" in msg


def k_region_oob(x: cm.ptr[f32]):
    v = cm.load(x, 0, 16)
    cm.store(x, 0, v[8:24])


def test_region_out_of_bounds():
    msg = compile_error(k_region_oob, np.zeros(16, np.float32))
    assert f"test_errors.py:{line_of(k_region_oob, 'v[8:24]')}:" in msg
    assert "out of bounds" in msg and "vector<f32, 16>" in msg


def k_store_type(x: cm.ptr[i32]):
    cm.store(x, 0, cm.full(vector[f32, 16], 1.5))


def test_storing_floats_to_an_int_buffer_is_an_error():
    msg = compile_error(k_store_type, np.zeros(16, np.int32))
    assert f"test_errors.py:{line_of(k_store_type, 'cm.store')}:" in msg
    assert "f32" in msg and "i32" in msg


def k_undefined(x: cm.ptr[f32]):
    cm.store(x, 0, cm.load(x, 0, 16) * scale_factor)  # noqa: F821


def test_undefined_name():
    msg = compile_error(k_undefined, np.zeros(16, np.float32))
    assert "name 'scale_factor' is not defined" in msg


def k_mask_condition(x: cm.ptr[f32]):
    v = cm.load(x, 0, 16)
    if v > 0:
        cm.store(x, 0, v)


def test_mask_as_if_condition_suggests_any_all():
    msg = compile_error(k_mask_condition, np.zeros(16, np.float32))
    assert ".any()" in msg and ".all()" in msg


def k_ok(x: cm.ptr[f32], y: cm.ptr[f32], a: f32, n: i32):
    cm.store(y, 16, a * cm.load(x, 0, 32))


@pytest.fixture
def ok_kernel():
    return cm.kernel(k_ok)


def launch_error(call):
    with pytest.raises(cm.LaunchError) as info:
        call()
    return str(info.value)


def test_wrong_argument_count(ok_kernel):
    x = np.zeros(64, np.float32)
    msg = launch_error(lambda: ok_kernel[1](x, x, 1.0))
    assert "k_ok() takes 4 arguments (x, y, a, n), got 3" in msg


def test_wrong_dtype(ok_kernel):
    msg = launch_error(lambda: ok_kernel[1](np.zeros(64, np.float64), np.zeros(64, np.float32), 1.0, 1))
    assert "'x'" in msg and "float64" in msg and "float32" in msg


def test_buffer_too_small_for_constant_offset_access(ok_kernel):
    msg = launch_error(lambda: ok_kernel[1](np.zeros(64, np.float32), np.zeros(40, np.float32), 1.0, 1))
    assert "'y'" in msg and "40" in msg and "48" in msg


def test_scalar_of_the_wrong_kind(ok_kernel):
    x = np.zeros(64, np.float32)
    msg = launch_error(lambda: ok_kernel[1](x, x, 1.0, 2.5))
    assert "'n'" in msg and "i32" in msg


def test_calling_a_kernel_without_a_grid(ok_kernel):
    msg = launch_error(lambda: ok_kernel(1, 2, 3, 4))
    assert "k_ok[grid]" in msg


def test_missing_annotation():
    def k(x):
        pass
    with pytest.raises(cm.CompileError, match="parameter 'x' needs a type annotation"):
        cm.kernel(k)


def test_host_call_of_a_builtin_is_explained():
    with pytest.raises(Exception, match="only be used inside"):
        cm.load(None, 0, 16)
