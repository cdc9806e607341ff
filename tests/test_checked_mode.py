"""Checked mode (``CMLANG_CHECK=1`` / ``@cm.kernel(check=True)``): bounds checks compiled into
the device code (cmlang/passes/bounds_checks.py).

Each kind of out-of-bounds access is run three ways: on the device (the SIMT target on the
CPU runtime), in the interpreter, and as spirv-vc code on the host emulator
(tests/vc_emulator.py) with the launcher's hidden arguments; all three must give the same
report, and the report's fields are checked against what the access did.  In-bounds launches
give the same results with and without checked mode."""
import importlib
import re

import numpy as np
import pytest

import cmlang as cm
from cmlang import f32, i32
from cmlang.runtime.bounds import ERROR_WORDS, checked_fault
from cmlang.types import PtrType

THIS = __file__


@cm.kernel(check=True)
def load_k(x: cm.ptr[f32], y: cm.ptr[f32], n: i32):
    t = cm.thread_id(0)
    v = cm.load(x, t * 16 + n, 16)
    cm.store(y, t * 16, v)


@cm.kernel(check=True)
def store_k(x: cm.ptr[f32], y: cm.ptr[f32], n: i32):
    t = cm.thread_id(0)
    v = cm.load(x, t * 16, 16)
    cm.store(y, t * 16 + n, v)


@cm.kernel(check=True)
def load2d_k(x: cm.ptr[f32], y: cm.ptr[f32], n: i32):
    m = cm.load(x, n, (4, 8), 16)
    cm.store(y, 0, m, 8)


@cm.kernel(check=True)
def store2d_k(x: cm.ptr[f32], y: cm.ptr[f32], n: i32):
    m = cm.load(x, 0, (4, 8), 8)
    cm.store(y, n, m, 16)


@cm.kernel(check=True)
def block_load_k(x: cm.ptr[f32], y: cm.ptr[f32], n: i32):
    m = cm.load_2d(x, (4, 8), 0, n, 16, 8, 16)
    cm.store(y, 0, m, 8)


@cm.kernel(check=True)
def block_store_k(x: cm.ptr[f32], y: cm.ptr[f32], n: i32):
    m = cm.load(x, 0, (4, 8), 8)
    cm.store_2d(y, m, 4, n, 16, 8, 16)


@cm.kernel(check=True)
def gather_k(x: cm.ptr[f32], y: cm.ptr[f32], n: i32):
    offs = cm.iota(i32, 16) * 4 + n
    g = cm.gather(x, offs, offs < 66)
    cm.store(y, 0, g)


@cm.kernel(check=True)
def scatter_k(x: cm.ptr[f32], y: cm.ptr[f32], n: i32):
    v = cm.load(x, 0, 16)
    cm.scatter(y, cm.iota(i32, 16) * 2 + n, v)


@cm.kernel(check=True)
def atomic_k(x: cm.ptr[f32], y: cm.ptr[f32], n: i32):
    t = cm.thread_id(0)
    cm.atomic_add(y, cm.iota(i32, 16) + t * 16 + n, cm.load(x, 0, 16))


@cm.kernel(check=True)
def atomic_scalar_k(x: cm.ptr[f32], y: cm.ptr[f32], n: i32):
    cm.atomic_add(y, cm.thread_id(0) * 20 + n, 1.0)


@cm.kernel(check=True)
def slm_k(x: cm.ptr[f32], y: cm.ptr[f32], n: i32):
    tile = cm.slm(f32, 32)
    cm.store(tile, n, cm.load(x, 0, 16))
    cm.barrier()
    cm.store(y, 0, cm.load(tile, 0, 16))


@cm.kernel(check=True)
def rdregion_k(x: cm.ptr[f32], y: cm.ptr[f32], n: i32):
    v = cm.load(x, 0, 16)
    cm.store(y, 0, v[n:n + 4])


@cm.kernel(check=True)
def wrregion_k(x: cm.ptr[f32], y: cm.ptr[f32], n: i32):
    v = cm.load(x, 0, 16)
    v[n:n + 4] = cm.full(cm.vector[f32, 4], 7.0)
    cm.store(y, 0, v)


@cm.kernel(check=True)
def extract_k(x: cm.ptr[f32], y: cm.ptr[f32], n: i32):
    v = cm.load(x, 0, 16)
    cm.store(y, 0, v * v[n])


@cm.kernel(check=True)
def insert_k(x: cm.ptr[f32], y: cm.ptr[f32], n: i32):
    v = cm.load(x, 0, 16)
    v[n] = 5.0
    cm.store(y, 0, v)


