"""Dense optical flow from the bitstream's motion vectors (Python face of csrc/raster).

``mv_flow(target, to, neighbours)`` gives, for the target picture, the flow towards
picture ``to``: ``flow[:, y, x] = (u, v)`` such that sampling ``to`` at ``(x + u, y + v)``
predicts the target at ``(x, y)`` (backward warping), in luma pixels of the cropped picture
(conformance window applied), and a confidence in [0, 1] per pixel.

Where it comes from, per 4x4 block (see csrc/raster/flow.h):
  * the target's own vectors, POC-scaled to ``to`` (constant velocity);
  * the neighbours' vectors whose time span crosses the target, projected onto it; those of
    ``to`` pointing at the target give the exact inverse motion (I-pictures, intra blocks);
  * blocks with none of these are filled from their surroundings.

Confidence: 0.7-1 where the encoder predicted the block from ``to`` itself (about 0.7-0.8
for a single vector, up to 1 when other evidence agrees); about 0.2-0.7 for POC-scaled or
projected vectors (lower the farther they extrapolate or the more candidates disagree);
<= 0.3 for filled holes; 0 for no information (e.g. ``to`` lies in another coded video
sequence, across an IDR).
"""
from __future__ import annotations

from typing import Iterable, Optional, Union

import numpy as np

from . import _core
from .priors import PicturePriors, Window, referenced_pocs

INTERP = ("nearest", "bilinear")


def crop_rect(p: PicturePriors) -> tuple[int, int, int, int]:
    """(left, top, width, height) of the cropped picture in coded luma samples."""
    l, r, t, b = p.conf_win
    return (l, t, p.width - l - r, p.height - t - b)


def output_size(p: PicturePriors, factor: int = 1) -> tuple[int, int]:
    """(height, width) of flow and maps at ``factor`` (ceil of the cropped size / factor)."""
    _, _, w, h = crop_rect(p)
    return (-(-h // factor), -(-w // factor))


def _referenced_pocs(p) -> Optional[list[int]]:
    """POCs any slice of the picture references (lets the rasterizer skip pictures whose
    motion cannot reach the target), or None when unknown."""
    if getattr(type(p), "referenced_pocs", None) is not None:  # cached (PicturePriors)
        return p.referenced_pocs
    return referenced_pocs(getattr(p, "slices", None))


def warp_fold(img, flow, scale: int, channels_last: bool = False):
    """``pixel_unshuffle(flow_warp(img, upscale_flow(flow, scale)), scale)`` of
    :mod:`bitsr.models.warp` (bilinear, border padding), computed on the LR grid by the C++
    kernel: the HR displacement is constant over each LR pixel's ``scale x scale`` block, so
    one weight pair serves every phase (about 4x faster than ``grid_sample`` at HR). CPU float
    tensors ``img`` [B, C, scale*h, scale*w] and ``flow`` [B, 2, h, w] (LR pixels) -> float32
    [B, C*scale^2, h, w]; the samples agree with the torch path to float rounding (which
    normalises positions to [-1, 1] and back). Set as :class:`~bitsr.models.BitVSR`'s
    ``feedback_warp`` by :func:`bitsr.upscaler.load_model`. ``channels_last``: the result in
    that memory layout (as BitVSR's CPU features are), written so by the kernel."""
    import torch

    threads = max(1, torch.get_num_threads())
    outs = [torch.from_numpy(_core.warp_fold(i.detach().numpy(), f.detach().numpy(), int(scale), threads,
                                             channels_last))
            for i, f in zip(img, flow)]  # channels-last images are read in place
    out = outs[0][None] if len(outs) == 1 else torch.stack(outs)
    return out.permute(0, 3, 1, 2) if channels_last else out  # ([B, h, w, C s^2] memory)


def _as_torch(arrays):
    import torch

    return tuple(torch.from_numpy(a) for a in arrays)


def zero_flow(p: PicturePriors, factor: int = 1, confidence: float = 0.0, as_torch: bool = False):
    """Zero flow with a constant confidence, shaped like :func:`mv_flow`'s output."""
    h, w = output_size(p, factor)
    out = (np.zeros((2, h, w), np.float32), np.full((h, w), confidence, np.float32))
    return _as_torch(out) if as_torch else out


def mv_flow(
    target: PicturePriors,
    to: Union[PicturePriors, int],
    neighbours: Iterable[PicturePriors] = (),
    *,
    factor: int = 1,
    interp: str = "nearest",
    as_torch: bool = False,
    project: bool = True,
    fill: bool = True,
    out: Optional[tuple[np.ndarray, np.ndarray]] = None,
):
    """Flow from ``target`` to picture ``to`` (PicturePriors, or a POC of the same coded video
    sequence) and its confidence: float32 ``[2, H, W]`` and ``[H, W]``.

    ``neighbours``: priors of pictures around the target (any order; pictures of another
    coded video sequence or with another size are ignored). The more of them that reference
    the target or span it, the better I-pictures and intra blocks are covered.
    ``factor``: output at the cropped size divided by this integer (rounded up); flow values
    are then in output pixels. ``factor=4`` with a 4-aligned crop is the 4x4 block grid.
    ``interp``: 'nearest' (piecewise constant per 4x4 block, as the encoder predicts) or
    'bilinear' (between block centres). ``as_torch`` returns CPU tensors sharing the memory.
    ``project``/``fill`` switch off the neighbours' projection and the hole filling.
    ``out``: (flow, confidence) float32 arrays of the output shape to write into (reusing
    them across frames avoids faulting in fresh memory each time).
    """
    if not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    if interp not in INTERP:
        raise ValueError(f"interp must be one of {INTERP}, got {interp!r}")
    if not isinstance(to, (int, np.integer)):  # PicturePriors (or the like)
        if to.cvs_index != target.cvs_index:  # across an IDR: no motion relation
            if out is not None:
                out[0].fill(0.0)
                out[1].fill(0.0)
                return _as_torch(out) if as_torch else out
            return zero_flow(target, factor, 0.0, as_torch)
        to_poc = to.poc
        neighbours = [to, *neighbours]
    else:
        to_poc = int(to)
    nbs, seen = [], {target.poc}
    for p in neighbours:
        if p is None or p.cvs_index != target.cvs_index or p.poc in seen:
            continue
        if (p.width, p.height) != (target.width, target.height):
            continue
        seen.add(p.poc)
        nbs.append((p.arrays, p.poc, _referenced_pocs(p)))
    res = _core.raster_flow(target.arrays, target.poc, to_poc, nbs, crop_rect(target), int(factor), interp,
                            project=project, fill=fill, out=out)
    return _as_torch(res) if as_torch else res


def window_flow(target: PicturePriors, window: Optional[Window], k: int, **kwargs):
    """Flow of ``target`` to the picture ``k`` display positions away, using the priors of the
    pictures around it in ``window`` (a reader's :class:`~bitsr.priors.Window`; None: the
    target alone). Beyond the start or end of the video: zero flow, confidence 0."""
    k = int(k)
    if window is None:
        window = Window(0, {0: target})
    to = window[k]
    if to is None:
        out = kwargs.get("out")
        if out is not None:
            out[0].fill(0.0)
            out[1].fill(0.0)
            return _as_torch(out) if kwargs.get("as_torch") else out
        return zero_flow(target, kwargs.get("factor", 1), 0.0, kwargs.get("as_torch", False))
    return mv_flow(target, to, window.others(0, k), **kwargs)
