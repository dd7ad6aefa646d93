"""Partition-guided routing: which branch computes each tile, and which tiles are reused.

The rule is deliberately transparent (no learned gate), read off the codec's decisions on the
tile grid (``tile`` LR pixels, a multiple of 4 so tiles cover whole 4x4 blocks; with tiles
aligned to 16, each tile lies inside one HEVC CU >= 16 or is split into 8x8 CUs):

* ``level = #{th in cu_thresholds : min CU log2 size in the tile < th}``; with the default
  thresholds (5, 4): CUs >= 32 -> branch 0 (cheapest), 16 -> branch 1, 8 -> branch 2 (heaviest).
  The encoder splits where the content is detailed or hard to predict, so small CUs get more
  compute.
* a tile whose blocks are all inter-predicted with no coded residual drops one level: the
  prediction from the past was already right, and the propagated features carry it.
* ``reusable``: the same residual-free inter tiles when their flow to the previous frame is a
  direct motion vector (confidence >= ``reuse_conf`` everywhere in the tile; ``bitsr.flow``
  gives about 0.8 to a vector that predicts from that very frame, 1 when other evidence
  agrees). With reuse on, such tiles take the warped previous features and output and are
  not computed at all.

Execution (:class:`TileRunner`) gathers the tiles of each branch into one batch, runs the
branch with valid convolutions on windows with a halo, and scatters the results back: the
compute is proportional to the tiles each branch actually gets. Blocks run in lock step
(step j applies block j of every branch that is at least j+1 blocks deep, all reading the same
features), so with identical branches the result equals the full-frame computation exactly.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..data.inputs import MAP_CHANNELS

_CU, _INTRA, _RES = MAP_CHANNELS.index("cu_log2"), MAP_CHANNELS.index("intra"), MAP_CHANNELS.index("residual")


def route_tiles(maps: torch.Tensor, conf: torch.Tensor, tile: int, cu_thresholds=(5, 4), reuse_conf: float = 0.8):
    """``maps`` [B, K, ceil(h/4), ceil(w/4)], ``conf`` [B, 1, h, w] -> (level long [B, Ht, Wt],
    reusable bool [B, Ht, Wt]) with ``Ht = ceil(h/tile)``."""
    g = tile // 4
    cu = maps[:, _CU:_CU + 1]
    min_cu = -F.max_pool2d(-cu, g, ceil_mode=True)
    coded = F.max_pool2d(torch.maximum(maps[:, _INTRA:_INTRA + 1], maps[:, _RES:_RES + 1]), g, ceil_mode=True)
    level = torch.zeros_like(min_cu, dtype=torch.long)
    for th in cu_thresholds:
        level += (min_cu < th).long()
    clean = coded == 0  # all inter, no residual
    level = torch.clamp(level - clean.long(), min=0)
    conf_min = -F.max_pool2d(-conf, tile, ceil_mode=True)
    reusable = clean & (conf_min >= reuse_conf)
    return level[:, 0], reusable[:, 0]


class TileLayout:
    """A [B, C, H, W] map stored tile-major for gathering windows of any subset of tiles.

    Storage is ``[B * (Ht + 2) * (Wt + 2), T, T, C]``: the tile grid with a border of zero
    tiles, each tile channels-last. A tile's window with ``ring`` pixels of context is cut from
    its 3 x 3 tile neighbourhood (nine whole-tile ``index_select`` s and two concatenations), and
    results go back with one whole-tile ``index_copy_``. Indexing whole tiles rather than pixels
    keeps both directions cheap on CPU (autograd turns a gather into an index_add whose cost
    grows with the number of indexed rows). Windows come out as channels_last tensors, the fast
    layout for CPU convolutions.
    """

    def __init__(self, b: int, h: int, w: int, tile: int, device):
        self.b, self.h, self.w, self.tile = b, h, w, tile
        self.ht, self.wt = math.ceil(h / tile), math.ceil(w / tile)
        self.device = device
        t = torch.arange(b * self.ht * self.wt, device=device)
        bi, r = t // (self.ht * self.wt), t % (self.ht * self.wt)
        self._ty, self._tx = r // self.wt, r % self.wt
        # tile id -> row of the padded tile grid
        self._slot = (bi * (self.ht + 2) + self._ty + 1) * (self.wt + 2) + self._tx + 1
        self.partial = (h % tile) != 0 or (w % tile) != 0

    @property
    def num_tiles(self) -> int:
        return self.b * self.ht * self.wt

    def to_tiles(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape[0], x.shape[1], self.tile
        if self.partial:
            x = F.pad(x, (0, self.wt * t - self.w, 0, self.ht * t - self.h))
        x = x.reshape(b, c, self.ht, t, self.wt, t).permute(0, 2, 4, 3, 5, 1)  # B Ht Wt T T C
        x = F.pad(x, (0, 0, 0, 0, 0, 0, 1, 1, 1, 1))
        return x.reshape(-1, t, t, c).contiguous()

    def from_tiles(self, tiles: torch.Tensor) -> torch.Tensor:
        t, c = self.tile, tiles.shape[-1]
        x = tiles.view(self.b, self.ht + 2, self.wt + 2, t, t, c)[:, 1:-1, 1:-1]
        x = x.permute(0, 5, 1, 3, 2, 4).reshape(self.b, c, self.ht * t, self.wt * t)
        return x[:, :, :self.h, :self.w]

    def gather(self, store: torch.Tensor, tiles: torch.Tensor, ring: int) -> torch.Tensor:
        """Windows of ``tiles`` (flat tile ids) with ``ring`` pixels of context -> [N, C, n, n]."""
        return _GatherWindows.apply(store, self._slot[tiles], self.wt + 2, ring).permute(0, 3, 1, 2)

    def scatter_(self, store: torch.Tensor, tiles: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Writes [N, C, T, T] into the tiles, in place."""
        return store.index_copy_(0, self._slot[tiles], values.permute(0, 2, 3, 1).to(store.dtype))

    def add_(self, store: torch.Tensor, tiles: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        return store.index_add_(0, self._slot[tiles], values.permute(0, 2, 3, 1).to(store.dtype))

    def inside(self, tiles: torch.Tensor, ring: int, dtype=torch.float32) -> torch.Tensor | None:
        """[N, 1, n, n]: 1 where a window pixel lies inside the frame; None when no pixel of
        these windows lies outside (nothing to mask)."""
        n = self.tile + 2 * ring
        a = torch.arange(n, device=self.device) - ring
        yy = self._ty[tiles][:, None] * self.tile + a[None]
        xx = self._tx[tiles][:, None] * self.tile + a[None]
        iy = (yy >= 0) & (yy < self.h)
        ix = (xx >= 0) & (xx < self.w)
        if bool(iy.all()) and bool(ix.all()):
            return None
        return (iy[:, :, None] & ix[:, None, :]).unsqueeze(1).to(dtype)


class _GatherWindows(torch.autograd.Function):
    """Cuts [N, T+2r, T+2r, C] windows out of tile storage (see :class:`TileLayout`).

    Autograd's own backward of ``index_select`` would allocate and scatter-add into a zeroed
    copy of the whole storage for each of the nine neighbour pieces, which dominates a CPU
    training step; here one zeroed buffer receives the centre tiles with ``index_copy_``
    (slots are unique) and the eight halo strips with in-place adds.
    """

    @staticmethod
    def forward(ctx, store, slots, stride: int, ring: int):
        ctx.save_for_backward(slots)
        ctx.shape, ctx.stride, ctx.ring = store.shape, stride, ring
        if ring == 0:
            return store.index_select(0, slots)
        t = store.shape[1]
        cut = (slice(t - ring, t), slice(0, t), slice(0, ring))
        rows = []
        for dy in (-1, 0, 1):
            cols = [store[:, cut[dy + 1], cut[dx + 1]].index_select(0, slots + dy * stride + dx) for dx in (-1, 0, 1)]
            rows.append(torch.cat(cols, 2))
        return torch.cat(rows, 1)

    @staticmethod
    def backward(ctx, grad):
        (slots,) = ctx.saved_tensors
        r, stride = ctx.ring, ctx.stride
        t = ctx.shape[1]
        g = grad.contiguous()
        buf = grad.new_zeros(ctx.shape)
        buf.index_copy_(0, slots, g[:, r:r + t, r:r + t])
        if r:
            src = (slice(0, r), slice(r, r + t), slice(r + t, t + 2 * r))  # window rows/cols per neighbour
            dst = (slice(t - r, t), slice(0, t), slice(0, r))  # the same pixels inside the neighbour
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    if dy == 0 and dx == 0:
                        continue
                    ids = slots + dy * stride + dx
                    view = buf[:, dst[dy + 1], dst[dx + 1]]
                    view.index_add_(0, ids, g[:, src[dy + 1], src[dx + 1]])
        return buf, None, None, None


def run_branches(layout: TileLayout, store: torch.Tensor, branches, tiles_per_branch) -> torch.Tensor:
    """Runs ``branches`` (lists of blocks with ``forward_tiles``) on their tiles in lock step.

    ``tiles_per_branch[i]``: flat tile ids for branch i (disjoint). Tiles in no list keep their
    features. Returns ``store`` (see :class:`TileLayout`), updated in place.
    """
    depth = max((len(b) for b in branches), default=0)
    for j in range(depth):
        active = [(br, t) for br, t in zip(branches, tiles_per_branch) if len(br) > j and t.numel()]
        if not active:
            break
        ids = torch.cat([t for _, t in active])
        halo = active[0][0][j].HALO
        win = layout.gather(store, ids, halo)
        in1 = layout.inside(ids, 1, win.dtype)
        in0 = layout.inside(ids, 0, win.dtype)
        outs, k = [], 0
        for br, t in active:
            n = t.numel()
            sl = slice(k, k + n)
            outs.append(br[j].forward_tiles(win[sl], None if in1 is None else in1[sl], None if in0 is None else in0[sl]))
            k += n
        # one write after all branches have read the features of step j
        layout.scatter_(store, ids, torch.cat(outs) if len(outs) > 1 else outs[0])
    return store
