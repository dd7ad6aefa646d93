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
* ``reusable``: the same residual-free inter tiles when their motion points exactly at the
  previous frame (confidence 1 everywhere in the tile). With reuse on, such tiles take the
  warped previous features and output and are not computed at all.

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


def route_tiles(maps: torch.Tensor, conf: torch.Tensor, tile: int, cu_thresholds=(5, 4)):
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
    reusable = clean & (conf_min >= 1.0)
    return level[:, 0], reusable[:, 0]


class TileLayout:
    """Index arithmetic for a [B, C, H, W] map cut into ``tile`` x ``tile`` tiles.

    Features live as rows [B * Hp * Wp, C] of the map zero-padded to whole tiles plus a margin of
    ``halo``; a tile's window (tile + 2 * halo) is one ``index_select`` of rows, and its result
    goes back with one ``index_copy_``. Rows are channels-contiguous, so gathered windows are
    channels_last tensors, the fast layout for CPU convolutions.
    """

    def __init__(self, b: int, h: int, w: int, tile: int, halo: int, device):
        self.b, self.h, self.w, self.tile, self.halo = b, h, w, tile, halo
        self.ht, self.wt = math.ceil(h / tile), math.ceil(w / tile)
        self.hp, self.wp = self.ht * tile + 2 * halo, self.wt * tile + 2 * halo
        self.device = device
        t = torch.arange(b * self.ht * self.wt, device=device)
        bi, r = t // (self.ht * self.wt), t % (self.ht * self.wt)
        ty, tx = r // self.wt, r % self.wt
        self._origin = bi * self.hp * self.wp + ty * tile * self.wp + tx * tile  # window top-left row
        self._ty, self._tx = ty, tx
        self._win: dict[int, torch.Tensor] = {}
        self._inside: dict[int, torch.Tensor] = {}
        self.partial = (h % tile) != 0 or (w % tile) != 0

    @property
    def num_tiles(self) -> int:
        return self.b * self.ht * self.wt

    def _offsets(self, ring: int) -> torch.Tensor:
        """Row offsets of a window of size tile + 2 * ring, relative to the window origin."""
        o = self._win.get(ring)
        if o is None:
            n = self.tile + 2 * ring
            a = torch.arange(n, device=self.device) + (self.halo - ring)
            o = (a[:, None] * self.wp + a[None, :]).reshape(-1)
            self._win[ring] = o
        return o

    def to_rows(self, x: torch.Tensor) -> torch.Tensor:
        hl = self.halo
        xp = F.pad(x, (hl, self.wp - self.w - hl, hl, self.hp - self.h - hl))
        return xp.permute(0, 2, 3, 1).reshape(-1, x.shape[1]).contiguous()

    def from_rows(self, rows: torch.Tensor) -> torch.Tensor:
        c = rows.shape[1]
        hl = self.halo
        x = rows.view(self.b, self.hp, self.wp, c)[:, hl:hl + self.h, hl:hl + self.w]
        return x.permute(0, 3, 1, 2)

    def gather(self, rows: torch.Tensor, tiles: torch.Tensor, ring: int) -> torch.Tensor:
        """Windows of ``tiles`` (flat tile ids) with ``ring`` pixels of context -> [N, C, n, n]."""
        n = self.tile + 2 * ring
        idx = (self._origin[tiles][:, None] + self._offsets(ring)[None]).reshape(-1)
        return rows.index_select(0, idx).view(len(tiles), n, n, rows.shape[1]).permute(0, 3, 1, 2)

    def scatter_(self, rows: torch.Tensor, tiles: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Writes [N, C, tile, tile] into the tiles' centres, in place."""
        idx = (self._origin[tiles][:, None] + self._offsets(0)[None]).reshape(-1)
        return rows.index_copy_(0, idx, values.permute(0, 2, 3, 1).reshape(-1, rows.shape[1]).to(rows.dtype))

    def inside(self, tiles: torch.Tensor, ring: int) -> torch.Tensor | None:
        """[N, 1, n, n] float: 1 where a window pixel lies inside the frame; None when the frame
        is a whole number of tiles and ``ring`` is 0 (nothing to mask)."""
        if ring == 0 and not self.partial:
            return None
        n = self.tile + 2 * ring
        a = torch.arange(n, device=self.device) - ring
        yy = self._ty[tiles][:, None] * self.tile + a[None]
        xx = self._tx[tiles][:, None] * self.tile + a[None]
        iy = (yy >= 0) & (yy < self.h)
        ix = (xx >= 0) & (xx < self.w)
        return (iy[:, :, None] & ix[:, None, :]).unsqueeze(1).float()


def run_branches(layout: TileLayout, rows: torch.Tensor, branches, tiles_per_branch) -> torch.Tensor:
    """Runs ``branches`` (lists of blocks with ``forward_tiles``) on their tiles in lock step.

    ``tiles_per_branch[i]``: flat tile ids for branch i (disjoint). Tiles in no list keep their
    rows. Returns ``rows`` (updated in place).
    """
    depth = max((len(b) for b in branches), default=0)
    for j in range(depth):
        active = [(br, t) for br, t in zip(branches, tiles_per_branch) if len(br) > j and t.numel()]
        if not active:
            break
        ids = torch.cat([t for _, t in active])
        halo = active[0][0][j].HALO
        win = layout.gather(rows, ids, halo)
        in1 = layout.inside(ids, 1)
        in0 = layout.inside(ids, 0)
        outs, k = [], 0
        for br, t in active:
            n = t.numel()
            sl = slice(k, k + n)
            outs.append(br[j].forward_tiles(win[sl], None if in1 is None else in1[sl], None if in0 is None else in0[sl]))
            k += n
        layout.scatter_(rows, ids, torch.cat(outs) if len(outs) > 1 else outs[0])
    return rows
