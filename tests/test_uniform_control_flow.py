"""Loops whose condition is the same in every lane (scalar arguments, loop counters) stay
uniform: the code after them runs in every lane of the CM thread.

On the SIMT target LLVM turned a ``while`` whose condition cannot change inside the loop
(``while n == 12345: ...``, or ``i < n`` after an inner loop left ``i = n + 1``) into a loop
with no exit, and the OpenCL CPU runtime's vectorizer gives up on a kernel holding one: it
ran the kernel one work-item per sub-group, so a block store after the loop wrote lane 0's
element only. Each kernel here is nested while/for loops (some running zero times) followed
by a block store and a scatter, checked against a Python reference at simd 8/16/32, on the
device and in the interpreter, and the issue's cases on the dpctl backend too.
"""
import numpy as np
import pytest

import cmlang as cm
from cmlang import i32, vector


def nested_while(y: cm.ptr[i32], n: i32, m: i32, W: cm.constexpr):
    i = 0
    while i < n:
        while i < n + 1:
            i += 1
    _write(y, i, W)


def ref_nested_while(n, m):
    return n + 1 if n > 0 else 0


def invariant_while(y: cm.ptr[i32], n: i32, m: i32, W: cm.constexpr):
    i = n
    while n == 12345:
        i += 0
    _write(y, i, W)


def ref_invariant_while(n, m):
    return n


def invariant_while_storing(y: cm.ptr[i32], n: i32, m: i32, W: cm.constexpr):
    # Never entered at the sizes tested; if it were, it would store forever.
    while n == 12345:
        cm.store(y, 0, cm.full(vector[i32, W], -1))
    _write(y, n + 3, W)


def ref_invariant_while_storing(n, m):
    return n + 3


def while_in_for(y: cm.ptr[i32], n: i32, m: i32, W: cm.constexpr):
    i = 0
    for j in range(n):
        while i < 2 * j:
            i += 1
    _write(y, i, W)


def ref_while_in_for(n, m):
    return max(0, 2 * (n - 1))


def for_in_while(y: cm.ptr[i32], n: i32, m: i32, W: cm.constexpr):
    i = 0
    while i < n:
        for j in range(m):
            i += 1
        i += 1
    _write(y, i, W)


def ref_for_in_while(n, m):
    i = 0
    while i < n:
        i += m + 1
    return i


def triangular_for(y: cm.ptr[i32], n: i32, m: i32, W: cm.constexpr):
    t = 0
    for a in range(n):
        for b in range(n - a):
            t += 1
    _write(y, t, W)


def ref_triangular_for(n, m):
    return n * (n + 1) // 2


def two_argument_whiles(y: cm.ptr[i32], n: i32, m: i32, W: cm.constexpr):
    i = 0
    while i < n:
        j = 0
        while j < m:
            j += 1
        i += j + 1
    k = 0
    while k < m + n:
        k += 2
    _write(y, i * 100 + k, W)


def ref_two_argument_whiles(n, m):
    i = 0
    while i < n:
        i += m + 1
    k = 0
    while k < m + n:
        k += 2
    return i * 100 + k


@cm.func
def _write(y, r, W: cm.constexpr):
    """A block store of r to y[0:W] and a scatter of r + lane to y[2W-1-lane]."""
    cm.store(y, 0, cm.full(vector[i32, W], r))
    lanes = cm.iota(i32, W)
    cm.scatter(y, W + (W - 1) - lanes, cm.full(vector[i32, W], r) + lanes)


CASES = [nested_while, invariant_while, invariant_while_storing, while_in_for, for_in_while,
         triangular_for, two_argument_whiles]
REFERENCES = {fn: globals()["ref_" + fn.__name__] for fn in CASES}
_kernels = {}


def kernel_for(fn, simd):
    if (fn, simd) not in _kernels:
        _kernels[fn, simd] = cm.kernel(simd=simd)(fn)
    return _kernels[fn, simd]


def expected(fn, n, m, width):
    r = REFERENCES[fn](n, m)
    lanes = np.arange(width, dtype=np.int32)
    return np.concatenate([np.full(width, r, np.int32), (r + lanes)[::-1]]).astype(np.int32)


def run_case(fn, simd, n, m):
    y = np.arange(2 * simd, dtype=np.int32) + 1000   # nothing the kernel writes
    kernel_for(fn, simd)[1](y, n, m, simd)
    return y


