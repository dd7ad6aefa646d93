"""PROVISIONAL motion-vector flow and partition maps, computed in NumPy from the priors.

Stand-in for ``bitsr.flow`` (branch ``raster``, C++ rasterizer) with the documented
semantics: ``flow(frame, k)`` -> (flow float32 [2, H, W] in cropped luma pixels, confidence
float32 [H, W]) where ``frame(x) ~ frame_{t+k}(x + flow(x))`` (backward-warping convention, the
same as an HEVC motion vector), and maps on the 4x4 grid: CU size, skip/intra/residual masks,
QP. Only :mod:`bitsr.data.inputs` imports this file; it is deleted once ``bitsr.flow`` lands.
"""
from __future__ import annotations

import numpy as np

UNUSED = np.iinfo(np.int32).min


def _cropped_grid(priors, a: np.ndarray) -> np.ndarray:
    """Crops a [Gh, Gw, ...] grid to the conformance window (4x4-block resolution)."""
    l, r, t, b = priors.conf_win
    w, h = priors.cropped_size
    return a[t // 4: t // 4 + (h + 3) // 4, l // 4: l // 4 + (w + 3) // 4]


def _to_pixels(priors, grid: np.ndarray) -> np.ndarray:
    """[Gh, Gw, ...] -> [H, W, ...] cropped luma pixels (block-constant)."""
    l, r, t, b = priors.conf_win
    w, h = priors.cropped_size
    full = np.repeat(np.repeat(grid, 4, axis=0), 4, axis=1)
    return full[t: t + h, l: l + w]


def flow(frame, k: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Flow from ``frame`` to the display frame ``k`` pictures away (POC + k).

    Each 4x4 block uses the motion vector (of L0 or L1) whose reference is closest in time to
    the target, scaled linearly by (target - poc) / (ref - poc). Confidence: 1 when the
    reference is the target itself, lower the more the vector had to be scaled, 0 for intra.
    """
    p = frame.priors
    a = p.arrays
    poc = int(p.poc)
    d_tgt = float(k)
    ref = a["ref_poc"].astype(np.int64)  # [Gh, Gw, 2]
    used = (ref != UNUSED) & (a["pred_mode"] != 1)[..., None]
    d_ref = np.where(used, ref - poc, 1).astype(np.float32)
    d_ref[d_ref == 0] = 1  # a picture never references itself; guard the division
    s = d_tgt / d_ref
    conf = np.where(s == 1.0, 1.0, 0.5 / (1.0 + np.abs(s - 1.0))).astype(np.float32)
    conf = np.where(used, conf, 0.0)
    best = np.argmax(conf, axis=-1)  # [Gh, Gw]
    mv = a["mv"].astype(np.float32) * 0.25  # [Gh, Gw, 2 list, 2 xy]
    sel = np.take_along_axis(mv, best[..., None, None].repeat(2, -1), axis=2)[:, :, 0]  # [Gh, Gw, 2]
    sc = np.take_along_axis(s, best[..., None], axis=-1)
    c = np.take_along_axis(conf, best[..., None], axis=-1)[..., 0]
    f = sel * sc
    fp = _to_pixels(p, f)  # [H, W, 2]
    cp = _to_pixels(p, c)
    return np.ascontiguousarray(fp.transpose(2, 0, 1)), np.ascontiguousarray(cp)


def maps(frame) -> dict[str, np.ndarray]:
    """Partition maps on the cropped 4x4 grid [ceil(H/4), ceil(W/4)]."""
    p = frame.priors
    a = p.arrays
    pm = _cropped_grid(p, a["pred_mode"])
    return {
        "cu_log2": _cropped_grid(p, a["cu_log2"]).astype(np.uint8),
        "skip": (pm == 2).astype(np.uint8),
        "intra": (pm == 1).astype(np.uint8),
        "residual": _cropped_grid(p, a["residual"]).astype(np.uint8),
        "qp": _cropped_grid(p, a["qp_y"]).astype(np.int8),
    }
