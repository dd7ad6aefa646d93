"""Running a model over whole clips, and scoring it (Y-PSNR / SSIM)."""
from __future__ import annotations

import torch

from ..models.spec import FILE_CHUNK, FILE_LOOKAHEAD, clip_windows
from .metrics import psnr_y, ssim_y, to_uint8


@torch.no_grad()
def run_clip(model, tensors: dict, chunk: int = FILE_CHUNK, device="cpu", lookahead: int = FILE_LOOKAHEAD):
    """Yields HR frames uint8 [H, W, 3] of a clip given as tensors [T, ...] (no batch axis),
    as :class:`bitsr.Upscaler` runs a file: chunks of ``chunk`` frames, the forward state
    carried across them (bounded memory); a bidirectional model's backward pass also sees the
    ``lookahead`` frames after each chunk."""
    state = None
    for _, kw in clip_windows(model, tensors, chunk=chunk, lookahead=lookahead):
        kw = {k: v.to(device) if torch.is_tensor(v) else v for k, v in kw.items()}
        out, state = model(**kw, state=state)
        for y in to_uint8(out[0]).cpu():
            yield y


@torch.no_grad()
def score_clip(model, tensors: dict, scale: int, border: int | None = None, chunk: int = FILE_CHUNK, device="cpu"):
    """Mean Y-PSNR and SSIM over the frames of a clip with an ``hr`` tensor."""
    border = scale if border is None else border
    ps, ss = [], []
    hr = to_uint8(tensors["hr"])
    for i, y in enumerate(run_clip(model, tensors, chunk, device)):
        ps.append(psnr_y(y, hr[i], border))
        ss.append(ssim_y(y, hr[i], border))
    return sum(ps) / len(ps), sum(ss) / len(ss)
