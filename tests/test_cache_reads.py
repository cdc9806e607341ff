"""The disk cache never serves a kernel compiled from values that have changed since:
every Python value the front end read (however deep or indirect) is recorded with the
entry and re-checked on a hit (cmlang/reads.py)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import cmlang as cm
from cmlang import cache, f32, reads
from cmlang.kernel import Kernel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HELPERS = """
import cmlang as cm

@cm.func
def f(v):
    return v * {factor}
"""

KERNELS = """
import cmlang as cm
from cmlang import f32
import pkg.sub.deep
import helpers

FUNCS = (helpers.f,)

@cm.kernel(simd=8)
def deep_constant(x: cm.ptr[f32]):
    cm.store(x, 0, cm.load(x, 0, 8) * pkg.sub.deep.N)

@cm.kernel(simd=8)
def func_in_a_tuple(x: cm.ptr[f32]):
    cm.store(x, 0, FUNCS[0](cm.load(x, 0, 8)))

@cm.kernel(simd=8)
def func_as_constexpr(x: cm.ptr[f32], F: cm.constexpr):
    cm.store(x, 0, F(cm.load(x, 0, 8)))
"""

# A fresh process: launch one kernel of the project on x = 1..8 and print x[:3].
# BLOCK=1 makes the compiler unimportable, so only a cache hit can succeed.
CHILD = """
import os, sys
if os.environ.get("BLOCK") == "1":
    for name in ("llvmlite", "cmlang.codegen", "cmlang.frontend", "cmlang.passes"):
        sys.modules[name] = None
