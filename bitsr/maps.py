"""Coding-structure maps of a picture (Python face of csrc/raster/maps).

Each map is a 2-D array over the cropped picture, at full resolution (``factor=1``) or
subsampled by an integer factor (``factor=4``: one value per 4x4 block when the
conformance window is 4-aligned). Values are taken from the 4x4 block under the centre of
each output pixel; boundary maps instead mark an output pixel when a block boundary starts
inside the samples it covers.

========== ===== ===========================================================
name       dtype meaning
========== ===== ===========================================================
cu_log2    uint8 log2 of the coding-unit size (3..6)
cu_depth   uint8 coding-quadtree depth (log2 CTB size - cu_log2)
tu_log2    uint8 log2 of the luma transform size
tu_depth   uint8 transform-tree depth (cu_log2 - tu_log2)
pred_mode  int8  0 inter, 1 intra, 2 skip
skip       uint8 1 in skipped CUs
intra      uint8 1 in intra CUs
inter      uint8 1 in inter CUs (skip included)
merge      uint8 1 in merge-mode PUs (skip included)
residual   uint8 1 where the CU codes a residual
bi         uint8 1 in bi-predicted PUs
qp         int8  luma QP of the CU
cu_edges   uint8 bit 0: a CU boundary on the pixel's left side, bit 1: on its top
pu_edges   uint8 same for prediction-unit boundaries (CU boundaries included)
tu_edges   uint8 same for transform-unit boundaries (CU boundaries included)
========== ===== ===========================================================
"""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np

from . import _core
from .flow import crop_rect, output_size
from .priors import PicturePriors

MAP_NAMES: tuple[str, ...] = tuple(_core.raster_map_names())
DEFAULT_MAPS = ("cu_log2", "pu_edges", "tu_edges", "skip", "intra", "residual", "qp")


def maps(
    priors: PicturePriors,
    names: Optional[Iterable[str]] = None,
    *,
    factor: int = 1,
    as_torch: bool = False,
) -> dict[str, np.ndarray]:
    """Dict name -> map (see the module table) for ``names`` (default ``DEFAULT_MAPS``;
    ``"all"`` for every map). ``as_torch`` returns CPU tensors sharing the arrays' memory."""
    if names is None:
        names = DEFAULT_MAPS
    elif isinstance(names, str):
        names = MAP_NAMES if names == "all" else (names,)
    if not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    out = _core.raster_maps(priors.arrays, list(names), crop_rect(priors), int(factor), priors.ctb_size)
    if as_torch:
        import torch

        return {k: torch.from_numpy(v) for k, v in out.items()}
    return out


def predicted_from(priors: PicturePriors, ref: Optional[PicturePriors], *, factor: int = 1) -> np.ndarray:
    """uint8 map over the cropped picture (at ``factor``, sampled like :func:`maps`): 1 where the
    block is predicted from picture ``ref`` alone - inter, one reference list, that list's
    reference is ``ref``, and no coded residual - so the decoder's reconstruction there is
    ``ref``'s samples moved by the block's vector (before in-loop filtering). All 0 when ``ref``
    is None or belongs to another coded video sequence, and where the priors are not valid."""
    if not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    h, w = output_size(priors, factor)
    if ref is None or ref.cvs_index != priors.cvs_index:
        return np.zeros((h, w), np.uint8)
    a = priors.arrays
    d = a["inter_dir"]
    lst = np.where(d == 2, 1, 0)  # the one list in use (inter_dir 1: list 0, 2: list 1)
    refp = np.take_along_axis(a["ref_poc"], lst[..., None], -1)[..., 0]
    ok = (a["pred_mode"] != 1) & ((d == 1) | (d == 2)) & (refp == ref.poc) & (a["residual"] == 0) & priors.valid
    # the 4x4 block under the centre of each output pixel, as csrc/raster/maps samples
    left, top, _, _ = crop_rect(priors)
    ys = (np.arange(h) * factor + factor // 2 + top) // 4
    xs = (np.arange(w) * factor + factor // 2 + left) // 4
    gh, gw = ok.shape
    return ok[np.minimum(ys, gh - 1)[:, None], np.minimum(xs, gw - 1)[None, :]].astype(np.uint8)


def picture_summary(priors) -> dict:
    """Per-picture statistics of the coding decisions over the cropped picture's 4x4 blocks:
    QP, shares of prediction modes (intra + inter + skip = 100; merge counts the merge PUs
    of non-skip inter CUs, bi the bi-predicted blocks) and of CU sizes (percent of the
    area), mean and largest motion-vector length in luma pixels (over the inter blocks'
    used lists)."""
    a = priors.arrays
    l, r, t, b = priors.conf_win
    gh, gw = a["pred_mode"].shape
    crop = (slice(t // 4, gh - b // 4), slice(l // 4, gw - r // 4))
    pm = a["pred_mode"][crop]
    inter = pm != 1
    qp = a["qp_y"][crop].astype(np.float64)
    pct = lambda m: round(100.0 * float(np.mean(m)), 2)  # noqa: E731
    out = {
        "qp": {"min": int(qp.min()), "mean": round(float(qp.mean()), 2), "max": int(qp.max())},
        "modes_pct": {
            "intra": pct(pm == 1),
            "inter": pct(pm == 0),
            "skip": pct(pm == 2),
            "merge": pct((pm == 0) & (a["merge_flag"][crop] != 0)),  # merge PUs of non-skip CUs
            "bi": pct(inter & (a["inter_dir"][crop] == 3)),
        },
        "residual_pct": pct(a["residual"][crop] != 0),
        "cu_size_pct": {str(1 << int(k)): pct(a["cu_log2"][crop] == k) for k in np.unique(a["cu_log2"][crop])},
    }
    mv = a["mv"][crop].astype(np.float64) / 4.0
    used = np.stack([(a["inter_dir"][crop] >> lst) & 1 for lst in (0, 1)], -1).astype(bool) & inter[..., None]
    lengths = np.hypot(mv[..., 0], mv[..., 1])[used]
    out["mv"] = {"mean_px": round(float(lengths.mean()), 3) if lengths.size else 0.0,
                 "max_px": round(float(lengths.max()), 3) if lengths.size else 0.0}
    return out
