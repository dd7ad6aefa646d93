"""BitVSR: shapes, routing equivalence, tile execution, reuse, FLOP savings, baselines."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from vsr_fixtures import random_inputs

from bitsr.models import ARCH_REGISTRY, BitVSR, build_model
from bitsr.models.blocks import LightResBlock
from bitsr.models.routing import TileLayout, route_tiles, run_branches
from bitsr.models.warp import flow_warp, upscale_flow

ROOT = Path(__file__).resolve().parent.parent


def _same_branches(m: BitVSR) -> BitVSR:
    for br in m.branches[:-1]:
        br.load_state_dict(m.branches[-1].state_dict())
    return m


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_shapes(scale, bidirectional):
    torch.manual_seed(0)
    m = BitVSR(scale=scale, channels=8, branch_blocks=(1, 1, 2), bidirectional=bidirectional)
    x = random_inputs(b=2, t=3, h=20, w=36)  # not a whole number of tiles
    kw = dict(x, flow_next=x["flow"], conf_next=x["conf"]) if bidirectional else x
    y, state = m(**kw)
    assert y.shape == (2, 3, 3, 20 * scale, 36 * scale)
    assert state[0].shape == (2, 8, 20, 36) and state[1].shape == (2, 3, 20 * scale, 36 * scale)
    y.mean().backward()
    assert all(p.grad is not None for n, p in m.named_parameters() if not n.startswith("branches"))
    if bidirectional:
        with pytest.raises(ValueError):
            m(**x)


@pytest.mark.parametrize("bidirectional,hr_feedback", [(False, False), (True, False), (False, True)])
def test_routing_with_identical_branches_equals_uniform(bidirectional, hr_feedback):
    torch.manual_seed(1)
    m = _same_branches(BitVSR(scale=4, channels=8, branch_blocks=(2, 2, 2), reuse=False, bidirectional=bidirectional,
                              hr_feedback=hr_feedback))
    x = random_inputs(b=2, t=3, h=40, w=56, seed=1)
    if bidirectional:
        x = dict(x, flow_next=-x["flow"], conf_next=x["conf"])
    u = copy.deepcopy(m)
    u.routing = False
    yr, _ = m(**x)
    yu, _ = u(**x)
    assert torch.allclose(yr, yu, atol=1e-5)
    # the gradients agree too: each branch gets its tiles' share of the uniform gradient
    yr.square().mean().backward()
    yu.square().mean().backward()
    for j, blk in enumerate(u.branches[-1]):
        for name, p in blk.named_parameters():
            grads = [dict(m.branches[b][j].named_parameters())[name].grad for b in range(3)]
            assert sum(g is not None for g in grads) >= 2  # the tiles really were split
            tot = sum(g for g in grads if g is not None)
            assert torch.allclose(tot, p.grad, atol=1e-5, rtol=1e-4)
    assert torch.allclose(m.conv_first.weight.grad, u.conv_first.weight.grad, atol=1e-5, rtol=1e-4)


def test_tile_execution_matches_masked_full_frame():
    """Branches of different depth on their tiles == lock-step full-frame blocks whose results
    are kept only on each branch's tiles (the semantics the gather/scatter implements)."""
    torch.manual_seed(2)
    c, tile = 6, 8
    branches = torch.nn.ModuleList(torch.nn.ModuleList(LightResBlock(c) for _ in range(n)) for n in (1, 2, 3)).double()
    x = torch.randn(2, c, 27, 37, dtype=torch.float64, requires_grad=True)
    lay = TileLayout(2, 27, 37, tile, "cpu")
    level = torch.randint(-1, 3, (lay.num_tiles,))  # -1: a tile no branch computes
    per = [torch.nonzero(level == i).flatten() for i in range(3)]
    store = lay.to_tiles(x)
    got = lay.from_tiles(run_branches(lay, store, branches, per))

    lv = level.view(2, 1, lay.ht, lay.wt).repeat_interleave(tile, 2).repeat_interleave(tile, 3)[:, :, :27, :37]
    ref = x
    for j in range(3):
        new = ref
        for b, br in enumerate(branches):
            if len(br) > j:
                new = torch.where(lv == b, br[j](ref), new)
        ref = new
    assert torch.allclose(got, ref, atol=1e-10)
    # and so are the gradients (custom backward of the gather and scatter)
    w = torch.randn_like(ref)
    params = [x] + list(branches.parameters())
    g1 = torch.autograd.grad((got * w).sum(), params, allow_unused=True)
    g2 = torch.autograd.grad((ref * w).sum(), params, allow_unused=True)
    for a, b in zip(g1, g2):
        assert (a is None and b is None) or torch.allclose(a, b, atol=1e-9)