@cm.kernel(check=True)
def iselect_k(x: cm.ptr[f32], y: cm.ptr[f32], n: i32):
    v = cm.load(x, 0, 16)
    cm.store(y, 0, v.iselect(cm.iota(i32, 16) + n))


def _line_of(kernel, text):
    """1-based line and 1-based column of ``text`` inside ``kernel``'s source in this file."""
    lines = open(THIS).read().splitlines()
    start = kernel.fn.__code__.co_firstlineno
    for i in range(start - 1, len(lines)):
        if text in lines[i]:
            return i + 1, lines[i].index(text) + 1
    raise AssertionError(text)


# kernel, grid, (x size, y size), bad n, good n, the access's text, the report's middle part
CASES = {
    "load": (load_k, 4, (64, 64), 1, 0, "cm.load(x, t * 16 + n, 16)",
             "out-of-bounds load from 'x': index 64 (element 15 of the access), buffer has 64 elements",
             (3, 0, 0)),
    "store": (store_k, 4, (64, 64), 3, 0, "cm.store(y, t * 16 + n, v)",
              "out-of-bounds store to 'y': index 64 (element 13 of the access), buffer has 64 elements",
              (3, 0, 0)),
    "load2d": (load2d_k, 1, (64, 32), 20, 0, "cm.load(x, n, (4, 8), 16)",
               "out-of-bounds 2-D load from 'x': index 68 (element 24 of the access), buffer has 64 elements",
               (0, 0, 0)),
    "store2d": (store2d_k, 1, (32, 64), 17, 0, "cm.store(y, n, m, 16)",
                "out-of-bounds 2-D store to 'y': index 65 (element 24 of the access), buffer has 64 elements",
                (0, 0, 0)),
    "block_load_2d": (block_load_k, 1, (64, 32), 2, 0, "cm.load_2d(x, (4, 8), 0, n, 16, 8, 16)",
                      "out-of-bounds 2-D block load from 'x': index 64 (element 16 of the access), "
                      "buffer has 64 elements", (0, 0, 0)),
    "block_store_2d": (block_store_k, 1, (32, 64), 3, 0, "cm.store_2d(y, m, 4, n, 16, 8, 16)",
                       "out-of-bounds 2-D block store to 'y': index 68 (element 8 of the access), "
                       "buffer has 64 elements", (0, 0, 0)),
    # n=6: the element past the end (66) is masked off, no fault
    "gather": (gather_k, 1, (64, 16), 5, 6, "cm.gather(x, offs, offs < 66)",
               "out-of-bounds gather from 'x': index 65 (element 15 of the access), buffer has 64 elements",
               (0, 0, 0)),
    "scatter": (scatter_k, 1, (16, 32), 3, 0, "cm.scatter(y, cm.iota(i32, 16) * 2 + n, v)",
                "out-of-bounds scatter to 'y': index 33 (element 15 of the access), buffer has 32 elements",
                (0, 0, 0)),
    "atomic": (atomic_k, 2, (16, 32), 5, 0, "cm.atomic_add(y, cm.iota(i32, 16) + t * 16 + n, cm.load(x, 0, 16))",
               "out-of-bounds atomic add on 'y': index 32 (element 11 of the access), buffer has 32 elements",
               (1, 0, 0)),
    "atomic_scalar": (atomic_scalar_k, 2, (16, 32), 13, 0, "cm.atomic_add(y, cm.thread_id(0) * 20 + n, 1.0)",
                      "out-of-bounds atomic add on 'y': index 33 (element 0 of the access), buffer has 32 elements",
                      (1, 0, 0)),
    "slm": (slm_k, 1, (16, 16), 20, 0, "cm.store(tile, n, cm.load(x, 0, 16))",
            "out-of-bounds store to 'tile' (SLM): index 32 (element 12 of the access), buffer has 32 elements",
            (0, 0, 0)),
    "rdregion": (rdregion_k, 1, (16, 4), 14, 12, "v[n:n + 4]",
                 "rdregion index out of range: index 16 (element 2 of the region), the register has 16 elements",
                 (0, 0, 0)),
    "wrregion": (wrregion_k, 1, (16, 16), -1, 3, "v[n:n + 4] = cm.full(cm.vector[f32, 4], 7.0)",
                 "wrregion index out of range: index -1 (element 0 of the region), the register has 16 elements",
                 (0, 0, 0)),
    "extract": (extract_k, 1, (16, 16), 16, 15, "v[n]",
                "extract index out of range: index 16, the register has 16 elements", (0, 0, 0)),
    "insert": (insert_k, 1, (16, 16), 17, 0, "v[n] = 5.0",
               "insert index out of range: index 17, the register has 16 elements", (0, 0, 0)),
    "iselect": (iselect_k, 1, (16, 16), 3, 0, "v.iselect(cm.iota(i32, 16) + n)",
                "iselect index out of range: index 16 (element 13 of the indices), the register has 16 elements",
                (0, 0, 0)),
}


