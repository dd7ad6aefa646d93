"""Pictures of what the bitstream says, drawn over the decoded frames (in the spirit of
FFmpeg's codecview filter).

:func:`render` gives one RGB mosaic of four panels per frame:

1. partitions: coding units (white), prediction units (yellow), transform units (cyan);
2. prediction modes: intra (red), skip (green), merge (cyan), AMVP inter (violet);
3. motion vectors: one arrow per prediction unit, from its centre to where its content
   comes from in the reference picture; orange points back in time, magenta forward
   (short vectors are drawn longer by a power of two, said on the panel);
4. MV flow to the previous frame, colour-coded (hue = direction, saturation = length,
   mmcv's Middlebury colour wheel), darkened where the confidence is low.

Small pictures are enlarged by an integer factor so that 8x8 blocks stay visible.
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from .maps import maps as _maps

CU_COLOUR = (255, 255, 255)
PU_COLOUR = (255, 220, 0)
TU_COLOUR = (0, 200, 255)
MODE_COLOURS = {"intra": (235, 50, 50), "skip": (40, 210, 70), "merge": (40, 190, 235), "amvp": (150, 90, 255)}
PAST_COLOUR = (255, 150, 0)
FUTURE_COLOUR = (255, 60, 220)


def auto_scale(height: int, target: int = 540) -> int:
    """Integer enlargement that brings a picture to at least about `target` rows (1 for
    large ones), so that 8x8 blocks and short vectors stay visible."""
    return max(1, min(8, -(-target // max(height, 1)) if height < target * 0.75 else 1))


def _enlarge(img: np.ndarray, s: int) -> np.ndarray:
    return img if s == 1 else cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_NEAREST)


def _edge_masks(edges: np.ndarray, s: int) -> np.ndarray:
    """Boundary bits per pixel -> 1-pixel-wide lines on the enlarged picture."""
    h, w = edges.shape
    out = np.zeros((h * s, w * s), bool)
    out[:, ::s] |= np.repeat((edges & 1).astype(bool), s, axis=0)
    out[::s, :] |= np.repeat((edges & 2).astype(bool), s, axis=1)
    return out


def _blend(img: np.ndarray, mask: np.ndarray, colour, alpha: float) -> None:
    sel = img[mask].astype(np.float32)
    img[mask] = (sel * (1 - alpha) + np.array(colour, np.float32) * alpha).astype(np.uint8)


def _grey(rgb: np.ndarray, level: float = 0.75) -> np.ndarray:
    y = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) * level
    return np.repeat(y[..., None], 3, axis=2).astype(np.uint8)


def _label(img: np.ndarray, lines: list[str], s: int = 1) -> None:
    font, fs, th = cv2.FONT_HERSHEY_SIMPLEX, 0.45 if img.shape[1] < 700 else 0.7, 1 if img.shape[1] < 700 else 2
    y = 0
    for text in lines:
        (tw, tht), base = cv2.getTextSize(text, font, fs, th)
        cv2.rectangle(img, (0, y), (tw + 8, y + tht + base + 6), (0, 0, 0), -1)
        cv2.putText(img, text, (4, y + tht + 3), font, fs, (255, 255, 255), th, cv2.LINE_AA)
        y += tht + base + 6


def partitions_panel(rgb: np.ndarray, m: dict, s: int) -> np.ndarray:
    img = _enlarge((rgb.astype(np.float32) * 0.85).astype(np.uint8), s)
    _blend(img, _edge_masks(m["tu_edges"], s), TU_COLOUR, 0.8)
    _blend(img, _edge_masks(m["pu_edges"], s), PU_COLOUR, 0.9)
    _blend(img, _edge_masks(m["cu_edges"], s), CU_COLOUR, 1.0)
    _label(img, ["CU (white)  PU (yellow)  TU (cyan)"])
    return img


def modes_panel(rgb: np.ndarray, m: dict, s: int) -> np.ndarray:
    base = _grey(rgb, 0.8).astype(np.float32)
    tint = np.zeros_like(base)
    intra, skip = m["intra"].astype(bool), m["skip"].astype(bool)
    merge = m["merge"].astype(bool) & ~skip
    amvp = ~intra & ~skip & ~merge
    shares = {}
    for name, sel in (("intra", intra), ("skip", skip), ("merge", merge), ("amvp", amvp)):
        tint[sel] = MODE_COLOURS[name]
        shares[name] = 100.0 * sel.mean()
    img = _enlarge((base * 0.5 + tint * 0.5).astype(np.uint8), s)
    _blend(img, _edge_masks(m["cu_edges"], s), (0, 0, 0), 0.6)
    _label(img, ["intra (red) {intra:.0f}%  skip (green) {skip:.0f}%".format(**shares),
                 "merge (cyan) {merge:.0f}%  AMVP (violet) {amvp:.0f}%".format(**shares)])
    return img


def prediction_units(pu_edges_grid: np.ndarray):
    """(y, x, h, w) of every PU on the 4x4 grid, from the PU boundary bits."""
    gh, gw = pu_edges_grid.shape
    left = (pu_edges_grid & 1).astype(bool)
    top = (pu_edges_grid & 2).astype(bool)
    out = []
    ys, xs = np.nonzero(left & top)
    for y, x in zip(ys.tolist(), xs.tolist()):
        rx = np.flatnonzero(left[y, x + 1:])
        w = int(rx[0]) + 1 if rx.size else gw - x
        ry = np.flatnonzero(top[y + 1:, x])
        h = int(ry[0]) + 1 if ry.size else gh - y
        out.append((y, x, h, w))
    return out


def vectors_panel(rgb: np.ndarray, priors, s: int) -> np.ndarray:
    img = _enlarge(_grey(rgb, 0.7), s)
    a = priors.arrays
    l, r, t, b = priors.conf_win
    arrows = []
    if (l | t) % 4 == 0:
        grid = _maps(priors, ["pu_edges"], factor=4)["pu_edges"]
        oy, ox = t // 4, l // 4
        for y, x, h, w in prediction_units(grid):
            by, bx = y + oy, x + ox
            if a["pred_mode"][by, bx] == 1:
                continue
            for lst in (0, 1):
                if (a["inter_dir"][by, bx] >> lst) & 1:
                    mx, my = (int(v) for v in a["mv"][by, bx, lst])
                    past = int(a["ref_poc"][by, bx, lst]) < priors.poc
                    arrows.append((x * 4 + w * 2, y * 4 + h * 2, mx / 4, my / 4, past))
    # short vectors are lengthened by a power of two so that their direction shows
    lengths = np.array([np.hypot(u, v) for _, _, u, v, _ in arrows]) if arrows else np.zeros(1)
    typical = float(np.percentile(lengths, 90)) * s
    gain = 1
    while arrows and gain < 16 and typical * gain < 10:
        gain *= 2
    thick = 1 if s < 3 else 2
    for cx, cy, u, v, past in arrows:
        colour = PAST_COLOUR if past else FUTURE_COLOUR
        c = (int(cx * s), int(cy * s))
        end = (int(round(c[0] + u * s * gain)), int(round(c[1] + v * s * gain)))
        if end == c:
            cv2.circle(img, c, max(1, s // 2), colour, -1)
        else:
            cv2.arrowedLine(img, c, end, colour, thick, cv2.LINE_AA, tipLength=0.3)
    _label(img, ["MV per PU: past ref (orange), future ref (magenta)"]
           + ([f"arrows drawn {gain}x longer"] if gain > 1 else []) + ([] if arrows else ["no inter PU"]))
    return img


def colour_wheel(size: int) -> np.ndarray:
    """The flow colour key: a disc whose colour at (x, y) is that of the flow (x, y)."""
    from mmcv import flow2rgb

    r = (size - 1) / 2
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    f = np.stack([(xx - r) / r, (yy - r) / r], -1)
    rgb = flow2rgb(f / np.sqrt(2))  # flow2rgb normalises by the corner's length
    rgb[np.hypot(f[..., 0], f[..., 1]) > 1] = 0
    return np.clip(rgb * 255, 0, 255).astype(np.uint8)


def flow_panel(flow: Optional[np.ndarray], conf: Optional[np.ndarray], shape, s: int, k: int = -1) -> np.ndarray:
    h, w = shape
    if flow is None:
        img = np.zeros((h * s, w * s, 3), np.uint8)
        _label(img, [f"no frame at offset {k:+d}"])
        return img
    from mmcv import flow2rgb

    f = np.ascontiguousarray(np.moveaxis(flow, 0, -1))
    mag = np.hypot(f[..., 0], f[..., 1])
    # flow2rgb scales by the largest vector: clip at the 99th percentile so that a few
    # outliers do not wash out the typical motion
    p99 = float(np.percentile(mag, 99)) if mag.size else 0.0
    if p99 > 0:
        f = f * np.minimum(1.0, p99 / np.maximum(mag, 1e-6))[..., None]
    rgb = flow2rgb(f) * (0.15 + 0.85 * conf[..., None])
    img = _enlarge(np.clip(rgb * 255, 0, 255).astype(np.uint8), s)
    d = max(32, min(img.shape[:2]) // 6)
    if img.shape[0] > 2 * d and img.shape[1] > 2 * d:
        img[-d - 4:-4, -d - 4:-4] = np.where(colour_wheel(d) > 0, colour_wheel(d), img[-d - 4:-4, -d - 4:-4])
    _label(img, [f"MV flow to frame {k:+d}: full colour = {p99:.1f} px, mean {mag.mean():.1f} px",
                 f"dark = low confidence (mean {conf.mean():.2f})"])
    return img


def render(rgb: np.ndarray, priors, flow=None, conf=None, *, scale: Optional[int] = None, k: int = -1,
           title: str = "") -> np.ndarray:
    """2x2 mosaic (uint8 RGB) for one frame: partitions, modes, vectors, flow."""
    h, w = rgb.shape[:2]
    s = scale or auto_scale(h)
    m = _maps(priors, ["cu_edges", "pu_edges", "tu_edges", "intra", "skip", "merge"])
    top = np.concatenate([partitions_panel(rgb, m, s), modes_panel(rgb, m, s)], axis=1)
    bottom = np.concatenate([vectors_panel(rgb, priors, s), flow_panel(flow, conf, (h, w), s, k)], axis=1)
    out = np.concatenate([top, bottom], axis=0)
    if title:
        font, fs = cv2.FONT_HERSHEY_SIMPLEX, 0.5 if out.shape[1] < 1400 else 0.9
        (tw, th), base = cv2.getTextSize(title, font, fs, 1)
        x = out.shape[1] - tw - 8
        cv2.rectangle(out, (x - 4, 0), (out.shape[1], th + base + 6), (0, 0, 0), -1)
        cv2.putText(out, title, (x, th + 3), font, fs, (255, 255, 255), 1, cv2.LINE_AA)
    return out