def test_route_rule():
    maps = torch.zeros(1, 6, 4, 12)
    maps[0, 5] = 1  # every block predicted from the previous frame alone (when residual-free)
    maps[0, 0, :, 0:4] = 5  # CU 32 -> branch 0
    maps[0, 0, :, 4:8] = 4  # CU 16 -> branch 1
    maps[0, 0, :, 8:12] = 3  # CU 8 -> branch 2
    maps[0, 3] = 1  # residual everywhere
    conf = torch.ones(1, 1, 16, 48)
    level, reusable = route_tiles(maps, conf, 16)
    assert level.tolist() == [[[0, 1, 2]]] and not reusable.any()
    maps[0, 3, :, 4:] = 0  # no residual in the last two tiles: one level cheaper, reusable
    level, reusable = route_tiles(maps, conf, 16)
    assert level.tolist() == [[[0, 0, 1]]] and reusable.tolist() == [[[False, True, True]]]
    conf[..., 40] = 0.5  # one unreliable pixel: not reusable
    assert route_tiles(maps, conf, 16)[1].tolist() == [[[False, True, False]]]
    conf[..., 40] = 1
    maps[0, 5, 1, 5] = 0  # one block bi-predicted or predicted from another picture: not reusable
    assert route_tiles(maps, conf, 16)[1].tolist() == [[[False, False, True]]]
    maps[0, 2, 0, 10] = 1  # an intra block: coded, so not clean
    assert route_tiles(maps, conf, 16)[0].tolist() == [[[0, 0, 2]]]
    # without the demotion the CU size alone decides; reuse is the same
    level, reusable = route_tiles(maps, conf, 16, demote_clean=False)
    assert level.tolist() == [[[0, 1, 2]]] and reusable.tolist() == [[[False, False, False]]]


def test_reuse_needs_an_unchanged_decoded_tile():
    """A tile the codec would let us reuse is computed when its decoded pixels changed against
    the previous frame moved by the flow by more than ``reuse_tol`` on average over the tile."""
    maps = torch.zeros(1, 6, 4, 10)  # 40 pixels wide: the last tile is 8 pixels, partial
    maps[0, 0], maps[0, 5] = 6, 1  # large CUs, residual-free, from the previous frame alone
    conf = torch.ones(1, 1, 16, 40)
    assert route_tiles(maps, conf, 16)[1].tolist() == [[[True, True, True]]]
    change = torch.zeros(1, 1, 16, 40)
    change[..., 16:32] = 0.6 / 255  # over the tolerance everywhere in the tile
    change[..., 0:4] = 1.9 / 255  # a quarter of the first tile: mean 0.475, within
    change[..., 32:34] = 2.1 / 255  # a quarter of the partial tile's 8 columns: mean 0.525
    assert route_tiles(maps, conf, 16, lr_change=change, reuse_tol=0.5 / 255)[1].tolist() == [[[True, False, False]]]
    assert route_tiles(maps, conf, 16, lr_change=change, reuse_tol=0.61 / 255)[1].tolist() == [[[True, True, True]]]


