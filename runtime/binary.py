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
