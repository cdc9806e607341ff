"""What a stored SPIR-V module says about itself, checked against its launch contract.

Packages and cache entries carry a ``KernelBinary`` record beside the module; the
launcher trusts the record (``simd`` decides the work-item mapping).  Before that, the
module's own header, its entry point and its ``SubgroupSize`` execution mode must
agree with the record.  A plain walk over the words: no SPIR-V tools are needed at
load time.
"""
from __future__ import annotations

import struct

from cmlang.errors import LaunchError

MAGIC = 0x07230203
OP_ENTRY_POINT = 15
OP_EXECUTION_MODE = 16
EXECUTION_MODEL_KERNEL = 6
MODE_SUBGROUP_SIZE = 35


class ModuleMismatch(LaunchError):
    """A SPIR-V module that is not what its record says."""


def entry_points(spirv: bytes):
    """{entry name: {execution mode: [literals]}} of the module's kernel entry points."""
    if len(spirv) < 20 or len(spirv) % 4:
        raise ModuleMismatch(f"not a SPIR-V module ({len(spirv)} bytes, not a whole number "
                             "of words after a 5-word header)")
    words = struct.unpack(f"<{len(spirv) // 4}I", spirv)
    if words[0] != MAGIC:
        raise ModuleMismatch(f"not a SPIR-V module (magic {words[0]:#010x})")
    ids, modes = {}, {}
    i = 5
    while i < len(words):
        count, opcode = words[i] >> 16, words[i] & 0xFFFF
        if count == 0 or i + count > len(words):
            raise ModuleMismatch(f"damaged SPIR-V: an instruction at word {i} runs past the end")
        operands = words[i + 1:i + count]
        if opcode == OP_ENTRY_POINT and len(operands) >= 3 and operands[0] == EXECUTION_MODEL_KERNEL:
            ids[operands[1]] = _string(operands[2:])
        elif opcode == OP_EXECUTION_MODE and len(operands) >= 2:
            modes.setdefault(operands[0], {})[operands[1]] = list(operands[2:])
        i += count
    return {name: modes.get(fid, {}) for fid, name in ids.items()}


def _string(words) -> str:
    raw = struct.pack(f"<{len(words)}I", *words)
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def check_module(binary) -> None:
    """ModuleMismatch unless ``binary.spirv`` has the entry ``binary.name`` and, where it
    states one, the sub-group size its record implies (``simd`` for SIMT code)."""
    entries = entry_points(binary.spirv)
    if binary.name not in entries:
        raise ModuleMismatch(f"the SPIR-V has no kernel entry point {binary.name!r} "
                             f"(it has: {', '.join(sorted(entries)) or 'none'})")
    sub_group = entries[binary.name].get(MODE_SUBGROUP_SIZE)
    if binary.target == "spirv" and binary.lanes != binary.simd:
        raise ModuleMismatch(f"simd {binary.simd} but {binary.lanes} work-items per CM thread; "
                             "SIMT code runs one sub-group of simd work-items per thread")
    if sub_group and sub_group[0] != binary.lanes:
        raise ModuleMismatch(f"the record says {binary.lanes} work-items per CM thread (simd "
                             f"{binary.simd}) but the SPIR-V's SubgroupSize is {sub_group[0]}")
