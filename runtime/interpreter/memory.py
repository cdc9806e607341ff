"""Buffers (global arrays and SLM) and the memory ops, with a bounds check on every access.

Each maker takes the op and returns a function of the op's operand values. Offsets
are element indices; every index an access touches is checked against the buffer
before anything is read or written, and the first bad one is reported as
``out-of-bounds store to 'y': index 1040 (element 16 of the access), buffer has 1024
elements``. Masked-off gather/scatter elements touch nothing and are not checked.
"""
from __future__ import annotations

import numpy as np

from ...types import bf16
from ...ir.ops import atomic_mask_index
from .values import KernelFault, value_dtype, bf16_bits_to_f32, f32_to_bf16_bits, as_scalar, float_min, float_max


class Buffer:
    """The memory a pointer value points to: a flat numpy array in storage dtype."""

    __slots__ = ("name", "data", "elem", "space")

    def __init__(self, name, data, elem, space="global"):
        self.name = name
        self.data = data      # 1-D; for bf16, uint16 bit patterns
        self.elem = elem      # cmlang ScalarType of the elements
        self.space = space    # "global" or "local" (SLM)

    @property
    def size(self):
        return self.data.shape[0]

    def label(self):
        return f"'{self.name}'" + (" (SLM)" if self.space == "local" else "")

    def read(self, idx):
        """Values at ``idx`` (an int or index array), in register representation."""
        raw = self.data[idx]
        return bf16_bits_to_f32(raw) if self.elem == bf16 else raw

    def write(self, idx, values):
        self.data[idx] = f32_to_bf16_bits(values) if self.elem == bf16 else values

    def __repr__(self):
        return f"<{self.space} buffer {self.name}: {self.size} x {self.elem}>"


def new_slm(name, elem, n):
    """SLM for one group, filled with garbage (NaN, or 0xCD bytes) so that reads before
    writes show up in tests instead of reading zeros by luck."""
    dtype = np.dtype(elem.np_dtype)
    if elem == bf16:
        data = np.full(n, 0x7FC1, np.uint16)             # a bf16 NaN
    elif dtype.kind == "f":
        data = np.full(n, np.nan, dtype)
    elif dtype.kind == "b":
        data = np.ones(n, dtype)
    else:
        data = np.full(n * dtype.itemsize, 0xCD, np.uint8).view(dtype)
    return Buffer(name, data, elem, "local")


# --- bounds checks ----------------------------------------------------------------

def _out_of_bounds(buf, what, index, element):
    raise KernelFault(f"out-of-bounds {what} {buf.label()}: index {index} (element {element} of "
                      f"the access), buffer has {buf.size} elements")


def check_block(buf, what, start, n):
    """Elements start .. start+n-1 must lie inside ``buf``."""
    if start < 0:
        _out_of_bounds(buf, what, start, 0)
    if start + n > buf.size:
        _out_of_bounds(buf, what, max(start, buf.size), max(0, buf.size - start))


def check_indices(buf, what, idx, active=None):
    """Every element of the flat index array ``idx`` (where ``active``) must lie inside ``buf``."""
    bad = (idx < 0) | (idx >= buf.size)
    if active is not None:
        bad &= active
    if bad.any():
        element = int(np.argmax(bad))
        _out_of_bounds(buf, what, int(idx[element]), element)


def _flat_indices(offsets):
    return np.asarray(offsets).reshape(-1).astype(np.int64)


# --- the ops ----------------------------------------------------------------------

def make_load(op):
    n = op.results[0].type.size

    def load(p, off):
        start = int(off)
        check_block(p, "load from", start, n)
        return p.read(slice(start, start + n)).copy()
    return load


def make_store(op):
    def store(p, off, v):
        start = int(off)
        flat = np.ravel(v)
        check_block(p, "store to", start, flat.shape[0])
        p.write(slice(start, start + flat.shape[0]), flat)
    return store


def _grid_2d(shape):
    rows, cols = shape
    return np.arange(rows, dtype=np.int64)[:, None], np.arange(cols, dtype=np.int64)[None, :]


def make_load2d(op):
    shape = op.results[0].type.shape
    rows, cols = _grid_2d(shape)

    def load2d(p, off, pitch):
        idx = (int(off) + int(pitch) * rows + cols).reshape(-1)
        check_indices(p, "2-D load from", idx)
        return p.read(idx).reshape(shape)
    return load2d


def make_store2d(op):
    rows, cols = _grid_2d(op.operands[3].type.shape)

    def store2d(p, off, pitch, m):
        idx = (int(off) + int(pitch) * rows + cols).reshape(-1)
        check_indices(p, "2-D store to", idx)
        # With overlapping rows (pitch < columns) the later element wins, as for scatter.
        _write_last_wins(p, idx, m.reshape(-1))
    return store2d


def _block_indices(shape, x, y, width, height, pitch):
    """Flat indices of a rows x cols block at (x, y) of a surface, and which lie inside it."""
    rows, cols = _grid_2d(shape)
    r, c = int(y) + rows, int(x) + cols
    inside = ((c >= 0) & (c < int(width)) & (r >= 0) & (r < int(height))).reshape(-1)
    return (r * int(pitch) + c).reshape(-1), inside


