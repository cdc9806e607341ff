"""The per-element path of spirv-vc's 2-D block loads on PVC (surfaces the messages cannot
take): a block of several rows is read by a loop over its rows, 16-element gathers per row
(vc_block2d._row_loop), so that nothing per row is left for IGC to hoist out of an
enclosing loop (flash attention's key loop spilled 51,136 bytes; 0 now).  In the emulator
against numpy, with the block inside, partly and wholly outside the surface."""
import numpy as np
import pytest

from cmlang import f16, f32
from cmlang.runtime.profiles import get_profile
from test_block2d import block_reference
from test_vc_block2d_messages import loads, run_emulated, surface

PLACES = [(4, 2), (-5, -3), (30, 26), (-20, 0), (0, 40)]   # x, y: inside, left-top, right-bottom, left, below
ODD_PITCH = dict(width=40, height=30, pitch=44)            # 16-bit rows 88 bytes apart: no message


@pytest.mark.parametrize("x,y", PLACES, ids=["inside", "left-top", "right-bottom", "left", "below"])
@pytest.mark.parametrize("T,rows,cols", [(f16, 8, 16), (f16, 3, 40), (f32, 5, 17)],
                         ids=["f16 8x16", "f16 3x40", "f32 5x17"])
def test_row_loop_reads_like_numpy(x, y, T, rows, cols):
    k = loads(T, rows, cols, False)
    assert "block2d.row" in k.specialization((), "spirv-vc", get_profile("pvc")).llvm_ir
    dtype = np.float16 if T == f16 else np.float32
    w, h, pitch = ODD_PITCH["width"], ODD_PITCH["height"], ODD_PITCH["pitch"] + (1 if T == f32 else 0)
    src = surface(dtype, pitch, 11)
    got = run_emulated(k, [src, np.zeros(rows * cols, dtype), x, y, w, h, pitch])
    want = block_reference(src, (rows, cols), x, y, w, h, pitch)
    np.testing.assert_array_equal(got[1].reshape(rows, cols), want)
