"""The target registry and the device profiles: one place each, read by every stage."""
import subprocess
import sys

import numpy as np
import pytest

import cmlang as cm
from cmlang import f32
from cmlang.errors import CompileError
from cmlang.runtime import profiles
from cmlang.runtime.package import binary_from_json, binary_to_json
from cmlang.targets import get_target, target_names


@cm.kernel(simd=16)
def add_one(x: cm.ptr[f32]):
    cm.store(x, cm.thread_id(0) * 16, cm.load(x, cm.thread_id(0) * 16, 16) + 1.0)


def test_registry_lists_targets_and_loads_each_one_lazily():
    assert target_names() == ("spirv", "spirv-vc")
    for name in target_names():
        t = get_target(name)
        assert t.name == name and get_target(name) is t
    assert (get_target("spirv").lanes_per_thread(16), get_target("spirv-vc").lanes_per_thread(16)) == (16, 1)
    with pytest.raises(CompileError, match=r"unknown target 'ptx'; targets are spirv, spirv-vc"):
        get_target("ptx")


def test_listing_targets_and_profiles_loads_no_compiler():
    code = ("import sys, cmlang.targets, cmlang.runtime.profiles as p; "
            "print(cmlang.targets.target_names(), sorted(p.PROFILES)); "
            "print([m for m in ('cmlang.codegen', 'cmlang.frontend', 'llvmlite') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["('spirv', 'spirv-vc') ['cpu', 'dg2', 'generic', 'pvc', 'tgllp']", "[]"]


def test_binary_records_its_target_lanes_build_options_and_profile():
    vc = add_one.compile(target="spirv-vc", device="pvc").binary
    simt = add_one.compile(target="spirv", device="cpu").binary
    assert (vc.target, vc.lanes, vc.build_options, vc.profile) == ("spirv-vc", 1, "-vc-codegen", "pvc")
    assert (simt.target, simt.lanes, simt.build_options, simt.profile) == ("spirv", 16, "", "cpu")
    # ... and a package record keeps all of it
    again = binary_from_json(binary_to_json(vc), vc.spirv)
    assert (again.target, again.lanes, again.build_options, again.profile) == ("spirv-vc", 1, "-vc-codegen", "pvc")


def test_records_written_before_targets_were_named_still_load():
    record = {"entry": "k", "simd": 16, "uses_groups": False, "params": [],
              "extensions": ["SPV_INTEL_vector_compute"]}
    old_vc = binary_from_json(record, b"")
    old_simt = binary_from_json({**record, "extensions": ["SPV_INTEL_subgroups"]}, b"")
    assert (old_vc.target, old_vc.lanes, old_vc.build_options) == ("spirv-vc", 1, "-vc-codegen")
    assert (old_simt.target, old_simt.lanes, old_simt.build_options) == ("spirv", 16, "")


def test_each_profile_is_its_own_specialization_and_cache_key():
    from cmlang import cache
    cpu, pvc = add_one.compile(device="cpu"), add_one.compile(device="pvc")
    assert cpu is not pvc and (cpu.profile, pvc.profile) == ("cpu", "pvc")
    keys = {cache.kernel_key(add_one, (), "spirv", p) for p in profiles.PROFILES}
    assert len(keys) == len(profiles.PROFILES)
    # a name that is no profile is an Intel GPU name for Intel's offline compiler to judge
    assert profiles.device_choice("acm-g10") == (profiles.PROFILES["dg2"], "acm-g10")
    assert profiles.device_choice("pvc") == (profiles.PROFILES["pvc"], "pvc")
    assert profiles.device_choice("cpu") == (profiles.PROFILES["cpu"], None)
    with pytest.raises(CompileError, match=r"kernel 'add_one', device h100"):
        add_one.compile(device="h100")
    with pytest.raises(CompileError, match=r"unknown device profile 'h100'; profiles are cpu, pvc, dg2"):
        profiles.get_profile("h100")


def test_the_launcher_picks_the_profile_of_its_device():
    device = cm.get_device()
    assert device.kind == "cpu" and profiles.profile_for_device(device).name == "cpu"
    x = np.zeros(64, np.float32)
    add_one[4](x)
    assert np.array_equal(x, np.ones(64, np.float32))
    assert add_one.compile().profile == "cpu"      # compile() defaults to the current device's


class FakeDevice:
    def __init__(self, kind, name):
        self.kind, self.name = kind, name


@pytest.mark.parametrize("kind, name, profile", [
    ("gpu", "Intel(R) Data Center GPU Max 1550", "pvc"),
    ("gpu", "Intel(R) Arc(TM) A770 Graphics", "dg2"),
    ("gpu", "Intel(R) Iris(R) Xe Graphics", "tgllp"),
    ("gpu", "Some Other GPU", "generic"),
    ("cpu", "AMD EPYC 9654", "cpu"),
])
def test_profile_for_device_by_kind_and_name(kind, name, profile):
    assert profiles.profile_for_device(FakeDevice(kind, name)).name == profile


def test_cpu_runtime_workarounds_belong_to_the_cpu_profile_only():
    cpu = profiles.PROFILES["cpu"].cpu
    assert cpu.uniform_ids_from_lane0 and cpu.broadcast_loop_bounds and cpu.guard_int_division
    for name in ("pvc", "dg2", "tgllp", "generic"):
        assert profiles.PROFILES[name].cpu == profiles.CpuRuntimeWorkarounds()
    pvc, dg2 = profiles.PROFILES["pvc"], profiles.PROFILES["dg2"]
    assert (pvc.systolic.exec_size, dg2.systolic.exec_size) == (16, 8)
    assert pvc.register_file_bytes == 8192 and pvc.large_grf and pvc.block2d is not None
