"""Mandelbrot set escape counts with SIMD control flow (``while cm.simd`` and a per-lane ``break``).

The CM version of this program iterates z = z**2 + c for a row of pixels at once inside
``SIMD_DO_WHILE``, with ``SIMD_IF_BEGIN``/``SIMD_BREAK`` taking the pixels that escaped out of
the loop while the others go on. Here each CM thread owns ``W`` consecutive pixels of one row
(grid ``(width // W, height)``), and the same structure is spelled with Python control flow:
``while cm.simd(count < max_iter)`` runs while any pixel still iterates, ``if cm.simd(escaped):
break`` stops those pixels only, and the assignments in the body change only the pixels
still in the loop.
"""
import numpy as np

import cmlang as cm
from cmlang import f32, i32, vector


@cm.kernel(simd=16)
def mandelbrot_kernel(counts: cm.ptr[i32], width: i32, x0: f32, y0: f32, dx: f32, dy: f32,
                      max_iter: i32, W: cm.constexpr):
    col = cm.iota(i32, W) + cm.thread_id(0) * W
    row = cm.thread_id(1)
    cr = x0 + col.astype(f32) * dx
    ci = y0 + row.astype(f32) * dy
    zr = cm.zeros(vector[f32, W])
    zi = cm.zeros(vector[f32, W])
    count = cm.zeros(vector[i32, W])
    while cm.simd(count < max_iter):
        zr2 = zr * zr
        zi2 = zi * zi
        if cm.simd(zr2 + zi2 > 4.0):
            break                     # this pixel escaped: it leaves the loop, the others go on
        zi = 2.0 * zr * zi + ci
        zr = zr2 - zi2 + cr
        count += 1
    cm.store(counts, row * width + cm.thread_id(0) * W, count)


def mandelbrot(width=64, height=48, x0=-2.0, y0=-1.2, dx=None, dy=None, max_iter=64, lanes=16,
               target="spirv"):
    """The escape count of every pixel of a ``height`` x ``width`` image of the plane starting at
    (x0, y0) with pixel steps (dx, dy)."""
    assert width % lanes == 0, "each CM thread computes `lanes` pixels of a row"
    dx = 3.0 / width if dx is None else dx
    dy = 2.4 / height if dy is None else dy
    counts = np.zeros(height * width, np.int32)
    mandelbrot_kernel[(width // lanes, height)](counts, width, x0, y0, dx, dy, max_iter, lanes)
    return counts.reshape(height, width)


def reference(width=64, height=48, x0=-2.0, y0=-1.2, dx=None, dy=None, max_iter=64):
    """The same iteration in numpy float32, operation for operation."""
    dx = np.float32(3.0 / width if dx is None else dx)
    dy = np.float32(2.4 / height if dy is None else dy)
    cr = np.float32(x0) + np.arange(width, dtype=np.float32)[None, :] * dx
    ci = np.float32(y0) + np.arange(height, dtype=np.float32)[:, None] * dy
    cr, ci = np.broadcast_to(cr, (height, width)), np.broadcast_to(ci, (height, width))
    zr = np.zeros((height, width), np.float32)
    zi = np.zeros((height, width), np.float32)
    count = np.zeros((height, width), np.int32)
    active = np.ones((height, width), bool)
    while True:
        active &= count < max_iter
        zr2, zi2 = zr * zr, zi * zi
        active &= ~(zr2 + zi2 > np.float32(4.0))
        if not active.any():
            return count
        zi = np.where(active, np.float32(2.0) * zr * zi + ci, zi)
        zr = np.where(active, zr2 - zi2 + cr, zr)
        count += active
