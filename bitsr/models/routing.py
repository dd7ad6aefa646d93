"""Partition-guided routing: which branch computes each tile, and which tiles are reused.

The rule is deliberately transparent (no learned gate), read off the codec's decisions on the
tile grid (``tile`` LR pixels, a multiple of 4 so tiles cover whole 4x4 blocks; with tiles
aligned to 16, each tile lies inside one HEVC CU >= 16 or is split into 8x8 CUs):

* ``level = #{th in cu_thresholds : min CU log2 size in the tile < th}``; with the default
  thresholds (5, 4): CUs >= 32 -> branch 0 (cheapest), 16 -> branch 1, 8 -> branch 2 (heaviest).
  The encoder splits where the content is detailed or hard to predict, so small CUs get more
  compute.
* with ``demote_clean`` (the rule the first weights were trained with), a tile whose blocks
  are all inter-predicted with no coded residual drops one level: the prediction from the past
  was already right, and the propagated features carry it. On random-access video (x265's
  default GOP) most such tiles are B-blocks that average two pictures, whose detail still needs
  restoring: there the drop cost 0.06 dB at CRF 25 (calendar + city) while saving no CPU time.
* ``reusable``: tiles whose every block is predicted from the previous display frame alone
  (the ``from_prev`` channel: inter, one reference list pointing at that very picture, no coded
  residual) and whose flow to it is confident (>= ``reuse_conf`` everywhere in the tile;
  ``bitsr.flow`` gives 0.7-1 to vectors that predict from that frame). The decoder made
  such a tile by moving the previous picture's samples, so the previous output, moved the same
  way, is its output too. Bi-predicted blocks (a B-picture averaging two pictures) and blocks
  predicting from any other picture are never reused. With reuse on, reusable tiles take the
  warped previous features and output and are not computed at all.
* the codec's word is not enough at low rates, so ``lr_change`` (the mean absolute difference,
  per pixel, between this LR frame and the previous one warped by the flow) must stay within
  ``reuse_tol`` over the tile. An encoder skips blocks whose content moved by less than it can
  afford to code: the decoded LR still changes there (1-2 levels of 255 on average on a
  moving camera), while the HR detail the copy would carry has moved; copying it cost up to
  0.7 dB per step on such a clip (x265 low-delay P, CRF 35), compounding along chains of
  reused tiles.
  Where the decoded pixels did not change, the copy is what computing would give.

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

from .spec import MAP_CHANNELS

_CU, _INTRA, _RES = MAP_CHANNELS.index("cu_log2"), MAP_CHANNELS.index("intra"), MAP_CHANNELS.index("residual")
_PREV = MAP_CHANNELS.index("from_prev")


def route_tiles(maps: torch.Tensor, conf: torch.Tensor, tile: int, cu_thresholds=(5, 4), reuse_conf: float = 0.7,
                demote_clean: bool = True, lr_change: torch.Tensor | None = None, reuse_tol: float = math.inf):
    """``maps`` [B, K, ceil(h/4), ceil(w/4)], ``conf`` [B, 1, h, w] -> (level long [B, Ht, Wt],
    reusable bool [B, Ht, Wt]) with ``Ht = ceil(h/tile)``. ``lr_change`` [B, 1, h, w] (None:
    not checked) and ``reuse_tol``: a reusable tile's mean of ``lr_change`` is at most it."""
    g = tile // 4
    cu = maps[:, _CU:_CU + 1]
    min_cu = -F.max_pool2d(-cu, g, ceil_mode=True)
    coded = F.max_pool2d(torch.maximum(maps[:, _INTRA:_INTRA + 1], maps[:, _RES:_RES + 1]), g, ceil_mode=True)
    level = torch.zeros_like(min_cu, dtype=torch.long)
    for th in cu_thresholds:
        level += (min_cu < th).long()
    clean = coded == 0  # all inter, no residual
    if demote_clean:
        level = torch.clamp(level - clean.long(), min=0)
    conf_min = -F.max_pool2d(-conf, tile, ceil_mode=True)
    from_prev = -F.max_pool2d(-maps[:, _PREV:_PREV + 1], g, ceil_mode=True)
    reusable = clean & (from_prev > 0) & (conf_min >= reuse_conf)
    if lr_change is not None:
        # (ceil_mode averages a partial edge tile over its pixels inside the frame)
        reusable &= F.avg_pool2d(lr_change.float(), tile, ceil_mode=True) <= reuse_tol
    return level[:, 0], reusable[:, 0]