def _args(sizes, n):
    x = np.arange(sizes[0], dtype=np.float32)
    y = np.full(sizes[1], -1.0, np.float32)
    return [x, y, n]


def _expected(name):
    kernel, grid, sizes, bad, good, text, middle, thread = CASES[name]
    line, col = _line_of(kernel, text)
    return (f"{THIS}:{line}:{col}: {middle}; CM thread (thread_id={thread}, group_id={thread}, "
            "local_id=(0, 0, 0))")


def _report(error):
    return str(error).splitlines()[0]


@pytest.mark.parametrize("name", sorted(CASES))
def test_device_reports_the_interpreters_words(name, monkeypatch):
    kernel, grid, sizes, bad, good, text, middle, thread = CASES[name]
    with pytest.raises(cm.KernelRuntimeError) as device:
        kernel[grid](*_args(sizes, bad))
    monkeypatch.setenv("CMLANG_INTERPRET", "1")
    with pytest.raises(cm.KernelRuntimeError) as interpreter:
        kernel[grid](*_args(sizes, bad))
    assert _report(device.value) == _report(interpreter.value) == _expected(name)
    assert str(device.value) == str(interpreter.value)    # the source line and caret too
    assert device.value.thread_id == interpreter.value.thread_id == thread


@pytest.mark.parametrize("name", sorted(CASES))
def test_in_bounds_results_are_unchanged(name):
    kernel, grid, sizes, bad, good, text, middle, thread = CASES[name]
    checked = _args(sizes, good)
    kernel[grid](*checked)
    plain = _args(sizes, good)
    from cmlang.runtime.launcher import launch
    launch(kernel.specialization((), "spirv", kernel_profile(), checked=False).binary, grid, None, plain)
    np.testing.assert_array_equal(checked[1], plain[1])
    assert not np.all(checked[1] == -1.0)          # the kernel wrote something


def kernel_profile():
    from cmlang.kernel import _current_profile
    return _current_profile()


def test_checked_mode_is_off_by_default_and_part_of_the_cache_key(monkeypatch):
    from cmlang import cache
    plain = cm.kernel(store_k.fn)
    assert not plain.checked_mode()
    monkeypatch.setenv("CMLANG_CHECK", "1")
    assert plain.checked_mode()
    assert cache.kernel_key(plain, (), "spirv", "cpu", True) != cache.kernel_key(plain, (), "spirv", "cpu", False)
    with pytest.raises(cm.KernelRuntimeError, match="out-of-bounds store to 'y'"):
        plain[4](*_args((64, 64), 3))
    monkeypatch.setenv("CMLANG_CHECK", "0")
    ck = plain.compile(np.zeros(1, np.float32), np.zeros(1, np.float32), 1)
    assert ck.binary.hidden_params == 0 and not ck.binary.checks


def test_the_hidden_parameters_are_not_the_users():
    ck = store_k.compile(np.zeros(1, np.float32), np.zeros(1, np.float32), 1)
    names = [p.name for p in ck.binary.params]
    assert names == ["x", "y", "n", "__cm_size_x", "__cm_size_y", "__cm_errors"]
    assert [p.name for p in ck.binary.user_params] == ["x", "y", "n"]
    x, y = np.arange(64, dtype=np.float32), np.zeros(64, np.float32)
    ck[4](x, y, 0)
    np.testing.assert_array_equal(y, x)
    with pytest.raises(cm.LaunchError, match="takes 3 arguments"):
        ck[4](x, y)


def test_examples_run_unchanged_in_checked_mode(monkeypatch):
    from examples.core import histogram, prefix_sum, slm_reverse, transpose
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, 4096).astype(np.uint8)
    a = rng.standard_normal((48, 32)).astype(np.float32)
    xs = rng.integers(-50, 50, 64 * 64).astype(np.int32)
    r = rng.standard_normal(256).astype(np.float32)
    monkeypatch.setenv("CMLANG_CHECK", "1")
    np.testing.assert_array_equal(histogram.histogram(pixels), histogram.reference(pixels))
    np.testing.assert_array_equal(transpose.transpose(a), transpose.reference(a))
    np.testing.assert_array_equal(prefix_sum.inclusive_scan(xs), prefix_sum.reference(xs))
    np.testing.assert_array_equal(slm_reverse.reverse_in_groups(r), slm_reverse.reference(r))
    assert histogram.histogram_kernel.checked_mode()
    assert any(ck.binary.checks for ck in histogram.histogram_kernel._specializations.values())


