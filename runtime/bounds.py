"""The words of an out-of-bounds report, one place for the interpreter and checked mode.

The interpreter finds a bad access while it runs; a kernel compiled in checked mode
(``CMLANG_CHECK=1``, ``@cm.kernel(check=True)``) records its first bad access in a small
hidden buffer, and the launcher reads it back.  Both write the same text:
``file:line:col: out-of-bounds store to 'y': index 1040 (element 16 of the access), buffer
has 1024 elements; CM thread (thread_id=(65, 0, 0), group_id=..., local_id=...)`` followed
by the source line.
"""
from __future__ import annotations

import linecache
from dataclasses import dataclass

from ..errors import KernelRuntimeError

# What a checked kernel's hidden error buffer holds (int32 elements): element 0 is the
# flag (0: no fault; set once by compare-and-swap), the record starts at RECORD.
ERROR_WORDS = 16
RECORD = 8      # site, thread_id x3, index low and high 32 bits, element, unused


def memory_message(what: str, label: str, index: int, element: int, size: int) -> str:
    return (f"out-of-bounds {what} {label}: index {index} (element {element} of the access), "
            f"buffer has {size} elements")


def region_message(what: str, index: int, element: int, size: int) -> str:
    return (f"{what} index out of range: index {index} (element {element} of the region), "
            f"the register has {size} elements")


def element_message(what: str, index: int, size: int) -> str:
    return f"{what} index out of range: index {index}, the register has {size} elements"


def iselect_message(index: int, element: int, size: int) -> str:
    return (f"iselect index out of range: index {index} (element {element} of the indices), "
            f"the register has {size} elements")


def thread_text(thread_id, group_id, local_id) -> str:
    return f"CM thread (thread_id={thread_id}, group_id={group_id}, local_id={local_id})"


def runtime_error(loc, message: str, thread: str) -> KernelRuntimeError:
    """``file:line:col: message; thread`` and the source line with a caret (``loc``: any
    object with file, line and col (0-based), or None)."""
    text = f"{message}; {thread}"
    if loc is not None:
        text = f"{loc.file}:{loc.line}:{loc.col + 1}: {text}"
        src = linecache.getline(loc.file, loc.line)
        if src:
            text += "\n    " + src.rstrip("\n") + "\n    " + " " * loc.col + "^"
    err = KernelRuntimeError(text)
    err.loc = loc
    return err


# ---------------------------------------------------------------------------
# Checked mode: the sites a kernel checks, and its error record

@dataclass(frozen=True)
class CheckSite:
    """One checked access of a kernel (its number is its place in ``KernelBinary.checks``).

    ``kind``: "memory", "region", "element" or "iselect" (which message); ``what``: the
    access as the interpreter names it ("store to", "gather from", "rdregion", ...);
    ``buffer``: the buffer's label ("'y'", "'tile' (SLM)"), "" for registers; ``param``: the
    index of the pointer parameter whose length bounds it, or -1 when ``size`` (SLM,
    registers) does."""
    file: str
    line: int
    col: int
    kind: str
    what: str
    buffer: str = ""
    param: int = -1
    size: int = 0

    def to_json(self) -> list:
        return [self.file, self.line, self.col, self.kind, self.what, self.buffer, self.param, self.size]

    @classmethod
    def from_json(cls, data) -> "CheckSite":
        file, line, col, kind, what, buffer, param, size = data
        return cls(str(file), int(line), int(col), str(kind), str(what), str(buffer), int(param), int(size))


def checked_fault(sites, record, sizes, group) -> KernelRuntimeError:
    """The KernelRuntimeError for a checked kernel's error ``record`` (the hidden buffer's
    int32 words), with ``sizes`` (element counts of the pointer arguments, by parameter
    index) and the launch's ``group`` (None: each CM thread its own group)."""
    site_id, t0, t1, t2, low, high, element = (int(x) for x in record[RECORD:RECORD + 7])
    index = (high << 32) | (low & 0xFFFFFFFF)
    if site_id < 0 or site_id >= len(sites):
        return KernelRuntimeError(f"checked kernel reported an unknown access site {site_id}")
    site = sites[site_id]
    size = sizes[site.param] if site.param >= 0 else site.size
    if site.kind == "memory":
        message = memory_message(site.what, site.buffer, index, element, size)
    elif site.kind == "region":
        message = region_message(site.what, index, element, size)
    elif site.kind == "iselect":
        message = iselect_message(index, element, size)
    else:
        message = element_message(site.what, index, size)
    thread_id = (t0, t1, t2)
    group = (1, 1, 1) if group is None else tuple(group) + (1,) * (3 - len(group))
    group_id = tuple(t // g for t, g in zip(thread_id, group))
    local_id = tuple(t % g for t, g in zip(thread_id, group))
    loc = _Location(site.file, site.line, site.col) if site.file else None
    err = runtime_error(loc, message, thread_text(thread_id, group_id, local_id))
    err.thread_id, err.group_id, err.local_id = thread_id, group_id, local_id
    return err


@dataclass(frozen=True)
class _Location:
    file: str
    line: int
    col: int
