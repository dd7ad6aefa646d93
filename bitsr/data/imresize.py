"""MATLAB-compatible ``imresize`` (bicubic, antialiased when shrinking), vectorised in NumPy.

Video SR benchmarks (BasicSR, mmagic, the Vid4/REDS literature) make LR frames with MATLAB's
``imresize(img, 1/s, 'bicubic')``. OpenCV's and mmcv's ``cv2.resize`` bicubic neither widens the
kernel when shrinking (no antialiasing) nor pads by mirroring, so its LR frames differ by
several grey levels. This module follows MATLAB's algorithm:

* Keys cubic kernel with a = -0.5;
* when shrinking by ``scale < 1`` the kernel is stretched by ``1/scale`` (antialiasing);
* output pixel ``x`` (1-based) samples input position ``u = x/scale + (1 - 1/scale)/2``;
* taps beyond the border are mirrored (symmetric padding, edge repeated);
* dimensions are resized one at a time, the one with the smallest scale first (height on ties).

Each 1-D pass is a gather of the ``P`` taps of every output sample followed by a weighted sum,
so the cost is ``O(out * P)`` per line rather than a dense ``out x in`` matrix product. Unlike
MATLAB, the intermediate result between the two passes is not rounded to the input's integer
type (BasicSR does the same; the difference is at most one grey level).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["cubic", "contributions", "imresize"]


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


def contributions(in_len: int, out_len: int, scale: float, antialias: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Tap weights and (0-based, mirrored) input indices of each output sample.

    Returns ``weights`` float64 [out_len, P] (rows sum to 1) and ``indices`` int64 [out_len, P].
    """
    width = 4.0
    if scale < 1 and antialias:
        def kernel(x):
            return scale * cubic(scale * x)
        width = width / scale
    else:
        kernel = cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    ind = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based
    w = kernel(u[:, None] - ind)
    w /= w.sum(axis=1, keepdims=True)
    # Symmetric padding: 1..n, n..1, repeated (MATLAB's aux = [1:n, n:-1:1]).
    period = 2 * in_len
    m = np.mod(ind.astype(np.int64) - 1, period)
    idx = np.where(m < in_len, m, period - 1 - m)
    # Drop tap columns that are zero for every output sample (MATLAB does the same).
    keep = np.any(w != 0, axis=0)
    return w[:, keep], idx[:, keep]


def _resize_axis(a: np.ndarray, axis: int, out_len: int, scale: float, antialias: bool) -> np.ndarray:
    w, idx = contributions(a.shape[axis], out_len, scale, antialias)
    a = np.moveaxis(a, axis, 0)
    g = a[idx]  # [out, P, ...]
    out = np.einsum("op,op...->o...", w, g, optimize=True)
    return np.moveaxis(out, 0, axis)


def imresize(img: np.ndarray, scale: float | None = None, *, size: tuple[int, int] | None = None,
             antialias: bool = True) -> np.ndarray:
    """Resizes an image [H, W] or [H, W, C] like MATLAB ``imresize(img, scale, 'bicubic')``.

    Give either ``scale`` (output size ``ceil(H*scale), ceil(W*scale)``, as MATLAB) or
    ``size=(out_h, out_w)`` (per-axis scales ``out/in``). uint8 input gives uint8 output
    (rounded, clipped); float input gives float64 output, unclipped.
    """
    if img.ndim not in (2, 3):
        raise ValueError(f"imresize: expected [H, W] or [H, W, C], got shape {img.shape}")
    h, w = img.shape[:2]
    if size is not None:
        oh, ow = int(size[0]), int(size[1])
        sh, sw = oh / h, ow / w
    elif scale is not None:
        if scale <= 0:
            raise ValueError(f"imresize: scale must be > 0, got {scale}")
        sh = sw = float(scale)
        oh, ow = int(math.ceil(h * sh)), int(math.ceil(w * sw))
    else:
        raise ValueError("imresize: give scale or size")
    if oh < 1 or ow < 1:
        raise ValueError(f"imresize: output size {oh}x{ow} is empty")
    is_u8 = img.dtype == np.uint8
    a = img.astype(np.float64)
    order = [0, 1] if sh <= sw else [1, 0]
    for axis in order:
        n_out, s = (oh, sh) if axis == 0 else (ow, sw)
        a = _resize_axis(a, axis, n_out, s, antialias)
    if is_u8:
        return np.clip(np.floor(a + 0.5), 0, 255).astype(np.uint8)  # MATLAB rounds half up
    return a
