"""Analysis: does a kernel use work-group features?

A kernel that uses shared local memory, barriers or group/local ids depends on how CM
threads are grouped, so the launcher must honour the group the user gave (or make each
CM thread its own group); any other kernel may be grouped however runs fastest.
"""
from __future__ import annotations

from ..ir.core import Function
from ..ir.printer import print_function

GROUP_FEATURES = frozenset({"slm", "barrier", "group_id", "local_id", "local_size", "group_count"})


def uses_groups(fn: Function) -> bool:
    """Whether any op of ``fn`` (nested ones included) is a group feature."""
    return any(op.opcode in GROUP_FEATURES for op in fn.walk())


def describe(fn: Function) -> str:
    """``// uses_groups: true|false``, then the IR with ``// group feature`` after each such op."""
    text = print_function(fn, annotate=lambda op, name: "group feature" if op.opcode in GROUP_FEATURES else None)
    return f"// uses_groups: {'true' if uses_groups(fn) else 'false'}\n{text}"
