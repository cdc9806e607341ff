"""Regressions found by the differential test (tests/test_differential.py)."""
import numpy as np

import cmlang as cm


def k_narrow_minmax(a: cm.ptr[cm.i16], o: cm.ptr[cm.i16]):
    v = cm.load(a, 0, 8)
    cm.store(o, 0, cm.min(v, 3))           # weak constant that fits: stays i16
    cm.store(o, 8, cm.max(v, v))           # one identical narrow type: no promotion
    cm.store(o, 16, cm.merge(v, cm.min(v, 0), v > 0))


def test_min_max_merge_of_one_narrow_type_keep_it(mode):
    a = (np.arange(8) - 4).astype(np.int16)
    o = np.zeros(24, np.int16)
    cm.kernel(k_narrow_minmax)[1](a, o)
    np.testing.assert_array_equal(o, np.concatenate([np.minimum(a, 3), a, a]))
