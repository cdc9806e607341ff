"""The first four stages of ``cmk_bitonic_sort_256`` (CM example BitonicSortK): a CM thread
holds 256 keys in a register pair A/B and runs compare-exchange steps of stride 1, 2, 4 and 8
with register regioning only, leaving 16-key runs sorted in alternating directions (what the
example's later stages then merge).

Each ``bitonic_exchange{1,2,4,8}`` writes the partner of every element into the other
register through strided or formatted views (``vector_ref``/``matrix_ref``: the @cm.func's
register arguments are references), then merges the original back where the comparison,
flipped by the step's direction pattern, says the pair was already in order (CM's in-place
member ``merge`` on a ``select`` view). The
direction patterns (CM's ``init_mask*`` uchar vectors) are 32-bit masks here, unpacked with
``cm.unpack_mask``.
"""
import numpy as np

import cmlang as cm
from cmlang import i64, u32

BASE_SZ = 256


def _bits(pattern):
    """A 0/1 pattern of 8 repeated to 32 elements (or 32 given), as a 32-bit mask."""
    pattern = list(pattern) * (32 // len(pattern))
    return sum(1 << k for k, bit in enumerate(pattern) if bit)


FLIP1 = _bits([0, 1, 1, 0, 0, 1, 1, 0])
FLIP2 = _bits([0, 0, 1, 1, 1, 1, 0, 0])
FLIP3 = _bits([0, 1, 0, 1, 1, 0, 1, 0])
FLIP4 = _bits([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0])
FLIP5 = _bits([0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0])
FLIP6 = _bits([0, 1, 0, 1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0])
FLIP7 = _bits([0] * 8 + [1] * 16 + [0] * 8)
FLIP8 = _bits([0, 0, 0, 0, 1, 1, 1, 1] * 2 + [1, 1, 1, 1, 0, 0, 0, 0] * 2)
FLIP9 = _bits([0, 0, 1, 1] * 4 + [1, 1, 0, 0] * 4)
FLIP10 = _bits([0, 1] * 8 + [1, 0] * 8)


@cm.func
def bitonic_exchange8(A, B, flip: cm.constexpr):
    for i in cm.static_range(0, BASE_SZ, 32):
        B.select(8, 1, i)[:] = A.select(8, 1, i + 8)
        B.select(8, 1, i + 8)[:] = A.select(8, 1, i)
        B.select(8, 1, i + 16)[:] = A.select(8, 1, i + 24)
        B.select(8, 1, i + 24)[:] = A.select(8, 1, i + 16)
        B.select(32, 1, i).merge(A.select(32, 1, i), (A.select(32, 1, i) < B.select(32, 1, i))
                                 ^ cm.unpack_mask(flip, 32))


@cm.func
def bitonic_exchange4(A, B, flip: cm.constexpr):
    for i in cm.static_range(0, BASE_SZ, 32):
        MA = A.select(32, 1, i).format(u32, 4, 8)
        MB = B.select(32, 1, i).format(u32, 4, 8)
        MB.select(4, 1, 4, 1, 0, 0)[:] = MA.select(4, 1, 4, 1, 0, 4)
        MB.select(4, 1, 4, 1, 0, 4)[:] = MA.select(4, 1, 4, 1, 0, 0)
        B.select(32, 1, i).merge(A.select(32, 1, i), (A.select(32, 1, i) < B.select(32, 1, i))
                                 ^ cm.unpack_mask(flip, 32))


@cm.func
def bitonic_exchange2(A, B, flip: cm.constexpr):
    # pairs of 32-bit keys move as one 64-bit element: stride-2 regions of a long long matrix
    for i in cm.static_range(0, BASE_SZ, 32):
        MB = B.select(32, 1, i).format(i64, 4, 4)
        MA = A.select(32, 1, i).format(i64, 4, 4)
        MB.select(4, 1, 2, 2, 0, 0)[:] = MA.select(4, 1, 2, 2, 0, 1)
        MB.select(4, 1, 2, 2, 0, 1)[:] = MA.select(4, 1, 2, 2, 0, 0)
        B.select(32, 1, i).merge(A.select(32, 1, i), (A.select(32, 1, i) < B.select(32, 1, i))
                                 ^ cm.unpack_mask(flip, 32))


@cm.func
def bitonic_exchange1(A, B, flip: cm.constexpr):
    for i in cm.static_range(0, BASE_SZ, 32):
        T = B.select(32, 1, i)                      # a vector_ref into B
        T.select(16, 2, 0)[:] = A.select(16, 2, i + 1)
        T.select(16, 2, 1)[:] = A.select(16, 2, i)
        B.select(32, 1, i).merge(A.select(32, 1, i), (A.select(32, 1, i) < T) ^ cm.unpack_mask(flip, 32))


@cm.kernel(simd=16)
def cmk_bitonic_sort_16(keys: cm.ptr[u32], out: cm.ptr[u32]):
    offset = cm.thread_id(0) * BASE_SZ
    A = cm.load(keys, offset, BASE_SZ)
    B = cm.zeros(cm.vector[u32, BASE_SZ])
    bitonic_exchange1(A, B, FLIP1)          # stage 0
    bitonic_exchange2(B, A, FLIP2)          # stage 1
    bitonic_exchange1(A, B, FLIP3)
    bitonic_exchange4(B, A, FLIP4)          # stage 2
    bitonic_exchange2(A, B, FLIP5)
    bitonic_exchange1(B, A, FLIP6)
    bitonic_exchange8(A, B, FLIP7)          # stage 3
    bitonic_exchange4(B, A, FLIP8)
    bitonic_exchange2(A, B, FLIP9)
    bitonic_exchange1(B, A, FLIP10)
    cm.store(out, offset, A)


def sort_runs(keys: np.ndarray) -> np.ndarray:
    out = np.zeros_like(keys)
    cmk_bitonic_sort_16[keys.size // BASE_SZ](keys, out)
    return out


def reference(keys):
    """16-key runs, ascending and descending in turn."""
    runs = np.sort(keys.reshape(-1, 16), axis=1)
    runs[1::2] = runs[1::2, ::-1]
    return runs.reshape(-1)
