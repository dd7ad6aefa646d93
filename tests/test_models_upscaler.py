"""bitsr.Upscaler: weights resolution, streaming output, bidirectional windows, tiles."""
from __future__ import annotations

import errno

import numpy as np
import pytest
import torch
from streams import make_hevc

import bitsr
from bitsr.data.inputs import frame_inputs, to_tensors, window_arrays
from bitsr.models import build_model
from bitsr.models.checkpoint import CKPT_FORMAT, save_checkpoint
from bitsr.train.metrics import to_uint8
from bitsr.train.validate import run_clip
from bitsr.upscaler import Upscaler, resolve_weights


def _weights(tmp_path, scale=2, **model):
    torch.manual_seed(0)
    mc = {"type": "BitVSR", "scale": scale, "channels": 8, "branch_blocks": [1, 1, 2], **model}
    net = build_model(mc)
    for p in net.parameters():  # non-trivial weights
        torch.nn.init.normal_(p, std=0.05)
    path = tmp_path / f"w{scale}{'b' if model.get('bidirectional') else ''}.pt"
    save_checkpoint(path, {"format": CKPT_FORMAT, "config": {"model": mc, "data": {"align": "mv"}},
                           "model": net.state_dict(), "iter": 0, "best_psnr": float("-inf")})
    return path, net.eval()


def _inputs(stream, bidirectional=False):
    fis, prev = [], None
    with bitsr.open(stream) as v:
        for f in v:
            fis.append(frame_inputs(f, prev, "mv", with_next=bidirectional))
            prev = fis[-1].lr
    return to_tensors(window_arrays(fis, "mv", bidirectional))


def _reference(net, stream, bidirectional=False, chunk=8, lookahead=0):
    t = _inputs(stream, bidirectional)
    return [y.numpy() for y in run_clip(net, t, chunk=chunk, lookahead=lookahead)]


def _close(a, b):
    return len(a) == len(b) and all(np.abs(x.astype(int) - y.astype(int)).max() <= 1 for x, y in zip(a, b))


class _Counting:
    """A reader that counts the frames taken from it and notes, per output, how many were."""

    def __init__(self, stream):
        self.reader, self.taken = bitsr.open(stream), 0

    def __enter__(self):
        self.reader.__enter__()
        return self

    def __exit__(self, *exc):
        return self.reader.__exit__(*exc)

    def __iter__(self):
        for f in self.reader:
            self.taken += 1
            yield f


def test_frames_stream_matches_the_model(tmp_path):
    stream = make_hevc("ups", frames=5, width=64, height=48, x265_params="bframes=0")
    path, net = _weights(tmp_path)
    up = bitsr.Upscaler(scale=2, model=path, precision="fp32", compute="saving")  # the network as trained
    out = list(up.frames(stream))
    assert len(out) == 5 and out[0].shape == (96, 128, 3) and out[0].dtype == np.uint8
    ref = _reference(net, stream)
    assert all(np.abs(a.astype(int) - b.astype(int)).max() <= 1 for a, b in zip(out, ref))
    with bitsr.open(stream) as reader:  # an open reader works too
        assert len(list(up.frames(reader))) == 5


def test_bidirectional_file_mode_segments_with_lookahead(tmp_path):
    stream = make_hevc("ups_b", frames=11, width=64, height=48, x265_params="bframes=2")
    path, net = _weights(tmp_path, bidirectional=True)
    up = Upscaler(scale=2, model=path, precision="fp32", chunk=4, lookahead=2, compute="saving")
    assert up.mode() == "file" and up.mode(streaming=True) == "streaming"
    out = list(up.frames(stream))
    assert _close(out, _reference(net, stream, bidirectional=True, chunk=4, lookahead=2))
    # the lookahead reaches the backward pass: without it the last frame of a segment differs
    plain = _reference(net, stream, bidirectional=True, chunk=4, lookahead=0)
    assert not np.array_equal(out[3], plain[3])
    # a segment covering the whole clip is one window: one call of the network
    t = _inputs(stream, bidirectional=True)
    with torch.no_grad():
        whole, _ = net(**{k: v[None] for k, v in t.items()})
    one = list(Upscaler(scale=2, model=path, precision="fp32", chunk=32, compute="saving").frames(stream))
    assert _close(one, [y.numpy() for y in to_uint8(whole[0])])


def test_file_mode_memory_is_bounded_by_chunk_and_lookahead(tmp_path):
    stream = make_hevc("ups_b", frames=11, width=64, height=48, x265_params="bframes=2")
    path, _ = _weights(tmp_path, bidirectional=True)
    src = _Counting(stream)
    ahead = []
    for _ in Upscaler(scale=2, model=path, precision="fp32", chunk=4, lookahead=2).frames(src):
        ahead.append(src.taken)
    emitted = np.arange(1, len(ahead) + 1)
    assert len(ahead) == 11 and max(np.array(ahead) - emitted) <= 4 + 2


def test_streaming_mode_is_causal(tmp_path):
    stream = make_hevc("ups_b", frames=6, width=64, height=48, x265_params="bframes=2")
    path, net = _weights(tmp_path, bidirectional=True)
    up = Upscaler(scale=2, model=path, precision="fp32", compute="saving")
    src = _Counting(stream)
    out, ahead = [], []
    for y in up.frames(src, streaming=True):
        out.append(y)
        ahead.append(src.taken)
    # each frame out before the next is taken (the reader's own decode-ahead aside)
    assert ahead == list(range(1, 7))
    t = _inputs(stream)
    with torch.no_grad():
        ref, _ = net(**{k: v[None] for k, v in t.items()}, causal=True)
    assert _close(out, [y.numpy() for y in to_uint8(ref[0])])
    assert not _close(out, list(up.frames(stream)))  # the backward pass does change the output