class TileLayout:
    """A [B, C, H, W] map cut into ``tile`` x ``tile`` tiles, for gathering windows of any subset
    of tiles and writing results back.

    Storage ("store") is the map channels-last and zero-padded, [B, Hp, Wp, C] with
    ``Hp = Ht*T + 2*MARGIN`` and ``Wp = (Wt + 2) * T`` (one empty tile column each side), so a
    frame row splits into whole-tile chunks of ``T * C`` contiguous values:

    * a window (tile + ``ring`` pixels each side) is ``T + 2*ring`` runs of ``(T + 2*ring) * C``
      contiguous values, one ``index_select`` over an overlapping row view of the storage;
    * a tile's result is ``T`` chunks, one ``index_copy_``.

    Both move only the selected tiles' data at memcpy speed. Gathered windows are channels_last
    tensors, the fast layout for CPU convolutions. Custom backward passes keep training
    cheap too (autograd's own would scatter-add element by element).
    """

    MARGIN = 2  # rows of zeros above and below: the largest ring gathered

    def __init__(self, b: int, h: int, w: int, tile: int, device):
        self.b, self.h, self.w, self.tile = b, h, w, tile
        self.ht, self.wt = math.ceil(h / tile), math.ceil(w / tile)
        self.hp, self.wp = self.ht * tile + 2 * self.MARGIN, (self.wt + 2) * tile
        self.device = device
        t = torch.arange(b * self.ht * self.wt, device=device)
        bi, r = t // (self.ht * self.wt), t % (self.ht * self.wt)
        self._ty, self._tx = r // self.wt, r % self.wt
        # first storage row / column (pixels) of each tile's centre
        self._row0 = bi * self.hp + self._ty * tile + self.MARGIN
        self._col0 = (self._tx + 1) * tile
        self.partial = (h % tile) != 0 or (w % tile) != 0
        self._idx: dict = {}

    @property
    def num_tiles(self) -> int:
        return self.b * self.ht * self.wt

    def to_tiles(self, x: torch.Tensor) -> torch.Tensor:
        t, m = self.tile, self.MARGIN
        y = x.permute(0, 2, 3, 1)
        return F.pad(y, (0, 0, t, self.wp - t - self.w, m, self.hp - m - self.h)).contiguous()

    def from_tiles(self, store: torch.Tensor) -> torch.Tensor:
        t, m = self.tile, self.MARGIN
        return store[:, m:m + self.h, t:t + self.w].permute(0, 3, 1, 2)

    def _window_rows(self, tiles: torch.Tensor, ring: int) -> torch.Tensor:
        """Start pixel (flat, storage) of every row of every window: [N * (T + 2 ring)]."""
        a = torch.arange(self.tile + 2 * ring, device=self.device) - ring
        rows = self._row0[tiles][:, None] + a[None]
        return (rows * self.wp + (self._col0[tiles] - ring)[:, None]).reshape(-1)

    def _chunks(self, tiles: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Chunk index (storage row * (Wt + 2) + tile column) of the T centre rows of tiles."""
        if rows is None:
            rows = self._row0[tiles][:, None] + torch.arange(self.tile, device=self.device)[None]
        return (rows * (self.wt + 2) + (self._tx[tiles] + 1)[:, None]).reshape(-1)

    def gather(self, store: torch.Tensor, tiles: torch.Tensor, ring: int) -> torch.Tensor:
        """Windows of ``tiles`` (flat tile ids) with ``ring`` pixels of context -> [N, C, n, n]."""
        return _GatherWindows.apply(store, self, tiles, ring).permute(0, 3, 1, 2)

    def scatter_(self, store: torch.Tensor, tiles: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Writes [N, C, T, T] into the tiles' centres, in place."""
        return _ScatterTiles.apply(store, self, tiles, values.permute(0, 2, 3, 1).to(store.dtype))

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


def _row_view(store: torch.Tensor, span: int) -> torch.Tensor:
    """Overlapping view: row p = ``span`` pixels of the storage starting at flat pixel p."""
    c = store.shape[-1]
    n = store.numel() // c
    return store.as_strided((n - span + 1, span * c), (c, 1))


class _GatherWindows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, store, lay: TileLayout, tiles, ring: int):
        n = lay.tile + 2 * ring
        starts = lay._window_rows(tiles, ring)
        ctx.lay, ctx.ring, ctx.shape = lay, ring, store.shape
        ctx.save_for_backward(tiles)
        return _row_view(store, n).index_select(0, starts).view(len(tiles), n, n, store.shape[-1])

    @staticmethod
    def backward(ctx, grad):
        (tiles,) = ctx.saved_tensors
        lay, r, t = ctx.lay, ctx.ring, ctx.lay.tile
        g = grad.contiguous()
        buf = g.new_zeros(ctx.shape)
        chunks = buf.view(-1, t, ctx.shape[-1])
        a = torch.arange(t + 2 * r, device=g.device) - r
        rows = lay._row0[tiles][:, None] + a[None]  # storage rows of each window row
        rowg = g.reshape(-1, t + 2 * r, g.shape[-1])  # [N * (T + 2r), T + 2r, C]
        mid = lay._chunks(tiles, rows)
        chunks.index_put_((mid,), rowg[:, r:r + t], accumulate=True)  # window rows overlap vertically
        if r:
            chunks[:, t - r:].index_put_((mid - 1,), rowg[:, :r], accumulate=True)
            chunks[:, :r].index_put_((mid + 1,), rowg[:, r + t:], accumulate=True)
        return buf, None, None, None


class _ScatterTiles(torch.autograd.Function):
    @staticmethod
    def forward(ctx, store, lay: TileLayout, tiles, values):
        t = lay.tile
        ids = lay._chunks(tiles)
        store.view(-1, t, store.shape[-1]).index_copy_(0, ids, values.reshape(-1, t, store.shape[-1]))
        ctx.mark_dirty(store)
        ctx.save_for_backward(ids)
        ctx.t, ctx.vshape = t, values.shape
        return store

    @staticmethod
    def backward(ctx, grad):
        (ids,) = ctx.saved_tensors
        c = grad.shape[-1]
        gv = grad.contiguous().view(-1, ctx.t, c)
        g_values = gv.index_select(0, ids).view(ctx.vshape)
        g_store = gv.index_fill(0, ids, 0).view(grad.shape)
        return g_store, None, None, g_values


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
        in0 = layout.inside(ids, 0, win.dtype) if layout.partial else None
        outs, k = [], 0
        for br, t in active:
            n = t.numel()
            sl = slice(k, k + n)
            outs.append(br[j].forward_tiles(win[sl], None if in0 is None else in0[sl]))
            k += n
        # one write after all branches have read the features of step j
        layout.scatter_(store, ids, torch.cat(outs) if len(outs) > 1 else outs[0])
    return store
