"""Running a model over whole clips, and scoring it (Y-PSNR / SSIM)."""
from __future__ import annotations

import torch

from ..models.spec import INPUT_KEYS
from .metrics import psnr_y, ssim_y, to_uint8


@torch.no_grad()
def run_clip(model, tensors: dict, chunk: int = 8, device="cpu"):
    """Yields HR frames uint8 [H, W, 3] of a clip given as tensors [T, ...] (no batch axis).
    Unidirectional models carry their state across chunks of ``chunk`` frames (bounded
    memory); bidirectional ones see each chunk as a window."""
    t = tensors["lr"].shape[0]
    state = None
    for s in range(0, t, chunk):
        sl = slice(s, min(s + chunk, t))
        kw = {k: tensors[k][sl][None].to(device) for k in INPUT_KEYS if k in tensors}
        if not getattr(model, "bidirectional", False):
            kw.pop("flow_next", None)
            kw.pop("conf_next", None)
        out, state = model(**kw, state=state)
        for y in to_uint8(out[0]).cpu():
            yield y


@torch.no_grad()
def score_clip(model, tensors: dict, scale: int, border: int | None = None, chunk: int = 8, device="cpu"):
    """Mean Y-PSNR and SSIM over the frames of a clip with an ``hr`` tensor."""
    border = scale if border is None else border
    ps, ss = [], []
    hr = to_uint8(tensors["hr"])
    for i, y in enumerate(run_clip(model, tensors, chunk, device)):
        ps.append(psnr_y(y, hr[i], border))
        ss.append(ssim_y(y, hr[i], border))
    return sum(ps) / len(ps), sum(ss) / len(ss)
