"""TEMPORARY stand-in for ``bitsr.upscale.Upscaler`` (model branch), with the same interface:
bicubic upscaling of ``bitsr.open`` frames. Lets the pipeline, writer and CLI be built and tested
before the network lands; deleted when the model branch is merged."""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .tiling import run_tiled


class Upscaler:
    def __init__(self, scale: int = 4, device: str = "cpu", model: str = "default", *, tile: int = 0):
        if model != "default":
            raise ValueError(f"unknown model {model!r} (available: default)")
        if scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {scale}")
        self.scale, self.device, self.tile = scale, torch.device(device), tile

    def _sr(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)

    @torch.inference_mode()
    def frames(self, source) -> Iterator[np.ndarray]:
        """HR RGB uint8 frames in display order; ``source`` is a path or an open bitsr Reader."""
        from .io.reader import open as bitsr_open

        reader = bitsr_open(source) if isinstance(source, (str, os.PathLike)) else source
        with reader:
            for f in reader:
                x = torch.from_numpy(f.rgb).to(self.device).permute(2, 0, 1)[None].float() / 255
                h, w = x.shape[-2:]
                if self.tile and max(h, w) > self.tile:
                    y = run_tiled(lambda t: self._sr(x[..., t.y0:t.y1, t.x0:t.x1]), h, w, self.scale, self.tile, 8)
                else:
                    y = self._sr(x)
                yield (y[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
