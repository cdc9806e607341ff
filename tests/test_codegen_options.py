"""The SPIR-V extension option is process-global: codegen must not depend on who set it last."""
import llvmlite.binding as llvm
import numpy as np

import cmlang as cm
from cmlang import f32, i32


def k_float_atomics(acc: cm.ptr[f32], keys: cm.ptr[i32]):
    k = cm.load(keys, cm.thread_id(0) * 16, 16)
    cm.atomic_add(acc, k, k.astype(f32))


def k_copy(x: cm.ptr[f32]):
    cm.store(x, 0, cm.load(x, 0, 16) + 1.0)


def test_codegen_survives_another_user_narrowing_the_extension_option(monkeypatch):
    monkeypatch.setenv("CMLANG_CACHE", "0")
    cm.kernel(k_copy).compile(np.zeros(16, np.float32))        # codegen is set up ...
    llvm.set_option("", "--spirv-ext=+SPV_INTEL_subgroups")   # e.g. a user's own llvmlite code
    keys = np.arange(32, dtype=np.int32) % 4
    acc = np.zeros(4, np.float32)
    cm.kernel(k_float_atomics)[2](acc, keys)
    np.testing.assert_array_equal(acc, np.bincount(keys, weights=keys, minlength=4))
