"""Helpers for tests that compile one kernel body for several dtypes and simd widths, and
for tests that launch hand-written LLVM IR."""
import types

import numpy as np

import cmlang as cm

# Annotation placeholders replaced per test case: "P" -> cm.ptr[T], "S" -> T.
P, S = "P", "S"


def make_kernel(fn, dtype, simd=16, interpret=False):
    """A fresh kernel from ``fn`` with its "P"/"S" annotations bound to ``dtype``."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__annotations__ = {
        name: cm.ptr[dtype] if ann == P else dtype if ann == S else ann
        for name, ann in fn.__annotations__.items()
    }
    return cm.kernel(simd=simd, interpret=interpret)(copy)


def np_dtype(t):
    return np.dtype(t.np_dtype)


def random_array(rng, t, n, lo=-50, hi=50):
    if t.is_float:
        return rng.uniform(lo, hi, n).astype(np_dtype(t))
    return rng.integers(lo, hi, n).astype(np_dtype(t))


def _emit_spirv(ir: str, extensions: str) -> bytes:
    import llvmlite.binding as llvm
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    if extensions:
        llvm.set_option("", "--spirv-ext=" + extensions)
    machine = llvm.Target.from_triple("spirv64-unknown-unknown").create_target_machine()
    return machine.emit_object(llvm.parse_assembly(ir))


def spirv_from_ir(ir: str, extensions: str = "") -> bytes:
    """SPIR-V of hand-written LLVM IR, emitted in a forked child as cmlang itself does:
    after earlier in-process uses of LLVM's SPIR-V backend, the test process once emitted a
    corrupt module (an id defined twice) that the driver ran as a kernel doing nothing."""
    from cmlang.codegen.spirv import validate
    from cmlang.runtime.forked import call_in_child
    spirv = call_in_child(_emit_spirv, ir, extensions)
    validate(spirv)                  # spirv-val, where installed (CI installs it)
    return spirv
