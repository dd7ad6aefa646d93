"""BitVSR: recurrent video SR that aligns with bitstream motion and spends compute where the
encoder did.

Per frame t (LR h x w, scale s):

1. ``feat = conv(x_t)`` (shallow features, full frame);
2. the previous hidden state is warped by the flow to t-1 (motion vectors, DIS, or zero - the
   inputs decide) and fused with confidence: ``fuse([feat, c * warp(h), c (, backward h)
   (, c * unshuffle(warp_HR(y_{t-1}) - bicubic(x_t))))])`` (the last with ``hr_feedback``);
3. the body - ``len(branch_blocks)`` stacks of light residual blocks of different depth - runs
   per tile on the branch picked by :func:`routing.route_tiles` (or, with ``routing=False``,
   the deepest branch on the whole frame: the uniform-compute baseline);
4. conv + pixel shuffle gives the residual over MATLAB-bicubic upsampling of x_t (the
   upsampling conv starts small, so an untrained network starts close to bicubic).

Tiles the codec coded as residual-free inter pointing at t-1 can skip steps 3-4 (``reuse``):
they take the warped previous features and output. ``propagate=False`` is the single-frame
baseline; ``bidirectional=True`` adds a backward pass (not streamable).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import CodecCondition, LightResBlock, MatlabBicubicUp, Upsampler, act
from .registry import register_arch
from .routing import TileLayout, route_tiles, run_branches
from .warp import flow_warp, upscale_flow


def _cat_for_conv(parts: list) -> torch.Tensor:
    """``torch.cat(parts, 1)`` written once in the layout and dtype the next convolution reads
    (the first part's memory format; the autocast dtype where autocast is on). A cat of mixed
    layouts and dtypes takes a slow path and the convolution then converts its result again:
    on the CPU that was a sixth of the network's time at 180x144."""
    ref = parts[0]
    dev = ref.device.type
    dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else ref.dtype
    fmt = torch.channels_last if ref.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    b, _, h, w = ref.shape
    out = torch.empty((b, sum(p.shape[1] for p in parts), h, w), dtype=dtype, device=ref.device, memory_format=fmt)
    k = 0
    for p in parts:
        out[:, k:k + p.shape[1]].copy_(p)
        k += p.shape[1]
    return out


def _modulate(x: torch.Tensor, mod: tuple) -> torch.Tensor:
    """``x * gain + shift`` (SFT; ``mod`` = (gain, shift) of :class:`CodecCondition`) in one pass."""
    return torch.addcmul(mod[1], x, mod[0])


def _shuffle_add(base_ph: torch.Tensor, res: torch.Tensor, s: int, out: torch.Tensor) -> torch.Tensor:
    """``pixel_shuffle(base_ph + res, s)`` written into ``out`` [B, sH, sW, C] (HWC frames, the
    output's CPU layout) in one pass, where the sum, the shuffle and the stacking of frames
    each took one. Returns ``out`` as [B, C, sH, sW]. No autograd (``out=``)."""
    b, k, h, w = base_ph.shape
    c = k // (s * s)
    src = [t.permute(0, 2, 3, 1).reshape(b, h, w, c, s, s) for t in (base_ph, res)]
    torch.add(*src, out=out.view(b, h, s, w, s, c).permute(0, 1, 3, 5, 2, 4))
    return out.permute(0, 3, 1, 2)


def _hr_chunk_ids(lay: TileLayout, tiles: torch.Tensor, st: int) -> torch.Tensor:
    """Rows of the [B * Ht*sT * Wt, sT, 3] chunk view of a tile-padded HR image, per tile."""
    bi = tiles // (lay.ht * lay.wt)
    rows = (bi * lay.ht + lay._ty[tiles]) * st
    cols = lay._tx[tiles][:, None]
    return ((rows[:, None] + torch.arange(st, device=tiles.device)[None]) * lay.wt + cols).reshape(-1)


def _assemble_hr(base: torch.Tensor, lay: TileLayout, s: int, parts) -> torch.Tensor:
    """``base`` [B, 3, sH, sW] with tiles replaced: ``parts`` = [(tiles, [N, 3, sT, sT], add)],
    added to the base when ``add`` else written over it."""
    st = lay.tile * s
    b, c, hh, ww = base.shape
    full = F.pad(base, (0, lay.wt * st - ww, 0, lay.ht * st - hh))
    chunks = full.permute(0, 2, 3, 1).reshape(-1, st, c)  # a fresh copy: written in place below
    for tiles, val, add in parts:
        ids = _hr_chunk_ids(lay, tiles, st)
        v = val.permute(0, 2, 3, 1).reshape(-1, st, c).to(chunks.dtype)
        chunks.index_copy_(0, ids, chunks.index_select(0, ids) + v if add else v)
    out = chunks.view(b, lay.ht * st, lay.wt * st, c)
    return out[:, :hh, :ww].permute(0, 3, 1, 2)


def _hr_tiles(img: torch.Tensor, lay: TileLayout, tiles: torch.Tensor, s: int) -> torch.Tensor:
    """The HR tiles of ``img`` [B, C, sH, sW] -> [N, C, sT, sT] (zeros beyond the frame)."""
    st = lay.tile * s
    b, c, hh, ww = img.shape
    full = F.pad(img, (0, lay.wt * st - ww, 0, lay.ht * st - hh))
    chunks = full.permute(0, 2, 3, 1).reshape(-1, st, c)
    return chunks.index_select(0, _hr_chunk_ids(lay, tiles, st)).view(len(tiles), st, st, c).permute(0, 3, 1, 2)


def _warp_tiles(prev: torch.Tensor, flow: torch.Tensor, lay: TileLayout, tiles: torch.Tensor, s: int) -> torch.Tensor:
    """The HR tiles of ``prev`` [B, 3, sH, sW] warped by the LR ``flow`` (nearest-upscaled, as
    :func:`upscale_flow`) -> [N, 3, sT, sT]; the same samples as warping the whole frame."""
    t, st = lay.tile, lay.tile * s
    b, _, hh, ww = flow.shape
    f = F.pad(flow, (0, lay.wt * t - ww, 0, lay.ht * t - hh))
    f = f.view(b, 2, lay.ht, t, lay.wt, t).permute(0, 2, 4, 3, 5, 1)  # B Ht Wt T T 2
    bi, ty, tx = tiles // (lay.ht * lay.wt), lay._ty[tiles], lay._tx[tiles]
    ft = f[bi, ty, tx].repeat_interleave(s, 1).repeat_interleave(s, 2) * s  # N sT sT 2
    a = torch.arange(st, device=flow.device, dtype=flow.dtype)
    px = (tx * st).to(flow.dtype)[:, None, None] + a[None, None, :] + ft[..., 0]
    py = (ty * st).to(flow.dtype)[:, None, None] + a[None, :, None] + ft[..., 1]
    H, W = prev.shape[-2:]
    grid = torch.stack((px * (2.0 / max(W - 1, 1)) - 1.0, py * (2.0 / max(H - 1, 1)) - 1.0), -1).to(prev.dtype)
    out = prev.new_empty(len(tiles), prev.shape[1], st, st)
    for k in range(b):  # grid_sample pairs grid and image batch by batch
        sel = torch.nonzero(bi == k).flatten()
        if sel.numel():
            g = grid[sel].reshape(1, -1, st, 2)
            w = F.grid_sample(prev[k:k + 1], g, mode="bilinear", padding_mode="border", align_corners=True)
            out[sel] = w.view(prev.shape[1], -1, st, st).transpose(0, 1).to(out.dtype)  # autocast: fp32
    return out


@register_arch
class BitVSR(nn.Module):
    def __init__(self, scale: int = 4, channels: int = 32, branch_blocks=(1, 3, 6), tile: int = 16,
                 cu_thresholds=(5, 4), reuse_conf: float = 0.7, routing: bool = True, reuse: bool = True,
                 propagate: bool = True, bidirectional: bool = False, backward_blocks: int = 2,
                 condition: bool = False, back_dropout: float = 0.0, demote_clean: bool = True,
                 hr_feedback: bool = False, reuse_tol: float = 0.5):
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {scale}")
        if tile % 4:
            raise ValueError("tile must be a multiple of 4 (the priors' block grid)")
        if len(cu_thresholds) != len(branch_blocks) - 1:
            raise ValueError("need len(branch_blocks) - 1 CU thresholds")
        self.scale, self.channels, self.tile = scale, channels, tile
        self.cu_thresholds, self.reuse_conf = tuple(cu_thresholds), float(reuse_conf)
        self.demote_clean = bool(demote_clean)  # routing.route_tiles
        # routing.route_tiles: the largest mean change (levels of 255) of the decoded LR tile
        # against the previous frame, warped, for which a tile is reused.
        self.reuse_tol = float(reuse_tol)
        self.routing, self.reuse, self.propagate, self.bidirectional = routing, reuse, propagate, bidirectional
        # Training only: the share of windows run without the backward pass (its features zero, as
        # in causal use), so one set of weights serves files (bidirectional) and live streams.
        self.back_dropout = float(back_dropout)
        # Inference only: a frame whose routing plan saves less than this share of the body's
        # and upsampler's FLOPs runs uniform instead (gathering and scattering tiles costs
        # more than the convolutions a small saving skips, and routing costs some quality).
        # 0: always route (as trained). Set by bitsr.Upscaler's automatic compute policy.
        self.min_saving = 0.0
        # Inference only: on the CPU, run the convolutions in bf16 (autocast; the bicubic base,
        # the warps and the output sum stay fp32). Set where the CPU computes bf16 natively
        # (bitsr.upscaler.load_model), about 1.5x faster there.
        self.cpu_bf16 = False
        # Inference only: a faster equivalent of the HR feedback's warp, a callable (img [B, C,
        # sH, sW], flow [B, 2, h, w], s) -> pixel_unshuffle(flow_warp(img, upscale_flow(flow,
        # s)), s) for CPU tensors (bitsr.flow.warp_fold, set by bitsr.upscaler.load_model: the
        # arch stays torch-only). None: the torch path, which training always takes.
        self.feedback_warp = None
        self.condition = CodecCondition(channels) if condition else None
        c = channels
        self.conv_first = nn.Conv2d(3, c, 3, padding=1)
        # hr_feedback: the previous HR output warped to t at HR (MV flow upscaled), minus this
        # frame's bicubic base, folded onto the LR grid (pixel unshuffle: 3 s^2 channels) - the
        # detail already reconstructed, which a 32-channel LR state cannot carry whole (FRVSR).
        self.hr_feedback = bool(hr_feedback)
        self.feedback_channels = 3 * scale * scale if hr_feedback else 0
        self.fuse = nn.Conv2d(2 * c + 1 + (c if bidirectional else 0) + self.feedback_channels, c, 1)
        self.branches = nn.ModuleList(nn.ModuleList(LightResBlock(c) for _ in range(n)) for n in branch_blocks)
        self.upsample = Upsampler(c, scale)
        self.base_up = MatlabBicubicUp(scale)
        with torch.no_grad():
            self.upsample.conv.weight.mul_(0.1)
            self.upsample.conv.bias.zero_()
        if bidirectional:
            self.fuse_back = nn.Conv2d(2 * c + 1, c, 1)
            self.back_body = nn.Sequential(*(LightResBlock(c) for _ in range(backward_blocks)))
        self.reset_stats()

    # -- one frame --------------------------------------------------------------------------
    def _uniform(self, fused: torch.Tensor) -> torch.Tensor:
        h = fused
        for blk in self.branches[-1]:
            h = blk(h)
        return h

    def _step(self, x, feat, flow, conf, maps, prev, back=None, out=None):
        """One recurrent step. ``prev``: (hidden, output) of frame t-1 or None. With
        ``condition``, the codec's maps scale and shift the fused features (before the body) and
        the body's output (before upsampling; the hidden state passed on stays unmodulated).
        ``out``: [B, sH, sW, 3] float32 to write the output frame into (inference), returned
        as its [B, 3, sH, sW] view."""
        s = self.scale
        b, _, hh, ww = x.shape
        with torch.autocast(x.device.type, enabled=False):  # fp32: bf16/fp16 would round the base
            base_ph = self.base_up.phases(x.float().contiguous(memory_format=torch.channels_last))
        if prev is not None and self.propagate:
            hw = flow_warp(prev[0], flow)
            c = conf
        else:
            hw = torch.zeros_like(feat)
            c = torch.zeros_like(conf)
        parts = [feat, hw * c, c] + ([back] if back is not None else [])
        out_warped = None  # the previous output warped to t at HR, when the feedback needs it
        folded = None  # the same on the LR grid (pixel-unshuffled), from the fast path
        if self.hr_feedback:
            if prev is not None and self.propagate:
                fast = (self.feedback_warp is not None and not self.training and not torch.is_grad_enabled()
                        and x.device.type == "cpu")
                if fast:  # the same samples, gathered once per LR pixel for all s^2 phases
                    folded = self.feedback_warp(prev[1].float(), flow.float(), s)
                    parts.append((folded - base_ph).mul_(c))
                else:
                    out_warped = flow_warp(prev[1], upscale_flow(flow, s))
                    parts.append((F.pixel_unshuffle(out_warped, s) - base_ph) * c)
            else:
                parts.append(feat.new_zeros(b, self.feedback_channels, hh, ww))
        fused = act(self.fuse(_cat_for_conv(parts)))
        mods = self.condition(maps, hh, ww) if self.condition is not None else None
        if mods is not None:
            fused = _modulate(fused, mods[0])
        self.stats["frames"] += 1
        uniform = not self.routing
        if uniform:
            self.stats["plain"] += 1
        else:
            # reuse needs the previous LR frame (a state from before the LR was kept has none)
            use_reuse = self.reuse and prev is not None and self.propagate and len(prev) > 2
            change = None
            if use_reuse:
                with torch.autocast(x.device.type, enabled=False):
                    change = (x.float() - flow_warp(prev[2].float(), flow.float())).abs_().mean(1, keepdim=True)
            level, reusable = route_tiles(maps, conf, self.tile, self.cu_thresholds, self.reuse_conf,
                                          self.demote_clean, change, self.reuse_tol / 255)
            level, reusable = level.reshape(-1), reusable.reshape(-1)
            if use_reuse:
                level = torch.where(reusable, torch.full_like(level, -1), level)
            if self.min_saving > 0 and not self.training and self.routing_saving(level) < self.min_saving:
                uniform = True
                self.stats["uniform"] += 1
                self.stats["tiles"] += int(level.numel())  # every tile on the heaviest branch
                self.stats["computed"][-1] += int(level.numel())
        if uniform:
            h = self._uniform(fused)
            # base + upsample(h), added on the LR grid before the one pixel shuffle (the same sums)
            res = self.upsample.conv(h if mods is None else _modulate(h, mods[1]))
            if out is not None:
                return h, _shuffle_add(base_ph, res, s, out)
            return h, F.pixel_shuffle(base_ph + res, s)
        lay = TileLayout(b, hh, ww, self.tile, x.device)
        if use_reuse and bool(reusable.any()):
            rmask = reusable.view(b, 1, lay.ht, lay.wt)
            rpix = rmask.repeat_interleave(self.tile, 2).repeat_interleave(self.tile, 3)[:, :, :hh, :ww]
            start = torch.where(rpix, hw.to(fused.dtype), fused)
        else:
            use_reuse = False
            start = fused
        store = lay.to_tiles(start)
        per_branch = [torch.nonzero(level == i).flatten() for i in range(len(self.branches))]
        run_branches(lay, store, self.branches, per_branch)
        h = lay.from_tiles(store)

        computed = torch.nonzero(level >= 0).flatten()
        self.stats["tiles"] += lay.num_tiles
        for i, t in enumerate(per_branch):
            self.stats["computed"][i] += int(t.numel())
        self.stats["reused"] += lay.num_tiles - int(computed.numel())
        # Output: bicubic base + residual on computed tiles; reused tiles copy the warped output.
        parts = []
        if computed.numel():
            ustore = store if mods is None else _modulate(store, [lay.to_tiles(m) for m in mods[1]])
            res = self.upsample.forward_tiles(lay.gather(ustore, computed, self.upsample.HALO))  # [N, 3, sT, sT]
            parts.append((computed, res, True))
        if use_reuse:
            reused = torch.nonzero(level < 0).flatten()
            # the same samples either way; the feedback's whole-frame warp is already there
            if out_warped is None and folded is not None:
                out_warped = F.pixel_shuffle(folded, s)
            warped = (_warp_tiles(prev[1], flow, lay, reused, s) if out_warped is None
                      else _hr_tiles(out_warped, lay, reused, s))
            parts.append((reused, warped, False))
        y = _assemble_hr(F.pixel_shuffle(base_ph, s), lay, s, parts)
        if out is not None:
            out.copy_(y.permute(0, 2, 3, 1))
            y = out.permute(0, 3, 1, 2)
        return h, y

    # -- a window -----------------------------------------------------------------------------
    def forward(self, lr, flow, conf, maps, flow_next=None, conf_next=None, state=None, *,
                causal: bool = False, lookahead: int = 0):
        """``lr`` [B, T, 3, h, w] in [0, 1]; ``flow`` [B, T, 2, h, w] (to t-1), ``conf``
        [B, T, 1, h, w], ``maps`` [B, T, K, h/4, w/4]; ``flow_next``/``conf_next`` (to t+1) for
        bidirectional models. ``state``: the (hidden, output, LR) of the frame before the window,
        from a previous call, for streaming. ``causal``: a bidirectional model runs without its
        backward pass (live use: no future frames). ``lookahead``: the last frames of the window
        only feed the backward pass (the next call starts at them). Returns (HR [B, T', 3, s*h,
        s*w], state) for the first T' = T - lookahead frames."""
        bf16 = (self.cpu_bf16 and not self.training and lr.device.type == "cpu"
                and not torch.is_autocast_enabled("cpu"))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return self._forward(lr, flow, conf, maps, flow_next, conf_next, state, causal, lookahead)

    def _forward(self, lr, flow, conf, maps, flow_next, conf_next, state, causal, lookahead):
        b, t = lr.shape[:2]
        emit = t - int(lookahead)
        if not 0 < emit <= t:
            raise ValueError(f"lookahead {lookahead} leaves no frame of a {t}-frame window")
        feats = [act(self.conv_first(lr[:, i].contiguous(memory_format=torch.channels_last))) for i in range(t)]
        backs = [None] * t
        if self.bidirectional:
            backs = self._backward(feats, flow_next, conf_next, causal)
        outs = []
        prev = state
        # CPU inference writes the frames straight into one HWC buffer (as callers read them;
        # _shuffle_add), the frames a view of it; training and other devices stack them.
        hr = None
        if lr.device.type == "cpu" and not torch.is_grad_enabled():
            s = self.scale
            dtype = torch.promote_types(lr.dtype, torch.float32)
            hr = torch.empty((b, emit, s * lr.shape[-2], s * lr.shape[-1], 3), dtype=dtype)
        for i in range(emit):
            h, y = self._step(lr[:, i], feats[i], flow[:, i], conf[:, i], maps[:, i], prev, backs[i],
                              out=None if hr is None else hr[:, i])
            outs.append(y)
            prev = (h, y, lr[:, i])
        if hr is not None:  # (the state's frame copied: a view would keep the window's buffer alive)
            return hr.permute(0, 1, 4, 2, 3), (prev[0], prev[1].clone(), prev[2].clone())
        return torch.stack(outs, 1), prev

    def _backward(self, feats, flow_next, conf_next, causal: bool) -> list:
        """Backward-pass features per frame (zeros when ``causal``, or for the windows dropped
        by ``back_dropout`` in training)."""
        t, b = len(feats), feats[0].shape[0]
        if causal:
            return [torch.zeros_like(feats[0])] * t
        if flow_next is None or conf_next is None:
            raise ValueError("a bidirectional model needs flow_next and conf_next (or causal=True)")
        keep = None
        if self.training and self.back_dropout > 0:
            keep = (torch.rand(b, 1, 1, 1, device=feats[0].device) >= self.back_dropout).to(feats[0].dtype)
        backs, hb = [None] * t, None
        for i in range(t - 1, -1, -1):
            if hb is None or not self.propagate:
                hbw, cb = torch.zeros_like(feats[i]), torch.zeros_like(conf_next[:, i])
            else:
                hbw, cb = flow_warp(hb, flow_next[:, i]), conf_next[:, i]
            hb = self.back_body(act(self.fuse_back(_cat_for_conv([feats[i], hbw * cb, cb]))))
            backs[i] = hb if keep is None else hb * keep
        return backs

    def after_grow(self, missing: list) -> None:
        """Called by :func:`load_grown` with the parameters the weights lacked. Residual blocks
        added to a branch start as the identity (their second convolution at zero), so a deeper
        network starts as the weights it grew from. A backward pass new to the weights starts
        as a copy of the forward one (``fuse_back`` from the fuse's
        [features, warped state, confidence] columns, ``back_body`` from the heavy branch),
        and the fuse takes the mean of the warped forward state and the backward features: a
        zero-initialised random backward pass was found to stay unused (its features reach
        the loss only through weights at zero)."""
        with torch.no_grad():
            for name, mod in self.branches.named_modules(prefix="branches"):
                if isinstance(mod, LightResBlock) and f"{name}.conv2.weight" in missing:
                    mod.conv2.weight.zero_()
                    mod.conv2.bias.zero_()
        if not self.bidirectional or not any(k.startswith("back_body.") for k in missing):
            return
        c = self.channels
        with torch.no_grad():
            self.fuse_back.weight.copy_(self.fuse.weight[:, :2 * c + 1])
            self.fuse_back.bias.copy_(self.fuse.bias)
            heavy = self.branches[-1]
            for i, blk in enumerate(self.back_body):
                blk.load_state_dict(heavy[min(i, len(heavy) - 1)].state_dict())
            half = self.fuse.weight[:, c:2 * c] * 0.5
            self.fuse.weight[:, c:2 * c] = half
            self.fuse.weight[:, 2 * c + 1:] = half

    def widen_state(self, state: dict) -> tuple[dict, list]:
        """``state`` of a narrower BitVSR (fewer ``channels``, otherwise the same) laid out for
        this one: each old channel keeps its place within its group (the fuse convolutions
        take [features, warped state, confidence, backward features]; the conditioning head
        gives [scale, shift] per point), weights from new channels are zero and weights into
        them keep this model's initialisation, so the result computes what the narrow model
        did. Returns (state, names of the widened parameters); a state of this width as is."""
        c0, c = int(state["conv_first.weight"].shape[0]), self.channels
        if c0 == c:
            return state, []
        if c0 > c:
            raise ValueError(f"cannot narrow {c0} channels to {c}")
        C = "c"
        fuse = [C, C, 1] + ([C] if self.bidirectional else []) + ([self.feedback_channels] if self.hr_feedback else [])
        special = {"fuse.weight": fuse, "fuse_back.weight": [C, C, 1]}
        head = [C, C] * (self.condition.points if self.condition is not None else 0)

        def index(segs, n_old, n_new):
            """Positions of the n_old old channels in the new layout ``segs`` (old groups are
            a prefix of the new ones: a backward pass may be new too)."""
            out, pos = [], 0
            for sg in segs:
                a, b = (c0, c) if sg == C else (sg, sg)
                if len(out) + a <= n_old:
                    out.extend(range(pos, pos + a))
                pos += b
            if len(out) != n_old or pos != n_new:
                raise ValueError("unexpected channel layout")
            return torch.tensor(out)

        own, out, widened = self.state_dict(), dict(state), []
        for k, v in state.items():
            t = own.get(k)
            if t is None or t.shape == v.shape:
                continue
            segs = [[C] if n == c0 else [n] for n in v.shape[:2]]
            if k.startswith("condition."):  # its own width (hidden), whatever ``channels``
                segs = [head if k.startswith("condition.head.") else [v.shape[0]]] + [[n] for n in v.shape[1:2]]
            if k in special:
                segs[1] = special[k]
            new = t.clone()
            i0 = index(segs[0], v.shape[0], t.shape[0])
            if v.dim() >= 2:
                i1 = index(segs[1], v.shape[1], t.shape[1])
                keep = torch.ones(t.shape[1], dtype=torch.bool)
                keep[i1] = False
                new[:, keep] = 0  # from new input channels
                new[i0[:, None], i1[None, :]] = v
            else:
                new[i0] = v
            out[k] = new
            widened.append(k)
        return out, widened

    def reset_stats(self) -> None:
        # frames run; of those, run without routing (plain) and run uniform by the min_saving
        # rule (uniform, their tiles counted on the heaviest branch)
        self.stats = {"tiles": 0, "computed": [0] * len(self.branches), "reused": 0, "frames": 0, "plain": 0,
                      "uniform": 0}

    def tile_costs(self) -> list[float]:
        """Relative cost of a tile on each branch: its residual blocks (two convolutions each)
        and the upsampling convolution (3 s^2 / C convolutions' worth)."""
        up = 3 * self.scale ** 2 / self.channels
        return [2.0 * len(b) + up for b in self.branches]

    def saving(self, computed, tiles: int) -> float:
        """Share of the uniform body + upsampler FLOPs saved when ``computed[i]`` of ``tiles``
        tiles run on branch i (the others reused)."""
        costs = self.tile_costs()
        return 1.0 - sum(c * k for c, k in zip(costs, computed)) / (costs[-1] * max(int(tiles), 1))

    def routing_saving(self, level: torch.Tensor) -> float:
        """:meth:`saving` of the routing plan ``level`` (per tile: a branch, or -1 for reused)."""
        return self.saving(torch.bincount(level[level >= 0], minlength=len(self.branches)).tolist(), level.numel())
