"""Every example kernel: its IR prints, parses back to the same text, verifies, and its
SPIR-V passes spirv-val (when spirv-tools is installed)."""
import shutil

import numpy as np
import pytest

from cmlang.kernel import Kernel
from cmlang.ir.parser import parse_function
from cmlang.ir.printer import print_function
from cmlang.ir.verify import verify_function
from cmlang.codegen.spirv import validate
from examples.core import bitonic, prefix_sum, histogram, transpose, slm_reverse, dpas_gemm


def run_core_examples():
    rng = np.random.default_rng(0)
    bitonic.sort_rows(rng.standard_normal(64).astype(np.float32))
    prefix_sum.inclusive_scan(rng.integers(0, 9, 512).astype(np.int32), 16)
    histogram.histogram(rng.integers(0, 256, 2048).astype(np.uint8))
    transpose.transpose(rng.standard_normal((16, 32)).astype(np.float32))
    slm_reverse.reverse_in_groups(rng.standard_normal(256).astype(np.float32))
    dpas_gemm.matmul(rng.standard_normal((8, 16)).astype(np.float32),
                     rng.standard_normal((16, 16)).astype(np.float32))
    return [bitonic, prefix_sum, histogram, transpose, slm_reverse, dpas_gemm]


def specializations(modules):
    for module in modules:
        for name, obj in vars(module).items():
            if isinstance(obj, Kernel):
                for (key, target, *_profile_and_mode), compiled in obj._specializations.items():
                    yield f"{module.__name__}.{name}{key}", compiled


@pytest.fixture(scope="module")
def compiled_examples():
    found = list(specializations(run_core_examples()))
    assert len(found) >= 8, [n for n, _ in found]
    return found


def test_example_ir_round_trips_and_verifies(compiled_examples):
    for name, compiled in compiled_examples:
        text = print_function(compiled.function, locs=True)
        again = parse_function(text)
        verify_function(again)
        assert print_function(again, locs=True) == text, name


@pytest.mark.skipif(shutil.which("spirv-val") is None, reason="spirv-val not installed (Debian spirv-tools)")
def test_example_spirv_validates(compiled_examples):
    from cmlang.codegen import vc_translate
    for name, compiled in compiled_examples:    # spirv-vc ones too when other tests made them
        (vc_translate.validate if compiled.target == "spirv-vc" else validate)(compiled.spirv)
