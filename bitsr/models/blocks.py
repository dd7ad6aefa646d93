"""Light building blocks. Each block runs either on a whole feature map (zero padding) or on a
batch of gathered tiles with a halo (valid convolutions), with identical results."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.1)


class LightResBlock(nn.Module):
    """conv3x3 -> LeakyReLU -> conv3x3, plus identity (EDSR/RFDN-style, no normalisation).

    ``HALO = 2``: a T x T output tile needs a (T+4) x (T+4) input window.
    """

    HALO = 2

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(act(self.conv1(x)))

    def forward_tiles(self, win: torch.Tensor, inside1: torch.Tensor | None = None,
                      inside0: torch.Tensor | None = None) -> torch.Tensor:
        """``win`` [N, C, T+4, T+4] -> [N, C, T, T]. ``inside1``/``inside0`` ([N, 1, T+2, T+2] /
        [N, 1, T, T], 1 inside the frame) zero what lies outside the frame, as zero padding
        does in :meth:`forward`; None when every tile is inside."""
        m = act(F.conv2d(win, self.conv1.weight, self.conv1.bias))
        if inside1 is not None:
            m = m * inside1
        y = F.conv2d(m, self.conv2.weight, self.conv2.bias) + win[:, :, 2:-2, 2:-2]
        if inside0 is not None:
            y = y * inside0
        return y


class Upsampler(nn.Module):
    """conv3x3 to 3*s^2 channels + pixel shuffle (RFDN/IMDN tail). ``HALO = 1``."""

    HALO = 1

    def __init__(self, channels: int, scale: int, out_channels: int = 3):
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(channels, out_channels * scale * scale, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(x), self.scale)

    def forward_tiles(self, win: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(F.conv2d(win, self.conv.weight, self.conv.bias), self.scale)
