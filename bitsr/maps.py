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
from .flow import crop_rect
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
