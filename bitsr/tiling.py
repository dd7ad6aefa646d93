"""Tiled inference: run an upscaling step on overlapping low-resolution tiles and blend the
outputs seamlessly, so frames larger than memory allows can still be processed.

Core tiles of about ``tile`` x ``tile`` LR pixels partition the frame; each is computed with
``overlap`` extra pixels of context on every side (clamped at the frame edges). Neighbouring
outputs are cross-faded with linear weights over a band ``overlap`` pixels wide centred on the
seam; the weights form a partition of unity, and every output pixel is taken at least
``overlap / 2`` pixels away from the cut edge of its tile. A network whose receptive field
reaches no further than ``overlap / 2`` LR pixels therefore gives the untiled result up to float
rounding. A recurrent network keeps one state per tile (``Tile.index`` is stable for a given
frame size), which is exact only as far as motion stays inside the context.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class Tile:
    """One tile: the LR window it is computed on (``y0:y1, x0:x1``, context included) and the
    core it is responsible for (``cy0:cy1, cx0:cx1``)."""

    index: int
    y0: int
    y1: int
    x0: int
    x1: int
    cy0: int
    cy1: int
    cx0: int
    cx1: int


def _cuts(n: int, tile: int, align: int) -> list[int]:
    """Core boundaries along one axis: near-equal parts no longer than ``tile``, on multiples of
    ``align`` (except the frame end)."""
    parts = max(1, math.ceil(n / tile))
    cuts = [0]
    for i in range(1, parts):
        c = align * round(i * n / (parts * align))
        if cuts[-1] < c < n:
            cuts.append(c)
    cuts.append(n)
    return cuts


def tile_grid(height: int, width: int, tile: int, overlap: int, align: int = 1) -> list[Tile]:
    """The tiles of a ``height`` x ``width`` frame (row-major)."""
    if tile <= 0:
        raise ValueError(f"tile must be positive, got {tile}")
    if overlap < 0 or overlap % align or tile % align:
        raise ValueError(f"tile ({tile}) and overlap ({overlap}) must be multiples of {align}, overlap >= 0")
    if 2 * overlap > tile:
        raise ValueError(f"tile ({tile}) must be at least twice the overlap ({overlap})")
    ys, xs = _cuts(height, tile, align), _cuts(width, tile, align)
    out = []
    for j in range(len(ys) - 1):
        for i in range(len(xs) - 1):
            out.append(Tile(len(out),
                            max(0, ys[j] - overlap), min(height, ys[j + 1] + overlap),
                            max(0, xs[i] - overlap), min(width, xs[i + 1] + overlap),
                            ys[j], ys[j + 1], xs[i], xs[i + 1]))
    return out


def _weights(lo: int, hi: int, c0: int, c1: int, n: int, half: int, scale: int, device) -> torch.Tensor:
    """Blend weights along one axis for the HR window of LR span [lo, hi) with core [c0, c1):
    1 in the core, linear ramps across ``half`` LR pixels either side of an inner seam, 0 in
    the rest of the context."""
    u = torch.arange(lo * scale, hi * scale, device=device, dtype=torch.float64) + 0.5
    w = torch.ones_like(u)
    band = 2 * half * scale
    if c0 > 0:
        w = torch.minimum(w, ((u - (c0 - half) * scale) / band).clamp(0, 1) if band else (u >= c0 * scale).double())
    if c1 < n:
        w = torch.minimum(w, (((c1 + half) * scale - u) / band).clamp(0, 1) if band else (u < c1 * scale).double())
    return w


def run_tiled(step: Callable[[Tile], torch.Tensor], height: int, width: int, scale: int, tile: int,
              overlap: int = 16, align: int = 1) -> torch.Tensor:
    """Calls ``step(t)`` for every tile ``t`` of an LR frame; ``step`` returns the HR output of
    the window ``t.y0:t.y1, t.x0:t.x1`` as [B, C, scale * (y1 - y0), scale * (x1 - x0)].
    Returns the blended [B, C, scale * height, scale * width] frame (dtype of the first tile)."""
    half = overlap // 2
    out = None
    for t in tile_grid(height, width, tile, overlap, align):
        y = step(t)
        exp = (scale * (t.y1 - t.y0), scale * (t.x1 - t.x0))
        if tuple(y.shape[-2:]) != exp:
            raise ValueError(f"tile step returned {tuple(y.shape[-2:])}, expected {exp}")
        if out is None:
            out = torch.zeros(*y.shape[:-2], scale * height, scale * width, dtype=y.dtype, device=y.device)
        wy = _weights(t.y0, t.y1, t.cy0, t.cy1, height, half, scale, y.device)
        wx = _weights(t.x0, t.x1, t.cx0, t.cx1, width, half, scale, y.device)
        w = (wy[:, None] * wx[None, :]).to(y.dtype)
        # Only the rows/columns with non-zero weight are added (the rest is context).
        ry = torch.nonzero(wy).flatten()
        rx = torch.nonzero(wx).flatten()
        sy, ey, sx, ex = int(ry[0]), int(ry[-1]) + 1, int(rx[0]), int(rx[-1]) + 1
        oy, ox = scale * t.y0, scale * t.x0
        out[..., oy + sy:oy + ey, ox + sx:ox + ex] += y[..., sy:ey, sx:ex] * w[sy:ey, sx:ex]
    return out