def _skip_everywhere(x):
    x = {k: v.clone() for k, v in x.items()}
    x["maps"][:, :, 0] = 6
    x["maps"][:, :, 1] = 1  # skip
    x["maps"][:, :, 2:4] = 0  # no intra, no residual
    x["maps"][:, :, 5] = 1  # predicted from the previous frame alone
    x["conf"][:] = 1
    for t in range(1, x["lr"].shape[1]):  # each decoded frame is the previous one moved: a copy
        x["lr"][:, t] = flow_warp(x["lr"][:, t - 1], x["flow"][:, t])
    return x


@pytest.mark.parametrize("hr_feedback", [False, True])
def test_reuse_copies_warped_previous_output(hr_feedback):
    torch.manual_seed(3)
    m = BitVSR(scale=4, channels=8, branch_blocks=(1, 2, 3), reuse=True, hr_feedback=hr_feedback).eval()
    x = _skip_everywhere(random_inputs(b=2, t=3, h=32, w=48, seed=3))
    with torch.no_grad():
        y, (h, _, _) = m(**x)
        hr_flow = upscale_flow(x["flow"][:, 2], 4)
        assert torch.equal(y[:, 1], flow_warp(y[:, 0], upscale_flow(x["flow"][:, 1], 4)))
        assert torch.equal(y[:, 2], flow_warp(y[:, 1], hr_flow))
        assert m.stats["reused"] == 2 * 2 * 6  # frames 1-2, batch 2, 6 tiles
        # the hidden state is carried the same way
        m.reuse = False
        y2, _ = m(**x)
        assert not torch.allclose(y2[:, 2], y[:, 2])
        assert torch.allclose(y2[:, 0], y[:, 0])  # the first frame has nothing to reuse


def _conv_flops(m, x) -> int:
    with FlopCounterMode(display=False) as fc:
        with torch.no_grad():
            m(**x)
    return fc.get_total_flops()


def test_flops_follow_routing_and_reuse():
    torch.manual_seed(4)
    c, t, h, w, s, tile = 8, 2, 32, 48, 4, 16
    m = BitVSR(scale=s, channels=c, branch_blocks=(1, 2, 4), tile=tile, reuse=False).eval()
    x = random_inputs(b=1, t=t, h=h, w=w, seed=4)
    cu = torch.tensor([[6.0, 5.0, 4.0], [3.0, 4.0, 6.0]]).repeat_interleave(4, 0).repeat_interleave(4, 1)
    x["maps"][:, :, 0] = cu  # per tile: branches 0, 0, 1 / 2, 1, 0
    x["maps"][:, :, 3] = 1  # residual everywhere: level = CU rule
    m.reset_stats()
    routed = _conv_flops(m, x)
    per_branch = m.stats["computed"]
    u = copy.deepcopy(m)
    u.routing = False
    uniform = _conv_flops(u, x)
    px = h * w
    conv = 2 * 9 * c * c  # FLOPs per output pixel of a c->c 3x3 conv
    common = t * px * (2 * 9 * 3 * c + 2 * (2 * c + 1) * c + 2 * 25 * 3 * s * s)  # conv_first, fuse, bicubic base
    up_px = 2 * 9 * c * 3 * s * s
    # a block pads by 2 and runs both convolutions 'valid': conv1 has (h+2)(w+2) outputs
    assert uniform == common + t * (4 * conv * ((h + 2) * (w + 2) + px) + px * up_px)
    # a block on a tile: conv1 on (T+2)^2 outputs (its halo), conv2 on T^2
    blk = conv * ((tile + 2) ** 2 + tile ** 2)
    body = sum(n * d * blk for n, d in zip(per_branch, (1, 2, 4)))
    assert routed == common + body + sum(per_branch) * tile * tile * up_px
    assert per_branch == [6, 4, 2] and routed < uniform
    # reuse: a skip-everywhere clip computes only the first frame's tiles
    m.reuse = True
    m.reset_stats()
    sk = _conv_flops(m, _skip_everywhere(x))
    assert m.stats["reused"] == 6 and sum(m.stats["computed"]) == 6
    assert sk < routed


