"""Tiled inference: blend weights, tile layout, and tiled == untiled on a convolutional model."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from bitsr.tiling import run_tiled, tile_grid


class TinySR(nn.Module):
    """Three 3x3 convs (receptive radius 3 LR pixels) + pixel shuffle."""

    def __init__(self, scale):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(16, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x):
        return self.body(x)


@pytest.mark.parametrize("h,w,tile,overlap,align", [(37, 53, 16, 8, 1), (64, 96, 32, 8, 4), (50, 130, 48, 16, 16),
                                                    (20, 20, 64, 8, 1), (33, 70, 16, 0, 1)])
def test_weights_are_a_partition_of_unity(h, w, tile, overlap, align):
    out = run_tiled(lambda t: torch.ones(1, 1, 3 * (t.y1 - t.y0), 3 * (t.x1 - t.x0), dtype=torch.float64),
                    h, w, 3, tile, overlap, align)
    assert out.shape == (1, 1, 3 * h, 3 * w)
    assert torch.allclose(out, torch.ones_like(out), atol=1e-12)


def test_grid_covers_frame_and_is_aligned():
    tiles = tile_grid(100, 150, 32, 16, align=16)
    cover = torch.zeros(100, 150, dtype=torch.int)
    for t in tiles:
        cover[t.cy0:t.cy1, t.cx0:t.cx1] += 1
        assert t.y0 % 16 == 0 and t.x0 % 16 == 0
        assert t.y0 == max(0, t.cy0 - 16) and t.x1 == min(150, t.cx1 + 16)
        assert t.cy1 - t.cy0 >= 16 and t.cx1 - t.cx0 >= 16
    assert bool((cover == 1).all())
    assert [t.index for t in tiles] == list(range(len(tiles)))


@pytest.mark.parametrize("scale", [2, 4])
def test_tiled_equals_untiled_on_a_model(scale):
    torch.manual_seed(0)
    net = TinySR(scale).eval()
    x = torch.rand(1, 3, 45, 70)
    with torch.no_grad():
        full = net(x)
        tiled = run_tiled(lambda t: net(x[..., t.y0:t.y1, t.x0:t.x1]), 45, 70, scale, tile=16, overlap=8)
        # Context narrower than the receptive field: the seams show (the check above can fail).
        short = run_tiled(lambda t: net(x[..., t.y0:t.y1, t.x0:t.x1]), 45, 70, scale, tile=16, overlap=2)
    assert (tiled - full).abs().max() < 1e-5
    assert (short - full).abs().max() > 1e-3


def test_bad_arguments():
    with pytest.raises(ValueError):
        tile_grid(10, 10, 0, 0)
    with pytest.raises(ValueError):
        tile_grid(10, 10, 16, 12)
    with pytest.raises(ValueError):
        tile_grid(10, 10, 18, 4, align=4)
    with pytest.raises(ValueError, match="returned"):
        run_tiled(lambda t: torch.zeros(1, 1, 5, 5), 20, 20, 2, 16, 4)


@pytest.mark.parametrize("propagate", [False, True])
def test_upscaler_tiled_equals_untiled(propagate):
    """BitVSR through bitsr.Upscaler on a real clip cut into 3 x 2 tiles of 64 LR pixels (+32 of
    context): the single-frame model must match to the last uint8 level; the recurrent one keeps
    a state per tile, and here too the seams stay within one level."""
    from av_clips import make_av_clip, tiny_checkpoint

    from bitsr.upscaler import Upscaler

    src = make_av_clip("tile_clip", frames=8, width=208, height=144, container="mp4", audio=None, subtitles=False)
    ck = str(tiny_checkpoint(2, propagate=propagate))
    full = list(Upscaler(2, "cpu", ck, precision="fp32").frames(src))  # bf16 rounds per tile shape
    tiled = list(Upscaler(2, "cpu", ck, tile=64, precision="fp32").frames(src))
    assert len(full) == len(tiled) == 8
    for a, b in zip(full, tiled):
        d = abs(a.astype(int) - b.astype(int))
        assert d.max() <= 1 and d.mean() < 1e-3, (d.max(), d.mean())
