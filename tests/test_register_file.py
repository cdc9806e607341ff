"""``@cm.kernel(grf=256)``: the large register file mode (256 GRF per hardware thread), built
with Intel's compiler's large-register-file option where the device profile has the mode
(PVC) and refused where it has not (DG2, Tiger Lake).  ISA checks skip only without ocloc."""
import numpy as np
import pytest

import cmlang as cm
from cmlang import f32
from cmlang.codegen import intel_gpu
from cmlang.errors import CompileError
from cmlang.runtime.profiles import get_profile

needs_ocloc = pytest.mark.skipif(not intel_gpu.available(),
                                 reason="Intel's offline compiler (ocloc) is not installed")


def scale(x: cm.ptr[f32], y: cm.ptr[f32], a: f32):
    i = cm.thread_id(0) * 16
    cm.store(y, i, cm.load(x, i, 16) * a)


big = cm.kernel(simd=16, grf=256)(scale)
small = cm.kernel(simd=16)(scale)


def test_the_mode_is_stored_on_the_kernel_and_its_binary():
    assert big.grf == 256 and small.grf == 128
    for target in ("spirv", "spirv-vc"):
        options = big.specialization((), target, get_profile("pvc")).binary.build_options
        assert "-ze-opt-large-register-file" in options.split()
        assert "-ze-opt-large-register-file" not in small.specialization((), target, get_profile("pvc")).binary.build_options
    assert big.specialization((), "spirv-vc", get_profile("pvc")).binary.build_options.split()[0] == "-vc-codegen"


@pytest.mark.parametrize("profile", ["dg2", "tgllp"])
def test_a_profile_without_the_mode_refuses_it(profile):
    with pytest.raises(CompileError, match=f"kernel 'scale': grf=256 .* not available on {profile}"):
        big.specialization((), "spirv", get_profile(profile))


def test_grf_must_be_128_or_256():
    with pytest.raises(CompileError, match="grf must be 128 or 256"):
        cm.kernel(grf=192)(scale)


def test_the_cpu_profile_runs_it_unchanged():
    x = np.arange(32, dtype=np.float32)
    y = np.zeros(32, np.float32)
    big[2](x, y, 3.0)
    np.testing.assert_array_equal(y, 3 * x)
    assert big.specialization((), "spirv", get_profile("cpu")).binary.build_options == ""


@needs_ocloc
@pytest.mark.parametrize("target", ["spirv", "spirv-vc"])
def test_igc_builds_256_registers_on_pvc(target):
    assert big.compile(target=target, device="pvc").stats["grf"] == 256
    assert small.compile(target=target, device="pvc").stats["grf"] == 128


@needs_ocloc
def test_dg2_by_its_ocloc_name_refuses_it():
    with pytest.raises(CompileError, match="not available on dg2"):
        big.compile(target="spirv", device="acm-g10")
