"""Sepia tone, the CM tutorial's ``sepia`` kernel: per B8G8R8 pixel

    OutR = .411 InR + .741 InG + .201 InB     (as the example's coefficients say)
    ...

computed two pixels at a time with ``cm_dp4`` over a replicated region
(``replicate<2, 2, 4, 1>``: [B1 G1 R1 B2 R1 B2 G2 R2]), the three results placed with
member ``merge`` and an integer bit mask (0x12, 0x24, 0x48), and stored with a saturating
conversion to bytes. ``sepia_unit`` is the ESIMD-style float version: pixels in [0, 1], the
3 x 4 colour matrix passed as a register parameter, float saturation (``cm.sat``) clamping
every channel to [0, 1].
"""
import numpy as np

import cmlang as cm
from cmlang import f32, u8

ROWS = 8

# The coefficients, laid out for a dot product over two pixels (see the kernel):
# [c_B, c_G, c_R, 0, 0, c_B, c_G, c_R] for output channels R, G and B.
R_COEFF = (0.201, 0.741, 0.411, 0.0, 0.0, 0.201, 0.741, 0.411)
G_COEFF = (0.161, 0.691, 0.361, 0.0, 0.0, 0.161, 0.691, 0.361)
B_COEFF = (0.101, 0.531, 0.291, 0.0, 0.0, 0.101, 0.531, 0.291)


@cm.kernel(simd=16)
def sepia(inbuf: cm.ptr[u8], outbuf: cm.ptr[u8], width: cm.i32, height: cm.i32):
    r = cm.vector[f32, 8](R_COEFF)
    g = cm.vector[f32, 8](G_COEFF)
    b = cm.vector[f32, 8](B_COEFF)
    v = cm.zeros(cm.vector[f32, 8])
    out = cm.zeros(cm.matrix[u8, ROWS, 32])
    h_pos = cm.thread_id(0) * 24
    v_pos = cm.thread_id(1) * ROWS
    inp = cm.load_2d(inbuf, (ROWS, 32), h_pos, v_pos, width, height, width)
    in_float = inp.astype(f32)
    for i in cm.static_range(8):
        for j in cm.static_range(0, 19, 6):
            # two pixels [B1 G1 R1 B2 G2 R2] replicated to [B1 G1 R1 B2 R1 B2 G2 R2]
            pair = in_float.replicate(2, 2, 4, 1, i * 32 + j)
            v.merge(cm.dp4(b, pair), 0x12)     # v[1] = ob1, v[4] = ob2
            v.merge(cm.dp4(g, pair), 0x24)     # v[2] = og1, v[5] = og2
            v.merge(cm.dp4(r, pair), 0x48)     # v[3] = or1, v[6] = or2
            w = v.select(6, 1, 1)
            out.select(1, 1, 6, 1, i, j)[0] = cm.sat(w.astype(u8))
    cm.store_2d(outbuf, out.select(ROWS, 1, 24, 1), h_pos, v_pos, width, height, width)


@cm.kernel(simd=16)
def sepia_unit(pixels: cm.ptr[f32], out: cm.ptr[f32], coeff: cm.matrix[f32, 3, 4]):
    """8 pixels (B, G, R floats in [0, 1]) per CM thread; coeff[c] holds output channel c's
    weights of (B, G, R, 1): a dot product with the pixel and a constant term."""
    base = cm.thread_id(0) * 24
    bgr = cm.load(pixels, base, 24)
    quad = cm.full(cm.vector[f32, 32], 1.0)
    for k in cm.static_range(3):                    # [B G R 1] per pixel
        quad.select(8, 4, k)[:] = bgr.select(8, 3, k)
    result = cm.zeros(cm.vector[f32, 24])
    for c in cm.static_range(3):
        channel = cm.dp4(quad, coeff[c].replicate(8))
        result.select(8, 3, c)[:] = cm.sat(channel.select(8, 4, 0))    # clamp to [0, 1]
    cm.store(out, base, result)


def tone(image: np.ndarray) -> np.ndarray:
    """``image``: rows x (3 * pixels) bytes, B G R order; rows a multiple of 8, row bytes of 24."""
    out = np.zeros_like(image)
    sepia[(image.shape[1] // 24, image.shape[0] // ROWS)](image, out, image.shape[1], image.shape[0])
    return out


def tone_unit(pixels: np.ndarray, coeff) -> np.ndarray:
    out = np.zeros_like(pixels)
    sepia_unit[pixels.size // 24](pixels, out, coeff)
    return out


def reference(image):
    px = image.reshape(image.shape[0], -1, 3).astype(np.float32)
    out = np.empty_like(px)
    for channel, coeff in ((0, B_COEFF), (1, G_COEFF), (2, R_COEFF)):
        c = np.float32(coeff[:3])
        out[..., channel] = ((px[..., 0] * c[0] + px[..., 1] * c[1]) + px[..., 2] * c[2])
    return np.clip(np.trunc(out), 0, 255).astype(np.uint8).reshape(image.shape)


def reference_unit(pixels, coeff):
    px = pixels.reshape(-1, 3).astype(np.float64)
    c = np.asarray(coeff, np.float64)
    out = px @ c[:, :3].T + c[:, 3]
    return np.clip(out, 0.0, 1.0).astype(np.float32).reshape(-1)