def test_tiles(tmp_path):
    stream = make_hevc("ups_t", frames=3, width=96, height=64, x265_params="bframes=0")
    path, _ = _weights(tmp_path)
    whole = list(Upscaler(scale=2, model=path, precision="fp32").frames(stream))
    big = list(Upscaler(scale=2, model=path, precision="fp32", tile=128).frames(stream))
    assert all(np.array_equal(a, b) for a, b in zip(whole, big))  # one tile = no tiling
    tiled = list(Upscaler(scale=2, model=path, precision="fp32", tile=32).frames(stream))
    assert tiled[0].shape == whole[0].shape
    # tiles see 16 LR pixels of context: close to the whole-frame result
    d = np.abs(tiled[0].astype(int) - whole[0].astype(int))
    assert d.mean() < 2


def test_missing_default_weights_explain_how_to_train():
    with pytest.raises(FileNotFoundError) as e:
        resolve_weights("surely_not_shipped", 4)
    assert e.value.errno == errno.ENOENT
    assert "bitsr train" in str(e.value) and "surely_not_shipped_x4.pt" in str(e.value)
    with pytest.raises(FileNotFoundError):
        Upscaler(model="/nonexistent/w.pt")


def test_scale_mismatch(tmp_path):
    path, _ = _weights(tmp_path, scale=2)
    with pytest.raises(ValueError, match="x2"):
        Upscaler(scale=4, model=path)
    with pytest.raises(ValueError):
        Upscaler(scale=5, model=path)


def test_compute_modes(tmp_path):
    """uniform: the same weights without routing or reuse; saving: routing + reuse on every
    frame; auto (CPU): routing only where its plan saves at least AUTO_MIN_SAVING."""
    stream = make_hevc("ups", frames=5, width=64, height=48, x265_params="bframes=0")
    path, net = _weights(tmp_path)
    routed = _reference(net, stream)
    up = Upscaler(scale=2, model=path, precision="fp32", compute="uniform")
    assert up.compute_mode == "uniform" and not up.net.routing and not up.net.reuse
    net.routing = net.reuse = False
    ref = _reference(net, stream)
    assert all(np.abs(a.astype(int) - b.astype(int)).max() <= 1 for a, b in zip(up.frames(stream), ref))
    assert up.compute_summary() == "compute: uniform (5 frame(s))"
    assert not _close(routed, ref)  # the two modes differ on this input

    auto = Upscaler(scale=2, model=path, precision="fp32")
    assert auto.compute_mode == "auto" and auto.net.min_saving == Upscaler.AUTO_MIN_SAVING > 0
    assert Upscaler(scale=2, model=path, precision="fp32", compute="saving").net.min_saving == 0
    # the threshold decides per frame: none reached -> uniform, always reached -> as trained
    auto.net.min_saving = 1.01
    assert _close(list(auto.frames(stream)), ref)
    assert auto.net.stats["uniform"] == 5 and "5 frame(s) uniform" in auto.compute_summary()
    auto.net.min_saving = -1.0  # (the rule is off at 0 and below)
    assert _close(list(auto.frames(stream)), routed)
    assert auto.net.stats["uniform"] == 0 and auto.compute_summary().startswith("compute: auto: routing + reuse on 5")
    with pytest.raises(ValueError, match="compute"):
        Upscaler(scale=2, model=path, compute="fast")


def test_routing_saving_counts_branch_costs(tmp_path):
    _, net = _weights(tmp_path)
    c = net.tile_costs()
    assert len(c) == len(net.branches) and c[0] < c[-1]
    assert net.routing_saving(torch.tensor([2, 2, 2, 2])) == pytest.approx(0.0)
    assert net.routing_saving(torch.tensor([-1, -1])) == pytest.approx(1.0)  # all reused
    assert net.routing_saving(torch.tensor([2, 0, 1, -1])) == pytest.approx(1 - (c[2] + c[0] + c[1]) / (4 * c[2]))


def test_precision(tmp_path):
    """bf16 convolutions on the CPU where it computes them natively (auto), or forced; the
    output follows fp32 within a few levels."""
    from bitsr.models.precision import cpu_bf16

    stream = make_hevc("ups", frames=5, width=64, height=48, x265_params="bframes=0")
    path, net = _weights(tmp_path)
    assert Upscaler(scale=2, model=path).net.cpu_bf16 == cpu_bf16()
    fp32 = Upscaler(scale=2, model=path, precision="fp32", compute="saving")
    bf16 = Upscaler(scale=2, model=path, precision="bf16", compute="saving")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    a, b = list(fp32.frames(stream)), list(bf16.frames(stream))
    assert _close(a, _reference(net, stream))
    d = [np.abs(x.astype(int) - y.astype(int)) for x, y in zip(a, b)]
    assert len(d) == 5 and max(e.max() for e in d) <= 8 and any(e.any() for e in d)
    with pytest.raises(ValueError, match="precision"):
        Upscaler(scale=2, model=path, precision="fp16")