def make_block_load2d(op):
    shape = op.results[0].type.shape
    transpose = bool(op.attrs.get("transpose"))
    block = shape[::-1] if transpose else shape

    def block_load2d(p, x, y, width, height, pitch):
        idx, inside = _block_indices(block, x, y, width, height, pitch)
        check_indices(p, "2-D block load from", idx, inside)
        values = p.read(idx[inside])
        out = np.zeros(idx.shape, values.dtype)
        out[inside] = values
        out = out.reshape(block)
        return np.ascontiguousarray(out.T) if transpose else out
    return block_load2d


def make_block_store2d(op):
    shape = op.operands[6].type.shape

    def block_store2d(p, x, y, width, height, pitch, m):
        idx, inside = _block_indices(shape, x, y, width, height, pitch)
        check_indices(p, "2-D block store to", idx, inside)
        _write_last_wins(p, idx[inside], np.ravel(m)[inside])
    return block_store2d


def make_block_prefetch2d(op):
    def block_prefetch2d(p, x, y, width, height, pitch):
        return None
    return block_prefetch2d


def make_gather(op):
    shape = op.results[0].type.shape
    dtype = value_dtype(op.results[0].type)

    def gather(p, offs, mask=None):
        idx = _flat_indices(offs)
        active = None if mask is None else np.ravel(mask)
        check_indices(p, "gather from", idx, active)
        if active is None:
            return p.read(idx).reshape(shape)
        out = np.zeros(idx.shape[0], dtype)
        out[active] = p.read(idx[active])
        return out.reshape(shape)
    return gather


def _write_last_wins(p, idx, values):
    """p[idx[i]] = values[i] where, for repeated indices, the highest i wins."""
    if idx.shape[0] > 1:
        # np.unique on the reversed indices finds each address's last writer.
        _, first_in_reversed = np.unique(idx[::-1], return_index=True)
        keep = idx.shape[0] - 1 - first_in_reversed
        idx, values = idx[keep], values[keep]
    p.write(idx, values)


def make_scatter(op):
    def scatter(p, offs, v, mask=None):
        idx = _flat_indices(offs)
        values = np.ravel(v)
        if mask is not None:
            active = np.ravel(mask)
            check_indices(p, "scatter to", idx, active)
            idx, values = idx[active], values[active]
        else:
            check_indices(p, "scatter to", idx)
        _write_last_wins(p, idx, values)
    return scatter


def _same_bits(a, b):
    """cmpxchg compares bit patterns, as hardware (and C11 compare_exchange) does: for floats
    a NaN matches the same NaN and -0.0 does not match +0.0."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind != "f":
        return a == b
    bits = np.dtype(f"u{a.dtype.itemsize}")
    return a.view(bits) == b.astype(a.dtype).view(bits)


def _atomic_update(kind, elem):
    """old, v (, v2) -> the new value for one atomic element."""
    is_float = elem.is_float
    updates = {
        "add": lambda old, v, _: old + v,
        "sub": lambda old, v, _: old - v,
        "min": (lambda old, v, _: float_min(old, v)) if is_float else (lambda old, v, _: min(old, v)),
        "max": (lambda old, v, _: float_max(old, v)) if is_float else (lambda old, v, _: max(old, v)),
        "and": lambda old, v, _: old & v,
        "or": lambda old, v, _: old | v,
        "xor": lambda old, v, _: old ^ v,
        "xchg": lambda old, v, _: v,
        "cmpxchg": lambda old, v, v2: v2 if _same_bits(old, v) else old,
    }
    return updates[kind]


def make_atomic(op):
    kind = op.attrs["kind"]
    update = _atomic_update(kind, op.operands[0].type.elem)
    mask_at = atomic_mask_index(kind)

    def atomic(p, offs, *data):
        v, v2 = data[0], (data[1] if kind == "cmpxchg" else None)
        mask = np.ravel(data[mask_at - 2]) if len(data) > mask_at - 2 else None
        idx = _flat_indices(offs)
        enabled = idx if mask is None else idx[mask]
        check_indices(p, f"atomic {kind} on", enabled)
        values = np.ravel(v)
        seconds = values if v2 is None else np.ravel(v2)
        # the result's shape and dtype (refilled in order below; elements masked off read 0)
        old = p.read(idx).copy() if mask is None else np.zeros(idx.shape[0], p.read(idx[:0]).dtype)
        for i in range(idx.shape[0]):      # element order: duplicates see earlier updates
            if mask is not None and not mask[i]:
                continue                   # no access; the old value reads 0
            j = idx[i]
            old[i] = p.read(j)
            new = update(old[i], values[i], seconds[i])
            p.write(j, new)            # a bf16 result is rounded by the write
        return as_scalar(old.reshape(np.shape(offs)))
    return atomic


MEMORY_SEMANTICS = {
    "load": make_load, "store": make_store, "load2d": make_load2d, "store2d": make_store2d,
    "block_load2d": make_block_load2d, "block_store2d": make_block_store2d,
    "block_prefetch2d": make_block_prefetch2d,
    "gather": make_gather, "scatter": make_scatter, "atomic": make_atomic,
}
