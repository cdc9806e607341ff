"""Device profiles: what the code generator may assume about the device it compiles for.

A target (``spirv``, ``spirv-vc``) says how a CM thread maps onto a kind of SPIR-V; a
*profile* says what one device family has: its register file, its systolic (dpas) unit,
its 2-D block messages, its sub-group sizes and SLM, and the workarounds its driver needs.
Every codegen choice that holds for one device only reads the profile, so a reader finds
each such choice here under the device's name, and the profile is part of the disk-cache
key of every compiled kernel.

Data only: the runtime picks the profile of the device it launches on
(``profile_for_device``) and must not import the compiler to do so.
"""
from __future__ import annotations

import contextlib

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Systolic:
    """The dpas (XMX) unit: ``exec_size`` columns of N per instruction (the sub-group
    size it runs at in SIMT code), ``depth`` dwords of K per row, repeat count 1-8."""
    exec_size: int
    depth: int = 8
    types: tuple = ("f16", "bf16", "i8", "u8")       # input element types it multiplies
    tf32: bool = False                               # f32 inputs through tf32, when asked


@dataclass(frozen=True)
class Block2D:
    """2-D block load/store messages and their limits (bytes of a row, rows)."""
    max_width_bytes: int = 64
    max_height: int = 32
    max_store_height: int = 8
    transpose: bool = True
    vnni: bool = True