def test_single_frame_baseline_ignores_the_past():
    torch.manual_seed(5)
    m = BitVSR(scale=2, channels=8, branch_blocks=(1, 1, 1), propagate=False).eval()
    x = random_inputs(t=2, h=16, w=16, seed=5)
    x2 = {k: v.clone() for k, v in x.items()}
    x2["lr"][:, 0] = torch.rand_like(x2["lr"][:, 0])
    with torch.no_grad():
        a, _ = m(**x)
        b, _ = m(**x2)
        assert torch.equal(a[:, 1], b[:, 1]) and not torch.equal(a[:, 0], b[:, 0])
        m.propagate = True
        a, _ = m(**x)
        b, _ = m(**x2)
        assert not torch.allclose(a[:, 1], b[:, 1])


@pytest.mark.parametrize("hr_feedback", [False, True])
def test_streaming_state_equals_one_window(hr_feedback):
    torch.manual_seed(6)
    m = BitVSR(scale=2, channels=8, branch_blocks=(1, 2, 2), hr_feedback=hr_feedback).eval()
    x = random_inputs(t=4, h=32, w=32, seed=6)
    with torch.no_grad():
        whole, _ = m(**x)
        state, parts = None, []
        for i in range(4):
            y, state = m(**{k: v[:, i:i + 1] for k, v in x.items()}, state=state)
            parts.append(y)
    assert torch.allclose(torch.cat(parts, 1), whole, atol=1e-6)


