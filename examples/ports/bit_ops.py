"""Bit operations as the ESIMD tests use them (``esimd_bit_ops``, ``ballot``), in one kernel
per 32-word row: per word the population count (``cbit``), the lowest and highest set bit
(``fbl``; ``31 - lzd``, or CM's ``fbh`` counted from the MSB), a ballot of the nonzero words
(``pack_mask``, ESIMD ``ballot``), and the Hamming distance between two bit strings
(``reduce_sum(cbit(a ^ b))``).
"""
import numpy as np

import cmlang as cm
from cmlang import i32, u32

W = 32          # words per row, one row per CM thread


@cm.kernel(simd=16)
def bit_stats(a: cm.ptr[u32], b: cm.ptr[u32], per_word: cm.ptr[u32], per_row: cm.ptr[u32]):
    row = cm.thread_id(0)
    x = cm.load(a, row * W, W)
    y = cm.load(b, row * W, W)
    cm.store(per_word, row * 4 * W, cm.cbit(x))
    cm.store(per_word, row * 4 * W + W, cm.fbl(x))                 # 0xFFFFFFFF for 0
    cm.store(per_word, row * 4 * W + 2 * W, 31 - cm.lzd(x))        # the MSB's index (-1 for 0)
    cm.store(per_word, row * 4 * W + 3 * W, cm.fbh(x))              # zeros above the MSB
    stats = cm.vector[u32, 2](cm.pack_mask(x != 0), cm.reduce_sum(cm.cbit(x ^ y)).astype(u32))
    cm.store(per_row, row * 2, stats)


@cm.kernel(simd=8)
def sign_runs(v: cm.ptr[i32], out: cm.ptr[i32]):
    """CM fbh on signed words: how many leading bits repeat the sign bit (-1 for 0 and -1),
    the count of redundant sign bits + 1 a fixed-point normalisation shifts by."""
    row = cm.thread_id(0)
    cm.store(out, row * 16, cm.fbh(cm.load(v, row * 16, 16)))


def stats(a: np.ndarray, b: np.ndarray):
    rows = a.size // W
    per_word = np.zeros(rows * 4 * W, np.uint32)
    per_row = np.zeros(rows * 2, np.uint32)
    bit_stats[rows](a, b, per_word, per_row)
    return per_word.reshape(rows, 4, W), per_row.reshape(rows, 2)


def reference(a, b):
    rows = a.size // W
    words = [int(x) for x in a]
    count = [bin(x).count("1") for x in words]
    lowest = [(x & -x).bit_length() - 1 if x else 0xFFFFFFFF for x in words]
    msb = [(x.bit_length() - 1) & 0xFFFFFFFF for x in words]
    fbh = [32 - x.bit_length() if x else 0xFFFFFFFF for x in words]
    per_word = np.array([count, lowest, msb, fbh], np.uint32).reshape(4, rows, W).transpose(1, 0, 2)
    ballot = [sum(1 << i for i in range(W) if words[r * W + i]) for r in range(rows)]
    hamming = [sum(bin(int(x) ^ int(y)).count("1") for x, y in zip(a[r * W:(r + 1) * W], b[r * W:(r + 1) * W]))
               for r in range(rows)]
    return per_word, np.array([ballot, hamming], np.uint32).T


def sign_runs_of(v: np.ndarray) -> np.ndarray:
    out = np.zeros_like(v)
    sign_runs[v.size // 16](v, out)
    return out


def reference_sign_runs(v):
    return np.array([-1 if x in (0, -1) else 32 - (~int(x) if x < 0 else int(x)).bit_length()
                     for x in v], np.int32)