@pytest.mark.parametrize("simd", [8, 16, 32])
@pytest.mark.parametrize("fn", CASES, ids=lambda f: f.__name__)
def test_code_after_uniform_loops_runs_in_every_lane(mode, fn, simd):
    for n, m in [(5, 2), (0, 3), (1, 0), (3, 0)]:
        np.testing.assert_array_equal(run_case(fn, simd, n, m), expected(fn, n, m, simd),
                                      err_msg=f"{fn.__name__} simd={simd} n={n} m={m} ({mode})")


def test_the_optimized_module_keeps_no_loop_without_an_exit():
    """What the CPU runtime choked on: ``while n == 12345`` whose body stores became
    ``br label %self``, a loop with no way out; the loop keeps its (uniform) exit now."""
    llvm_ir = kernel_for(invariant_while_storing, 16).compile(W=16).llvm_ir
    blocks = _terminators(llvm_ir[llvm_ir.index("define spir_kernel"):])
    assert len(blocks) >= 3, blocks
    assert not [label for label, term in blocks.items() if term == f"br label %{label}"], blocks
    assert "sub_group_broadcast" in llvm_ir      # the exit test is one LLVM cannot hoist


def _terminators(function_text):
    """{block label: its terminator line} of one function's LLVM IR text."""
    blocks, label = {}, None
    for line in function_text.splitlines():
        if line and not line[0].isspace() and not line.startswith(("define", "}")) and ":" in line:
            label = line.split(":")[0]
        elif label is not None and line.strip().startswith(("br ", "ret", "switch ", "unreachable")):
            blocks[label] = line.strip()
    return blocks


# --- the dpctl backend: the issue's cases ---------------------------------------------------

@pytest.mark.parametrize("simd", [8, 16])
@pytest.mark.parametrize("fn", [nested_while, invariant_while, invariant_while_storing],
                         ids=lambda f: f.__name__)
def test_issue_cases_on_dpctl(monkeypatch, fn, simd):
    pytest.importorskip("dpctl")
    from cmlang.runtime import device as device_module, set_device
    monkeypatch.setattr(device_module, "_current", None)
    monkeypatch.delenv("CMLANG_DEVICE", raising=False)
    monkeypatch.delenv("CMLANG_INTERPRET", raising=False)
    set_device("dpctl:opencl:cpu")
    for n, m in [(5, 2), (0, 0)]:
        np.testing.assert_array_equal(run_case(fn, simd, n, m), expected(fn, n, m, simd),
                                      err_msg=f"{fn.__name__} simd={simd} n={n} on dpctl")


# --- what is left for the runtime: a kernel its vectorizer gives up on is refused ------------

# A loop with no exit (the shape LLVM made of ``while n == 12345: store``), written by hand
# since cmlang no longer emits one. The CPU runtime cannot vectorize the kernel to its
# sub-group size 16 and would run it with one work-item per sub-group.
ENDLESS_IR = """
target triple = "spirv64-unknown-unknown"
declare spir_func void @_Z31__spirv_SubgroupBlockWriteINTELPU3AS1jj(ptr addrspace(1), i32) convergent

define spir_kernel void @endless(ptr addrspace(1) %y, i32 %n) !intel_reqd_sub_group_size !0 {
entry:
  %spin = icmp eq i32 %n, 12345
  br i1 %spin, label %forever, label %done
forever:
  call spir_func void @_Z31__spirv_SubgroupBlockWriteINTELPU3AS1jj(ptr addrspace(1) %y, i32 1)
  br label %forever
done:
  call spir_func void @_Z31__spirv_SubgroupBlockWriteINTELPU3AS1jj(ptr addrspace(1) %y, i32 7)
  ret void
}
!0 = !{i32 16}
"""


def test_a_kernel_the_cpu_runtime_does_not_vectorize_is_refused(monkeypatch):
    from kernel_utils import spirv_from_ir
    from cmlang.errors import LaunchError
    from cmlang.runtime import device as device_module, launch
    from cmlang.runtime.binary import KernelBinary, Param
    from cmlang.types import PtrType
    monkeypatch.setattr(device_module, "_current", None)
    monkeypatch.delenv("CMLANG_DEVICE", raising=False)
    spirv = spirv_from_ir(ENDLESS_IR, "+SPV_INTEL_subgroups")
    assert device_module.required_sub_group_size(spirv) == 16
    binary = KernelBinary("endless", spirv, 16, (Param("y", PtrType(i32), writes=True),
                                                 Param("n", i32)))
    y = np.zeros(16, np.int32)
    with pytest.raises(LaunchError, match=r"could not vectorize kernel 'endless' to its "
                                          r"sub-group size 16"):
        launch(binary, 1, None, (y, 5))
    assert not y.any()