def test_channels_last_same_result():
    torch.manual_seed(7)
    m = BitVSR(scale=2, channels=8, branch_blocks=(1, 1, 2)).eval()
    x = random_inputs(t=2, h=32, w=32, seed=7)
    with torch.no_grad():
        a, _ = m(**x)
        b, _ = m.to(memory_format=torch.channels_last)(**x)
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("cfg", sorted((ROOT / "configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_build_small_models(cfg):
    from bitsr.train import load_config

    c = load_config(cfg)
    m = build_model(c["model"])
    size = sum(p.numel() * p.element_size() for p in m.parameters())
    assert size < 5 * 2 ** 20, f"{cfg.name}: {size / 2 ** 20:.2f} MiB"


@pytest.mark.parametrize("s", [2, 3, 4])
def test_base_is_matlab_bicubic(s):
    import numpy as np

    from bitsr.data.imresize import imresize
    from bitsr.models.blocks import MatlabBicubicUp

    x = np.random.default_rng(s).random((2, 3, 13, 22))
    y = MatlabBicubicUp(s).double()(torch.from_numpy(x)).numpy()
    for i in range(2):
        assert np.allclose(y[i].transpose(1, 2, 0), imresize(x[i].transpose(1, 2, 0), s), atol=1e-6)


def test_registry():
    assert ARCH_REGISTRY["BitVSR"] is BitVSR
    with pytest.raises(ValueError):
        build_model({"type": "Nope"})
    with pytest.raises(ValueError):
        BitVSR(scale=5)
    with pytest.raises(ValueError):
        BitVSR(tile=10)


def test_codec_condition_starts_neutral_and_keeps_routing_exact():
    """The conditioning heads start at zero (a model grown from unconditioned weights computes
    what they did); once trained, routing with identical branches still equals uniform compute."""
    torch.manual_seed(8)
    x = random_inputs(b=2, t=3, h=20, w=36, seed=8)
    x["maps"][:, :, 7] = torch.tensor([2.0, 0.0, 1.0])[None, :, None, None]  # I, B, P pictures
    plain = BitVSR(scale=4, channels=8, branch_blocks=(2, 2, 2)).eval()
    cond = BitVSR(scale=4, channels=8, branch_blocks=(2, 2, 2), condition=True).eval()
    from bitsr.models.checkpoint import load_grown

    assert load_grown(cond, plain.state_dict())["missing"]
    with torch.no_grad():
        assert torch.equal(cond(**x)[0], plain(**x)[0])
        torch.nn.init.normal_(cond.condition.head.weight, std=0.2)
        y = cond(**x)[0]
        assert not torch.allclose(y, plain(**x)[0])
        _same_branches(cond)
        u = copy.deepcopy(cond)
        u.routing = False
        assert torch.allclose(cond(**x)[0], u(**x)[0], atol=1e-6)


def test_grown_bidirectional_model_starts_its_backward_pass_from_the_forward_one():
    torch.manual_seed(9)
    uni = BitVSR(scale=2, channels=8, branch_blocks=(1, 1, 2)).eval()
    for p in uni.parameters():
        torch.nn.init.normal_(p, std=0.1)
    bi = BitVSR(scale=2, channels=8, branch_blocks=(1, 1, 2), backward_blocks=3, bidirectional=True).eval()
    from bitsr.models.checkpoint import load_grown

    g = load_grown(bi, uni.state_dict())
    assert g["grown"] == ["fuse.weight"] and any(k.startswith("back_body") for k in g["missing"])
    w, w0 = bi.fuse.weight, uni.fuse.weight
    assert torch.equal(bi.fuse_back.weight, w0[:, :17]) and torch.equal(bi.fuse_back.bias, uni.fuse.bias)
    heavy = uni.branches[-1]
    for i, blk in enumerate(bi.back_body):  # the heavy branch's blocks, the last one repeated
        src = heavy[min(i, len(heavy) - 1)]
        assert all(torch.equal(a, b) for a, b in zip(blk.parameters(), src.parameters()))
    # the fuse averages the warped forward state and the backward features
    assert torch.equal(w[:, :8], w0[:, :8]) and torch.equal(w[:, 16:17], w0[:, 16:17])
    assert torch.allclose(w[:, 8:16], w0[:, 8:16] / 2) and torch.allclose(w[:, 17:], w0[:, 8:16] / 2)
    x = random_inputs(b=1, t=3, h=16, w=32, seed=9)
    x["flow_next"], x["conf_next"] = torch.zeros_like(x["flow"]), torch.ones_like(x["conf"])
    with torch.no_grad():
        assert torch.isfinite(bi(**x)[0]).all()
    with pytest.raises(ValueError, match="cannot grow"):
        load_grown(uni, uni.state_dict() | {"fuse.weight": torch.zeros(8, 40, 1, 1)})


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("hr_feedback", [False, True])
def test_wider_model_grown_from_weights_starts_as_them_and_can_use_its_new_channels(bidirectional, hr_feedback):
    torch.manual_seed(10)
    x = random_inputs(b=1, t=3, h=16, w=32, seed=10)
    x["flow_next"], x["conf_next"] = torch.zeros_like(x["flow"]), torch.ones_like(x["conf"])
    kw = dict(scale=2, branch_blocks=(1, 1, 2), condition=True)
    narrow = BitVSR(channels=32, bidirectional=bidirectional, hr_feedback=hr_feedback, **kw).eval()
    for p in narrow.parameters():  # trained-like weights, heads included
        torch.nn.init.normal_(p, std=0.1)
    wide = BitVSR(channels=40, bidirectional=bidirectional, hr_feedback=hr_feedback, **kw)
    from bitsr.models.checkpoint import load_grown

    g = load_grown(wide, narrow.state_dict())
    assert "conv_first.weight" in g["grown"] and not g["missing"]
    wide.eval()
    with torch.no_grad():
        y = {k: v for k, v in x.items() if bidirectional or not k.endswith("_next")}
        assert torch.allclose(wide(**y)[0], narrow(**y)[0], rtol=1e-5, atol=1e-4)
    assert wide.conv_first.weight[32:].abs().sum() > 0  # new channels see the input ...
    assert wide.upsample.conv.weight[:, 32:].abs().sum() == 0  # ... and do not reach the output yet
    wide.train()
    wide(**y)[0].square().mean().backward()
    assert wide.upsample.conv.weight.grad[:, 32:].abs().sum() > 0  # training can open them


def test_x4_weights_start_an_x2_model_at_the_box_downscaled_x4_output():
    from bitsr.models.checkpoint import load_grown

    torch.manual_seed(3)
    x4 = BitVSR(scale=4, channels=8, branch_blocks=(1, 1, 1)).eval()
    torch.nn.init.normal_(x4.upsample.conv.weight, std=0.1)
    torch.nn.init.normal_(x4.upsample.conv.bias, std=0.1)
    x2 = BitVSR(scale=2, channels=8, branch_blocks=(1, 1, 1)).eval()
    g = load_grown(x2, x4.state_dict())
    assert g["rescaled"] == ["upsample.conv.weight", "upsample.conv.bias"] and not g["grown"]
    with torch.no_grad():
        feat = torch.randn(1, 8, 6, 6)
        want = torch.nn.functional.avg_pool2d(x4.upsample(feat), 2)
        assert torch.allclose(x2.upsample(feat), want, atol=1e-5)
        assert torch.equal(x2.conv_first.weight, x4.conv_first.weight)


def test_warp_samples_at_the_flow_precision_under_bf16_autocast():
    """Features in bf16 (CPU autocast) are sampled where fp32 would sample them: a bf16 grid
    would misplace samples by up to ~0.35 px across a 180-pixel row."""
    cols = torch.arange(180, dtype=torch.float32)
    x = torch.sin(cols * 0.5).expand(1, 4, 16, 180).contiguous()
    flow = torch.zeros(1, 2, 16, 180)
    flow[:, 0] = 0.3
    ref = flow_warp(x, flow)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = flow_warp(x.bfloat16(), flow)
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() < 0.02  # bf16 rounding of the values only


def test_cpu_bf16_inference_keeps_the_base_exact_and_follows_fp32():
    torch.manual_seed(3)
    m = BitVSR(scale=2, channels=8, branch_blocks=(1, 1, 2), condition=True).eval()
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x = random_inputs(t=3, h=32, w=32, seed=3)
    with torch.no_grad():
        ref, _ = m(**x)
        m.cpu_bf16 = True
        out, state = m(**x)
        assert out.dtype == torch.float32 and state[0].dtype == torch.bfloat16
        assert 0 < (out - ref).abs().max() < 0.03
        m.upsample.conv.weight.zero_()
        m.upsample.conv.bias.zero_()
        base, _ = m(**x)  # the residual is zero: the output is the fp32 bicubic base, exactly
        m.cpu_bf16 = False
        assert torch.equal(base, m(**x)[0])


def test_hr_feedback_feeds_the_warped_previous_output_and_grows_from_weights_without_it():
    """The previous HR output, warped by the flow at HR and folded onto the LR grid, reaches the
    fuse; a model grown from weights without it starts as them (its fuse columns at zero)."""
    from bitsr.models.checkpoint import load_grown

    torch.manual_seed(12)
    x = random_inputs(t=3, h=16, w=24, seed=12)
    old = BitVSR(scale=2, channels=8, branch_blocks=(1, 1, 2), condition=True).eval()
    for p in old.parameters():
        torch.nn.init.normal_(p, std=0.1)
    m = BitVSR(scale=2, channels=8, branch_blocks=(1, 1, 2), condition=True, hr_feedback=True)
    g = load_grown(m, old.state_dict())
    assert g["grown"] == ["fuse.weight"] and not g["missing"] and m.fuse.weight.shape[1] == 2 * 8 + 1 + 12
    m.eval()
    with torch.no_grad():
        assert torch.allclose(m(**x)[0], old(**x)[0], atol=1e-6)
        torch.nn.init.normal_(m.fuse.weight[:, 17:], std=0.1)
        y, (h, out, _) = m(**x)
        # the feedback of frame 1 is frame 0's output: change that output (through the state)
        y1, _ = m(**{k: v[:, 1:] for k, v in x.items()}, state=(h.new_zeros(h.shape), out.new_zeros(out.shape)))
        y1b, _ = m(**{k: v[:, 1:] for k, v in x.items()}, state=(h.new_zeros(h.shape), out + 0.5))
        assert not torch.allclose(y1, y1b)
        m.propagate = False  # the single-frame baseline ignores it
        a, _ = m(**{k: v[:, 1:] for k, v in x.items()}, state=(h, out))
        b, _ = m(**{k: v[:, 1:] for k, v in x.items()}, state=(h, out + 0.5))
        assert torch.equal(a, b)
        m.propagate = True
        # zero flow and full confidence: the feedback is exactly the previous output minus the base
        z = dict(x, flow=torch.zeros_like(x["flow"]), conf=torch.ones_like(x["conf"]))
        seen = {}
        m.fuse.register_forward_hook(lambda mod, inp, o: seen.update(x=inp[0]))
        m(**{k: v[:, 1:2] for k, v in z.items()}, state=(h, out))
        fb = torch.nn.functional.pixel_unshuffle(out - m.base_up(z["lr"][:, 1]), 2)
        assert torch.allclose(seen["x"][:, 17:], fb, atol=1e-4)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_warp_fold_kernel_equals_the_torch_feedback_warp(scale):
    """bitsr.flow.warp_fold (C++) samples what pixel_unshuffle(flow_warp(upscaled flow)) does,
    inside the frame and where positions fall beyond it (clamped: border padding), on odd
    sizes and with 2 threads; bad shapes and non-finite flows give errors or finite values,
    never a read outside the image."""
    from bitsr import _core
    from bitsr.flow import warp_fold

    g = torch.Generator().manual_seed(scale)
    h, w = 13, 22
    img = torch.rand(2, 3, scale * h, scale * w, generator=g)
    flow = torch.randn(2, 2, h, w, generator=g) * 6  # many samples beyond the frame
    flow[:, :, :4] = torch.round(flow[:, :, :4] * 4) / 4  # quarter-pel vectors, as the codec's
    flow[0, :, 5:7] = 0.0  # integer positions: one tap
    want = torch.nn.functional.pixel_unshuffle(flow_warp(img, upscale_flow(flow, scale)), scale)
    torch.set_num_threads(2)
    try:
        got = warp_fold(img, flow, scale)
    finally:
        torch.set_num_threads(1)
    assert got.shape == want.shape and got.dtype == torch.float32
    assert (got - want).abs().max() < 1e-5
    assert torch.equal(got, warp_fold(img, flow, scale))  # threads split rows: the same values
    # channels-last images are read in place; other layouts (a reversed view) are copied first
    assert torch.equal(got, warp_fold(img.contiguous(memory_format=torch.channels_last), flow, scale))
    cl = warp_fold(img, flow, scale, channels_last=True)  # written in the layout of the CPU features
    assert cl.is_contiguous(memory_format=torch.channels_last) and torch.equal(cl, got)
    rev = img[0].numpy()[:, ::-1]
    want_rev = torch.nn.functional.pixel_unshuffle(
        flow_warp(torch.from_numpy(rev.copy())[None], upscale_flow(flow[:1], scale)), scale)[0]
    assert (torch.from_numpy(_core.warp_fold(rev, flow[0].numpy(), scale, 1)) - want_rev).abs().max() < 1e-5
    bad = flow.clone()
    bad[0, 0, 0, 0], bad[0, 1, 1, 1], bad[1, 0, 2, 2] = float("nan"), float("inf"), -1e30
    assert torch.isfinite(warp_fold(img, bad, scale)).all()
    with pytest.raises(ValueError, match="scale"):
        _core.warp_fold(img[0].numpy(), flow[0].numpy(), scale + 1, 1)
    with pytest.raises(ValueError):
        _core.warp_fold(img[0, 0].numpy(), flow[0].numpy(), scale, 1)


def test_fast_feedback_warp_gives_the_outputs_of_the_torch_path():
    """A model with ``feedback_warp`` set (as bitsr.upscaler.load_model does) gives the outputs
    of the torch path, reused tiles included; training and autograd keep the torch path."""
    from bitsr.flow import warp_fold

    torch.manual_seed(13)
    m = BitVSR(scale=4, channels=8, branch_blocks=(1, 2, 3), condition=True, hr_feedback=True).eval()
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x = random_inputs(b=2, t=4, h=32, w=48, seed=13)
    x["flow"] = x["flow"] * 3
    skip = _skip_everywhere(random_inputs(b=2, t=3, h=32, w=48, seed=14))
    calls = []

    def counted(*a):
        calls.append(1)
        return warp_fold(*a)

    for inp, reused in ((x, False), (skip, True)):
        with torch.no_grad():
            ref, _ = m(**inp)
            m.feedback_warp = counted
            m.reset_stats()
            out, _ = m(**inp)
            m.feedback_warp = None
        assert calls and (m.stats["reused"] > 0) == reused
        assert (out - ref).abs().max() < 1e-5
        calls.clear()
    m.feedback_warp = counted
    m(**x)[0].mean()  # gradients enabled: the torch path
    assert not calls


@pytest.mark.parametrize("routing", [False, True])
def test_channels_last_cpu_layout_computes_what_the_planar_model_does(routing):
    """load_model puts CPU models in channels-last; the fuse's concatenation, the modulation,
    the feedback warp and the output stack then run in that layout (inference fast paths):
    the same outputs as the planar model, on a size that is not a whole number of the codec's
    4x4 blocks nor of tiles; the frames come back channels-last (HWC for the caller)."""
    from bitsr.flow import warp_fold
    from bitsr.models.bitvsr_arch import _cat_for_conv

    torch.manual_seed(21)
    m = BitVSR(scale=4, channels=8, branch_blocks=(1, 2, 3), condition=True, hr_feedback=True,
               tile=8, routing=routing, reuse=False).eval()
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x = random_inputs(b=1, t=4, h=22, w=30, seed=21)
    cl = copy.deepcopy(m).to(memory_format=torch.channels_last)
    cl.feedback_warp = lambda *a: warp_fold(*a, channels_last=True)
    with torch.no_grad():
        want, _ = m(**x)
        got, _ = cl(**x)
    assert got.shape == want.shape and (got - want).abs().max() < 1e-5
    assert got[0].permute(0, 2, 3, 1).is_contiguous()
    # the concatenation: torch.cat's values in the first part's layout, in the autocast dtype
    parts = [torch.randn(1, 8, 5, 7).contiguous(memory_format=torch.channels_last), torch.randn(1, 3, 5, 7)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        c = _cat_for_conv(parts)
    assert c.dtype == torch.bfloat16 and c.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(c, torch.cat(parts, 1).to(torch.bfloat16))


def test_deeper_branch_grown_from_weights_starts_as_them():
    """Residual blocks added to a branch (``branch_blocks`` grown) start as the identity."""
    from bitsr.models.checkpoint import load_grown

    torch.manual_seed(15)
    x = random_inputs(t=3, h=16, w=32, seed=15)
    kw = dict(scale=2, channels=8, condition=True, hr_feedback=True, routing=False)
    old = BitVSR(branch_blocks=(1, 1, 2), **kw).eval()
    for p in old.parameters():
        torch.nn.init.normal_(p, std=0.1)
    deep = BitVSR(branch_blocks=(1, 1, 4), **kw)
    g = load_grown(deep, old.state_dict())
    assert sorted({k.rsplit(".", 2)[0] for k in g["missing"]}) == ["branches.2.2", "branches.2.3"]
    deep.eval()
    with torch.no_grad():
        assert torch.allclose(deep(**x)[0], old(**x)[0], atol=1e-6)
    assert deep.branches[2][3].conv1.weight.abs().sum() > 0  # trainable from there