@dataclass(frozen=True)
class CpuRuntimeWorkarounds:
    """Code shapes chosen for Intel's OpenCL CPU runtime, whose vectorizer turns a sub-group
    into SIMD lanes of a CPU core.  None of them is needed on an Intel GPU; on a GPU several
    would be wrong or slow, so only the CPU profile turns them on.

    - ``uniform_ids_from_lane0``: the CM-thread id is read in lane 0 and broadcast, so the
      vectorizer sees it as uniform (otherwise it vectorizes whole loops under a lane mask);
    - ``broadcast_loop_bounds``: a loop's computed bound/step (and a while condition computed
      with min/max/abs) is broadcast from lane 0 for the same reason;
    - ``no_16bit_block_io``: 16-bit sub-group block reads/writes are avoided (the CPU
      runtime miscompiled some of them; nothing to gain there);
    - ``saturate_with_compares``: saturating float -> int is spelled with compares and
      selects (the SaturatedConversion decoration does not vectorize at 32 lanes);
    - ``guard_int_division``: x / 0 and INT_MIN / -1 divide by 1 instead, because on a CPU
      they trap (undefined behaviour either way; a GPU does not trap);
    - ``one_slot_block_reads``: a sub-group block read per slot, not one per run of 2, 4 or 8
      slots (on a GPU one message each; the CPU runtime makes each read a vector load either
      way, and its tuned kernels were measured with the one-slot reads).
    """
    uniform_ids_from_lane0: bool = False
    broadcast_loop_bounds: bool = False
    no_16bit_block_io: bool = False
    saturate_with_compares: bool = False
    guard_int_division: bool = False
    one_slot_block_reads: bool = False


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    grf_count: int = 128                 # general registers per hardware thread
    grf_bytes: int = 64                  # bytes per register
    large_grf: bool = False              # a 256-register mode exists (grf=256)
    sub_group_sizes: tuple = (8, 16, 32)
    slm_bytes: int = 64 * 1024
    systolic: Systolic | None = None     # None: dpas is computed with FMAs
    block2d: Block2D | None = None       # None: 2-D accesses are row loads
    native_device: str | None = None     # Intel's offline compiler's -device name, if any
    # Work-items per group when a launch names no group and the kernel needs none: the
    # largest power-of-two number of CM threads up to this that divides the grid.  The CPU
    # runtime schedules groups as tasks (16 work-items per group ran a streaming kernel 7x
    # slower than 256); on GPUs 256 is a common choice, not measured here.
    auto_group_work_items: int = 256
    # A dpas computed with FMAs (f32 inputs, or no systolic unit for its types) of at least
    # this many slot FMAs, whose b comes from a 2-D load, is a loop over k that reads b's
    # rows (and a's elements) from memory where they are used, instead of unrolled FMAs on
    # register picks (0: never).  First chosen on the CPU runtime (register picks spill
    # there); Intel's GPU compiler shows the same on GPUs: without the loop flash_attention
    # spills 22,400 bytes on PVC (0 with it), lightning_scan 97,664 (19,264 with it).
    dpas_loop_fmas: int = 256
    cpu: CpuRuntimeWorkarounds = field(default_factory=CpuRuntimeWorkarounds)

    def key(self) -> str:
        """Stable digest of everything here: enters the disk-cache key of compiled kernels."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def register_file_bytes(self) -> int:
        return self.grf_count * self.grf_bytes


# Facts: Intel's hardware documentation and what Intel's GPU compiler (IGC) accepts.
PROFILES = {p.name: p for p in (
    DeviceProfile(
        "cpu", "Intel's OpenCL CPU runtime (the stand-in device; sub-groups are CPU SIMD lanes)",
        grf_count=0, grf_bytes=0, sub_group_sizes=(8, 16, 32), slm_bytes=256 * 1024,
        cpu=CpuRuntimeWorkarounds(uniform_ids_from_lane0=True, broadcast_loop_bounds=True,
                                  no_16bit_block_io=True, saturate_with_compares=True,
                                  guard_int_division=True, one_slot_block_reads=True)),
    DeviceProfile(
        "pvc", "Intel Data Center GPU Max (Xe-HPC, Ponte Vecchio)",
        grf_count=128, grf_bytes=64, large_grf=True, sub_group_sizes=(16, 32), slm_bytes=128 * 1024,
        systolic=Systolic(exec_size=16, tf32=True), block2d=Block2D(), native_device="pvc"),
    DeviceProfile(
        "dg2", "Intel Arc / Data Center GPU Flex (Xe-HPG, DG2)",
        grf_count=128, grf_bytes=32, large_grf=False, sub_group_sizes=(8, 16, 32), slm_bytes=64 * 1024,
        systolic=Systolic(exec_size=8), native_device="dg2"),
    DeviceProfile(
        "tgllp", "Intel Iris Xe (Xe-LP, Tiger Lake)",
        grf_count=128, grf_bytes=32, sub_group_sizes=(8, 16, 32), slm_bytes=64 * 1024,
        native_device="tgllp"),
    DeviceProfile(
        "generic", "any SPIR-V device with Intel sub-groups (no device-specific assumptions)"),
)}

DEFAULT_PROFILE = "cpu"


def get_profile(name_or_profile) -> DeviceProfile:
    if isinstance(name_or_profile, DeviceProfile):
        return name_or_profile
    profile = PROFILES.get(name_or_profile)
    if profile is None:
        from cmlang.errors import CompileError
        raise CompileError(f"unknown device profile {name_or_profile!r}; profiles are "
                           f"{', '.join(PROFILES)}")
    return profile


# Intel's offline compiler's names for the devices of a profile (its -device argument).
NATIVE_ALIASES = {"pvc-sdv": "pvc", "acm-g10": "dg2", "acm-g11": "dg2", "acm-g12": "dg2",
                  "dg2-g10": "dg2", "dg2-g11": "dg2", "dg2-g12": "dg2", "tgl": "tgllp"}


def device_choice(name: str):
    """``k.compile(device=name)``: (the profile to generate code for, the name to build a
    native binary for with Intel's offline compiler, or None).  A profile name picks that
    profile; another name is taken as an ocloc ``-device`` name (its family's profile where
    known, else the generic one), which ocloc itself then accepts or refuses."""
    if not isinstance(name, str) or not name:
        from cmlang.errors import CompileError
        raise CompileError(f"device must be a profile or Intel GPU name, got {name!r}; profiles are "
                           f"{', '.join(PROFILES)}")
    if name in PROFILES:
        return PROFILES[name], PROFILES[name].native_device
    return PROFILES[NATIVE_ALIASES.get(name, "generic")], name


_planned: list = []          # planning_for's stack


@contextlib.contextmanager
def planning_for(profile):
    """Host code that picks tiles or element types per device profile (it reads
    ``cmlang.autotuning.tuning_profile()``) plans for ``profile`` inside the block while its kernels still run on the current
    device: how ``cmlang isa`` records the specializations a GPU would be given."""
    _planned.append(get_profile(profile))
    try:
        yield _planned[-1]
    finally:
        _planned.pop()


def planning():
    """The profile an enclosing ``planning_for`` block names, or None."""
    return _planned[-1] if _planned else None


def profile_for_device(device) -> DeviceProfile:
    """The profile of a runtime device: the Intel CPU runtime's own, an Intel GPU's by its
    name where known, the generic one otherwise."""
    profile = getattr(device, "_cmlang_profile", None)
    if profile is None:
        profile = PROFILES[_profile_name(device)]
        try:
            device._cmlang_profile = profile
        except AttributeError:
            pass
    return profile


def _profile_name(device) -> str:
    if getattr(device, "kind", "") == "cpu":
        return "cpu"
    name = (getattr(device, "name", "") or "").lower()
    for hint, profile in (("max", "pvc"), ("pvc", "pvc"), ("arc", "dg2"), ("flex", "dg2"),
                          ("dg2", "dg2"), ("iris", "tgllp")):
        if hint in name:
            return profile
    return "generic"
