"""``cm.autotune`` with configs per device profile: each device tries its own list (a profile
not named tries "default"), bad lists are refused with the reason, and
``tuning_profile()`` names the profile choices are made for."""
import numpy as np
import pytest

import cmlang as cm
from cmlang import autotuning as tuning
from cmlang import f32
from cmlang.codegen import intel_gpu

N = 1 << 12


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CMLANG_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("CMLANG_AUTOTUNE", "CMLANG_AUTOTUNE_LOG", "CMLANG_AUTOTUNE_BUDGET",
                 "CMLANG_AUTOTUNE_DEVICE", "CMLANG_INTERPRET"):
        monkeypatch.delenv(name, raising=False)


def _scale_kernel():
    @cm.kernel(simd=16)
    def scale(x: cm.ptr[f32], y: cm.ptr[f32], BLOCK: cm.constexpr):
        base = cm.thread_id(0) * BLOCK
        cm.store(y, base, cm.load(x, base, BLOCK) * 3.0)
    return scale


def _launch(k, x):
    y = np.zeros_like(x)
    k[lambda c: x.size // c["BLOCK"]](x, y)
    return y


def test_the_device_tries_its_own_list():
    k = cm.autotune(configs={"cpu": [{"BLOCK": 32}, {"BLOCK": 64}], "pvc": [{"BLOCK": 128}]},
                    key=["x"], repeat=1)(_scale_kernel())
    x = np.arange(N, dtype=np.float32)
    np.testing.assert_array_equal(_launch(k, x), 3 * x)
    assert k.how == "timed" and [row.config for row in k.table] == [{"BLOCK": 32}, {"BLOCK": 64}]


def test_a_profile_not_named_tries_the_default_list():
    k = cm.autotune(configs={"pvc": [{"BLOCK": 128}], "default": [{"BLOCK": 16}]}, key=["x"],
                    repeat=1)(_scale_kernel())
    x = np.arange(N, dtype=np.float32)
    np.testing.assert_array_equal(_launch(k, x), 3 * x)
    assert k.best == {"BLOCK": 16}


def test_without_a_list_for_the_device_the_launch_says_so():
    k = cm.autotune(configs={"pvc": [{"BLOCK": 128}]}, key=["x"])(_scale_kernel())
    with pytest.raises(cm.LaunchError, match="no configs for device profile 'cpu'.*pvc.*\"default\""):
        _launch(k, np.zeros(N, np.float32))


def test_bad_lists_are_refused():
    with pytest.raises(cm.CompileError, match="configs for 'gpu': not a device profile"):
        cm.autotune(configs={"gpu": [{"BLOCK": 16}]})(_scale_kernel())
    with pytest.raises(cm.CompileError, match="at least one config for 'pvc'"):
        cm.autotune(configs={"cpu": [{"BLOCK": 16}], "pvc": []})(_scale_kernel())
    with pytest.raises(cm.CompileError, match="every config must name the same parameters"):
        cm.autotune(configs={"cpu": [{"BLOCK": 16}], "pvc": [{"ROWS": 2}]})(_scale_kernel())


def test_tuning_profile_follows_the_device_env(monkeypatch):
    assert tuning.tuning_profile().name == "cpu"
    monkeypatch.setenv("CMLANG_AUTOTUNE_DEVICE", "dg2")
    assert tuning.tuning_profile().name == "dg2"


@pytest.mark.skipif(not intel_gpu.available(), reason="Intel's offline compiler (ocloc) is not installed")
def test_a_compile_only_profile_ranks_its_own_list(monkeypatch):
    k = cm.autotune(configs={"cpu": [{"BLOCK": 16}], "dg2": [{"BLOCK": 32}, {"BLOCK": 64}]},
                    key=["x"])(_scale_kernel())
    x = np.arange(N, dtype=np.float32)
    monkeypatch.setenv("CMLANG_AUTOTUNE_DEVICE", "dg2")
    np.testing.assert_array_equal(_launch(k, x), 3 * x)      # ranked for DG2, run here
    assert k.how == "ranked" and [row.config for row in k.table] == [{"BLOCK": 32}, {"BLOCK": 64}]