# --- spirv-vc on the host emulator -------------------------------------------------------------

needs_vc = pytest.mark.skipif(importlib.util.find_spec("dpcpp_llvm_spirv") is None,
                              reason="the spirv-vc target needs the dpcpp-llvm-spirv wheel")


def run_checked_vc(kernel, grid, args):
    """What the launcher does for a checked kernel, with the emulator as the device."""
    from vc_emulator import run_isolated
    ck = kernel.specialization((), "spirv-vc", "pvc", checked=True)
    pointers = [i for i, p in enumerate(ck.binary.user_params) if isinstance(p.type, PtrType)]
    lengths = {i: args[i].size for i in pointers}
    errors = np.zeros(ERROR_WORDS, np.int32)
    out = run_isolated(ck, grid, None, list(args) + [np.int64(lengths[i]) for i in pointers] + [errors])
    if out[-1][0]:
        raise checked_fault(ck.binary.checks, out[-1], lengths, None)
    return out


VC_CASES = ["load", "store", "load2d", "store2d", "block_load_2d", "block_store_2d", "gather", "scatter", "atomic", "atomic_scalar",
            "slm", "rdregion", "wrregion", "extract", "insert", "iselect"]


@needs_vc
@pytest.mark.parametrize("name", VC_CASES)
def test_spirv_vc_reports_the_same_fault(name):
    kernel, grid, sizes, bad, good, text, middle, thread = CASES[name]
    with pytest.raises(cm.KernelRuntimeError) as vc:
        run_checked_vc(kernel, grid, _args(sizes, bad))
    assert _report(vc.value) == _expected(name)
    out = run_checked_vc(kernel, grid, _args(sizes, good))
    interpreted = _args(sizes, good)
    cm.kernel(kernel.fn, interpret=True)[grid](*interpreted)
    np.testing.assert_array_equal(out[1], interpreted[1])


def test_checks_are_in_the_ir():
    ir = store_k.compile(np.zeros(1, np.float32), np.zeros(1, np.float32), 1).ir
    assert re.search(r"%__cm_size_y: i64", ir) and "__cm_errors" in ir
    assert re.search(r'atomic %__cm_errors, .* \[kind="cmpxchg"\]', ir)


def test_checked_mode_through_dpctl(monkeypatch):
    from cmlang.runtime import device as device_module
    monkeypatch.setattr(device_module, "_current", None)
    monkeypatch.delenv("CMLANG_DEVICE", raising=False)
    cm.set_device("dpctl:opencl:cpu")
    with pytest.raises(cm.KernelRuntimeError) as e:
        store_k[4](*_args((64, 64), 3))
    assert _report(e.value) == _expected("store")


@cm.kernel(check=True)
def small_bins(px: cm.ptr[cm.u8], hist: cm.ptr[i32]):
    bins = cm.slm(i32, 128)
    cm.store(bins, 0, cm.zeros(cm.vector[i32, 128]))
    cm.atomic_add(bins, cm.load(px, 0, 16).astype(i32), 1)
    cm.store(hist, 0, cm.load(bins, 0, 128))


def test_accesses_known_to_be_in_bounds_are_not_checked():
    """A histogram's SLM atomic at widened u8 offsets into 256 bins, and SLM blocks at constant
    offsets, need no check; 128 bins do."""
    from examples.core import histogram
    ck = histogram.histogram_kernel.compile(np.zeros(1, np.uint8), np.zeros(1, np.int32), 256, 4, checked=True)
    assert not [s for s in ck.binary.checks if s.what.startswith("atomic") and "SLM" in s.buffer]
    sites = small_bins.compile(np.zeros(16, np.uint8), np.zeros(128, np.int32)).binary.checks
    assert [(s.what, s.buffer) for s in sites] == [("load from", "'px'"), ("atomic add on", "'bins' (SLM)"),
                                                   ("store to", "'hist'")]
    px = np.full(16, 7, np.uint8)
    px[9] = 200
    with pytest.raises(cm.KernelRuntimeError, match=r"out-of-bounds atomic add on 'bins' \(SLM\): index 200 "
                                                    r"\(element 9 of the access\), buffer has 128 elements"):
        small_bins[1](px, np.zeros(128, np.int32))
