"""Light building blocks. Each block runs either on a whole feature map (zero padding) or on a
batch of gathered tiles with a halo (valid convolutions), with identical results."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.1, inplace=True)


class LightResBlock(nn.Module):
    """conv3x3 -> LeakyReLU -> conv3x3, plus identity (EDSR/RFDN-style, no normalisation).

    The block pads its input with 2 zeros once and runs both convolutions 'valid' (the middle
    activation keeps its 1-pixel border), so a T x T output tile depends on exactly a
    (T+4) x (T+4) input window (``HALO = 2``) and tiles need no masking at the frame edge.
    """

    HALO = 2

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3)
        self.conv2 = nn.Conv2d(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(act(self.conv1(F.pad(x, (2, 2, 2, 2)))))

    def forward_tiles(self, win: torch.Tensor, inside0: torch.Tensor | None = None) -> torch.Tensor:
        """``win`` [N, C, T+4, T+4] -> [N, C, T, T]. ``inside0`` [N, 1, T, T] (1 inside the
        frame) keeps the padding beyond a frame that is not a whole number of tiles at zero, as
        :meth:`forward` sees it; None when every tile is whole."""
        y = self.conv2(act(self.conv1(win))) + win[:, :, 2:-2, 2:-2]
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


def keys_cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys cubic convolution kernel with a = -0.5, MATLAB's ``cubic`` (the evaluation's bicubic
    baseline, :func:`bitsr.data.imresize.cubic`, uses the same; the tests hold them equal)."""
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


class MatlabBicubicUp(nn.Module):
    """Fixed x``scale`` upsampling with MATLAB's bicubic (``imresize(x, s)``: Keys a = -0.5,
    symmetric padding), as a depthwise 5x5 convolution per output phase + pixel shuffle.

    The network's output is a residual over this base, so the base equals the bicubic baseline
    of the evaluation; on CPU it is about 3x faster than ``F.interpolate(mode='bicubic')``.
    """

    def __init__(self, scale: int, channels: int = 3):
        super().__init__()
        self.scale, self.channels = scale, channels
        d = (torch.arange(scale, dtype=torch.float64) + 0.5) / scale - 0.5  # sub-pixel offset of each output phase
        taps = keys_cubic(d[:, None] - torch.arange(-2, 3, dtype=torch.float64)[None, :])  # [s, 5]
        taps /= taps.sum(1, keepdim=True)
        k = torch.einsum("ay,bx->abyx", taps, taps).reshape(scale * scale, 1, 5, 5)
        w = k.repeat(channels, 1, 1, 1).float()
        self.register_buffer("weight", w, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.phases(x), self.scale)

    def phases(self, x: torch.Tensor) -> torch.Tensor:
        """The upsampled image on the LR grid, [B, C*s^2, h, w]: ``pixel_unshuffle`` of
        :meth:`forward`'s output (the same values)."""
        # symmetric padding by 2: x1 x0 | x0 x1 ... xn-2 xn-1 | xn-1 xn-2
        x = torch.cat([x[..., 1:2], x[..., :1], x, x[..., -1:], x[..., -2:-1]], -1)
        x = torch.cat([x[..., 1:2, :], x[..., :1, :], x, x[..., -1:, :], x[..., -2:-1, :]], -2)
        return F.conv2d(x, self.weight.to(x.dtype), groups=self.channels)


class CodecCondition(nn.Module):
    """Compression-aware modulation (SFT, as in CAVSR / SFTGAN): what the parser knows per 4x4
    block and per picture - QP, CU and transform sizes, skip / intra / residual, prediction
    from the previous frame alone, picture type and temporal layer - mapped to a per-pixel
    scale and shift of the features at ``points`` places of the network.

    Runs on the 4x4 block grid (16x fewer positions than the LR frame; the priors are constant
    within a block) with 3x3 context, then repeats each value over its block. The heads start
    at zero, so a network gains the modulation without changing its output until trained.
    """

    def __init__(self, channels: int, points: int = 2, hidden: int = 32):
        super().__init__()
        from .spec import MAP_CHANNELS

        self._idx = {k: MAP_CHANNELS.index(k) for k in MAP_CHANNELS}
        self.channels, self.points = channels, points
        self.body = nn.Sequential(nn.Conv2d(self.FEATURES, hidden, 3, padding=1), nn.LeakyReLU(0.1),
                                  nn.Conv2d(hidden, hidden, 3, padding=1), nn.LeakyReLU(0.1))
        self.head = nn.Conv2d(hidden, 2 * channels * points, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    FEATURES = 11

    def features(self, maps: torch.Tensor) -> torch.Tensor:
        """[B, K, gh, gw] maps (MAP_CHANNELS) -> [B, FEATURES, gh, gw] normalised conditions."""
        c = lambda k: maps[:, self._idx[k]:self._idx[k] + 1]  # noqa: E731
        st = c("slice_type")
        return torch.cat([
            (c("qp") - 32.0) / 8.0, (c("cu_log2") - 4.5) / 1.5, (c("tu_log2") - 3.5) / 1.5,
            c("skip"), c("intra"), c("residual"), c("from_prev"),
            (st == 0).to(maps.dtype), (st == 1).to(maps.dtype), (st == 2).to(maps.dtype),
            c("temporal_id") / 3.0,
        ], 1)

    def forward(self, maps: torch.Tensor, h: int, w: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(gain, shift) pairs [B, C, h, w] for each modulation point, at LR size h x w: the
        features become ``x * gain + shift``, gain = 1 + the head's scale (1 at the start)."""
        y = self.head(self.body(self.features(maps)))
        n = self.channels
        gain = torch.zeros_like(y[:1, :, :1, :1])
        for i in range(self.points):
            gain[:, 2 * n * i:2 * n * i + n] = 1.0
        y = (y + gain).contiguous(memory_format=torch.channels_last)  # on the block grid: 16x fewer values
        # Each block's values over its 4x4 pixels in one copy, channels-last (the layout of the
        # CPU features, which mixed layouts would slow several-fold); a view in [B, C, h, w].
        b, k, gh, gw = y.shape
        z = y.permute(0, 2, 3, 1)[:, :, None, :, None, :].expand(b, gh, 4, gw, 4, k)
        y = z.reshape(b, 4 * gh, 4 * gw, k)[:, :h, :w].permute(0, 3, 1, 2)
        return [(y[:, 2 * n * i:2 * n * i + n], y[:, 2 * n * i + n:2 * n * (i + 1)]) for i in range(self.points)]