sys.path.insert(0, sys.argv[1])
import numpy as np
import kernels, helpers
x = np.arange(1, 9, dtype=np.float32)
k = getattr(kernels, sys.argv[2])
k[1](x, helpers.f) if sys.argv[2] == "func_as_constexpr" else k[1](x)
print("result", x[:3].tolist())
"""


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("CMLANG_CACHE_DIR", str(folder))
    monkeypatch.delenv("CMLANG_CACHE", raising=False)
    monkeypatch.delenv("CMLANG_INTERPRET", raising=False)
    return folder


@pytest.fixture
def project(tmp_path):
    folder = tmp_path / "project"
    (folder / "pkg" / "sub").mkdir(parents=True)
    (folder / "pkg" / "__init__.py").write_text("")
    (folder / "pkg" / "sub" / "__init__.py").write_text("")
    (folder / "pkg" / "sub" / "deep.py").write_text("N = 3.0\n")
    (folder / "helpers.py").write_text(HELPERS.format(factor=2.0))
    (folder / "kernels.py").write_text(KERNELS)
    return folder


def run_child(project, cache_dir, kernel, block=False):
    env = {**os.environ, "CMLANG_CACHE_DIR": str(cache_dir), "BLOCK": "1" if block else "0",
           "PYTHONPATH": ROOT}
    out = subprocess.run([sys.executable, "-c", CHILD, str(project), kernel], capture_output=True,
                         text=True, timeout=120, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("kernel, change, before, after", [
    ("deep_constant", ("pkg/sub/deep.py", "N = 5.0\n"), [3.0, 6.0, 9.0], [5.0, 10.0, 15.0]),
    ("func_in_a_tuple", ("helpers.py", HELPERS.format(factor=7.0)), [2.0, 4.0, 6.0], [7.0, 14.0, 21.0]),
    ("func_as_constexpr", ("helpers.py", HELPERS.format(factor=7.0)), [2.0, 4.0, 6.0], [7.0, 14.0, 21.0]),
])
def test_a_changed_value_the_front_end_folded_in_is_never_served_stale(project, cache_dir, kernel,
                                                                      change, before, after):
    assert f"result {before}" in run_child(project, cache_dir, kernel)
    assert f"result {before}" in run_child(project, cache_dir, kernel, block=True)   # a real hit
    path, text = change
    (project / path).write_text(text)
    assert f"result {after}" in run_child(project, cache_dir, kernel)
    assert f"result {after}" in run_child(project, cache_dir, kernel, block=True)    # stored again


# --- generic: every recorded read, changed, invalidates ------------------------------------

SCALE = 2.0
OFFSETS = (1.0, 10.0)


class Namespace:
    pass


CONFIG = Namespace()
CONFIG.bias = 0.5


@cm.func
def _leaf(v):
    return v * SCALE + OFFSETS[1]


@cm.func
def _branch(v):
    return _leaf(v) + OFFSETS[0]


def make_kernel():
    tile = 8

    def k_generic(x: cm.ptr[f32]):
        cm.store(x, 0, _branch(cm.load(x, 0, tile)) + np_scale)
    np_scale = 3.0
    return Kernel(k_generic, simd=8)


def numeric_reads(record):
    return [[tuple(step) for step in path] for path, fp in record["reads"]
            if fp.startswith(("builtins.float", "builtins.int"))]


def test_changing_any_recorded_number_invalidates_the_record_and_the_result(monkeypatch):
    kernel = make_kernel()
    record = kernel.ir_function().python_reads
    assert record["complete"] and reads.still_valid(record, kernel.fn, {})
    paths = numeric_reads(record)
    names = {path[-1][1] for path in paths}
    assert {"tile", "np_scale", "SCALE", 0, 1} <= names, names
    x = np.arange(8, dtype=np.float32)
    base = x * SCALE + 10.0 + 1.0 + 3.0
    for path in paths:
        parent = reads.resolve(path[:-1], kernel.fn, {})
        kind, key = path[-1]
        old = reads.resolve(path, kernel.fn, {})
        if kind == "closure":
            fn = reads.python_function(parent)
            cell = dict(zip(fn.__code__.co_freevars, fn.__closure__))[key]
            cell.cell_contents = old + 1
            undo = lambda cell=cell, old=old: setattr(cell, "cell_contents", old)   # noqa: E731
        elif kind == "global":
            monkeypatch.setitem(reads.python_function(parent).__globals__, key, old + 1)
            undo = lambda: None     # noqa: E731  (monkeypatch undoes it at the end)
        else:        # an item of a module tuple: replace the tuple
            holder_path = path[:-1]
            holder_parent = reads.resolve(holder_path[:-1], kernel.fn, {})
            new = tuple(v + 1 if i == key else v for i, v in enumerate(parent))
            monkeypatch.setitem(reads.python_function(holder_parent).__globals__, holder_path[-1][1], new)
            undo = lambda: None     # noqa: E731
        assert not reads.still_valid(record, kernel.fn, {}), f"a change of {path} went unnoticed"
        undo()
        monkeypatch.undo()
        assert reads.still_valid(record, kernel.fn, {})
    y = x.copy()
    kernel[1](y)
    np.testing.assert_array_equal(y, base)


def test_a_value_reached_without_a_path_keeps_the_kernel_out_of_the_disk_cache(cache_dir):
    @cm.func
    def via_default(v, funcs=(_leaf,)):      # a default value: no path leads to _leaf's globals
        return funcs[0](v)

    def k_default(x: cm.ptr[f32]):
        cm.store(x, 0, via_default(cm.load(x, 0, 8)))
    kernel = Kernel(k_default, simd=8)
    x = np.arange(8, dtype=np.float32)
    kernel[1](x)
    np.testing.assert_array_equal(x, np.arange(8, dtype=np.float32) * SCALE + 10.0)
    assert not kernel.ir_function().python_reads["complete"]
    folder = cache_dir / cache.KERNELS
    assert not folder.exists() or not list(folder.glob("*" + cache.ENTRY_SUFFIX))


def test_a_hit_checks_the_stored_record(cache_dir, monkeypatch):
    kernel = make_kernel()
    x = np.arange(8, dtype=np.float32)
    kernel[1](x.copy())
    entries = list((cache_dir / cache.KERNELS).glob("*" + cache.ENTRY_SUFFIX))
    assert len(entries) == 1
    stored = json.loads(cache.read_entry(str(entries[0]))["reads"])
    assert stored == kernel.ir_function().python_reads
    again = make_kernel()          # a fresh Kernel: only the disk can answer
    monkeypatch.setitem(globals(), "SCALE", 4.0)
    y = x.copy()
    again[1](y)
    np.testing.assert_array_equal(y, x * 4.0 + 10.0 + 1.0 + 3.0)
