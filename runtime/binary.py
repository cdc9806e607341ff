"""What the runtime needs to launch a compiled kernel; also what a package stores.

Deliberately free of compiler imports: loading a precompiled kernel must not pull
in llvmlite or the front end.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Param:
    name: str
    type: object          # a cmlang.types ScalarType or PtrType
    writes: bool = False  # pointer parameters: does the kernel store/scatter/atomic to it
    min_elems: int = 0    # pointer parameters: elements that constant-offset accesses need


@dataclass(frozen=True)
class KernelBinary:
    name: str
    spirv: bytes
    simd: int
    params: tuple         # of Param, in kernel argument order
    uses_groups: bool = False    # does the kernel use SLM, barriers or group/local ids
    extensions: tuple = field(default_factory=tuple)
    target: str = "spirv"        # the code generator that made it (cmlang.codegen.target)
    lanes_per_thread: int = 0    # work-items per CM thread (0: simd, the SIMT mapping)
    build_options: str = ""      # what the driver's build needs (e.g. -vc-codegen)
    profile: str = ""            # the device profile it was compiled for ("": unknown)
    slm_bytes: int = 0           # shared local memory per group (cm.slm), checked at launch
    # Checked mode (cmlang/passes/bounds_checks.py): the checked accesses (runtime.bounds.
    # CheckSite, by site number) and how many parameters at the end are the launcher's
    # (the pointer arguments' lengths and the error buffer), not the user's.
    checks: tuple = ()
    hidden_params: int = 0

    @property
    def lanes(self) -> int:
        return self.lanes_per_thread or self.simd

    @property
    def user_params(self) -> tuple:
        """The parameters a launch passes (all but checked mode's hidden ones)."""
        return self.params[:len(self.params) - self.hidden_params]


def constexpr_key(value):
    """The hashable key of a constexpr value, the one rule for kernels and packages alike:
    tells 1 from 1.0 from True; numpy scalars count as their Python value; tuples and lists
    by their items."""
    if isinstance(value, (list, tuple)):
        return ("tuple", tuple(constexpr_key(v) for v in value))
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    return (type(value).__name__, value)
